"""Pure statistics over samples: summaries and percentiles. No I/O, no Paddle."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass


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
    """The q-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not samples:
        raise ValueError("cannot take a percentile of zero samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    ordered = sorted(float(v) for v in samples)
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction
