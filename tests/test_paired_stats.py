"""Paired statistics: fixed data, properties, and the interval's coverage under a known noise model."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.paired.results import Block, CaseComparison, Pair, PairedRun, PairedSettings, SideInfo, judge
from paddle_llm_bench.paired.stats import (
    FASTER,
    INCONCLUSIVE,
    SAME,
    SLOWER,
    hodges_lehmann,
    memory_verdict,
    paired_estimate,
    speed_verdict,
)

finite = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)


def test_hodges_lehmann_of_fixed_data() -> None:
    # Walsh averages of (0, 1, 10): 0, 0.5, 5, 1, 5.5, 10 -> median (1 + 5) / 2
    assert hodges_lehmann([0.0, 1.0, 10.0]) == pytest.approx(3.0)
    assert hodges_lehmann([2.0]) == 2.0
    with pytest.raises(ValueError):
        hodges_lehmann([])


@given(st.lists(finite, min_size=3, max_size=30), st.floats(min_value=-1, max_value=1))
def test_hodges_lehmann_moves_with_a_shift_and_resists_one_outlier(values: list[float], shift: float) -> None:
    assert hodges_lehmann([v + shift for v in values]) == pytest.approx(hodges_lehmann(values) + shift, abs=1e-9)
    assert min(values) <= hodges_lehmann(values) <= max(values)


def test_one_wild_pair_barely_moves_a_block() -> None:
    calm = [0.01, -0.01, 0.02, 0.0, -0.02, 0.01, 0.0, 0.01]
    assert abs(hodges_lehmann([*calm, 5.0]) - hodges_lehmann(calm)) < 0.01


def test_estimate_needs_two_blocks() -> None:
    assert paired_estimate([[0.1, 0.2]]) is None
    assert paired_estimate([[0.1], []]) is None


def test_estimate_of_fixed_blocks() -> None:
    # block estimates 0.1, 0.2, 0.3 (single values): mean 0.2, sd 0.1, se 0.1/sqrt(3); t(0.975, 2) = 4.3027
    estimate = paired_estimate([[0.1], [0.2], [0.3]])
    assert estimate is not None
    assert estimate.ratio == pytest.approx(math.exp(0.2))
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert estimate.ci_low == pytest.approx(math.exp(0.2 - half), rel=1e-5)
    assert estimate.ci_high == pytest.approx(math.exp(0.2 + half), rel=1e-5)
    assert estimate.blocks == 3 and estimate.pairs == 3
    # t = 0.2 / (0.1/sqrt 3) = 3.464 on 2 df: two-sided p = 0.0742
    assert estimate.p_value == pytest.approx(0.0742, abs=5e-4)


@given(st.lists(st.lists(finite, min_size=1, max_size=8), min_size=2, max_size=8))
def test_interval_contains_the_estimate_and_p_is_a_probability(blocks: list[list[float]]) -> None:
    estimate = paired_estimate(blocks)
    assert estimate is not None
    assert estimate.ci_low <= estimate.ratio * (1 + 1e-12) and estimate.ratio <= estimate.ci_high * (1 + 1e-12)
    assert 0.0 <= estimate.p_value <= 1.0


@given(st.lists(st.lists(finite, min_size=1, max_size=6), min_size=2, max_size=6))
def test_swapping_the_sides_inverts_the_ratio(blocks: list[list[float]]) -> None:
    forward = paired_estimate(blocks)
    backward = paired_estimate([[-v for v in block] for block in blocks])
    assert forward is not None and backward is not None
    assert forward.ratio * backward.ratio == pytest.approx(1.0)
    assert forward.ci_low * backward.ci_high == pytest.approx(1.0)
    assert forward.p_value == pytest.approx(backward.p_value)


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_coverage_with_process_luck_is_near_nominal(seed: int) -> None:
    """Simulated A/A runs: pair noise 8 %, process luck 1.5 % per process, occasional wild pairs.
    The 95 % interval must cover the true ratio (1) in about 95 % of runs (400 simulated comparisons)."""
    rng = random.Random(seed)
    covered = 0
    runs = 400
    for _ in range(runs):
        blocks = []
        for _block in range(5):
            luck = rng.gauss(0, 0.015) - rng.gauss(0, 0.015)
            pairs = [luck + rng.gauss(0, 0.08) for _ in range(10)]
            if rng.random() < 0.2:
                pairs[0] += 0.5  # a wild pair
            blocks.append(pairs)
        estimate = paired_estimate(blocks)
        assert estimate is not None
        covered += estimate.ci_low <= 1.0 <= estimate.ci_high
    assert 0.91 <= covered / runs <= 0.99


def _estimate(ratio: float, low: float, high: float) -> object:
    from paddle_llm_bench.paired.stats import PairedEstimate

    return PairedEstimate(ratio, low, high, 0.95, 0.01, 4, 40, (ratio,) * 4)


@pytest.mark.parametrize(
    ("ratio", "low", "high", "higher_is_better", "expected"),
    [
        (0.90, 0.88, 0.92, True, SLOWER),  # tok/s down 10 %, interval below 1
        (0.90, 0.88, 0.92, False, FASTER),  # latency down 10 %
        (1.10, 1.08, 1.12, True, FASTER),
        (0.99, 0.985, 0.995, True, SAME),  # significant but smaller than the 3 % minimum effect
        (0.98, 0.90, 1.06, True, INCONCLUSIVE),  # too wide to tell
        (1.00, 0.99, 1.01, True, SAME),
    ],
)
def test_speed_verdicts(ratio: float, low: float, high: float, higher_is_better: bool, expected: str) -> None:
    assert speed_verdict(_estimate(ratio, low, high), 3.0, higher_is_better) == expected  # type: ignore[arg-type]


def test_no_estimate_is_inconclusive() -> None:
    assert speed_verdict(None, 3.0, True) == INCONCLUSIVE


def test_memory_verdicts_use_the_larger_tolerance() -> None:
    mib = 1024 * 1024
    assert memory_verdict(100 * mib, 100 * mib + 63 * mib, 2.0, 64 * mib) == SAME
    assert memory_verdict(100 * mib, 100 * mib + 65 * mib, 2.0, 64 * mib) == "bigger"
    assert memory_verdict(100 * mib, 30 * mib, 2.0, 64 * mib) == "smaller"


def _run(block_ratios: list[list[float]], cases: int = 1, pooled_spread_dof: float = 4.0) -> PairedRun:
    """A synthetic run: per block the candidate/reference decode ratios of its pairs."""
    comparisons = []
    for index in range(cases):
        case = Case("tiny", "float32", "greedy", 32, 1, 32 + index)
        blocks = [
            Block(
                b,
                [1, 2],
                [
                    Pair([0, 1], [{"decode_tokens_per_s": 100.0, "ttft_ms": 5.0}, {"decode_tokens_per_s": 100.0 * r}])
                    for r in ratios
                ],
                [{"peak_allocated_bytes": 10}, {"peak_allocated_bytes": 10}],
                [{}, {}],
            )
            for b, ratios in enumerate(block_ratios)
        ]
        comparisons.append(CaseComparison(case, blocks, "precision"))
    settings = PairedSettings(pooled_spread_dof=pooled_spread_dof)
    return PairedRun([SideInfo("A", "a"), SideInfo("B", "b")], settings, comparisons)


def test_a_clear_slowdown_is_a_regression_and_a_small_one_is_not() -> None:
    slow = _run([[0.90, 0.91, 0.89], [0.90, 0.92], [0.91, 0.90], [0.89, 0.90]])
    decode = [j for j in judge(slow) if j.metric == "decode_tokens_per_s"]
    assert decode[0].verdict == SLOWER and decode[0].regression
    small = _run([[0.99, 0.985], [0.99, 0.99], [0.985, 0.99], [0.99, 0.99]])
    decode = [j for j in judge(small) if j.metric == "decode_tokens_per_s"]
    assert not decode[0].regression


def test_holm_over_the_sweep_spares_a_marginal_case_among_many() -> None:
    # a 4 % drop with a p-value near 0.01: a regression alone, not among 20 cases (Holm: p <= 0.01/20)
    blocks = [[0.95], [0.97], [0.96], [0.955]]
    alone = [j for j in judge(_run(blocks, pooled_spread_dof=0)) if j.metric == "decode_tokens_per_s"]
    assert alone[0].estimate is not None and alone[0].estimate.p_value < 0.01
    assert alone[0].regression
    many = [j for j in judge(_run(blocks, 20, pooled_spread_dof=0)) if j.metric == "decode_tokens_per_s"]
    assert all(j.verdict == SLOWER for j in many) and not any(j.regression for j in many)


def test_the_sweep_lends_each_case_its_evidence_about_the_noise() -> None:
    # 3 blocks alone: 2 degrees of freedom, a wide interval; 10 cases with the same spread: 2 + 4
    blocks = [[0.90], [0.93], [0.87]]
    alone = next(j for j in judge(_run(blocks)) if j.metric == "decode_tokens_per_s")
    pooled = next(j for j in judge(_run(blocks, cases=10)) if j.metric == "decode_tokens_per_s")
    assert alone.estimate is not None and pooled.estimate is not None
    assert alone.estimate.ratio == pytest.approx(pooled.estimate.ratio)
    assert pooled.estimate.half_width_percent < 0.6 * alone.estimate.half_width_percent
    assert pooled.estimate.p_value < alone.estimate.p_value


def test_a_metric_only_one_side_has_gives_no_estimate() -> None:
    run = _run([[1.0], [1.0]])
    ttft = [j for j in judge(run) if j.metric == "ttft_ms"]
    assert ttft[0].estimate is None and ttft[0].verdict == INCONCLUSIVE
