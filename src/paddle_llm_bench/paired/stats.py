"""Paired statistics for interleaved A/B measurements. Pure: numbers in, numbers out.

The data of one case and one metric: *blocks* (one block = one worker process per side, fresh
processes for every block), each holding *pairs* (one turn of each side, in random order). A pair
gives a log ratio ``log(candidate / reference)``; both turns ran seconds apart, so the machine's
drift cancels inside it.

Two sources of noise remain and the interval must hold both:
- within a block, pair-to-pair noise (a few % per pair on a shared machine), and outlier pairs;
- between blocks, *process luck*: two processes of identical code differ by 1-2 % for their whole
  life (memory layout, which core, allocator state). Pairs of one pair of processes cannot see it.

So each block is summarized by a robust estimate of its log ratio (Hodges-Lehmann: the median of
the pairwise means, resistant to outlier pairs), and the blocks' estimates, which each carry one
draw of process luck, give the estimate (their mean) and a Student-t interval with ``blocks - 1``
degrees of freedom — the standard analysis of a cluster-randomized design. Its honesty is checked
by A/A runs (``paddle-llm-bench paired --candidate-python SAME``), not assumed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIN_BLOCKS = 2  # an interval over blocks needs two of them at least

FASTER = "faster"
SLOWER = "slower"
SAME = "same"
INCONCLUSIVE = "inconclusive"
BIGGER = "bigger"
SMALLER = "smaller"


def hodges_lehmann(values: Sequence[float]) -> float:
    """The median of all pairwise means (i <= j) — a location estimate that one wild value cannot move far."""
    if not values:
        raise ValueError("cannot estimate from zero values")
    walsh = [(values[i] + values[j]) / 2.0 for i in range(len(values)) for j in range(i, len(values))]
    return statistics.median(walsh)


@dataclass(frozen=True)
class PairedEstimate:
    """candidate ÷ reference for one metric, with a ``confidence`` interval that includes process luck."""

    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float  # two-sided t-test of "the ratio is 1"
    blocks: int
    pairs: int
    block_ratios: tuple[float, ...]

    @property
    def half_width_percent(self) -> float:
        """Half the interval's width relative to the estimate, in percent (the precision target's unit)."""
        return 100.0 * (self.ci_high - self.ci_low) / (2.0 * self.ratio)

    def as_dict(self) -> dict[str, float | int | list[float]]:
        return {
            "ratio": self.ratio,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "half_width_percent": self.half_width_percent,
            "p_value": self.p_value,
            "blocks": self.blocks,
            "pairs": self.pairs,
            "block_ratios": list(self.block_ratios),
        }


@dataclass(frozen=True)
class PriorSpread:
    """The spread of block estimates seen in the rest of a sweep: a prior for one comparison's own.

    ``variance`` is the pooled variance of block estimates (log scale) of the other comparisons of the
    same metric; ``dof`` its weight in degrees of freedom (the gate's moderated noise, applied here).
    """

    variance: float
    dof: float


def block_estimates(blocks: Sequence[Sequence[float]]) -> list[float]:
    """One robust estimate (Hodges-Lehmann) per non-empty block of pair log ratios."""
    estimates = [hodges_lehmann(block) for block in blocks if block]
    if any(not math.isfinite(value) for value in estimates):
        raise ValueError("log ratios must be finite")
    return estimates


def paired_estimate(
    blocks: Sequence[Sequence[float]], confidence: float = 0.95, prior: PriorSpread | None = None
) -> PairedEstimate | None:
    """The ratio and its interval from per-block lists of pair log ratios; None with fewer than 2 blocks.

    Without ``prior`` the interval is Student-t over the blocks (``blocks - 1`` degrees of freedom).
    With it, the blocks' variance is moderated: (d0·s0² + d·s²) / (d0 + d) on d0 + d degrees of
    freedom, so that a sweep's many cases lend each other their evidence about the noise. Empty
    blocks are ignored. All blocks agreeing exactly gives a zero-width interval.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    estimates = block_estimates(blocks)
    if len(estimates) < MIN_BLOCKS:
        return None
    k = len(estimates)
    mean = statistics.fmean(estimates)
    dof: float = k - 1
    variance = statistics.variance(estimates)
    if prior is not None and prior.dof > 0:
        variance = (prior.dof * prior.variance + dof * variance) / (prior.dof + dof)
        dof += prior.dof
    from scipy import stats as scipy_stats  # here, not at import: `--help` and the plugin's import stay fast

    standard_error = math.sqrt(variance / k)
    t_quantile = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, dof))
    if standard_error > 0.0:
        p_value = float(2.0 * scipy_stats.t.sf(abs(mean) / standard_error, dof))
    else:
        p_value = 1.0 if mean == 0.0 else 0.0
    return PairedEstimate(
        ratio=math.exp(mean),
        ci_low=math.exp(mean - t_quantile * standard_error),
        ci_high=math.exp(mean + t_quantile * standard_error),
        confidence=confidence,
        p_value=p_value,
        blocks=k,
        pairs=sum(len(block) for block in blocks),
        block_ratios=tuple(math.exp(value) for value in estimates),
    )


def prior_spreads(groups: Sequence[Sequence[float]], max_dof: float) -> list[PriorSpread | None]:
    """For each group of block estimates, the pooled variance of all the *other* groups (leave-one-out),
    weighted by at most ``max_dof`` degrees of freedom; None where no other group has two blocks."""
    pieces = [(len(g) - 1, statistics.variance(g) if len(g) > 1 else 0.0) for g in groups]
    total_dof = sum(d for d, _ in pieces if d > 0)
    total_ss = sum(d * v for d, v in pieces if d > 0)
    spreads: list[PriorSpread | None] = []
    for dof, variance in pieces:
        other_dof = total_dof - max(dof, 0)
        other_ss = total_ss - (dof * variance if dof > 0 else 0.0)
        spreads.append(PriorSpread(other_ss / other_dof, min(max_dof, other_dof)) if other_dof > 0 else None)
    return spreads


def speed_verdict(estimate: PairedEstimate | None, min_effect_percent: float, higher_is_better: bool) -> str:
    """faster / slower / same / inconclusive for the candidate, from the metric's ratio and interval.

    - faster or slower: the whole interval is on one side of 1 and the estimate is at least the
      minimum effect away from 1 (a real, and a large enough, difference);
    - same: the whole interval lies within ±minimum effect (any difference is too small to matter);
    - inconclusive: otherwise (too few blocks, or an interval too wide to tell).
    """
    if estimate is None:
        return INCONCLUSIVE
    effect = min_effect_percent / 100.0
    if estimate.ci_low > 1.0 and estimate.ratio >= 1.0 + effect:
        return FASTER if higher_is_better else SLOWER
    if estimate.ci_high < 1.0 and estimate.ratio <= 1.0 - effect:
        return SLOWER if higher_is_better else FASTER
    if 1.0 - effect <= estimate.ci_low and estimate.ci_high <= 1.0 + effect:
        return SAME
    return INCONCLUSIVE


def memory_verdict(reference_bytes: int, candidate_bytes: int, tolerance_percent: float, slack_bytes: int) -> str:
    """bigger / smaller / same: peaks of fixed shapes are deterministic, so a tolerance decides, not a test."""
    tolerance = max(reference_bytes * tolerance_percent / 100.0, slack_bytes)
    delta = candidate_bytes - reference_bytes
    if delta > tolerance:
        return BIGGER
    if -delta > tolerance:
        return SMALLER
    return SAME
