"""The gate end to end through pytest: record a baseline, then a real slowdown fails the run, and a
corrupt baseline fails it with the fix while the measured results are still saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # every test here runs real pytest sessions in subprocesses

BENCHMARK = """
from paddle_llm_bench.core.config import Case

def test_generation(llm_case: Case, llm_measure) -> None:
    llm_measure(llm_case)
"""

# Makes every decoding step 30 ms slower (about 5x for the tiny model) with a busy-wait: this test is
# about the plugin's exit code and messages, so the slowdown must stand out of this VM's noise even
# while other work runs (run() also lifts the CV rule and loosens alpha for the same reason: the
# stored-baseline gate's sensitivity is measured in docs/gate.md, "How well it works", not here).
SLOWDOWN_CONFTEST = """
import time
import paddle_llm_bench.runtime.suite as suite_module

_load_model = suite_module.load_model

def _slowed(*args, **kwargs):
    loaded = _load_model(*args, **kwargs)
    def spin(*_):
        deadline = time.perf_counter_ns() + 30_000_000
        while time.perf_counter_ns() < deadline:
            pass
    loaded.model.register_forward_post_hook(spin)
    return loaded

suite_module.load_model = _slowed
# A busy test machine must not turn the injected slowdown inconclusive (that rule has its own tests).
suite_module.host_load = lambda: {"busy": ""}
"""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def run(pytester: pytest.Pytester, cache_dir: Path, *extra: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p",
        "paddle_llm_bench.plugin",
        "-p",
        "no:cacheprovider",
        "--llm-dtype",
        "float32",
        "--llm-decoding",
        "greedy",
        "--llm-max-new-tokens",
        "24",
        "--llm-batch-size",
        "1",
        "--llm-prompt-tokens",
        "16",
        "--llm-rounds",
        "5",
        "--llm-warmup-rounds",
        "1",
        "--llm-cache-dir",
        str(cache_dir),
        "--llm-baseline-dir",
        str(pytester.path / "baselines"),
        "--llm-gate-max-cv",
        "1000",
        "--llm-gate-alpha",
        "0.2",
        *extra,
    )


def saved_runs(pytester: pytest.Pytester) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(pytester.path.glob(".benchmarks/*/*.json"))]


def test_baseline_then_slowdown_fails_with_the_metric_named(pytester: pytest.Pytester, cache_dir: Path) -> None:
    pytester.makepyfile(test_generation=BENCHMARK)
    first = run(pytester, cache_dir, "--llm-baseline-update")
    assert first.ret == 0, first.stdout.str()
    first.stdout.fnmatch_lines(
        ["*cases without baseline: tiny-float32-greedy-new24-bs1-prompt16*", "*baseline updated:*"]
    )
    baseline_files = list((pytester.path / "baselines").glob("*.json"))
    assert len(baseline_files) == 1

    # One baseline run cannot show how much runs move (this VM once ran the same code 25 % slower a minute
    # later): speed is not judged, and says so, at the gate's default alpha.
    one = run(pytester, cache_dir, "--llm-gate-alpha", "0.01")
    assert one.ret == 0, one.stdout.str()
    one.stdout.fnmatch_lines(["*speed NOT judged for 1 case(s): run-to-run noise unknown*"])

    for _ in range(2):  # three runs of this session: a t-test on 2 dof
        assert run(pytester, cache_dir, "--llm-baseline-update").ret == 0
    same = run(pytester, cache_dir, "--llm-gate-alpha", "0.01")
    assert same.ret == 0, same.stdout.str()
    same.stdout.fnmatch_lines(["*1 case(s) compared: 0 regression(s)*"])
    assert "speed NOT judged" not in same.stdout.str()

    pytester.makeconftest(SLOWDOWN_CONFTEST)
    slowed = run(pytester, cache_dir, "--benchmark-autosave")
    assert slowed.ret == 1, slowed.stdout.str()
    output = slowed.stdout.str()
    assert "REGRESSION: tiny-float32-greedy-new24-bs1-prompt16: decode_tokens_per_s slower" in output
    assert "confirmed by re-measurement" in output
    assert "re-measuring tiny-float32-greedy-new24-bs1-prompt16" in output
    saved = saved_runs(pytester)
    assert len(saved) == 1  # the failing run's measurements are saved all the same
    verdicts = saved[0]["paddle_llm_bench_gate"]
    assert any(v["regression"] and v["metric"] == "decode_tokens_per_s" for v in verdicts)  # type: ignore[union-attr]


def test_a_corrupt_baseline_fails_with_the_fix_and_loses_nothing(pytester: pytest.Pytester, cache_dir: Path) -> None:
    pytester.makepyfile(test_generation=BENCHMARK)
    assert run(pytester, cache_dir, "--llm-baseline-update").ret == 0
    (baseline,) = (pytester.path / "baselines").glob("*.json")
    baseline.write_text('{"format_version": 2, "cases": {tru')
    result = run(pytester, cache_dir, "--benchmark-autosave")
    assert result.ret == 1
    output = result.stdout.str()
    assert f"error: cannot read baseline {baseline}: not valid JSON" in output and "git checkout" in output
    assert len(saved_runs(pytester)) == 1
    updated = run(pytester, cache_dir, "--llm-baseline-update")
    assert updated.ret == 1 and "baseline not updated" in updated.stdout.str()
    assert baseline.read_text() == '{"format_version": 2, "cases": {tru'  # never overwritten


def test_required_baseline_fails_a_run_without_one(pytester: pytest.Pytester, cache_dir: Path) -> None:
    pytester.makepyfile(test_generation=BENCHMARK)
    (pytester.path / "baselines").mkdir()  # an existing folder without this hardware's file
    result = run(pytester, cache_dir, "--llm-require-baseline")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*1 without baseline*"])


def test_bad_gate_options_are_usage_errors(pytester: pytest.Pytester, cache_dir: Path) -> None:
    pytester.makepyfile(test_generation=BENCHMARK)
    result = run(pytester, cache_dir, "--llm-gate-min-effect", "speed=5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid value 'speed=5' from --llm-gate-min-effect*decode_tokens_per_s*"])
