"""One comparison model and one verdict vocabulary for every estimator. Pure: no I/O, no Paddle.

Both ways of comparing (the stored-baseline gate and the paired engine) and every renderer speak
these words, with these meanings:

- speed and latency: ``faster`` / ``slower`` when the change is significant after Holm's correction
  over every speed test of the comparison (so the chance of *any* spurious faster/slower in a
  sweep stays under alpha) and at least the metric's minimum effect; ``same`` when the whole
  95 % interval lies within ± the minimum effect; ``inconclusive`` otherwise (too noisy, too few
  blocks or runs, or the noise unknown — the evidence says which);
- memory: ``bigger`` / ``smaller`` / ``same`` against a tolerance (peaks of fixed shapes are
  deterministic), ``inconclusive`` when they were not;
- ``no baseline``: nothing to compare with.

A *regression* is a ``slower`` on a gated metric or a ``bigger`` on a gated memory peak: what fails
a run. ``Verdict`` is the one record: case, metric, the two values, their ratio and interval, the
raw and corrected p-values, the verdict and its evidence.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

FASTER = "faster"
SLOWER = "slower"
SAME = "same"
INCONCLUSIVE = "inconclusive"
BIGGER = "bigger"
SMALLER = "smaller"
NO_BASELINE = "no baseline"

WORSE = frozenset({SLOWER, BIGGER})
BETTER = frozenset({FASTER, SMALLER})
CHANGED = WORSE | BETTER
VERDICTS = (FASTER, SLOWER, SAME, INCONCLUSIVE, BIGGER, SMALLER, NO_BASELINE)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Verdict:
    """One metric of one case: candidate against reference, with the evidence for the verdict."""

    case_id: str
    metric: str
    verdict: str
    reference: float | None = None  # the baseline's or the reference side's value
    candidate: float | None = None  # this run's or the candidate side's value
    ratio: float | None = None  # candidate ÷ reference
    ci_low: float | None = None  # the ratio's 95 % interval
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None  # Holm over the comparison's speed tests
    regression: bool = False  # a worse verdict on a gated metric: it fails the run
    evidence: str = ""
    side: str = ""  # the candidate's name where there are several (paired)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}: one of {', '.join(VERDICTS)}")

    @property
    def change_percent(self) -> float | None:
        return None if self.ratio is None else 100.0 * (self.ratio - 1.0)

    @property
    def ratio_text(self) -> str:
        if self.ratio is None:
            return "n/a"
        if self.ci_low is None or self.ci_high is None:
            return f"{self.ratio:.3f}"
        return f"{self.ratio:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}]"

    def message(self) -> str:
        if self.verdict == NO_BASELINE:
            return f"{self.case_id}: no baseline ({self.evidence})"
        side = f" ({self.side})" if self.side else ""
        values = ""
        if self.reference is not None and self.candidate is not None:
            values = f": {format_value(self.metric, self.reference)} -> {format_value(self.metric, self.candidate)}"
        change = f" ({self.change_percent:+.1f}%, ratio {self.ratio_text})" if self.ratio is not None else ""
        return f"{self.case_id}{side}: {self.metric} {self.verdict}{values}{change}; {self.evidence}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_value(metric: str, value: float) -> str:
    if metric.endswith("_bytes"):
        return f"{value / MIB:,.1f} MiB"
    return f"{value:,.3f}"


def speed_verdict(
    ratio: float,
    ci_low: float,
    ci_high: float,
    p_adjusted: float,
    alpha: float,
    min_effect_percent: float,
    higher_is_better: bool,
) -> str:
    """faster / slower / same / inconclusive for the candidate (see the module doc)."""
    effect = min_effect_percent / 100.0
    if p_adjusted <= alpha and ratio >= 1.0 + effect:
        return FASTER if higher_is_better else SLOWER
    if p_adjusted <= alpha and ratio <= 1.0 - effect:
        return SLOWER if higher_is_better else FASTER
    if 1.0 - effect <= ci_low and ci_high <= 1.0 + effect:
        return SAME
    return INCONCLUSIVE


def memory_tolerance_bytes(reference_bytes: float, percent: float, slack_bytes: int) -> float:
    return max(reference_bytes * percent / 100.0, float(slack_bytes))


def memory_verdict(reference_bytes: float, candidate_bytes: float, percent: float, slack_bytes: int) -> str:
    """bigger / smaller / same: a change beyond the larger of ``percent`` and ``slack_bytes`` counts."""
    tolerance = memory_tolerance_bytes(reference_bytes, percent, slack_bytes)
    delta = candidate_bytes - reference_bytes
    if delta > tolerance:
        return BIGGER
    if -delta > tolerance:
        return SMALLER
    return SAME


def peak_spread_problem(peaks: Sequence[float], percent: float, slack_bytes: int) -> str:
    """Why repeated peaks of one fixed-shape case are not one deterministic figure, or "" when they are."""
    if len(peaks) < 2:
        return ""
    low, high = min(peaks), max(peaks)
    if high - low <= memory_tolerance_bytes(low, percent, slack_bytes):
        return ""
    return (
        f"peaks differ between repeats ({low / MIB:,.1f}-{high / MIB:,.1f} MiB) by more than the tolerance: "
        "not deterministic here (another process on the device, or an allocator pool carried over)"
    )


def memory_comparison(
    case_id: str,
    metric: str,
    reference_peaks: Sequence[float],
    candidate_peaks: Sequence[float],
    tolerance: tuple[float, int],
    gated: bool,
    side: str = "",
) -> Verdict:
    """Peaks of one fixed-shape case, repeated (baseline runs, blocks) on each side: their medians compared with
    the tolerance (``percent``, ``bytes``: the larger counts) when the repeats agree, else inconclusive with the
    spread. A ``bigger`` peak of a ``gated`` metric is a regression."""
    percent, slack = tolerance
    reference, candidate = statistics.median(reference_peaks), statistics.median(candidate_peaks)
    base = Verdict(case_id, metric, INCONCLUSIVE, reference, candidate, candidate / reference if reference else None)
    for who, peaks in (("reference", reference_peaks), (side or "this run", candidate_peaks)):
        spread = peak_spread_problem(peaks, percent, slack)
        if spread:
            return replace(base, side=side, evidence=f"{who}: {spread}")
    verdict = memory_verdict(reference, candidate, percent, slack)
    allowed = memory_tolerance_bytes(reference, percent, slack)
    return replace(
        base,
        verdict=verdict,
        regression=gated and verdict in WORSE,
        side=side,
        evidence=f"allowed change {allowed / MIB:,.1f} MiB (max of {percent:g}% and {slack / MIB:g} MiB)",
    )
