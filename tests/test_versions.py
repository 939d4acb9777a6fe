"""`paddle-llm-bench versions`: input checks, the alternating schedule, environment names and markers,
merging passes, the run loop on fake environments, and one end-to-end run with two real Paddle versions.

Only the last test (marked slow) installs anything: two environments, about 1.5 minutes each the
first time; point PADDLE_LLM_BENCH_ENV_DIR at a persistent folder to keep them between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench import versions
from paddle_llm_bench.baselines import load_saved_run
from paddle_llm_bench.cli import main as cli_main
from paddle_llm_bench.versions import (
    CPU_SUITE_ARGS,
    DEFAULT_SUITE_ARGS,
    MARKER_NAME,
    Build,
    EnvSpec,
    Plan,
    VersionsError,
)

REPO = Path(__file__).resolve().parents[1]
CPU = Build("paddlepaddle", "cpu", None)
CASES = ("tiny-float32-greedy-new32-bs1-prompt32", "tiny-float32-sampling-new32-bs1-prompt32")
MIB = 1024 * 1024


def spec(version: str = "3.3.1", **changes: Any) -> EnvSpec:
    fields = {
        "paddle_version": version,
        "package": "paddlepaddle",
        "build": "cpu",
        "index_url": None,
        "python": "3.11",
        "project": "/work/checkout",
        "requirements": "abc123",
    }
    return EnvSpec(**{**fields, **changes})


def fake_env(root: Path, name: str = "paddle-3.3.1-cpu", marker: dict[str, Any] | None = None) -> Path:
    """An environment directory: an interpreter file, and a marker when given."""
    env = root / name
    python = versions.env_python(env)
    python.parent.mkdir(parents=True)
    python.write_text("")
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    if marker is not None:
        (env / MARKER_NAME).write_text(json.dumps(marker))
    return env


def extra_info(case_id: str, decode: Sequence[float], peak: int, digest: str | None, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        "format_version": 1,
        "case": {"model": "tiny"},
        "case_id": case_id,
        "device": "cpu (Test CPU)",
        "rounds": len(decode),
        "warmup_rounds": 2,
        "metrics": {"decode_tokens_per_s": {"unit": "tokens/s", "median": sorted(decode)[len(decode) // 2]}},
        "samples": {
            "decode_tokens_per_s": list(decode),
            "ttft_ms": [5.0 + rng.random() * 0.05 for _ in decode],
            "tpot_ms": [1000.0 / d for d in decode],
        },
        "inter_token_latency_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0, "n": 3 * len(decode)},
        "inter_token_ms_by_round": [[1000.0 / d] * 3 for d in decode],
        "memory_bytes": {"peak_allocated_bytes": peak, "peak_rss_bytes": 600 * MIB},
        "absent": {} if digest else {"output_digest": "sampling draws random tokens"},
        "output_digest": digest,
    }


def saved_run(
    version: str, decode_center: float, seed: int = 0, rounds: int = 10, peak: int = 7 * MIB
) -> dict[str, Any]:
    """A --benchmark-json document as the suite writes it (two cases, per-round data saved)."""
    rng = random.Random(seed)
    benchmarks = []
    for case_id in CASES:
        decode = [decode_center * (1 + rng.gauss(0, 0.01)) for _ in range(rounds)]
        digest = "sha256:00112233aabbccdd" if "greedy" in case_id else None
        data = [32 / d for d in decode]
        benchmarks.append(
            {
                "group": "tiny-float32",
                "name": f"test_generation[{case_id}]",
                "extra_info": extra_info(case_id, decode, peak, digest, seed),
                "stats": {"min": min(data), "max": max(data), "rounds": rounds, "data": data, "iterations": 1},
            }
        )
    return {
        "machine_info": {
            "paddle_llm_bench": {"paddle_version": version, "hardware_fingerprint": "cpu:Test CPU:2cores"}
        },
        "benchmarks": benchmarks,
        "datetime": "2026-01-01T00:00:00",
        "version": "5.1.0",
    }


# Input.


@pytest.mark.parametrize(
    ("values", "expected_versions", "expected_pytest"),
    [
        (["3.0.0", "3.3.1"], ["3.0.0", "3.3.1"], []),
        (["3.0.0", "3.3.1", "--", "--llm-rounds", "5"], ["3.0.0", "3.3.1"], ["--llm-rounds", "5"]),
        # argparse drops the "--" on some Python versions: the pytest arguments begin at the first option
        (["3.0.0", "3.3.1", "-k", "greedy"], ["3.0.0", "3.3.1"], ["-k", "greedy"]),
        (["3.0.0", "3.3.1", "--", "-k", "x", "--", "y"], ["3.0.0", "3.3.1"], ["-k", "x", "--", "y"]),
    ],
)
def test_versions_and_pytest_arguments_are_split_at_the_first_option(
    values: list[str], expected_versions: list[str], expected_pytest: list[str]
) -> None:
    assert versions.split_versions(values) == (expected_versions, expected_pytest)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["3.3.1"], r"at least two Paddle versions to compare, got 1 \(3.3.1\)"),
        ([], r"at least two Paddle versions to compare, got 0 \(none\)"),
        (["3.0.0", "three"], r"invalid Paddle version 'three'.*pip index versions paddlepaddle"),
        (["3.0.0", "3.3.1", "3.0"], r"Paddle version 3.0 is given twice \(it is '3.0.0'\)"),
    ],
)
def test_bad_version_lists_are_refused_with_the_value(texts: list[str], message: str) -> None:
    with pytest.raises(VersionsError, match=message):
        versions.check_versions(texts)


def test_the_command_line_refuses_a_single_version_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["versions", "3.3.1", "--repo", str(REPO)]) == 2
    assert "at least two Paddle versions" in capsys.readouterr().err


def test_rounds_per_version_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli_main(["versions", "3.0.0", "3.3.1", "--rounds-per-version", "0"])
    assert stop.value.code == 2
    assert "invalid value 0 from --rounds-per-version: must be >= 1" in capsys.readouterr().err


def test_builds_from_the_gpu_options() -> None:
    assert versions.make_build(False, None, None) == CPU
    gpu = versions.make_build(True, "cu123", None)
    assert gpu == Build("paddlepaddle-gpu", "cu123", "https://www.paddlepaddle.org.cn/packages/stable/cu123/")
    assert versions.make_build(False, "cu118", None).is_gpu  # --cuda implies --gpu
    assert versions.make_build(True, "cu126", "https://mirror/x/").index_url == "https://mirror/x/"
    with pytest.raises(VersionsError, match=r"--gpu needs --cuda TAG"):
        versions.make_build(True, None, None)
    with pytest.raises(VersionsError, match=r"invalid CUDA tag '12.3' from --cuda: expected cuNNN"):
        versions.make_build(True, "12.3", None)


def test_environment_names_carry_version_and_build() -> None:
    assert versions.env_name("3.3.1", CPU) == "paddle-3.3.1-cpu"
    assert versions.env_name("3.0.0", versions.make_build(True, "cu123", None)) == "paddle-3.0.0-cu123"
    mirror = versions.env_name("3.3.1", Build("paddlepaddle", "cpu", "https://mirror/simple/"))
    other = versions.env_name("3.3.1", Build("paddlepaddle", "cpu", "https://other/simple/"))
    assert re.fullmatch(r"paddle-3\.3\.1-cpu-index[0-9a-f]{8}", mirror) and mirror != other


def test_the_checkout_is_found_from_a_subdirectory(tmp_path: Path) -> None:
    assert versions.find_repo(REPO / "src" / "paddle_llm_bench") == REPO
    with pytest.raises(VersionsError, match=r"neither .* nor a parent holds benchmarks/ and conftest.py.*--repo"):
        versions.find_repo(tmp_path)


def test_the_default_sweep_is_small_and_user_arguments_replace_it() -> None:
    assert versions.suite_arguments([], CPU) == [*DEFAULT_SUITE_ARGS, *CPU_SUITE_ARGS]
    assert "--llm-dtype" not in versions.suite_arguments([], versions.make_build(True, "cu123", None))
    assert versions.suite_arguments(["--llm-rounds", "5"], CPU) == ["--llm-rounds", "5"]
    command = versions.pytest_command(Path("/env/bin/python"), Path("/out/01_paddle-3.0.0.json"), ["-x"])
    assert command[:4] == ["/env/bin/python", "-m", "pytest", "benchmarks"]
    assert command[command.index("--benchmark-json") :][:2] == ["--benchmark-json", "/out/01_paddle-3.0.0.json"]
    assert {"--llm-no-gate", "--benchmark-save-data", "no:cacheprovider"} <= set(command) and command[-1] == "-x"


def test_pip_installs_the_checkout_editable_with_core_dependencies_and_the_asked_paddle() -> None:
    command = versions.pip_install_command(Path("/e/bin/python"), "3.0.0", CPU, Path("/checkout"))
    assert command[-3:] == ["paddlepaddle==3.0.0", "-e", "/checkout"]  # not "/checkout[cpu]": that pins 3.3.1
    gpu = versions.pip_install_command(
        Path("/e/bin/python"), "3.0.0", versions.make_build(True, "cu123", None), Path("/c")
    )
    assert "paddlepaddle-gpu==3.0.0" in gpu
    assert gpu[-2:] == ["--extra-index-url", "https://www.paddlepaddle.org.cn/packages/stable/cu123/"]


# The schedule.


def test_runs_alternate_between_versions_pass_after_pass() -> None:
    runs = versions.plan_runs(["3.0.0", "3.3.1"], 2)
    assert [(r.number, r.version, r.pass_number) for r in runs] == [
        (1, "3.0.0", 1),
        (2, "3.3.1", 1),
        (3, "3.0.0", 2),
        (4, "3.3.1", 2),
    ]
    assert [r.stem(versions.number_width(runs)) for r in runs] == [
        "01_paddle-3.0.0",
        "02_paddle-3.3.1",
        "03_paddle-3.0.0",
        "04_paddle-3.3.1",
    ]
    three = versions.plan_runs(["3.0.0", "3.1.1", "3.3.1"], 3)
    assert [r.version for r in three] == ["3.0.0", "3.1.1", "3.3.1"] * 3
    with pytest.raises(VersionsError, match="must be >= 1"):
        versions.plan_runs(["3.0.0", "3.3.1"], 0)


def test_file_numbers_widen_beyond_99_runs() -> None:
    runs = versions.plan_runs([f"3.{i}.0" for i in range(4)], 30)
    assert versions.number_width(runs) == 3 and runs[0].stem(3) == "001_paddle-3.0.0"


# Environments and markers.


def test_a_missing_environment_is_made(tmp_path: Path) -> None:
    assert versions.env_state(tmp_path / "paddle-3.3.1-cpu", spec())[0] == "missing"


def test_a_finished_environment_with_a_matching_marker_is_reused(tmp_path: Path) -> None:
    env = fake_env(tmp_path, marker=spec().as_marker())
    assert versions.env_state(env, spec()) == ("ready", "reused")


def test_a_half_built_environment_is_rebuilt(tmp_path: Path) -> None:
    env = fake_env(tmp_path)
    state, why = versions.env_state(env, spec())
    assert state == "rebuild" and "half-built" in why and MARKER_NAME in why


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"python": "3.10"}, "python '3.10' -> '3.11'"),
        ({"requirements": "old"}, "requirements 'old' -> 'abc123'"),
        ({"project": "/elsewhere"}, "project '/elsewhere' -> '/work/checkout'"),
    ],
)
def test_an_environment_made_for_something_else_is_rebuilt(tmp_path: Path, changes: dict[str, str], why: str) -> None:
    env = fake_env(tmp_path, marker={**spec().as_marker(), **changes})
    state, reason = versions.env_state(env, spec())
    assert state == "rebuild" and why in reason


def test_an_unreadable_marker_means_rebuilding(tmp_path: Path) -> None:
    env = fake_env(tmp_path)
    (env / MARKER_NAME).write_text("{not json")
    assert versions.env_state(env, spec())[0] == "rebuild"


def test_the_marker_is_written_atomically_and_read_back(tmp_path: Path) -> None:
    env = fake_env(tmp_path)
    versions.write_marker(env, spec())
    assert versions.env_state(env, spec()) == ("ready", "reused")
    assert not [p for p in env.iterdir() if p.name.endswith(".tmp")]
    assert json.loads((env / MARKER_NAME).read_text())["paddle_version"] == "3.3.1"


class FakeInstaller:
    """Stands in for `python -m venv` and pip: makes the interpreter file, or fails with pip's words."""

    def __init__(self, fail_with: str | None = None, prints: str = "3.3.1") -> None:
        self.commands: list[list[str]] = []
        self.fail_with = fail_with
        self.prints = prints

    def run_logged(self, command: Sequence[str], log: Path, env: object, timeout_s: float) -> int:
        self.commands.append(list(command))
        if "venv" in command:
            python = versions.env_python(Path(command[-1]))
            python.parent.mkdir(parents=True, exist_ok=True)
            python.write_text("")
            (python.parent.parent / "pyvenv.cfg").write_text("home = /usr/bin\n")
            return 0
        if self.fail_with is not None:
            log.write_text(log.read_text() + self.fail_with)
            return 1
        return 0

    def import_check(self, env: Path) -> Any:
        return argparse.Namespace(returncode=0, stdout=f"some warning\n{self.prints}\n", stderr="")


def test_a_half_built_environment_is_deleted_then_made_and_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = fake_env(tmp_path)
    (env / "leftover").write_text("from the interrupted attempt")
    installer = FakeInstaller()
    monkeypatch.setattr(versions, "_run_logged", installer.run_logged)
    monkeypatch.setattr(versions, "run_import_check", installer.import_check)
    assert versions.ensure_env(tmp_path, "3.3.1", CPU, spec()) == env
    assert not (env / "leftover").exists()
    assert versions.env_state(env, spec()) == ("ready", "reused")
    out = capsys.readouterr().out
    assert "half-built" in out and "creating env for paddle 3.3.1" in out
    assert next(c for c in installer.commands if "pip" in c)[-3:] == ["paddlepaddle==3.3.1", "-e", "/work/checkout"]
    # the second time nothing is installed
    installer.commands.clear()
    versions.ensure_env(tmp_path, "3.3.1", CPU, spec())
    assert installer.commands == [] and "reused" in capsys.readouterr().out


def test_a_folder_that_is_not_a_virtual_environment_is_never_deleted(tmp_path: Path) -> None:
    precious = tmp_path / "paddle-3.3.1-cpu"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(VersionsError, match=r"is not a virtual environment \(no pyvenv.cfg\): not deleting it"):
        versions.ensure_env(tmp_path, "3.3.1", CPU, spec())
    assert (precious / "thesis.tex").is_file()


def test_a_version_pip_cannot_find_is_named_with_the_ones_it_offers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pip_says = (
        "ERROR: Could not find a version that satisfies the requirement paddlepaddle==3.9.9 "
        "(from versions: 2.6.2, 3.0.0, 3.3.1)\nERROR: No matching distribution found for paddlepaddle==3.9.9\n"
    )
    installer = FakeInstaller(fail_with=pip_says)
    monkeypatch.setattr(versions, "_run_logged", installer.run_logged)
    with pytest.raises(VersionsError) as error:
        versions.ensure_env(tmp_path, "3.9.9", CPU, spec("3.9.9"))
    message = str(error.value)
    assert "paddle 3.9.9" in message and "it offers: 2.6.2, 3.0.0, 3.3.1" in message
    assert "pip index versions paddlepaddle" in message and "paddle-3.9.9-cpu.log" in message
    assert versions.env_state(tmp_path / "paddle-3.9.9-cpu", spec("3.9.9"))[0] == "rebuild"  # no marker


def test_an_environment_whose_paddle_reports_another_version_is_not_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installer = FakeInstaller(prints="3.3.0")
    monkeypatch.setattr(versions, "_run_logged", installer.run_logged)
    monkeypatch.setattr(versions, "run_import_check", installer.import_check)
    with pytest.raises(VersionsError, match=r"does not work: .* printed '3.3.0'"):
        versions.ensure_env(tmp_path, "3.3.1", CPU, spec())
    assert not (tmp_path / "paddle-3.3.1-cpu" / MARKER_NAME).exists()


def test_version_matching_and_the_printed_version() -> None:
    assert versions.imported_version("W0101 warning\n3.0.0\n\n") == "3.0.0"
    assert versions.version_matches("3.3.0", "3.3") and versions.version_matches("3.0.0rc1", "3.0.0-rc1")
    assert not versions.version_matches("3.3.0", "3.3.1") and not versions.version_matches("", "3.3.1")


def test_the_index_listing_is_read_and_missing_versions_named() -> None:
    output = "paddlepaddle (3.3.1)\nAvailable versions: 3.3.1, 3.3.0, 3.0.0, 3.0.0rc1\n  INSTALLED: 3.3.1\n"
    available = versions.available_versions(output)
    assert available == ["3.3.1", "3.3.0", "3.0.0", "3.0.0rc1"]
    assert versions.missing_versions(["3.0.0", "3.3", "3.9.9", "3.0.0rc1"], available) == ["3.9.9"]
    assert versions.available_versions("WARNING: something else") is None


def test_an_unknown_version_stops_before_any_environment_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def index(command: list[str], timeout_s: float, env: object) -> Any:
        assert command[-4:] == ["index", "versions", "--pre", "paddlepaddle"]
        return argparse.Namespace(
            returncode=0,
            stdout="paddlepaddle (3.3.1)\nAvailable versions: 3.3.1, 3.0.0\n",
            stderr="WARNING: Retrying ... Failed to resolve 'mirror.example'\n",
        )

    monkeypatch.setattr(versions, "run_captured", index)
    env_dir = tmp_path / "envs"
    status = cli_main(["versions", "3.0.0", "3.9.9", "--repo", str(REPO), "--env-dir", str(env_dir)])
    assert status == 2
    error = capsys.readouterr().err
    assert "paddlepaddle 3.9.9 not found" in error and "Available: 3.3.1, 3.0.0" in error
    assert "pip index versions paddlepaddle" in error and "pip said: WARNING: Retrying" in error
    assert not env_dir.exists()


# Judging and merging runs.


def test_a_busy_machine_is_warned_about() -> None:
    assert versions.busy_warning(0.3, 2) is None and versions.busy_warning(None, 2) is None
    warning = versions.busy_warning(2.4, 2)
    assert warning is not None and "load average 2.4 on 2 cores" in warning


def test_runs_are_judged_by_exit_status_results_and_recorded_version() -> None:
    document = saved_run("3.3.1", 300.0)
    assert versions.judge_run(0, document, "3.3.1") == (2, "")
    assert versions.judge_run(1, document, "3.3.1") == (2, "some cases failed")
    assert versions.judge_run(0, document, "3.0.0")[1].startswith("unusable: the run records Paddle '3.3.1'")
    assert versions.judge_run(3, None, "3.3.1") == (0, "unusable: pytest exited 3 without writing results")
    assert versions.judge_run(1, {"benchmarks": []}, "3.3.1")[1].startswith("unusable")
    assert versions.judge_run(2, document, "3.3.1")[1] == "unusable: pytest exited 2"


def test_merging_passes_concatenates_rounds_and_recomputes_summaries() -> None:
    first, second = saved_run("3.0.0", 300.0, seed=1), saved_run("3.0.0", 320.0, seed=2, peak=8 * MIB)
    second["benchmarks"][1]["extra_info"]["output_digest"] = "sha256:ffffffffffffffff"  # sampling: both None before
    merged = versions.merge_passes([first, second], ["01_paddle-3.0.0.json", "03_paddle-3.0.0.json"])
    assert merged["paddle_llm_bench_versions"] == {
        "merged_from": ["01_paddle-3.0.0.json", "03_paddle-3.0.0.json"],
        "passes": 2,
    }
    assert merged["machine_info"] == first["machine_info"]
    greedy = merged["benchmarks"][0]
    info = greedy["extra_info"]
    a, b = (doc["benchmarks"][0]["extra_info"] for doc in (first, second))
    assert (
        info["samples"]["decode_tokens_per_s"]
        == a["samples"]["decode_tokens_per_s"] + b["samples"]["decode_tokens_per_s"]
    )
    assert info["rounds"] == 20 and info["merged_passes"] == 2
    assert (
        info["metrics"]["decode_tokens_per_s"]["n"] == 20
        and info["metrics"]["decode_tokens_per_s"]["unit"] == "tokens/s"
    )
    assert len(info["inter_token_ms_by_round"]) == 20 and info["inter_token_latency_ms"]["n"] == 60
    assert info["memory_bytes"]["peak_allocated_bytes"] == 8 * MIB  # the larger peak
    assert info["output_digest"] == "sha256:00112233aabbccdd"  # both passes agree
    stats = greedy["stats"]
    assert stats["rounds"] == 20 and len(stats["data"]) == 20 and stats["min"] == min(stats["data"])
    assert {"median", "mean", "stddev", "iqr", "ops"} <= set(stats)
    sampling = merged["benchmarks"][1]["extra_info"]
    assert sampling["output_digest"] is None and "the passes disagree" in sampling["absent"]["output_digest"]
    assert first["benchmarks"][0]["extra_info"]["rounds"] == 10  # inputs untouched


def test_merging_keeps_cases_missing_from_some_passes_and_refuses_mixed_versions() -> None:
    first, second = saved_run("3.0.0", 300.0), saved_run("3.0.0", 300.0, seed=3)
    second["benchmarks"] = second["benchmarks"][:1]
    merged = versions.merge_passes([first, second], ["a", "b"])
    assert [b["extra_info"]["rounds"] for b in merged["benchmarks"]] == [20, 10]
    with pytest.raises(ValueError, match=r"different Paddle versions \(3.0.0, 3.3.1\)"):
        versions.merge_passes([first, saved_run("3.3.1", 300.0)], ["a", "b"])


def test_a_merged_run_is_a_saved_run_that_compare_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for version, center in (("3.0.0", 300.0), ("3.3.1", 360.0)):
        merged = versions.merge_passes([saved_run(version, center, seed=1), saved_run(version, center, seed=2)], ["x"])
        path = tmp_path / f"merged_paddle-{version}.json"
        path.write_text(json.dumps(merged))
        paths.append(path)
        fingerprint, by_case, facts = load_saved_run(path)
        assert fingerprint == "cpu:Test CPU:2cores" and list(by_case) == list(CASES)
        assert facts["paddle_version"] == version
    assert cli_main(["compare", *map(str, paths)]) == 0
    table = capsys.readouterr().out
    assert "merged_paddle-3.3.1 (paddle 3.3.1)" in table and "faster" in table


# The run loop on fake environments: a "python" that writes a canned saved run (or fails).

FAKE_PYTHON = """#!{python}
import sys
args = sys.argv[1:]
print("[paddle-llm-bench] loading tiny as float32")
print("an ordinary pytest line")
if {fail}:
    print("boom: cannot import paddle")
    sys.exit(3)
out = args[args.index("--benchmark-json") + 1]
with open(out, "w") as handle:
    handle.write({document!r})
sys.exit(0)
"""


def fake_suite_env(root: Path, version: str, center: float, fail: bool = False) -> Path:
    env = root / f"paddle-{version}-cpu"
    python = versions.env_python(env)
    python.parent.mkdir(parents=True)
    document = json.dumps(saved_run(version, center, seed=int(center)))
    python.write_text(FAKE_PYTHON.format(python=sys.executable, fail=fail, document=document))
    python.chmod(0o755)
    return env


def plan_for(tmp_path: Path, version_list: list[str], passes: int) -> Plan:
    return Plan(
        versions=version_list,
        build=CPU,
        repo=REPO,
        source=REPO,
        env_dir=tmp_path / "envs",
        out_dir=tmp_path / "out",
        runs=versions.plan_runs(version_list, passes),
        suite_args=["--llm-rounds", "5"],
    )


@pytest.mark.skipif(sys.platform == "win32", reason="the fake interpreter is a script with a #! line")
def test_runs_alternate_save_merge_and_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_for(tmp_path, ["3.0.0", "3.3.1"], 2)
    plan.out_dir.mkdir()
    envs = {"3.0.0": fake_suite_env(tmp_path, "3.0.0", 300.0), "3.3.1": fake_suite_env(tmp_path, "3.3.1", 360.0)}
    assert versions.measure_and_compare(plan, envs) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in plan.out_dir.iterdir())
    for stem in ("01_paddle-3.0.0", "02_paddle-3.3.1", "03_paddle-3.0.0", "04_paddle-3.3.1"):
        assert f"{stem}.json" in names and f"{stem}.log" in names
    assert {"merged_paddle-3.0.0.json", "merged_paddle-3.3.1.json", "comparison.txt", "comparison.md"} <= set(names)
    assert {"comparison.json", "passes.md"} <= set(names)
    order = [line for line in out.splitlines() if re.match(r"\[versions\] run \d/4: paddle \S+, pass \d\.\.\.", line)]
    assert [line.split()[4].rstrip(",") for line in order] == ["3.0.0", "3.3.1", "3.0.0", "3.3.1"]
    assert "    [paddle-llm-bench] loading tiny as float32" in out and "an ordinary pytest line" not in out
    assert "merged_paddle-3.0.0 (paddle 3.0.0)" in out and "merged_paddle-3.3.1 (paddle 3.3.1)" in out
    assert "faster" in out
    assert (plan.out_dir / "comparison.txt").read_text() in out
    markdown = (plan.out_dir / "comparison.md").read_text()
    assert "merged_paddle-3.3.1 (paddle 3.3.1)" in markdown
    passes = (plan.out_dir / "passes.md").read_text()
    assert all(f"0{n}_paddle-" in passes for n in range(1, 5))
    log = (plan.out_dir / "01_paddle-3.0.0.log").read_text()
    assert "-m pytest benchmarks" in log and "an ordinary pytest line" in log


@pytest.mark.skipif(sys.platform == "win32", reason="the fake interpreter is a script with a #! line")
def test_a_failing_run_is_reported_with_its_log_and_the_rest_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_for(tmp_path, ["3.0.0", "3.1.1", "3.3.1"], 1)
    plan.out_dir.mkdir()
    envs = {
        "3.0.0": fake_suite_env(tmp_path, "3.0.0", 300.0),
        "3.1.1": fake_suite_env(tmp_path, "3.1.1", 330.0, fail=True),
        "3.3.1": fake_suite_env(tmp_path, "3.3.1", 360.0),
    }
    assert versions.measure_and_compare(plan, envs) == 1
    captured = capsys.readouterr()
    assert re.search(
        r"run 2/3: paddle 3\.1\.1, pass 1: unusable: pytest exited 3 .*02_paddle-3\.1\.1\.log", captured.out
    )
    assert "boom: cannot import paddle" in captured.err  # the log's tail
    assert "no usable run, left out of the comparison" in captured.out
    assert "01_paddle-3.0.0 (paddle 3.0.0)" in captured.out and "03_paddle-3.3.1 (paddle 3.3.1)" in captured.out
    assert (plan.out_dir / "comparison.md").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="the fake interpreter is a script with a #! line")
def test_with_one_version_left_nothing_is_compared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_for(tmp_path, ["3.0.0", "3.3.1"], 1)
    plan.out_dir.mkdir()
    envs = {"3.0.0": fake_suite_env(tmp_path, "3.0.0", 300.0), "3.3.1": fake_suite_env(tmp_path, "3.3.1", 1, fail=True)}
    assert versions.measure_and_compare(plan, envs) == 1
    assert "fewer than two versions have results" in capsys.readouterr().out
    assert not (plan.out_dir / "comparison.md").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="the fake interpreter is a script with a #! line")
def test_show_output_prints_every_line_of_the_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_for(tmp_path, ["3.0.0", "3.3.1"], 1)
    plan.out_dir.mkdir()
    envs = {"3.0.0": fake_suite_env(tmp_path, "3.0.0", 300.0), "3.3.1": fake_suite_env(tmp_path, "3.3.1", 300.0)}
    assert versions.measure_and_compare(plan, envs, show_output=True) == 0
    out = capsys.readouterr().out
    assert out.count("    an ordinary pytest line") == 2
    assert not (plan.out_dir / "passes.md").exists()  # one pass: the pass files are what is compared
    assert "01_paddle-3.0.0 (paddle 3.0.0)" in out


# End to end: two real Paddle versions on the tiny model.


@pytest.fixture(scope="session")
def version_env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$PADDLE_LLM_BENCH_ENV_DIR when set (CI caches it), else a fresh folder for this session."""
    configured = os.environ.get(versions.ENV_DIR_VARIABLE)
    return Path(configured) if configured else tmp_path_factory.mktemp("version-envs")


@pytest.mark.slow
def test_two_real_paddle_versions_end_to_end(
    tmp_path: Path,
    version_env_dir: Path,
    llm_cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`versions 3.0.0 3.3.1`, 2 passes each, the default sweep: about 3 minutes plus 1.5 per new environment."""
    monkeypatch.setenv("PADDLE_LLM_BENCH_CACHE", str(llm_cache_dir))  # the suite runs' model cache
    out_dir = tmp_path / "out"
    started = time.monotonic()
    status = cli_main(
        [
            "versions",
            "3.0.0",
            "3.3.1",
            "--repo",
            str(REPO),
            "--env-dir",
            str(version_env_dir),
            "--out-dir",
            str(out_dir),
        ]
    )
    captured = capsys.readouterr()
    with capsys.disabled():
        print(f"\n{captured.out}\n(versions took {time.monotonic() - started:.0f} s)")
    assert status == 0, captured.out + captured.err
    for number, version in ((1, "3.0.0"), (2, "3.3.1"), (3, "3.0.0"), (4, "3.3.1")):
        document = json.loads((out_dir / f"0{number}_paddle-{version}.json").read_text())
        assert document["machine_info"]["paddle_llm_bench"]["paddle_version"] == version
        assert {b["extra_info"]["case_id"] for b in document["benchmarks"]} == set(CASES)
    for version in ("3.0.0", "3.3.1"):
        merged = json.loads((out_dir / f"merged_paddle-{version}.json").read_text())
        assert merged["machine_info"]["paddle_llm_bench"]["paddle_version"] == version
        assert all(b["extra_info"]["rounds"] == 40 for b in merged["benchmarks"])  # 2 passes x 20 rounds
    table = (out_dir / "comparison.txt").read_text()
    assert table in captured.out
    for case_id in CASES:
        assert case_id in table
    assert "merged_paddle-3.0.0 (paddle 3.0.0)" in table and "merged_paddle-3.3.1 (paddle 3.3.1)" in table
    assert table.index("(paddle 3.0.0)") < table.index("(paddle 3.3.1)")  # the first version is the reference
    assert "merged_paddle-3.3.1 (paddle 3.3.1)" in (out_dir / "comparison.md").read_text()
    assert (out_dir / "passes.md").is_file() and list((out_dir / "plots").glob("*.png"))
    # the environments are now reused without pip
    for version in ("3.0.0", "3.3.1"):
        plan = versions.make_plan(
            argparse.Namespace(
                versions=["3.0.0", "3.3.1"],
                gpu=False,
                cuda=None,
                index_url=None,
                repo=REPO,
                env_dir=version_env_dir,
                out_dir=out_dir,
                rounds_per_version=1,
            )
        )
        env = version_env_dir / f"paddle-{version}-cpu"
        assert versions.env_state(env, versions.env_spec(plan, version)) == ("ready", "reused")
