"""`paddle-llm-bench compare RUN_A RUN_B [RUN_C ...]`: read saved runs, compare, write text and plots.

`paddle-llm-bench compare PAIRED_JSON`: a paired run (``paired``, ``versions``, ``overhead``, ``--llm-reference``)
holds its own comparison; it is rendered in the same formats, with its forest plot for ``--plots``.

Exit status: 0 when the comparison was written (whatever the verdicts), 4 for unusable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from paddle_llm_bench.analysis.compare import CompareError, Comparison, SavedRun, compare, saved_run
from paddle_llm_bench.analysis.compare_render import RENDERERS
from paddle_llm_bench.core.config import ConfigError
from paddle_llm_bench.core.exit_status import ExitStatus
from paddle_llm_bench.core.gate_options import GATE_OPTIONS, add_gate_arguments, gate_settings_from_args
from paddle_llm_bench.paired.render import forest_plot, render
from paddle_llm_bench.paired.results import PairedFileError, load_paired_run
from paddle_llm_bench.results.baselines import BaselineError, load_saved_run
from paddle_llm_bench.results.files import write_atomic

USAGE_ERROR = ExitStatus.USAGE_ERROR
PAIRED_ALONE = (
    "a paired run (paired.json) holds its own comparison, measured interleaved: give it alone "
    "(`compare PAIRED_JSON`); saved runs of different times are compared with each other"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="saved pytest-benchmark runs (.benchmarks/<machine>/NNNN_*.json or --benchmark-json files), the first "
        "the reference; or one paired run (paired.json)",
    )
    parser.add_argument("--format", choices=sorted(RENDERERS), default="table", help="output format (default: table)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write there (atomically) instead of stdout")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="also write PNG plots into DIR (needs matplotlib)")
    parser.add_argument(
        "--plot-case", metavar="CASE_ID", help="case for the per-token latency plot (default: the first common case)"
    )
    add_gate_arguments(parser)


def read_run(path: Path) -> SavedRun:
    """One saved run from disk; errors name the file and what is expected."""
    if not path.is_file():
        raise CompareError(
            f"saved run {path} does not exist: give .benchmarks/<machine>/NNNN_*.json files "
            "(pytest --benchmark-autosave) or --benchmark-json outputs"
        )
    try:
        fingerprint, by_case, facts = load_saved_run(path)
    except BaselineError as error:
        raise CompareError(PAIRED_ALONE if is_paired_run(path) else str(error)) from None
    return saved_run(path, fingerprint, by_case, facts)


def write_plots(comparison: Comparison, directory: Path, plot_case: str | None) -> list[Path]:
    try:
        from paddle_llm_bench.analysis.plots import render_plots  # matplotlib only when plots are asked for
    except ImportError as error:
        raise CompareError(f"--plots needs matplotlib ({error}): pip install matplotlib") from None

    pictures = render_plots(comparison, plot_case)
    for name, png in pictures.items():
        write_atomic(directory / name, png)
    return [directory / name for name in pictures]


def main(args: argparse.Namespace) -> int:
    try:
        if is_paired_run(args.runs[0]):  # a paired run later in the list is refused when it is read
            text, written, warnings = paired_comparison(args)
        else:
            text, written, warnings = saved_runs_comparison(args)
    except (CompareError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as error:
        print(f"error: cannot write the plots into {args.plots}: {error}", file=sys.stderr)
        return USAGE_ERROR
    if args.format in ("csv", "json") or args.output is not None:
        for warning in warnings:  # machine formats carry them inside; a person should still see them
            print(f"WARNING: {warning}", file=sys.stderr)
    try:
        if args.output is not None:
            write_atomic(args.output, text)
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    except OSError as error:
        print(f"error: cannot write {args.output}: {error}", file=sys.stderr)
        return USAGE_ERROR
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def saved_runs_comparison(args: argparse.Namespace) -> tuple[str, list[Path], Sequence[str]]:
    if len(args.runs) < 2:
        raise CompareError(f"compare needs at least two saved runs (the first is the reference), got {len(args.runs)}")
    comparison = compare([read_run(path) for path in args.runs], gate_settings_from_args(args))
    written = write_plots(comparison, args.plots, args.plot_case) if args.plots is not None else []
    return RENDERERS[args.format](comparison), written, comparison.warnings


def paired_comparison(args: argparse.Namespace) -> tuple[str, list[Path], Sequence[str]]:
    """A paired run's own comparison, judged with the settings it was measured with."""
    if len(args.runs) != 1:
        raise CompareError(PAIRED_ALONE)
    given = [f"--{name}" for name in GATE_OPTIONS if getattr(args, f"gate_{name.replace('-', '_')}") is not None]
    if given:
        raise CompareError(
            f"{', '.join(given)} judge saved runs; a paired run is judged by the settings it was measured with"
        )
    try:
        run = load_paired_run(args.runs[0])
    except PairedFileError as error:
        raise CompareError(str(error)) from None
    written = [forest_plot(run, args.plots / "forest.png")] if args.plots is not None else []
    return render(run, args.format), written, []


def is_paired_run(path: Path) -> bool:
    """A paired run's file (its ``sides`` and ``cases``), as opposed to a pytest-benchmark run (``benchmarks``)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # read_run names the problem
    return isinstance(document, dict) and "sides" in document and "cases" in document
