"""`paddle-llm-bench calibrate`: its counts are whole numbers from 1, refused with the value before any run is read."""

from __future__ import annotations

import random

import pytest

from paddle_llm_bench.analysis.calibration import SLOWDOWNS_PERCENT, Run, calibrate, render
from paddle_llm_bench.cli import main as cli_main
from paddle_llm_bench.core.gate import GateSettings


@pytest.mark.parametrize(("option", "value"), [("--baseline-runs", "0"), ("--trials", "-3"), ("--trials", "many")])
def test_bad_counts_are_usage_errors_naming_the_value(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        cli_main(["calibrate", "run.json", option, value])
    assert exited.value.code == 4
    err = capsys.readouterr().err
    assert option in err and value in err


def recorded_run(index: int, cases: int = 4, rounds: int = 10, run_noise: float = 0.01) -> Run:
    """A run of this sweep as the machine would record it: a run offset, then round-to-round noise."""
    rng = random.Random(index)
    offset = 1.0 + rng.gauss(0.0, run_noise)
    decode, ttft, e2e = {}, {}, {}
    for case in range(cases):
        rounds_decode = [200.0 / offset * (1.0 + rng.gauss(0.0, 0.01)) for _ in range(rounds)]
        decode[f"c{case}"] = rounds_decode
        ttft[f"c{case}"] = [10.0 * offset * (1.0 + rng.gauss(0.0, 0.01)) for _ in range(rounds)]
        e2e[f"c{case}"] = [1000.0 * 32 / value for value in rounds_decode]
    return Run(f"run{index}", decode, ttft, e2e, f"2026-11-{index + 1:02d}T01:00:00+00:00")  # one a night


def test_the_rates_count_the_trials_and_a_bigger_slowdown_is_caught_at_least_as_often() -> None:
    rates = calibrate([recorded_run(i) for i in range(7)], GateSettings(), baseline_runs=3, limit=60)
    assert (rates.runs, rates.cases, rates.trials, rates.baseline_runs) == (7, 4, 60, 3)
    assert rates.false_alarm.gate.total == 60 and rates.false_alarm.gate.failed <= 6  # A/A: rarely a wolf
    caught = [rates.detected[percent].gate for percent in SLOWDOWNS_PERCENT]
    assert all(count.total == 60 * 4 for count in caught)
    assert [c.failed for c in caught] == sorted(c.failed for c in caught) and caught[-1].failed > caught[0].failed
    assert caught[-1].failed == caught[-1].total  # 20 % against 1 % noise: every one caught
    lines = render(rates)
    assert lines[0].startswith("7 recorded runs, 4 cases, 60 trials") and "20% slowdown caught" in lines[-1]
