"""Both gates' statistics under known noise, by seeded simulation through the real verdict code
(``paddle-llm-bench simulate`` prints docs/verdicts.md's tables with more sweeps).
Seeded: the same figures every run."""

from __future__ import annotations

from dataclasses import replace

import pytest

from paddle_llm_bench.analysis.gate_simulation import DEDICATED, SHAPES, THIS_VM, gate_rates
from paddle_llm_bench.cli import main as cli_main
from paddle_llm_bench.paired.simulation import dedicated, one_case, rates, vm, vm_busy, vm_mixed, vm_quiet


def test_a_lone_case_is_covered_95_percent_and_rarely_called_different() -> None:
    """No sweep to lend its noise: the case's own t-interval, run to its full length (never stopped early)."""
    found = rates(one_case(), 300, seed=1, slowed_case=None)
    assert 0.925 <= found.coverage <= 0.975, found
    assert found.spurious_sweeps <= 0.02 and found.false_regression_sweeps <= 0.01, found


@pytest.mark.parametrize("scenario", [vm, vm_mixed], ids=["like cases", "unlike cases, one 4x noisier"])
def test_a_24_case_sweep_on_this_vms_noise_is_covered_and_never_cries_wolf(scenario: object) -> None:
    """Coverage 95-96 % over 100 sweeps (a case of unlike noise keeps its own variance); 12 sweeps scatter it by
    about 1.2 points."""
    found = rates(scenario(), 12, seed=2, slowed_case=None)  # type: ignore[operator]
    assert 0.92 <= found.coverage <= 0.99, found
    assert found.spurious_sweeps == 0.0 and found.false_regression_sweeps == 0.0, found


def test_dedicated_hardware_stops_early_and_catches_a_5_percent_slowdown() -> None:
    found = rates(dedicated(), 10, seed=3)
    assert found.power is not None and found.power >= 0.9, found
    assert found.mean_blocks < 5, found  # precision reached at the first look (4 blocks; ~6 when only widened)
    assert 0.90 <= found.coverage <= 1.0, found


def test_this_vm_on_a_quiet_day_catches_most_5_percent_slowdowns_in_24_cases() -> None:
    """The noise this VM's A/A runs showed on 2026-12-02 (pairs 3 %, process luck 1 %)."""
    found = rates(vm_quiet(), 20, seed=4)
    assert found.power is not None and found.power >= 0.8, found
    assert found.mean_blocks < 5, found  # moderated both ways: ~4.3 blocks (6.0 when the prior only widened)
    assert 0.92 <= found.coverage <= 0.99 and found.false_regression_sweeps == 0.0, found


def test_this_vm_on_a_busy_day_catches_5_percent_slowdowns_by_following_up_suspects() -> None:
    """Blocks meeting a busy day's measured pair spreads (3-23 %): weighing blocks by their own noise catches about
    two thirds at the first stop; the suspect's second stage (20 blocks more, within one more budget) catches nearly
    all, with the interval still honest, no false alarm, and no-change sweeps as long as without it."""
    found = rates(vm_busy(), 12, seed=5)
    assert found.power is not None and found.power >= 0.9, found
    assert 0.92 <= found.coverage <= 0.99 and found.false_regression_sweeps == found.spurious_sweeps == 0.0, found
    scenario = vm_busy()
    without = rates(replace(scenario, settings=replace(scenario.settings, follow_up_blocks=0)), 12, seed=5)
    assert without.power is not None and without.power < found.power, without
    assert found.mean_minutes <= 1.02 * without.mean_minutes, (found, without)


@pytest.mark.parametrize("noise", [THIS_VM, DEDICATED], ids=["this VM", "dedicated hardware"])
def test_the_stored_gate_does_not_cry_wolf_for_any_baseline_shape(noise: object) -> None:
    """One run, runs of one day judged the same day or another, nights: at most one false alarm in 50 sweeps."""
    alarms = sum(gate_rates(noise, shape, 10, seed=4, cases=12).false_alarm_sweeps * 10 for shape in SHAPES)  # type: ignore[arg-type]
    assert alarms <= 1


def test_the_stored_gate_catches_a_large_slowdown_from_nightly_history_on_dedicated_hardware() -> None:
    nights = next(shape for shape in SHAPES if shape.name.startswith("10 nights"))
    assert gate_rates(DEDICATED, nights, 12, seed=5, cases=12, slowdown=0.3).power >= 0.75


def test_simulate_prints_both_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["simulate", "--sweeps", "2", "--scenario", "one-case", "--only", "paired"]) == 0
    out = capsys.readouterr()
    assert "paired scenario" in out.out and "this VM, one case" in out.out and "coverage" in out.out
    assert "paired: this VM, one case" in out.err  # progress on stderr
