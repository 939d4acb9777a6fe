"""Energy counters read at the start and end of each measured round (docs/gpu-path.md).

- GPU: NVML's total energy counter (millijoules since the driver loaded; Volta and newer). On a
  MIG slice it is absent: the counter covers the whole GPU, which other slices share.
- CPU: the RAPL package counters in ``/sys/class/powercap`` where they exist and are readable
  (usually root-only, and absent in most VMs). They count the whole CPU package, other
  processes included.

``read()`` returns an opaque reading or None; after a None, ``absent_reason`` says why and the
counter stays off for the case. ``delta_uj(start, end)`` is the energy between two readings in
microjoules (RAPL counters wrap around; that is handled here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from paddle_llm_bench.runtime.nvml import NvmlDevice, explain

RAPL_ROOT = Path("/sys/class/powercap")
UJ_PER_MJ = 1000


class EnergyCounter(Protocol):
    absent_reason: str | None

    def read(self) -> Any: ...

    def delta_uj(self, start: Any, end: Any) -> int: ...


@dataclass
class NoEnergyCounter:
    absent_reason: str | None

    def read(self) -> None:
        return None

    def delta_uj(self, start: Any, end: Any) -> int:
        raise ValueError(f"no energy counter: {self.absent_reason}")


class NvmlEnergyCounter:
    """``nvmlDeviceGetTotalEnergyConsumption`` of the physical GPU, in millijoules."""

    def __init__(self, device: NvmlDevice) -> None:
        self.device = device
        self.absent_reason: str | None = None
        if device.mig:
            self.absent_reason = "on a MIG slice: NVML's energy counter covers the whole GPU, which other slices share"

    def read(self) -> int | None:
        if self.absent_reason is not None:
            return None
        try:
            return int(self.device.pynvml.nvmlDeviceGetTotalEnergyConsumption(self.device.gpu_handle))
        except self.device.errors as error:
            self.absent_reason = f"NVML's total energy counter is unreadable: {explain(error)}"
            return None

    def delta_uj(self, start: int, end: int) -> int:
        return (end - start) * UJ_PER_MJ


@dataclass(frozen=True)
class RaplDomain:
    energy_path: Path
    max_range_uj: int


class RaplEnergyCounter:
    """The sum of the RAPL package domains (``intel-rapl:N``) under ``root``, in microjoules."""

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self.absent_reason: str | None = None
        self.domains: list[RaplDomain] = []
        packages = sorted(root.glob("intel-rapl:*")) if root.is_dir() else []
        packages = [p for p in packages if p.name.count(":") == 1]  # intel-rapl:0, not intel-rapl:0:0
        if not packages:
            self.absent_reason = f"no energy counter on this CPU (no RAPL package domain under {root})"
            return
        try:
            for package in packages:
                self.domains.append(
                    RaplDomain(package / "energy_uj", int((package / "max_energy_range_uj").read_text()))
                )
                int(self.domains[-1].energy_path.read_text())
        except (OSError, ValueError) as error:
            self.absent_reason = f"the CPU's RAPL energy counter is unreadable ({error}); it is usually root-only"
            self.domains = []

    def read(self) -> tuple[int, ...] | None:
        if self.absent_reason is not None:
            return None
        try:
            return tuple(int(domain.energy_path.read_text()) for domain in self.domains)
        except (OSError, ValueError) as error:
            self.absent_reason = f"the CPU's RAPL energy counter became unreadable: {error}"
            return None

    def delta_uj(self, start: tuple[int, ...], end: tuple[int, ...]) -> int:
        total = 0
        for domain, before, after in zip(self.domains, start, end, strict=True):
            total += after - before if after >= before else after + domain.max_range_uj - before
        return total
