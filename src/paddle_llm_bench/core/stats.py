"""Pure statistics over samples: summaries and percentiles. No I/O, no Paddle."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Spread of one metric across rounds. ``std`` is the sample standard deviation (n-1)."""

    n: int
    median: float
    mean: float
    std: float
    cv_percent: float
    min: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(samples: Sequence[float]) -> Summary:
    """Median, mean, sample std, CV % (std/|mean|·100) and range; std is 0 for one sample."""
    if not samples:
        raise ValueError("cannot summarize zero samples")
    values = [float(v) for v in samples]
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    cv = 100.0 * std / abs(mean) if mean else math.inf if std else 0.0
    return Summary(
        n=len(values),
        median=statistics.median(values),
        mean=mean,
        std=std,
        cv_percent=cv,
        min=min(values),
        max=max(values),
    )


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between order statistics: numpy's, with clear errors."""
    if not samples:
        raise ValueError("cannot take a percentile of zero samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    return float(np.percentile(np.asarray(samples, dtype=float), q))


# Efficiency of the median: the standard error of a sample median is about sqrt(pi/2) times the
# standard error of the mean for near-normal data.
MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)


def lag1_autocorrelation(samples: Sequence[float]) -> float:
    """The lag-1 autocorrelation of a series (0 for fewer than 3 values or a constant series)."""
    if len(samples) < 3:
        return 0.0
    mean = statistics.fmean(samples)
    deviations = [value - mean for value in samples]
    total = sum(d * d for d in deviations)
    if total == 0.0:
        return 0.0
    return sum(a * b for a, b in itertools.pairwise(deviations)) / total


# A series whose rounds move together (a machine's speed changes in regimes lasting seconds) holds fewer
# independent samples than rounds: n·(1 - rho)/(1 + rho) for an AR(1) series, with rho capped here so that
# ten rounds are never worth less than about half a round.
MAX_AUTOCORRELATION = 0.9


def effective_sample_size(samples: Sequence[float]) -> float:
    """``n·(1-rho)/(1+rho)`` with rho the lag-1 autocorrelation, clipped to [0, 0.9]; at least 1 for n >= 1."""
    rho = min(MAX_AUTOCORRELATION, max(0.0, lag1_autocorrelation(samples)))
    return max(1.0, len(samples) * (1.0 - rho) / (1.0 + rho)) if samples else 0.0


def median_standard_error(samples: Sequence[float]) -> float:
    """Approximate standard error of the median: sqrt(pi/2) · std / sqrt(n_eff), where n_eff counts the rounds
    as fewer when consecutive rounds move together (``effective_sample_size``); 0 for fewer than 2 samples."""
    if len(samples) < 2:
        return 0.0
    return MEDIAN_SE_FACTOR * statistics.stdev(samples) / math.sqrt(effective_sample_size(samples))


def t_quantile(probability: float, dof: float) -> float:
    """The Student-t quantile; the normal's for infinite degrees of freedom."""
    # scipy.special's function, not scipy.stats.t.ppf: the same value in a microsecond instead of a millisecond (the
    # stop rule and the simulations ask for thousands). Imported here: `--help` and the plugin's import stay fast.
    from scipy import special

    if math.isinf(dof):
        return float(special.ndtri(probability))
    return float(special.stdtrit(dof, probability))


def t_two_sided_p(t: float, dof: float) -> float:
    """Two-sided p-value of a Student-t statistic (normal for infinite degrees of freedom)."""
    if math.isinf(dof):
        return min(1.0, 2.0 * normal_sf(abs(t)))
    from scipy import special

    return min(1.0, float(2.0 * special.stdtr(dof, -abs(t))))


@dataclass(frozen=True)
class VariancePrior:
    """What a sweep's comparisons say about one comparison's variance: ``variance`` with ``dof`` degrees of
    freedom of weight (``MAX_PRIOR_DOF``: they all share one variance)."""

    variance: float
    dof: float

    def moderate(self, variance: float, dof: float) -> tuple[float, float]:
        """(d0·s0² + d·s²) / (d0 + d) on d0 + d degrees of freedom (empirical Bayes, Smyth 2004)."""
        if self.dof + dof <= 0:
            return variance, dof
        return (self.dof * self.variance + dof * variance) / (self.dof + dof), self.dof + dof


MAX_PRIOR_DOF = 1000.0  # "they all share one variance": as good as known, and a finite number in JSON


def fit_variance_prior(variances: Sequence[float], dofs: Sequence[float]) -> VariancePrior | None:
    """Smyth's (2004) moment estimate of a scaled inverse-chi² prior from sample variances and their dof.

    The spread of the log variances beyond what their own dof explain tells how alike the comparisons'
    noise is: alike, and the prior weighs much (``dof`` large, at most ``MAX_PRIOR_DOF``); different,
    and it weighs little. None with fewer than three positive variances."""
    from scipy import special

    pairs = [(v, d) for v, d in zip(variances, dofs, strict=True) if v > 0.0 and d > 0]
    if len(pairs) < 3:
        return None
    values = np.array([v for v, _ in pairs])
    dof = np.array([d for _, d in pairs], dtype=float)
    e = np.log(values) - special.digamma(dof / 2) + np.log(dof / 2)
    e_mean = float(e.mean())
    excess = float(((e - e_mean) ** 2).sum() / (len(e) - 1) - special.polygamma(1, dof / 2).mean())
    if excess <= 0.0:
        return VariancePrior(math.exp(e_mean), MAX_PRIOR_DOF)
    prior_dof = min(MAX_PRIOR_DOF, 2.0 * _trigamma_inverse(excess))
    return VariancePrior(math.exp(e_mean + special.digamma(prior_dof / 2) - math.log(prior_dof / 2)), prior_dof)


def _trigamma_inverse(x: float) -> float:
    """y with trigamma(y) = x, by Smyth's Newton iteration."""
    from scipy import special

    if x > 1e7:
        return 1.0 / math.sqrt(x)
    if x < 1e-6:
        return 1.0 / x
    y = 0.5 + 1.0 / x
    for _ in range(50):
        tri = float(special.polygamma(1, y))
        step = tri * (1.0 - tri / x) / float(special.polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given): reject where adjusted <= alpha
    and the family-wise false-alarm rate stays <= alpha for any dependence between the tests."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running_max = 0.0
    for rank, index in enumerate(order):
        running_max = max(running_max, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running_max
    return adjusted
