"""`paddle-llm-bench paired --reference PYTHON [--candidate PYTHON]`: a sweep measured interleaved in two Pythons.

The candidate is this environment's Python unless ``--candidate`` names another. Both need Paddle,
PaddleNLP and this project installed (``paddle-llm-bench versions`` builds such environments per
Paddle version). ``--candidate`` equal to the reference is an A/A run: it shows how often the verdict
cries wolf on this machine and whether the intervals cover 1; ``--inject-slowdown`` makes the
candidate busy-wait a known share of every decoding step, to show what the comparison catches.
``--candidate-mode MODE`` runs every case on the candidate side in that execution mode (``to_static``,
``sot``, ``cinn``) and on the reference in the case's own (eager by default): one mode against another,
in this environment unless the sides name other Pythons.

Everything lands in ``--out-dir`` (default ``.benchmarks/paired/<UTC time>/``): ``paired.json`` (every
pair, saved after every case of every block), and ``comparison.txt/.md/.csv/.json`` and
``forest.png`` at the end. Exit status: 0 no regression; 1 the candidate is confirmed slower or
bigger, or a case failed; 2 interrupted (what was measured is saved); 4 bad input (nothing measured).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from paddle_llm_bench.core.config import (
    MODES,
    SWEEP_DIMENSIONS,
    Case,
    ConfigError,
    Sweep,
    as_argparse_type,
    parse_sweep_dimension,
)
from paddle_llm_bench.core.exit_status import ExitStatus
from paddle_llm_bench.paired.engine import run_paired
from paddle_llm_bench.paired.options import add_engine_arguments, positive_int, settings_from_args
from paddle_llm_bench.paired.render import FORMATS, forest_plot, render
from paddle_llm_bench.paired.results import (
    PairedFileError,
    PairedRun,
    PairedSettings,
    failures,
    judge,
    judge_memory,
    load_paired_run,
)
from paddle_llm_bench.paired.sides import Side, SideError, python_side, this_python
from paddle_llm_bench.results.files import describe_os_error, write_atomic
from paddle_llm_bench.results.saving import restore_sigterm, stop_on_sigterm
from paddle_llm_bench.runtime import progress
from paddle_llm_bench.runtime.device import DEVICE_CHOICES
from paddle_llm_bench.runtime.models import PRESETS, default_cache_dir

USAGE_ERROR = ExitStatus.USAGE_ERROR
INTERRUPTED = ExitStatus.INTERRUPTED
# The default sweep: small enough for a minute or two per case on a 2-core CPU.
DEFAULT_SWEEP: dict[str, str] = {
    "model": "tiny",
    "dtype": "float32",
    "decoding": "greedy",
    "mode": "eager",
    "max-new-tokens": "32",
    "batch-size": "1",
    "prompt-tokens": "32",
}


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the sweep (comma-separated lists, as the --llm-* options of pytest)")
    for dimension in SWEEP_DIMENSIONS:
        name, field_name = dimension.option, dimension.field
        group.add_argument(
            f"--{name}",
            type=as_argparse_type(functools.partial(_parse_dimension, field_name), f"--{name}"),
            default=parse_sweep_dimension(field_name, DEFAULT_SWEEP[name], "default", tuple(PRESETS)),
            metavar="LIST",
            help=f"{dimension.describe(PRESETS)} (default {DEFAULT_SWEEP[name]})",
        )
    group.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="where the workers generate")
    group.add_argument(
        "--max-positions",
        type=positive_int("--max-positions", 0),
        default=4096,
        metavar="N",
        help="cap on max_position_embeddings (0 keeps the model's; default 4096)",
    )
    group.add_argument(
        "--cache-dir", type=Path, default=None, metavar="DIR", help="synthetic checkpoints (shared by both sides)"
    )


def _parse_dimension(field_name: str, text: str, source: str) -> tuple[object, ...]:
    return parse_sweep_dimension(field_name, text, source, tuple(PRESETS))


def sweep_from_args(args: argparse.Namespace) -> Sweep:
    return Sweep(**{d.field: getattr(args, d.option.replace("-", "_")) for d in SWEEP_DIMENSIONS})


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", type=Path, metavar="DIR", help="where the run and the comparison go")
    parser.add_argument("--format", choices=FORMATS, default="table", help="what is printed (default table)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reference",
        metavar="PYTHON",
        help="the reference side's Python interpreter (with --candidate-mode, default: this one)",
    )
    parser.add_argument(
        "--from",
        dest="from_run",
        type=Path,
        metavar="PAIRED_JSON",
        help="measure nothing: render a saved paired run (paired.json) in --format",
    )
    parser.add_argument(
        "--candidate", metavar="PYTHON", help="the candidate side's Python (default: this one, " + sys.executable + ")"
    )
    parser.add_argument(
        "--inject-slowdown",
        type=positive_int("--inject-slowdown", 0),
        default=0,
        metavar="PERCENT",
        help="calibration: after every forward pass the candidate busy-waits this share of its time (e.g. 5)",
    )
    parser.add_argument(
        "--candidate-mode",
        choices=tuple(MODES),
        metavar="MODE",
        help=f"the candidate runs every case in this execution mode ({', '.join(MODES)}), the reference in the "
        "case's --mode: e.g. to_static against eager",
    )
    add_sweep_arguments(parser)
    add_engine_arguments(parser)
    add_output_arguments(parser)


def main(args: argparse.Namespace) -> int:
    if args.from_run is not None:
        return show_saved(args.from_run, args.format)
    if args.reference is None and args.candidate_mode is None:
        print("error: --reference PYTHON is needed (or --from PAIRED_JSON to render a saved run)", file=sys.stderr)
        return USAGE_ERROR
    try:
        settings = settings_from_args(args, args.device, args.max_positions or None)
        reference = (
            python_side(args.reference, "reference", "--reference") if args.reference else this_python("reference")
        )
        candidate = python_side(args.candidate, "candidate", "--candidate") if args.candidate else this_python()
    except (ConfigError, SideError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    candidate = dataclasses.replace(
        candidate,
        name=f"candidate ({args.candidate_mode})" if args.candidate_mode else "candidate",
        slowdown_fraction=args.inject_slowdown / 100.0,
        mode=args.candidate_mode,
    )
    out_dir = args.out_dir or Path(".benchmarks") / "paired" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return measure_and_report(
        sweep_from_args(args).cases(), [reference, candidate], settings, args.cache_dir, out_dir, args.format
    )


def measure_and_report(
    cases: Sequence[Case],
    sides: list[Side],
    settings: PairedSettings,
    cache_dir: Path | None,
    out_dir: Path,
    fmt: str,
    fail_on_regression: bool = True,
) -> int:
    """Run the engine, saving after every case; then write and print the comparison. Returns the exit status
    (a regression counts only with ``fail_on_regression``: for ``versions`` a slower version is a finding)."""
    run_path = out_dir / "paired.json"
    try:  # before anything is measured: a bad --out-dir would lose the first block
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise PermissionError(13, "permission denied")
    except OSError as error:
        print(f"error: cannot write the results into {out_dir}: {describe_os_error(error)}; give --out-dir a "
              "folder you can write (it is made if missing)", file=sys.stderr)  # fmt: skip
        return USAGE_ERROR
    say(f"{len(cases)} case(s): {', '.join(side.describe() for side in sides)}; saving to {run_path}")
    previous = stop_on_sigterm()  # SIGTERM (a CI job's cancel) stops between turns, as Ctrl-C does
    try:
        run = run_paired(
            cases,
            sides,
            settings,
            cache_dir or default_cache_dir(),
            progress=say,
            on_update=lambda current: current.save(run_path),
        )
    except SideError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        say("interrupted while starting the workers: nothing was measured")
        return INTERRUPTED
    finally:
        restore_sigterm(previous)
    write_reports(run, out_dir)
    print(render(run, fmt), end="")
    return exit_status(run, fail_on_regression)


def show_saved(path: Path, fmt: str) -> int:
    try:
        run = load_paired_run(path)
    except PairedFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    print(render(run, fmt), end="")
    return 0


def write_reports(run: PairedRun, out_dir: Path) -> None:
    for fmt, suffix in (("table", "txt"), ("markdown", "md"), ("csv", "csv"), ("json", "json")):
        write_atomic(out_dir / f"comparison.{suffix}", render(run, fmt))
    if any(c.blocks for c in run.cases):
        forest_plot(run, out_dir / "forest.png")
    say(f"wrote {out_dir}/paired.json, comparison.txt/.md/.csv/.json, forest.png")


def exit_status(run: PairedRun, fail_on_regression: bool) -> int:
    if run.interrupted:
        say("interrupted: what was measured is saved")
        return INTERRUPTED
    found = failures([*judge(run), *judge_memory(run)])
    for line in found:
        say(f"{'REGRESSION' if fail_on_regression else 'slower or bigger'}: {line}")
    failed = [c for c in run.cases if c.error]
    for comparison in failed:
        say(f"FAILED {comparison.case.id}: {comparison.error}")
    return 1 if (found and fail_on_regression) or failed else 0


def say(message: str) -> None:
    progress.say(message, "paired")
