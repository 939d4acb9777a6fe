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
draw of process luck, give the estimate and a Student-t interval with ``blocks - 1`` degrees of
freedom — the standard analysis of a cluster-randomized design. Blocks of one noise weigh the same
(their mean); where a neighbour made some blocks far noisier than others, each weighs by its own
precision plus process luck (random effects, Knapp-Hartung: ``combine_blocks``). A case's own few blocks
say little about its noise, so its variance is moderated by the sweep's cases of the same decoding
(empirical Bayes, Smyth 2004, as limma does): the prior's weight is estimated from how alike their variances are
and never exceeds the degrees of freedom it was estimated from; a case whose own variance is implausibly large for
the prior (an F-test) keeps its own. Its honesty is checked by
simulation (``paddle-llm-bench simulate``) and by A/A runs (``paddle-llm-bench paired``, one Python on both
sides).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from paddle_llm_bench.core.stats import VariancePrior, fit_variance_prior, t_quantile, t_two_sided_p

MIN_BLOCKS = 2  # an interval over blocks needs two of them at least
# A case whose blocks scatter more than the sweep's prior makes this unlikely (F-test, one-sided) is of unlike
# noise and keeps its own variance. A strict test lets a 4x noisier case of few blocks pass as alike now and then
# (p < 0.05: it covered 93 %, and made a spurious verdict in 1-2 % of sweeps); a lax one keeps like cases from
# stopping early (p < 0.5: a quiet day's sweep as long as with no narrowing at all). By simulation: docs/verdicts.md.
OUTLIER_P = 0.10


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
    dof: float = 0.0  # of the interval's t: blocks - 1, plus the prior's weight when moderated
    moderated: bool = False  # the blocks' variance was moderated by the sweep's

    @property
    def half_width_percent(self) -> float:
        """Half the interval's width relative to the estimate, in percent (the precision target's unit)."""
        return 100.0 * (self.ci_high - self.ci_low) / (2.0 * self.ratio)

    def as_dict(self) -> dict[str, float | int | bool | list[float]]:
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
            "dof": self.dof,
            "moderated": self.moderated,
        }


@functools.lru_cache(maxsize=65536)
def _block_estimate(block: tuple[float, ...]) -> float:
    return hodges_lehmann(block)


def block_estimates(blocks: Sequence[Sequence[float]]) -> list[float]:
    """One robust estimate (Hodges-Lehmann) per non-empty block of pair log ratios (a finished block's is
    computed once: the stop rule and the verdicts ask for them again and again)."""
    estimates = [_block_estimate(tuple(block)) for block in blocks if block]
    if any(not math.isfinite(value) for value in estimates):
        raise ValueError("log ratios must be finite")
    return estimates


MIN_PAIRS_TO_WEIGH = 5  # a block's own noise is read from its pairs only from this many pairs on
MIN_PAIR_SD = 1e-6  # pairs spread less than a clock's resolution tell nothing of the block's noise
MAD_TO_SD = 1.4826  # the median absolute deviation of normal values, scaled to their sd
HL_VARIANCE_FACTOR = math.pi / 3.0  # Hodges-Lehmann's variance over the mean's, for normal values


@functools.lru_cache(maxsize=65536)
def _block_noise(block: tuple[float, ...]) -> float | None:
    """The variance of a block's Hodges-Lehmann estimate from the spread of its pairs (robust: the MAD), or None
    when the block has too few pairs, or pairs too alike, to tell."""
    if len(block) < MIN_PAIRS_TO_WEIGH:
        return None
    middle = statistics.median(block)
    sd = MAD_TO_SD * statistics.median([abs(value - middle) for value in block])
    variance = sd * sd * HL_VARIANCE_FACTOR / len(block)
    return variance if sd > MIN_PAIR_SD and math.isfinite(variance) else None


# Blocks whose pair noise fits one variance this well are weighed alike (the one value tried, by simulation:
# docs/verdicts.md; weighing blocks of one noise by noisy estimates of it cost a quiet day 3-6 points of power).
ALIKE_PRIOR_DOF = 50.0
MAD_EFFICIENCY = 0.37  # a MAD-based variance of normal values is worth this share of the sample variance's dof


def _alike(noise: Sequence[float], blocks: Sequence[Sequence[float]]) -> bool:
    """Whether the blocks' pair noise is one noise (Smyth's prior over them weighs at least ``ALIKE_PRIOR_DOF``)."""
    sizes = [len(block) for block in blocks if block]
    prior = fit_variance_prior(
        [v * n for v, n in zip(noise, sizes, strict=True)], [MAD_EFFICIENCY * (n - 1) for n in sizes]
    )
    return prior is None or prior.dof >= ALIKE_PRIOR_DOF


def combine_blocks(blocks: Sequence[Sequence[float]]) -> tuple[list[float], float, float]:
    """(each block's estimate, their combined log ratio, the per-block variance the interval uses).

    Blocks are weighed by how precisely their own pairs pin them down, plus the spread between blocks (process
    luck): a random-effects mean (DerSimonian-Laird) with the Knapp-Hartung variance, which reads the weighted
    scatter of the blocks themselves and is never below what the weights promise. On a busy day a block that ran
    beside a noisy neighbour counts less than one that ran in a quiet spell. Where a block's noise cannot be told
    (fewer than ``MIN_PAIRS_TO_WEIGH`` pairs, or pairs all alike), or the blocks' noise is one noise (a quiet
    day: ``_alike``), every block weighs the same, as in the plain mean and sample variance. The variance returned
    is ``k`` times the mean's, so that Student-t over ``k - 1`` degrees of freedom and the sweep's moderation
    treat both alike."""
    estimates, mean, variance = _combine(tuple(tuple(block) for block in blocks if block))
    return list(estimates), mean, variance


@functools.lru_cache(maxsize=4096)  # a round of the stop rule asks for cases x metrics x sides of them, a few times
def _combine(blocks: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], float, float]:
    """``combine_blocks`` of non-empty blocks, computed once per content (the stop rule, the sweep's prior and the
    verdicts ask for the same blocks again and again)."""
    estimates = block_estimates(blocks)
    k = len(estimates)
    if k < MIN_BLOCKS:
        return tuple(estimates), statistics.fmean(estimates) if estimates else 0.0, 0.0
    noise = [_block_noise(block) for block in blocks]
    if any(v is None for v in noise) or _alike([v for v in noise if v is not None], blocks):
        return tuple(estimates), statistics.fmean(estimates), sample_variance(estimates)
    within = [v for v in noise if v is not None]
    fixed = [1.0 / v for v in within]
    fixed_mean = math.fsum(w * y for w, y in zip(fixed, estimates, strict=True)) / math.fsum(fixed)
    q_statistic = math.fsum(w * (y - fixed_mean) ** 2 for w, y in zip(fixed, estimates, strict=True))
    scale = math.fsum(fixed) - math.fsum(w * w for w in fixed) / math.fsum(fixed)
    between = max(0.0, (q_statistic - (k - 1)) / scale) if scale > 0.0 else 0.0
    weights = [1.0 / (v + between) for v in within]
    total = math.fsum(weights)
    mean = math.fsum(w * y for w, y in zip(weights, estimates, strict=True)) / total
    scatter = math.fsum(w * (y - mean) ** 2 for w, y in zip(weights, estimates, strict=True)) / (k - 1)
    return tuple(estimates), mean, k * max(scatter, 1.0) / total


def sweep_prior(groups: Sequence[Sequence[Sequence[float]]]) -> VariancePrior | None:
    """The prior for each comparison's per-block variance, from every comparison of one metric in a sweep (each a
    list of blocks of pair log ratios): Smyth's moment estimate, its weight estimated from how alike they are and
    at most their degrees of freedom together (alike variances make it exact only for a sweep of endless blocks:
    24 cases of 4 blocks know the shared variance as well as 72 degrees of freedom can, not better)."""
    usable = [group for group in groups if len([block for block in group if block]) >= MIN_BLOCKS]
    variances = [combine_blocks(group)[2] for group in usable]
    dofs = [len([block for block in group if block]) - 1 for group in usable]
    prior = fit_variance_prior(variances, dofs)
    return VariancePrior(prior.variance, min(prior.dof, float(sum(dofs)))) if prior is not None else None


def unlike_noise(variance: float, dof: float, prior: VariancePrior) -> bool:
    """Whether a per-block variance on ``dof`` degrees of freedom is too large to share the prior's noise: its
    ratio to the prior's is F-distributed on (dof, prior dof) where it does, tested one-sided at ``OUTLIER_P``."""
    from scipy import special

    if variance <= prior.variance:
        return False
    return float(special.fdtrc(dof, prior.dof, variance / prior.variance)) < OUTLIER_P


def sample_variance(values: Sequence[float]) -> float:
    """The sample variance (n - 1) in floats (``statistics.variance`` works in fractions: slow in the stop rule)."""
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)


def paired_estimate(
    blocks: Sequence[Sequence[float]], confidence: float = 0.95, prior: VariancePrior | None = None
) -> PairedEstimate | None:
    """The ratio and its interval from per-block lists of pair log ratios; None with fewer than 2 blocks.

    Without ``prior`` the interval is Student-t over the blocks (``blocks - 1`` degrees of freedom). With it,
    the variance is moderated, (d0·s0² + d·s²) / (d0 + d) on d0 + d dof, unless it is of unlike noise
    (``unlike_noise``: then it is kept, on its own dof). Empty blocks are ignored. All blocks agreeing exactly
    gives a zero-width interval.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    estimates, mean, variance = combine_blocks(blocks)
    if len(estimates) < MIN_BLOCKS:
        return None
    k = len(estimates)
    dof: float = k - 1
    # Moderated both ways, as limma does: a case whose blocks agree by chance is widened towards the sweep's noise,
    # one whose blocks disagree by chance narrowed towards it (keeping only the widening made like cases cover 96-97 %
    # and stop later than they need); a case of unlike noise keeps its own.
    moderated = prior is not None and prior.dof > 0 and not unlike_noise(variance, dof, prior)
    if moderated and prior is not None:
        variance, dof = prior.moderate(variance, dof)
    standard_error = math.sqrt(variance / k)
    half = t_quantile(0.5 + confidence / 2.0, dof) * standard_error
    p_value = t_two_sided_p(mean / standard_error, dof) if standard_error > 0.0 else float(mean == 0.0)
    return PairedEstimate(
        ratio=math.exp(mean),
        ci_low=math.exp(mean - half),
        ci_high=math.exp(mean + half),
        confidence=confidence,
        p_value=p_value,
        blocks=k,
        pairs=sum(len(block) for block in blocks),
        block_ratios=tuple(math.exp(value) for value in estimates),
        dof=dof,
        moderated=moderated,
    )
