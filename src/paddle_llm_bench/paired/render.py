"""Rendering of a paired comparison: text table, Markdown, CSV, JSON, forest plot. Nothing is measured here."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from paddle_llm_bench.analysis.report import aligned_table, format_number
from paddle_llm_bench.core.metrics import MIB
from paddle_llm_bench.core.verdicts import BETTER, WORSE, Verdict
from paddle_llm_bench.paired.results import CaseComparison, PairedRun, judge, judge_memory

FORMATS = ("table", "markdown", "csv", "json")
HEADER = [
    "case",
    "side",
    "decode tok/s",
    "decode ratio [95% CI]",
    "verdict",
    "TTFT ms",
    "TTFT ratio [95% CI]",
    "verdict",
    "e2e ratio",
    "blocks/pairs",
    "peak alloc MiB",
    "memory",
]


def rows(run: PairedRun) -> list[list[str]]:
    """One row per case and side; the reference's row shows its medians only."""
    verdicts = {(v.case_id, v.side, v.metric): v for v in [*judge(run), *judge_memory(run)]}
    table: list[list[str]] = []
    for comparison in run.cases:
        case_id = comparison.case.id
        for side, info in enumerate(run.sides):
            decode = comparison.median(side, "decode_tokens_per_s")
            ttft = comparison.median(side, "ttft_ms")
            alloc = comparison.memory(side, "peak_allocated_bytes")

            def of(metric: str, case_id: str = case_id, name: str = info.name) -> Verdict:
                return verdicts[(case_id, name, metric)]

            row = [
                case_id if side == 0 else "",
                info.name,
                format_number(decode),
                "reference" if side == 0 else of("decode_tokens_per_s").ratio_text,
                "" if side == 0 else _verdict(of("decode_tokens_per_s")),
                format_number(ttft, 2),
                "reference" if side == 0 else of("ttft_ms").ratio_text,
                "" if side == 0 else _verdict(of("ttft_ms")),
                "" if side == 0 else of("e2e_tokens_per_s").ratio_text,
                _blocks(comparison) if side else "",
                "n/a" if alloc is None else f"{alloc / MIB:,.1f}",
                "" if side == 0 else _verdict(of("peak_allocated_bytes")),
            ]
            table.append(row)
        if comparison.error:
            table.append([case_id, "FAILED", comparison.error.splitlines()[0][:100], *[""] * (len(HEADER) - 3)])
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
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([cell.replace(" ", "_") for cell in HEADER])
        writer.writerows([[cell.replace("**", "") for cell in row] for row in table])
        return buffer.getvalue()
    if output_format == "markdown":
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in table]
        return "\n".join([*lines, "", *footnotes(run)]) + "\n"
    plain = [[cell.replace("**", "") for cell in row] for row in table]
    return "\n".join([*aligned_table(HEADER, plain), "", *footnotes(run)]) + "\n"


def footnotes(run: PairedRun) -> list[str]:
    s = run.settings
    lines = [
        f"Ratios are side ÷ reference ({run.sides[0].name}), measured interleaved: blocks of fresh worker processes, "
        f"up to {s.pairs_per_block} pairs per block (fewer where rounds are long: blocks/pairs), "
        f"turns of {s.rounds_per_turn} round(s) ({s.dropped_per_turn} dropped) "
        f"in random order; {100 * s.confidence:g} % Student-t interval over the blocks' Hodges-Lehmann estimates, "
        "their variance moderated by the sweep's cases of the same decoding (weight estimated; never narrowed).",
        f"Verdicts: faster/slower when significant after Holm over every speed test of the run (alpha {s.alpha:g}: "
        "the chance of any spurious faster/slower in the run) and at least the minimum effect "
        f"({', '.join(f'{m} {p:g} %' for m, p in s.min_effect_percent.items())}); same when the interval is within "
        f"it; no verdict before {s.verdict_blocks} blocks; bold: a regression (slower on "
        f"{', '.join(s.gated_metrics)}, or a bigger allocator peak).",
    ]
    lines += [f"{c.case.id}: stopped on {c.stop_reason}" for c in run.cases if c.stop_reason and not c.error]
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
                "error": c.error,
                "seconds": round(c.seconds, 1),
                "blocks": len(c.blocks),
                "pairs": sum(len(block.pairs) for block in c.blocks),
            }
            for c in run.cases
        ],
    }


def forest_plot(run: PairedRun, path: Path, metric: str = "decode_tokens_per_s") -> Path:
    """Ratios with their intervals, one line per case and side, around a line at 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = [v for v in judge(run) if v.metric == metric and v.ci_low is not None and v.ci_high is not None]
    figure, axes = plt.subplots(figsize=(8, 1.2 + 0.45 * max(1, len(found))))
    for position, verdict in enumerate(reversed(found)):
        assert verdict.ratio is not None and verdict.ci_low is not None and verdict.ci_high is not None
        color = "tab:red" if verdict.verdict in WORSE else "tab:green" if verdict.verdict in BETTER else "tab:gray"
        color = "tab:blue" if verdict.verdict == "same" else color
        axes.errorbar(
            [verdict.ratio],
            [position],
            xerr=[[verdict.ratio - verdict.ci_low], [verdict.ci_high - verdict.ratio]],
            fmt="o",
            color=color,
            capsize=4,
        )
    axes.set_yticks(range(len(found)))
    axes.set_yticklabels([f"{v.case_id} · {v.side}" for v in reversed(found)], fontsize=8)
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel(f"{metric}: side ÷ {run.sides[0].name} ({100 * run.settings.confidence:g} % interval)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
