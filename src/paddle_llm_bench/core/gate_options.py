"""The gate's options, one set for every place that judges: ``pytest benchmarks`` (``--llm-gate-*``) and
the ``compare``, ``calibrate`` and ``baseline check`` subcommands (``--alpha``, ``--min-effect``, ...).

One table of options, one builder of ``GateSettings`` from their texts; errors name the option as the
user typed it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import NamedTuple

from paddle_llm_bench.core.config import parse_float, parse_min_effects
from paddle_llm_bench.core.gate import GateSettings
from paddle_llm_bench.core.metrics import baseline_metric_names

_DEFAULTS = GateSettings()


class GateOption(NamedTuple):
    field: str  # of GateSettings
    parse: Callable[[str, str], object]  # (text, the option's name as the user gave it) -> value
    metavar: str
    help: str


GATE_OPTIONS: dict[str, GateOption] = {  # by option suffix
    "alpha": GateOption(
        "alpha",
        lambda text, option: parse_float(text, option, 1e-9, 0.5),
        "ALPHA",
        f"family-wise false-alarm rate per run, Holm-corrected over all tests (default {_DEFAULTS.alpha})",
    ),
    "min-effect": GateOption(
        "min_effect_percent",
        lambda text, option: parse_min_effects(text, option, baseline_metric_names(), _DEFAULTS.min_effect_percent),
        "METRIC=PERCENT,...",
        "smallest change that counts, per metric in percent, e.g. decode_tokens_per_s=5,ttft_ms=10 (default "
        + ",".join(f"{m}={p:g}" for m, p in _DEFAULTS.min_effect_percent.items())
        + f"); metrics: {', '.join(baseline_metric_names())} (the ones baselines store)",
    ),
    "noise-floor": GateOption(
        "noise_floor_percent",
        lambda text, option: parse_float(text, option, 0.0, 100.0),
        "PERCENT",
        f"run-to-run noise assumed at least, in percent (default {_DEFAULTS.noise_floor_percent:g})",
    ),
    "max-cv": GateOption(
        "max_cv_percent",
        lambda text, option: parse_float(text, option, 0.0, 1000.0),
        "PERCENT",
        f"a case whose CV across rounds exceeds this percentage is inconclusive (default {_DEFAULTS.max_cv_percent:g})",
    ),
}


def gate_settings(texts: Mapping[str, tuple[str | None, str]]) -> GateSettings:
    """GateSettings from ``{suffix: (text, where it came from)}``; a None text keeps the default. Errors name
    the option as its source says (``--llm-gate-alpha``, an ini key, ``--alpha``)."""
    values = {}
    for suffix, (text, source) in texts.items():
        if text is not None:
            option = GATE_OPTIONS[suffix]
            values[option.field] = option.parse(text, source)
    return GateSettings(**values)  # type: ignore[arg-type]


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """``--alpha``, ``--min-effect``, ``--noise-floor``, ``--max-cv`` for a subcommand; read them back with
    ``gate_settings_from_args``."""
    group = parser.add_argument_group("gate")
    for suffix, option in GATE_OPTIONS.items():
        group.add_argument(
            f"--{suffix}", dest=f"gate_{suffix.replace('-', '_')}", metavar=option.metavar, help=option.help
        )


def gate_settings_from_args(args: argparse.Namespace) -> GateSettings:
    """The subcommand's gate settings; ConfigError (naming the option) for a bad value."""
    return gate_settings(
        {suffix: (getattr(args, f"gate_{suffix.replace('-', '_')}"), f"--{suffix}") for suffix in GATE_OPTIONS}
    )
