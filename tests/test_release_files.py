"""Files this release writes, kept as it wrote them, must load in every later one.

``tests/fixtures/formats/`` holds one of each kind the suite reads back, written on 2026-12-03 by the commands
below on this project's CPU VM (tiny model, 8 new tokens). A change to a record, a baseline, a paired run or a
nightly plan that cannot read them needs an upgrade step (``core/versioned.Format``), not a new fixture.

    pytest benchmarks --llm-dtype float32 --llm-decoding greedy,sampling --llm-max-new-tokens 8 --llm-batch-size 1 \
        --llm-prompt-tokens 8 --llm-rounds 5 --llm-warmup-rounds 1 --llm-no-gate --benchmark-autosave  # saved-run
    paddle-llm-bench baseline update SAVED_RUN --baseline-dir DIR                                        # baseline
    paddle-llm-bench paired --reference .venv/bin/python --max-new-tokens 8 --prompt-tokens 8 --pairs-per-block 3 \
        --min-blocks 3 --max-blocks 3 --warmup-rounds 1 --seed 3 --device cpu                            # paired
    paddle-llm-bench nightly plan --device cpu --dtype float32 --decoding greedy --max-new-tokens 8 \
        --prompt-tokens 8 --rounds 5 --shards 1 --budget-minutes 60 --output nightly-plan.json           # plan
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from paddle_llm_bench.cli import main as cli_main
from paddle_llm_bench.core.config import ConfigError
from paddle_llm_bench.core.metrics import metric_by_name
from paddle_llm_bench.core.record import RECORD_FORMAT, case_figure
from paddle_llm_bench.nightly import read_plan
from paddle_llm_bench.paired.render import render
from paddle_llm_bench.paired.results import PairedFileError, judge, load_paired_run
from paddle_llm_bench.results.baselines import load, load_saved_run

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
CASES = ("tiny-float32-greedy-new8-bs1-prompt8", "tiny-float32-sampling-new8-bs1-prompt8")


def test_a_saved_run_loads_with_every_figure_its_records_hold() -> None:
    fingerprint, by_case, facts = load_saved_run(FIXTURES / "saved-run.json")
    assert fingerprint == "cpu:AMD EPYC:2cores" and facts.hardware_fingerprint == fingerprint
    assert tuple(by_case) == CASES
    for record in by_case.values():
        assert record.format_version == RECORD_FORMAT
        decode = case_figure(record, metric_by_name("decode_tokens_per_s"))
        assert decode.value is not None and decode.value > 0 and decode.std is not None


def test_a_baseline_loads_and_judges_the_saved_run_it_was_made_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = load(FIXTURES / "baseline.json")
    assert store.hardware_fingerprint == "cpu:AMD EPYC:2cores" and tuple(store.cases) == CASES
    assert all(len(runs) == 1 for runs in store.measurements().values())
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    shutil.copy(FIXTURES / "baseline.json", baselines / "cpu-amd-epyc-2cores.json")
    saved = str(FIXTURES / "saved-run.json")
    assert cli_main(["baseline", "check", saved, "--baseline-dir", str(baselines), "--require-baseline"]) == 0
    assert "2 case(s) compared: 0 regression(s)" in capsys.readouterr().out


def test_compare_reads_the_saved_run() -> None:
    saved = str(FIXTURES / "saved-run.json")
    assert cli_main(["compare", saved, saved]) == 0


@pytest.mark.parametrize("before_follow_ups", [False, True], ids=["as written", "without follow-up fields"])
def test_a_paired_run_loads_and_is_judged_again(tmp_path: Path, before_follow_ups: bool) -> None:
    path = FIXTURES / "paired.json"
    if before_follow_ups:  # as the release before 2026-12-03 wrote it: no second stage yet
        document = json.loads(path.read_text())
        for case in document["cases"]:
            for key in ("follow_up", "follow_up_from_block", "follow_up_from_s"):
                case.pop(key)
        document["settings"].pop("follow_up_blocks")
        path = tmp_path / "paired.json"
        path.write_text(json.dumps(document))
    run = load_paired_run(path)
    assert [c.case.id for c in run.cases] == ["tiny-float32-greedy-new8-bs1-prompt8"]
    # this A/A run's TTFT looked 16 % slower after its 3 blocks of 3 pairs (raw p 0.028): followed up for 20 more
    comparison = run.cases[0]
    assert len(comparison.blocks) == 23
    assert comparison.follow_up.startswith("suspect slowdown after 3 blocks: ttft_ms") is not before_follow_ups
    verdicts = {v.metric: v for v in judge(run)}
    assert {"decode_tokens_per_s", "ttft_ms", "e2e_tokens_per_s"} <= set(verdicts)
    assert verdicts["decode_tokens_per_s"].ratio is not None and not verdicts["decode_tokens_per_s"].regression
    assert "tiny-float32-greedy-new8-bs1-prompt8" in render(run, "text")


@pytest.mark.parametrize(
    ("where", "value", "named"),
    [
        (
            ("blocks", 1, "pairs", 0, "values", 1, "ttft_ms"),
            "x",
            "cases[0].blocks[1].pairs[0].values[1].ttft_ms is 'x'",
        ),
        (("case", "mode"), "turbo", "cases[0].case unknown execution mode 'turbo'"),
        (("seconds",), None, "cases[0].seconds is None"),
    ],
)
def test_a_malformed_paired_run_names_the_field(
    tmp_path: Path, where: tuple[str | int, ...], value: object, named: str
) -> None:
    document = json.loads((FIXTURES / "paired.json").read_text())
    parent = document["cases"][0]
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value
    path = tmp_path / "paired.json"
    path.write_text(json.dumps(document))
    with pytest.raises(PairedFileError, match=re.escape(named)) as raised:
        load_paired_run(path)
    assert str(raised.value).startswith(f"{path}: malformed paired run: field cases[0].")


def test_a_nightly_plan_loads() -> None:
    plan = read_plan(FIXTURES / "nightly-plan.json")
    assert plan.shards == 1 and plan.per_shard[0].cases == [
        "tiny-float32-greedy-new8-bs1-prompt8",
        "tiny-float32-greedy-new8-bs4-prompt8",
    ]


def test_a_malformed_nightly_plan_names_the_field(tmp_path: Path) -> None:
    document = json.loads((FIXTURES / "nightly-plan.json").read_text())
    document["per_shard"][0]["expected_minutes"] = "soon"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=re.escape("field per_shard[0].expected_minutes is 'soon'")):
        read_plan(path)
