"""Baseline vs current -> verdicts. Pure: no I/O, no printing, no Paddle.

Speed and latency (noise-aware). For each case and gated metric:

1. Work in log space on run medians: ``d = ln(median(current)) - mean_j ln(median(baseline run j))``.
2. The noise of one run's median, ``sigma``, is the largest of: the spread of the baseline runs'
   medians (between-run noise; the case's own k - 1 dof moderated by the spread pooled over every
   case of the sweep, weighted as ``pooled_noise_dof`` dof), the standard error of the current and
   baseline medians (within-run noise), and a floor (``noise_floor_percent``).
3. ``z = d / (sigma * sqrt(1 + 1/k))`` for ``k`` baseline runs; a two-sided normal p-value.
4. Holm-Bonferroni over every test of the run keeps the chance of any false alarm in a whole
   sweep <= ``alpha``.
5. A change counts only if it is also at least ``min_effect_percent`` in the worse (or better)
   direction. A case whose CV exceeds ``max_cv_percent`` and shows no such change is
   inconclusive, not passed (a change large enough to stand out of that noise still counts).

Memory: allocator peaks for fixed shapes are deterministic; a peak above the baseline runs' median
by more than ``max(percent, bytes)`` is a regression.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from paddle_llm_bench.core.metrics import (
    BASELINE_METRICS,
    DEFAULT_GATE_MIN_EFFECT_PERCENT,
    HIGHER_IS_BETTER,
    MEMORY_TOLERANCE,
    MIB,
)
from paddle_llm_bench.core.stats import holm_adjust, median_standard_error, normal_sf

REGRESSION = "regression"
IMPROVEMENT = "improvement"
UNCHANGED = "unchanged"
INCONCLUSIVE = "inconclusive"
NO_BASELINE = "no baseline"


@dataclass(frozen=True)
class CaseMeasurement:
    """What the gate needs of one case in one run."""

    case_id: str
    samples: Mapping[str, Sequence[float]]
    memory_bytes: Mapping[str, int]
    host_busy: str = ""  # why the machine was busy with other work while this was measured, if it was


@dataclass(frozen=True)
class GateSettings:
    alpha: float = 0.01
    min_effect_percent: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_GATE_MIN_EFFECT_PERCENT))
    noise_floor_percent: float = 2.0
    max_cv_percent: float = 10.0
    # Weight (in degrees of freedom) of the sweep-wide between-run noise when judging one case: a
    # case's own 2-5 baseline runs say little about its noise, the whole sweep's runs say more.
    pooled_noise_dof: float = 4.0
    # metric -> (percent, bytes): the allowed growth is the larger of the two.
    memory_tolerance: Mapping[str, tuple[float, int]] = field(default_factory=lambda: dict(MEMORY_TOLERANCE))

    def __post_init__(self) -> None:
        unjudgeable = sorted(set(self.min_effect_percent) - set(BASELINE_METRICS))
        if unjudgeable:  # it would be accepted and then never judged: baselines hold no samples of it
            raise ValueError(
                f"the gate cannot judge {', '.join(unjudgeable)}: baselines store samples of "
                f"{', '.join(BASELINE_METRICS)} only"
            )


@dataclass(frozen=True)
class Finding:
    case_id: str
    metric: str
    status: str
    baseline: float | None = None
    current: float | None = None
    change_percent: float | None = None
    evidence: str = ""
    p_value: float | None = None

    def message(self) -> str:
        if self.status == NO_BASELINE:
            return f"{self.case_id}: no baseline ({self.evidence})"
        assert self.baseline is not None and self.current is not None and self.change_percent is not None
        return (
            f"{self.case_id}: {self.metric} {self.status}: baseline {_fmt(self.metric, self.baseline)} -> "
            f"now {_fmt(self.metric, self.current)} ({self.change_percent:+.1f}%); {self.evidence}"
        )


def _fmt(metric: str, value: float) -> str:
    if metric.endswith("_bytes"):
        return f"{value / MIB:,.1f} MiB"
    return f"{value:,.3f}"


@dataclass(frozen=True)
class SpeedTest:
    """One metric's raw test, before the multiple-testing correction."""

    log_ratio: float
    sigma: float
    p_value: float
    baseline: float
    current: float
    current_cv_percent: float
    baseline_cv_percent: float
    baseline_runs: int


@dataclass(frozen=True)
class PooledNoise:
    """The between-run variance of log run medians, pooled over the cases of a sweep, and its dof."""

    variance: float
    dof: float


def pooled_between_run_noise(runs_by_case: Sequence[Sequence[Sequence[float]]]) -> PooledNoise | None:
    """Pool ``var(ln median of run j)`` over cases with >= 2 runs, weighted by their k - 1; None if none has."""
    total, dof = 0.0, 0
    for runs in runs_by_case:
        medians = [statistics.median([math.log(v) for v in run]) for run in runs if run]
        if len(medians) >= 2:
            total += statistics.variance(medians) * (len(medians) - 1)
            dof += len(medians) - 1
    return PooledNoise(total / dof, dof) if dof else None


def speed_test(
    current: Sequence[float],
    baseline_runs: Sequence[Sequence[float]],
    noise_floor_percent: float,
    pooled: PooledNoise | None = None,
    pooled_weight_dof: float = 4.0,
) -> SpeedTest:
    """Compare the current run's samples with ``k >= 1`` baseline runs' samples (see module doc).

    The between-run variance is the case's own (k - 1 dof) moderated by the sweep's ``pooled`` one
    (weighted as ``pooled_weight_dof`` dof), as in empirical-Bayes moderated t-tests.
    """
    runs = [run for run in baseline_runs if run]
    if not current or not runs:
        raise ValueError("speed_test needs samples in the current run and in at least one baseline run")
    log_current = [math.log(v) for v in current]
    log_runs = [[math.log(v) for v in run] for run in runs]
    run_medians = [statistics.median(run) for run in log_runs]
    center = statistics.fmean(run_medians)
    d = statistics.median(log_current) - center
    candidates = [math.log1p(noise_floor_percent / 100.0), median_standard_error(log_current)]
    candidates += [median_standard_error(run) for run in log_runs]
    own_dof = len(run_medians) - 1
    own_variance = statistics.variance(run_medians) if own_dof else 0.0
    prior_dof = min(pooled_weight_dof, pooled.dof) if pooled else 0.0
    if own_dof or prior_dof:
        prior_variance = pooled.variance if pooled else 0.0
        candidates.append(math.sqrt((own_dof * own_variance + prior_dof * prior_variance) / (own_dof + prior_dof)))
    sigma = max(candidates)
    k = len(runs)
    z = d / (sigma * math.sqrt(1.0 + 1.0 / k))
    return SpeedTest(
        log_ratio=d,
        sigma=sigma,
        p_value=min(1.0, 2.0 * normal_sf(abs(z))),
        baseline=math.exp(center),
        current=math.exp(statistics.median(log_current)),
        current_cv_percent=_cv_percent(current),
        baseline_cv_percent=max(_cv_percent(run) for run in runs),
        baseline_runs=k,
    )


def _cv_percent(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    return 100.0 * statistics.stdev(values) / abs(statistics.fmean(values))


def judge(
    current: Mapping[str, CaseMeasurement],
    baseline: Mapping[str, Sequence[CaseMeasurement]],
    settings: GateSettings | None = None,
) -> list[Finding]:
    """Every verdict for a run: per case, each gated speed metric and each memory metric."""
    settings = settings or GateSettings()
    findings: list[Finding] = []
    tests: list[tuple[str, str, SpeedTest]] = []
    pooled = pooled_noise(baseline, settings)
    for case_id, measurement in current.items():
        runs = baseline.get(case_id, ())
        if not runs:
            findings.append(Finding(case_id, "*", NO_BASELINE, evidence="this case has no baseline for this hardware"))
            continue
        for metric in settings.min_effect_percent:
            baseline_samples = [run.samples.get(metric, ()) for run in runs]
            if measurement.samples.get(metric) and any(baseline_samples):
                tests.append(
                    (
                        case_id,
                        metric,
                        speed_test(
                            measurement.samples[metric],
                            baseline_samples,
                            settings.noise_floor_percent,
                            pooled[metric],
                            settings.pooled_noise_dof,
                        ),
                    )
                )
        findings.extend(_memory_findings(case_id, measurement, runs, settings))
    adjusted = holm_adjust([test.p_value for _, _, test in tests])
    for (case_id, metric, test), p_adjusted in zip(tests, adjusted, strict=True):
        findings.append(
            _speed_finding(case_id, metric, test, p_adjusted, len(tests), settings, current[case_id].host_busy)
        )
    return findings


def pooled_noise(
    baseline: Mapping[str, Sequence[CaseMeasurement]], settings: GateSettings
) -> dict[str, PooledNoise | None]:
    """Per gated metric, the between-run noise pooled over every case of the baseline."""
    return {
        metric: pooled_between_run_noise([[run.samples.get(metric, ()) for run in runs] for runs in baseline.values()])
        for metric in settings.min_effect_percent
    }


def _speed_finding(
    case_id: str,
    metric: str,
    test: SpeedTest,
    p_adjusted: float,
    family: int,
    settings: GateSettings,
    host_busy: str = "",
) -> Finding:
    change_percent = math.expm1(test.log_ratio) * 100.0
    worse_percent = -change_percent if metric in HIGHER_IS_BETTER else change_percent
    evidence = (
        f"p={test.p_value:.2g}, Holm-adjusted {p_adjusted:.2g} over {family} tests (alpha {settings.alpha}); "
        f"run-to-run noise {math.expm1(test.sigma) * 100:.1f}%, {test.baseline_runs} baseline run(s)"
    )
    min_effect = settings.min_effect_percent[metric]
    significant = p_adjusted <= settings.alpha
    cv_percent = max(test.current_cv_percent, test.baseline_cv_percent)
    unstable = cv_percent > settings.max_cv_percent
    if unstable:
        evidence = f"unstable: CV {cv_percent:.1f}% > {settings.max_cv_percent}%; " + evidence
    if significant and worse_percent >= min_effect:
        status = REGRESSION
    elif significant and -worse_percent >= min_effect:
        status = IMPROVEMENT
    elif unstable:
        status = INCONCLUSIVE  # too noisy to call it unchanged
    else:
        status = UNCHANGED
    if host_busy and status in (REGRESSION, IMPROVEMENT):
        status = INCONCLUSIVE  # other work on the machine changes speed as much as code does
        evidence = f"{host_busy}; " + evidence
    return Finding(case_id, metric, status, test.baseline, test.current, change_percent, evidence, test.p_value)


def _memory_findings(
    case_id: str, measurement: CaseMeasurement, runs: Sequence[CaseMeasurement], settings: GateSettings
) -> list[Finding]:
    findings = []
    for metric, (percent, slack_bytes) in settings.memory_tolerance.items():
        current = measurement.memory_bytes.get(metric)
        previous = [run.memory_bytes[metric] for run in runs if run.memory_bytes.get(metric) is not None]
        if current is None or not previous:
            continue
        reference = statistics.median(previous)
        tolerance = max(reference * percent / 100.0, slack_bytes)
        delta = current - reference
        if delta > tolerance:
            status = REGRESSION
        elif -delta > tolerance:
            status = IMPROVEMENT
        else:
            status = UNCHANGED
        evidence = f"allowed change {tolerance / MIB:,.1f} MiB (max of {percent}% and {slack_bytes / MIB:.0f} MiB)"
        change = 100.0 * delta / reference if reference else math.inf
        findings.append(Finding(case_id, metric, status, float(reference), float(current), change, evidence))
    return findings


def confirm(
    first: Finding,
    remeasured: CaseMeasurement,
    runs: Sequence[CaseMeasurement],
    family: int,
    settings: GateSettings,
    pooled: PooledNoise | None = None,
) -> Finding:
    """Re-judge a suspect speed regression on a fresh measurement of the case.

    It stays a regression only if the fresh run is one too, at the same corrected level
    (Bonferroni over the original family, which is stricter than Holm's step for this test).
    """
    samples = [run.samples.get(first.metric, ()) for run in runs]
    test = speed_test(
        remeasured.samples[first.metric], samples, settings.noise_floor_percent, pooled, settings.pooled_noise_dof
    )
    again = _speed_finding(
        first.case_id, first.metric, test, min(1.0, test.p_value * family), family, settings, remeasured.host_busy
    )
    if again.status == first.status:
        return Finding(
            first.case_id,
            first.metric,
            first.status,
            first.baseline,
            first.current,
            first.change_percent,
            f"{first.evidence}; confirmed by re-measurement ({again.change_percent:+.1f}%, p={test.p_value:.2g})",
            first.p_value,
        )
    return Finding(
        first.case_id,
        first.metric,
        UNCHANGED,
        first.baseline,
        again.current,
        again.change_percent,
        f"not confirmed: first measurement {first.change_percent:+.1f}% ({first.evidence}); "
        f"re-measurement {again.change_percent:+.1f}%, p={test.p_value:.2g}",
        test.p_value,
    )


def judge_confirmed(
    current: Mapping[str, CaseMeasurement],
    baseline: Mapping[str, Sequence[CaseMeasurement]],
    settings: GateSettings,
    remeasure: Callable[[str], CaseMeasurement] | None,
) -> list[Finding]:
    """``judge``, then each suspect speed regression re-judged on a fresh measurement of its case
    (``remeasure(case_id)``, called once per case); without ``remeasure`` the first verdicts stand."""
    findings = judge(current, baseline, settings)
    if remeasure is None:
        return findings
    family = sum(1 for f in findings if f.metric in settings.min_effect_percent)
    pooled = pooled_noise(baseline, settings)
    fresh: dict[str, CaseMeasurement] = {}
    for index, finding in enumerate(findings):
        if finding.status == REGRESSION and finding.metric in settings.min_effect_percent:
            if finding.case_id not in fresh:
                fresh[finding.case_id] = remeasure(finding.case_id)
            findings[index] = confirm(
                finding, fresh[finding.case_id], baseline[finding.case_id], family, settings, pooled[finding.metric]
            )
    return findings
