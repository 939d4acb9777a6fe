"""Nothing measured is ever lost (issue 11): the end of a run, concurrent writers, cancelled jobs, bad files.

Real files and real processes: pytest sessions in subprocesses on the tiny model, two processes
updating one baseline folder at once, a SIGTERM to a running `pytest benchmarks`, a read-only bind
mount and a full tmpfs (root ignores mode bits, so a mount is the honest way to refuse writes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench import baseline_cli
from paddle_llm_bench.core import stopping
from paddle_llm_bench.core.record import CaseRecord, MachineFacts
from paddle_llm_bench.results.baselines import BaselineError, baseline_path, load
from paddle_llm_bench.results.regression import update_baselines
from paddle_llm_bench.results.saving import restore_sigterm, stop_on_sigterm

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
FINGERPRINT = "cpu:Test CPU:2cores"
FACTS = {"hardware_fingerprint": FINGERPRINT, "paddle_version": "3.3.1", "device": "cpu"}
MACHINE = MachineFacts.model_validate(FACTS)
BENCHMARK = (ROOT / "benchmarks" / "test_generation.py").read_text()
ONE_CASE = (
    "--llm-dtype=float32",
    "--llm-decoding=greedy",
    "--llm-max-new-tokens=4",
    "--llm-batch-size=1",
    "--llm-prompt-tokens=4",
    "--llm-rounds=5",
    "--llm-warmup-rounds=0",
)


def extra_info(case_id: str, decode: float = 100.0) -> dict[str, Any]:
    spread = [0.99, 1.01, 1.0, 0.995, 1.005]
    return {
        "case_id": case_id,
        "case": {"model": "tiny"},
        "rounds": 5,
        "samples": {"decode_tokens_per_s": [decode * s for s in spread], "ttft_ms": [5.0 * s for s in spread]},
        "memory_bytes": {"peak_allocated_bytes": 10**8},
    }


def record(case_id: str, decode: float = 100.0) -> CaseRecord:
    return CaseRecord.read(extra_info(case_id, decode))


# --- mounts that refuse writes ------------------------------------------------------------------


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a read-only bind mount (EROFS for everyone, root included)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if not (_mount("--bind", str(folder), str(folder)) and _mount("-o", "remount,ro,bind", str(folder))):
        subprocess.run(["umount", str(folder)], capture_output=True, check=False)
        if os.geteuid() == 0:
            pytest.skip("cannot make a read-only mount here (needs CAP_SYS_ADMIN), and root ignores mode bits")
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, filled to the last block: every write of data fails with ENOSPC."""
    folder = tmp_path / "full"
    folder.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)):
        pytest.skip("cannot mount a small tmpfs here (needs CAP_SYS_ADMIN)")
    try:
        fill(folder)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path) -> None:
    """Append to ``folder/filler`` until the file system has no block left."""
    with (folder / "filler").open("ab", buffering=0) as handle, pytest.raises(OSError, match="No space left"):
        while True:
            handle.write(b"x" * 1024)


# --- item 2: concurrent baseline updates ----------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from paddle_llm_bench.core.record import CaseRecord, MachineFacts
    from paddle_llm_bench.results.regression import update_baselines
    directory, prefix, count, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    while time.time() < start:
        pass
    facts = MachineFacts(hardware_fingerprint="cpu:Test CPU:2cores", device="cpu", run_id=prefix)
    for i in range(count):
        extra = {"case_id": f"{prefix}-{i}", "case": {}, "rounds": 5,
                 "samples": {"decode_tokens_per_s": [100.0 + i, 101.0, 99.0, 100.5, 99.5]}, "memory_bytes": {}}
        update_baselines([CaseRecord.read(extra)], facts, directory, commit=None)
    """
)


def test_concurrent_updates_from_two_processes_all_land(tmp_path: Path) -> None:
    count = 40
    start = time.time() + 2.0  # both processes past their imports before the first write
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), prefix, str(count), str(start)])
        for prefix in ("a", "b")
    ]
    assert [w.wait(timeout=TIMEOUT_S) for w in writers] == [0, 0]
    store = load(baseline_path(tmp_path, FINGERPRINT))
    assert sorted(store.cases) == sorted(f"{p}-{i}" for p in "ab" for i in range(count))
    assert [p.name for p in tmp_path.iterdir()] == [baseline_path(tmp_path, FINGERPRINT).name]  # no lock files


# --- item 7: the same run merged twice counts once --------------------------------------------------


def saved_run(path: Path, run_id: str | None, decode: float = 100.0, fingerprint: str = FINGERPRINT) -> Path:
    facts = {**FACTS, "hardware_fingerprint": fingerprint, **({"run_id": run_id} if run_id else {})}
    path.write_text(
        json.dumps(
            {
                "machine_info": {"paddle_llm_bench": facts},
                "datetime": "2026-01-01T00:00:00",
                "benchmarks": [{"name": "test_generation[tiny-a]", "extra_info": extra_info("tiny-a", decode)}],
            }
        )
    )
    return path


def baseline_main(*args: str) -> int:
    parser = __import__("argparse").ArgumentParser()
    baseline_cli.add_arguments(parser)
    return baseline_cli.main(parser.parse_args(list(args)))


@pytest.mark.parametrize("run_id", ["3f2a", None], ids=["with-run-id", "saved-before-run-ids"])
def test_the_same_saved_run_merged_five_times_counts_once(
    tmp_path: Path, run_id: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    baselines = tmp_path / "baselines"
    history = [saved_run(tmp_path / f"old{i}.json", f"old{i}", decode=90.0 + i) for i in range(3)]
    for path in history:
        assert baseline_main("update", str(path), "--baseline-dir", str(baselines)) == 0
    run = saved_run(tmp_path / "0001_run.json", run_id)
    for _ in range(5):
        assert baseline_main("update", str(run), "--baseline-dir", str(baselines)) == 0
    runs = load(baseline_path(baselines, FINGERPRINT)).cases["tiny-a"].runs
    assert len(runs) == 4  # the three older runs are kept: the repeat did not push them out
    assert "already held this run and were not added again" in capsys.readouterr().out


def test_baseline_check_with_a_mistyped_folder_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = saved_run(tmp_path / "0001_run.json", "r1")
    assert baseline_main("check", str(run), "--baseline-dir", str(tmp_path / "baselnes")) == 4
    assert "baselnes is not a folder" in capsys.readouterr().out


# --- item 5: never write into a file for other hardware ------------------------------------------


def test_an_update_never_writes_into_a_file_for_other_hardware(tmp_path: Path) -> None:
    update_baselines(
        [record("tiny-a")],
        MACHINE.model_copy(update={"hardware_fingerprint": "gpu:NVIDIA H100"}),
        tmp_path,
        None,
    )
    # The H100 file under this CPU's name: a copy, a rename, a slug collision.
    baseline_path(tmp_path, "gpu:NVIDIA H100").rename(baseline_path(tmp_path, FINGERPRINT))
    before = baseline_path(tmp_path, FINGERPRINT).read_bytes()
    with pytest.raises(BaselineError, match=r"says it is for 'gpu:NVIDIA H100'.*not written into"):
        update_baselines([record("tiny-b")], MACHINE, tmp_path, None)
    assert baseline_path(tmp_path, FINGERPRINT).read_bytes() == before


# --- item 4: unwritable and full storage for baselines -------------------------------------------


def test_a_read_only_baseline_folder_names_the_cause(read_only_dir: Path) -> None:
    with pytest.raises(BaselineError, match=r"cannot write baseline .*(read-only file system|permission denied)"):
        update_baselines([record("tiny-a")], MACHINE, read_only_dir, None)
    assert list(read_only_dir.iterdir()) == []


def test_a_full_disk_leaves_the_old_baseline_whole(full_disk: Path) -> None:
    (full_disk / "filler").unlink()
    update_baselines([record("tiny-a")], MACHINE, full_disk, None)
    path = baseline_path(full_disk, FINGERPRINT)
    before = path.read_bytes()
    fill(full_disk)
    with pytest.raises(BaselineError, match="disk full"):
        update_baselines([record(f"tiny-{i}") for i in range(50)], MACHINE, full_disk, None)
    assert path.read_bytes() == before
    assert sorted(p.name for p in full_disk.iterdir()) == sorted(["filler", path.name])  # no temporary left


# --- items 1, 3, 4 through real pytest sessions ----------------------------------------------------


def run_pytest(pytester: pytest.Pytester, cache_dir: Path, *extra: str) -> pytest.RunResult:
    pytester.makepyfile(test_generation=BENCHMARK)
    return pytester.runpytest_subprocess(
        "-p", "paddle_llm_bench.plugin", "-p", "no:cacheprovider", *ONE_CASE, "--llm-cache-dir", str(cache_dir),
        *extra, timeout=TIMEOUT_S,
    )  # fmt: skip


def saved_runs(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]


GATE_EXPLODES = """
import paddle_llm_bench.session as session

def explode(*args, **kwargs):
    raise RuntimeError("injected failure in the gate")

session.check_run = explode
"""


@pytest.mark.e2e
def test_an_exception_in_the_gate_is_reported_and_the_run_is_saved(
    pytester: pytest.Pytester, llm_cache_dir: Path
) -> None:
    pytester.makeconftest(GATE_EXPLODES)
    result = run_pytest(pytester, llm_cache_dir, "--benchmark-autosave", "--benchmark-json", "run.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(["*error: the gate or baseline update stopped: RuntimeError: injected failure*"])
    runs = [*saved_runs(pytester.path / ".benchmarks"), json.loads((pytester.path / "run.json").read_text())]
    assert len(runs) == 2
    assert all(len(run["benchmarks"]) == 1 for run in runs)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ('{"format_version": 2, "hardware_fingerprint": "FP", "cases": {"c": {"runs": [{"samples": '
         '{"decode_tokens_per_s": [NaN, 1.0]}}]}}}', "decode_tokens_per_s[0] is nan"),
        ('{"format_version": 0, "hardware_fingerprint": "FP", "cases": {}}', "format_version 0"),
    ],
    ids=["nan-sample", "format-0"],
)  # fmt: skip
@pytest.mark.e2e
def test_a_bad_baseline_fails_the_run_naming_the_field_and_the_run_is_saved(
    pytester: pytest.Pytester, llm_cache_dir: Path, content: str, field: str
) -> None:
    baselines = pytester.path / "baselines"
    pytester.makeconftest("")
    probe = run_pytest(pytester, llm_cache_dir, "--llm-baseline-dir", str(baselines), "--llm-baseline-update")
    assert probe.ret == 0, probe.stdout.str()
    (baseline,) = baselines.glob("*.json")
    fingerprint = json.loads(baseline.read_text())["hardware_fingerprint"]
    baseline.write_text(content.replace("FP", fingerprint))
    result = run_pytest(pytester, llm_cache_dir, "--llm-baseline-dir", str(baselines), "--benchmark-autosave")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert f"baseline {baseline}" in output and field in output and "git checkout" in output
    (run,) = saved_runs(pytester.path / ".benchmarks")
    assert len(run["benchmarks"]) == 1
    assert run["paddle_llm_bench_gate"] == []  # the verdicts (none: the gate stopped) were added after the save


@pytest.mark.e2e
def test_a_read_only_baseline_folder_costs_no_data(
    pytester: pytest.Pytester, llm_cache_dir: Path, read_only_dir: Path
) -> None:
    result = run_pytest(
        pytester,
        llm_cache_dir,
        "--llm-baseline-dir",
        str(read_only_dir),
        "--llm-baseline-update",
        "--benchmark-autosave",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*baseline not updated: cannot write baseline*read-only file system*"])
    (run,) = saved_runs(pytester.path / ".benchmarks")
    assert len(run["benchmarks"]) == 1


def test_a_malformed_reference_run_is_refused_before_the_sweep(pytester: pytest.Pytester, llm_cache_dir: Path) -> None:
    (pytester.path / "ref.json").write_text('{"benchmarks": "oops"}')
    result = run_pytest(pytester, llm_cache_dir, "--llm-baseline-from", "ref.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'ref.json' from --llm-baseline-from*field benchmarks is 'oops'*"])


@pytest.mark.e2e
def test_read_only_storage_names_the_cause_and_where_the_run_went(
    pytester: pytest.Pytester, llm_cache_dir: Path, read_only_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rescue_root = tmp_path / "tmp"
    rescue_root.mkdir()
    monkeypatch.setenv("TMPDIR", str(rescue_root))
    result = run_pytest(
        pytester, llm_cache_dir, "--benchmark-storage", str(read_only_dir / "runs"), "--benchmark-autosave",
        "--benchmark-json", str(read_only_dir / "run.json"),
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    output = result.stdout.str()
    assert output.count("could not save the measured run to") == 2
    assert "read-only file system" in output and "file not found" not in output.lower()
    assert "the run was saved to" in output and "instead" in output
    rescued = saved_runs(rescue_root / f"paddle-llm-bench-unsaved-{os.getuid()}")
    assert len(rescued) == 2 and all(len(run["benchmarks"]) == 1 for run in rescued)


@pytest.mark.e2e
def test_a_full_disk_leaves_no_truncated_run(
    pytester: pytest.Pytester, llm_cache_dir: Path, full_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rescue_root = tmp_path / "tmp"
    rescue_root.mkdir()
    monkeypatch.setenv("TMPDIR", str(rescue_root))
    result = run_pytest(pytester, llm_cache_dir, "--benchmark-json", str(full_disk / "run.json"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(["*could not save the measured run to*run.json: disk full*saved to*instead*"])
    assert [p.name for p in full_disk.iterdir()] == ["filler"]  # no half-written run, no temporary
    (rescued,) = saved_runs(rescue_root / f"paddle-llm-bench-unsaved-{os.getuid()}")
    assert len(rescued["benchmarks"]) == 1


# --- item 3: SIGTERM to a real `pytest benchmarks` ------------------------------------------------


def sigterm_when(
    command: list[str], marker: str, patch: str = "", folder: Path | None = None
) -> tuple[int, str, float]:
    """Run ``command``, send SIGTERM at the first output line holding ``marker``; (exit status, output, seconds
    from the signal to the exit). ``patch`` becomes a sitecustomize.py in ``folder`` that the command imports."""
    env = dict(os.environ)
    if patch and folder is not None:
        (folder / "sitecustomize.py").write_text(patch)
        env["PYTHONPATH"] = str(folder)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    lines, signalled_s = [], time.monotonic()
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            process.send_signal(signal.SIGTERM)
            signalled_s = time.monotonic()
            break
    lines += process.stdout.readlines()
    status = process.wait(timeout=TIMEOUT_S)
    return status, "".join(lines), time.monotonic() - signalled_s


@pytest.mark.e2e
def test_sigterm_saves_the_completed_cases_and_exits_non_zero(llm_cache_dir: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    command = [
        sys.executable, "-u", "-m", "pytest", "benchmarks", "-v", "-p", "no:cacheprovider",
        "--llm-dtype", "float32", "--llm-decoding", "greedy", "--llm-max-new-tokens", "8",
        "--llm-batch-size", "1", "--llm-prompt-tokens", "8,16,32", "--llm-rounds", "5",
        "--llm-warmup-rounds", "0", "--llm-cache-dir", str(llm_cache_dir),
        "--llm-baseline-dir", str(tmp_path / "baselines"), "--llm-baseline-update",
        "--benchmark-storage", str(storage), "--benchmark-autosave",
    ]  # fmt: skip
    slow_down = (  # each measured round 0.3 s slower: time to signal mid-sweep
        "import time\nimport paddle_llm_bench.runtime.measure as m\n_round = m.CaseRunner.measured_round\n"
        "def slow(self):\n    time.sleep(0.3)\n    return _round(self)\nm.CaseRunner.measured_round = slow\n"
    )
    # the first case is complete: stop in the second
    status, output, _seconds = sigterm_when(command, "PASSED", slow_down, tmp_path)
    assert status == pytest.ExitCode.INTERRUPTED, output
    (run,) = saved_runs(storage)
    saved = [b["extra_info"]["case_id"] for b in run["benchmarks"]]
    assert saved[0] == "tiny-float32-greedy-new8-bs1-prompt8" and len(saved) <= 2, output
    assert all(b["stats"]["rounds"] == 5 for b in run["benchmarks"])  # only whole cases
    interrupted = run["machine_info"]["paddle_llm_bench"].get("interrupted_cases", [])
    assert not set(interrupted) & set(saved)
    assert "stopped by SIGTERM" in output
    assert "paddle-llm-bench baseline update" in output  # how to finish the interrupted baseline update
    assert f"--baseline-dir {tmp_path / 'baselines'}" in output  # into the folder this run was updating


@pytest.mark.e2e
def test_sigterm_during_the_model_load_stops_at_the_first_warm_up_step(llm_cache_dir: Path, tmp_path: Path) -> None:
    """Loading is not sliced (Paddle reads the weights in one call): the stop comes at the warm-up's first step."""
    storage = tmp_path / "storage"
    command = [
        sys.executable, "-u", "-m", "pytest", "benchmarks", "-p", "no:cacheprovider",
        "--llm-dtype", "float32", "--llm-decoding", "greedy", "--llm-max-new-tokens", "64",
        "--llm-batch-size", "1", "--llm-prompt-tokens", "8", "--llm-rounds", "5", "--llm-warmup-rounds", "50",
        "--llm-cache-dir", str(llm_cache_dir), "--benchmark-storage", str(storage), "--benchmark-autosave",
    ]  # fmt: skip
    slow_load = (  # the load takes 3 s more: the signal surely lands inside it
        "import time\nimport paddle_llm_bench.runtime.suite as s\n_load = s.load_model\n"
        "def slow(*args, **kwargs):\n    time.sleep(3)\n    return _load(*args, **kwargs)\ns.load_model = slow\n"
    )
    status, output, seconds = sigterm_when(command, "loading tiny as float32", slow_load, tmp_path)
    assert status == pytest.ExitCode.INTERRUPTED, output
    # 50 warm-up rounds of 64 tokens would take ~30 s: the stop came at a step, after the 3 s load
    assert seconds < 15, output
    assert "stopped by SIGTERM" in output
    assert not [b for run in saved_runs(storage) for b in run["benchmarks"]], output  # no partial case saved


@pytest.mark.e2e
def test_sigterm_in_the_paired_stage_exits_2_and_is_never_a_regression(llm_cache_dir: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    command = [
        sys.executable, "-u", "-m", "pytest", "benchmarks", "-p", "no:cacheprovider",
        "--llm-dtype", "float32", "--llm-decoding", "greedy", "--llm-max-new-tokens", "8",
        "--llm-batch-size", "1", "--llm-prompt-tokens", "8", "--llm-rounds", "5", "--llm-warmup-rounds", "0",
        "--llm-cache-dir", str(llm_cache_dir), "--llm-no-gate", f"--llm-reference={sys.executable}",
        "--llm-paired-pairs-per-block=2", "--llm-paired-min-blocks=4", "--llm-paired-max-blocks=4",
        "--benchmark-storage", str(storage), "--benchmark-autosave",
    ]  # fmt: skip
    # the paired stage has measured a block: stop it in the next
    status, output, _seconds = sigterm_when(command, ": block 1,")
    assert status == pytest.ExitCode.INTERRUPTED, output
    assert "REGRESSION" not in output and "INTERRUPTED: the paired comparison was stopped" in output, output
    (saved,) = storage.glob("*/*.json")  # the sweep's run is kept, with what the paired stage measured
    assert json.loads(saved.read_text())["paddle_llm_bench_paired"]["interrupted"] is True


def test_sigterm_is_raised_at_the_next_checkpoint_not_inside_the_handler() -> None:
    """A KeyboardInterrupt raised inside the handler can land on an instruction without a line number, which
    crashed pytest's traceback printer in CI (exit 1, run taken as whole): the handler only records it."""
    previous = stop_on_sigterm()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler has run by now, and raised nothing
        assert stopping.requested() == "SIGTERM"
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            stopping.checkpoint()
    finally:
        restore_sigterm(previous)
    assert stopping.requested() is None
    stopping.checkpoint()  # cleared with the handler: a later session is not stopped by it
