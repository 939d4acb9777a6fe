"""The paired engine's options: one table for every command that measures paired (``paired``, ``versions``,
``overhead``: ``--pairs-per-block``...) and for pytest's ``--llm-reference`` stage (``--llm-paired-pairs-per-block``
..., or ini ``llm_paired_pairs_per_block``): the same names, defaults, parsers and help, and errors that name the
option as the user gave it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from typing import Any, NamedTuple

from paddle_llm_bench.core.config import (
    ConfigError,
    as_argparse_type,
    parse_float,
    parse_min_effects,
    parse_positive_int,
)
from paddle_llm_bench.core.metrics import paired_metric_names
from paddle_llm_bench.paired.results import MIN_VERDICT_BLOCKS, PairedSettings

DEFAULTS = PairedSettings()


def positive_int(option: str, minimum: int = 1) -> Callable[[str], int]:
    return as_argparse_type(lambda text, source: parse_positive_int(text, source, minimum), option)


class PairedOption(NamedTuple):
    field: str  # of PairedSettings
    parse: Callable[[str, str], Any]  # (text, the option's name as the user gave it) -> value
    metavar: str
    help: str


def _int(minimum: int) -> Callable[[str, str], int]:
    return lambda text, source: parse_positive_int(text, source, minimum)


def _number(low: float, high: float) -> Callable[[str, str], float]:
    return lambda text, source: parse_float(text, source, low, high)


d = DEFAULTS
PAIRED_OPTIONS: dict[str, PairedOption] = {  # by option suffix
    "pairs-per-block": PairedOption(
        "pairs_per_block",
        _int(2),
        "N",
        f"most pairs of turns per block of fresh worker processes (default {d.pairs_per_block}; a case with long "
        "rounds gets fewer, so its minimum blocks fit its budget)",
    ),
    "min-blocks": PairedOption(
        "min_blocks",
        _int(2),
        "N",
        f"blocks before a case may stop on precision, and before any verdict (at least {MIN_VERDICT_BLOCKS}; "
        f"default {d.min_blocks})",
    ),
    "max-blocks": PairedOption("max_blocks", _int(2), "N", f"most blocks per case (default {d.max_blocks})"),
    "target-half-width": PairedOption(
        "target_half_width_percent",
        _number(0.01, 100.0),
        "PERCENT",
        "a case stops once its decode tok/s interval (the reported one) has a half-width of at most this "
        f"(default {d.target_half_width_percent:g} %%)",
    ),
    "case-budget-s": PairedOption(
        "case_budget_s",
        _number(1.0, 1e6),
        "SECONDS",
        f"measuring time per case after which no block is added (default {d.case_budget_s:g})",
    ),
    "follow-up-blocks": PairedOption(
        "follow_up_blocks",
        _int(0),
        "N",
        "blocks more for a case that stops as a suspect slowdown (slower by its own interval, not yet after Holm), "
        f"within one more case budget; its verdict reads every block (0: none; default {d.follow_up_blocks})",
    ),
    "rounds-per-turn": PairedOption(
        "rounds_per_turn", _int(1), "N", f"generations per turn (default {d.rounds_per_turn})"
    ),
    "dropped-per-turn": PairedOption(
        "dropped_per_turn",
        _int(0),
        "N",
        f"first rounds of each turn left out (caches cold after the other side ran; default {d.dropped_per_turn})",
    ),
    "warmup-rounds": PairedOption(
        "warmup_rounds", _int(0), "N", f"untimed generations per case and worker (default {d.warmup_rounds})"
    ),
    "alpha": PairedOption(
        "alpha",
        _number(1e-9, 0.5),
        "ALPHA",
        "chance of any spurious faster/slower (and regression) verdict in a run: Holm over its speed tests "
        f"(default {d.alpha:g})",
    ),
    "min-effect": PairedOption(
        "min_effect_percent",
        lambda text, source: parse_min_effects(text, source, paired_metric_names(), DEFAULTS.min_effect_percent),
        "METRIC=PERCENT,...",
        "smallest change called faster/slower, per metric: "
        + ", ".join(f"{m}={p:g}" for m, p in d.min_effect_percent.items()),
    ),
    "seed": PairedOption("seed", _int(0), "N", f"seed of the turn order (default {d.seed})"),
}
del d


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("paired measurement (how long, how fine, how judged)")
    for suffix, option in PAIRED_OPTIONS.items():
        group.add_argument(
            f"--{suffix}",
            dest=_dest(suffix),
            type=as_argparse_type(option.parse, f"--{suffix}"),
            default=None,
            metavar=option.metavar,
            help=option.help,
        )


def _dest(suffix: str) -> str:
    return "paired_" + suffix.replace("-", "_")


def paired_settings(texts: Mapping[str, tuple[str | None, str]], prefix: str = "--", **fixed: Any) -> PairedSettings:
    """PairedSettings from ``{suffix: (text, where it came from)}`` (None keeps the default) and ``fixed``
    fields; a bad value or an inconsistent combination is a ConfigError naming the options (``prefix`` + suffix)."""
    values = {}
    for suffix, (text, source) in texts.items():
        if text is not None:
            values[PAIRED_OPTIONS[suffix].field] = PAIRED_OPTIONS[suffix].parse(text, source)
    return _settings({**values, **fixed}, prefix)


def settings_from_args(args: argparse.Namespace, device: str, max_positions: int | None) -> PairedSettings:
    """The subcommand's PairedSettings (its options were parsed by argparse already)."""
    values = {
        option.field: getattr(args, _dest(suffix))
        for suffix, option in PAIRED_OPTIONS.items()
        if getattr(args, _dest(suffix)) is not None
    }
    return _settings({**values, "device": device, "max_positions": max_positions}, "--")


def _settings(values: dict[str, Any], prefix: str) -> PairedSettings:
    merged = {f.name: getattr(DEFAULTS, f.name) for f in fields(PairedSettings)} | values
    if merged["dropped_per_turn"] >= merged["rounds_per_turn"]:
        raise ConfigError(
            f"{prefix}dropped-per-turn {merged['dropped_per_turn']} must be below "
            f"{prefix}rounds-per-turn {merged['rounds_per_turn']}"
        )
    if merged["max_blocks"] < merged["min_blocks"]:
        raise ConfigError(
            f"{prefix}max-blocks {merged['max_blocks']} must be at least {prefix}min-blocks {merged['min_blocks']}"
        )
    return replace(DEFAULTS, **values)
