"""`paddle-llm-bench nightly`: the plan and its budget, the history's gate and record rules on synthetic runs, and
the workflow's command sequence (plan, two shards, merge, judge, record) end to end on the tiny model."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench.cli import main as cli_main
from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.record import CaseRecord, MachineFacts
from paddle_llm_bench.paired.plan import plan_shards
from paddle_llm_bench.paired.results import PairedSettings
from paddle_llm_bench.results.baselines import load
from paddle_llm_bench.results.history import history_state
from paddle_llm_bench.results.regression import update_baselines
from paddle_llm_bench.runtime.shard import first_generation_seconds

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = "cpu:Test CPU:2cores"
CASES = ("tiny-float32-greedy-new32-bs1-prompt32", "tiny-float32-sampling-new32-bs1-prompt32")
NIGHT = datetime(2026, 12, 1, 2, 17, tzinfo=timezone.utc)


def extra_info(case_id: str, decode: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    spread = [1 + rng.gauss(0, 0.01) for _ in range(10)]
    return {
        "case_id": case_id,
        "case": {"model": "tiny", "dtype": "float32", "max_new_tokens": 32},
        "samples": {
            "decode_tokens_per_s": [decode * s for s in spread],
            "ttft_ms": [5.0 * s for s in spread],
            "tpot_ms": [1000.0 / decode * s for s in spread],
        },
        "memory_bytes": {"peak_allocated_bytes": 7 * 1024 * 1024},
    }


def record(case_id: str, decode: float, seed: int) -> CaseRecord:
    return CaseRecord.read(extra_info(case_id, decode, seed))


def facts(night: int, run_id: str = "") -> dict[str, Any]:
    return {
        "hardware_fingerprint": FINGERPRINT,
        "paddle_version": "3.3.1",
        "run_id": run_id or f"night-{night}",
        "run_started": (NIGHT + timedelta(days=night)).isoformat(),
    }


def saved_run(path: Path, night: int, decode: float, **extra: Any) -> Path:
    data = {
        "machine_info": {"paddle_llm_bench": {**facts(night), **extra}},
        "commit_info": {"id": "abc"},
        "benchmarks": [
            {"name": f"test_generation[{c}]", "extra_info": extra_info(c, decode, night * 10 + i)}
            for i, c in enumerate(CASES)
        ],
    }
    path.write_text(json.dumps(data))
    return path


def history(directory: Path, nights: int) -> Path:
    for night in range(nights):
        speed = 200.0 * (1 + random.Random(night).gauss(0, 0.02))
        update_baselines(
            [record(c, speed, night) for c in CASES],
            MachineFacts.model_validate(facts(night)),
            directory,
            "abc",
            keep=10,
        )
    return directory


def judge(tmp_path: Path, merged: Path, history_dir: Path, *more: str) -> int:
    verdict = tmp_path / "verdict.json"
    return cli_main(["nightly", "judge", str(merged), "--history", str(history_dir), "--verdict", str(verdict), *more])


def test_the_plan_prints_each_shards_minutes_and_refuses_a_budget_it_cannot_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    common = ["nightly", "plan", "--device", "cpu", "--dtype", "float32", "--step-ms", "3", "--output", str(plan)]
    assert cli_main([*common, "--budget-minutes", "1000", "--shards", "2"]) == 0
    document = json.loads(plan.read_text())
    assert document["fits"] and len(document["per_shard"]) == 2
    assert sum(len(s["cases"]) for s in document["per_shard"]) == 24
    assert "--llm-dtype" in document["pytest_args"] and "--llm-paired-case-budget-s" in document["pytest_args"]
    assert "shard  cases  sweep min  paired min  at most" in capsys.readouterr().out
    assert cli_main([*common, "--budget-minutes", "20"]) == 4
    assert "does NOT fit 20 minutes per shard:" in capsys.readouterr().out
    assert cli_main([*common, "--budget-minutes", "1000", "--shards", "25"]) == 4  # a shard would measure nothing
    assert "--shards 25 for a sweep of 24 case(s): give at most 24" in capsys.readouterr().err


def test_the_plan_counts_a_static_modes_compiling_in_the_sweep_and_in_every_paired_block() -> None:
    eager = Case("tiny", "float32", "greedy", 32, 1, 32)
    static = Case("tiny", "float32", "greedy", 32, 1, 32, "to_static")
    compile_s = first_generation_seconds(static, 0.005)  # what `nightly plan` gives plan_shards for the case
    round_s = {eager.id: 0.2, static.id: 0.2}
    paired = PairedSettings()
    (plain,) = plan_shards([eager], 1, 12, round_s, "cpu", paired)
    (compiled,) = plan_shards([static], 1, 12, round_s, "cpu", paired, {static.id: compile_s})
    assert compiled.sweep_minutes == pytest.approx(plain.sweep_minutes + compile_s / 60)  # once, not per round
    # both workers of every block compile again, in each of at least min_blocks blocks (fewer pairs fit beside it)
    assert compiled.paired_minutes_min >= paired.min_blocks * 2 * compile_s / 60 > plain.paired_minutes_min


def test_the_most_a_shard_may_take_holds_one_suspect_slowdowns_follow_up() -> None:
    """One case's second stage per shard (a night expects one regression, not one per case), within its budget."""
    cases = [Case("tiny", "float32", "greedy", 200, 1, prompt) for prompt in (16, 32, 64)]
    round_s = {case.id: 6.0 for case in cases}  # GPU-shaped: 200 tokens at 30 ms a step
    (with_follow_up,) = plan_shards(cases, 1, 12, round_s, "gpu", PairedSettings())
    (without,) = plan_shards(cases, 1, 12, round_s, "gpu", PairedSettings(follow_up_blocks=0))
    added_s = 60 * (with_follow_up.paired_minutes_max - without.paired_minutes_max)
    assert with_follow_up.paired_minutes_min == without.paired_minutes_min
    assert PairedSettings().case_budget_s < added_s < 2 * PairedSettings().case_budget_s


def test_the_plan_takes_the_round_times_the_last_night_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hist = history(tmp_path / "history", 1)
    args = ["nightly", "plan", "--device", "cpu", "--dtype", "float32", "--budget-minutes", "1000"]
    assert cli_main([*args, "--history", str(hist)]) == 0
    assert "measured by the history's last night for 2 case(s)" in capsys.readouterr().out


def test_speed_is_not_gated_until_the_history_holds_enough_nights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slower = saved_run(tmp_path / "merged.json", night=9, decode=140.0)  # 30 % slower than every night before
    assert judge(tmp_path, slower, history(tmp_path / "two", 2)) == 0
    out = capsys.readouterr().out
    assert "history: 2 of 5 nights" in out and "speed not gated yet" in out and "**PASSED**" in out
    assert judge(tmp_path, slower, history(tmp_path / "five", 5)) == 1
    out = capsys.readouterr().out
    assert "REGRESSION stored gate" in out and "decode_tokens_per_s slower" in out and "**FAILED**" in out


def test_a_clean_night_passes_against_five_nights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = saved_run(tmp_path / "merged.json", night=9, decode=201.0)
    assert judge(tmp_path, clean, history(tmp_path / "five", 5), "--summary", str(tmp_path / "summary.md")) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "history: 5 nights" in summary and "0 regression(s)" in summary and "**PASSED**" in summary


def test_record_takes_passing_nights_refuses_failed_and_interrupted_and_accepts_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hist = history(tmp_path / "history", 5)
    slower = saved_run(tmp_path / "slower.json", night=9, decode=140.0)
    verdict = tmp_path / "verdict.json"
    record = ["nightly", "record", str(slower), "--history", str(hist), "--verdict", str(verdict)]
    assert judge(tmp_path, slower, hist) == 1
    assert cli_main(record) == 1
    assert "a failed night does not enter the history" in capsys.readouterr().err
    assert history_state(hist, FINGERPRINT).nights == 5
    assert cli_main([*record, "--accept", "KV cache layout change, 30 % slower on purpose"]) == 0
    assert history_state(hist, FINGERPRINT).nights == 1  # the history starts again from the accepted night
    (store,) = hist.glob("*.json")
    assert load(store).cases[CASES[0]].runs[0].accepted.startswith("KV cache layout")

    cut = saved_run(tmp_path / "cut.json", night=10, decode=140.0, interrupted_cases=[CASES[1]])
    assert judge(tmp_path, cut, hist) == 2
    assert (
        cli_main(["nightly", "record", str(cut), "--history", str(hist), "--verdict", str(verdict), "--accept", "x"])
        == 2
    )
    assert "interrupted or incomplete" in capsys.readouterr().err
    assert cli_main(["nightly", "record", str(slower), "--history", str(hist), "--verdict", str(verdict)]) == 4
    assert "judged run 'night-10'" in capsys.readouterr().err


def test_nothing_measured_never_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"machine_info": {"paddle_llm_bench": facts(1)}, "benchmarks": []}))
    assert judge(tmp_path, empty, tmp_path) == 1
    assert "holds no measured case: nothing was judged" in capsys.readouterr().out


@pytest.mark.e2e
def test_the_workflows_command_sequence_on_the_tiny_model(tmp_path: Path, llm_cache_dir: Path) -> None:
    """What nightly-gpu.yml runs, on this CPU: plan, two shards (one paired against a reference), merge, judge,
    record. Same code on both sides of the paired stage, so no regression may be called."""
    out = tmp_path / "night"
    out.mkdir()
    run = [sys.executable, "-m", "paddle_llm_bench.cli", "nightly"]
    sweep = ["--device", "cpu", "--dtype", "float32", "--decoding", "greedy", "--max-new-tokens", "4"]
    sweep += ["--batch-size", "1", "--prompt-tokens", "4,8", "--rounds", "5", "--warmup-rounds", "1"]
    plan = out / "plan.json"
    step = subprocess.run([*run, "plan", *sweep, "--shards", "2", "--budget-minutes", "60", "--output", str(plan)])
    assert step.returncode == 0
    paired = ["--llm-paired-pairs-per-block=3", "--llm-paired-min-blocks=2", "--llm-paired-max-blocks=2"]
    extra = ["--", f"--llm-cache-dir={llm_cache_dir}", *paired]
    for shard, reference in ((1, ["--reference", sys.executable]), (2, [])):
        output = out / f"shard-{shard}.json"
        command = [*run, "shard", "--plan", str(plan), "--shard", str(shard), "--output", str(output), *reference]
        result = subprocess.run([*command, *extra], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert json.loads((out / f"shard-{shard}.timing.json").read_text())["exit_status"] == 0
    merged = out / "merged.json"
    merge = [
        sys.executable,
        "-m",
        "paddle_llm_bench.cli",
        "merge",
        str(out / "shard-1.json"),
        str(out / "shard-2.json"),
    ]
    assert subprocess.run([*merge, "--output", str(merged)]).returncode == 0
    hist, verdict, summary = tmp_path / "history", out / "verdict.json", out / "summary.md"
    judged = subprocess.run(
        [*run, "judge", str(merged), "--history", str(hist), "--verdict", str(verdict), "--summary", str(summary)],
        capture_output=True,
        text=True,
    )
    assert judged.returncode == 0, judged.stdout[-3000:]
    text = summary.read_text()
    assert "history: 0 of 5 nights" in text and "Paired against the reference (1 shard(s))" in text
    assert "### Plan vs actual" in text and "| 1/2 |" in text and "| 2/2 |" in text
    recorded = subprocess.run([*run, "record", str(merged), "--history", str(hist), "--verdict", str(verdict)])
    assert recorded.returncode == 0
    assert (
        history_state(
            hist, json.loads(merged.read_text())["machine_info"]["paddle_llm_bench"]["hardware_fingerprint"]
        ).nights
        == 1
    )


def test_a_case_two_workers_cannot_hold_is_left_out_of_the_paired_stage_with_the_reason() -> None:
    from paddle_llm_bench.envs.reference import too_big_to_pair

    gib = 1024**3
    why = too_big_to_pair(16 * gib, 24 * gib)  # beam4 x batch 8 x prompt 1024 of the 1.5B model on a 24 GB card
    assert why.startswith("not paired: 2 workers would hold 2 x 16.0 GiB") and "24.0 GiB" in why
    assert too_big_to_pair(10 * gib, 24 * gib) == ""
    assert too_big_to_pair(None, 24 * gib) == "" and too_big_to_pair(16 * gib, None) == ""
