"""The paired engine with real worker processes on the real tiny model.

The checks are built to hold on a busy machine: the injected slowdown is large (one extra step's time
per step, a ratio of about 0.5), the same-code twin is only required to be near 1, and every
failure path (a worker killed or hung, a bad interpreter, Ctrl-C) is exercised for real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.verdicts import SLOWER
from paddle_llm_bench.paired import engine, processes
from paddle_llm_bench.paired.engine import run_paired
from paddle_llm_bench.paired.protocol import PROTOCOL_VERSION
from paddle_llm_bench.paired.results import PairedRun, PairedSettings, judge, load_paired_run
from paddle_llm_bench.paired.sides import Side, SideError, python_side

pytestmark = pytest.mark.e2e  # every test here runs real worker processes

CASE = Case("tiny", "float32", "greedy", max_new_tokens=16, batch_size=1, prompt_tokens=16)
OTHER = Case("tiny", "float32", "sampling", max_new_tokens=16, batch_size=1, prompt_tokens=16)
QUICK = PairedSettings(pairs_per_block=4, min_blocks=2, max_blocks=2, warmup_rounds=1, device="cpu")


def quiet(_message: str) -> None:
    return None


@pytest.fixture(scope="module")
def three_sides(tmp_path_factory: pytest.TempPathFactory, llm_cache_dir: Path) -> PairedRun:
    """The reference, a twin of the same code, and a side that busy-waits one step's time per step."""
    sides = [
        Side("reference", sys.executable),
        Side("twin", sys.executable),
        Side("slowed", sys.executable, slowdown_fraction=1.0),
    ]
    # Six blocks (5 dof) and alpha 0.05: a 0.5 ratio stays significant after Holm over the run's six speed tests
    # even when a loaded CI machine spreads the blocks' estimates by ~30 %.
    settings = PairedSettings(
        pairs_per_block=4, min_blocks=6, max_blocks=6, follow_up_blocks=0, warmup_rounds=1, device="cpu", alpha=0.05
    )
    saved = tmp_path_factory.mktemp("paired") / "paired.json"
    run = run_paired([CASE], sides, settings, llm_cache_dir, progress=quiet, on_update=lambda r: r.save(saved))
    assert load_paired_run(saved).as_dict() == run.as_dict()  # what was saved is what was measured
    return run


def test_every_block_runs_in_fresh_processes_with_pairs_in_both_orders(three_sides: PairedRun) -> None:
    comparison = three_sides.cases[0]
    assert comparison.error is None and comparison.stop_reason.startswith("block budget: 6 blocks")
    assert len(comparison.blocks) == 6 and all(len(block.pairs) == 4 for block in comparison.blocks)
    pids = [pid for block in comparison.blocks for pid in block.pids]
    assert len(set(pids)) == 18  # 3 sides x 6 blocks, never reused
    orders = {tuple(pair.order) for block in comparison.blocks for pair in block.pairs}
    assert len(orders) > 1 and all(sorted(order) == [0, 1, 2] for order in orders)
    for block in comparison.blocks:
        assert all(memory["peak_allocated_bytes"] > 0 for memory in block.memory_bytes)
        assert all("peak_nvml_process_bytes" in absent for absent in block.memory_absent)  # a CPU: absent, why


def test_a_one_step_busy_wait_halves_decode_speed_and_is_called_slower(three_sides: PairedRun) -> None:
    comparison = three_sides.cases[0]
    slowed = comparison.estimate(2, "decode_tokens_per_s", 0.95)
    assert slowed is not None
    assert 0.3 < slowed.ratio < 0.75, slowed  # 1 / (1 + 1) = 0.5 on a quiet machine
    verdicts = {(v.side, v.metric): v for v in judge(three_sides)}
    assert verdicts[("slowed", "decode_tokens_per_s")].verdict == SLOWER
    assert verdicts[("slowed", "decode_tokens_per_s")].regression


def test_the_same_code_on_both_sides_is_near_one(three_sides: PairedRun) -> None:
    twin = three_sides.cases[0].estimate(1, "decode_tokens_per_s", 0.95)
    slowed = three_sides.cases[0].estimate(2, "decode_tokens_per_s", 0.95)
    assert twin is not None and slowed is not None
    assert 0.7 < twin.ratio < 1.4 and slowed.ratio < 0.8 * twin.ratio


@pytest.mark.parametrize(("how", "expected"), [(signal.SIGKILL, "exit status -9"), (signal.SIGSTOP, "hung")])
def test_a_worker_that_dies_or_hangs_fails_its_case_and_the_rest_goes_on(
    how: signal.Signals, expected: str, llm_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "PREPARE_TIMEOUT_S", 20.0)
    monkeypatch.setattr(engine, "TURN_TIMEOUT_S", 20.0)
    sides = [Side("reference", sys.executable), Side("candidate", sys.executable)]
    signalled: list[int] = []

    def progress(message: str) -> None:
        if not signalled and ": block 1," in message:  # after the first case of block 1: hit the candidate's worker
            os.kill(current_pids()[1], how)
            signalled.append(current_pids()[1])

    def current_pids() -> list[int]:
        return [p.pid for p in processes.LIVE_WORKERS]

    run = run_paired([CASE, OTHER], sides, QUICK, llm_cache_dir, progress=progress)
    first, second = run.cases
    assert second.error is not None and expected in second.error and str(signalled[0]) in second.error
    assert "its stderr ends" in second.error
    assert first.error is None and len(first.blocks) == 2  # measured on with restarted workers
    assert not any(_alive(pid) for block in first.blocks for pid in block.pids)


@pytest.mark.parametrize("failed_starts", [1, 2], ids=["once: tried again", "twice: the cases left fail"])
def test_workers_that_cannot_start_again_cost_the_cases_left_not_the_comparison(
    failed_starts: int, llm_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_start = engine.start_workers
    calls: list[int] = []

    def start(*args: object, **kwargs: object) -> list[processes.SideWorker]:
        calls.append(1)
        if 1 < len(calls) <= 1 + failed_starts:  # the first block's workers start; then these starts fail
            raise SideError("candidate cannot run a worker: stopped while importing Paddle")
        return real_start(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "start_workers", start)
    sides = [Side("reference", sys.executable), Side("candidate", sys.executable)]
    run = run_paired([CASE], sides, QUICK, llm_cache_dir, progress=quiet)  # returns: nothing raised
    (comparison,) = run.cases
    if failed_starts == 1:
        assert comparison.error is None and len(comparison.blocks) == 2
    else:
        assert len(comparison.blocks) == 1 and comparison.stop_reason == "failed"  # the measured block is kept
        assert comparison.error is not None and "could not start again for block 2" in comparison.error


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_not_a_python_is_refused_with_the_value(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(SideError, match=r"'.*notes.txt' from --reference is not an executable Python interpreter"):
        python_side(str(text_file))


def test_a_python_without_this_project_is_refused_with_the_fix(
    llm_cache_dir: Path, python_without_this_project: str
) -> None:
    sides = [Side("reference", python_without_this_project), Side("candidate", sys.executable)]
    with pytest.raises(SideError, match=r"cannot run a worker: paddle-llm-bench is not installed there"):
        run_paired([CASE], sides, QUICK, llm_cache_dir, progress=quiet)


def test_a_worker_of_another_protocol_is_refused(tmp_path: Path, llm_cache_dir: Path) -> None:
    impostor = tmp_path / "python"
    impostor.write_text(
        f"#!{sys.executable}\nimport sys, json\nsys.stdin.readline()\n"
        'print(json.dumps({"ok": True, "protocol": 99, "package_version": "9.9"}), flush=True)\n'
    )
    impostor.chmod(0o755)
    sides = [Side("reference", str(impostor)), Side("candidate", sys.executable)]
    with pytest.raises(
        SideError, match=rf"paddle-llm-bench 9.9 with worker protocol 99, this one speaks {PROTOCOL_VERSION}"
    ):
        run_paired([CASE], sides, QUICK, llm_cache_dir, progress=quiet)


@pytest.mark.parametrize(("stop", "reason"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_or_sigterm_ends_the_workers_and_keeps_what_was_measured(
    stop: signal.Signals, reason: str, tmp_path: Path, llm_cache_dir: Path
) -> None:
    out_dir = tmp_path / "out"
    command = [sys.executable, "-m", "paddle_llm_bench.cli", "paired", "--reference", sys.executable]
    command += ["--max-new-tokens", "8", "--prompt-tokens", "8", "--device", "cpu", "--cache-dir", str(llm_cache_dir)]
    command += ["--pairs-per-block", "2", "--min-blocks", "2", "--max-blocks", "100", "--out-dir", str(out_dir)]
    command += ["--target-half-width", "0.01"]
    # As in a terminal, Ctrl-C must reach it: a test run started in the background (a non-interactive shell's
    # `cmd &`, as some CI runners do) ignores SIGINT, and Python keeps an inherited SIG_IGN; then no Ctrl-C
    # could stop the command, whatever it does (the cause of this test's earlier hangs).
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    saved = out_dir / "paired.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (saved.is_file() and len(_blocks(saved)) >= 1):
        time.sleep(0.5)
    assert process.poll() is None, process.communicate()
    process.send_signal(stop)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert "interrupted: what was measured is saved" in err
    run = load_paired_run(saved)
    assert run.interrupted and len(run.cases[0].blocks) >= 1
    assert f"interrupted ({reason})" in run.cases[0].stop_reason
    assert (out_dir / "comparison.txt").is_file()  # reports written from what was measured
    time.sleep(1)
    assert not any(_alive(pid) for block in run.cases[0].blocks for pid in block.pids)


@pytest.mark.parametrize("moment", ["the workers' start", "the model's load and warm-up"])
def test_a_stop_ends_the_command_within_seconds(tmp_path: Path, llm_cache_dir: Path, moment: str) -> None:
    """SIGTERM while the coordinator waits for workers that import Paddle, or that load the model and warm up
    (40 warm-up rounds of 64 tokens: ~20 s here); a stop during a turn is the Ctrl-C test above."""
    command = [sys.executable, "-m", "paddle_llm_bench.cli", "paired", "--reference", sys.executable, "--device"]
    command += ["cpu", "--cache-dir", str(llm_cache_dir), "--out-dir", str(tmp_path / "out")]
    command += ["--max-new-tokens", "64", "--warmup-rounds", "40"]
    marker = "saving to" if moment == "the workers' start" else "workers ready after"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if marker in line:
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    _out, err = process.communicate(timeout=60)
    assert time.monotonic() - stopped < 5, err  # not after the workers' start, a model load or the warm-up
    assert process.returncode == 2, err
    if moment == "the workers' start":
        assert "interrupted while starting the workers: nothing was measured" in err
    else:
        assert "interrupted: what was measured is saved" in err
        assert json.loads((tmp_path / "out" / "paired.json").read_text())["interrupted"] is True


def _blocks(path: Path) -> list[object]:
    try:
        return list(json.loads(path.read_text())["cases"][0]["blocks"])
    except (OSError, ValueError, KeyError, IndexError):
        return []
