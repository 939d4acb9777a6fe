"""The stored-baseline gate's statistics and verdicts on fixed data, with hypothesis properties.

Its false-alarm rates and power under this VM's noise and dedicated hardware's are checked by the
seeded simulation in test_simulation.py (``paddle-llm-bench simulate``)."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paddle_llm_bench.core.gate import CaseMeasurement, GateSettings, confirm, judge, run_noise, sessions, speed_test
from paddle_llm_bench.core.stats import holm_adjust, normal_sf
from paddle_llm_bench.core.verdicts import BIGGER, FASTER, INCONCLUSIVE, NO_BASELINE, SAME, SLOWER, SMALLER

MIB = 1024 * 1024
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)


def at(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat()


def noisy(center: float, n: int = 10, cv: float = 0.01, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.gauss(0, cv)) for _ in range(n)]


def measurement(
    case_id: str = "c", decode: float = 100.0, ttft: float = 10.0, seed: int = 0, started: str = at(0), **memory: int
) -> CaseMeasurement:
    return CaseMeasurement(
        case_id,
        {"decode_tokens_per_s": noisy(decode, seed=seed), "ttft_ms": noisy(ttft, seed=seed + 1000)},
        memory,
        started=started,
    )


def baseline_runs(case_id: str = "c", runs: int = 5, nights: bool = False, **kwargs: int) -> list[CaseMeasurement]:
    """``runs`` runs of this session (minutes apart), or of the ``runs`` previous nights."""
    return [
        measurement(case_id, seed=100 + i, started=at(24.0 * (runs - i) if nights else 0.1 * (runs - i)), **kwargs)
        for i in range(runs)
    ]


def only(verdicts: list, metric: str) -> object:
    matching = [v for v in verdicts if v.metric == metric]
    assert len(matching) == 1, verdicts
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


def test_sessions_group_runs_less_than_the_gap_apart() -> None:
    starts = [at(49), at(48.5), at(24), at(0.5), "", at(0.2)]
    assert sessions(starts, gap_hours=6) == [[4], [0, 1], [2], [3, 5]]


def test_a_run_of_this_session_is_compared_with_this_sessions_runs() -> None:
    medians = [math.log(v) for v in (90.0, 100.0, 101.0, 99.0)]
    starts = [at(48), at(0.3), at(0.2), at(0.1)]
    noise = run_noise(medians, starts, at(0))
    assert (noise.units, noise.dof) == (3, 2)
    assert noise.center == pytest.approx(statistics.fmean(medians[1:]))
    other = run_noise(medians, starts, at(-30))  # tomorrow: the two sessions are the units
    assert (other.units, other.dof) == (2, 1)


def test_identical_runs_are_the_same_with_p_one() -> None:
    samples = noisy(100.0)
    test = speed_test(samples, [samples, samples], 2.0, baseline_starts=[at(0.2), at(0.1)], current_start=at(0))
    assert test.log_ratio == 0.0
    assert test.p_value == pytest.approx(1.0)


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1e-3, max_value=1e6), st.integers(min_value=0, max_value=10_000))
def test_speed_test_is_unit_free(scale: float, seed: int) -> None:
    current, base = noisy(100.0, seed=seed), [noisy(100.0, seed=seed + 1), noisy(103.0, seed=seed + 2)]
    starts = [at(0.2), at(0.1)]
    plain = speed_test(current, base, 2.0, baseline_starts=starts, current_start=at(0))
    scaled = speed_test(
        [v * scale for v in current], [[v * scale for v in run] for run in base], 2.0, None, starts, at(0)
    )
    assert plain.p_value is not None and scaled.p_value == pytest.approx(plain.p_value, rel=1e-9, abs=1e-12)
    assert scaled.log_ratio == pytest.approx(plain.log_ratio, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=5), st.booleans())
def test_an_a_a_run_never_fails(seed: int, runs: int, nights: bool) -> None:
    """Current and baseline drawn independently from the same machine (1 % noise): never a regression, never
    faster or slower. (Judging a run against itself would prove nothing: its log ratio is exactly 0.)"""
    current = measurement(seed=seed, peak_allocated_bytes=10**9)
    baseline = [
        measurement(
            seed=seed + 1 + i, started=at(24.0 * (runs - i) if nights else 0.1 * (runs - i)), peak_allocated_bytes=10**9
        )
        for i in range(runs)
    ]
    verdicts = judge({"c": current}, {"c": baseline})
    assert not any(v.regression for v in verdicts)
    assert {v.verdict for v in verdicts} <= {SAME, INCONCLUSIVE}
    assert any(v.change_percent for v in verdicts if v.change_percent is not None)  # a real, nonzero difference


def test_lower_throughput_is_slower_and_a_regression_higher_is_faster() -> None:
    base = baseline_runs()
    slower = only(judge({"c": measurement(decode=80.0, seed=7)}, {"c": base}), "decode_tokens_per_s")
    faster = only(judge({"c": measurement(decode=125.0, seed=7)}, {"c": base}), "decode_tokens_per_s")
    assert slower.verdict == SLOWER and slower.regression
    assert slower.change_percent == pytest.approx(-20.0, abs=2.0)
    assert slower.ci_low < slower.ratio < slower.ci_high < 1.0
    assert faster.verdict == FASTER and not faster.regression


def test_higher_latency_is_a_regression() -> None:
    verdicts = judge({"c": measurement(ttft=13.0, seed=7)}, {"c": baseline_runs()})
    ttft = only(verdicts, "ttft_ms")
    assert ttft.verdict == SLOWER and ttft.regression
    assert "ttft_ms slower" in ttft.message() and "%" in ttft.message()
    assert only(verdicts, "decode_tokens_per_s").verdict in (SAME, INCONCLUSIVE)  # ±6 % on 4 dof: not within 5 %


def test_significant_but_small_change_is_the_same() -> None:
    base = [
        CaseMeasurement("c", {"decode_tokens_per_s": noisy(100.0, cv=0.001, seed=i)}, {}, started=at(0.1 * (5 - i)))
        for i in range(5)
    ]
    current = CaseMeasurement("c", {"decode_tokens_per_s": noisy(97.0, cv=0.001, seed=9)}, {}, started=at(0))
    verdict = only(judge({"c": current}, {"c": base}, GateSettings(noise_floor_percent=0.1)), "decode_tokens_per_s")
    assert verdict.p_value is not None and verdict.p_value < 1e-3
    assert verdict.verdict == SAME  # 3 % < the 5 % minimum effect, and the whole interval is within it


def test_a_one_run_baseline_judges_no_speed_however_quiet() -> None:
    """One run cannot show how much runs move: a 6 % drop of a very quiet case is not called slower."""
    base = [CaseMeasurement("c", {"decode_tokens_per_s": noisy(100.0, cv=0.0005, seed=1)}, {}, started=at(0.1))]
    current = CaseMeasurement("c", {"decode_tokens_per_s": noisy(94.0, cv=0.0005, seed=2)}, {}, started=at(0))
    verdict = only(judge({"c": current}, {"c": base}, GateSettings(noise_floor_percent=0.0)), "decode_tokens_per_s")
    assert verdict.verdict == INCONCLUSIVE and verdict.p_value is None and not verdict.regression
    assert verdict.ratio == pytest.approx(0.94, abs=0.005)
    assert "run-to-run noise unknown" in verdict.evidence and "--llm-reference" in verdict.evidence


def test_runs_of_one_session_do_not_judge_a_run_of_another() -> None:
    base = baseline_runs(runs=5)  # minutes apart, today
    tomorrow = measurement(decode=70.0, seed=7, started=at(-24))
    verdict = only(judge({"c": tomorrow}, {"c": base}), "decode_tokens_per_s")
    assert verdict.verdict == INCONCLUSIVE and "all of another session" in verdict.evidence
    today = only(judge({"c": measurement(decode=70.0, seed=7)}, {"c": base}), "decode_tokens_per_s")
    assert today.verdict == SLOWER


def test_nights_judge_a_new_night() -> None:
    verdict = only(
        judge({"c": measurement(decode=70.0, seed=7)}, {"c": baseline_runs(runs=5, nights=True)}), "decode_tokens_per_s"
    )
    assert verdict.verdict == SLOWER and "5 session(s)" in verdict.evidence and "t on" in verdict.evidence


def test_between_run_noise_is_taken_from_the_baseline_runs() -> None:
    # Baseline runs whose medians swing by ~10 %: a 12 % drop is within that noise, and no "same" either.
    base = [
        CaseMeasurement("c", {"decode_tokens_per_s": noisy(c, cv=0.002, seed=i)}, {}, started=at(0.1 * (3 - i)))
        for i, c in enumerate((90, 100, 110))
    ]
    current = CaseMeasurement("c", {"decode_tokens_per_s": noisy(88.0, cv=0.002, seed=5)}, {}, started=at(0))
    verdict = only(judge({"c": current}, {"c": base}), "decode_tokens_per_s")
    assert verdict.verdict == INCONCLUSIVE
    # The spread of ln 90, ln 100, ln 110 is 10.6 %; the runs' own noise moves it by a few tenths.
    assert math.expm1(statistics.stdev([math.log(c) for c in (90, 100, 110)])) == pytest.approx(0.106, abs=0.001)
    assert "run-to-run noise 10." in verdict.evidence


def test_the_test_is_a_t_test_on_few_runs() -> None:
    """Three runs: t on 2 dof (no other case lends its noise). A z-test would call this 2-sigma drop at p 0.045."""
    base = [
        CaseMeasurement("c", {"decode_tokens_per_s": [v] * 10}, {}, started=at(0.1 * (3 - i)))
        for i, v in enumerate((99.0, 100.0, 101.0))
    ]
    current = CaseMeasurement(
        "c", {"decode_tokens_per_s": [100.0 * math.exp(-2 * 0.01 * math.sqrt(4 / 3))] * 10}, {}, started=at(0)
    )
    test = speed_test(
        current.samples["decode_tokens_per_s"],
        [b.samples["decode_tokens_per_s"] for b in base],
        0.0,
        None,
        [b.started for b in base],
        at(0),
    )
    assert test.dof == 2
    assert test.p_value == pytest.approx(0.184, abs=0.01)  # two-sided t(2) at t = -2.0


def test_rounds_that_move_together_count_as_fewer() -> None:
    """A step in the middle of a run (a regime change) widens the within-run error of its median."""
    from paddle_llm_bench.core.stats import median_standard_error

    alternating = [math.log(100.0 + (5 if i % 2 else -5)) for i in range(10)]
    step = sorted(alternating)  # the same values: first half slow, second half fast
    assert median_standard_error(step) > 2 * median_standard_error(alternating)


def test_unstable_case_is_never_the_same() -> None:
    current = CaseMeasurement("c", {"decode_tokens_per_s": noisy(99.0, cv=0.25, seed=3)}, {}, started=at(0))
    verdict = only(judge({"c": current}, {"c": baseline_runs()}), "decode_tokens_per_s")
    assert verdict.verdict == INCONCLUSIVE
    assert "unstable: CV" in verdict.evidence


def test_a_change_far_beyond_the_noise_counts_even_when_unstable() -> None:
    current = CaseMeasurement("c", {"decode_tokens_per_s": noisy(35.0, cv=0.25, seed=3)}, {}, started=at(0))
    verdict = only(judge({"c": current}, {"c": baseline_runs()}), "decode_tokens_per_s")
    assert verdict.verdict == SLOWER and verdict.regression
    assert "unstable: CV" in verdict.evidence


def test_missing_baseline_is_reported_per_case() -> None:
    verdicts = judge({"new": measurement("new")}, {"c": baseline_runs()})
    assert [(v.case_id, v.verdict) for v in verdicts] == [("new", NO_BASELINE)]


@pytest.mark.parametrize(("current_mib", "verdict"), [(1024 + 100, BIGGER), (1024 + 10, SAME), (1024 - 100, SMALLER)])
def test_memory_is_gated_by_the_larger_of_percent_and_bytes(current_mib: int, verdict: str) -> None:
    base = baseline_runs(peak_allocated_bytes=1024 * MIB)
    found = only(
        judge({"c": measurement(seed=5, peak_allocated_bytes=current_mib * MIB)}, {"c": base}), "peak_allocated_bytes"
    )
    assert found.verdict == verdict and found.regression == (verdict == BIGGER)
    assert "20.5 MiB" in found.evidence  # 2 % of 1 GiB is 20.5 MiB; the 1 MiB floor is smaller


def test_a_small_models_memory_growth_is_seen() -> None:
    """The tiny model's 6.7 MiB allocator peak growing by half is bigger (a 64 MiB floor hid a tenfold growth)."""
    base = baseline_runs(peak_allocated_bytes=int(6.7 * MIB))
    found = only(judge({"c": measurement(peak_allocated_bytes=10 * MIB)}, {"c": base}), "peak_allocated_bytes")
    assert found.verdict == BIGGER and found.regression


def test_memory_growth_above_percent_on_a_large_model() -> None:
    base = baseline_runs(peak_allocated_bytes=8 * 1024 * MIB)  # 2 % of 8 GiB = 164 MiB
    grew = [
        only(
            judge({"c": measurement(peak_allocated_bytes=8 * 1024 * MIB + d * MIB)}, {"c": base}),
            "peak_allocated_bytes",
        )
        for d in (100, 200)
    ]
    assert [v.verdict for v in grew] == [SAME, BIGGER]


def test_peaks_that_differ_between_baseline_runs_are_not_judged_as_deterministic() -> None:
    base = [
        measurement(seed=i, started=at(0.1 * (3 - i)), peak_allocated_bytes=p * MIB)
        for i, p in enumerate((100, 130, 100))
    ]
    found = only(judge({"c": measurement(peak_allocated_bytes=140 * MIB)}, {"c": base}), "peak_allocated_bytes")
    assert found.verdict == INCONCLUSIVE and not found.regression
    assert "peaks differ between repeats (100.0-130.0 MiB)" in found.evidence


def test_confirm_keeps_a_repeated_regression_and_drops_a_fluke() -> None:
    base = baseline_runs()
    first = only(judge({"c": measurement(decode=80.0, seed=7)}, {"c": base}), "decode_tokens_per_s")
    repeated = confirm(first, measurement(decode=79.0, seed=8), base, family=2, settings=GateSettings())
    fluke = confirm(first, measurement(decode=100.0, seed=9), base, family=2, settings=GateSettings())
    assert repeated.regression and "confirmed by re-measurement" in repeated.evidence
    assert fluke.verdict != SLOWER and not fluke.regression and "not confirmed" in fluke.evidence


def test_speed_test_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="needs samples"):
        speed_test([], [[1.0]], 2.0)


def test_a_change_measured_while_the_machine_was_busy_is_inconclusive() -> None:
    slower = measurement(decode=60.0, seed=7)
    busy = CaseMeasurement(
        "c", slower.samples, {}, host_busy="machine busy: load average 2.4 on 2 cores (> 1.5)", started=at(0)
    )
    assert only(judge({"c": slower}, {"c": baseline_runs()}), "decode_tokens_per_s").verdict == SLOWER
    verdict = only(judge({"c": busy}, {"c": baseline_runs()}), "decode_tokens_per_s")
    assert verdict.verdict == INCONCLUSIVE and not verdict.regression
    assert verdict.evidence.startswith("machine busy: load average 2.4")
