"""How far a sweep has come and about how long it has left, for the progress lines of a long run.

The time left is the seconds the finished cases took per unit of the shard cost model
(``shard.expected_cost``), times the cost of the cases still to run. A case skipped for its dtype or
execution mode means every later case of that model, dtype and mode is skipped too (the probes answer
once per session), so those leave the estimate at once. Model loading lands in the first case of each model
and dtype: the first estimates run high, and settle as cases finish.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.runtime.shard import DEFAULT_STEP_MS, expected_cost, first_generation_seconds, round_seconds


def say(message: str, source: str = "paddle-llm-bench") -> None:
    """The one progress channel outside pytest (whose own terminal carries a sweep's lines): a line on stderr,
    ``[source] message``, so that stdout holds only results."""
    print(f"[{source}] {message}", file=sys.stderr, flush=True)


# At most one progress line per this many seconds (and one after the first measured case).
PROGRESS_INTERVAL_S = 30.0


def format_duration(seconds: float) -> str:
    """``45 s``, ``3.5 min``, ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class SweepProgress:
    """Cases finished, skipped and left, and the time left estimated from the cases measured so far."""

    cases: Sequence[Case]
    rounds: int
    device_kind: str = "cpu"
    cannot_run: frozenset[str] = frozenset()  # case ids the device cannot run (probed): skipped, no time
    clock: Callable[[], float] = time.monotonic
    started_s: float = field(init=False)
    last_line_s: float | None = field(default=None, init=False)
    done: set[str] = field(default_factory=set, init=False)
    skipped: int = field(default=0, init=False)
    skipped_groups: set[tuple[str, str, str]] = field(default_factory=set, init=False)
    measured_s: float = field(default=0.0, init=False)
    measured_cost: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.started_s = self.clock()

    def planned_seconds(self) -> float:
        """The whole sweep by the cost model at the default step time, before anything was measured."""
        step_s = DEFAULT_STEP_MS[self.device_kind] / 1000
        runnable = [case for case in self.cases if case.id not in self.cannot_run]
        return sum(
            round_seconds(case, step_s, self.device_kind) * self.rounds + first_generation_seconds(case, step_s)
            for case in runnable
        )

    def opening_line(self) -> str:
        step_ms = DEFAULT_STEP_MS[self.device_kind]
        skipped = f", {len(self.cannot_run)} of them skipped: the device cannot run them" if self.cannot_run else ""
        return (
            f"{len(self.cases)} case(s){skipped}; {self.rounds} round(s) each (warm-up included): a first guess of "
            f"{format_duration(self.planned_seconds())} (the cost model at {step_ms:g} ms per decoding step); the "
            "time left is printed as cases finish"
        )

    def finished(self, case_id: str, seconds: float, skipped: bool) -> str | None:
        """Record one case; return a progress line when one is due."""
        case = next((case for case in self.cases if case.id == case_id), None)
        if case is None or case.id in self.done:
            return None
        self.done.add(case.id)
        if skipped:
            self.skipped += 1
            self.skipped_groups.add((case.model, case.dtype, case.mode))
            return None
        first = self.measured_cost == 0.0
        self.measured_s += seconds
        self.measured_cost += expected_cost(case, self.rounds)
        now = self.clock()
        if not first and self.last_line_s is not None and now - self.last_line_s < PROGRESS_INTERVAL_S:
            return None
        self.last_line_s = now
        return self.line()

    def seconds_left(self) -> float | None:
        """About how long the cases still to run take, or None before any case was measured."""
        if self.measured_cost <= 0:
            return None
        left = sum(
            expected_cost(case, self.rounds)
            for case in self.cases
            if case.id not in self.done
            and case.id not in self.cannot_run
            and (case.model, case.dtype, case.mode) not in self.skipped_groups
        )
        return self.measured_s / self.measured_cost * left

    def line(self) -> str:
        finished = len(self.done)
        skipped = f" ({self.skipped} skipped)" if self.skipped else ""
        left = self.seconds_left()
        estimate = f", about {format_duration(left)} left" if left is not None and finished < len(self.cases) else ""
        return (
            f"{finished}/{len(self.cases)} case(s) done{skipped} after "
            f"{format_duration(self.clock() - self.started_s)}{estimate}"
        )
