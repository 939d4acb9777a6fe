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
from paddle_llm_bench.core.metrics import METRICS
from paddle_llm_bench.core.stats import summarize
from paddle_llm_bench.core.verdicts import CHANGED, INCONCLUSIVE, Verdict
from paddle_llm_bench.results.baselines import measurement_from_extra_info

COMPARISON_FORMAT = 1
NOT_AVAILABLE = "n/a"
NOT_IN_RUN = "not in this run"
NO_REFERENCE = "no reference"  # the case is not in the first run

REFERENCE = "reference"

DECODE = "decode_tokens_per_s"
TTFT = "ttft_ms"
ITL_P99 = "itl_p99_ms"
PEAK_ALLOCATED = "peak_allocated_bytes"
HOST_CPU = "host_cpu_ms_per_token"
TOKENS_PER_J = "tokens_per_j"
# The registry's labels; ITL p99 is not a per-round metric, and the unjudged two are shortened for the table.
LABELS = {metric: METRICS[metric].label for metric in (DECODE, TTFT, PEAK_ALLOCATED)} | {
    ITL_P99: "ITL p99 ms",
    HOST_CPU: "host ms/tok",
    TOKENS_PER_J: "tok/J",
}
# Shown with their ratio, without a verdict: the gate does not judge them. Their n/a notes are
# grouped by reason across cases (energy is absent for every case of a CPU run).
UNJUDGED = (HOST_CPU, TOKENS_PER_J)


class CompareError(Exception):
    """Saved runs that cannot be compared; the message names the file and what is expected."""


@dataclass(frozen=True)
class SavedRun:
    """One saved pytest-benchmark run, reduced to what a comparison reads."""

    name: str
    path: str
    hardware_fingerprint: str | None
    paddle_version: str | None
    cases: Mapping[str, Mapping[str, Any]]  # extra_info by case id, in the file's order
    started: str = ""  # when it was measured (ISO 8601)


def run_name(path: Path, facts: Mapping[str, Any]) -> str:
    """The file's stem plus its Paddle version, e.g. ``0001_x (paddle 3.3.1)``."""
    version = facts.get("paddle_version")
    return f"{path.stem} (paddle {version})" if version else path.stem


def saved_run(
    path: Path, fingerprint: str | None, by_case: Mapping[str, Mapping[str, Any]], facts: Mapping[str, Any]
) -> SavedRun:
    """A ``SavedRun`` from what ``baselines.load_saved_run`` returns; refuses files without our results."""
    if not by_case:
        raise CompareError(
            f"{path} holds no paddle-llm-bench results (no benchmark has extra_info.case_id): it is a plain "
            "pytest-benchmark run or an older format; compare runs saved by `pytest benchmarks --benchmark-autosave` "
            "or `--benchmark-json FILE`"
        )
    version = facts.get("paddle_version")
    return SavedRun(
        name=run_name(path, facts),
        path=str(path),
        hardware_fingerprint=fingerprint,
        paddle_version=str(version) if version else None,
        cases=dict(by_case),
        started=str(facts.get("run_started", "")),
    )


@dataclass(frozen=True)
class Value:
    """One metric of one case in one run: the figure, its ratio to the reference run, or why it is missing."""

    value: float | None
    ratio: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class Row:
    """One case in one run."""

    case_id: str
    run: str
    present: bool
    decode_tokens_per_s: Value
    decode_tokens_per_s_std: float | None
    decode_verdict: str
    ttft_ms: Value
    ttft_verdict: str
    itl_p99_ms: Value
    peak_allocated_bytes: Value
    memory_verdict: str
    evidence: Mapping[str, str] = field(default_factory=dict)
    p_values: Mapping[str, float] = field(default_factory=dict)
    host_cpu_ms_per_token: Value = Value(None, reason=NOT_IN_RUN)
    tokens_per_j: Value = Value(None, reason=NOT_IN_RUN)

    def values(self) -> dict[str, Value]:
        return {
            DECODE: self.decode_tokens_per_s,
            TTFT: self.ttft_ms,
            ITL_P99: self.itl_p99_ms,
            PEAK_ALLOCATED: self.peak_allocated_bytes,
            HOST_CPU: self.host_cpu_ms_per_token,
            TOKENS_PER_J: self.tokens_per_j,
        }

    def as_dict(self) -> dict[str, Any]:
        """Flat, unit-named fields: one CSV row or JSON object; missing figures are None, never 0."""
        values = self.values()
        peak = values[PEAK_ALLOCATED].value
        if not self.present:
            not_available = NOT_IN_RUN
        else:
            not_available = "; ".join(f"{m}: {v.reason}" for m, v in values.items() if v.value is None and v.reason)
        return {
            "case_id": self.case_id,
            "run": self.run,
            "present": self.present,
            "decode_tokens_per_s_median": values[DECODE].value,
            "decode_tokens_per_s_std": self.decode_tokens_per_s_std,
            "decode_tokens_per_s_ratio": values[DECODE].ratio,
            "decode_verdict": self.decode_verdict,
            "decode_p_value": self.p_values.get(DECODE),
            "ttft_ms_median": values[TTFT].value,
            "ttft_ms_ratio": values[TTFT].ratio,
            "ttft_verdict": self.ttft_verdict,
            "ttft_p_value": self.p_values.get(TTFT),
            "itl_p99_ms": values[ITL_P99].value,
            "itl_p99_ms_ratio": values[ITL_P99].ratio,
            "peak_allocated_bytes": None if peak is None else round(peak),
            "peak_allocated_bytes_ratio": values[PEAK_ALLOCATED].ratio,
            "memory_verdict": self.memory_verdict,
            "host_cpu_ms_per_token": values[HOST_CPU].value,
            "host_cpu_ms_per_token_ratio": values[HOST_CPU].ratio,
            "tokens_per_j": values[TOKENS_PER_J].value,
            "tokens_per_j_ratio": values[TOKENS_PER_J].ratio,
            "not_available": not_available,
            "evidence": "; ".join(f"{m}: {text}" for m, text in self.evidence.items()),
        }


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
    current: dict[str, CaseMeasurement] = {c: measurement_from_extra_info(run.cases[c], run.started) for c in common}
    baseline = {c: [measurement_from_extra_info(reference.cases[c], reference.started)] for c in common}
    return {(v.case_id, v.metric): v for v in judge(current, baseline, settings)}


def _samples(extra_info: Mapping[str, Any], metric: str) -> list[float]:
    values = extra_info.get("samples", {}).get(metric)
    return [float(v) for v in values] if values else []


def _missing_reason(extra_info: Mapping[str, Any], *keys: str) -> str:
    absent = extra_info.get("absent", {})
    for key in keys:
        if key in absent:
            return str(absent[key])
    return "not recorded in this file (an older format?)"


def _median(extra_info: Mapping[str, Any], metric: str) -> tuple[float | None, float | None, str]:
    """Median and std across rounds from the per-round samples; else the stored summary; else why not."""
    samples = _samples(extra_info, metric)
    if samples:
        summary = summarize(samples)
        return summary.median, summary.std, ""
    stored = extra_info.get("metrics", {}).get(metric, {})
    if isinstance(stored, Mapping) and stored.get("median") is not None:
        std = stored.get("std")
        return float(stored["median"]), float(std) if std is not None else None, ""
    return None, None, _missing_reason(extra_info, metric)


def _raw_values(extra_info: Mapping[str, Any]) -> tuple[dict[str, Value], float | None]:
    decode, decode_std, decode_reason = _median(extra_info, DECODE)
    ttft, _, ttft_reason = _median(extra_info, TTFT)
    itl = extra_info.get("inter_token_latency_ms", {}).get("p99")
    memory = extra_info.get("memory_bytes", {}).get(PEAK_ALLOCATED)
    values = {
        DECODE: Value(decode, reason=decode_reason),
        TTFT: Value(ttft, reason=ttft_reason),
        ITL_P99: Value(
            float(itl) if itl is not None else None,
            reason="" if itl is not None else _missing_reason(extra_info, "inter_token_latency_ms", "tpot_ms"),
        ),
        PEAK_ALLOCATED: Value(
            float(memory) if memory is not None else None,
            reason="" if memory is not None else _missing_reason(extra_info, PEAK_ALLOCATED),
        ),
    }
    for metric in UNJUDGED:
        median, _, reason = _median(extra_info, metric)
        values[metric] = Value(median, reason=reason)
    return values, decode_std


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0 or not math.isfinite(reference):
        return None
    return value / reference


def _row(case_id: str, run: SavedRun, reference: SavedRun, findings: Mapping[tuple[str, str], Verdict]) -> Row:
    if case_id not in run.cases:
        missing = Value(None, reason=NOT_IN_RUN)
        return Row(
            case_id, run.name, False, missing, None, NOT_IN_RUN, missing, NOT_IN_RUN, missing, missing, NOT_IN_RUN
        )
    values, decode_std = _raw_values(run.cases[case_id])
    if case_id in reference.cases:
        reference_values, _ = _raw_values(reference.cases[case_id])
        values = {
            metric: Value(value.value, _ratio(value.value, reference_values[metric].value), value.reason)
            for metric, value in values.items()
        }
    if run is reference:
        verdicts = {DECODE: REFERENCE, TTFT: REFERENCE, PEAK_ALLOCATED: REFERENCE}
    else:
        verdicts = {
            DECODE: _verdict(case_id, DECODE, reference, findings),
            TTFT: _verdict(case_id, TTFT, reference, findings),
            PEAK_ALLOCATED: _verdict(case_id, PEAK_ALLOCATED, reference, findings),
        }
    used = [findings[(case_id, m)] for m in (DECODE, TTFT, PEAK_ALLOCATED) if (case_id, m) in findings]
    return Row(
        case_id=case_id,
        run=run.name,
        present=True,
        decode_tokens_per_s=values[DECODE],
        decode_tokens_per_s_std=decode_std,
        decode_verdict=verdicts[DECODE],
        ttft_ms=values[TTFT],
        ttft_verdict=verdicts[TTFT],
        itl_p99_ms=values[ITL_P99],
        peak_allocated_bytes=values[PEAK_ALLOCATED],
        memory_verdict=verdicts[PEAK_ALLOCATED],
        evidence={f.metric: f.evidence for f in used},
        p_values={f.metric: f.p_value for f in used if f.p_value is not None},
        host_cpu_ms_per_token=values[HOST_CPU],
        tokens_per_j=values[TOKENS_PER_J],
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
    """One note per (case, metric, reason) saying which runs lack the figure; for the unjudged
    metrics one note per (metric, reason, runs), counting the cases."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    unjudged: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for row in rows:
        if not row.present:
            continue
        for metric, value in row.values().items():
            if value.value is None and metric not in UNJUDGED:
                grouped.setdefault((row.case_id, metric, value.reason), []).append(row.run)
    for case_id in dict.fromkeys(row.case_id for row in rows):
        for metric in UNJUDGED:
            by_reason: dict[str, list[str]] = {}
            for row in rows:
                value = row.values()[metric]
                if row.case_id == case_id and row.present and value.value is None:
                    by_reason.setdefault(value.reason, []).append(row.run)
            for reason, runs in by_reason.items():
                unjudged.setdefault((metric, reason, tuple(runs)), []).append(case_id)
    notes = []
    for (case_id, metric, reason), runs in grouped.items():
        where = "every run" if len(runs) == run_count else ", ".join(runs)
        notes.append(f"{LABELS[metric]} n/a for {case_id} in {where}: {reason}")
    for (metric, reason, lacking), case_ids in unjudged.items():
        where = "every run" if len(lacking) == run_count else ", ".join(lacking)
        which = case_ids[0] if len(case_ids) == 1 else f"{len(case_ids)} cases"
        notes.append(f"{LABELS[metric]} n/a for {which} in {where}: {reason}")
    return notes


def _inconclusive_notes(rows: Sequence[Row]) -> list[str]:
    """Why verdicts are inconclusive (the gate's first piece of evidence), one note per reason."""
    by_reason: dict[str, list[str]] = {}
    for row in rows:
        for metric, verdict in ((DECODE, row.decode_verdict), (TTFT, row.ttft_verdict)):
            if verdict == INCONCLUSIVE:
                reason = row.evidence.get(metric, "").split(";")[0]
                by_reason.setdefault(reason, []).append(f"{LABELS[metric]} of {row.case_id} in {row.run}")
    notes = []
    for reason, where in by_reason.items():
        which = where[0] if len(where) == 1 else f"{len(where)} verdicts"
        notes.append(f"inconclusive ({which}): {reason}")
    return notes


def token_latency_ms(extra_info: Mapping[str, Any]) -> list[float]:
    """Median across rounds of the gap before each new token (from token 2 on); rounds may differ in length."""
    by_round = [list(gaps) for gaps in extra_info.get("inter_token_ms_by_round", []) if gaps]
    length = max((len(gaps) for gaps in by_round), default=0)
    return [summarize([gaps[i] for gaps in by_round if len(gaps) > i]).median for i in range(length)]


def _change(metric: str, verdict: str, value: Value, effects: Mapping[str, float]) -> str:
    """What changed worth explaining: a faster/slower verdict, or (one run per side: no speed verdict) a ratio
    at least the metric's minimum effect away from 1; "" when nothing did."""
    if verdict in CHANGED:
        return f"{LABELS[metric]} {verdict}"
    if value.ratio is not None and abs(value.ratio - 1.0) * 100.0 >= effects.get(metric, math.inf):
        return f"{LABELS[metric]} {100.0 * (value.ratio - 1.0):+.0f}%"
    return ""


def _operator_reports(comparison: Comparison) -> tuple[list[OperatorReport], list[str]]:
    reference = comparison.reference
    reports, notes = [], []
    effects = comparison.settings.min_effect_percent
    for row in comparison.rows:
        changed = [
            _change(metric, verdict, value, effects)
            for metric, verdict, value in (
                (DECODE, row.decode_verdict, row.decode_tokens_per_s),
                (TTFT, row.ttft_verdict, row.ttft_ms),
            )
        ]
        changed = [text for text in changed if text]
        if not changed:
            continue
        run = next(r for r in comparison.runs if r.name == row.run)
        profiles = [r.cases[row.case_id].get("operator_profile") for r in (reference, run)]
        if profiles[0] and profiles[1]:
            changes = operator_changes(profiles[0], profiles[1])
            reports.append(OperatorReport(row.case_id, reference.name, run.name, ", ".join(changed), changes))
        elif profiles[0] or profiles[1]:
            lacking = reference.name if not profiles[0] else run.name
            notes.append(f"{row.case_id} changed in {run.name} but {lacking} has no operator profile to explain it")
    return reports, notes
