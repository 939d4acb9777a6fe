"""Baseline files: round trip, atomic writes, upgrades, and every kind of bad file losing nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import PydanticSerializationError

from paddle_llm_bench.core.gate import GateSettings
from paddle_llm_bench.core.record import CaseRecord, MachineFacts
from paddle_llm_bench.core.verdicts import INCONCLUSIVE, NO_BASELINE, SAME, SLOWER
from paddle_llm_bench.results.baselines import (
    FORMAT_VERSION,
    MAX_RUNS_PER_CASE,
    BaselineError,
    BaselineRun,
    BaselineStore,
    baseline_path,
    find_for_hardware,
    load,
    load_saved_run,
    merge,
    save_atomic,
)
from paddle_llm_bench.results.regression import check_run, update_baselines

FINGERPRINT = "cpu:Test CPU:2cores"
FACTS = {
    "hardware_fingerprint": FINGERPRINT,
    "paddle_version": "3.3.1",
    "paddlenlp_version": "3.0.0b4",
    "device": "cpu",
}
MACHINE = MachineFacts.model_validate(FACTS)


def extra_info(case_id: str = "tiny-a", decode: float = 100.0, allocated: int = 10**8) -> dict[str, Any]:
    spread = [0.99, 1.01, 1.0, 0.995, 1.005, 1.0, 0.998, 1.002, 1.0, 1.001]
    return {
        "case_id": case_id,
        "case": {"model": "tiny", "dtype": "float32"},
        "rounds": 10,
        "samples": {
            "decode_tokens_per_s": [decode * s for s in spread],
            "ttft_ms": [5.0 * s for s in spread],
            "tpot_ms": [1000.0 / decode * s for s in spread],
            "e2e_ms": [50.0] * 10,
        },
        "memory_bytes": {"peak_allocated_bytes": allocated},
    }


def record(case_id: str = "tiny-a", decode: float = 100.0, allocated: int = 10**8) -> CaseRecord:
    return CaseRecord.read(extra_info(case_id, decode, allocated))


def test_merge_save_load_round_trip_keeps_the_last_runs(tmp_path: Path) -> None:
    path = baseline_path(tmp_path, FINGERPRINT)
    for i in range(MAX_RUNS_PER_CASE + 2):
        update_baselines([record(decode=100.0 + i)], MACHINE, tmp_path, commit=f"c{i}")
    store = load(path)
    runs = store.cases["tiny-a"].runs
    assert len(runs) == MAX_RUNS_PER_CASE
    assert [r.commit for r in runs] == [f"c{i}" for i in range(2, MAX_RUNS_PER_CASE + 2)]
    assert set(runs[0].samples) == {"decode_tokens_per_s", "ttft_ms", "tpot_ms"}  # e2e_ms is not kept
    assert runs[0].environment["paddle_version"] == "3.3.1"
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"  # stable, diffable


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=12))
def test_merge_keeps_at_most_the_last_runs_per_case(case_ids: list[str]) -> None:
    store = BaselineStore(Path("unused.json"), FINGERPRINT)
    for index, case_id in enumerate(case_ids):
        merge(store, [record(case_id, decode=100.0 + index)], MACHINE)  # distinct runs: none is a repeat
    for case_id in set(case_ids):
        assert len(store.cases[case_id].runs) == min(case_ids.count(case_id), MAX_RUNS_PER_CASE)
    assert list(store.cases) == sorted(store.cases)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    update_baselines([record()], MACHINE, tmp_path, commit="good")
    path = baseline_path(tmp_path, FINGERPRINT)
    before = path.read_bytes()
    store = load(path)
    store.cases["tiny-a"].runs.append(BaselineRun.model_construct(samples={"x": [object()]}))  # cannot be saved
    with pytest.raises(PydanticSerializationError):
        save_atomic(store)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_format_1_is_upgraded_on_load(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    run = {"samples": {"decode_tokens_per_s": [1.0, 2.0]}, "memory_bytes": {}, "date": "2026-01-01"}
    path.write_text(
        json.dumps({"format_version": 1, "hardware_fingerprint": FINGERPRINT, "cases": {"x": {"case": {}, **run}}})
    )
    store = load(path)
    assert store.cases["x"].runs == [BaselineRun.model_validate(run)]
    assert json.loads(path.read_text())["format_version"] == 1  # the file itself changes only on the next update


def test_a_newer_format_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = baseline_path(tmp_path, FINGERPRINT)
    path.write_text(
        json.dumps({"format_version": FORMAT_VERSION + 1, "hardware_fingerprint": FINGERPRINT, "cases": {}})
    )
    before = path.read_bytes()
    with pytest.raises(BaselineError, match=r"written by a newer paddle-llm-bench.*upgrade paddle-llm-bench"):
        update_baselines([record()], MACHINE, tmp_path, commit=None)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"cases": {}}', "no format_version"), ('{"format_version": 2}', "field cases")],
)
def test_corrupt_baselines_fail_the_gate_with_the_file_and_the_fix(tmp_path: Path, content: str, message: str) -> None:
    path = baseline_path(tmp_path, FINGERPRINT)
    path.write_text(content)
    report = check_run([record()], FINGERPRINT, tmp_path)
    assert report.failed
    assert message in report.errors[0] and str(path) in report.errors[0] and "git checkout" in report.errors[0]
    with pytest.raises(BaselineError):
        update_baselines([record()], MACHINE, tmp_path, commit=None)
    assert path.read_text() == content


def test_other_hardware_is_never_compared_silently(tmp_path: Path) -> None:
    update_baselines(
        [record(decode=1.0)],
        MACHINE.model_copy(update={"hardware_fingerprint": "gpu:NVIDIA H100"}),
        tmp_path,
        None,
    )
    report = check_run([record()], FINGERPRINT, tmp_path)
    assert not report.failed
    assert [v.verdict for v in report.verdicts] == [NO_BASELINE]
    assert any("other hardware" in note and "gpu-nvidia-h100.json" in note for note in report.notes)


def test_a_file_whose_fingerprint_disagrees_with_its_name_is_an_error(tmp_path: Path) -> None:
    update_baselines([record()], MACHINE.model_copy(update={"hardware_fingerprint": "gpu:X"}), tmp_path, None)
    (tmp_path / "gpu-x.json").rename(baseline_path(tmp_path, FINGERPRINT))
    with pytest.raises(BaselineError, match="says it is for 'gpu:X'"):
        find_for_hardware(tmp_path, FINGERPRINT)


def test_missing_baseline_is_reported_and_fails_only_when_required(tmp_path: Path) -> None:
    assert not check_run([record()], FINGERPRINT, tmp_path).failed
    required = check_run([record()], FINGERPRINT, tmp_path, require_baseline=True)
    assert required.failed
    assert any("without baseline" in line for line in required.lines())


def test_a_case_without_samples_is_never_counted_as_judged(tmp_path: Path) -> None:
    update_baselines([record()], MACHINE, tmp_path, commit=None)
    empty = CaseRecord.read({**extra_info(), "samples": {}})  # a case that failed, or a damaged run file
    report = check_run([empty], FINGERPRINT, tmp_path)
    assert report.unmeasured == ["tiny-a"] and not report.failed
    assert any(
        "speed NOT judged for 1 case(s) that hold no samples in this run: tiny-a" in line for line in report.lines()
    )
    assert check_run([empty], FINGERPRINT, tmp_path, require_baseline=True).failed
    assert check_run([record()], FINGERPRINT, tmp_path, require_baseline=True).unmeasured == []


def test_saved_pytest_benchmark_run_as_reference(tmp_path: Path) -> None:
    """One saved run cannot show run-to-run noise: speed is not judged (said once), memory is."""
    saved = tmp_path / "0001_run.json"
    saved.write_text(
        json.dumps(
            {
                "machine_info": {"paddle_llm_bench": {"hardware_fingerprint": FINGERPRINT}},
                "datetime": "2026-12-02T01:00:00.000000",
                "benchmarks": [{"name": "test_generation[tiny-a]", "extra_info": extra_info()}],
            }
        )
    )
    same = check_run([record()], FINGERPRINT, tmp_path, reference_run=saved, started="2026-12-02T01:10:00+00:00")
    slower = check_run([record(decode=70.0, allocated=2 * 10**8)], FINGERPRINT, tmp_path, reference_run=saved)
    speed = [v for v in [*same.verdicts, *slower.verdicts] if v.metric in ("decode_tokens_per_s", "ttft_ms")]
    assert {v.verdict for v in speed} == {INCONCLUSIVE} and not same.failed
    assert any(line.startswith("speed NOT judged for 1 case(s): run-to-run noise unknown") for line in slower.lines())
    assert [v.metric for v in slower.regressions] == ["peak_allocated_bytes"]
    other = check_run([record()], "gpu:other", tmp_path, reference_run=saved)
    assert other.failed and "other hardware" in other.errors[0]


def session_baseline(directory: Path, runs: int = 5) -> str:
    """``runs`` baseline runs minutes apart; returns the start of a run of the same session."""
    for index in range(runs):
        spread = 1.0 + 0.004 * (index - runs // 2)
        info = extra_info()
        info["samples"] = {k: [v * spread for v in values] for k, values in info["samples"].items()}
        facts = {**FACTS, "run_id": f"r{index}", "run_started": f"2026-12-02T01:{10 * index:02d}:00+00:00"}
        update_baselines([CaseRecord.read(info)], MachineFacts.model_validate(facts), directory, commit=None)
    return "2026-12-02T02:00:00+00:00"


def test_runs_of_one_session_judge_a_run_of_that_session(tmp_path: Path) -> None:
    started = session_baseline(tmp_path)
    quiet = GateSettings(noise_floor_percent=0.5)  # 2 % on 4 dof would leave the interval wider than ±5 %
    same = check_run([record(decode=100.5)], FINGERPRINT, tmp_path, settings=quiet, started=started)
    slower = check_run([record(decode=70.0)], FINGERPRINT, tmp_path, started=started)
    assert {v.verdict for v in same.verdicts if v.metric == "decode_tokens_per_s"} == {SAME}
    assert [v.verdict for v in slower.regressions] == [SLOWER] and slower.failed
    tomorrow = check_run([record(decode=70.0)], FINGERPRINT, tmp_path, started="2026-12-03T02:00:00+00:00")
    assert not tomorrow.failed and any("all of another session" in line for line in tomorrow.lines())


def test_a_file_that_is_not_a_saved_run_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("[]")
    with pytest.raises(BaselineError, match="not a pytest-benchmark saved run"):
        load_saved_run(path)


def test_remeasurement_decides_a_suspect_regression(tmp_path: Path) -> None:
    """The gate names the suspects; the caller measures them again; the gate confirms or clears them."""
    started = session_baseline(tmp_path)
    report = check_run([record(decode=70.0)], FINGERPRINT, tmp_path, started=started)
    assert report.suspects == ["tiny-a"] and report.failed  # once per case, even with two suspect metrics
    report.confirm({"tiny-a": record("tiny-a")})
    assert not report.failed
    assert any("not confirmed" in v.evidence for v in report.verdicts)
    confirmed = check_run([record(decode=70.0)], FINGERPRINT, tmp_path, started=started)
    confirmed.confirm({"tiny-a": record("tiny-a", decode=71.0)})
    assert confirmed.failed and any("confirmed by re-measurement" in v.evidence for v in confirmed.regressions)


def baseline_with_run(run: dict[str, Any], version: Any = FORMAT_VERSION) -> str:
    return json.dumps(
        {"format_version": version, "hardware_fingerprint": FINGERPRINT, "cases": {"tiny-a": {"runs": [run]}}}
    )


GOOD_RUN = {"samples": {"decode_tokens_per_s": [100.0, 101.0]}, "memory_bytes": {"peak_allocated_bytes": 10}}


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (baseline_with_run({"samples": {"decode_tokens_per_s": [1.0, float("nan")]}}), "decode_tokens_per_s[1] is nan"),
        (baseline_with_run({"samples": {"decode_tokens_per_s": [0.0, 1.0]}}), "decode_tokens_per_s[0] is 0.0"),
        (baseline_with_run({"samples": {"decode_tokens_per_s": [1e308] * 3}}), "[0] is 1e+308: every sample must"),
        (baseline_with_run({"samples": {"ttft_ms": [1.0, 1e-300]}}), "ttft_ms[1] is 1e-300: every sample must"),
        (baseline_with_run({"samples": {"ttft_ms": [1.0, "2.0"]}}), "ttft_ms[1] is '2.0'"),
        (baseline_with_run({"samples": {"ttft_ms": [float("inf")]}}), "ttft_ms[0] is inf"),
        (baseline_with_run({"samples": {"ttft_ms": 5.0}}), "samples.ttft_ms is 5.0"),
        (baseline_with_run({**GOOD_RUN, "memory_bytes": {"peak_allocated_bytes": -1}}), "peak_allocated_bytes is -1"),
        (baseline_with_run(GOOD_RUN, version=0), "format_version 0"),
        (baseline_with_run(GOOD_RUN, version=-1), "format_version -1"),
        (baseline_with_run(GOOD_RUN, version=True), "format_version True"),
        (baseline_with_run(GOOD_RUN, version="2"), "format_version '2'"),
        (json.dumps({"format_version": 2, "hardware_fingerprint": "", "cases": {}}), "hardware_fingerprint is ''"),
        (json.dumps({"format_version": 2, "hardware_fingerprint": FINGERPRINT, "cases": []}), "field cases"),
        (baseline_with_run({"samples": {}}), "runs[0] holds neither samples nor memory_bytes"),
        (baseline_with_run(GOOD_RUN, version=1), "holds a list of runs (format 2's layout) but the file says"),
    ],
    ids=["nan", "zero", "huge", "tiny", "string", "inf", "not-a-list", "negative-memory", "v0", "v-1", "v-true",
         "v-string", "no-fingerprint", "cases-list", "empty-run", "v2-labelled-v1"],
)  # fmt: skip
def test_every_bad_field_is_named_with_the_file_and_the_fix(tmp_path: Path, content: str, field: str) -> None:
    path = baseline_path(tmp_path, FINGERPRINT)
    path.write_text(content)
    with pytest.raises(BaselineError) as raised:
        load(path)
    message = str(raised.value)
    assert str(path) in message and field in message and "git checkout" in message, message
    report = check_run([record()], FINGERPRINT, tmp_path)  # the gate fails with it; nothing vanishes
    assert report.failed and field in report.errors[0]
    with pytest.raises(BaselineError):
        update_baselines([record()], MACHINE, tmp_path, commit=None)
    assert path.read_text() == content  # never overwritten


def test_a_good_baseline_still_loads(tmp_path: Path) -> None:
    path = baseline_path(tmp_path, FINGERPRINT)
    path.write_text(baseline_with_run(GOOD_RUN))
    assert load(path).cases["tiny-a"].runs == [BaselineRun.model_validate(GOOD_RUN)]


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"benchmarks": "oops"}, "field benchmarks is 'oops'"),
        ({"benchmarks": ["x"]}, "field benchmarks[0] is 'x'"),
        ({"benchmarks": [{"extra_info": {"case_id": "a", "samples": {"ttft_ms": [float("nan")]}}}]},
         "benchmarks[0].extra_info.samples.ttft_ms[0] is nan"),
        ({"benchmarks": [{"extra_info": {"case_id": "a", "samples": None}}]},
         "benchmarks[0].extra_info.samples is None"),
        ({"benchmarks": [], "machine_info": {"paddle_llm_bench": "x"}}, "machine_info.paddle_llm_bench"),
    ],
    ids=["benchmarks-string", "benchmark-string", "nan-sample", "no-samples", "facts-string"],
)  # fmt: skip
def test_a_bad_saved_run_is_named_with_the_field(tmp_path: Path, content: dict[str, Any], field: str) -> None:
    path = tmp_path / "0001_run.json"
    path.write_text(json.dumps(content))
    with pytest.raises(BaselineError) as raised:
        load_saved_run(path)
    assert str(path) in str(raised.value) and field in str(raised.value), str(raised.value)
    report = check_run([record()], FINGERPRINT, tmp_path, reference_run=path)
    assert report.failed and field in report.errors[0]


def test_baseline_update_from_the_cli_records_the_commit_of_the_saved_run(tmp_path: Path) -> None:
    """It read a key nothing writes and recorded null: the commit is pytest-benchmark's commit_info.id."""
    from paddle_llm_bench.cli import main as cli_main

    run = tmp_path / "0001_run.json"
    data = {
        "machine_info": {"paddle_llm_bench": {**FACTS, "run_id": "r1"}},
        "commit_info": {"id": "0123abcd", "dirty": False},
        "benchmarks": [{"name": "test_generation", "stats": {}, "extra_info": extra_info()}],
    }
    run.write_text(json.dumps(data), encoding="utf-8")
    assert cli_main(["baseline", "update", str(run), "--baseline-dir", str(tmp_path / "baselines")]) == 0
    (entry,) = load(baseline_path(tmp_path / "baselines", FINGERPRINT)).cases["tiny-a"].runs
    assert entry.commit == "0123abcd"
