"""The nightly's plan: each shard's cases and expected minutes, for the sweep and its paired stage.

Pure arithmetic over the shard cost model (``runtime.shard``) and the paired engine's block sizing
(``engine.pairs_per_block``); round lengths come from the history's last night where it measured them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.paired.engine import pairs_per_block
from paddle_llm_bench.paired.results import PairedSettings
from paddle_llm_bench.results.baselines import BaselineError, load
from paddle_llm_bench.runtime.shard import assign_shards

DEFAULT_PREPARE_S = {"gpu": 60.0, "cpu": 10.0}  # per paired block: two workers start, load and warm up
LOAD_S = {"gpu": 60.0, "cpu": 5.0}  # per model and dtype in a shard's sweep


@dataclass(frozen=True)
class ShardPlan:
    shard: int
    cases: tuple[str, ...]
    sweep_minutes: float
    paired_minutes_min: float
    paired_minutes_max: float

    @property
    def total_max(self) -> float:
        return self.sweep_minutes + self.paired_minutes_max


def plan_shards(
    cases: Sequence[Case],
    shards: int,
    rounds: int,
    round_s: dict[str, float],
    device: str,
    paired: PairedSettings | None,
    compile_s: dict[str, float] | None = None,
) -> list[ShardPlan]:
    """Each shard's cases and expected minutes from each case's round length ``round_s`` (by case id): the sweep
    (rounds and warm-up per case, a load per model and dtype, a static mode's compiling ``compile_s`` once per
    case) and, with ``paired``, the paired stage between its fewest blocks and the most its budget allows (every
    block's two fresh workers compile again)."""
    compile_s = compile_s or {}
    owner = assign_shards(cases, shards, rounds)
    plans = []
    for shard in range(shards):
        mine = [case for case, owner_shard in zip(cases, owner, strict=True) if owner_shard == shard]
        loads = len({(case.model, case.dtype) for case in mine}) * LOAD_S[device]
        sweep_s = loads + sum(rounds * round_s[case.id] + compile_s.get(case.id, 0.0) for case in mine)
        stage = (
            [paired_seconds(round_s[case.id], paired, device, 2 * compile_s.get(case.id, 0.0)) for case in mine]
            if paired
            else [(0.0, 0.0, 0.0)]
        )
        low, high, _ = (sum(bound) / 60 for bound in zip(*stage, strict=True))
        high += max(follow_up for _, _, follow_up in stage) / 60  # one suspect slowdown's second stage per shard
        plans.append(ShardPlan(shard + 1, tuple(c.id for c in mine), sweep_s / 60, low, high))
    return plans


def paired_seconds(
    round_s: float, paired: PairedSettings, device: str, compile_s: float = 0.0
) -> tuple[float, float, float]:
    """A case's paired stage: its ``min_blocks`` blocks (the time budget never cuts it before them), at most what
    its budget lets it add (the block that passes the budget still ends) or ``max_blocks``, and what its follow-up
    adds if it stops as a suspect slowdown (``follow_up_blocks``, within one more budget). ``compile_s``: what a
    block's workers spend compiling a static mode's programs, on top of starting, loading and warming up."""
    prepare_s = DEFAULT_PREPARE_S[device] + paired.warmup_rounds * round_s + compile_s
    pairs_s = pairs_per_block(paired, round_s, prepare_s) * 2 * paired.rounds_per_turn * round_s
    block_s = prepare_s + pairs_s
    low = paired.min_blocks * block_s
    follow_up = min(paired.follow_up_blocks * block_s, paired.case_budget_s + block_s)
    return low, max(low, min(paired.max_blocks * block_s, paired.case_budget_s + block_s)), follow_up


def measured_round_seconds(history: Path | None) -> dict[str, float]:
    """Each case's round length in seconds as the last night in the history folder's files measured it:
    TTFT + TPOT·(N - 1)."""
    found: dict[str, float] = {}
    for path in sorted(history.glob("*.json")) if history is not None and history.is_dir() else []:
        try:
            store = load(path)
        except BaselineError:
            continue
        for case_id, entry in store.cases.items():
            samples = entry.runs[-1].samples if entry.runs else {}
            tokens = entry.case.get("max_new_tokens")
            if samples.get("ttft_ms") and samples.get("tpot_ms") and tokens:
                ms = statistics.median(samples["ttft_ms"]) + statistics.median(samples["tpot_ms"]) * (int(tokens) - 1)
                found[case_id] = ms / 1000.0
    return found


def plan_rows(plans: Sequence[ShardPlan]) -> list[list[str]]:
    return [
        [
            str(p.shard),
            str(len(p.cases)),
            f"{p.sweep_minutes:.0f}",
            f"{p.paired_minutes_min:.0f}-{p.paired_minutes_max:.0f}",
            f"{p.total_max:.0f}",
        ]
        for p in plans
    ]
