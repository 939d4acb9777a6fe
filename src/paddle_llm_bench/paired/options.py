"""The paired engine's options, shared by every command that measures paired (``paired``, ``versions``).

One argparse group and one builder of ``PairedSettings``: every command parses them the same way and
names the option in its errors.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from paddle_llm_bench.core.config import (
    ConfigError,
    as_argparse_type,
    parse_float,
    parse_min_effects,
    parse_positive_int,
)
from paddle_llm_bench.core.metrics import PAIRED_METRICS
from paddle_llm_bench.paired.results import PairedSettings

DEFAULTS = PairedSettings()


def positive_int(option: str, minimum: int = 1) -> Callable[[str], int]:
    return as_argparse_type(lambda text, source: parse_positive_int(text, source, minimum), option)


def _number(option: str, low: float, high: float) -> Callable[[str], float]:
    return as_argparse_type(lambda text, source: parse_float(text, source, low, high), option)


def _parse_min_effects(text: str, source: str) -> dict[str, float]:
    return parse_min_effects(text, source, PAIRED_METRICS, DEFAULTS.min_effect_percent)


def _engine_options() -> list[tuple[str, Callable[[str], object], object, str, str]]:
    """(option, parser, default, metavar, help) of every engine option; the dest is the option's name."""
    d = DEFAULTS
    return [
        (
            "--pairs-per-block",
            positive_int("--pairs-per-block", 2),
            d.pairs_per_block,
            "N",
            f"pairs of turns per block of fresh worker processes (default {d.pairs_per_block})",
        ),
        (
            "--min-blocks",
            positive_int("--min-blocks", 2),
            d.min_blocks,
            "N",
            f"blocks before a case may stop on precision (default {d.min_blocks})",
        ),
        (
            "--max-blocks",
            positive_int("--max-blocks", 2),
            d.max_blocks,
            "N",
            f"most blocks per case (default {d.max_blocks})",
        ),
        (
            "--target-half-width",
            _number("--target-half-width", 0.01, 100.0),
            d.target_half_width_percent,
            "PERCENT",
            "a case stops once its decode tok/s interval's half-width is at most this "
            f"(default {d.target_half_width_percent:g} %%)",
        ),
        (
            "--case-budget-s",
            _number("--case-budget-s", 1.0, 1e6),
            d.case_budget_s,
            "SECONDS",
            f"measuring time per case after which no block is added (default {d.case_budget_s:g})",
        ),
        (
            "--rounds-per-turn",
            positive_int("--rounds-per-turn"),
            d.rounds_per_turn,
            "N",
            f"generations per turn (default {d.rounds_per_turn})",
        ),
        (
            "--dropped-per-turn",
            positive_int("--dropped-per-turn", 0),
            d.dropped_per_turn,
            "N",
            f"first rounds of each turn left out (caches cold after the other side ran; default {d.dropped_per_turn})",
        ),
        (
            "--warmup-rounds",
            positive_int("--warmup-rounds", 0),
            d.warmup_rounds,
            "N",
            f"untimed generations per case and worker (default {d.warmup_rounds})",
        ),
        (
            "--alpha",
            _number("--alpha", 1e-9, 0.5),
            d.alpha,
            "P",
            f"family-wise false-alarm rate of the regression verdict, Holm over the sweep (default {d.alpha:g})",
        ),
        (
            "--min-effect",
            as_argparse_type(_parse_min_effects, "--min-effect"),
            dict(d.min_effect_percent),
            "METRIC=PERCENT,...",
            "smallest change called faster/slower, per metric: "
            + ", ".join(f"{m}={p:g}" for m, p in d.min_effect_percent.items()),
        ),
        ("--seed", positive_int("--seed", 0), d.seed, "N", f"seed of the turn order (default {d.seed})"),
    ]


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("paired measurement (how long, how fine, how judged)")
    for option, parse, default, metavar, help_text in _engine_options():
        group.add_argument(option, type=parse, default=default, metavar=metavar, help=help_text)


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
