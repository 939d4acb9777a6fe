"""`paddle-llm-bench calibrate`: how often the gate cries wolf, and how often it catches a slowdown.

From several saved runs of the same sweep recorded on this machine (separate processes, so the
noise between runs is real), each trial takes one run as "now", another as its re-measurement and
``k`` others as the baseline, optionally slows "now" and its re-measurement down by a known factor
(every timing × (1+s): decode tok/s ÷ (1+s)), and applies the gate exactly as a run would.

- false-alarm rate: the share of A/A trials in which *any* case of the sweep fails.
- detection rate at s: the share of (trial, case) pairs in which that case, slowed down alone,
  fails on decode tok/s.

The same trials are scored for pytest-benchmark's ``--benchmark-compare-fail=median:5%``:
a case fails if its median round time exceeds the latest stored run's by more than 5 %.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from paddle_llm_bench.analysis.report import aligned_table
from paddle_llm_bench.core.config import ConfigError, as_argparse_type, parse_positive_int
from paddle_llm_bench.core.exit_status import ExitStatus
from paddle_llm_bench.core.gate import CaseMeasurement, GateSettings, judge_confirmed
from paddle_llm_bench.core.gate_options import add_gate_arguments, gate_settings_from_args
from paddle_llm_bench.results.baselines import BaselineError, load_saved_run

SLOWDOWNS_PERCENT = (5.0, 10.0, 20.0)
PYTEST_BENCHMARK_THRESHOLD_PERCENT = 5.0


@dataclass(frozen=True)
class Run:
    """One recorded run: per case, per-round samples of decode tok/s, TTFT and round time."""

    name: str
    decode_tokens_per_s: Mapping[str, Sequence[float]]
    ttft_ms: Mapping[str, Sequence[float]]
    e2e_ms: Mapping[str, Sequence[float]]
    started: str = ""  # when it was measured (ISO 8601): the gate's sessions

    def measurement(self, case_id: str, slowdown: float = 0.0) -> CaseMeasurement:
        factor = 1.0 + slowdown
        return CaseMeasurement(
            case_id,
            {
                "decode_tokens_per_s": [v / factor for v in self.decode_tokens_per_s[case_id]],
                "ttft_ms": [v * factor for v in self.ttft_ms[case_id]],
            },
            {},
            started=self.started,
        )


def run_from_saved(path: Path) -> Run:
    _fingerprint, by_case, facts = load_saved_run(path)
    samples = {case_id: record.samples for case_id, record in by_case.items()}
    return Run(
        path.stem,
        {c: s["decode_tokens_per_s"] for c, s in samples.items()},
        {c: s["ttft_ms"] for c, s in samples.items()},
        {c: s["e2e_ms"] for c, s in samples.items()},
        facts.run_started,
    )


@dataclass(frozen=True)
class Trial:
    current: Run
    remeasure: Run
    baseline: tuple[Run, ...]


def trials(runs: Sequence[Run], baseline_runs: int, limit: int, seed: int) -> list[Trial]:
    """Every (now, re-measurement, k baseline runs) choice of distinct runs, sampled down to ``limit``."""
    if len(runs) < baseline_runs + 2:
        raise ValueError(
            f"need at least {baseline_runs + 2} recorded runs for {baseline_runs} baseline run(s), got {len(runs)}"
        )
    every = [
        Trial(runs[c], runs[r], tuple(runs[b] for b in base))
        for c, r in itertools.permutations(range(len(runs)), 2)
        for base in itertools.combinations([i for i in range(len(runs)) if i not in (c, r)], baseline_runs)
    ]
    random.Random(seed).shuffle(every)
    return every[:limit]


def gate_fails(
    trial: Trial, cases: Sequence[str], slowed: str | None, slowdown: float, settings: GateSettings
) -> set[str]:
    """Cases the gate fails (after re-measurement) when case ``slowed`` (or every case, if None) is slowed down."""

    def factor(case_id: str) -> float:
        return slowdown if slowed is None or case_id == slowed else 0.0

    current = {c: trial.current.measurement(c, factor(c)) for c in cases}
    baseline = {c: [run.measurement(c) for run in trial.baseline] for c in cases}
    verdicts = judge_confirmed(
        current, baseline, settings, lambda case_id: trial.remeasure.measurement(case_id, factor(case_id))
    )
    return {v.case_id for v in verdicts if v.regression and (slowed is None or v.metric == "decode_tokens_per_s")}


def pytest_benchmark_fails(trial: Trial, case_id: str, slowdown: float) -> bool:
    """``--benchmark-compare-fail=median:5%`` against the latest stored run (one run, no statistics)."""
    reference = statistics.median(trial.baseline[-1].e2e_ms[case_id])
    now = statistics.median(trial.current.e2e_ms[case_id]) * (1.0 + slowdown)
    return now > reference * (1.0 + PYTEST_BENCHMARK_THRESHOLD_PERCENT / 100.0)


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    center = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, center - half), min(1.0, center + half))


@dataclass(frozen=True)
class Count:
    """How many of ``total`` trials (or trial and case pairs) failed."""

    failed: int
    total: int

    def text(self) -> str:
        low, high = wilson_interval(self.failed, self.total)
        return f"{100 * self.failed / self.total:.1f}% [{100 * low:.1f}-{100 * high:.1f}] of {self.total}"


@dataclass(frozen=True)
class GateAgainstPytestBenchmark:
    gate: Count
    pytest_benchmark_median_5: Count


@dataclass(frozen=True)
class CalibrationRates:
    runs: int
    cases: int
    trials: int
    baseline_runs: int
    false_alarm: GateAgainstPytestBenchmark  # trials in which any case failed, nothing slowed
    detected: dict[float, GateAgainstPytestBenchmark]  # by slowdown in percent: (trial, case) pairs caught


def calibrate(
    runs: Sequence[Run], settings: GateSettings, baseline_runs: int = 3, limit: int = 200, seed: int = 0
) -> CalibrationRates:
    """Rates for the gate and for pytest-benchmark's median:5 %, on the same trials."""
    cases = sorted(set.intersection(*(set(run.decode_tokens_per_s) for run in runs)))
    if not cases:
        raise ValueError("the recorded runs share no case")
    chosen = trials(runs, baseline_runs, limit, seed)
    gate_alarms = sum(1 for t in chosen if gate_fails(t, cases, None, 0.0, settings))
    pb_alarms = sum(1 for t in chosen if any(pytest_benchmark_fails(t, c, 0.0) for c in cases))
    detected = {}
    for percent in SLOWDOWNS_PERCENT:
        s = percent / 100.0
        caught = sum(1 for t in chosen for c in cases if c in gate_fails(t, cases, c, s, settings))
        caught_pb = sum(1 for t in chosen for c in cases if pytest_benchmark_fails(t, c, s))
        total = len(chosen) * len(cases)
        detected[percent] = GateAgainstPytestBenchmark(Count(caught, total), Count(caught_pb, total))
    false_alarm = GateAgainstPytestBenchmark(Count(gate_alarms, len(chosen)), Count(pb_alarms, len(chosen)))
    return CalibrationRates(len(runs), len(cases), len(chosen), baseline_runs, false_alarm, detected)


def render(rates: CalibrationRates) -> list[str]:
    def row(label: str, pair: GateAgainstPytestBenchmark) -> list[str]:
        return [label, pair.gate.text(), pair.pytest_benchmark_median_5.text()]

    rows = [row("false alarms per run (A/A)", rates.false_alarm)]
    rows += [row(f"{percent:g}% slowdown caught (per case)", pair) for percent, pair in rates.detected.items()]
    header = ["", "paddle-llm-bench gate", "pytest-benchmark median:5%"]
    intro = (
        f"{rates.runs} recorded runs, {rates.cases} cases, {rates.trials} trials "
        f"(now + re-measurement + {rates.baseline_runs} baseline runs, all distinct); 95% Wilson intervals"
    )
    return [intro, *aligned_table(header, rows)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="saved runs of the same sweep on this machine (>= 5)")

    def at_least_1(option: str) -> Callable[[str], int]:
        return as_argparse_type(lambda text, source: parse_positive_int(text, source, 1), option)

    parser.add_argument("--baseline-runs", type=at_least_1("--baseline-runs"), default=3, help="per trial (default 3)")
    parser.add_argument("--trials", type=at_least_1("--trials"), default=200, help="at most (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    add_gate_arguments(parser)


def main(args: argparse.Namespace) -> int:
    try:
        runs = [run_from_saved(path) for path in args.runs]
        settings = gate_settings_from_args(args)
        rates = calibrate(runs, settings, args.baseline_runs, args.trials, args.seed)
    except (BaselineError, ConfigError, ValueError, KeyError) as error:
        print(f"error: {error}")
        return ExitStatus.USAGE_ERROR
    print("\n".join(render(rates)))
    return 0
