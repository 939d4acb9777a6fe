"""Validated, frozen descriptions of what to measure: decodings, cases and sweeps.

Nothing here imports Paddle: parsing and expanding a sweep is instant and pure.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

# Weight-only quantized dtypes (PaddleNLP's weight_quantize_algo) and the dtype they compute in.
QUANTIZED_DTYPES: dict[str, str] = {"weight_only_int8": "float16", "weight_only_int4": "float16"}
T = TypeVar("T")
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", *QUANTIZED_DTYPES)
# How the model's forward runs (runtime/modes.py converts it); a mode a build cannot run is skipped, probed.
MODES: dict[str, str] = {
    "eager": "eager generate(): the forward runs operator by operator (the default)",
    "to_static": "the forward converted by paddle.jit.to_static in AST mode (full_graph=True)",
    "sot": "the forward converted by paddle.jit.to_static in SOT mode (full_graph=False, Paddle 3's default)",
    "cinn": "AST to_static compiled by the CINN backend (a build with CINN)",
}


class ConfigError(ValueError):
    """A bad value from the command line, an ini file or the API; the message names it."""


@dataclass(frozen=True)
class Decoding:
    """A named decoding setting: PaddleNLP's ``decode_strategy`` plus its parameters."""

    name: str
    strategy: str
    settings: tuple[tuple[str, float | int], ...] = ()
    deterministic: bool = True

    def generate_kwargs(self) -> dict[str, Any]:
        return {"decode_strategy": self.strategy, **dict(self.settings)}


# The field report's sampling settings (docs/facts.md §1), greedy, and beam search with 4 beams.
DECODINGS: dict[str, Decoding] = {
    "greedy": Decoding("greedy", "greedy_search"),
    "sampling": Decoding(
        "sampling",
        "sampling",
        (("temperature", 0.2), ("top_k", 20), ("top_p", 0.9), ("repetition_penalty", 1.1)),
        deterministic=False,
    ),
    "beam4": Decoding("beam4", "beam_search", (("num_beams", 4),)),
}

MIN_ROUNDS = 5


class SweepDimension(NamedTuple):
    """One dimension of the sweep, as every front end names it: ``--llm-<option>`` for pytest (ini
    ``llm_<option with _>``), ``--<option>`` for the subcommands."""

    option: str
    field: str  # of Sweep
    help: str  # "{presets}" stands for the model presets, which the runtime layer knows

    def describe(self, presets: Iterable[str]) -> str:
        return self.help.replace("{presets}", f" ({', '.join(presets)})")


SWEEP_DIMENSIONS: tuple[SweepDimension, ...] = (
    SweepDimension("model", "models", "presets{presets}, local checkpoint directories, or hub:ORG/NAME"),
    SweepDimension("dtype", "dtypes", f"{', '.join(DTYPES)} (one the device cannot run is skipped, probed)"),
    SweepDimension("decoding", "decodings", f"{', '.join(DECODINGS)} (sampling: the field report's settings)"),
    SweepDimension(
        "mode", "modes", f"{', '.join(MODES)}: how the forward runs (a mode the build cannot run is skipped, probed)"
    ),
    SweepDimension("max-new-tokens", "max_new_tokens", "exact number of new tokens per sequence, e.g. 32,128"),
    SweepDimension("batch-size", "batch_sizes", "sequences per generate() call, e.g. 1,4"),
    SweepDimension("prompt-tokens", "prompt_tokens", "prompt length in tokens, e.g. 32,256"),
)


@dataclass(frozen=True)
class Case:
    """One point of the sweep: everything that changes what a generation costs."""

    model: str
    dtype: str
    decoding: str
    max_new_tokens: int
    batch_size: int
    prompt_tokens: int
    mode: str = "eager"

    def __post_init__(self) -> None:
        if self.mode not in MODES:  # a case can come from a file or a worker request, not only from a sweep
            raise ConfigError(f"unknown execution mode {self.mode!r}: allowed values are {', '.join(MODES)}")

    @property
    def id(self) -> str:
        mode = "" if self.mode == "eager" else f"-{self.mode}"  # eager ids stay as they were: baselines keep
        return (
            f"{model_label(self.model)}-{self.dtype}-{self.decoding}{mode}"
            f"-new{self.max_new_tokens}-bs{self.batch_size}-prompt{self.prompt_tokens}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


HUB_PREFIX = "hub:"


def model_label(model: str) -> str:
    """A preset's name, or the last part of a checkpoint directory's path or hub id."""
    return Path(model).name if ("/" in model or model.startswith(".")) else model


@dataclass(frozen=True)
class Sweep:
    """The cross product of every dimension; each tuple keeps the user's order."""

    models: tuple[str, ...]
    dtypes: tuple[str, ...]
    decodings: tuple[str, ...]
    max_new_tokens: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    prompt_tokens: tuple[int, ...]
    rounds: int = 10
    warmup_rounds: int = 2
    modes: tuple[str, ...] = ("eager",)

    def cases(self) -> list[Case]:
        """Cases grouped by (model, dtype) so that each model is loaded once per session."""
        return [
            Case(m, d, dec, n, b, p, mode)
            for m, d, dec, mode, n, b, p in itertools.product(
                self.models,
                self.dtypes,
                self.decodings,
                self.modes,
                self.max_new_tokens,
                self.batch_sizes,
                self.prompt_tokens,
            )
        ]


# Defaults fit the device: the CPU sweep takes minutes on 2 cores, the GPU sweep covers the
# field report's case (1.5B, float16, sampling, 200 new tokens, a short prompt) and more.
DEFAULT_SWEEPS: dict[str, dict[str, tuple[Any, ...]]] = {
    "cpu": {
        "models": ("tiny",),
        "dtypes": DTYPES,
        "decodings": tuple(DECODINGS),
        "max_new_tokens": (32, 128),
        "batch_sizes": (1, 4),
        "prompt_tokens": (32, 256),
    },
    "gpu": {
        "models": ("deepseek-r1-distill-qwen-1.5b",),
        "dtypes": ("float16", "bfloat16", "weight_only_int8", "weight_only_int4"),
        "decodings": tuple(DECODINGS),
        "max_new_tokens": (200,),
        "batch_sizes": (1, 8),
        "prompt_tokens": (16, 1024),
    },
}


def _split(text: str, source: str = "") -> list[str]:
    """Comma-separated items, stripped. An empty item between commas (``1,,2``, ``,1``) is an error, not
    silently dropped: it is usually a value lost in editing. One trailing comma is allowed."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        return []
    if not parts[-1]:
        parts.pop()
    if not all(parts):
        raise ConfigError(
            f"empty item in {text!r} from {source or 'a list'}: remove the extra comma or put the value in"
        )
    return parts


def parse_choices(text: str, allowed: tuple[str, ...] | list[str], source: str) -> tuple[str, ...]:
    """Parse ``"a,b"`` into values that must all be in ``allowed``."""
    values = _split(text, source)
    if not values:
        raise ConfigError(f"empty value from {source}: give one or more of {', '.join(allowed)}")
    for value in values:
        if value not in allowed:
            raise ConfigError(f"invalid value {value!r} from {source}: allowed values are {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


def parse_positive_ints(text: str, source: str, minimum: int = 1) -> tuple[int, ...]:
    """Parse ``"32,128"`` into integers >= ``minimum``."""
    values = _split(text, source)
    if not values:
        raise ConfigError(f"empty value from {source}: give one or more integers >= {minimum}")
    parsed = []
    for value in values:
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"invalid value {value!r} from {source}: expected an integer >= {minimum}") from None
        if number < minimum:
            raise ConfigError(f"invalid value {number} from {source}: must be >= {minimum}")
        parsed.append(number)
    return tuple(dict.fromkeys(parsed))


def parse_models(text: str, presets: tuple[str, ...], source: str) -> tuple[str, ...]:
    """Presets by name, or local checkpoint directories (checked when loaded)."""
    values = _split(text, source)
    if not values:
        raise ConfigError(f"empty value from {source}: give a preset ({', '.join(presets)}) or a directory")
    for value in values:
        looks_like_path = "/" in value or value.startswith(".") or Path(value).exists()
        if value not in presets and not looks_like_path and not value.startswith(HUB_PREFIX):
            raise ConfigError(
                f"unknown model {value!r} from {source}: use a preset ({', '.join(presets)}), "
                f"the path of a local checkpoint directory, or {HUB_PREFIX}ORG/NAME to download one"
            )
    return tuple(dict.fromkeys(values))


def parse_positive_int(text: str, source: str, minimum: int = 1) -> int:
    values = parse_positive_ints(text, source, minimum)
    if len(values) != 1:
        raise ConfigError(f"invalid value {text!r} from {source}: expected one integer >= {minimum}")
    return values[0]


def parse_sweep_dimension(dimension: str, text: str, source: str, presets: tuple[str, ...]) -> tuple[Any, ...]:
    """Parse one sweep dimension (a ``Sweep`` field name) given as comma-separated text."""
    if dimension == "models":
        return parse_models(text, presets, source)
    if dimension == "dtypes":
        return parse_choices(text, DTYPES, source)
    if dimension == "decodings":
        return parse_choices(text, tuple(DECODINGS), source)
    if dimension == "modes":
        return parse_choices(text, tuple(MODES), source)
    if dimension in ("max_new_tokens", "batch_sizes", "prompt_tokens"):
        return parse_positive_ints(text, source)
    raise ConfigError(f"unknown sweep dimension {dimension!r}")


def make_sweep(chosen: dict[str, tuple[Any, ...]], device_kind: str, rounds: int, warmup_rounds: int) -> Sweep:
    """The device's default sweep with the user's chosen dimensions put in."""
    if rounds < MIN_ROUNDS:
        raise ConfigError(f"invalid rounds {rounds}: at least {MIN_ROUNDS} measured rounds are needed for a spread")
    if warmup_rounds < 0:
        raise ConfigError(f"invalid warm-up rounds {warmup_rounds}: must be >= 0")
    sweep = Sweep(**{**DEFAULT_SWEEPS[device_kind], **chosen}, rounds=rounds, warmup_rounds=warmup_rounds)
    labels: dict[str, str] = {}
    for model in sweep.models:
        other = labels.setdefault(model_label(model), model)
        if other != model:
            raise ConfigError(
                f"models {other!r} and {model!r} would both be called {model_label(model)!r} in case ids and "
                "baselines: give the checkpoint directories distinct names (a symbolic link will do)"
            )
    return sweep


def parse_float(text: str, source: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"invalid value {text!r} from {source}: expected a number in [{low}, {high}]") from None
    if not low <= value <= high:
        raise ConfigError(f"invalid value {value} from {source}: must be within [{low}, {high}]")
    return value


def parse_min_effects(
    text: str, source: str, allowed: tuple[str, ...], defaults: Mapping[str, float]
) -> dict[str, float]:
    """``decode_tokens_per_s=5,ttft_ms=10`` -> the defaults with those replaced; METRIC must be ``allowed``."""
    effects = dict(defaults)
    for item in _split(text, source):
        metric, _, percent = item.partition("=")
        if metric not in allowed or not percent:
            raise ConfigError(
                f"invalid value {item!r} from {source}: expected METRIC=PERCENT with METRIC one of {', '.join(allowed)}"
            )
        effects[metric] = parse_float(percent, source, 0.0, 1000.0)
    return effects


def as_argparse_type(parse: Callable[[str, str], T], source: str) -> Callable[[str], T]:
    """One of this module's parsers as an argparse ``type=``: its ConfigError becomes argparse's error."""

    def convert(text: str) -> T:
        try:
            return parse(text, source)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert
