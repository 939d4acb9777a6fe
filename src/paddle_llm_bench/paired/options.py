"""The paired engine's options, shared by every command that measures paired (``paired``, ``versions``).

One argparse group and one builder of ``PairedSettings``: every command parses them the same way and
names the option in its errors.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..config import ConfigError, as_argparse_type, parse_float, parse_positive_int
from .results import PAIRED_METRICS, PairedSettings

DEFAULTS = PairedSettings()


def _positive(option: str, minimum: int = 1) -> Callable[[str], int]:
    return as_argparse_type(lambda text, source: parse_positive_int(text, source, minimum), option)


def _number(option: str, low: float, high: float) -> Callable[[str], float]:
    return as_argparse_type(lambda text, source: parse_float(text, source, low, high), option)


def parse_min_effects(text: str, source: str) -> dict[str, float]:
    """``decode_tokens_per_s=3,ttft_ms=10`` -> {metric: percent}; metrics must be paired metrics."""
    effects = dict(DEFAULTS.min_effect_percent)
    for item in (part.strip() for part in text.split(",")):
        metric, _, percent = item.partition("=")
        if metric not in PAIRED_METRICS or not percent:
            raise ConfigError(
                f"invalid value {item!r} from {source}: expected METRIC=PERCENT with METRIC one of "
                f"{', '.join(PAIRED_METRICS)}"
            )
        effects[metric] = parse_float(percent, source, 0.0, 1000.0)
    return effects


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("paired measurement (how long, how fine, how judged)")
    d = DEFAULTS
    group.add_argument(
        "--pairs-per-block",
        type=_positive("--pairs-per-block", 2),
        default=d.pairs_per_block,
        metavar="N",
        help=f"pairs of turns per block of fresh worker processes (default {d.pairs_per_block})",
    )
    group.add_argument(
        "--min-blocks",
        type=_positive("--min-blocks", 2),
        default=d.min_blocks,
        metavar="N",
        help=f"blocks before a case may stop on precision (default {d.min_blocks})",
    )
    group.add_argument(
        "--max-blocks",
        type=_positive("--max-blocks", 2),
        default=d.max_blocks,
        metavar="N",
        help=f"most blocks per case (default {d.max_blocks})",
    )
    group.add_argument(
        "--target-half-width",
        type=_number("--target-half-width", 0.01, 100.0),
        default=d.target_half_width_percent,
        metavar="PERCENT",
        help="a case stops once its decode tok/s interval's half-width is at most this "
        f"(default {d.target_half_width_percent:g} %%)",
    )
    group.add_argument(
        "--case-budget-s",
        type=_number("--case-budget-s", 1.0, 1e6),
        default=d.case_budget_s,
        metavar="SECONDS",
        help=f"measuring time per case after which no block is added (default {d.case_budget_s:g})",
    )
    group.add_argument(
        "--rounds-per-turn",
        type=_positive("--rounds-per-turn"),
        default=d.rounds_per_turn,
        metavar="N",
        help=f"generations per turn (default {d.rounds_per_turn})",
    )
    group.add_argument(
        "--dropped-per-turn",
        type=_positive("--dropped-per-turn", 0),
        default=d.dropped_per_turn,
        metavar="N",
        help=f"first rounds of each turn left out (caches cold after the other side ran; default {d.dropped_per_turn})",
    )
    group.add_argument(
        "--warmup-rounds",
        type=_positive("--warmup-rounds", 0),
        default=d.warmup_rounds,
        metavar="N",
        help=f"untimed generations per case and worker (default {d.warmup_rounds})",
    )
    group.add_argument(
        "--alpha",
        type=_number("--alpha", 1e-9, 0.5),
        default=d.alpha,
        metavar="P",
        help=f"family-wise false-alarm rate of the regression verdict, Holm over the sweep (default {d.alpha:g})",
    )
    group.add_argument(
        "--min-effect",
        type=as_argparse_type(parse_min_effects, "--min-effect"),
        default=dict(d.min_effect_percent),
        metavar="METRIC=PERCENT,...",
        help="smallest change called faster/slower, per metric: "
        + ", ".join(f"{m}={p:g}" for m, p in d.min_effect_percent.items()),
    )
    group.add_argument("--seed", type=_positive("--seed", 0), default=d.seed, help="seed of the turn order")


def settings_from_args(args: argparse.Namespace, device: str, max_positions: int | None) -> PairedSettings:
    """PairedSettings from parsed arguments; an inconsistent combination is a ConfigError naming both options."""
    if args.dropped_per_turn >= args.rounds_per_turn:
        raise ConfigError(
            f"--dropped-per-turn {args.dropped_per_turn} must be below --rounds-per-turn {args.rounds_per_turn}"
        )
    if args.max_blocks < args.min_blocks:
        raise ConfigError(f"--max-blocks {args.max_blocks} must be at least --min-blocks {args.min_blocks}")
    return PairedSettings(
        pairs_per_block=args.pairs_per_block,
        min_blocks=args.min_blocks,
        max_blocks=args.max_blocks,
        target_half_width_percent=args.target_half_width,
        case_budget_s=args.case_budget_s,
        rounds_per_turn=args.rounds_per_turn,
        dropped_per_turn=args.dropped_per_turn,
        warmup_rounds=args.warmup_rounds,
        alpha=args.alpha,
        min_effect_percent=args.min_effect,
        device=device,
        max_positions=max_positions,
        seed=args.seed,
    )
