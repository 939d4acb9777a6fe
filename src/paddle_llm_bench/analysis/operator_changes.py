"""Which operators' time changed most between two runs of a case, from their per-operator profiles
(``--llm-profile``): what ``compare`` shows beside a case whose speed changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    reference_profile: Mapping[str, Any], profile: Mapping[str, Any], top: int = TOP_OPERATORS
) -> list[OperatorChange]:
    """The ``top`` operators whose total time changed most (by absolute ms); GPU kernel time where both have it."""
    before = reference_profile.get("operators", {})
    after = profile.get("operators", {})
    changes = []
    for name in dict.fromkeys([*before, *after]):
        a, b = before.get(name, {}), after.get(name, {})
        use_gpu = a.get("gpu_time_ms") is not None and b.get("gpu_time_ms") is not None
        key = "gpu_time_ms" if use_gpu else "cpu_time_ms"
        changes.append(
            OperatorChange(
                name=str(name),
                calls_reference=int(a.get("calls", 0)),
                calls=int(b.get("calls", 0)),
                time_reference_ms=float(a.get(key) or 0.0),
                time_ms=float(b.get(key) or 0.0),
                clock="gpu" if use_gpu else "cpu",
            )
        )
    changes.sort(key=lambda change: (-abs(change.delta_ms), change.name))
    return changes[:top]
