"""Compare saved runs: per case, each run's medians, ratios against the first run, and verdicts.

Pure: takes saved runs already read (see ``compare_cli``), returns a ``Comparison`` and renders it as
text (aligned table, Markdown, CSV, JSON). No I/O, no printing, no Paddle.

- The first run is the reference. Each later run is judged against it with the gate's own test
  (``gate.judge`` with the reference as a one-run baseline). One run on each side cannot show how much
  runs move from one to the next, so speed is reported as a ratio and judged ``inconclusive`` with that
  reason (a paired comparison, ``paddle-llm-bench paired``, gives speed verdicts); memory peaks of fixed
  shapes are deterministic and are judged with the gate's tolerance.
- Verdict words are the suite's one vocabulary (``core.verdicts``): faster / slower / same /
  inconclusive for speed, bigger / smaller / same for memory.
- A metric a run lacks is "n/a" with the reason (the run's ``absent`` entry where present), never 0.
- For a case whose decode tok/s or TTFT moved by at least the minimum effect (or was judged faster or
  slower) and whose two runs both carry an ``operator_profile``, the operators whose time changed most
  are listed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from paddle_llm_bench.analysis.operator_changes import OperatorReport, operator_changes
from paddle_llm_bench.core.gate import CaseMeasurement, GateSettings, judge
from paddle_llm_bench.core.metrics import Metric, comparison_metrics, metric_by_name
from paddle_llm_bench.core.record import CaseRecord, MachineFacts, case_figure
from paddle_llm_bench.core.stats import summarize
from paddle_llm_bench.core.verdicts import CHANGED, INCONCLUSIVE, Verdict
from paddle_llm_bench.core.versioned import Format
from paddle_llm_bench.results.baselines import measurement_from_record

# The JSON of `compare --format json`; 2: fields named after the registry's metrics (docs/gate.md).
COMPARISON = Format("comparison", 2)  # written for other tools, never read back: no upgrade steps
COMPARISON_FORMAT = COMPARISON.current
NOT_AVAILABLE = "n/a"
NOT_IN_RUN = "not in this run"
NO_REFERENCE = "no reference"  # the case is not in the first run

REFERENCE = "reference"

DECODE = "decode_tokens_per_s"
TTFT = "ttft_ms"
# Speed metrics a change is explained for (operator profiles): the ones one-run comparisons judge by ratio.
EXPLAINED = (DECODE, TTFT)


class CompareError(Exception):
    """Saved runs that cannot be compared; the message names the file and what is expected."""


@dataclass(frozen=True)
class SavedRun:
    """One saved pytest-benchmark run, reduced to what a comparison reads."""

    name: str
    path: str
    hardware_fingerprint: str | None
    paddle_version: str | None
    cases: Mapping[str, CaseRecord]  # by case id, in the file's order
    started: str = ""  # when it was measured (ISO 8601)


def run_name(path: Path, facts: MachineFacts) -> str:
    """The file's stem plus its Paddle version, e.g. ``0001_x (paddle 3.3.1)``."""
    return f"{path.stem} (paddle {facts.paddle_version})" if facts.paddle_version else path.stem


def saved_run(path: Path, fingerprint: str | None, by_case: Mapping[str, CaseRecord], facts: MachineFacts) -> SavedRun:
    """A ``SavedRun`` from what ``baselines.load_saved_run`` returns; refuses files without our results."""
    if not by_case:
        raise CompareError(
            f"{path} holds no paddle-llm-bench results (no benchmark has extra_info.case_id): it is a plain "
            "pytest-benchmark run or an older format; compare runs saved by `pytest benchmarks --benchmark-autosave` "
            "or `--benchmark-json FILE`"
        )
    return SavedRun(
        name=run_name(path, facts),
        path=str(path),
        hardware_fingerprint=fingerprint,
        paddle_version=facts.paddle_version or None,
        cases=dict(by_case),
        started=facts.run_started,
    )


@dataclass(frozen=True)
class Value:
    """One metric of one case in one run: the figure, its spread across rounds, its ratio to the reference
    run, or why it is missing."""

    value: float | None
    ratio: float | None = None
    reason: str = ""
    std: float | None = None


@dataclass(frozen=True)
class Row:
    """One case in one run: a ``Value`` for every ``in_comparison`` metric of the registry, and a verdict
    for each of them the gate judges (``reference`` in the reference run)."""

    case_id: str
    run: str
    present: bool
    values: Mapping[str, Value]
    verdicts: Mapping[str, str]
    evidence: Mapping[str, str] = field(default_factory=dict)
    p_values: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Flat fields named after the metric (``<metric>``, ``_std``, ``_ratio``, ``_verdict``,
        ``_p_value``): one CSV row or JSON object; missing figures are None, never 0."""
        if not self.present:
            not_available = NOT_IN_RUN
        else:
            not_available = "; ".join(
                f"{m}: {v.reason}" for m, v in self.values.items() if v.value is None and v.reason
            )
        flat: dict[str, Any] = {"case_id": self.case_id, "run": self.run, "present": self.present}
        for metric in comparison_metrics():
            value = self.values[metric.name]
            number = value.value
            flat[metric.name] = round(number) if number is not None and metric.unit == "bytes" else number
            if metric.per_round is not None:
                flat[f"{metric.name}_std"] = value.std
            flat[f"{metric.name}_ratio"] = value.ratio
            if metric.judged_by_gate:
                flat[f"{metric.name}_verdict"] = self.verdicts[metric.name]
                flat[f"{metric.name}_p_value"] = self.p_values.get(metric.name)
        flat["not_available"] = not_available
        flat["evidence"] = "; ".join(f"{m}: {text}" for m, text in self.evidence.items())
        return flat


@dataclass(frozen=True)
class Comparison:
    runs: Sequence[SavedRun]
    case_ids: Sequence[str]
    rows: Sequence[Row]
    only_in: Mapping[str, Sequence[str]]
    warnings: Sequence[str]
    notes: Sequence[str]
    operator_reports: Sequence[OperatorReport]
    settings: GateSettings
    # case id -> run name -> median across rounds of the gap before each new token (token 2, 3, ...)
    token_latency_ms: Mapping[str, Mapping[str, Sequence[float]]]

    @property
    def reference(self) -> SavedRun:
        return self.runs[0]

    def rows_for(self, case_id: str) -> list[Row]:
        return [row for row in self.rows if row.case_id == case_id]


def compare(runs: Sequence[SavedRun], settings: GateSettings | None = None) -> Comparison:
    """Compare every later run with the first, case by case (see module doc)."""
    if len(runs) < 2:
        raise CompareError(f"compare needs at least two saved runs, got {len(runs)}")
    settings = settings or GateSettings()
    runs = _unique_names(runs)
    reference = runs[0]
    case_ids = list(dict.fromkeys(case_id for run in runs for case_id in run.cases))
    findings = {run.name: _judge(reference, run, settings) for run in runs[1:]}
    rows = [_row(case_id, run, reference, findings.get(run.name, {})) for case_id in case_ids for run in runs]
    only_in = {
        case_id: [run.name for run in runs if case_id in run.cases]
        for case_id in case_ids
        if any(case_id not in run.cases for run in runs)
    }
    comparison = Comparison(
        runs=runs,
        case_ids=case_ids,
        rows=rows,
        only_in=only_in,
        warnings=_hardware_warnings(runs),
        notes=[*_not_available_notes(rows, len(runs)), *_inconclusive_notes(rows)],
        operator_reports=[],
        settings=settings,
        token_latency_ms={
            case_id: {run.name: token_latency_ms(run.cases[case_id]) for run in runs if case_id in run.cases}
            for case_id in case_ids
        },
    )
    reports, notes = _operator_reports(comparison)
    return Comparison(**{**_fields(comparison), "operator_reports": reports, "notes": [*comparison.notes, *notes]})


def _fields(comparison: Comparison) -> dict[str, Any]:
    return {name: getattr(comparison, name) for name in Comparison.__dataclass_fields__}


def _unique_names(runs: Sequence[SavedRun]) -> list[SavedRun]:
    """Two runs with one name (the same file twice, or equal stems in two folders) get ``#2``, ``#3``..."""
    seen: dict[str, int] = {}
    unique = []
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
        if seen[run.name] > 1:
            run = replace(run, name=f"{run.name} #{seen[run.name]}")
        unique.append(run)
    return unique


def _judge(reference: SavedRun, run: SavedRun, settings: GateSettings) -> dict[tuple[str, str], Verdict]:
    """The gate's verdicts for one run against the reference, Holm-corrected over that comparison's tests."""
    common = [case_id for case_id in run.cases if case_id in reference.cases]
    current: dict[str, CaseMeasurement] = {c: measurement_from_record(run.cases[c], run.started) for c in common}
    baseline = {c: [measurement_from_record(reference.cases[c], reference.started)] for c in common}
    return {(v.case_id, v.metric): v for v in judge(current, baseline, settings)}


def _raw_values(record: CaseRecord) -> dict[str, Value]:
    values = {}
    for metric in comparison_metrics():
        figure = case_figure(record, metric)
        values[metric.name] = Value(figure.value, reason=figure.reason, std=figure.std)
    return values


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0 or not math.isfinite(reference):
        return None
    return value / reference


def _row(case_id: str, run: SavedRun, reference: SavedRun, findings: Mapping[tuple[str, str], Verdict]) -> Row:
    judged = [m.name for m in comparison_metrics() if m.judged_by_gate]
    if case_id not in run.cases:
        missing = Value(None, reason=NOT_IN_RUN)
        return Row(
            case_id,
            run.name,
            False,
            dict.fromkeys((m.name for m in comparison_metrics()), missing),
            dict.fromkeys(judged, NOT_IN_RUN),
        )
    values = _raw_values(run.cases[case_id])
    if case_id in reference.cases:
        reference_values = _raw_values(reference.cases[case_id])
        values = {
            metric: replace(value, ratio=_ratio(value.value, reference_values[metric].value))
            for metric, value in values.items()
        }
    if run is reference:
        verdicts = dict.fromkeys(judged, REFERENCE)
    else:
        verdicts = {metric: _verdict(case_id, metric, reference, findings) for metric in judged}
    used = [findings[(case_id, m)] for m in judged if (case_id, m) in findings]
    return Row(
        case_id=case_id,
        run=run.name,
        present=True,
        values=values,
        verdicts=verdicts,
        evidence={f.metric: f.evidence for f in used},
        p_values={f.metric: f.p_value for f in used if f.p_value is not None},
    )


def _verdict(case_id: str, metric: str, reference: SavedRun, findings: Mapping[tuple[str, str], Verdict]) -> str:
    finding = findings.get((case_id, metric))
    if finding is not None:
        return finding.verdict
    if case_id not in reference.cases:
        return NO_REFERENCE
    return NOT_AVAILABLE


def _hardware_warnings(runs: Sequence[SavedRun]) -> list[str]:
    reference = runs[0]
    warnings = []
    if reference.hardware_fingerprint is None:
        warnings.append(
            f"{reference.name} ({reference.path}) records no hardware fingerprint: "
            "cannot tell whether the runs come from the same hardware"
        )
    for run in runs[1:]:
        if run.hardware_fingerprint is None:
            warnings.append(
                f"{run.name} ({run.path}) records no hardware fingerprint: "
                "cannot tell whether it ran on the same hardware as the reference"
            )
        elif reference.hardware_fingerprint is not None and run.hardware_fingerprint != reference.hardware_fingerprint:
            warnings.append(
                f"{run.name} ran on {run.hardware_fingerprint!r} but the reference {reference.name} on "
                f"{reference.hardware_fingerprint!r}: its verdicts mix hardware and software differences"
            )
    return warnings


def _not_available_notes(rows: Sequence[Row], run_count: int) -> list[str]:
    """One note per (case, metric, reason) saying which runs lack a judged figure; for the metrics the gate
    does not judge one note per (metric, reason, runs), counting the cases."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    unjudged: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    by_case: dict[tuple[str, str, str], list[str]] = {}
    for row in rows:
        for metric, value in row.values.items():
            if not row.present or value.value is not None:
                continue
            if metric_by_name(metric).judged_by_gate:
                grouped.setdefault((row.case_id, metric, value.reason), []).append(row.run)
            else:
                by_case.setdefault((row.case_id, metric, value.reason), []).append(row.run)
    for (case_id, metric, reason), runs in by_case.items():
        unjudged.setdefault((metric, reason, tuple(runs)), []).append(case_id)
    notes = []
    for (case_id, metric, reason), runs in grouped.items():
        where = "every run" if len(runs) == run_count else ", ".join(runs)
        notes.append(f"{metric_by_name(metric).label} n/a for {case_id} in {where}: {reason}")
    for (metric, reason, lacking), case_ids in unjudged.items():
        where = "every run" if len(lacking) == run_count else ", ".join(lacking)
        which = case_ids[0] if len(case_ids) == 1 else f"{len(case_ids)} cases"
        notes.append(f"{metric_by_name(metric).label} n/a for {which} in {where}: {reason}")
    return notes


def _inconclusive_notes(rows: Sequence[Row]) -> list[str]:
    """Why verdicts are inconclusive (the gate's first piece of evidence), one note per reason."""
    by_reason: dict[str, list[str]] = {}
    for row in rows:
        for metric, verdict in row.verdicts.items():
            if verdict == INCONCLUSIVE:
                reason = row.evidence.get(metric, "").split(";")[0]
                label = metric_by_name(metric).label
                by_reason.setdefault(reason, []).append(f"{label} of {row.case_id} in {row.run}")
    notes = []
    for reason, where in by_reason.items():
        which = where[0] if len(where) == 1 else f"{len(where)} verdicts"
        notes.append(f"inconclusive ({which}): {reason}")
    return notes


def token_latency_ms(record: CaseRecord) -> list[float]:
    """Median across rounds of the gap before each new token (from token 2 on); rounds may differ in length."""
    by_round = [gaps for gaps in record.inter_token_ms_by_round if gaps]
    length = max((len(gaps) for gaps in by_round), default=0)
    return [summarize([gaps[i] for gaps in by_round if len(gaps) > i]).median for i in range(length)]


def _change(metric: Metric, verdict: str, value: Value, effects: Mapping[str, float]) -> str:
    """What changed worth explaining: a faster/slower verdict, or (one run per side: no speed verdict) a ratio
    at least the metric's minimum effect away from 1; "" when nothing did."""
    if verdict in CHANGED:
        return f"{metric.label} {verdict}"
    if value.ratio is not None and abs(value.ratio - 1.0) * 100.0 >= effects.get(metric.name, math.inf):
        return f"{metric.label} {100.0 * (value.ratio - 1.0):+.0f}%"
    return ""


def _operator_reports(comparison: Comparison) -> tuple[list[OperatorReport], list[str]]:
    reference = comparison.reference
    reports, notes = [], []
    effects = comparison.settings.min_effect_percent
    for row in comparison.rows:
        changed = [
            _change(metric_by_name(m), row.verdicts.get(m, ""), row.values[m], effects)
            for m in EXPLAINED
            if m in row.values
        ]
        changed = [text for text in changed if text]
        if not changed:
            continue
        run = next(r for r in comparison.runs if r.name == row.run)
        profiles = [r.cases[row.case_id].operator_profile for r in (reference, run)]
        if profiles[0] and profiles[1]:
            changes = operator_changes(profiles[0], profiles[1])
            reports.append(OperatorReport(row.case_id, reference.name, run.name, ", ".join(changed), changes))
        elif profiles[0] or profiles[1]:
            lacking = reference.name if not profiles[0] else run.name
            notes.append(f"{row.case_id} changed in {run.name} but {lacking} has no operator profile to explain it")
    return reports, notes
