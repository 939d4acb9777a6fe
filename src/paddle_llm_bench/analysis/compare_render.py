"""Rendering of a ``Comparison`` as a table, Markdown, CSV or JSON: text only, from what ``compare`` computed."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from paddle_llm_bench.analysis.compare import (
    COMPARISON,
    NOT_IN_RUN,
    Comparison,
    Row,
    Value,
)
from paddle_llm_bench.analysis.operator_changes import OperatorChange, OperatorReport
from paddle_llm_bench.analysis.report import aligned_table, figure_text
from paddle_llm_bench.core.metrics import MEMORY, Metric, comparison_metrics


def _ratio_text(value: Value) -> str:
    return "" if value.ratio is None else f"{value.ratio:.2f}x"


def table_header() -> list[str]:
    """Per ``in_comparison`` metric of the registry: its label, the ratio, and a verdict where the gate judges it."""
    header = []
    for metric in comparison_metrics():
        header += [metric.label, "ratio", *(["verdict"] if metric.judged_by_gate else [])]
    return header


def _cells(row: Row) -> list[str]:
    cells = []
    for metric in comparison_metrics():
        value = row.values[metric.name]
        cells += [figure_text(metric, value.value) if row.present else "-", _ratio_text(value)]
        if metric.judged_by_gate:
            cells.append(row.verdicts[metric.name] if row.present else "")
    if not row.present:
        cells[0] = NOT_IN_RUN
    return cells


def legend(comparison: Comparison) -> list[str]:
    settings = comparison.settings
    effects = ", ".join(f"{metric} {percent:g}%" for metric, percent in settings.min_effect_percent.items())
    metrics = comparison_metrics()
    judged = [m for m in metrics if m.judged_by_gate]
    memory = [m for m in judged if m.family == MEMORY]
    return [
        f"reference: {comparison.reference.name} ({comparison.reference.path}); ratio = run / reference",
        "; ".join(f"{m.label}: {m.description}" for m in metrics if m.description),
        f"verdicts ({', '.join(m.label for m in judged)}; the others are shown, not judged): the gate's test per "
        "run against the reference, a one-run baseline: one run per side cannot show how much runs move, so speed "
        "is inconclusive (its ratio is shown; `paddle-llm-bench paired` gives speed verdicts; "
        f"min effect {effects}); memory: allowed change "
        + ", ".join(_tolerance_text(m, settings.memory_tolerance[m.name]) for m in memory),
    ]


def _tolerance_text(metric: Metric, tolerance: tuple[float, int]) -> str:
    percent, slack_bytes = tolerance
    return f"{metric.label} max({percent:g}%, {metric.display(slack_bytes):g} {metric.display_unit})"


def _footer(comparison: Comparison) -> list[str]:
    lines = [f"only in: {', '.join(runs)}: {case_id}" for case_id, runs in comparison.only_in.items()]
    return lines + [f"note: {note}" for note in comparison.notes]


def render_table(comparison: Comparison) -> str:
    """Aligned terminal table: a line per case, then a line per run under it."""
    header = table_header()
    rows: list[list[str]] = []
    for case_id in comparison.case_ids:
        rows.append([case_id, *[""] * len(header)])
        rows += [[f"  {row.run}", *_cells(row)] for row in comparison.rows_for(case_id)]
    lines = [f"WARNING: {warning}" for warning in comparison.warnings]
    lines += [line.rstrip() for line in aligned_table(["case / run", *header], rows)]
    lines += ["", *legend(comparison), *_footer(comparison)]
    for report in comparison.operator_reports:
        lines += ["", f"operators that changed most in {report.case_id} ({report.run}: {report.why}):"]
        lines += aligned_table(OPERATOR_HEADER, [_operator_cells(change) for change in report.changes])
    return "\n".join(lines) + "\n"


OPERATOR_HEADER = ["operator", "calls", "time ms", "delta ms", "clock"]


def _operator_cells(change: OperatorChange) -> list[str]:
    return [
        change.name,
        f"{change.calls_reference} -> {change.calls}",
        f"{change.time_reference_ms:,.2f} -> {change.time_ms:,.2f}",
        f"{change.delta_ms:+,.2f}",
        change.clock,
    ]


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> list[str]:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    return [
        "| " + " | ".join(escape(c) for c in header) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(escape(c) for c in row) + " |" for row in rows),
    ]


def render_markdown(comparison: Comparison) -> str:
    """GitHub-flavoured Markdown for CI job summaries and pull requests."""
    lines = ["### paddle-llm-bench compare", ""]
    lines += [f"> **Warning:** {warning}" for warning in comparison.warnings]
    if comparison.warnings:
        lines.append("")
    rows = []
    for case_id in comparison.case_ids:
        for index, row in enumerate(comparison.rows_for(case_id)):
            rows.append([f"`{case_id}`" if index == 0 else "", row.run, *_cells(row)])
    lines += _markdown_table(["case", "run", *table_header()], rows, numeric_from=2)
    lines += ["", *(f"- {line}" for line in legend(comparison) + _footer(comparison))]
    for report in comparison.operator_reports:
        lines += ["", f"#### Operators that changed most in `{report.case_id}` ({report.run}: {report.why})", ""]
        lines += _markdown_table(OPERATOR_HEADER, [_operator_cells(change) for change in report.changes])
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ["case_id", "run", "run_path", "paddle_version", "hardware_fingerprint"]


def _flat_rows(comparison: Comparison) -> list[dict[str, Any]]:
    runs = {run.name: run for run in comparison.runs}
    return [
        {
            **row.as_dict(),
            "run_path": runs[row.run].path,
            "paddle_version": runs[row.run].paddle_version,
            "hardware_fingerprint": runs[row.run].hardware_fingerprint,
        }
        for row in comparison.rows
    ]


def render_csv(comparison: Comparison) -> str:
    """One row per case x run; missing figures are empty cells (see the not_available column), never 0."""
    rows = _flat_rows(comparison)
    columns = list(dict.fromkeys([*CSV_COLUMNS, *(rows[0] if rows else {})]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def render_json(comparison: Comparison) -> str:
    settings = comparison.settings
    document = COMPARISON.stamp(
        {
            "reference_run": comparison.reference.name,
            "runs": [
                {
                    "name": run.name,
                    "path": run.path,
                    "paddle_version": run.paddle_version,
                    "hardware_fingerprint": run.hardware_fingerprint,
                }
                for run in comparison.runs
            ],
            "settings": {
                "alpha": settings.alpha,
                "min_effect_percent": dict(settings.min_effect_percent),
                "noise_floor_percent": settings.noise_floor_percent,
                "max_cv_percent": settings.max_cv_percent,
            },
            "rows": [{k: _finite_or_none(v) for k, v in row.items()} for row in _flat_rows(comparison)],
            "only_in": {case_id: list(runs) for case_id, runs in comparison.only_in.items()},
            "warnings": list(comparison.warnings),
            "notes": list(comparison.notes),
            "operator_changes": [
                {**{k: v for k, v in asdict(report).items() if k != "changes"}, "operators": _operator_dicts(report)}
                for report in comparison.operator_reports
            ],
        }
    )
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _finite_or_none(value: Any) -> Any:
    """JSON has no inf/NaN: a non-finite figure (a zero-length timing) is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _operator_dicts(report: OperatorReport) -> list[dict[str, Any]]:
    return [{**asdict(change), "delta_ms": change.delta_ms} for change in report.changes]


RENDERERS = {"table": render_table, "markdown": render_markdown, "csv": render_csv, "json": render_json}
