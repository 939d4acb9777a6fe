"""`paddle-llm-bench overhead`: what measuring costs, as suite ÷ bare on the paired engine.

Two sides in this Python: the reference is a *bare* worker (a plain ``model.generate()`` loop with the
suite's inputs and generate() arguments, timed as a user would: a clock read before, one per step by a
stopping criterion, one after; ``paired.worker.BareLoop``), the candidate the suite's own worker
(``CaseRunner``: synchronized step clock, exact token checks, CPU-time and energy reads). They are
measured interleaved, in blocks of fresh worker processes, per decoding strategy; the result is the
suite's throughput over the bare loop's, with a 95 % interval that includes the process-to-process
spread. With ``--same-process`` both runners live in one worker process per block (the model loaded once,
turns interleaved as before): process luck cancels, and what is left is the cost of the timed path itself.
``--candidate-runner bare`` runs bare against bare: an A/A run, whose interval should cover 1
and shows how finely this machine can resolve the suite's cost.

Everything lands in ``--out-dir`` (default ``.benchmarks/overhead/<UTC time>/``) as for ``paired``:
``paired.json``, ``comparison.txt/.md/.csv/.json``, ``forest.png``, and ``overhead.txt`` (the summary
printed at the end). Exit status: 0 measured (whatever the ratio: this is a finding, not a gate);
1 a case failed; 2 interrupted (what was measured is saved); 4 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import datetime, timezone
from pathlib import Path

from paddle_llm_bench.core.config import DECODINGS, ConfigError, parse_sweep_dimension
from paddle_llm_bench.paired.command import (
    USAGE_ERROR,
    add_output_arguments,
    add_sweep_arguments,
    measure_and_report,
    say,
    sweep_from_args,
)
from paddle_llm_bench.paired.options import add_engine_arguments, settings_from_args
from paddle_llm_bench.paired.results import PairedRun, estimates, load_paired_run
from paddle_llm_bench.paired.sides import RUNNERS, Side
from paddle_llm_bench.paired.stats import PairedEstimate
from paddle_llm_bench.results.files import write_atomic
from paddle_llm_bench.runtime.models import PRESETS

GOAL_RATIO = 0.99  # issue 12: what users get from their own loop, within 1 %
DEFAULT_DECODINGS = ",".join(DECODINGS)  # greedy, sampling, beam4
SUMMARY_METRICS = (("decode_tokens_per_s", "decode tok/s"), ("e2e_tokens_per_s", "e2e tok/s"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reference-runner",
        choices=RUNNERS,
        default="bare",
        help="what the reference side runs (default bare: a plain generate() loop)",
    )
    parser.add_argument(
        "--candidate-runner",
        choices=RUNNERS,
        default="suite",
        help="what the candidate side runs (default suite; bare against a bare reference is an A/A run)",
    )
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="both sides' runners in one worker process per block, the model loaded once: the process-to-process "
        "spread cancels, leaving the timed path's cost and pair-to-pair noise; what a process of its own would "
        "show (imports, heap, threads) is not compared (the default, a process per side, compares that too)",
    )
    add_sweep_arguments(parser)
    # The paired command's sweep, with every decoding strategy by default.
    parser.set_defaults(decoding=parse_sweep_dimension("decodings", DEFAULT_DECODINGS, "default", tuple(PRESETS)))
    for action in parser._actions:
        if "--decoding" in action.option_strings:
            action.help = f"{', '.join(DECODINGS)} (default {DEFAULT_DECODINGS})"
    add_engine_arguments(parser)
    add_output_arguments(parser)


def main(args: argparse.Namespace) -> int:
    try:
        settings = dataclasses.replace(
            settings_from_args(args, args.device, args.max_positions or None), same_process=args.same_process
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    sides = sides_for(args.reference_runner, args.candidate_runner)
    out_dir = args.out_dir or Path(".benchmarks") / "overhead" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    status = measure_and_report(
        sweep_from_args(args).cases(), sides, settings, args.cache_dir, out_dir, args.format, fail_on_regression=False
    )
    run_path = out_dir / "paired.json"
    if status == USAGE_ERROR or not run_path.is_file():
        return status
    text = summary(load_paired_run(run_path))
    write_atomic(out_dir / "overhead.txt", text)
    print(text, end="")
    say(f"wrote {out_dir}/overhead.txt")
    return status


def sides_for(reference_runner: str, candidate_runner: str) -> list[Side]:
    """Both sides run this Python; names say what each runs (and which side an A/A run duplicates)."""
    reference = Side(reference_runner, sys.executable, runner=reference_runner)
    name = candidate_runner if candidate_runner != reference_runner else f"{candidate_runner} (A/A)"
    return [reference, Side(name, sys.executable, runner=candidate_runner)]


def summary(run: PairedRun) -> str:
    """Per case and metric: candidate ÷ reference with its interval (the comparison table's estimate: the
    paired engine's, moderated by the sweep's spread), and what it says about the goal or, A/A, about 1."""
    reference, candidate = run.sides[0].name, run.sides[1].name
    aa = run.sides[0].name.split()[0] == run.sides[1].name.split()[0]
    found = {(run.cases[i].case.id, metric): e for (i, side, metric), e in estimates(run).items() if side == 1}
    blocks = "fresh worker processes, both sides in one" if run.settings.same_process else "fresh processes"
    lines = [f"{candidate} ÷ {reference} (95 % interval over blocks of {blocks}; goal >= {GOAL_RATIO:g})"]
    for comparison in run.cases:
        if comparison.error:
            lines.append(f"{comparison.case.id}: FAILED: {comparison.error.splitlines()[0]}")
            continue
        pairs = sum(len(block.pairs) for block in comparison.blocks)
        for metric, label in SUMMARY_METRICS:
            estimate = found.get((comparison.case.id, metric))
            lines.append(f"{comparison.case.id} {label}: {describe(estimate, aa)}")
        lines.append(f"{comparison.case.id}: {len(comparison.blocks)} blocks, {pairs} pairs; {comparison.stop_reason}")
    return "\n".join(lines) + "\n"


def describe(estimate: PairedEstimate | None, aa: bool) -> str:
    if estimate is None:
        return "n/a (fewer than two blocks measured)"
    figure = (
        f"{estimate.ratio:.4f} [{estimate.ci_low:.4f}, {estimate.ci_high:.4f}] (±{estimate.half_width_percent:.2f} %)"
    )
    if aa:
        honest = "covers 1" if estimate.ci_low <= 1.0 <= estimate.ci_high else "does NOT cover 1"
        return f"{figure}: A/A, the interval {honest}"
    return f"{figure}: {goal_verdict(estimate)}"


def goal_verdict(estimate: PairedEstimate) -> str:
    """Against suite ÷ bare >= GOAL_RATIO: shown (the whole interval above), missed (all below), or unresolved."""
    if estimate.ci_low >= GOAL_RATIO:
        return f"goal met (the whole interval >= {GOAL_RATIO:g})"
    if estimate.ci_high < GOAL_RATIO:
        return f"goal missed (the whole interval < {GOAL_RATIO:g})"
    return f"not resolved at this precision (the interval straddles {GOAL_RATIO:g})"
