"""`paddle-llm-bench compare RUN_A RUN_B [RUN_C ...]`: read saved runs, compare, write text and plots.

Exit status: 0 when the comparison was written (whatever the verdicts), 2 for unusable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paddle_llm_bench.analysis.compare import CompareError, Comparison, SavedRun, compare, saved_run
from paddle_llm_bench.analysis.compare_render import RENDERERS
from paddle_llm_bench.core.config import ConfigError
from paddle_llm_bench.core.exit_status import ExitStatus
from paddle_llm_bench.core.gate_options import add_gate_arguments, gate_settings_from_args
from paddle_llm_bench.results.baselines import BaselineError, load_saved_run
from paddle_llm_bench.results.files import write_atomic

USAGE_ERROR = ExitStatus.USAGE_ERROR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="saved pytest-benchmark runs (.benchmarks/<machine>/NNNN_*.json or --benchmark-json files); "
        "the first is the reference",
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
        raise CompareError(str(error)) from None
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
        if len(args.runs) < 2:
            raise CompareError(
                f"compare needs at least two saved runs (the first is the reference), got {len(args.runs)}"
            )
        settings = gate_settings_from_args(args)
        comparison = compare([read_run(path) for path in args.runs], settings)
        text = RENDERERS[args.format](comparison)
        written = write_plots(comparison, args.plots, args.plot_case) if args.plots is not None else []
    except (CompareError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as error:
        print(f"error: cannot write the plots into {args.plots}: {error}", file=sys.stderr)
        return USAGE_ERROR
    if args.format in ("csv", "json") or args.output is not None:
        for warning in comparison.warnings:  # machine formats carry them inside; a person should still see them
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
