"""Seeded Monte Carlo of the stored-baseline gate: false alarms per sweep and power, for every shape of
baseline, by running the real ``gate.judge_confirmed`` on synthetic runs of known noise. Pure.

A run of a case is ``rounds`` per-round values in log space: the machine's state that day (shared by
every run of the day), that run's own offset (process luck, the machine's regime), and per-round noise
that moves in regimes (AR(1), so rounds are not independent). Part of each offset is shared by every
case of the run (a slower machine slows every case). ``paddle-llm-bench simulate`` prints the tables
docs/verdicts.md quotes; tests/test_simulation.py checks them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from paddle_llm_bench.core.gate import CaseMeasurement, GateSettings, judge_confirmed

METRICS = ("decode_tokens_per_s", "ttft_ms")
EPOCH = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class GateNoise:
    """Noise of one machine, log scale: per round (AR(1) with ``rho``), per run, per day; ``shared`` is the part
    of the run and day offsets every case of a run has in common."""

    name: str
    round_sd: float
    rho: float
    run_sd: float
    day_sd: float
    shared: float = 0.7


THIS_VM = GateNoise("this VM", round_sd=0.08, rho=0.6, run_sd=0.08, day_sd=0.15)
DEDICATED = GateNoise("dedicated hardware", round_sd=0.02, rho=0.3, run_sd=0.03, day_sd=0.02)
NOISES = {"vm": THIS_VM, "dedicated": DEDICATED}


@dataclass(frozen=True)
class Shape:
    """A baseline's shape: how many runs, of how many days, and whether this run is measured on a later day."""

    name: str
    days: int
    runs_per_day: int
    later_day: bool


SHAPES = (
    Shape("one run, this run the same day", 1, 1, False),
    Shape("5 runs of one day, this run the same day", 1, 5, False),
    Shape("5 runs of one day, this run a later day", 1, 5, True),
    Shape("5 nights, this run a new night", 5, 1, True),
    Shape("10 nights, this run a new night", 10, 1, True),
)


class _Machine:
    """Draws runs: day offsets, run offsets and AR(1) rounds, part shared across the cases of a run."""

    def __init__(self, noise: GateNoise, cases: int, rng: random.Random) -> None:
        self.noise, self.cases, self.rng = noise, cases, rng
        self.days: dict[int, list[float]] = {}

    def _offsets(self, sd: float) -> list[float]:
        common = self.rng.gauss(0.0, sd * math.sqrt(self.noise.shared))
        own = sd * math.sqrt(1.0 - self.noise.shared)
        return [common + self.rng.gauss(0.0, own) for _ in range(self.cases)]

    def run(self, day: int, hour: float, slowed: dict[int, float], rounds: int) -> dict[str, CaseMeasurement]:
        day_offsets = self.days.setdefault(day, self._offsets(self.noise.day_sd))
        run_offsets = self._offsets(self.noise.run_sd)
        started = (EPOCH + timedelta(days=day, hours=hour)).isoformat()
        found = {}
        for case in range(self.cases):
            samples = {}
            for metric in METRICS:
                level = day_offsets[case] + run_offsets[case] - slowed.get(case, 0.0)
                sign = 1.0 if metric == "decode_tokens_per_s" else -1.0  # slower: fewer tokens/s, more ms
                samples[metric] = [100.0 * math.exp(sign * level + value) for value in self._rounds(rounds)]
            found[f"c{case}"] = CaseMeasurement(f"c{case}", samples, {}, started=started)
        return found

    def _rounds(self, rounds: int) -> list[float]:
        noise, value, values = self.noise, 0.0, []
        innovation = noise.round_sd * math.sqrt(1.0 - noise.rho**2)
        for index in range(rounds):
            value = (
                self.rng.gauss(0.0, noise.round_sd)
                if index == 0
                else noise.rho * value + self.rng.gauss(0.0, innovation)
            )
            values.append(value)
        return values


def gate_trial(
    noise: GateNoise, shape: Shape, cases: int, rng: random.Random, slowed: dict[int, float], settings: GateSettings
) -> set[str]:
    """The cases one sweep fails (after re-measuring each suspect in the same session as this run)."""
    machine = _Machine(noise, cases, rng)
    baseline: dict[str, list[CaseMeasurement]] = {f"c{i}": [] for i in range(cases)}
    for day in range(shape.days):
        for index in range(shape.runs_per_day):
            for case_id, measurement in machine.run(day, 0.25 * index, {}, 10).items():
                baseline[case_id].append(measurement)
    day = shape.days if shape.later_day else shape.days - 1
    hour = 0.0 if shape.later_day else 0.25 * shape.runs_per_day
    current = machine.run(day, hour, slowed, 10)
    again = machine.run(day, hour + 0.1, slowed, 10)
    verdicts = judge_confirmed(current, baseline, settings, lambda case_id: again[case_id])
    return {v.case_id for v in verdicts if v.regression}


@dataclass(frozen=True)
class GateRates:
    noise: str
    shape: str
    sweeps: int
    false_alarm_sweeps: float  # share of no-change sweeps with any regression
    power: float  # share of sweeps in which the one slowed case failed


def gate_rates(
    noise: GateNoise,
    shape: Shape,
    sweeps: int,
    seed: int = 0,
    cases: int = 24,
    slowdown: float = 0.2,
    settings: GateSettings | None = None,
) -> GateRates:
    settings = settings or GateSettings()
    rng = random.Random(seed)
    alarms = sum(bool(gate_trial(noise, shape, cases, rng, {}, settings)) for _ in range(sweeps))
    caught = sum(
        "c0" in gate_trial(noise, shape, cases, rng, {0: -math.log1p(-slowdown)}, settings) for _ in range(sweeps)
    )
    return GateRates(noise.name, shape.name, sweeps, alarms / sweeps, caught / sweeps)


def all_gate_rates(sweeps: int, seed: int = 0, shapes: Sequence[Shape] = SHAPES) -> list[GateRates]:
    return [gate_rates(noise, shape, sweeps, seed) for noise in NOISES.values() for shape in shapes]
