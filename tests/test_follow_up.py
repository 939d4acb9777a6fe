"""A suspect slowdown's second stage in the paired engine: decided on the first stage, fixed in length before it
starts (never stopped by significance), judged on every block. Pure: synthetic blocks through the real stop rule."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

from paddle_llm_bench.core.verdicts import INCONCLUSIVE, SLOWER, Verdict
from paddle_llm_bench.paired.render import as_json, render
from paddle_llm_bench.paired.results import PairedRun, SideInfo, load_paired_run, suspect_slowdowns
from paddle_llm_bench.paired.simulation import CaseNoise, Scenario, simulate_run, vm_busy

SLOWED = [math.log(0.95)] + [0.0] * 7  # the first of 8 cases 5 % slower


def _run(scenario: Scenario, seed: int) -> PairedRun:
    return simulate_run(scenario, random.Random(seed), SLOWED)


def test_a_suspect_slowdown_measures_exactly_its_follow_up_blocks_then_stops_on_them() -> None:
    scenario = vm_busy(8)
    settings = replace(scenario.settings, follow_up_blocks=10)  # 10 blocks of 17 s fit one more 300 s budget
    runs = [_run(replace(scenario, settings=settings), seed) for seed in range(6)]
    followed = [c for run in runs for c in run.cases if c.follow_up]
    assert any(run.cases[0].follow_up for run in runs), "the 5 % slower case was never followed up"
    for comparison in followed:
        assert comparison.follow_up.startswith(f"suspect slowdown after {comparison.follow_up_from_block} blocks")
        assert len(comparison.blocks) == comparison.follow_up_from_block + 10
        assert comparison.stop_reason.startswith("follow-up: 10 more blocks")
        assert comparison.priors  # the sweep's prior, frozen anew at the final stop
    unfollowed = [c for run in runs for c in run.cases if not c.follow_up]
    assert all(len(c.blocks) <= scenario.settings.max_blocks for c in unfollowed)


def test_no_follow_up_when_it_is_off() -> None:
    scenario = vm_busy(8)
    off = replace(scenario, settings=replace(scenario.settings, follow_up_blocks=0))
    for seed in range(4):
        run = _run(off, seed)
        assert not any(c.follow_up for c in run.cases)
        assert all(len(c.blocks) <= off.settings.max_blocks for c in run.cases)


def test_a_follow_up_of_long_rounds_ends_on_one_more_case_budget() -> None:
    """3 s rounds (a 200-token GPU case): the budget, not the 50 asked blocks, ends the second stage."""
    noise = CaseNoise(0.10, round_s=3.0)
    scenario = Scenario("long rounds", (noise,) * 8)
    scenario = replace(scenario, settings=replace(scenario.settings, follow_up_blocks=50))
    followed = [c for seed in range(8) for c in _run(scenario, seed).cases if c.follow_up]
    assert followed, "no case was followed up in 8 sweeps with a 5 % slower case"
    budget = scenario.settings.case_budget_s
    for comparison in followed:
        spent = comparison.seconds - comparison.follow_up_from_s
        block_s = comparison.seconds / len(comparison.blocks)
        assert comparison.stop_reason.startswith("follow-up time budget")
        assert budget <= spent < budget + 1.5 * block_s


def _verdict(metric: str, verdict: str, ratio: float, p_value: float, case: str = "c") -> Verdict:
    low, high = ratio * 0.97, ratio * 1.03
    return Verdict(case, metric, verdict, ratio=ratio, ci_low=low, ci_high=high, p_value=p_value, p_adjusted=0.2)


@pytest.mark.parametrize(
    ("verdict", "suspect"),
    [
        (_verdict("decode_tokens_per_s", INCONCLUSIVE, 0.95, 0.01), True),  # slower by its own interval only
        (_verdict("ttft_ms", INCONCLUSIVE, 1.12, 0.02), True),  # TTFT: higher is worse
        (_verdict("decode_tokens_per_s", INCONCLUSIVE, 0.95, 0.2), False),  # its own interval holds 1
        (_verdict("decode_tokens_per_s", INCONCLUSIVE, 0.99, 1e-4), False),  # below the 3 % minimum effect
        (_verdict("ttft_ms", INCONCLUSIVE, 1.05, 1e-4), False),  # below TTFT's 10 %
        (_verdict("decode_tokens_per_s", INCONCLUSIVE, 1.05, 1e-4), False),  # faster is no suspect
        (_verdict("decode_tokens_per_s", SLOWER, 0.9, 1e-6), False),  # already called: nothing to settle
        (_verdict("e2e_tokens_per_s", INCONCLUSIVE, 0.9, 1e-3), False),  # not a gated metric
        (replace(_verdict("decode_tokens_per_s", INCONCLUSIVE, 0.9, 1e-3), p_adjusted=None), False),  # too few blocks
    ],
)
def test_a_suspect_is_slower_by_its_own_interval_and_the_minimum_effect_but_not_yet_after_holm(
    verdict: Verdict, suspect: bool
) -> None:
    run = PairedRun([SideInfo("reference", "a"), SideInfo("candidate", "b")], vm_busy(1).settings)
    found = suspect_slowdowns(run, [verdict])
    assert ("c" in found) is suspect
    if suspect:
        assert found["c"].startswith(f"{verdict.metric} {verdict.ratio:.3f} [")


def test_the_second_stage_is_saved_and_read_back(tmp_path: Path) -> None:
    run = next(r for r in (_run(vm_busy(8), seed) for seed in range(6)) if r.cases[0].follow_up)
    path = tmp_path / "paired.json"
    run.save(path)
    again = load_paired_run(path).cases[0]
    first = run.cases[0]
    assert (again.follow_up, again.follow_up_from_block, again.follow_up_from_s) == (
        first.follow_up,
        first.follow_up_from_block,
        first.follow_up_from_s,
    )


def test_the_table_and_the_json_say_which_case_was_followed_up_and_why() -> None:
    run = next(r for r in (_run(vm_busy(8), seed) for seed in range(6)) if r.cases[0].follow_up)
    first = run.cases[0]
    text = render(run, "text")
    assert f"{first.case.id}: followed up as a suspect slowdown after {first.follow_up_from_block} blocks" in text
    assert "stopped on follow-up time budget: " in text and f"({len(first.blocks)} blocks in all)" in text
    assert as_json(run)["cases"][0]["follow_up"] == first.follow_up
