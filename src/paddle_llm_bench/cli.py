"""`paddle-llm-bench SUBCOMMAND ...`: each subcommand lives in its own module.

A subcommand module exposes ``add_arguments(parser)`` and ``main(args) -> int``; its one-line help is in ``HELPS``.
Modules are imported only when their subcommand runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn

from paddle_llm_bench.core.exit_status import ExitStatus

# subcommand -> module (inside this package)
SUBCOMMANDS: dict[str, str] = {
    "compare": "compare_cli",
    "versions": "envs.versions",
    "baseline": "baseline_cli",
    "calibrate": "analysis.calibration",
    "overhead": "envs.overhead",
    "paired": "paired.command",
    "merge": "results.merge",
    "doctor": "doctor_cli",
    "simulate": "simulate_cli",
    "nightly": "nightly",
}
HELPS: dict[str, str] = {
    "compare": "compare saved runs: per case medians, ratios and verdicts (table, Markdown, CSV, JSON, plots)",
    "versions": "run the suite under several Paddle versions in isolated environments and compare them",
    "baseline": "merge a saved run into baselines/ (what --llm-baseline-update does at the end of a run)",
    "calibrate": "false-alarm and detection rates of the gate, from recorded runs of this machine",
    "paired": "measure a sweep interleaved in two Pythons (A/B), with a paired interval per case",
    "overhead": "what measuring costs: the suite's tok/s ÷ a bare generate() loop's, paired in fresh processes",
    "merge": "combine the saved runs of several shards into one run",
    "doctor": "self-check of the measuring setup: synchronization, memory probes, GPU state",
    "simulate": "coverage, false alarms and power of both gates, by seeded simulation of known noise",
    "nightly": "the nightly regression job: plan, shard, judge, record (history kept by the job itself)",
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with this project's exit status for bad input (4, as pytest's), not argparse's 2 (a stop here),
    and, as pytest, no abbreviated options (`--max-block` is not `--max-blocks`: a typo, not a shorthand)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitStatus.USAGE_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paddle-llm-bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name in SUBCOMMANDS:
        commands.add_parser(name, help=HELPS[name], add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints usage and exits for --help, unknown or missing subcommands
        return ExitStatus.USAGE_ERROR
    # Paddle's and PaddleNLP's import-time chatter, which would bury the command's output.
    warnings.filterwarnings("ignore", message="No ccache found")
    warnings.filterwarnings("ignore", message="(?s).*is deprecated since")
    module, args = parse_subcommand(argv[0], argv[1:])
    return int(module.main(args))


def parse_subcommand(name: str, rest: Sequence[str]) -> tuple[ModuleType, argparse.Namespace]:
    """The subcommand's module and its parsed arguments; bad input exits 4 with argparse's message."""
    module = importlib.import_module(f"{__package__}.{SUBCOMMANDS[name]}")
    sub = ArgumentParser(prog=f"paddle-llm-bench {name}", description=HELPS[name])
    module.add_arguments(sub)
    return module, sub.parse_args(list(rest))


if __name__ == "__main__":
    sys.exit(main())
