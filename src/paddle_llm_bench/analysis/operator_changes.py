"""Which operators' time changed most between two runs of a case, from their per-operator profiles
(``--llm-profile``): what ``compare`` shows beside a case whose speed changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from paddle_llm_bench.core.record import OperatorProfile, OperatorTimes

TOP_OPERATORS = 5


@dataclass(frozen=True)
class OperatorChange:
    name: str
    calls_reference: int
    calls: int
    time_reference_ms: float
    time_ms: float
    clock: str  # "gpu" (kernel time) or "cpu" (host time)

    @property
    def delta_ms(self) -> float:
        return self.time_ms - self.time_reference_ms


@dataclass(frozen=True)
class OperatorReport:
    """The operators whose time changed most between the reference run and a run, for a changed case."""

    case_id: str
    reference_run: str
    run: str
    why: str
    changes: Sequence[OperatorChange]


def operator_changes(
    reference_profile: OperatorProfile, profile: OperatorProfile, top: int = TOP_OPERATORS
) -> list[OperatorChange]:
    """The ``top`` operators whose total time changed most (by absolute ms); GPU kernel time where both have it."""
    before, after = reference_profile.operators, profile.operators
    changes = []
    for name in dict.fromkeys([*before, *after]):
        a, b = before.get(name, OperatorTimes()), after.get(name, OperatorTimes())
        use_gpu = a.gpu_time_ms is not None and b.gpu_time_ms is not None
        changes.append(
            OperatorChange(
                name=name,
                calls_reference=a.calls,
                calls=b.calls,
                time_reference_ms=(a.gpu_time_ms or 0.0) if use_gpu else a.cpu_time_ms,
                time_ms=(b.gpu_time_ms or 0.0) if use_gpu else b.cpu_time_ms,
                clock="gpu" if use_gpu else "cpu",
            )
        )
    changes.sort(key=lambda change: (-abs(change.delta_ms), change.name))
    return changes[:top]
