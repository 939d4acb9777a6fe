"""Rendering only: aligned text tables, and the end-of-run tables from the cases' saved records
(``extra_info``). Nothing is computed or measured here."""

from __future__ import annotations

from collections.abc import Sequence

from paddle_llm_bench.core.metrics import ENERGY, HOST, MEMORY, SPEED, TOKEN_GAPS, Metric, summary_metrics
from paddle_llm_bench.core.record import CaseRecord, case_figure

NOT_AVAILABLE = "n/a"


def aligned_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-align the first column, right-align the others."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [str(first).ljust(widths[0]), *(str(c).rjust(w) for c, w in zip(rest, widths[1:], strict=False))]
        )

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]


def format_number(value: float | None, digits: int = 1) -> str:
    return NOT_AVAILABLE if value is None else f"{value:,.{digits}f}"


def figure_text(metric: Metric, value: float | None) -> str:
    """A figure as tables show it: the metric's digits, bytes in MiB, n/a when missing."""
    return format_number(None if value is None else metric.display(value), metric.digits)


def summary_table(records: Sequence[CaseRecord]) -> list[str]:
    """The end-of-run tables from the cases' saved records (``extra_info``), one column per registered
    ``in_summary`` metric: speed (medians across rounds), token-gap percentiles (over all steps), memory
    peaks and the CV of decode tok/s across rounds; then host overhead and energy."""
    first = summary_metrics(SPEED, TOKEN_GAPS, MEMORY)
    rows = []
    for record in records:
        decode = record.metrics.get("decode_tokens_per_s")
        cells = [figure_text(m, case_figure(record, m).value) for m in first]
        rows.append([record.case_id, *cells, format_number(decode.cv_percent if decode else None)])
    table = aligned_table(["case", *(m.label for m in first), "CV %"], rows)
    return [*table, "", *host_and_energy_table(records), *clock_event_notes(records)]


def host_and_energy_table(records: Sequence[CaseRecord]) -> list[str]:
    """Host overhead and energy per case (medians across rounds); n/a where absent (reasons in the record)."""
    metrics = summary_metrics(HOST, ENERGY)
    header = ["case", *(m.label for m in metrics), "1st gen ms"]
    rows = [
        [
            record.case_id,
            *(figure_text(m, case_figure(record, m).value) for m in metrics),
            format_number(record.first_generation_ms),
        ]
        for record in records
    ]
    legend = (
        "host CPU: the process's CPU time (all threads) from the first token to the end, per generated token "
        "and as a share of that window's wall time (near 100 % on a GPU: launch-bound; well under 100 % with "
        "one CPU thread: waiting for cores); tokens/J and avg W from the device energy counter over each round; "
        "1st gen: the case's first generate() (in a static mode: conversion and compiling included)"
    )
    return [*aligned_table(header, rows), legend]


def clock_event_notes(records: Sequence[CaseRecord]) -> list[str]:
    """One line per case whose GPU clocks were held back (power, thermal) after its measured rounds."""
    return [
        f"WARNING: {record.case_id}: {record.gpu_clock_events.warning}"
        for record in records
        if record.gpu_clock_events and record.gpu_clock_events.warning
    ]
