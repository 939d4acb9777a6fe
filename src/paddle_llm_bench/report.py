"""Rendering only: aligned text tables from results. Nothing is computed or measured here."""

from __future__ import annotations

from collections.abc import Sequence

from .measure import CaseResult
from .stats import summarize

MIB = 1024 * 1024
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


def _number(value: float | None, digits: int = 1) -> str:
    return NOT_AVAILABLE if value is None else f"{value:,.{digits}f}"


def _mib(value: int | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value / MIB:,.1f}"


def summary_table(results: Sequence[CaseResult]) -> list[str]:
    """The end-of-run table: medians across rounds, ITL percentiles over all steps, peaks, CV."""
    header = [
        "case",
        "decode tok/s",
        "TTFT ms",
        "TPOT ms",
        "ITL p50 ms",
        "ITL p99 ms",
        "peak alloc MiB",
        "peak RSS MiB",
        "CV %",
    ]
    rows = []
    for result in results:
        itl = result.inter_token_latency_ms()
        decode = result.samples.get("decode_tokens_per_s")
        rows.append(
            [
                result.case.id,
                _number(result.median("decode_tokens_per_s")),
                _number(result.median("ttft_ms"), 2),
                _number(result.median("tpot_ms"), 3),
                _number(itl.get("p50"), 3),
                _number(itl.get("p99"), 3),
                _mib(result.memory.bytes_by_metric.get("peak_allocated_bytes")),
                _mib(result.memory.bytes_by_metric.get("peak_rss_bytes")),
                _number(summarize(decode).cv_percent if decode else None),
            ]
        )
    return [*aligned_table(header, rows), "", *host_and_energy_table(results), *clock_event_notes(results)]


def host_and_energy_table(results: Sequence[CaseResult]) -> list[str]:
    """Host overhead and energy per case (medians across rounds); n/a where absent (reasons in extra_info)."""
    header = ["case", "host CPU ms/token", "host CPU % of wall", "TPOT ms", "tokens/J", "avg W"]
    rows = [
        [
            result.case.id,
            _number(result.median("host_cpu_ms_per_token"), 3),
            _number(result.median("host_cpu_percent_of_wall")),
            _number(result.median("tpot_ms"), 3),
            _number(result.median("tokens_per_j"), 2),
            _number(result.median("average_power_w")),
        ]
        for result in results
    ]
    legend = (
        "host CPU: the process's CPU time (all threads) from the first token to the end, per generated token "
        "and as a share of that window's wall time (near 100 % on a GPU: launch-bound; well under 100 % with "
        "one CPU thread: waiting for cores); tokens/J and avg W from the device energy counter over each round"
    )
    return [*aligned_table(header, rows), legend]


def clock_event_notes(results: Sequence[CaseResult]) -> list[str]:
    """One line per case whose GPU clocks were held back (power, thermal) after its measured rounds."""
    return [
        f"WARNING: {result.case.id}: {result.gpu_clock_events['warning']}"
        for result in results
        if result.gpu_clock_events.get("warning")
    ]
