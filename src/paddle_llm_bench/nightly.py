"""`paddle-llm-bench nightly plan|shard|judge|record`: the nightly regression job, runnable on any machine.

A night is four steps; the GitHub workflow only adds runners, artifacts, caches and the job summary:

- ``plan``: the sweep split into shards by the cost model, each shard's expected minutes (sweep and
  paired stage, from the step time measured by the last night in the history, or ``--step-ms``), printed
  before anything runs; it fails when a shard cannot fit ``--budget-minutes`` and says how many shards would.
- ``shard K``: one shard of the sweep (``pytest benchmarks --llm-shard K/N``), measured paired against
  ``--reference`` when given, saved as ``--output``; its planned and actual minutes beside it.
- ``judge``: the merged run (``paddle-llm-bench merge``) against the history (the stored-baseline gate,
  speed gated from ``--min-nights`` nights on) and the shards' paired runs against the reference: one
  summary (Markdown for the job summary), a verdict file, and the exit status.
- ``record``: a passing night enters the history; a failed one only with ``--accept REASON`` (a deliberate
  change: the history starts again from it); an interrupted or incomplete one never.

Exit status: 0 passed; 1 a regression, a failed case or shard, or nothing measured; 2 bad input or an
interrupted night; 3 the plan does not fit the budget.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, PositiveInt, ValidationError

from paddle_llm_bench.analysis.report import aligned_table
from paddle_llm_bench.core.config import (
    MIN_ROUNDS,
    SWEEP_DIMENSIONS,
    ConfigError,
    as_argparse_type,
    make_sweep,
    parse_float,
    parse_positive_int,
    parse_sweep_dimension,
)
from paddle_llm_bench.core.exit_status import ExitStatus
from paddle_llm_bench.core.gate import GateSettings
from paddle_llm_bench.core.gate_options import add_gate_arguments, gate_settings_from_args
from paddle_llm_bench.core.record import CaseRecord, MachineFacts
from paddle_llm_bench.core.versioned import Format, FormatError, describe_invalid
from paddle_llm_bench.paired.options import PAIRED_OPTIONS
from paddle_llm_bench.paired.plan import measured_round_seconds, plan_rows, plan_shards
from paddle_llm_bench.paired.render import render
from paddle_llm_bench.paired.results import PairedFileError, PairedSettings, judge, judge_memory, load_paired_run
from paddle_llm_bench.results.baselines import BaselineError, load_saved_run
from paddle_llm_bench.results.files import read_document, write_document
from paddle_llm_bench.results.history import MIN_NIGHTS, history_state, record_night
from paddle_llm_bench.results.regression import check_run
from paddle_llm_bench.runtime.models import PRESETS
from paddle_llm_bench.runtime.shard import DEFAULT_STEP_MS, first_generation_seconds, round_seconds

PASSED, FAILED, INTERRUPTED, USAGE = ExitStatus.OK, ExitStatus.FAILED, ExitStatus.INTERRUPTED, ExitStatus.USAGE_ERROR
# The documents the nightly's steps hand each other.
NIGHTLY_PLAN = Format("nightly plan", 1, tag=("format", "paddle-llm-bench-nightly-plan"))


class ShardPlan(BaseModel):
    shard: PositiveInt
    cases: list[str]
    expected_minutes: float  # at most: the sweep's rounds and every paired case's budget


class NightlyPlan(BaseModel):
    """What `nightly plan` decided and `nightly shard` runs: the shards, their cases and pytest's arguments."""

    device: str
    shards: PositiveInt
    budget_minutes: float
    step_ms: float  # the decoding step assumed where the history had no measured round
    measured_cases: int  # cases whose round time came from the history's last night
    fits: bool
    timeout_minutes: int
    pytest_args: list[str]
    per_shard: list[ShardPlan]


SHARD_TIMING = Format("shard timing", 1, unversioned=1)  # written unversioned before format_version
NIGHTLY_VERDICT = Format("nightly verdict", 1, unversioned=1)
SETUP_MINUTES = 30  # installing and restoring environments, on top of the plan, for the job's timeout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    steps = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    _plan_arguments(steps.add_parser("plan", help="split the sweep into shards that fit a time budget"))
    _shard_arguments(steps.add_parser("shard", help="measure one shard of a plan (pytest benchmarks)"))
    _judge_arguments(steps.add_parser("judge", help="judge a merged night: history gate and paired stage"))
    _record_arguments(steps.add_parser("record", help="add a judged night to the history"))


def main(args: argparse.Namespace) -> int:
    try:
        steps = {"plan": plan_main, "shard": shard_main, "judge": judge_main, "record": record_main}
        return steps[args.step](args)
    except (ConfigError, BaselineError, PairedFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE


# plan


def _plan_arguments(parser: argparse.ArgumentParser) -> None:
    count = as_argparse_type(lambda text, source: parse_positive_int(text, source, 1), "--shards")
    budget = as_argparse_type(lambda text, source: parse_float(text, source, 1.0, 10_000.0), "--budget-minutes")
    step = as_argparse_type(lambda text, source: parse_float(text, source, 0.01, 60_000.0), "--step-ms")
    rounds = as_argparse_type(lambda text, source: parse_positive_int(text, source, MIN_ROUNDS), "--rounds")
    parser.add_argument("--shards", type=count, default=1, metavar="N", help="runners sharing the sweep (1)")
    parser.add_argument("--budget-minutes", type=budget, required=True, metavar="M", help="per shard, all included")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu", help="where the shards measure (gpu)")
    for dimension in SWEEP_DIMENSIONS:
        parser.add_argument(
            f"--{dimension.option}",
            type=_dimension(dimension.field, dimension.option),
            metavar="LIST",
            help=f"as --llm-{dimension.option} (default: the device's sweep)",
        )
    parser.add_argument("--rounds", type=rounds, default=10, metavar="N", help="measured rounds per case (10)")
    warmup = as_argparse_type(lambda text, source: parse_positive_int(text, source, 0), "--warmup-rounds")
    parser.add_argument("--warmup-rounds", type=warmup, default=2, metavar="N", help="untimed rounds per case (2)")
    parser.add_argument(
        "--step-ms",
        type=step,
        metavar="MS",
        help="one greedy batch-1 decoding step of the model, for cases the history's last night did not measure "
        f"(default {DEFAULT_STEP_MS['gpu']:g} on a GPU, {DEFAULT_STEP_MS['cpu']:g} on a CPU)",
    )
    parser.add_argument(
        "--history", type=Path, metavar="DIR", help="the nightly history (its last night's round times)"
    )
    parser.add_argument("--no-paired", action="store_true", help="no paired stage (no reference to compare with)")
    parser.add_argument(
        "--paired-case-budget-s",
        type=as_argparse_type(PAIRED_OPTIONS["case-budget-s"].parse, "--paired-case-budget-s"),
        default=PairedSettings().case_budget_s,
        metavar="SECONDS",
        help=f"the paired stage's time per case (default {PairedSettings().case_budget_s:g})",
    )
    parser.add_argument("--output", type=Path, metavar="PLAN_JSON", help="write the plan here (for `nightly shard`)")
    parser.add_argument("--github-output", type=Path, metavar="FILE", help="append shard-numbers= and timeout-minutes=")


def _dimension(field: str, name: str) -> Any:
    return as_argparse_type(
        lambda text, source: parse_sweep_dimension(field, text, source, tuple(PRESETS)), f"--{name}"
    )


def plan_main(args: argparse.Namespace) -> int:
    chosen = {d.field: getattr(args, d.option.replace("-", "_")) for d in SWEEP_DIMENSIONS}
    chosen = {field: value for field, value in chosen.items() if value is not None}
    sweep = make_sweep(chosen, args.device, args.rounds, args.warmup_rounds)
    cases = sweep.cases()
    if args.shards > len(cases):  # a shard without a case would measure nothing
        raise ConfigError(f"--shards {args.shards} for a sweep of {len(cases)} case(s): give at most {len(cases)}")
    step_ms = args.step_ms or DEFAULT_STEP_MS[args.device]
    measured = measured_round_seconds(args.history)
    round_s = {c.id: measured.get(c.id) or round_seconds(c, step_ms / 1000, args.device) for c in cases}
    compile_s = {c.id: first_generation_seconds(c, step_ms / 1000) for c in cases}  # 0 for eager
    paired = None if args.no_paired else replace(PairedSettings(), case_budget_s=args.paired_case_budget_s)
    rounds = args.rounds + args.warmup_rounds
    plans = plan_shards(cases, args.shards, rounds, round_s, args.device, paired, compile_s)
    worst = max(plan.total_max for plan in plans)
    fits = worst <= args.budget_minutes
    known = sum(c.id in measured for c in cases)
    print(
        f"{len(cases)} cases on {args.shards} shard(s); rounds measured by the history's last night for {known} "
        f"case(s), expected from a {step_ms:g} ms decoding step for the others"
    )
    print("\n".join(aligned_table(["shard", "cases", "sweep min", "paired min", "at most"], plan_rows(plans))))
    if not fits:

        def fits_on(shards: int) -> bool:
            found = plan_shards(cases, shards, rounds, round_s, args.device, paired)
            return bool(max(p.total_max for p in found) <= args.budget_minutes)

        needed = next((n for n in range(args.shards + 1, 65) if fits_on(n)), None)
        hint = f"{needed} shards would fit" if needed else "no shard count up to 64 fits: shorten the sweep"
        print(f"does NOT fit {args.budget_minutes:g} minutes per shard: {hint} (or a smaller --paired-case-budget-s)")
    timeout = math.ceil(worst * 1.3) + SETUP_MINUTES
    plan = NightlyPlan(
        device=args.device,
        shards=args.shards,
        budget_minutes=args.budget_minutes,
        step_ms=step_ms,
        measured_cases=known,
        fits=fits,
        timeout_minutes=timeout,
        pytest_args=pytest_args(chosen, args.device, args.rounds, args.warmup_rounds, paired),
        per_shard=[
            ShardPlan(shard=p.shard, cases=list(p.cases), expected_minutes=round(p.total_max, 1)) for p in plans
        ],
    )
    if args.output:
        write_document(args.output, NIGHTLY_PLAN, plan.model_dump(mode="json"))
    if args.github_output:
        with args.github_output.open("a", encoding="utf-8") as out:
            out.write(f"shard-numbers={json.dumps(list(range(1, args.shards + 1)))}\ntimeout-minutes={timeout}\n")
    return PASSED if fits else USAGE  # nothing measured: the budget and the shard count cannot work together


def pytest_args(
    chosen: dict[str, tuple[Any, ...]], device: str, rounds: int, warmup: int, paired: PairedSettings | None
) -> list[str]:
    args = ["--llm-device", device, "--llm-rounds", str(rounds), "--llm-warmup-rounds", str(warmup)]
    for dimension in SWEEP_DIMENSIONS:
        if dimension.field in chosen:
            args += [f"--llm-{dimension.option}", ",".join(str(value) for value in chosen[dimension.field])]
    if paired is not None:
        args += ["--llm-paired-case-budget-s", f"{paired.case_budget_s:g}"]
    return args


# shard


def _shard_arguments(parser: argparse.ArgumentParser) -> None:
    shard = as_argparse_type(lambda text, source: parse_positive_int(text, source, 1), "--shard")
    parser.add_argument("--plan", type=Path, required=True, metavar="PLAN_JSON", help="from `nightly plan --output`")
    parser.add_argument("--shard", type=shard, required=True, metavar="K", help="which shard of the plan (1..N)")
    parser.add_argument("--output", type=Path, required=True, metavar="RUN_JSON", help="the shard's saved run")
    parser.add_argument("--reference", metavar="PYTHON", help="measure each case paired against this Python")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="more pytest arguments, after --")


def read_plan(path: Path) -> NightlyPlan:
    fix = "write it with `paddle-llm-bench nightly plan --output`"
    try:
        return NightlyPlan.model_validate(read_document(path, NIGHTLY_PLAN))
    except FormatError as error:
        raise ConfigError(f"--plan: {error}; {fix}") from None
    except ValidationError as error:
        raise ConfigError(f"--plan: nightly plan {path}: {describe_invalid(error)}; {fix}") from None


def shard_main(args: argparse.Namespace) -> int:
    plan = read_plan(args.plan)
    shards = plan.shards
    if not 1 <= args.shard <= shards:
        raise ConfigError(f"--shard {args.shard}: the plan has shards 1 to {shards}")
    if not Path("benchmarks").is_dir():
        raise ConfigError("run `nightly shard` in the paddle-llm-bench checkout (no benchmarks/ folder here)")
    expected = plan.per_shard[args.shard - 1].expected_minutes
    command = [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", *plan.pytest_args]
    command += ["--llm-shard", f"{args.shard}/{shards}", "--llm-no-gate", "--benchmark-json", str(args.output)]
    command += ["--llm-reference", args.reference] if args.reference else []
    command += [a for a in args.pytest_args if a != "--"]
    print(f"shard {args.shard}/{shards}: expected at most {expected:.0f} min; {' '.join(command)}", file=sys.stderr)
    started = time.monotonic()
    status = subprocess.call(command)
    minutes = (time.monotonic() - started) / 60
    timing = {"shard": args.shard, "shards": shards, "expected_minutes": expected, "actual_minutes": round(minutes, 1)}
    write_document(timing_path(args.output), SHARD_TIMING, {**timing, "exit_status": status})
    print(
        f"shard {args.shard}/{shards}: exit status {status}, {minutes:.0f} min (planned {expected:.0f})",
        file=sys.stderr,
    )
    return status


def timing_path(run: Path) -> Path:
    return run.with_name(f"{run.stem}.timing.json")


# judge


def _judge_arguments(parser: argparse.ArgumentParser) -> None:
    nights = as_argparse_type(lambda text, source: parse_positive_int(text, source, 2), "--min-nights")
    parser.add_argument("merged", type=Path, help="the night's merged run (`paddle-llm-bench merge`)")
    parser.add_argument("--history", type=Path, required=True, metavar="DIR", help="the nightly history folder")
    parser.add_argument(
        "--min-nights", type=nights, default=MIN_NIGHTS, metavar="K", help=f"before speed is gated ({MIN_NIGHTS})"
    )
    parser.add_argument(
        "--shard-dir", type=Path, metavar="DIR", help="shards' runs, paired runs, timings (the merged run's folder)"
    )
    parser.add_argument(
        "--summary", type=Path, metavar="FILE", help="append the Markdown summary (e.g. $GITHUB_STEP_SUMMARY)"
    )
    parser.add_argument("--verdict", type=Path, metavar="FILE", help="write the verdict (for `nightly record`)")
    add_gate_arguments(parser)


@dataclass
class Night:
    """What a night's judge found, in the order the summary shows it."""

    lines: list[str]
    regressions: list[str]
    problems: list[str]  # failed cases, failed or interrupted shards, missing data
    interrupted: bool


def judge_night(
    merged: Path, history: Path, shard_dir: Path, settings: GateSettings, min_nights: int
) -> tuple[Night, MachineFacts]:
    fingerprint, by_case, facts = load_saved_run(merged)
    night = Night([f"## Nightly: Paddle {facts.paddle_version or '?'} on {fingerprint}"], [], [], False)
    if not fingerprint or not by_case:
        night.problems.append(f"{merged} holds no measured case: nothing was judged")
        return night, facts
    if facts.interrupted_cases:
        night.interrupted = True
        night.problems.append(f"interrupted, not saved: {', '.join(facts.interrupted_cases)}")
    _stored_gate(night, list(by_case.values()), fingerprint, facts, history, settings, min_nights)
    _paired_stage(night, shard_dir)
    _plan_vs_actual(night, shard_dir)
    return night, facts


def _stored_gate(
    night: Night,
    results: list[CaseRecord],
    fingerprint: str,
    facts: MachineFacts,
    history: Path,
    settings: GateSettings,
    min_nights: int,
) -> None:
    state = history_state(history, fingerprint)
    if not state.gated(min_nights):
        settings = replace(settings, min_effect_percent={})  # memory only: one night cannot show a night's noise
    report = check_run(results, fingerprint, history, settings=settings, started=facts.run_started)
    night.lines += ["", f"### Stored-baseline gate: {state.line(min_nights)}", "```", *report.lines(), "```"]
    night.regressions += [f"stored gate: {v.message()}" for v in report.regressions]
    night.problems += [f"stored gate: {error}" for error in report.errors]


def _paired_stage(night: Night, shard_dir: Path) -> None:
    paths = sorted(shard_dir.rglob("paired.json"))
    night.lines += ["", f"### Paired against the reference ({len(paths)} shard(s))"]
    if not paths:
        night.lines.append("no paired run found (no --reference, or the shards measured none)")
    for path in paths:
        run = load_paired_run(path)
        night.lines += ["", f"`{path}`", "", render(run, "markdown")]
        night.regressions += [f"paired: {v.message()}" for v in [*judge(run), *judge_memory(run)] if v.regression]
        night.problems += [f"paired: {c.case.id} failed: {c.error.splitlines()[0]}" for c in run.cases if c.error]
        if run.interrupted:
            night.interrupted = True
            night.problems.append(f"paired: {path} was interrupted")


def _plan_vs_actual(night: Night, shard_dir: Path) -> None:
    timings = []
    for path in sorted(shard_dir.rglob("*.timing.json")):
        try:
            timings.append(read_document(path, SHARD_TIMING))
        except FormatError as error:
            night.problems.append(f"unreadable: {error}")
    if not timings:
        return
    night.lines += [
        "",
        "### Plan vs actual",
        "",
        "| shard | planned min (at most) | actual min | exit status |",
        "|---|---:|---:|---:|",
    ]
    for t in timings:
        cells = [f"{t['shard']}/{t['shards']}", f"{t['expected_minutes']:.0f}", f"{t['actual_minutes']:.0f}"]
        night.lines.append("| " + " | ".join([*cells, str(t["exit_status"])]) + " |")
        if t["exit_status"] == INTERRUPTED:
            night.interrupted = True
        if t["exit_status"] != PASSED:
            night.problems.append(f"shard {t['shard']}/{t['shards']} exited with status {t['exit_status']}")


def judge_main(args: argparse.Namespace) -> int:
    settings = gate_settings_from_args(args)
    shard_dir = args.shard_dir or args.merged.parent
    night, facts = judge_night(args.merged, args.history, shard_dir, settings, args.min_nights)
    passed = not night.regressions and not night.problems
    verdict = "PASSED" if passed else "INTERRUPTED" if night.interrupted else "FAILED"
    lines = [
        *night.lines,
        "",
        f"**{verdict}**",
        *[f"- REGRESSION {r}" for r in night.regressions],
        *[f"- {p}" for p in night.problems],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.summary:
        with args.summary.open("a", encoding="utf-8") as summary:
            summary.write(text)
    if args.verdict:
        document = {
            "run_id": facts.run_id,
            "passed": passed,
            "interrupted": night.interrupted,
            "regressions": night.regressions,
            "problems": night.problems,
        }
        write_document(args.verdict, NIGHTLY_VERDICT, document)
    return PASSED if passed else INTERRUPTED if night.interrupted else FAILED


# record


def _record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("merged", type=Path, help="the night's merged run")
    parser.add_argument("--history", type=Path, required=True, metavar="DIR", help="the nightly history folder")
    parser.add_argument("--verdict", type=Path, required=True, metavar="FILE", help="from `nightly judge --verdict`")
    parser.add_argument(
        "--accept",
        metavar="REASON",
        help="record a night that failed on purpose (a deliberate change): the history starts again from it",
    )


def record_main(args: argparse.Namespace) -> int:
    _fingerprint, by_case, facts = load_saved_run(args.merged)
    try:
        verdict = read_document(args.verdict, NIGHTLY_VERDICT)
    except FormatError as error:
        raise ConfigError(f"--verdict: {error}; write it with `paddle-llm-bench nightly judge --verdict`") from None
    if verdict.get("run_id") != facts.run_id:
        raise ConfigError(
            f"--verdict {args.verdict} judged run {verdict.get('run_id')!r}, not {args.merged} ({facts.run_id!r})"
        )
    if verdict.get("interrupted"):
        print(
            "not recorded: the night was interrupted or incomplete; only whole nights enter the history",
            file=sys.stderr,
        )
        return INTERRUPTED
    if not verdict.get("passed") and not args.accept:
        print(
            "not recorded: the night failed, and a failed night does not enter the history. If the change is "
            "deliberate, record it with --accept REASON (the history then starts again from this night)",
            file=sys.stderr,
        )
        return FAILED
    update = record_night(list(by_case.values()), facts, args.history, facts.commit, args.accept or "")
    print(update.message() + (f"; accepted: {args.accept} (earlier nights dropped)" if args.accept else ""))
    return PASSED
