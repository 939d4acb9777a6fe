"""Pure statistics over samples: summaries and percentiles. No I/O, no Paddle."""

from __future__ import annotations

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


def median_standard_error(samples: Sequence[float]) -> float:
    """Approximate standard error of the median: sqrt(pi/2) · std / sqrt(n); 0 for fewer than 2 samples."""
    if len(samples) < 2:
        return 0.0
    return MEDIAN_SE_FACTOR * statistics.stdev(samples) / math.sqrt(len(samples))


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
