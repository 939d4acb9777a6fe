"""`compare` on synthetic saved runs: ratios and verdicts from injected scaling, case sets, missing metrics,
hardware warnings, old formats, every output format parsed back, plots, CLI exit codes.

One saved run per side cannot show how much runs move from one to the next: compare reports every speed
ratio and calls it inconclusive, saying why; memory peaks (deterministic) are judged."""

from __future__ import annotations

import csv
import io
import json
import random
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paddle_llm_bench.analysis.compare import (
    COMPARISON_FORMAT,
    NO_REFERENCE,
    NOT_IN_RUN,
    REFERENCE,
    CompareError,
    SavedRun,
    compare,
    token_latency_ms,
)
from paddle_llm_bench.analysis.compare_render import render_csv, render_json, render_markdown, render_table
from paddle_llm_bench.analysis.operator_changes import operator_changes
from paddle_llm_bench.analysis.plots import render_plots
from paddle_llm_bench.cli import main as cli_main
from paddle_llm_bench.core.gate import CaseMeasurement, GateSettings, judge
from paddle_llm_bench.core.metrics import MIB
from paddle_llm_bench.core.record import CaseRecord, OperatorProfile
from paddle_llm_bench.core.verdicts import BIGGER, INCONCLUSIVE, SAME

FINGERPRINT = "cpu:Test CPU:2cores"
UNKNOWN_NOISE = "run-to-run noise unknown"


def noisy(center: float, n: int = 10, cv: float = 0.01, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.gauss(0, cv)) for _ in range(n)]


def case_info(
    case_id: str = "tiny-float32-greedy-new16-bs1-prompt16",
    decode: Sequence[float] | None = None,
    ttft: Sequence[float] | None = None,
    peak_bytes: int | None = 100 * MIB,
    absent: Mapping[str, str] | None = None,
    gaps_by_round: Sequence[Sequence[float]] | None = None,
    operator_profile: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """An ``extra_info`` as paddle-llm-bench writes it (the fields compare reads)."""
    decode = list(noisy(200.0, seed=seed) if decode is None else decode)
    ttft = list(noisy(10.0, seed=seed + 1) if ttft is None else ttft)
    samples = {"ttft_ms": ttft}
    if decode:
        samples["decode_tokens_per_s"] = decode
    gaps = [list(g) for g in gaps_by_round] if gaps_by_round is not None else [[5.0, 5.5, 6.0]] * 3
    info: dict[str, Any] = {
        "format_version": 1,
        "case_id": case_id,
        "case": {"decoding": "greedy"},
        "samples": samples,
        "inter_token_latency_ms": {"p50": 5.5, "p90": 6.0, "p99": 6.0, "n": 9},
        "inter_token_ms_by_round": gaps,
        "memory_bytes": {"peak_allocated_bytes": peak_bytes} if peak_bytes is not None else {},
        "absent": dict(absent or {}),
    }
    if operator_profile is not None:
        info["operator_profile"] = operator_profile
    return info


def write_run(
    directory: Path,
    name: str,
    cases: Sequence[Mapping[str, Any]],
    fingerprint: str | None = FINGERPRINT,
    paddle_version: str | None = "3.3.1",
) -> Path:
    """A pytest-benchmark saved run (``--benchmark-json`` layout) holding these extra_info dicts."""
    facts: dict[str, Any] = {}
    if fingerprint is not None:
        facts["hardware_fingerprint"] = fingerprint
    if paddle_version is not None:
        facts["paddle_version"] = paddle_version
    data = {
        "machine_info": {"node": "test", "paddle_llm_bench": facts},
        "commit_info": {},
        "benchmarks": [
            {"name": f"test_generation[{c['case_id']}]", "stats": {"median": 1.0}, "extra_info": dict(c)} for c in cases
        ],
        "version": "5.1.0",
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def run(name: str, *cases: Mapping[str, Any], fingerprint: str | None = FINGERPRINT) -> SavedRun:
    records = {str(c["case_id"]): CaseRecord.read(c) for c in cases}
    return SavedRun(name, f"/runs/{name}.json", fingerprint, "3.3.1", records)


def row_of(comparison: Any, case_id: str, run_name: str) -> Any:
    return next(r for r in comparison.rows if r.case_id == case_id and r.run == run_name)


CASE = "tiny-float32-greedy-new16-bs1-prompt16"


@pytest.mark.parametrize("factor", [0.8, 1.25, 1.0, 1.01])
def test_speed_ratio_from_injected_scaling_and_no_speed_verdict_from_one_run(factor: float) -> None:
    base = noisy(200.0)
    a = run("a", case_info(decode=base))
    b = run("b", case_info(decode=[v * factor for v in base]))
    comparison = compare([a, b])
    row = row_of(comparison, CASE, "b")
    assert row.verdicts["decode_tokens_per_s"] == INCONCLUSIVE and row.verdicts["ttft_ms"] == INCONCLUSIVE
    assert row.values["decode_tokens_per_s"].ratio == pytest.approx(factor)
    assert UNKNOWN_NOISE in row.evidence["decode_tokens_per_s"]
    assert row_of(comparison, CASE, "a").verdicts["decode_tokens_per_s"] == REFERENCE
    assert any(note.startswith("inconclusive (2 verdicts): run-to-run noise unknown") for note in comparison.notes)


def test_higher_ttft_is_its_ratio_and_memory_growth_is_bigger() -> None:
    ttft = noisy(10.0, seed=5)
    a = run("a", case_info(ttft=ttft, peak_bytes=100 * MIB))
    b = run("b", case_info(ttft=[v * 1.5 for v in ttft], peak_bytes=300 * MIB))
    row = row_of(compare([a, b]), CASE, "b")
    assert row.verdicts["ttft_ms"] == INCONCLUSIVE
    assert row.values["ttft_ms"].ratio == pytest.approx(1.5)
    assert row.verdicts["peak_allocated_bytes"] == BIGGER
    assert row.values["peak_allocated_bytes"].ratio == pytest.approx(3.0)


def test_verdicts_are_the_gates_own_for_a_one_run_baseline() -> None:
    """Every verdict equals gate.judge's for the same one-run baseline."""
    cases_a = [case_info(f"c{i}", decode=noisy(200.0, seed=i), ttft=noisy(10.0, seed=50 + i)) for i in range(6)]
    factors = [0.97, 0.95, 0.9, 1.0, 1.04, 1.2]
    cases_b = [
        case_info(f"c{i}", decode=[v * f for v in noisy(200.0, seed=i + 20)], ttft=noisy(10.0, seed=70 + i))
        for i, f in enumerate(factors)
    ]
    comparison = compare([run("a", *cases_a), run("b", *cases_b)])
    verdicts = judge(
        {c["case_id"]: CaseMeasurement(c["case_id"], c["samples"], c["memory_bytes"]) for c in cases_b},
        {c["case_id"]: [CaseMeasurement(c["case_id"], c["samples"], c["memory_bytes"])] for c in cases_a},
        GateSettings(),
    )
    expected = {(v.case_id, v.metric): v.verdict for v in verdicts}
    for i in range(6):
        row = row_of(comparison, f"c{i}", "b")
        assert row.verdicts["decode_tokens_per_s"] == expected[(f"c{i}", "decode_tokens_per_s")] == INCONCLUSIVE
        assert row.verdicts["ttft_ms"] == expected[(f"c{i}", "ttft_ms")]
        assert row.verdicts["peak_allocated_bytes"] == expected[(f"c{i}", "peak_allocated_bytes")] == SAME


@settings(max_examples=40, deadline=None)
@given(
    center=st.floats(min_value=1.0, max_value=1e5),
    relative_a=st.lists(st.floats(min_value=-0.01, max_value=0.01), min_size=2, max_size=30),
    relative_b=st.lists(st.floats(min_value=-0.01, max_value=0.01), min_size=2, max_size=30),
)
def test_a_a_runs_never_differ(center: float, relative_a: list[float], relative_b: list[float]) -> None:
    """Two runs with independent noise of at most 1 %: never slower, faster, bigger or smaller, and the ratio
    is the ratio of the medians."""
    a = [center * (1 + r) for r in relative_a]
    b = [center * (1 + r) for r in relative_b]
    comparison = compare([run("a", case_info(decode=a, ttft=a)), run("b", case_info(decode=b, ttft=b))])
    row = row_of(comparison, CASE, "b")
    assert row.verdicts["decode_tokens_per_s"] == INCONCLUSIVE
    assert row.verdicts["ttft_ms"] == INCONCLUSIVE
    assert row.verdicts["peak_allocated_bytes"] == SAME
    assert row.values["decode_tokens_per_s"].ratio == pytest.approx(statistics.median(b) / statistics.median(a))
    assert row.values["ttft_ms"].ratio == pytest.approx(statistics.median(b) / statistics.median(a))
    assert not comparison.warnings


def test_different_case_sets_are_listed_as_only_in() -> None:
    a = run("a", case_info("common"), case_info("only-a"))
    b = run("b", case_info("common"), case_info("only-b"))
    comparison = compare([a, b])
    assert comparison.case_ids == ["common", "only-a", "only-b"]
    assert comparison.only_in == {"only-a": ["a"], "only-b": ["b"]}
    missing = row_of(comparison, "only-a", "b")
    assert not missing.present
    assert missing.verdicts["decode_tokens_per_s"] == NOT_IN_RUN
    assert missing.values["decode_tokens_per_s"].value is None
    new = row_of(comparison, "only-b", "b")
    assert new.verdicts["decode_tokens_per_s"] == NO_REFERENCE
    assert new.values["decode_tokens_per_s"].value is not None
    assert new.values["decode_tokens_per_s"].ratio is None
    table = render_table(comparison)
    assert "only in: a: only-a" in table
    assert "only in: b: only-b" in table
    assert NOT_IN_RUN in table


def test_missing_metrics_are_na_with_the_recorded_reason_never_zero() -> None:
    reason = "needs max_new_tokens >= 2 (decode time is E2E - TTFT over N - 1 tokens)"
    a = run("a", case_info())
    b = run("b", case_info(decode=[], absent={"decode_tokens_per_s": reason}, peak_bytes=None))
    comparison = compare([a, b])
    row = row_of(comparison, CASE, "b")
    assert row.values["decode_tokens_per_s"].value is None
    assert row.values["decode_tokens_per_s"].reason == reason
    assert row.verdicts["decode_tokens_per_s"] == "n/a"
    assert row.values["peak_allocated_bytes"].value is None
    assert "not recorded" in row.values["peak_allocated_bytes"].reason
    assert row.values["ttft_ms"].ratio is not None  # what is there is still compared
    table = render_table(comparison)
    assert reason in table
    b_line = next(line for line in table.splitlines() if line.startswith("  b"))
    assert "n/a" in b_line
    assert " 0.0 " not in b_line
    csv_row = list(csv.DictReader(io.StringIO(render_csv(comparison))))[1]
    assert csv_row["decode_tokens_per_s"] == ""
    assert reason in csv_row["not_available"]


def test_old_extra_info_without_samples_uses_the_stored_summary_without_a_verdict() -> None:
    old = case_info()
    del old["samples"]
    old["metrics"] = {"decode_tokens_per_s": {"median": 150.0, "std": 3.0}}
    row = row_of(compare([run("a", case_info()), run("b", old)]), CASE, "b")
    assert row.values["decode_tokens_per_s"].value == 150.0
    assert row.values["decode_tokens_per_s"].std == 3.0
    assert row.verdicts["decode_tokens_per_s"] == "n/a"
    assert row.values["ttft_ms"].value is None
    assert "not recorded" in row.values["ttft_ms"].reason


def test_runs_from_other_hardware_are_compared_with_a_warning() -> None:
    a = run("a", case_info())
    b = run("b", case_info(), fingerprint="gpu:NVIDIA H100")
    c = run("c", case_info(), fingerprint=None)
    comparison = compare([a, b, c])
    assert len(comparison.warnings) == 2
    assert "gpu:NVIDIA H100" in comparison.warnings[0] and "mix hardware" in comparison.warnings[0]
    assert "no hardware fingerprint" in comparison.warnings[1]
    assert row_of(comparison, CASE, "b").verdicts["peak_allocated_bytes"] == SAME
    assert render_table(comparison).startswith("WARNING: b ran on 'gpu:NVIDIA H100'")
    assert "> **Warning:**" in render_markdown(comparison)
    assert json.loads(render_json(comparison))["warnings"] == list(comparison.warnings)


def test_same_name_twice_is_told_apart() -> None:
    comparison = compare([run("a", case_info()), run("a", case_info())])
    assert [r.name for r in comparison.runs] == ["a", "a #2"]


def test_fewer_than_two_runs_is_an_error() -> None:
    with pytest.raises(CompareError, match="at least two"):
        compare([run("a", case_info())])


def test_token_latency_is_the_median_across_rounds_per_position() -> None:
    info = case_info(gaps_by_round=[[1.0, 10.0, 7.0], [3.0, 20.0], [2.0, 30.0, 9.0]])
    assert token_latency_ms(CaseRecord.read(info)) == [2.0, 20.0, 8.0]
    assert token_latency_ms(CaseRecord.read({"case_id": CASE, "inter_token_ms_by_round": []})) == []


def profile(**ops: tuple[int, float]) -> dict[str, Any]:
    return {"operators": {name: {"calls": c, "cpu_time_ms": t, "gpu_time_ms": None} for name, (c, t) in ops.items()}}


def test_operator_changes_rank_by_absolute_time_change() -> None:
    before = profile(matmul=(100, 50.0), concat=(200, 10.0), add=(50, 5.0), gone=(3, 4.0))
    after = profile(matmul=(100, 52.0), concat=(400, 40.0), add=(50, 1.0), new=(7, 3.0))
    changes = operator_changes(OperatorProfile.model_validate(before), OperatorProfile.model_validate(after), top=3)
    assert [c.name for c in changes] == ["concat", "add", "gone"]
    assert (changes[0].calls_reference, changes[0].calls, changes[0].delta_ms) == (200, 400, 30.0)
    assert changes[2].calls == 0 and changes[2].time_ms == 0.0


def test_operator_changes_use_gpu_time_where_both_runs_have_it() -> None:
    before = {"operators": {"matmul": {"calls": 1, "cpu_time_ms": 1.0, "gpu_time_ms": 10.0}}}
    after = {"operators": {"matmul": {"calls": 1, "cpu_time_ms": 1.0, "gpu_time_ms": 15.0}}}
    (change,) = operator_changes(OperatorProfile.model_validate(before), OperatorProfile.model_validate(after))
    assert (change.clock, change.delta_ms) == ("gpu", 5.0)


def test_a_changed_case_lists_its_top_operators_in_table_and_markdown() -> None:
    base = noisy(200.0)
    ops = {f"op{i}": (10, float(i)) for i in range(8)}
    slower_ops = {**ops, "concat": (45543, 80.0), "op7": (10, 1.0)}
    a = run("a", case_info(decode=base, operator_profile=profile(**ops)))
    b = run("b", case_info(decode=[v * 0.7 for v in base], operator_profile=profile(**slower_ops)))
    comparison = compare([a, b])
    (report,) = comparison.operator_reports
    assert report.case_id == CASE and report.run == "b" and "decode tok/s -30%" in report.why
    assert len(report.changes) == 5
    assert report.changes[0].name == "concat"
    for text in (render_table(comparison), render_markdown(comparison)):
        assert "operators that changed most" in text.lower()
        assert "0 -> 45543" in text
        assert "+80.00" in text


def test_an_unchanged_case_lists_no_operators_and_a_missing_profile_is_noted() -> None:
    base = noisy(200.0)
    same = compare([run("a", case_info(operator_profile=profile(x=(1, 1.0)))), run("b", case_info())])
    assert not same.operator_reports
    a = run("a", case_info(decode=base, operator_profile=profile(x=(1, 1.0))))
    changed = compare([a, run("b", case_info(decode=[v * 0.5 for v in base]))])
    assert not changed.operator_reports
    assert any("has no operator profile" in note for note in changed.notes)


def comparison_for_formats() -> Any:
    base = noisy(200.0)
    a = run("a", case_info(decode=base), case_info("only-a"))
    b = run("b", case_info(decode=[v * 0.8 for v in base], absent={"x": "y"}), case_info("only-b"))
    return compare([a, b])


def test_csv_parses_back_one_row_per_case_and_run() -> None:
    comparison = comparison_for_formats()
    rows = list(csv.DictReader(io.StringIO(render_csv(comparison))))
    assert len(rows) == len(comparison.case_ids) * 2
    slower = next(r for r in rows if r["case_id"] == CASE and r["run"] == "b")
    assert slower["decode_tokens_per_s_verdict"] == INCONCLUSIVE
    assert float(slower["decode_tokens_per_s_ratio"]) == pytest.approx(0.8)
    assert int(slower["peak_allocated_bytes"]) == 100 * MIB
    assert slower["hardware_fingerprint"] == FINGERPRINT
    absent = next(r for r in rows if r["case_id"] == "only-a" and r["run"] == "b")
    assert absent["present"] == "False" and absent["decode_tokens_per_s"] == ""


def test_json_parses_back_with_rows_warnings_and_settings() -> None:
    comparison = comparison_for_formats()
    document = json.loads(render_json(comparison))
    assert document["format_version"] == COMPARISON_FORMAT == 2
    assert document["reference_run"] == "a"
    assert [r["name"] for r in document["runs"]] == ["a", "b"]
    assert document["settings"]["alpha"] == GateSettings().alpha
    assert document["only_in"] == {"only-a": ["a"], "only-b": ["b"]}
    slower = next(r for r in document["rows"] if r["case_id"] == CASE and r["run"] == "b")
    assert slower["decode_tokens_per_s_verdict"] == INCONCLUSIVE
    assert slower["decode_tokens_per_s_ratio"] == pytest.approx(0.8)
    absent = next(r for r in document["rows"] if r["case_id"] == "only-a" and r["run"] == "b")
    assert absent["decode_tokens_per_s"] is None


def test_markdown_is_a_well_formed_github_table() -> None:
    comparison = comparison_for_formats()
    lines = render_markdown(comparison).splitlines()
    table = [line for line in lines if line.startswith("|")]
    widths = {line.count(" | ") for line in table}
    assert len(widths) == 1  # every row has the header's number of cells
    assert table[1].startswith("| --- | --- | ---: |")
    assert len(table) == 2 + len(comparison.case_ids) * 2
    slower = next(line for line in table if "| b |" in line and INCONCLUSIVE in line)
    assert "0.80x" in slower
    assert any(line.startswith("- only in: b: only-b") for line in lines)


def test_table_has_a_line_per_case_and_per_run() -> None:
    text = render_table(comparison_for_formats())
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["case", "/", "run", "decode"]
    assert any(line.rstrip() == CASE for line in lines)
    b_line = next(line for line in lines if line.startswith("  b") and INCONCLUSIVE in line)
    assert "0.80x" in b_line


# The command line, through paddle_llm_bench.cli.main as `paddle-llm-bench compare` runs it.


def two_files(tmp_path: Path, factor: float = 0.8, fingerprint: str = FINGERPRINT) -> tuple[Path, Path]:
    base = noisy(200.0)
    a = write_run(tmp_path, "0001_a", [case_info(decode=base), case_info("only-a")], paddle_version="3.0.0")
    b = write_run(tmp_path, "0002_b", [case_info(decode=[v * factor for v in base])], fingerprint=fingerprint)
    return a, b


def test_cli_prints_the_table_with_run_names_from_file_and_paddle_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files(tmp_path)
    assert cli_main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "0001_a (paddle 3.0.0)" in out and "0002_b (paddle 3.3.1)" in out
    assert INCONCLUSIVE in out and "0.80x" in out and UNKNOWN_NOISE in out


@pytest.mark.parametrize("output_format", ["table", "markdown", "csv", "json"])
def test_cli_writes_each_format_to_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], output_format: str
) -> None:
    a, b = two_files(tmp_path)
    target = tmp_path / "out" / f"comparison.{output_format}"
    assert cli_main(["compare", str(a), str(b), "--format", output_format, "--output", str(target)]) == 0
    assert capsys.readouterr().out == ""
    text = target.read_text(encoding="utf-8")
    assert "0.8" in text
    assert not list(target.parent.glob(".*.tmp"))  # no temporary file left behind
    if output_format == "json":
        assert json.loads(text)["rows"]
    if output_format == "csv":
        assert len(list(csv.DictReader(io.StringIO(text)))) == 4


def test_cli_warns_on_stderr_for_machine_formats_from_other_hardware(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files(tmp_path, fingerprint="gpu:NVIDIA A100")
    assert cli_main(["compare", str(a), str(b), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "WARNING:" in captured.err and "gpu:NVIDIA A100" in captured.err
    assert "WARNING" not in captured.out


def test_cli_writes_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_files(tmp_path)
    plots = tmp_path / "plots"
    assert cli_main(["compare", str(a), str(b), "--plots", str(plots), "--format", "json"]) == 0
    names = sorted(p.name for p in plots.iterdir())
    expected = ["decode_tokens_per_s", "itl_p99_ms", "peak_allocated_bytes", f"token_latency_{CASE}", "ttft_ms"]
    assert names == [f"{name}.png" for name in expected]  # host and energy: no run has them
    for path in plots.iterdir():
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert path.stat().st_size > 1000
    assert "wrote" in capsys.readouterr().err


def test_cli_plot_case_chooses_the_latency_plot_and_rejects_unknown_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files(tmp_path)
    plots = tmp_path / "plots"
    assert cli_main(["compare", str(a), str(b), "--plots", str(plots), "--plot-case", "only-a"]) == 0
    assert (plots / "token_latency_only-a.png").stat().st_size > 0
    assert cli_main(["compare", str(a), str(b), "--plots", str(plots), "--plot-case", "nope"]) == 4
    err = capsys.readouterr().err
    assert "'nope'" in err and "--plot-case" in err and CASE in err


def test_cli_rejects_a_plain_pytest_benchmark_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = two_files(tmp_path)
    plain = tmp_path / "0003_plain.json"
    plain.write_text(json.dumps({"machine_info": {}, "benchmarks": [{"name": "test_x", "extra_info": {}}]}))
    assert cli_main(["compare", str(a), str(plain)]) == 4
    err = capsys.readouterr().err
    assert str(plain) in err and "no paddle-llm-bench results" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{not json", "cannot read saved run"), ('{"x": 1}', "not a pytest-benchmark")],
)
def test_cli_rejects_missing_and_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    a, _ = two_files(tmp_path)
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert cli_main(["compare", str(a), str(bad)]) == 4
    err = capsys.readouterr().err
    assert message in err and str(bad) in err


def test_cli_needs_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = two_files(tmp_path)
    assert cli_main(["compare", str(a)]) == 4
    assert "at least two" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--alpha", "2", "must be within"),
        ("--min-effect", "bogus=5", "METRIC=PERCENT"),
        ("--min-effect", "ttft_ms=x", "invalid value 'x' from --min-effect"),
        # accepted once and then never judged (baselines hold no e2e samples): now refused, naming the choices
        ("--min-effect", "e2e_ms=5", "METRIC one of decode_tokens_per_s, ttft_ms, tpot_ms"),
    ],
)
def test_cli_rejects_bad_settings_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    a, b = two_files(tmp_path)
    assert cli_main(["compare", str(a), str(b), option, value]) == 4
    assert message in capsys.readouterr().err


def test_cli_min_effect_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_files(tmp_path, factor=0.8)
    assert cli_main(["compare", str(a), str(b), "--format", "json", "--min-effect", "decode_tokens_per_s=30"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["settings"]["min_effect_percent"] == {"decode_tokens_per_s": 30.0, "ttft_ms": 10.0}


def with_host_and_energy(info: dict[str, Any], host_ms: float | None, tokens_per_j: float | None) -> dict[str, Any]:
    """``info`` with per-round host overhead and energy samples, or their absent reasons."""
    samples, absent = dict(info["samples"]), dict(info["absent"])
    for metric, value in (("host_cpu_ms_per_token", host_ms), ("tokens_per_j", tokens_per_j)):
        if value is None:
            absent[metric] = "no energy counter on this CPU (no RAPL package domain under /sys/class/powercap)"
        else:
            samples[metric] = noisy(value, seed=7)
    return {**info, "samples": samples, "absent": absent}


def test_host_overhead_and_energy_are_compared_with_their_ratio() -> None:
    reference = run("a", with_host_and_energy(case_info(), 2.0, 40.0))
    later = run("b", with_host_and_energy(case_info(seed=3), 3.0, 30.0))
    comparison = compare([reference, later])
    row = comparison.rows_for(CASE)[1]
    assert row.values["host_cpu_ms_per_token"].ratio == pytest.approx(1.5, rel=0.03)
    assert row.values["tokens_per_j"].ratio == pytest.approx(0.75, rel=0.03)
    flat = row.as_dict()
    assert flat["host_cpu_ms_per_token"] == pytest.approx(3.0, rel=0.03) and flat["tokens_per_j_ratio"] is not None
    table = render_table(comparison)
    assert "host CPU ms/token" in table and "tokens/J" in table and "1.50x" in table


def test_an_absent_energy_figure_is_one_note_for_every_case_never_zero() -> None:
    cases = [with_host_and_energy(case_info(case_id=f"case-{i}"), 2.0, None) for i in range(3)]
    comparison = compare([run("a", *cases), run("b", *cases)])
    notes = [note for note in comparison.notes if note.startswith("tokens/J")]
    assert notes == [
        "tokens/J n/a for 3 cases in every run: no energy counter on this CPU (no RAPL package domain under "
        "/sys/class/powercap)"
    ]
    assert all(row.values["tokens_per_j"].value is None for row in comparison.rows)
    csv_rows = list(csv.DictReader(io.StringIO(render_csv(comparison))))
    assert all(r["tokens_per_j"] == "" and "tokens_per_j: no energy counter" in r["not_available"] for r in csv_rows)


def test_plots_include_host_overhead_and_energy_where_a_run_has_them() -> None:
    reference = run("a", with_host_and_energy(case_info(), 2.0, 40.0))
    later = run("b", with_host_and_energy(case_info(seed=3), 3.0, None))
    names = sorted(render_plots(compare([reference, later])))
    assert "host_cpu_ms_per_token.png" in names and "tokens_per_j.png" in names
    without = sorted(render_plots(compare([run("a", case_info()), run("b", case_info(seed=3))])))
    assert "host_cpu_ms_per_token.png" not in without and "tokens_per_j.png" not in without
