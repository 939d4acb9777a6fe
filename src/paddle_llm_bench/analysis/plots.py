"""PNG plots of a ``Comparison`` (matplotlib, Agg backend). Rendering only: every figure comes from ``compare``.

Import this module only when plots are asked for: it imports matplotlib.

- ``<metric>.png`` for every ``in_comparison`` metric of the registry (``decode_tokens_per_s.png``,
  ``ttft_ms.png``, ``itl_p99_ms.png``, ``host_cpu_ms_per_token.png``, ``tokens_per_j.png``,
  ``peak_allocated_bytes.png``): the figure per case, one bar per run, error bars = std across rounds for a
  per-round metric; left out when no run has the figure (energy on a CPU without readable RAPL, runs saved
  before a metric existed).
- ``token_latency_<case>.png``: the gap before each new token along the token position for one case,
  median across rounds, one line per run.

``forest_figure`` draws any comparison's verdicts (the paired engine's ``forest.png``): each ratio with its
interval around a line at 1, a panel per metric, a line per case and side.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # the backend is chosen before pyplot could ever be imported

from paddle_llm_bench.analysis.compare import CompareError, Comparison, Row
from paddle_llm_bench.core.metrics import Metric, comparison_metrics, metric_by_name
from paddle_llm_bench.core.verdicts import BETTER, SAME, WORSE, Verdict
from paddle_llm_bench.results.baselines import slug

DPI = 120


def render_plots(comparison: Comparison, plot_case: str | None = None) -> dict[str, bytes]:
    """The plots as PNG bytes by file name (the caller writes them).

    The per-token latency plot is left out when no run of any case has per-round token gaps.
    """
    figures = {
        f"{metric.name}.png": metric_figure(comparison, metric)
        for metric in comparison_metrics()
        if any(row.values[metric.name].value is not None for row in comparison.rows)
    }
    case_id = choose_plot_case(comparison, plot_case)
    if case_id is not None:
        figures[f"token_latency_{slug(case_id)}.png"] = token_latency_figure(comparison, case_id)
    return {name: png_bytes(figure) for name, figure in figures.items()}


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


def png_bytes(figure: Figure) -> bytes:
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


def metric_figure(comparison: Comparison, metric: Metric) -> Figure:
    def shown(value: float | None) -> float | None:
        return None if value is None else metric.display(value)

    def pick(row: Row) -> float | None:
        return shown(row.values[metric.name].value)

    def spread(row: Row) -> float | None:
        return shown(row.values[metric.name].std)

    per_round = metric.per_round is not None
    direction = "higher" if metric.higher_is_better else "lower"
    return _grouped_bars(
        comparison,
        _per_run(comparison, pick),
        _per_run(comparison, spread) if per_round else None,
        f"{metric.label} ({direction} is better)",
        f"{metric.label} per case: {metric.description or metric.name}"
        + (", error bar = std across rounds" if per_round else ""),
    )


def _per_run(comparison: Comparison, pick: Callable[[Row], float | None]) -> dict[str, list[float | None]]:
    """Per run, one figure per case in ``case_ids`` order (rows are grouped by case, runs in order)."""
    return {run.name: [pick(row) for row in comparison.rows if row.run == run.name] for run in comparison.runs}


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


def forest_figure(verdicts: Sequence[Verdict], reference: str, confidence: float) -> Figure:
    """Each verdict's ratio (candidate ÷ ``reference``) with its interval; verdicts without one are left out.
    Colours: red worse, green better, blue same, grey inconclusive."""
    shown = [v for v in verdicts if v.ratio is not None and v.ci_low is not None and v.ci_high is not None]
    metrics = list(dict.fromkeys(v.metric for v in shown)) or ["decode_tokens_per_s"]
    lines = list(dict.fromkeys((v.case_id, v.side) for v in shown))
    figure = Figure(figsize=(3.0 + 3.2 * len(metrics), 1.4 + 0.45 * max(1, len(lines))), layout="constrained")
    panels = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for axes, name in zip(panels, metrics, strict=True):
        for verdict in (v for v in shown if v.metric == name):
            assert verdict.ratio is not None and verdict.ci_low is not None and verdict.ci_high is not None
            colour = "tab:red" if verdict.verdict in WORSE else "tab:green" if verdict.verdict in BETTER else "tab:gray"
            colour = "tab:blue" if verdict.verdict == SAME else colour
            low, high = verdict.ratio - verdict.ci_low, verdict.ci_high - verdict.ratio
            y = lines.index((verdict.case_id, verdict.side))
            axes.errorbar([verdict.ratio], [y], xerr=[[low], [high]], fmt="o", color=colour, capsize=4)
        axes.axvline(1.0, color="black", linewidth=0.8)
        axes.set_xlabel(f"{metric_by_name(name).label}: ÷ {reference}", fontsize=9)
        axes.grid(axis="x", alpha=0.3)
    panels[0].set_yticks(range(len(lines)), [f"{case} · {side}" for case, side in lines], fontsize=8)
    panels[0].set_ylim(len(lines) - 0.5, -0.5)  # the first case on top, as in the table
    figure.suptitle(f"Ratios with their {100 * confidence:g} % intervals", fontsize=10)
    return figure
