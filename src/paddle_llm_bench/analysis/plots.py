"""PNG plots of a ``Comparison`` (matplotlib, Agg backend). Rendering only: every figure comes from ``compare``.

Import this module only when plots are asked for: it imports matplotlib.

- ``decode_tokens_per_s.png``: decode tok/s per case, one bar per run, error bars = std across rounds.
- ``token_latency_<case>.png``: the gap before each new token along the token position for one case,
  median across rounds, one line per run.
- ``peak_memory.png``: Paddle allocator peak per case, one bar per run.
- ``host_cpu_ms_per_token.png``: host CPU time per generated token per case, one bar per run
  (left out when no run has the figure: runs saved before it existed).
- ``tokens_per_j.png``: tokens per joule per case, one bar per run (left out when no run has an
  energy counter, as on a CPU without readable RAPL).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # the backend is chosen before pyplot could ever be imported

from paddle_llm_bench.analysis.compare import CompareError, Comparison, Row
from paddle_llm_bench.core.metrics import MIB
from paddle_llm_bench.results.baselines import slug

DECODE_PLOT = "decode_tokens_per_s.png"
MEMORY_PLOT = "peak_memory.png"
HOST_CPU_PLOT = "host_cpu_ms_per_token.png"
ENERGY_PLOT = "tokens_per_j.png"
DPI = 120


def render_plots(comparison: Comparison, plot_case: str | None = None) -> dict[str, bytes]:
    """The plots as PNG bytes by file name (the caller writes them).

    The per-token latency plot is left out when no run of any case has per-round token gaps.
    """
    case_id = choose_plot_case(comparison, plot_case)
    figures = {DECODE_PLOT: decode_figure(comparison)}
    if case_id is not None:
        figures[f"token_latency_{slug(case_id)}.png"] = token_latency_figure(comparison, case_id)
    figures[MEMORY_PLOT] = memory_figure(comparison)
    if any(row.host_cpu_ms_per_token.value is not None for row in comparison.rows):
        figures[HOST_CPU_PLOT] = host_cpu_figure(comparison)
    if any(row.tokens_per_j.value is not None for row in comparison.rows):
        figures[ENERGY_PLOT] = energy_figure(comparison)
    return {name: _png(figure) for name, figure in figures.items()}


def choose_plot_case(comparison: Comparison, plot_case: str | None) -> str | None:
    """The asked case (which must exist and have token gaps), else the first case every run has, else any."""
    with_gaps = [c for c in comparison.case_ids if any(comparison.token_latency_ms.get(c, {}).values())]
    if plot_case is not None:
        if plot_case not in comparison.case_ids:
            raise CompareError(
                f"invalid value {plot_case!r} for --plot-case: the runs' cases are {', '.join(comparison.case_ids)}"
            )
        if plot_case not in with_gaps:
            raise CompareError(
                f"invalid value {plot_case!r} for --plot-case: no run of it has per-round token gaps "
                f"(inter_token_ms_by_round); cases that have them: {', '.join(with_gaps) or 'none'}"
            )
        return plot_case
    common = [c for c in with_gaps if c not in comparison.only_in]
    candidates = common or with_gaps
    return candidates[0] if candidates else None


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=DPI, format="png")
    return buffer.getvalue()


def _grouped_bars(
    comparison: Comparison,
    values: dict[str, list[float | None]],
    errors: dict[str, list[float | None]] | None,
    xlabel: str,
    title: str,
) -> Figure:
    """Horizontal grouped bars: case ids stay readable on the y axis, however long they are."""
    cases = list(comparison.case_ids)
    runs = [run.name for run in comparison.runs]
    present = {run.name: [case_id in run.cases for case_id in cases] for run in comparison.runs}
    height = 0.8 / len(runs)
    figure = Figure(figsize=(9.0, 2.0 + 0.3 * len(cases) * len(runs) + 0.25 * len(cases)), layout="constrained")
    axes = figure.add_subplot()
    for index, run in enumerate(runs):
        positions = [case + (index - (len(runs) - 1) / 2) * height for case in range(len(cases))]
        widths = [_nan(v) for v in values[run]]
        xerr = [_nan(v, zero=True) for v in errors[run]] if errors is not None else None
        axes.barh(positions, widths, height, xerr=xerr, capsize=3 if xerr else 0, label=run)
        for y, width, is_present in zip(positions, widths, present[run], strict=True):
            if math.isnan(width):
                text = "n/a" if is_present else "not in this run"
                axes.text(0, y, f" {text}", ha="left", va="center", fontsize=7, color="0.4")
    axes.set_yticks(range(len(cases)), cases, fontsize=8)
    axes.set_ylim(len(cases) - 0.5, -0.5)  # the first case on top, as in the table
    axes.set_xlabel(xlabel)
    axes.set_title(title, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncol=min(len(runs), 3), fontsize=8, frameon=False)
    return figure


def _nan(value: float | None, zero: bool = False) -> float:
    if value is None:
        return 0.0 if zero else math.nan
    return value


def _per_run(comparison: Comparison, pick: Callable[[Row], float | None]) -> dict[str, list[float | None]]:
    """Per run, one figure per case in ``case_ids`` order (rows are grouped by case, runs in order)."""
    return {run.name: [pick(row) for row in comparison.rows if row.run == run.name] for run in comparison.runs}


def decode_figure(comparison: Comparison) -> Figure:
    return _grouped_bars(
        comparison,
        _per_run(comparison, lambda row: row.decode_tokens_per_s.value),
        _per_run(comparison, lambda row: row.decode_tokens_per_s_std),
        "decode tokens/s (higher is better)",
        "Decode throughput per case: median across rounds, error bar = std across rounds",
    )


def memory_figure(comparison: Comparison) -> Figure:
    def mib(value: float | None) -> float | None:
        return None if value is None else value / MIB

    return _grouped_bars(
        comparison,
        _per_run(comparison, lambda row: mib(row.peak_allocated_bytes.value)),
        None,
        "peak allocated MiB (lower is better)",
        "Peak memory per case (Paddle allocator peak)",
    )


def host_cpu_figure(comparison: Comparison) -> Figure:
    return _grouped_bars(
        comparison,
        _per_run(comparison, lambda row: row.host_cpu_ms_per_token.value),
        None,
        "host CPU ms per generated token (lower is better)",
        "Host overhead per case: process CPU time while decoding, per token (median across rounds)",
    )


def energy_figure(comparison: Comparison) -> Figure:
    return _grouped_bars(
        comparison,
        _per_run(comparison, lambda row: row.tokens_per_j.value),
        None,
        "tokens per joule (higher is better)",
        "Energy per case: tokens per joule of the device's energy counter (median across rounds)",
    )


def token_latency_figure(comparison: Comparison, case_id: str) -> Figure:
    figure = Figure(figsize=(8.0, 4.8), layout="constrained")
    axes = figure.add_subplot()
    for run, medians in comparison.token_latency_ms[case_id].items():
        if medians:
            axes.plot(_positions(medians), medians, marker="." if len(medians) <= 64 else "", label=run)
    axes.set_xlabel("new token index (gap since the previous token)")
    axes.set_ylabel("inter-token latency ms (median across rounds)")
    axes.set_title(f"Per-token latency along the generation: {case_id}", fontsize=10)
    axes.grid(alpha=0.3)
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8)
    return figure


def _positions(medians: Sequence[float]) -> list[int]:
    """Gap i (0-based) comes before new token i + 2: the first token's latency is TTFT, not a gap."""
    return [index + 2 for index in range(len(medians))]
