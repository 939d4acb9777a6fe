"""`paddle-llm-bench compare RUN_A RUN_B [RUN_C ...]`: read saved runs, compare, write text and plots.

Exit status: 0 when the comparison was written (whatever the verdicts), 2 for unusable input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .baselines import BaselineError, load_saved_run
from .compare import RENDERERS, CompareError, Comparison, SavedRun, compare, saved_run
from .config import GATED_SPEED_METRICS, as_argparse_type, parse_float
from .files import write_atomic
from .gate import GateSettings

HELP = "compare saved runs: per case medians, ratios and verdicts (table, Markdown, CSV, JSON, plots)"
USAGE_ERROR = 2


def _float_in(low: float, high: float, option: str) -> Callable[[str], float]:
    return as_argparse_type(lambda text, source: parse_float(text, source, low, high), option)


def parse_min_effect(text: str) -> dict[str, float]:
    """``decode_tokens_per_s=5,ttft_ms=10`` -> {metric: percent}; merged over the gate's defaults."""
    effects: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        metric, _, percent = item.partition("=")
        if metric not in GATED_SPEED_METRICS or not percent:
            raise argparse.ArgumentTypeError(
                f"invalid value {item!r} for --min-effect: expected METRIC=PERCENT with METRIC one of "
                f"{', '.join(GATED_SPEED_METRICS)}"
            )
        effects[metric] = _float_in(0.0, 1000.0, "--min-effect")(percent)
    if not effects:
        raise argparse.ArgumentTypeError(f"empty value {text!r} for --min-effect: expected METRIC=PERCENT[,...]")
    return effects


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = GateSettings()
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
    parser.add_argument(
        "--alpha",
        type=_float_in(1e-9, 0.5, "--alpha"),
        default=defaults.alpha,
        help=f"family-wise false-alarm rate per compared run, Holm-corrected (default {defaults.alpha})",
    )
    parser.add_argument(
        "--min-effect",
        type=parse_min_effect,
        default={},
        metavar="METRIC=PERCENT[,...]",
        help="smallest change that counts, e.g. decode_tokens_per_s=5,ttft_ms=10 (default: the gate's)",
    )
    parser.add_argument(
        "--noise-floor",
        type=_float_in(0.0, 100.0, "--noise-floor"),
        default=defaults.noise_floor_percent,
        help=f"run-to-run noise assumed at least, in %% (default {defaults.noise_floor_percent:g})",
    )
    parser.add_argument(
        "--max-cv",
        type=_float_in(0.0, 1000.0, "--max-cv"),
        default=defaults.max_cv_percent,
        help=f"a run whose CV across rounds exceeds this %% is inconclusive (default {defaults.max_cv_percent:g})",
    )


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
        from .plots import render_plots  # matplotlib only when plots are asked for
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
        settings = GateSettings(
            alpha=args.alpha,
            min_effect_percent={**GateSettings().min_effect_percent, **args.min_effect},
            noise_floor_percent=args.noise_floor,
            max_cv_percent=args.max_cv,
        )
        comparison = compare([read_run(path) for path in args.runs], settings)
        text = RENDERERS[args.format](comparison)
        written = write_plots(comparison, args.plots, args.plot_case) if args.plots is not None else []
    except CompareError as error:
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
