"""The pytest options of the suite (``--llm-*`` and their ini names), and the run's options read from them.

Every option is checked when pytest is configured, before Paddle is imported or anything is measured: a bad
value fails the run at once, naming the value, where it came from (command line or ini file) and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench.core.config import (
    MIN_ROUNDS,
    SWEEP_DIMENSIONS,
    ConfigError,
    SweepDimension,
    parse_positive_int,
    parse_sweep_dimension,
)
from paddle_llm_bench.core.gate_options import GATE_OPTIONS, gate_settings
from paddle_llm_bench.paired.options import PAIRED_OPTIONS
from paddle_llm_bench.paired.options import paired_settings as options_paired_settings
from paddle_llm_bench.paired.results import PairedSettings
from paddle_llm_bench.results.baselines import BaselineError, load_saved_run
from paddle_llm_bench.results.files import describe_os_error
from paddle_llm_bench.runtime.device import DEVICE_CHOICES
from paddle_llm_bench.runtime.models import PRESETS
from paddle_llm_bench.runtime.shard import parse_shard
from paddle_llm_bench.session import RunOptions

# (option suffix, metavar, help)
SETTING_OPTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "shard",
        "K/N",
        "run only shard K of N, e.g. 2/4: the sweep split deterministically, balanced by expected cost, "
        "across N runners; combine their saved runs with `paddle-llm-bench merge`",
    ),
    ("rounds", "N", "measured rounds per case (>= 5; default 10)"),
    ("warmup-rounds", "N", "untimed rounds before measuring (default 2)"),
    ("device", "DEVICE", f"{', '.join(DEVICE_CHOICES)} (default auto: the GPU if Paddle has CUDA and sees one)"),
    (
        "cache-dir",
        "DIR",
        "where synthetic checkpoints are built (default ./.cache/paddle-llm-bench or $PADDLE_LLM_BENCH_CACHE)",
    ),
    (
        "max-positions",
        "N",
        "cap on max_position_embeddings, i.e. on precomputed RoPE caches (default 4096; 0 keeps the model's)",
    ),
)
FLAG_OPTIONS: tuple[tuple[str, str], ...] = (
    ("profile", "after each case's timed rounds, profile one extra round per operator (saved in extra_info)"),
    ("baseline-update", "merge this run into baselines/ (the last 5 runs per case are kept); regressions do not fail"),
    ("require-baseline", "fail when a case has no baseline for this hardware (default: report it)"),
    ("no-gate", "do not compare against baselines"),
)
BASELINE_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("baseline-dir", "DIR", "directory of baseline files, one per hardware fingerprint (default: baselines)"),
    ("baseline-from", "RUN_JSON", "use this saved pytest-benchmark run (.benchmarks/.../NNNN_*.json) as the reference"),
    *((f"gate-{suffix}", option.metavar, option.help) for suffix, option in GATE_OPTIONS.items()),
    (
        "reference",
        "VERSION_OR_PYTHON",
        "after the sweep, measure every case interleaved (paired, in fresh worker processes) against this reference: "
        "a Paddle version (its environment is made once, cached) or a Python with Paddle and this project; a case "
        "confirmed slower (Holm over the sweep) or bigger fails the run",
    ),
)
# The paired engine's options for the --llm-reference stage: --llm-paired-<the `paired` command's option>.
PAIRED_HELP: tuple[tuple[str, str, str], ...] = tuple(
    (f"paired-{suffix}", option.metavar, f"with --llm-reference: {option.help}")
    for suffix, option in PAIRED_OPTIONS.items()
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("paddle-llm-bench", "LLM generation benchmarks (paddle-llm-bench)")
    for dimension in SWEEP_DIMENSIONS:
        name, help_text = dest(dimension.option), _sweep_help(dimension)
        group.addoption(f"--llm-{dimension.option}", dest=name, default=None, metavar="LIST", help=help_text)
        # "linelist": a TOML list (pyproject.toml) or comma-separated text over one or more lines.
        parser.addini(name, help_text, type="linelist", default=None)  # None: not set
    for suffix, help_text in FLAG_OPTIONS:
        group.addoption(f"--llm-{suffix}", dest=dest(suffix), action="store_true", default=False, help=help_text)
    for suffix, metavar, help_text in (*SETTING_OPTIONS, *BASELINE_OPTIONS, *PAIRED_HELP):
        group.addoption(f"--llm-{suffix}", dest=dest(suffix), default=None, metavar=metavar, help=help_text)
        parser.addini(dest(suffix), help_text, default=None)


def _sweep_help(dimension: SweepDimension) -> str:
    return f"{dimension.describe(PRESETS)}. Comma-separated; default: the device's sweep."


def dest(suffix: str) -> str:
    """The option's destination, which is also its ini name: ``max-new-tokens`` -> ``llm_max_new_tokens``."""
    return "llm_" + suffix.replace("-", "_")


def raw(config: pytest.Config, suffix: str) -> tuple[str | None, str]:
    """The option's text and where it came from: the command line wins over the ini file."""
    value = config.getoption(dest(suffix))
    if value is not None:
        return str(value), f"--llm-{suffix}"
    ini_value = config.getini(dest(suffix))
    if ini_value is None:  # not in the ini file
        return None, ""
    source = f"ini option {dest(suffix)}"
    if isinstance(ini_value, list):  # a list option: TOML list items or ini lines, each may hold commas
        items = [str(item).strip().rstrip(",").strip() for item in ini_value]  # a line may end with a comma
        if "" in items:
            raise ConfigError(f"empty item in {ini_value!r} from {source}: remove it or put the value in")
        ini_value = ",".join(items)
    if not str(ini_value).strip():  # set to nothing: never read as "the defaults"
        raise ConfigError(f"empty value from {source}: give a value, or remove the line to use the default")
    return str(ini_value), source


def run_options(config: pytest.Config) -> RunOptions:
    """Every --llm-* option, checked; ConfigError names the bad value, where it came from and the fix."""
    chosen: dict[str, tuple[Any, ...]] = {}
    settings: dict[str, str] = {}
    for dimension in SWEEP_DIMENSIONS:
        text, source = raw(config, dimension.option)
        if text is not None:
            chosen[dimension.field] = parse_sweep_dimension(dimension.field, text, source, tuple(PRESETS))
    for suffix, _metavar, _help in SETTING_OPTIONS:
        text, source = raw(config, suffix)
        if text is not None:
            settings[suffix] = text
            _check_setting(suffix, text, source)
    gate = gate_settings({suffix: raw(config, f"gate-{suffix}") for suffix in GATE_OPTIONS})
    baseline_from = _check_baseline_from(config)
    baseline_dir = _baseline_dir(config)
    _check_benchmark_json(config.getoption("benchmark_json", None))
    return RunOptions(
        chosen,
        settings,
        gate,
        paired_settings(config),
        baseline_dir,
        baseline_from,
        no_gate=bool(config.getoption("llm_no_gate")),
        baseline_update=bool(config.getoption("llm_baseline_update")),
        require_baseline=bool(config.getoption("llm_require_baseline")),
        profile=bool(config.getoption("llm_profile")),
    )


def paired_settings(config: pytest.Config) -> PairedSettings:
    """The --llm-paired-* options (the paired engine's own table) over its defaults; errors name the option."""
    texts = {suffix: raw(config, f"paired-{suffix}") for suffix in PAIRED_OPTIONS}
    return options_paired_settings(texts, prefix="--llm-paired-")


def _check_baseline_from(config: pytest.Config) -> Path | None:
    """--llm-baseline-from is read before the sweep, not after it."""
    reference, source = raw(config, "baseline-from")
    if reference is None:
        return None
    try:
        fingerprint, by_case, _facts = load_saved_run(Path(reference))
    except BaselineError as error:
        raise ConfigError(f"invalid value {reference!r} from {source}: {error}") from None
    if not fingerprint or not by_case:
        raise ConfigError(
            f"invalid value {reference!r} from {source}: it holds no paddle-llm-bench results "
            "(no machine_info.paddle_llm_bench or no case): name a run saved by this suite"
        )
    return Path(reference)


def _baseline_dir(config: pytest.Config) -> Path:
    """--llm-baseline-dir (or the ini option), else ``baselines/`` beside the rootdir; it must exist unless this
    run creates it (--llm-baseline-update)."""
    directory, source = raw(config, "baseline-dir")
    if directory is None:
        return Path(config.rootpath) / "baselines"
    if not Path(directory).is_dir() and not config.getoption("llm_baseline_update"):
        raise ConfigError(
            f"invalid value {directory!r} from {source}: no such folder, so nothing could be compared. "
            "Name the folder holding the baseline files (only --llm-baseline-update creates a new one)"
        )
    return Path(directory)


def _check_setting(suffix: str, text: str, source: str) -> None:
    if suffix == "rounds":
        parse_positive_int(text, source, minimum=MIN_ROUNDS)
    elif suffix in ("warmup-rounds", "max-positions"):
        parse_positive_int(text, source, minimum=0)
    elif suffix == "shard":
        parse_shard(text, source)
    elif suffix == "device" and text not in DEVICE_CHOICES:
        raise ConfigError(f"invalid value {text!r} from {source}: allowed values are {', '.join(DEVICE_CHOICES)}")
    elif suffix == "cache-dir":
        _check_writable_folder(Path(text).expanduser(), source)


def _check_benchmark_json(path: Path | None) -> None:
    """pytest-benchmark's --benchmark-json names a file: a folder there would fail only after the sweep."""
    if path is not None and Path(path).is_dir():
        raise ConfigError(
            f"invalid value {str(path)!r} from --benchmark-json: it is a folder; name the JSON file to write, "
            f"e.g. {Path(path) / 'run.json'}"
        )


def _check_writable_folder(folder: Path, source: str) -> None:
    """``folder`` exists (made if missing) and can be written, before anything is measured into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
    except OSError as error:
        raise ConfigError(
            f"invalid value {str(folder)!r} from {source}: cannot write there ({describe_os_error(error)}); "
            "name a folder you can write (it is made if missing)"
        ) from None
