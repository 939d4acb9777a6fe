"""A stand-in for ``pynvml`` (nvidia-ml-py) so the GPU path's NVML branches run on a machine without a GPU.

The error classes and constants ARE the real module's (``NVMLError_NoPermission`` and the rest come
from the installed nvidia-ml-py), so ``except pynvml.NVMLError`` behaves exactly as on a GPU host;
only the functions are simulated, with the real names and signatures (``test_nvml`` checks each
name exists in the real module). Install one with ``install(monkeypatch, FakeNvml([...]))``.

What it can simulate, as on real runners:
- several GPUs whose NVML (PCI) order differs from CUDA's order, found by UUID or PCI bus id;
- MIG: a GPU with MIG slices; process queries on the whole GPU raise NO_PERMISSION (a non-root
  container), while a slice's own handle answers;
- any function raising any NVML error after a number of calls (``fail``), e.g. NOT_SUPPORTED,
  FunctionNotFound (a binding newer than the driver), GPU_IS_LOST mid-case;
- a driver without the ``_v3`` process query (the binding raises NVMLLibraryMismatchError);
- an energy counter that advances by a fixed step per read, and a clock event mask;
- clock-limit violation counters (``nvmlDeviceGetViolationStatus``: cumulative ns per performance
  policy) that a test advances with ``FakeGpu.hold_back`` or by a fixed step per read, and policies a
  GPU does not count (NOT_SUPPORTED); on a MIG slice's own handle the call is NOT_SUPPORTED, as for
  the other per-GPU readings.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml as real
import pytest

GIB = 1024**3


@dataclass
class FakeProcess:
    pid: int
    usedGpuMemory: int | None
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


@dataclass
class FakeMig:
    uuid: str
    name: str
    memory_total_bytes: int
    processes: list[FakeProcess] = field(default_factory=list)


@dataclass
class FakeGpu:
    uuid: str
    pci_bus_id: str
    name: str = "NVIDIA H100 80GB HBM3"
    memory_total_bytes: int = 80 * GIB
    memory_bus_width_bits: int = 5120
    memory_clock_max_mhz: int = 2619
    processes: list[FakeProcess] = field(default_factory=list)
    migs: list[FakeMig] = field(default_factory=list)
    energy_mj: int = 5_000_000
    energy_step_mj: int = 700  # per read: 0.7 J
    clock_event_mask: int = 0x1  # gpu_idle
    # Violation counters, ns since the driver loaded, by NVML performance policy (NVML_PERF_POLICY_*).
    violation_ns: dict[int, int] = field(default_factory=dict)
    violation_step_ns: dict[int, int] = field(default_factory=dict)  # added to a policy's counter at each read
    uncounted_policies: frozenset[int] = frozenset()  # policies this GPU answers NOT_SUPPORTED for

    def hold_back(self, policy: int, ns: int) -> None:
        """A limit (``policy``) capped the clocks for ``ns`` nanoseconds: its counter advances by that much."""
        self.violation_ns[policy] = self.violation_ns.get(policy, 0) + ns


@dataclass(frozen=True)
class ViolationTime:
    """``pynvml.c_nvmlViolationTime_t``: ``referenceTime`` (CPU timestamp, µs) and ``violationTime`` (ns)."""

    referenceTime: int
    violationTime: int


@dataclass(frozen=True)
class Handle:
    gpu: FakeGpu
    mig: FakeMig | None = None


@dataclass(frozen=True)
class MemoryInfo:
    total: int
    used: int
    free: int


class FakeNvml:
    """The state behind the fake module: GPUs in NVML (PCI) order, the driver version, injected failures."""

    def __init__(self, gpus: list[FakeGpu], driver_version: str = "550.54.15", has_v3_processes: bool = True) -> None:
        self.gpus = gpus
        self.driver_version = driver_version
        self.has_v3_processes = has_v3_processes
        self.calls: dict[str, int] = {}
        self.failures: dict[str, tuple[int, Callable[[], Exception]]] = {}

    def fail(self, function: str, error: Callable[[], Exception], after_calls: int = 0) -> None:
        """Make ``function`` raise ``error()`` once it has been called ``after_calls`` times."""
        if not hasattr(real, function):
            raise AssertionError(f"the real pynvml has no {function}")
        self.failures[function] = (after_calls, error)

    def _enter(self, function: str) -> None:
        count = self.calls.get(function, 0)
        self.calls[function] = count + 1
        if function in self.failures:
            after, error = self.failures[function]
            if count >= after:
                raise error()

    def module(self) -> types.ModuleType:
        module = types.ModuleType("pynvml")
        for name in dir(real):  # the real error classes and constants
            if name.startswith(("NVMLError", "NVML_", "NVMLLibraryMismatchError")):
                setattr(module, name, getattr(real, name))
        for name in dir(self):
            if name.startswith("nvml"):
                setattr(module, name, self._wrap(name, getattr(self, name)))
        return module

    def _wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self._enter(name)
            return function(*args)

        call.__name__ = name
        return call

    # -- the simulated functions, named and shaped as in pynvml ------------------------------

    def nvmlInit(self) -> None:
        return None

    def nvmlShutdown(self) -> None:
        return None

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:
        if not 0 <= index < len(self.gpus):
            raise real.NVMLError_InvalidArgument()
        return Handle(self.gpus[index])

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Handle:
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return Handle(gpu)
            for mig in gpu.migs:
                if mig.uuid == uuid:
                    return Handle(gpu, mig)
        raise real.NVMLError_NotFound()

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> Handle:
        wanted = bus_id.lower().split(":", 1)[1]  # the domain's width differs between CUDA and NVML
        for gpu in self.gpus:
            if gpu.pci_bus_id.lower().split(":", 1)[1] == wanted:
                return Handle(gpu)
        raise real.NVMLError_NotFound()

    def nvmlDeviceGetUUID(self, handle: Handle) -> str:
        return handle.mig.uuid if handle.mig else handle.gpu.uuid

    def nvmlDeviceGetIndex(self, handle: Handle) -> int:
        if handle.mig is not None:
            raise real.NVMLError_InvalidArgument()
        return self.gpus.index(handle.gpu)

    def nvmlDeviceGetName(self, handle: Handle) -> str:
        return handle.mig.name if handle.mig else handle.gpu.name

    def nvmlDeviceIsMigDeviceHandle(self, handle: Handle) -> int:
        return int(handle.mig is not None)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: Handle) -> Handle:
        if handle.mig is None:
            raise real.NVMLError_InvalidArgument()
        return Handle(handle.gpu)

    def nvmlDeviceGetMigMode(self, handle: Handle) -> list[int]:
        mode = int(bool(handle.gpu.migs))
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Handle) -> int:
        return 7 if handle.gpu.migs else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Handle, index: int) -> Handle:
        if index >= len(handle.gpu.migs):
            raise real.NVMLError_NotFound()
        return Handle(handle.gpu, handle.gpu.migs[index])

    def nvmlDeviceGetMemoryInfo(self, handle: Handle) -> MemoryInfo:
        total = handle.mig.memory_total_bytes if handle.mig else handle.gpu.memory_total_bytes
        return MemoryInfo(total, total // 10, total - total // 10)

    def nvmlDeviceGetClockInfo(self, handle: Handle, clock: int) -> int:
        return 1980 if clock == real.NVML_CLOCK_SM else handle.gpu.memory_clock_max_mhz

    def nvmlDeviceGetMaxClockInfo(self, handle: Handle, clock: int) -> int:
        return 1980 if clock == real.NVML_CLOCK_SM else handle.gpu.memory_clock_max_mhz

    def nvmlDeviceGetMemoryBusWidth(self, handle: Handle) -> int:
        return handle.gpu.memory_bus_width_bits

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Handle) -> int:
        return 700_000

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: Handle) -> int:
        return 700_000

    def nvmlDeviceGetPowerUsage(self, handle: Handle) -> int:
        return 120_000

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Handle) -> int:
        if handle.mig is not None:
            raise real.NVMLError_NotSupported()
        handle.gpu.energy_mj += handle.gpu.energy_step_mj
        return handle.gpu.energy_mj

    def nvmlDeviceGetTemperature(self, handle: Handle, sensor: int) -> int:
        return 41

    def nvmlDeviceGetPerformanceState(self, handle: Handle) -> int:
        return 0

    def nvmlDeviceGetPersistenceMode(self, handle: Handle) -> int:
        return 1

    def nvmlDeviceGetEccMode(self, handle: Handle) -> list[int]:
        return [1, 1]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Handle) -> int:
        return handle.gpu.clock_event_mask

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Handle) -> int:
        return handle.gpu.clock_event_mask

    def nvmlDeviceGetViolationStatus(self, handle: Handle, policy: int) -> ViolationTime:
        if handle.mig is not None or policy in handle.gpu.uncounted_policies:
            raise real.NVMLError_NotSupported()
        if not 0 <= policy < real.NVML_PERF_POLICY_COUNT:
            raise real.NVMLError_InvalidArgument()
        handle.gpu.hold_back(policy, handle.gpu.violation_step_ns.get(policy, 0))
        return ViolationTime(time.time_ns() // 1000, handle.gpu.violation_ns.get(policy, 0))

    def _processes(self, handle: Handle) -> list[FakeProcess]:
        if handle.mig is not None:
            return list(handle.mig.processes)
        if handle.gpu.migs:  # the whole MIG-enabled GPU, asked without root (a container)
            raise real.NVMLError_NoPermission()
        return list(handle.gpu.processes)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Handle) -> list[FakeProcess]:
        if not self.has_v3_processes:  # what the binding's @throwOnVersionMismatch turns FunctionNotFound into
            raise real.NVMLLibraryMismatchError("Unversioned function called and the pyNVML version does not match")
        return self._processes(handle)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: Handle) -> list[FakeProcess]:
        return self._processes(handle)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Handle) -> list[FakeProcess]:
        raise real.NVMLError_NotSupported()  # as on most data-center GPUs


def uuid_of(number: int) -> str:
    return f"GPU-{number:08x}-1111-2222-3333-444455556666"


def mig_uuid_of(number: int) -> str:
    return f"MIG-{number:08x}-aaaa-bbbb-cccc-ddddeeeeffff"


def gpus(count: int, **overrides: Any) -> list[FakeGpu]:
    """``count`` GPUs in NVML (PCI) order: bus 0x1b, 0x3b, 0x5b ..."""
    return [FakeGpu(uuid_of(i), f"00000000:{0x1B + 0x20 * i:02X}:00.0", **overrides) for i in range(count)]


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeNvml, cuda_visible_devices: str | None = None) -> FakeNvml:
    """``import pynvml`` gives ``fake``'s module; CUDA_VISIBLE_DEVICES set (or unset); no CUDA driver is asked."""
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    if cuda_visible_devices is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cuda_visible_devices)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setattr("paddle_llm_bench.runtime.nvml.cuda_device_identity", lambda ordinal: None)
    return fake
