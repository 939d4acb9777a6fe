"""The coordinator of a paired comparison: blocks of fresh workers, randomized turns, adaptive length.

For each block, one new worker process per side is started (so that process luck is sampled, not
frozen into the result); each unfinished case is prepared on every side (load once per model and
dtype, untimed warm-up), then ``pairs_per_block`` pairs are measured: one turn of each side in a
random order, one side computing at a time while the other waits on a blocking read. After each
block a case stops when its interval is precise enough (and it has ``min_blocks``), or when its
budget of blocks or seconds is spent — never because a difference turned significant. A case that stops
as a suspect slowdown is reopened once for a second stage of fixed length (``follow_up``).

Failures: a worker that dies or hangs fails the case it was measuring (with its stderr tail), the
workers are restarted for the next case, and everything measured so far is kept. Ctrl-C ends the
workers and returns what was measured, marked interrupted.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from paddle_llm_bench.core import stopping
from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.metrics import MEMORY, RoundTimes, metric_names, paired_metric_names, round_metrics
from paddle_llm_bench.paired.processes import CaseError, SideWorker, WorkerFailed, close_all, start_workers
from paddle_llm_bench.paired.protocol import Memory, MemoryReply, Prepare, PrepareReply, Turn, TurnReply
from paddle_llm_bench.paired.results import (
    MIN_PAIRS_PER_BLOCK,
    Block,
    CaseComparison,
    Pair,
    PairedRun,
    PairedSettings,
    Priors,
    SideInfo,
    current_priors,
    judge,
    suspect_slowdowns,
)
from paddle_llm_bench.paired.sides import Side, SideError
from paddle_llm_bench.paired.stats import PairedEstimate
from paddle_llm_bench.runtime.progress import say

PREPARE_TIMEOUT_S = 1800.0  # the 1.5B architecture is built on a CPU in about a minute; a hub download is slower
TURN_TIMEOUT_S = 900.0
SHARED_MEMORY_ABSENT = "the sides shared one worker process (same-process run): its peaks are no one side's"


def turn_value(rounds: Sequence[RoundTimes], case: Case) -> dict[str, float]:
    """Each metric's median over a turn's kept rounds."""
    per_round = [round_metrics(times, case.batch_size, case.prompt_tokens) for times in rounds]
    return {
        metric: _median([values[metric] for values in per_round])
        for metric in paired_metric_names()
        if all(metric in values for values in per_round)
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


def measure_block(
    comparison: CaseComparison,
    workers: Sequence[SideWorker],
    block_index: int,
    settings: PairedSettings,
    cache_dir: Path,
    rng: random.Random,
) -> None:
    """Prepare the case on every side, then measure ``pairs_per_block`` pairs in random order."""
    case = comparison.case
    round_seconds = []
    started = time.monotonic()
    for worker in rng.sample(list(workers), len(workers)):  # loading and warming up: the order varies too
        prepare = Prepare(
            case=case,
            warmup_rounds=settings.warmup_rounds,
            device=settings.device,
            cache_dir=str(cache_dir),
            max_positions=settings.max_positions,
            slowdown_fraction=worker.side.slowdown_fraction,
            runner=worker.side.runner,
            mode=worker.side.mode,
        )
        reply = worker.request(prepare, PrepareReply, PREPARE_TIMEOUT_S)
        if reply.warmup_round_s is not None:
            round_seconds.append(reply.warmup_round_s)
    if not comparison.pairs_per_block:  # sized once, from the first block's warm-up and preparation
        prepare_s = time.monotonic() - started
        comparison.pairs_per_block = pairs_per_block(settings, max(round_seconds, default=0.0), prepare_s)
    block = Block(block_index, [worker.pid for worker in workers])
    for _ in range(comparison.pairs_per_block):
        stopping.checkpoint()  # a SIGTERM to the run stops it between turns
        order = list(range(len(workers)))
        rng.shuffle(order)
        values: list[dict[str, float]] = [{} for _ in workers]
        for side in order:
            turn = workers[side].request(Turn(rounds=settings.rounds_per_turn), TurnReply, TURN_TIMEOUT_S)
            values[side] = turn_value(turn.rounds[settings.dropped_per_turn :], case)
        block.pairs.append(Pair(order, values))
    for worker in workers:
        if settings.same_process:
            block.memory_bytes.append({})
            block.memory_absent.append(dict.fromkeys(metric_names(MEMORY), SHARED_MEMORY_ABSENT))
            continue
        memory = worker.request(Memory(), MemoryReply, TURN_TIMEOUT_S)
        block.memory_bytes.append(dict(memory.bytes))
        block.memory_absent.append(dict(memory.absent))
    comparison.blocks.append(block)


def pairs_per_block(settings: PairedSettings, round_s: float, prepare_s: float = 0.0) -> int:
    """Pairs per block for a case whose rounds take ``round_s`` (the slower side's warm-up round) and whose
    preparation took ``prepare_s``: at most ``settings.pairs_per_block``, fewer when long rounds would else spend
    the case's budget before its ``min_blocks`` blocks, never fewer than ``MIN_PAIRS_PER_BLOCK``. A 200-token case
    of a 1.5B model on a GPU (~6 s a round) gets a few pairs per block, so it reaches the blocks its interval
    needs within its budget."""
    if round_s <= 0.0:
        return settings.pairs_per_block
    per_pair_s = 2.0 * settings.rounds_per_turn * round_s
    block_s = settings.case_budget_s / settings.min_blocks - prepare_s
    floor = min(MIN_PAIRS_PER_BLOCK, settings.pairs_per_block)
    return max(floor, min(settings.pairs_per_block, int(block_s / per_pair_s)))


def end_of_round(run: PairedRun, active: Sequence[CaseComparison]) -> list[CaseComparison]:
    """After a round of blocks: decide which active cases stop (``stop_reason``), with the sweep's prior computed
    once from every case's blocks so far; returns the cases that stopped in this round (failed ones included)."""
    priors = current_priors(run)
    stopped = []
    for comparison in active:
        if not comparison.stop_reason:
            comparison.stop_reason = stop_reason(comparison, run, priors)
        if comparison.stop_reason:
            stopped.append(comparison)
    if not stopped or not run.settings.follow_up_blocks or run.interrupted:
        return stopped
    suspects = suspect_slowdowns(run, judge(run, priors))  # the run's priors, as computed for this round
    return [comparison for comparison in stopped if not follow_up(comparison, suspects)]


def follow_up(comparison: CaseComparison, suspects: dict[str, str]) -> bool:
    """Reopen a case that stopped as a suspect slowdown (``suspects``: case id -> why, from
    ``results.suspect_slowdowns``) for its second stage of ``follow_up_blocks`` blocks; once per case, never a
    failed one. Whether the second stage runs is decided on the first; how long it runs is fixed before it starts,
    so it is never stopped by significance."""
    why = suspects.get(comparison.case.id)
    if not why or comparison.follow_up or comparison.error:
        return False
    comparison.follow_up = f"suspect slowdown after {len(comparison.blocks)} blocks: {why}"
    comparison.follow_up_from_block, comparison.follow_up_from_s = len(comparison.blocks), comparison.seconds
    comparison.stop_reason, comparison.priors = "", {}
    return True


def stop_reason(comparison: CaseComparison, run: PairedRun, priors: Priors) -> str:
    """Why this case needs no more blocks, or "" if it does: precision reached on the interval it will report
    (moderated by the sweep's noise, ``priors``, frozen at the stop), or a budget spent; in a second stage, its
    blocks or its one more budget spent. The time budget never stops a case before ``min_blocks``: blocks are
    sized so that they fit it, and a case cut short of them could get no verdict."""
    settings, sides = run.settings, len(run.sides)
    found = [_first_estimate(comparison, side, settings, priors) for side in range(1, sides)]
    width = max((e.half_width_percent if e is not None else math.inf for e in found), default=math.inf)
    shown = f"{width:.2f} %" if math.isfinite(width) else "n/a"
    blocks = len(comparison.blocks)
    # Only an interval moderated by the sweep may end a case early: stopping when a case's own few blocks happen
    # to agree selects lucky small variances (its interval then covers ~92 %, not 95 %: `simulate`).
    moderated = all(e is not None and e.moderated for e in found)
    reason = ""
    if comparison.follow_up:  # the second stage runs its fixed length: precision was reached before it began
        extra, seconds = blocks - comparison.follow_up_from_block, comparison.seconds - comparison.follow_up_from_s
        if extra >= settings.follow_up_blocks:
            reason = f"follow-up: {extra} more blocks measured ({blocks} in all), half-width {shown}"
        elif seconds >= settings.case_budget_s:
            reason = f"follow-up time budget: {seconds:.0f} s more ({blocks} blocks in all), half-width {shown}"
    elif blocks >= settings.min_blocks and moderated and width <= settings.target_half_width_percent:
        reason = f"precision: half-width {shown} <= {settings.target_half_width_percent:g} % after {blocks} blocks"
    elif blocks >= settings.max_blocks:
        reason = f"block budget: {blocks} blocks measured, half-width {shown}"
    elif comparison.seconds >= settings.case_budget_s and blocks >= settings.min_blocks:  # never short of a verdict
        reason = f"time budget: {comparison.seconds:.0f} s >= {settings.case_budget_s:g} s, half-width {shown}"
    if reason:
        frozen = {m: priors.get((comparison.case.decoding, m)) for m in paired_metric_names()}
        comparison.priors = {
            str(side): {m: [p.variance, p.dof] for m, p in frozen.items() if p is not None} for side in range(1, sides)
        }
    return reason


def _first_estimate(
    comparison: CaseComparison, side: int, settings: PairedSettings, priors: Priors
) -> PairedEstimate | None:
    for metric in paired_metric_names():  # the first metric the case has: decode tok/s, unless N = 1
        prior = priors.get((comparison.case.decoding, metric))
        estimate = comparison.estimate(side, metric, settings.confidence, prior)
        if estimate is not None:
            return estimate
    return None


def run_paired(
    cases: Sequence[Case],
    sides: Sequence[Side],
    settings: PairedSettings,
    cache_dir: Path,
    progress: Callable[[str], None] = say,
    on_update: Callable[[PairedRun], None] = lambda _run: None,
) -> PairedRun:
    """Measure every case on every side, interleaved; ``sides[0]`` is the reference.

    ``on_update`` is called with the whole run after every case of every block (save it there: a
    crash or Ctrl-C then loses at most one block of one case). Raises SideError before anything is
    measured if a side cannot run a worker.
    """
    if len(sides) < 2:
        raise SideError("a paired comparison needs two sides at least")
    rng = random.Random(settings.seed)
    workers = _announced(lambda: start_workers(sides, rng, settings.same_process), "block 1", len(sides), progress)
    run = PairedRun(
        sides=[_side_info(worker) for worker in workers],
        settings=settings,
        cases=[CaseComparison(case) for case in cases],
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        machine={"logical_cores": os.cpu_count(), "hostname": os.uname().nodename},
    )
    active = list(run.cases)
    block_index = 0
    try:
        while active:
            if not workers:
                block = f"block {block_index + 1}"
                workers = _announced(lambda: _start_again(sides, rng, settings), block, len(sides), progress)
            for comparison in list(active):
                started = time.monotonic()
                try:
                    measure_block(comparison, workers, block_index, settings, cache_dir, rng)
                except (WorkerFailed, CaseError) as error:
                    stopping.checkpoint()  # workers ended by the SIGTERM that stops the run: not the case's fault
                    comparison.error = str(error) + _memory_hint(str(error), len(sides))
                    comparison.stop_reason = "failed"
                    close_all(workers)
                    workers = _start_again(sides, rng, settings)
                comparison.seconds += time.monotonic() - started
                progress(_progress_line(comparison, block_index, settings, len(sides)))
                on_update(run)
            close_all(workers)
            workers = []
            for comparison in end_of_round(run, active):
                progress(f"{comparison.case.id}: done after {len(comparison.blocks)} blocks: {comparison.stop_reason}")
            for comparison in active:
                if comparison.follow_up and comparison.follow_up_from_block == len(comparison.blocks):
                    progress(
                        f"{comparison.case.id}: {comparison.follow_up}; measuring up to {settings.follow_up_blocks} "
                        f"blocks or {settings.case_budget_s:g} s more"
                    )
            active = [comparison for comparison in active if not comparison.stop_reason]
            on_update(run)
            block_index += 1
    except SideError as error:  # workers that ran before cannot start again: the cases left fail, the rest is kept
        for comparison in active:
            if not comparison.stop_reason:
                comparison.error = f"the workers could not start again for block {block_index + 1}: {error}"
                comparison.stop_reason = "failed"
        on_update(run)
    except KeyboardInterrupt:
        run.interrupted = True
        for comparison in active:
            comparison.stop_reason = comparison.stop_reason or f"interrupted ({stopping.requested() or 'Ctrl-C'})"
        on_update(run)
    finally:
        for worker in workers:
            worker.process.kill()
        close_all(workers)
    return run


def _announced(
    start: Callable[[], list[SideWorker]], what: str, count: int, progress: Callable[[str], None]
) -> list[SideWorker]:
    """Start workers saying so: their start (Paddle's import) is half the time of a short block."""
    progress(f"{what}: starting {count} worker process(es) (they import Paddle at once)")
    began = time.monotonic()
    workers = start()
    progress(f"{what}: workers ready after {time.monotonic() - began:.0f} s; each case loads its model and warms up")
    return workers


def _start_again(sides: Sequence[Side], rng: random.Random, settings: PairedSettings) -> list[SideWorker]:
    """Workers for a later block: a start that fails (a worker killed or stopped while importing) is tried once
    more before ``SideError`` ends the comparison."""
    try:
        return start_workers(sides, rng, settings.same_process)
    except SideError:
        stopping.checkpoint()  # the stop of the whole run, not a worker's fault
        return start_workers(sides, rng, settings.same_process)


def _memory_hint(error: str, sides: int) -> str:
    if "out of memory" not in error.lower() and "resourceexhausted" not in error.lower():
        return ""
    return (
        f"\n(all {sides} sides hold the case's model at once: if one fits alone, compare fewer sides at a time, "
        "or a smaller --batch-size / --prompt-tokens / --max-new-tokens)"
    )


def _side_info(worker: SideWorker) -> SideInfo:
    hello = worker.hello
    return SideInfo(
        name=worker.side.name,
        python=worker.side.python,
        paddle_version=hello.paddle_version,
        paddlenlp_version=hello.paddlenlp_version,
        package_version=hello.package_version,
        slowdown_fraction=worker.side.slowdown_fraction,
        runner=worker.side.runner,
        mode=worker.side.mode,
    )


def _progress_line(comparison: CaseComparison, block_index: int, settings: PairedSettings, sides: int) -> str:
    """The case's own interval so far (the reported one is moderated by the sweep)."""
    if comparison.error:
        return f"{comparison.case.id}: FAILED in block {block_index + 1}: {comparison.error.splitlines()[0]}"
    parts = []
    for side in range(1, sides):
        estimate = comparison.estimate(side, paired_metric_names()[0], settings.confidence)
        if estimate is not None:
            parts.append(
                f"ratio {estimate.ratio:.3f} [{estimate.ci_low:.3f}, {estimate.ci_high:.3f}] "
                f"(±{estimate.half_width_percent:.1f} %)"
            )
    status = f"; done: {comparison.stop_reason}" if comparison.stop_reason else ""
    pairs = sum(len(block.pairs) for block in comparison.blocks)
    return (
        f"{comparison.case.id}: block {block_index + 1}, {pairs} pairs, {comparison.seconds:.0f} s"
        f"{'; ' + ', '.join(parts) if parts else ''}{status}"
    )
