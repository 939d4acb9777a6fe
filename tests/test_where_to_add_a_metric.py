"""docs/development.md's "Where to add a metric" made true: one registry entry, with the function that measures
it, and the metric is measured on the real tiny model and shown in the end-of-run table, compare (table, CSV,
JSON, plots), the paired table and CSV, and the paired forest plot. Nothing else is edited."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from paddle_llm_bench.analysis.compare import compare, saved_run
from paddle_llm_bench.analysis.compare_render import render_csv, render_json, render_table
from paddle_llm_bench.analysis.plots import forest_figure, render_plots
from paddle_llm_bench.analysis.report import summary_table
from paddle_llm_bench.core import metrics
from paddle_llm_bench.core.config import Case, Sweep
from paddle_llm_bench.core.metrics import NS_PER_MS, Metric, RoundTimes
from paddle_llm_bench.core.record import MachineFacts
from paddle_llm_bench.paired.engine import turn_value
from paddle_llm_bench.paired.render import render
from paddle_llm_bench.paired.results import Block, CaseComparison, Pair, PairedRun, PairedSettings, SideInfo, judge
from paddle_llm_bench.runtime.device import detect_device
from paddle_llm_bench.runtime.measure import CaseResult
from paddle_llm_bench.runtime.suite import Suite


def last_token_to_return_ms(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float:
    """The new metric's measuring function: from the last token to generate() returning."""
    return (times.end_ns - times.step_ns[-1]) / NS_PER_MS


ADDED = Metric(
    "return_ms",
    "ms",
    "return ms",
    False,
    digits=3,
    per_round=last_token_to_return_ms,
    in_summary=True,
    in_comparison=True,
    paired_min_effect_percent=5.0,
    description="from the last token to generate() returning",
)
CASE = Case("tiny", "float32", "greedy", 8, 1, 8)


@pytest.fixture(scope="module")
def registered() -> Iterator[None]:
    """The one edit: the registry gains an entry (a module-scoped monkeypatch, undone after these tests)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics, "REGISTRY", (*metrics.REGISTRY, ADDED))
        yield


@pytest.fixture(scope="module")
def two_runs(registered: None, llm_cache_dir: Path) -> list[CaseResult]:
    """The same case measured twice on the real tiny model."""
    sweep = Sweep(("tiny",), ("float32",), ("greedy",), (8,), (1,), (8,), rounds=3, warmup_rounds=1)
    suite = Suite(sweep, detect_device("cpu"), llm_cache_dir, progress=lambda message: None)
    return [suite.run(CASE), suite.run(CASE)]


def test_it_is_measured_and_shown_at_the_end_of_the_run(two_runs: list[CaseResult]) -> None:
    record = two_runs[0].record()
    assert len(record.samples["return_ms"]) == 3 and record.metrics["return_ms"].unit == "ms"
    header, _, row = summary_table([record])[:3]
    assert "return ms" in header
    median = record.metrics["return_ms"].median
    assert f"{median:,.3f}" in row.split()


def test_compare_shows_it_with_its_ratio_in_every_format_and_a_plot(two_runs: list[CaseResult]) -> None:
    runs = [
        saved_run(Path(f"000{i}_run.json"), "cpu:test", {CASE.id: result.record()}, MachineFacts())
        for i, result in enumerate(two_runs)
    ]
    comparison = compare(runs)
    medians = [result.record().metrics["return_ms"].median for result in two_runs]
    assert comparison.rows[1].values["return_ms"].ratio == pytest.approx(medians[1] / medians[0])
    table = render_table(comparison)
    assert "return ms" in table and "from the last token to generate() returning" in table
    (row_b,) = [row for row in csv.DictReader(io.StringIO(render_csv(comparison))) if row["run"] == runs[1].name]
    assert float(row_b["return_ms_ratio"]) == pytest.approx(medians[1] / medians[0])
    assert json.loads(render_json(comparison))["rows"][1]["return_ms"] == pytest.approx(medians[1])
    assert "return_ms.png" in render_plots(comparison)


def test_the_paired_table_and_forest_plot_show_it(two_runs: list[CaseResult]) -> None:
    turns = [turn_value(result.rounds, CASE) for result in two_runs]
    assert "return_ms" in turns[0]  # the paired engine estimates it: the registry says so
    blocks = [Block(index, [1, 2], [Pair([0, 1], turns) for _ in range(4)], [{}, {}], [{}, {}]) for index in range(3)]
    run = PairedRun(
        [SideInfo("a", "python-a"), SideInfo("b", "python-b")], PairedSettings(), [CaseComparison(CASE, blocks)]
    )
    assert "return ms" in render(run, "table")
    header = next(csv.reader(io.StringIO(render(run, "csv"))))
    assert {"return_ms", "return_ms_ratio", "return_ms_verdict"} <= set(header)
    (verdict,) = [v for v in judge(run) if v.metric == "return_ms"]
    assert verdict.ratio == pytest.approx(turns[1]["return_ms"] / turns[0]["return_ms"])
    figure = forest_figure(judge(run), "a", 0.95)
    assert any("return ms" in axes.get_xlabel() for axes in figure.axes)
