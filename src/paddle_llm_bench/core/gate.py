"""Stored baseline vs this run -> verdicts (``core.verdicts``). Pure: no I/O, no printing, no Paddle.

Speed and latency. For each case and gated metric, in log space on run medians:

1. **Which runs say how much a run moves.** Baseline runs are grouped into *sessions*: runs less than
   ``session_gap_hours`` apart. A run measured in the same session as the baseline's latest runs is
   compared with that session's runs, and their spread is the run-to-run noise (``r - 1`` degrees of
   freedom). A run of a new session (another night, another day) is compared with the sessions: each
   session is one draw of the machine's state that day, so the noise is the spread between sessions
   (``n - 1`` dof) plus the part of the within-session spread a single run carries. One run, or runs of
   one session judged from another, cannot show that noise: speed is then **not judged**
   (``inconclusive``, saying why) instead of judged against a made-up figure.
2. The case's own variance is moderated by the one pooled over the sweep's other cases (empirical Bayes),
   weighted as at most ``pooled_noise_dof`` dof: the cases of one sweep share their runs' machine state,
   so together they know more about the noise than one case, but not as much as their count suggests.
3. ``sigma`` is the largest of that noise, the standard error of this run's median (rounds that move
   together count as fewer: ``stats.effective_sample_size``) and a floor; the difference's variance is
   ``sigma² (1 + 1/units)``; a Student-t test on the moderated dof, and a 95 % interval on the ratio.
4. Holm-Bonferroni over every speed test of the run; ``faster``/``slower`` need the corrected p-value
   <= alpha and the minimum effect, ``same`` the whole interval within ± the minimum effect
   (``verdicts.speed_verdict``). A case whose CV exceeds ``max_cv_percent`` is never ``same``.
5. A regression is a ``slower`` (``judge_confirmed`` re-measures it first where it can).

Memory: allocator peaks for fixed shapes are deterministic. If the baseline runs' peaks agree, a peak
above their median by more than ``max(percent, bytes)`` is ``bigger`` (a regression); if they do not,
the case is ``inconclusive`` with the spread.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from paddle_llm_bench.core.metrics import (
    baseline_metric_names,
    default_gate_min_effects,
    memory_tolerances,
    metric_by_name,
)
from paddle_llm_bench.core.stats import (
    VariancePrior,
    holm_adjust,
    median_standard_error,
    t_quantile,
    t_two_sided_p,
)
from paddle_llm_bench.core.verdicts import (
    INCONCLUSIVE,
    NO_BASELINE,
    SAME,
    SLOWER,
    Verdict,
    memory_comparison,
    speed_verdict,
)

SESSION_GAP_HOURS = 6.0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class CaseMeasurement:
    """What the gate needs of one case in one run."""

    case_id: str
    samples: Mapping[str, Sequence[float]]
    memory_bytes: Mapping[str, float]
    host_busy: str = ""  # why the machine was busy with other work while this was measured, if it was
    started: str = ""  # when the run was measured (ISO 8601); "" if unknown


@dataclass(frozen=True)
class GateSettings:
    alpha: float = 0.01
    min_effect_percent: Mapping[str, float] = field(default_factory=default_gate_min_effects)
    noise_floor_percent: float = 2.0
    max_cv_percent: float = 10.0
    # Weight (in degrees of freedom) of the sweep-wide between-run noise when judging one case: a
    # case's own few runs say little about its noise, the whole sweep's runs say more.
    pooled_noise_dof: float = 4.0
    # metric -> (percent, bytes): the allowed growth is the larger of the two.
    memory_tolerance: Mapping[str, tuple[float, int]] = field(default_factory=memory_tolerances)
    session_gap_hours: float = SESSION_GAP_HOURS

    def __post_init__(self) -> None:
        unjudgeable = sorted(set(self.min_effect_percent) - set(baseline_metric_names()))
        if unjudgeable:  # it would be accepted and then never judged: baselines hold no samples of it
            raise ValueError(
                f"the gate cannot judge {', '.join(unjudgeable)}: baselines store samples of "
                f"{', '.join(baseline_metric_names())} only"
            )


@dataclass(frozen=True)
class RunNoise:
    """How much one run's log median moves, from the baseline runs the current run is compared with."""

    center: float  # the reference's log median (mean over the units)
    variance: float  # of one run's log median; 0 when ``dof`` is 0
    dof: int
    units: int  # runs (same session) or sessions (a new session) the reference averages
    source: str  # what the noise was read from, for the evidence

    @property
    def unknown(self) -> bool:
        return self.dof == 0


def _time(text: str) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return stamp if stamp.tzinfo is not None else None


def sessions(starts: Sequence[str], gap_hours: float) -> list[list[int]]:
    """Indices of runs grouped into sessions (consecutive runs less than ``gap_hours`` apart), oldest first.
    Runs of unknown time form one session of their own: their independence cannot be shown."""
    known = sorted((stamp, i) for i, text in enumerate(starts) if (stamp := _time(text)) is not None)
    groups: list[list[int]] = []
    previous: datetime | None = None
    for stamp, index in known:
        if previous is None or (stamp - previous).total_seconds() > gap_hours * 3600:
            groups.append([])
        groups[-1].append(index)
        previous = stamp
    unknown = [i for i, text in enumerate(starts) if _time(text) is None]
    return ([unknown] if unknown else []) + groups


def run_noise(
    run_medians: Sequence[float], starts: Sequence[str], current_start: str, gap_hours: float = SESSION_GAP_HOURS
) -> RunNoise:
    """The reference and the run-to-run noise for a run measured at ``current_start`` (see the module doc)."""
    groups = sessions(starts, gap_hours)
    now, latest = _time(current_start), groups[-1]
    last_stamp = max((s for i in latest if (s := _time(starts[i])) is not None), default=None)
    if now is not None and last_stamp is not None and 0 <= (now - last_stamp).total_seconds() <= gap_hours * 3600:
        values = [run_medians[i] for i in latest]
        variance = statistics.variance(values) if len(values) > 1 else 0.0
        return RunNoise(
            statistics.fmean(values), variance, len(values) - 1, len(values), f"{len(values)} run(s) of this session"
        )
    means = [statistics.fmean(run_medians[i] for i in group) for group in groups]
    within = [(statistics.variance([run_medians[i] for i in g]), len(g) - 1) for g in groups if len(g) > 1]
    within_dof = sum(d for _, d in within)
    variance = statistics.variance(means) if len(means) > 1 else 0.0
    if within_dof and len(means) > 1:
        within_variance = sum(v * d for v, d in within) / within_dof
        harmonic_runs = len(groups) / sum(1.0 / len(g) for g in groups)
        variance += within_variance * (1.0 - 1.0 / harmonic_runs)
    source = f"{len(means)} session(s) of {len(run_medians)} run(s)"
    return RunNoise(statistics.fmean(means), variance, len(means) - 1, len(means), source)


@dataclass(frozen=True)
class SpeedTest:
    """One metric's raw test, before the multiple-testing correction. ``p_value`` is None when the
    noise between runs is unknown (``why_unjudged`` says why)."""

    log_ratio: float
    sigma: float
    dof: float
    p_value: float | None
    log_half_width: float
    baseline: float
    current: float
    cv_percent: float
    noise: RunNoise
    why_unjudged: str = ""


def speed_test(
    current: Sequence[float],
    baseline_runs: Sequence[Sequence[float]],
    noise_floor_percent: float,
    prior: VariancePrior | None = None,
    baseline_starts: Sequence[str] | None = None,
    current_start: str = "",
    gap_hours: float = SESSION_GAP_HOURS,
) -> SpeedTest:
    """Compare the current run's samples with baseline runs' samples (see the module doc)."""
    kept = [i for i, run in enumerate(baseline_runs) if run]
    if not current or not kept:
        raise ValueError("speed_test needs samples in the current run and in at least one baseline run")
    runs = [[math.log(v) for v in baseline_runs[i]] for i in kept]
    starts = [(baseline_starts or [""] * len(baseline_runs))[i] for i in kept]
    log_current = [math.log(v) for v in current]
    noise = run_noise([statistics.median(run) for run in runs], starts, current_start, gap_hours)
    d = statistics.median(log_current) - noise.center
    variance, dof = noise.variance, float(noise.dof)
    if prior is not None and prior.dof > 0:
        variance, dof = prior.moderate(variance, dof)
    unjudged = SpeedTest(
        log_ratio=d,
        sigma=math.nan,
        dof=0.0,
        p_value=None,
        log_half_width=math.inf,
        baseline=math.exp(noise.center),
        current=math.exp(statistics.median(log_current)),
        cv_percent=max(_cv_percent(values) for values in [current, *[baseline_runs[i] for i in kept]]),
        noise=noise,
    )
    if dof == 0:
        why = (
            f"run-to-run noise unknown: the baseline holds {noise.source}"
            + (", all of another session" if noise.units == 1 and len(runs) > 1 else "")
            + ", and one run cannot show how much runs move (record runs of more sessions, e.g. nightly, "
            "or compare paired with --llm-reference)"
        )
        return replace(unjudged, why_unjudged=why)
    sigma = max(math.sqrt(variance), math.log1p(noise_floor_percent / 100.0), median_standard_error(log_current))
    scale = sigma * math.sqrt(1.0 + 1.0 / noise.units)
    return replace(
        unjudged,
        sigma=sigma,
        dof=dof,
        p_value=t_two_sided_p(d / scale, dof),
        log_half_width=t_quantile(0.5 + CONFIDENCE / 2.0, dof) * scale,
    )


def _cv_percent(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    return 100.0 * statistics.stdev(values) / abs(statistics.fmean(values))


def judge(
    current: Mapping[str, CaseMeasurement],
    baseline: Mapping[str, Sequence[CaseMeasurement]],
    settings: GateSettings | None = None,
) -> list[Verdict]:
    """Every verdict for a run: per case, each gated speed metric and each memory metric."""
    settings = settings or GateSettings()
    verdicts: list[Verdict] = []
    tests: list[tuple[str, str, SpeedTest]] = []
    priors = pooled_priors(current, baseline, settings)
    for case_id, measurement in current.items():
        runs = baseline.get(case_id, ())
        if not runs:
            verdicts.append(Verdict(case_id, "*", NO_BASELINE, evidence="this case has no baseline for this hardware"))
            continue
        for metric in settings.min_effect_percent:
            test = _test(measurement, runs, metric, settings, priors.get((case_id, metric)))
            if test is not None:
                tests.append((case_id, metric, test))
        verdicts.extend(_memory_verdicts(case_id, measurement, runs, settings))
    judged = [(c, m, t) for c, m, t in tests if t.p_value is not None]
    adjusted = dict(
        zip([id(t) for _, _, t in judged], holm_adjust([t.p_value or 1.0 for _, _, t in judged]), strict=True)
    )
    for case_id, metric, test in tests:
        verdicts.append(
            _speed_verdict(
                case_id, metric, test, adjusted.get(id(test)), len(judged), settings, current[case_id].host_busy
            )
        )
    return verdicts


def _test(
    measurement: CaseMeasurement,
    runs: Sequence[CaseMeasurement],
    metric: str,
    settings: GateSettings,
    prior: VariancePrior | None,
) -> SpeedTest | None:
    with_samples = [run for run in runs if run.samples.get(metric)]
    if not measurement.samples.get(metric) or not with_samples:
        return None
    return speed_test(
        measurement.samples[metric],
        [run.samples[metric] for run in with_samples],
        settings.noise_floor_percent,
        prior,
        [run.started for run in with_samples],
        measurement.started,
        settings.session_gap_hours,
    )


def pooled_priors(
    current: Mapping[str, CaseMeasurement], baseline: Mapping[str, Sequence[CaseMeasurement]], settings: GateSettings
) -> dict[tuple[str, str], VariancePrior]:
    """Per (case, gated metric), the run-to-run variance pooled over the sweep's *other* cases (weighted by their
    dof), as a prior worth at most ``pooled_noise_dof`` dof; none where no other case has runs to show it."""
    priors = {}
    for metric in settings.min_effect_percent:
        own: dict[str, tuple[float, int]] = {}
        for case_id, measurement in current.items():
            test = _test(measurement, baseline.get(case_id, ()), metric, settings, None)
            if test is not None and test.noise.dof:
                own[case_id] = (test.noise.variance * test.noise.dof, test.noise.dof)
        total = sum(ss for ss, _ in own.values())
        dof = sum(d for _, d in own.values())
        for case_id in current:
            ss, d = own.get(case_id, (0.0, 0))
            if dof - d > 0:
                priors[(case_id, metric)] = VariancePrior(
                    (total - ss) / (dof - d), min(settings.pooled_noise_dof, dof - d)
                )
    return priors


def _speed_verdict(
    case_id: str,
    metric: str,
    test: SpeedTest,
    p_adjusted: float | None,
    family: int,
    settings: GateSettings,
    host_busy: str = "",
) -> Verdict:
    ratio = math.exp(test.log_ratio)
    base = Verdict(case_id, metric, INCONCLUSIVE, test.baseline, test.current, ratio)
    if test.p_value is None or p_adjusted is None:
        return replace(base, evidence=test.why_unjudged)
    low, high = math.exp(test.log_ratio - test.log_half_width), math.exp(test.log_ratio + test.log_half_width)
    evidence = (
        f"p={test.p_value:.2g}, Holm-adjusted {p_adjusted:.2g} over {family} tests (alpha {settings.alpha}); "
        f"run-to-run noise {math.expm1(test.sigma) * 100:.1f}% from {test.noise.source}, t on {test.dof:g} dof"
    )
    verdict = speed_verdict(
        ratio,
        low,
        high,
        p_adjusted,
        settings.alpha,
        settings.min_effect_percent[metric],
        metric_by_name(metric).higher_is_better,
    )
    if test.cv_percent > settings.max_cv_percent:
        evidence = f"unstable: CV {test.cv_percent:.1f}% > {settings.max_cv_percent}%; " + evidence
        verdict = INCONCLUSIVE if verdict == SAME else verdict  # too noisy to call it the same
    if host_busy and verdict != INCONCLUSIVE and verdict != SAME:
        verdict = INCONCLUSIVE  # other work on the machine changes speed as much as code does
        evidence = f"{host_busy}; " + evidence
    return replace(
        base,
        verdict=verdict,
        ci_low=low,
        ci_high=high,
        p_value=test.p_value,
        p_adjusted=p_adjusted,
        regression=verdict == SLOWER,
        evidence=evidence,
    )


def _memory_verdicts(
    case_id: str, measurement: CaseMeasurement, runs: Sequence[CaseMeasurement], settings: GateSettings
) -> list[Verdict]:
    verdicts = []
    for metric, tolerance in settings.memory_tolerance.items():
        current = measurement.memory_bytes.get(metric)
        previous = [run.memory_bytes[metric] for run in runs if run.memory_bytes.get(metric) is not None]
        if current is not None and previous:
            verdicts.append(memory_comparison(case_id, metric, previous, [current], tolerance, gated=True))
    return verdicts


def confirm(
    first: Verdict,
    remeasured: CaseMeasurement,
    runs: Sequence[CaseMeasurement],
    family: int,
    settings: GateSettings,
    prior: VariancePrior | None = None,
) -> Verdict:
    """Re-judge a suspect speed regression on a fresh measurement of the case.

    It stays a regression only if the fresh run is one too, at the same corrected level
    (Bonferroni over the original family, which is stricter than Holm's step for this test)."""
    test = _test(remeasured, runs, first.metric, settings, prior)
    again = None
    if test is not None and test.p_value is not None:
        again = _speed_verdict(
            first.case_id, first.metric, test, min(1.0, test.p_value * family), family, settings, remeasured.host_busy
        )
    if again is not None and again.verdict == first.verdict:
        p = f"p={test.p_value:.2g}" if test is not None and test.p_value is not None else ""
        return replace(
            first, evidence=f"{first.evidence}; confirmed by re-measurement ({again.change_percent:+.1f}%, {p})"
        )
    change = f"{again.change_percent:+.1f}%" if again is not None else "not judged"
    return replace(
        again or first,
        verdict=INCONCLUSIVE if again is None else again.verdict,
        regression=False,
        evidence=f"not confirmed: first measurement {first.change_percent:+.1f}% ({first.evidence}); "
        f"re-measurement {change}",
    )


def suspects(verdicts: Sequence[Verdict], settings: GateSettings) -> list[str]:
    """The cases whose speed regression must repeat on a fresh measurement before it fails a run, in order."""
    gated = settings.min_effect_percent
    return list(dict.fromkeys(v.case_id for v in verdicts if v.regression and v.metric in gated))


def confirm_suspects(
    verdicts: Sequence[Verdict],
    current: Mapping[str, CaseMeasurement],
    baseline: Mapping[str, Sequence[CaseMeasurement]],
    settings: GateSettings,
    remeasured: Mapping[str, CaseMeasurement],
) -> list[Verdict]:
    """``judge``'s verdicts with each suspect speed regression re-judged (``confirm``) on its case's fresh
    measurement in ``remeasured``; a suspect without one keeps its first verdict."""
    family = sum(1 for v in verdicts if v.metric in settings.min_effect_percent and v.p_value is not None)
    priors = pooled_priors(current, baseline, settings)
    return [
        confirm(
            verdict,
            remeasured[verdict.case_id],
            baseline[verdict.case_id],
            family,
            settings,
            priors.get((verdict.case_id, verdict.metric)),
        )
        if verdict.regression and verdict.metric in settings.min_effect_percent and verdict.case_id in remeasured
        else verdict
        for verdict in verdicts
    ]


def judge_confirmed(
    current: Mapping[str, CaseMeasurement],
    baseline: Mapping[str, Sequence[CaseMeasurement]],
    settings: GateSettings,
    remeasure: Callable[[str], CaseMeasurement],
) -> list[Verdict]:
    """``judge``, ``suspects`` re-measured by ``remeasure(case_id)`` (once per case), ``confirm_suspects``: the
    whole sequence in one call, for the simulations. A measuring session does the middle step itself."""
    verdicts = judge(current, baseline, settings)
    fresh = {case_id: remeasure(case_id) for case_id in suspects(verdicts, settings)}
    return confirm_suspects(verdicts, current, baseline, settings, fresh)
