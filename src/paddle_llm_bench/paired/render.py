"""Rendering of a paired comparison: text table, Markdown, CSV, JSON, forest plot. Nothing is measured here."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from paddle_llm_bench.analysis.report import aligned_table, figure_text
from paddle_llm_bench.core.metrics import MEMORY, comparison_metrics, metric_by_name, paired_metric_names
from paddle_llm_bench.core.verdicts import Verdict
from paddle_llm_bench.paired.results import CaseComparison, PairedRun, judge, judge_memory
from paddle_llm_bench.results.files import write_atomic

FORMATS = ("table", "markdown", "csv", "json")


def columns() -> list[tuple[str, str]]:
    """(table heading, CSV name) per column: for every metric the paired engine estimates its median, ratio
    with interval and verdict; the blocks and pairs; every ``in_comparison`` memory peak and its verdict."""
    found = [("case", "case_id"), ("side", "side")]
    for metric in map(metric_by_name, paired_metric_names()):
        found += [
            (metric.label, metric.name),
            ("ratio [95% CI]", f"{metric.name}_ratio"),
            ("verdict", f"{metric.name}_verdict"),
        ]
    found.append(("blocks/pairs", "blocks_pairs"))
    for metric in comparison_metrics():
        if metric.family == MEMORY:
            found += [(metric.label, metric.name), ("verdict", f"{metric.name}_verdict")]
    return found


def rows(run: PairedRun) -> list[list[str]]:
    """One row per case and side; the reference's row shows its medians only."""
    verdicts = {(v.case_id, v.side, v.metric): v for v in [*judge(run), *judge_memory(run)]}
    memory = [m for m in comparison_metrics() if m.family == MEMORY]
    width = len(columns())
    table: list[list[str]] = []
    for comparison in run.cases:
        case_id = comparison.case.id
        for side, info in enumerate(run.sides):
            row = [case_id if side == 0 else "", info.name]
            for metric in map(metric_by_name, paired_metric_names()):
                row.append(figure_text(metric, comparison.median(side, metric.name)))
                found = verdicts.get((case_id, info.name, metric.name))
                if side == 0:
                    row += ["reference", ""]
                else:
                    row += [found.ratio_text, _verdict(found)] if found else ["n/a", ""]
            row.append(_blocks(comparison) if side else "")
            for metric in memory:
                found = verdicts.get((case_id, info.name, metric.name))
                row += [figure_text(metric, comparison.memory(side, metric.name)), _verdict(found) if found else ""]
            table.append(row)
        if comparison.error:
            table.append([case_id, "FAILED", comparison.error.splitlines()[0][:100], *[""] * (width - 3)])
    return table


def _verdict(verdict: Verdict) -> str:
    return f"**{verdict.verdict}**" if verdict.regression else verdict.verdict


def _blocks(comparison: CaseComparison) -> str:
    pairs = sum(len(block.pairs) for block in comparison.blocks)
    return f"{len(comparison.blocks)}/{pairs}"


def render(run: PairedRun, output_format: str) -> str:
    """The comparison in ``output_format`` (one of FORMATS)."""
    if output_format == "json":
        return json.dumps(as_json(run), indent=1) + "\n"
    table = rows(run)
    header = [heading for heading, _ in columns()]
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([name for _, name in columns()])
        writer.writerows([[cell.replace("**", "") for cell in row] for row in table])
        return buffer.getvalue()
    if output_format == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in table]
        return "\n".join([*lines, "", *footnotes(run)]) + "\n"
    plain = [[cell.replace("**", "") for cell in row] for row in table]
    return "\n".join([*aligned_table(header, plain), "", *footnotes(run)]) + "\n"


def footnotes(run: PairedRun) -> list[str]:
    s = run.settings
    lines = [
        f"Ratios are side ÷ reference ({run.sides[0].name}), measured interleaved: blocks of fresh worker processes, "
        f"up to {s.pairs_per_block} pairs per block (fewer where rounds are long: blocks/pairs), "
        f"turns of {s.rounds_per_turn} round(s) ({s.dropped_per_turn} dropped) "
        f"in random order; {100 * s.confidence:g} % Student-t interval over the blocks' Hodges-Lehmann estimates, "
        "their variance moderated by the sweep's cases of the same decoding (weight estimated, at most the sweep's "
        "own dof; a case of unlike noise keeps its own).",
        f"Verdicts: faster/slower when significant after Holm over every speed test of the run (alpha {s.alpha:g}: "
        "the chance of any spurious faster/slower in the run) and at least the minimum effect "
        f"({', '.join(f'{m} {p:g} %' for m, p in s.min_effect_percent.items())}); same when the interval is within "
        f"it; no verdict before {s.verdict_blocks} blocks; bold: a regression (slower on "
        f"{', '.join(s.gated_metrics)}, or a bigger allocator peak).",
    ]
    lines += [
        f"{c.case.id}: {'followed up as a ' + c.follow_up + '; ' if c.follow_up else ''}stopped on {c.stop_reason}"
        for c in run.cases
        if c.stop_reason and not c.error
    ]
    if run.interrupted:
        lines.append("INTERRUPTED: cases not finished show what was measured before Ctrl-C.")
    return lines


def as_json(run: PairedRun) -> dict[str, Any]:
    return {
        "sides": [info.__dict__ for info in run.sides],
        "interrupted": run.interrupted,
        "verdicts": [v.as_dict() for v in judge(run)],
        "memory": [v.as_dict() for v in judge_memory(run)],
        "cases": [
            {
                "case_id": c.case.id,
                "stop_reason": c.stop_reason,
                "follow_up": c.follow_up,
                "error": c.error,
                "seconds": round(c.seconds, 1),
                "blocks": len(c.blocks),
                "pairs": sum(len(block.pairs) for block in c.blocks),
            }
            for c in run.cases
        ],
    }


def forest_plot(run: PairedRun, path: Path) -> Path:
    """Ratios with their intervals, a panel per metric, a line per case and side, around a line at 1."""
    from paddle_llm_bench.analysis.plots import forest_figure, png_bytes  # matplotlib: only when asked for

    figure = forest_figure(judge(run), run.sides[0].name, run.settings.confidence)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, png_bytes(figure))
    return path
