"""Paired statistics: fixed data, properties, and the interval's coverage under a known noise model."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.stats import VariancePrior, holm_adjust
from paddle_llm_bench.core.verdicts import (
    BIGGER,
    FASTER,
    INCONCLUSIVE,
    SAME,
    SLOWER,
    SMALLER,
    Verdict,
    memory_verdict,
    speed_verdict,
)
from paddle_llm_bench.paired.results import (
    Block,
    CaseComparison,
    Pair,
    PairedRun,
    PairedSettings,
    SideInfo,
    judge,
    load_paired_run,
)
from paddle_llm_bench.paired.simulation import BUSY_DAY_BLOCK_PAIR_SDS
from paddle_llm_bench.paired.stats import (
    PairedEstimate,
    combine_blocks,
    hodges_lehmann,
    paired_estimate,
    sweep_prior,
    unlike_noise,
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


def test_coverage_with_process_luck_is_near_nominal() -> None:
    """Simulated A/A runs: pair noise 8 %, process luck 1.5 % per process, occasional wild pairs. The 95 % interval
    covers the true ratio (1) in 93.9-94.5 % of 4,000 seeded comparisons (seeds 0-3; ±0.4 %). A bound on 400
    comparisons of a random seed (±1.1 %) failed now and then: seed 886 gave 90.75 %."""
    rng = random.Random(0)
    covered = 0
    runs = 4000
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
    assert 0.925 <= covered / runs <= 0.965


def test_blocks_of_one_noise_are_weighed_alike_as_in_the_plain_mean() -> None:
    """Pairs of like spread in every block: the plain mean of the blocks and their sample variance, exactly."""
    rng = random.Random(7)
    blocks = [[shift + rng.gauss(0, 0.05) for _ in range(20)] for shift in (0.00, 0.01, -0.01, 0.02, 0.0)]
    estimates, mean, variance = combine_blocks(blocks)
    assert mean == pytest.approx(statistics.fmean(estimates)) and variance == pytest.approx(
        statistics.variance(estimates)
    )


def test_a_block_beside_a_noisy_neighbour_counts_less() -> None:
    """Four quiet blocks (pairs 1 %) at 0 and one whose pairs scatter by 30 %, its estimate off by 20 %: the
    combined estimate stays near the quiet blocks, where the plain mean follows the noisy one a fifth of the way."""
    rng = random.Random(3)
    quiet = [[rng.gauss(0, 0.01) for _ in range(20)] for _ in range(4)]
    noisy = [0.2 + rng.gauss(0, 0.30) for _ in range(20)]
    noisy = [v - hodges_lehmann(noisy) + 0.2 for v in noisy]  # its estimate exactly 0.2
    estimates, mean, _ = combine_blocks([*quiet, noisy])
    assert statistics.fmean(estimates) == pytest.approx(0.04, abs=0.005)
    assert abs(mean) < 0.01


def test_coverage_on_a_busy_day_is_near_nominal() -> None:
    """Simulated A/A runs whose blocks each meet one of a busy day's measured pair spreads (3-23 %), with
    process luck 1 % per process: the weighed interval covers 1 in 93.2-94.8 % of 2,000 seeded comparisons (seeds
    0-3; ±0.5 %), without the sweep's prior that `simulate`'s busy-day row adds (94-96 % there)."""
    rng = random.Random(0)
    covered, runs = 0, 2000
    for _ in range(runs):
        blocks = []
        for _block in range(8):
            luck = rng.gauss(0, 0.01) - rng.gauss(0, 0.01)
            sd = rng.choice(BUSY_DAY_BLOCK_PAIR_SDS)
            blocks.append([luck + rng.gauss(0, sd) for _ in range(20)])
        estimate = paired_estimate(blocks)
        assert estimate is not None
        covered += estimate.ci_low <= 1.0 <= estimate.ci_high
    assert 0.92 <= covered / runs <= 0.97


@pytest.mark.parametrize(
    ("ratio", "low", "high", "p_adjusted", "higher_is_better", "expected"),
    [
        (0.90, 0.88, 0.92, 0.001, True, SLOWER),  # tok/s down 10 %, significant after Holm
        (0.90, 0.88, 0.92, 0.001, False, FASTER),  # latency down 10 %
        (1.10, 1.08, 1.12, 0.001, True, FASTER),
        (0.90, 0.88, 0.92, 0.2, True, INCONCLUSIVE),  # excludes 1, but not after Holm over the run
        (0.99, 0.985, 0.995, 0.001, True, SAME),  # significant but smaller than the 3 % minimum effect
        (0.98, 0.90, 1.06, 0.5, True, INCONCLUSIVE),  # too wide to tell
        (1.00, 0.99, 1.01, 1.0, True, SAME),
    ],
)
def test_speed_verdicts(
    ratio: float, low: float, high: float, p_adjusted: float, higher_is_better: bool, expected: str
) -> None:
    assert speed_verdict(ratio, low, high, p_adjusted, 0.01, 3.0, higher_is_better) == expected


def test_memory_verdicts_use_the_larger_tolerance() -> None:
    mib = 1024 * 1024
    assert memory_verdict(100 * mib, 100 * mib + 63 * mib, 2.0, 64 * mib) == SAME
    assert memory_verdict(100 * mib, 100 * mib + 65 * mib, 2.0, 64 * mib) == BIGGER
    assert memory_verdict(100 * mib, 30 * mib, 2.0, 64 * mib) == SMALLER


def _run(block_ratios: list[list[float]], cases: int = 1, noisy_last: float = 0.0) -> PairedRun:
    """A synthetic run: per block the candidate/reference decode ratios of its pairs; ``noisy_last`` spreads the
    last case's blocks that much wider."""
    comparisons = []
    for index in range(cases):
        case = Case("tiny", "float32", "greedy", 32, 1, 32 + index)
        spread = noisy_last if index == cases - 1 else 0.0
        blocks = [
            Block(
                b,
                [1, 2],
                [
                    Pair(
                        [0, 1],
                        [
                            {"decode_tokens_per_s": 100.0, "ttft_ms": 5.0},
                            {"decode_tokens_per_s": 100.0 * r * math.exp(spread * (-1) ** b)},
                        ],
                    )
                    for r in ratios
                ],
                [{"peak_allocated_bytes": 10}, {"peak_allocated_bytes": 10}],
                [{}, {}],
            )
            for b, ratios in enumerate(block_ratios)
        ]
        comparisons.append(CaseComparison(case, blocks, "precision"))
    return PairedRun([SideInfo("A", "a"), SideInfo("B", "b")], PairedSettings(), comparisons)


def _decode(run: PairedRun) -> list[Verdict]:
    return [v for v in judge(run) if v.metric == "decode_tokens_per_s"]


def test_a_clear_slowdown_is_a_regression_and_a_small_one_is_not() -> None:
    slow = _decode(_run([[0.90, 0.91, 0.89], [0.90, 0.92], [0.91, 0.90], [0.89, 0.90]]))
    assert slow[0].verdict == SLOWER and slow[0].regression and slow[0].side == "B"
    small = _decode(_run([[0.99, 0.985], [0.99, 0.99], [0.985, 0.99], [0.99, 0.99]]))
    assert not small[0].regression


def test_faster_and_slower_are_holm_corrected_over_every_speed_test_of_the_run() -> None:
    run = _run([[0.95], [0.97], [0.96], [0.955]], cases=5, noisy_last=0.02)
    verdicts = [v for v in judge(run) if v.p_value is not None]
    expected = holm_adjust([v.p_value for v in verdicts])
    assert [v.p_adjusted for v in verdicts] == pytest.approx(expected)
    assert all(f"over {len(verdicts)} tests" in v.evidence for v in verdicts)


def test_the_sweep_lends_each_case_its_evidence_about_the_noise() -> None:
    # 3 blocks alone: 2 degrees of freedom, a wide interval; 10 cases with the same spread: 2 + 20 (the prior's
    # weight: the cases' own degrees of freedom together, as alike variances are known no better than that)
    blocks = [[0.90], [0.93], [0.87]]
    alone = _decode(_run(blocks))[0]
    pooled = _decode(_run(blocks, cases=10))[0]
    assert alone.ratio == pytest.approx(pooled.ratio)
    assert "its own noise" in alone.evidence and "moderated" in pooled.evidence
    assert (pooled.ci_high - pooled.ci_low) < 0.7 * (alone.ci_high - alone.ci_low)  # t(2) 4.30 against t(22) 2.07
    assert "t on 22 dof" in pooled.evidence
    assert pooled.p_value < alone.p_value


def test_a_case_much_noisier_than_the_sweep_keeps_its_own_noise() -> None:
    verdicts = _decode(_run([[0.99], [1.0], [1.01], [1.0]], cases=10, noisy_last=0.15))
    assert all("moderated" in v.evidence for v in verdicts[:-1])
    assert "its own noise" in verdicts[-1].evidence


def _spread_blocks(sd: float, k: int = 5) -> list[list[float]]:
    """``k`` one-pair blocks whose log ratios have exactly this sample sd (about a mean of 0)."""
    base = [b - (k - 1) / 2.0 for b in range(k)]
    return [[value * sd / statistics.stdev(base)] for value in base]


def _estimate(blocks: list[list[float]], prior: VariancePrior | None = None) -> PairedEstimate:
    found = paired_estimate(blocks, prior=prior)
    assert found is not None
    return found


def test_the_prior_narrows_a_case_that_scatters_by_chance_and_leaves_one_of_unlike_noise_alone() -> None:
    prior = VariancePrior(0.01**2, 40.0)
    own = {sd: _estimate(_spread_blocks(sd)) for sd in (0.005, 0.014, 0.05)}
    pooled = {sd: _estimate(_spread_blocks(sd), prior) for sd in own}
    # quieter than the sweep by chance: widened; noisier by chance (F = 1.96 on 4 and 40 dof, p 0.12): narrowed
    assert pooled[0.005].moderated and pooled[0.005].half_width_percent > own[0.005].half_width_percent
    assert pooled[0.014].moderated and pooled[0.014].half_width_percent < own[0.014].half_width_percent
    assert pooled[0.014].dof == 44.0
    # 25 times the sweep's variance (p 2e-10): unlike noise, its own t-interval on its own 4 dof
    assert not unlike_noise(0.014**2, 4, prior) and unlike_noise(0.05**2, 4, prior)
    assert not pooled[0.05].moderated and pooled[0.05] == own[0.05]


@given(
    st.floats(min_value=1e-8, max_value=1.0),
    st.floats(min_value=1.0, max_value=50.0),
    st.floats(min_value=1.0, max_value=1000.0),
    st.floats(min_value=1.0, max_value=100.0),
)
def test_only_a_variance_above_the_prior_can_be_unlike_and_more_so_the_larger_it_is(
    prior_variance: float, dof: float, prior_dof: float, factor: float
) -> None:
    prior = VariancePrior(prior_variance, prior_dof)
    assert not unlike_noise(prior_variance / factor, dof, prior)
    if unlike_noise(prior_variance * factor, dof, prior):
        assert unlike_noise(prior_variance * factor * 2.0, dof, prior)


def test_the_sweeps_prior_weighs_no_more_than_the_dof_it_was_estimated_from() -> None:
    alike = [_spread_blocks(0.01, k=4)] * 6  # identical variances: Smyth's weight is unbounded (1000)
    prior = sweep_prior(alike)
    assert prior is not None and prior.dof == 6 * 3


def test_no_verdict_before_the_minimum_blocks() -> None:
    verdict = _decode(_run([[0.80], [0.81], [0.80]]))[0]  # 3 blocks < the default 4
    assert verdict.verdict == INCONCLUSIVE and not verdict.regression
    assert "fewer than the 4 blocks a verdict needs" in verdict.evidence


def test_a_metric_only_one_side_has_gives_no_estimate() -> None:
    ttft = [v for v in judge(_run([[1.0], [1.0]])) if v.metric == "ttft_ms"]
    assert ttft[0].ratio is None and ttft[0].verdict == INCONCLUSIVE


def test_version_1_files_load_and_are_judged_anew(tmp_path: Path) -> None:
    run = _run([[0.90], [0.91], [0.90], [0.92]])
    document = run.as_dict()
    document["format_version"] = 1
    document["settings"]["pooled_spread_dof"] = 4.0
    document["settings"]["min_blocks"] = 2
    for case in document["cases"]:
        del case["pairs_per_block"], case["priors"]
    path = tmp_path / "paired.json"
    path.write_text(json.dumps(document))
    loaded = load_paired_run(path)
    assert loaded.settings.min_blocks == 2 and loaded.settings.verdict_blocks == 3
    assert _decode(loaded)[0].verdict == SLOWER


def test_version_2_files_drop_their_uncapped_frozen_priors(tmp_path: Path) -> None:
    """Format 2 froze priors whose weight the sweep's dof did not cap (up to 1000): judged anew, not on those."""
    run = _run([[0.90], [0.93], [0.87]], cases=10)
    document = run.as_dict()
    document["format_version"] = 2
    for case in document["cases"]:
        case["priors"] = {"1": {"decode_tokens_per_s": [1e-4, 1000.0]}}
    path = tmp_path / "paired.json"
    path.write_text(json.dumps(document))
    loaded = load_paired_run(path)
    assert all(case.priors == {} for case in loaded.cases)
    assert "t on 22 dof" in _decode(loaded)[0].evidence
