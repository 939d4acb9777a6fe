"""`paddle-llm-bench simulate`: how honest and how sharp both gates are, by seeded simulation.

Runs the real verdict code on synthetic measurements of known noise and effect and prints two tables:
the paired engine (interval coverage, sweeps with any spurious faster/slower, false regressions, the
share of 5 % slowdowns caught, blocks and simulated measuring time) and the stored-baseline gate (false
alarms per sweep and 20 % slowdowns caught, for every baseline shape, on this VM's noise and on
dedicated hardware's). Progress goes to stderr; the tables to stdout. docs/verdicts.md's figures are its output.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from paddle_llm_bench.analysis.gate_simulation import NOISES, SHAPES, gate_rates
from paddle_llm_bench.analysis.report import aligned_table
from paddle_llm_bench.core.config import as_argparse_type, parse_positive_int
from paddle_llm_bench.paired.simulation import SCENARIOS, rates
from paddle_llm_bench.runtime import progress

PARTS = ("paired", "gate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    count = as_argparse_type(lambda text, source: parse_positive_int(text, source, 1), "--sweeps")
    seed = as_argparse_type(lambda text, source: parse_positive_int(text, source, 0), "--seed")
    parser.add_argument("--sweeps", type=count, default=200, metavar="N", help="simulated sweeps per row (200)")
    parser.add_argument("--seed", type=seed, default=0, metavar="N", help="random seed (0)")
    parser.add_argument("--only", choices=PARTS, help="simulate one gate only")
    parser.add_argument(
        "--scenario", choices=tuple(SCENARIOS), action="append", help="paired scenarios to run (default: all)"
    )


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()

    def say(message: str) -> None:
        progress.say(f"{time.monotonic() - started:5.0f} s: {message}", "simulate")

    if args.only in (None, "paired"):
        print(paired_table(args.scenario or list(SCENARIOS), args.sweeps, args.seed, say))
    if args.only in (None, "gate"):
        print(gate_table(args.sweeps, args.seed, say))
    return 0


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def paired_table(names: list[str], sweeps: int, seed: int, say: Callable[[str], None]) -> str:
    rows = []
    for name in names:
        scenario = SCENARIOS[name]()
        say(f"paired: {scenario.name}, {sweeps} no-change and {sweeps} slowed sweeps")
        r = rates(scenario, sweeps, seed)
        rows.append(
            [
                r.scenario,
                _percent(r.coverage),
                _percent(r.worst_case_coverage),
                _percent(r.spurious_sweeps),
                _percent(r.false_regression_sweeps),
                _percent(r.power),
                f"{r.mean_blocks:.1f}",
                f"{r.mean_minutes:.0f}",
                "n/a" if r.mean_minutes_slowed is None else f"{r.mean_minutes_slowed:.0f}",
            ]
        )
    header = [
        "paired scenario",
        "coverage",
        "worst case",
        "sweeps w/ spurious faster/slower",
        "false regression",
        "5 % caught",
        "blocks",
        "minutes",
        "minutes, 5 % slowed",
    ]
    note = (
        f"{sweeps} simulated sweeps per row (seed {seed}); coverage of the reported 95 % decode interval over the "
        "no-change cases (worst case: the case that covered least); 5 % caught: one case slowed 5 %, called a "
        "regression (after its follow-up blocks); minutes: simulated measuring time of a no-change sweep, and of a "
        "sweep with the slowed case"
    )
    return "\n".join([*aligned_table(header, rows), note, ""])


def gate_table(sweeps: int, seed: int, say: Callable[[str], None]) -> str:
    rows = []
    for noise in NOISES.values():
        for shape in SHAPES:
            say(f"stored gate: {noise.name}, {shape.name}")
            r = gate_rates(noise, shape, sweeps, seed)
            rows.append([noise.name, shape.name, _percent(r.false_alarm_sweeps), _percent(r.power)])
    note = (
        f"{sweeps} simulated 24-case sweeps per row (seed {seed}); false alarms: no-change sweeps with any "
        "regression after re-measurement; 20 % caught: one case slowed 20 %"
    )
    header = ["noise", "baseline", "false alarms per sweep", "20 % caught"]
    return "\n".join([*aligned_table(header, rows), note, ""])
