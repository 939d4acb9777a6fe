"""The gate's statistics and verdicts on fixed data, with hypothesis properties."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paddle_llm_bench.core.gate import (
    IMPROVEMENT,
    INCONCLUSIVE,
    NO_BASELINE,
    REGRESSION,
    UNCHANGED,
    CaseMeasurement,
    GateSettings,
    confirm,
    judge,
    speed_test,
)
from paddle_llm_bench.core.stats import holm_adjust, normal_sf

MIB = 1024 * 1024


def noisy(center: float, n: int = 10, cv: float = 0.01, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.gauss(0, cv)) for _ in range(n)]


def measurement(
    case_id: str = "c", decode: float = 100.0, ttft: float = 10.0, seed: int = 0, **memory: int
) -> CaseMeasurement:
    return CaseMeasurement(
        case_id,
        {"decode_tokens_per_s": noisy(decode, seed=seed), "ttft_ms": noisy(ttft, seed=seed + 1000)},
        memory,
    )


def baseline_runs(case_id: str = "c", runs: int = 3, **kwargs: int) -> list[CaseMeasurement]:
    return [measurement(case_id, seed=100 + i, **kwargs) for i in range(runs)]


def only(findings: list, metric: str) -> object:
    matching = [f for f in findings if f.metric == metric]
    assert len(matching) == 1, findings
    return matching[0]


def test_normal_sf_known_values() -> None:
    assert normal_sf(0.0) == pytest.approx(0.5)
    assert normal_sf(1.959963984540054) == pytest.approx(0.025, rel=1e-9)
    assert normal_sf(-1.0) == pytest.approx(1 - normal_sf(1.0))


def test_holm_adjust_known_example() -> None:
    # Sorted p 0.01, 0.02, 0.04 with m=3: 0.03, max(0.03, 0.04)=0.04, max(0.04, 0.04)=0.04.
    assert holm_adjust([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=40))
def test_holm_adjusted_never_below_raw_and_keeps_order(p_values: list[float]) -> None:
    adjusted = holm_adjust(p_values)
    assert all(a >= p - 1e-15 for a, p in zip(adjusted, p_values, strict=True))
    assert all(a <= 1.0 for a in adjusted)
    ranked = sorted(range(len(p_values)), key=lambda i: p_values[i])
    assert all(adjusted[i] <= adjusted[j] + 1e-15 for i, j in itertools.pairwise(ranked))


def test_identical_runs_are_unchanged_with_p_one() -> None:
    samples = noisy(100.0)
    test = speed_test(samples, [samples], noise_floor_percent=2.0)
    assert test.log_ratio == 0.0
    assert test.p_value == pytest.approx(1.0)


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1e-3, max_value=1e6), st.integers(min_value=0, max_value=10_000))
def test_speed_test_is_unit_free(scale: float, seed: int) -> None:
    current, base = noisy(100.0, seed=seed), [noisy(100.0, seed=seed + 1), noisy(103.0, seed=seed + 2)]
    plain = speed_test(current, base, 2.0)
    scaled = speed_test([v * scale for v in current], [[v * scale for v in run] for run in base], 2.0)
    assert scaled.p_value == pytest.approx(plain.p_value, rel=1e-9, abs=1e-12)
    assert scaled.log_ratio == pytest.approx(plain.log_ratio, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=5))
def test_an_a_a_run_never_fails(seed: int, runs: int) -> None:
    """Current and baseline drawn independently from the same machine (1 % noise): never a regression.
    (Judging a run against itself would prove nothing: its log ratio is exactly 0.)"""
    current = measurement(seed=seed, peak_allocated_bytes=10**9)
    baseline = [measurement(seed=seed + 1 + i, peak_allocated_bytes=10**9) for i in range(runs)]
    findings = judge({"c": current}, {"c": baseline})
    assert {f.status for f in findings} == {UNCHANGED}
    assert any(f.change_percent for f in findings if f.change_percent is not None)  # a real, nonzero difference


def test_lower_throughput_is_a_regression_higher_is_an_improvement() -> None:
    base = baseline_runs()
    slower = judge({"c": measurement(decode=80.0, seed=7)}, {"c": base})
    faster = judge({"c": measurement(decode=125.0, seed=7)}, {"c": base})
    assert only(slower, "decode_tokens_per_s").status == REGRESSION
    assert only(slower, "decode_tokens_per_s").change_percent == pytest.approx(-20.0, abs=2.0)
    assert only(faster, "decode_tokens_per_s").status == IMPROVEMENT


def test_higher_latency_is_a_regression() -> None:
    findings = judge({"c": measurement(ttft=13.0, seed=7)}, {"c": baseline_runs()})
    ttft = only(findings, "ttft_ms")
    assert ttft.status == REGRESSION
    assert "ttft_ms regression" in ttft.message() and "%" in ttft.message()
    assert only(findings, "decode_tokens_per_s").status == UNCHANGED


def test_significant_but_small_change_is_not_a_regression() -> None:
    base = [CaseMeasurement("c", {"decode_tokens_per_s": noisy(100.0, cv=0.001, seed=i)}, {}) for i in range(3)]
    current = CaseMeasurement("c", {"decode_tokens_per_s": noisy(97.0, cv=0.001, seed=9)}, {})
    finding = only(judge({"c": current}, {"c": base}, GateSettings(noise_floor_percent=0.1)), "decode_tokens_per_s")
    assert finding.p_value is not None and finding.p_value < 1e-6
    assert finding.status == UNCHANGED  # 3 % < the 5 % minimum effect


def test_noise_floor_keeps_a_single_quiet_baseline_from_crying_wolf() -> None:
    base = [CaseMeasurement("c", {"decode_tokens_per_s": noisy(100.0, cv=0.0005, seed=1)}, {})]
    current = CaseMeasurement("c", {"decode_tokens_per_s": noisy(94.0, cv=0.0005, seed=2)}, {})
    assert only(judge({"c": current}, {"c": base}), "decode_tokens_per_s").status == UNCHANGED
    strict = GateSettings(noise_floor_percent=0.0)
    assert only(judge({"c": current}, {"c": base}, strict), "decode_tokens_per_s").status == REGRESSION


def test_between_run_noise_is_taken_from_the_baseline_runs() -> None:
    # Baseline runs whose medians swing by ~10 %: a 12 % drop is within that noise.
    base = [
        CaseMeasurement("c", {"decode_tokens_per_s": noisy(c, cv=0.002, seed=i)}, {})
        for i, c in enumerate((90, 100, 110))
    ]
    current = CaseMeasurement("c", {"decode_tokens_per_s": noisy(88.0, cv=0.002, seed=5)}, {})
    finding = only(judge({"c": current}, {"c": base}), "decode_tokens_per_s")
    assert finding.status == UNCHANGED
    # The spread of ln 90, ln 100, ln 110 is 10.6 %; the runs' own noise moves it by a few tenths.
    assert math.expm1(statistics.stdev([math.log(c) for c in (90, 100, 110)])) == pytest.approx(0.106, abs=0.001)
    assert "run-to-run noise 10." in finding.evidence


def test_unstable_case_is_inconclusive_not_passed() -> None:
    current = CaseMeasurement("c", {"decode_tokens_per_s": noisy(93.0, cv=0.25, seed=3)}, {})
    finding = only(judge({"c": current}, {"c": baseline_runs()}), "decode_tokens_per_s")
    assert finding.status == INCONCLUSIVE
    assert "unstable: CV" in finding.evidence


def test_a_change_far_beyond_the_noise_counts_even_when_unstable() -> None:
    current = CaseMeasurement("c", {"decode_tokens_per_s": noisy(35.0, cv=0.25, seed=3)}, {})
    finding = only(judge({"c": current}, {"c": baseline_runs()}), "decode_tokens_per_s")
    assert finding.status == REGRESSION
    assert "unstable: CV" in finding.evidence


def test_missing_baseline_is_reported_per_case() -> None:
    findings = judge({"new": measurement("new")}, {"c": baseline_runs()})
    assert [(f.case_id, f.status) for f in findings] == [("new", NO_BASELINE)]


@pytest.mark.parametrize(
    ("current_mib", "status"),
    [(1024 + 100, REGRESSION), (1024 + 10, UNCHANGED), (1024 - 100, IMPROVEMENT)],
)
def test_memory_is_gated_by_the_larger_of_percent_and_bytes(current_mib: int, status: str) -> None:
    base = baseline_runs(peak_allocated_bytes=1024 * MIB)
    findings = judge({"c": measurement(seed=5, peak_allocated_bytes=current_mib * MIB)}, {"c": base})
    finding = only(findings, "peak_allocated_bytes")
    assert finding.status == status
    assert "64.0 MiB" in finding.evidence  # 2 % of 1 GiB is 20 MiB; 64 MiB is larger


def test_memory_growth_above_percent_on_a_large_model() -> None:
    base = baseline_runs(peak_allocated_bytes=8 * 1024 * MIB)  # 2 % of 8 GiB = 164 MiB > 64 MiB
    assert (
        only(
            judge({"c": measurement(peak_allocated_bytes=8 * 1024 * MIB + 100 * MIB)}, {"c": base}),
            "peak_allocated_bytes",
        ).status
        == UNCHANGED
    )
    assert (
        only(
            judge({"c": measurement(peak_allocated_bytes=8 * 1024 * MIB + 200 * MIB)}, {"c": base}),
            "peak_allocated_bytes",
        ).status
        == REGRESSION
    )


def test_confirm_keeps_a_repeated_regression_and_drops_a_fluke() -> None:
    base = baseline_runs()
    first = only(judge({"c": measurement(decode=80.0, seed=7)}, {"c": base}), "decode_tokens_per_s")
    repeated = confirm(first, measurement(decode=79.0, seed=8), base, family=2, settings=GateSettings())
    fluke = confirm(first, measurement(decode=100.0, seed=9), base, family=2, settings=GateSettings())
    assert repeated.status == REGRESSION and "confirmed by re-measurement" in repeated.evidence
    assert fluke.status == UNCHANGED and "not confirmed" in fluke.evidence


def test_speed_test_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="needs samples"):
        speed_test([], [[1.0]], 2.0)


def test_false_alarm_rate_of_the_rule_on_simulated_noise_is_below_alpha() -> None:
    """Monte Carlo on a known noise model (log-normal, 3 % within-run, 2 % between runs):
    over a 24-case sweep, the chance of any false regression stays under 1 %."""
    rng = random.Random(1)

    def run(center: float) -> list[float]:
        shift = math.exp(rng.gauss(0, 0.02))
        return [center * shift * math.exp(rng.gauss(0, 0.03)) for _ in range(10)]

    false_alarms = 0
    trials = 200
    for _ in range(trials):
        cases = {f"c{i}": CaseMeasurement(f"c{i}", {"decode_tokens_per_s": run(100.0)}, {}) for i in range(24)}
        base = {
            f"c{i}": [CaseMeasurement(f"c{i}", {"decode_tokens_per_s": run(100.0)}, {}) for _ in range(3)]
            for i in range(24)
        }
        if any(f.status == REGRESSION for f in judge(cases, base)):
            false_alarms += 1
    assert false_alarms / trials <= 0.01


def test_a_change_measured_while_the_machine_was_busy_is_inconclusive() -> None:
    slower = measurement(decode=60.0, seed=7)
    busy = CaseMeasurement("c", slower.samples, {}, host_busy="machine busy: load average 2.4 on 2 cores (> 1.5)")
    assert only(judge({"c": slower}, {"c": baseline_runs()}), "decode_tokens_per_s").status == REGRESSION
    finding = only(judge({"c": busy}, {"c": baseline_runs()}), "decode_tokens_per_s")
    assert finding.status == INCONCLUSIVE
    assert finding.evidence.startswith("machine busy: load average 2.4")
