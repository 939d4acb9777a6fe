"""NVML for the GPU path: the right device, readings that fail as reasons, never as crashes.

Shared by ``doctor`` (facts and checks), ``memory`` (this process's GPU memory), ``energy`` and
``measure`` (energy, clock-limit violation counters and clock events around each measured round).
Imports pynvml (nvidia-ml-py) and, to identify Paddle's GPU, the CUDA driver library through ctypes;
never Paddle.

Which GPU (docs/gpu-path.md): CUDA numbers devices its own way (``CUDA_VISIBLE_DEVICES`` may list
``GPU-<uuid>`` or ``MIG-<uuid>`` entries, and ``CUDA_DEVICE_ORDER`` defaults to fastest first)
while NVML numbers them in PCI order. So Paddle's device is found by identity, in this order:
a UUID entry of ``CUDA_VISIBLE_DEVICES``; the UUID, then the PCI bus id, the CUDA driver gives for
the device; only then an index (numeric ``CUDA_VISIBLE_DEVICES`` entry or CUDA's own index), which
is right only when CUDA orders GPUs as NVML does. A UUID that matches nothing is an error, never
"GPU 0".

On a MIG slice the device handle is the slice's (its processes, its memory) and ``gpu_handle`` is
the physical GPU's (clocks, power, energy, clock events, violation counters: NVML reports those per GPU).

What held the clocks back during a round comes from NVML's violation counters
(``nvmlDeviceGetViolationStatus``: nanoseconds, cumulative, per performance policy), read before the
round's start stamp and after its end stamp: their increase is the time a power, thermal, board or
reliability limit capped the clocks inside the round. The clock event mask says only what holds
them back at the instant it is read, which after a round's closing synchronize is an idle GPU.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# Drivers whose process-info struct is larger than the one nvidia-ml-py >= 12.535.108 reads: every
# process entry after the first is garbled (pid and memory from the wrong offsets).
GARBLED_PROCESS_DRIVERS = ((535, 43), (535, 98))  # [first, last) driver versions

HINTS = {
    "NVMLError_NoPermission": "process queries on a whole MIG-enabled GPU need root; a MIG slice's own handle does not",
    "NVMLError_NotSupported": "this GPU or driver does not support it",
    "NVMLError_FunctionNotFound": "the driver's NVML library predates this function",
    "NVMLLibraryMismatchError": "nvidia-ml-py and the driver's NVML library disagree on this function's version",
}


# NVML clock event ("throttle") reason bits -> names (nvmlClocksEventReason* / nvmlClocksThrottleReason*).
THROTTLE_REASON_BITS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)
# Reasons that hold clocks below what the GPU could run at under load: a benchmark on them is slowed.
SLOWDOWN_REASONS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "board_limit",
        "reliability",
    }
)


# NVML performance policies whose violation counters say a limit capped the clocks (nvmlPerfPolicyType_t):
# (name in records, pynvml constant, required). Without a required one the verdict is absent; an optional one
# a GPU does not count is left out with the reason.
VIOLATION_POLICIES: tuple[tuple[str, str, bool], ...] = (
    ("power", "NVML_PERF_POLICY_POWER", True),
    ("thermal", "NVML_PERF_POLICY_THERMAL", True),
    ("board_limit", "NVML_PERF_POLICY_BOARD_LIMIT", False),
    ("reliability", "NVML_PERF_POLICY_RELIABILITY", False),
)


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the bits set in an NVML clock-event/throttle-reason mask; unknown bits as hex."""
    names = [name for bit, name in THROTTLE_REASON_BITS if mask & bit]
    known = 0
    for bit, _ in THROTTLE_REASON_BITS:
        known |= bit
    unknown = mask & ~known
    bit = 1
    while unknown >= bit:
        if unknown & bit:
            names.append(f"unknown_{bit:#x}")
        bit <<= 1
    return names


class NvmlUnavailable(Exception):
    """NVML cannot be used here (no driver, no GPU, no such device); the message says why."""


def load_pynvml() -> Any:
    try:
        import pynvml
    except ImportError as error:
        raise NvmlUnavailable(f"pynvml is not installed ({error}); pip install nvidia-ml-py") from None
    return pynvml


def gpu_count() -> int:
    """How many GPUs NVML sees; 0 where NVML cannot be used (no driver, no library)."""
    try:
        pynvml = load_pynvml()
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - any failure to start NVML means: no GPU to count
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except nvml_errors(pynvml):
        return 0
    finally:
        pynvml.nvmlShutdown()


def nvml_errors(pynvml: Any) -> tuple[type[Exception], ...]:
    """What an NVML call may raise: ``NVMLError`` and its subclasses, and the binding's version mismatch."""
    errors: list[type[Exception]] = [pynvml.NVMLError]
    mismatch = getattr(pynvml, "NVMLLibraryMismatchError", None)
    if isinstance(mismatch, type) and issubclass(mismatch, Exception):
        errors.append(mismatch)
    return tuple(errors)


def explain(error: BaseException) -> str:
    """``Type: message`` plus what it usually means on a GPU runner."""
    name = type(error).__name__
    hint = HINTS.get(name)
    return f"{name}: {error}" + (f" ({hint})" if hint else "")


# ---------------------------------------------------------------------------------------------
# Which NVML device is Paddle's GPU.


@dataclass(frozen=True)
class CudaIdentity:
    """What the CUDA driver says about one of its devices: UUID (no prefix) and PCI bus id."""

    uuid: str | None
    pci_bus_id: str | None


def format_uuid(raw: bytes) -> str:
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:32]}"


def cuda_device_identity(ordinal: int) -> CudaIdentity | None:
    """UUID and PCI bus id of CUDA device ``ordinal`` (CUDA's numbering, as Paddle's), or None
    where there is no CUDA driver. The driver API honours CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER
    exactly as the runtime Paddle uses does."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    device = ctypes.c_int()
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(device), ordinal) != 0:
        return None
    uuid = None
    raw = (ctypes.c_ubyte * 16)()
    for name in ("cuDeviceGetUuid_v2", "cuDeviceGetUuid"):  # v2 gives a MIG slice's own UUID
        function = getattr(cuda, name, None)
        if function is not None and function(raw, device) == 0:
            uuid = format_uuid(bytes(raw))
            break
    bus = ctypes.create_string_buffer(32)
    pci_bus_id = bus.value.decode() if cuda.cuDeviceGetPCIBusId(bus, len(bus), device) == 0 else None
    return CudaIdentity(uuid, pci_bus_id)


def visible_devices_entry(cuda_index: int) -> str | None:
    """Entry ``cuda_index`` of CUDA_VISIBLE_DEVICES, or None when it is unset or shorter."""
    entries = [entry.strip() for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip()]
    return entries[cuda_index] if cuda_index < len(entries) else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flag(value: Any) -> bool:
    """NVML flags come back as ints or ctypes integers (``nvmlDeviceIsMigDeviceHandle`` returns a c_uint)."""
    return bool(int(getattr(value, "value", value)))


def is_mig_handle(pynvml: Any, handle: Any) -> bool:
    try:
        return _flag(pynvml.nvmlDeviceIsMigDeviceHandle(handle))
    except nvml_errors(pynvml):
        return False  # a driver without MIG support has no MIG handles


def all_handles(pynvml: Any) -> Iterator[Any]:
    """Every GPU NVML sees, each followed by its MIG slices (where MIG is on and allowed)."""
    errors = nvml_errors(pynvml)
    for index in range(int(pynvml.nvmlDeviceGetCount())):
        gpu = pynvml.nvmlDeviceGetHandleByIndex(index)
        yield gpu
        try:
            slots = int(pynvml.nvmlDeviceGetMaxMigDeviceCount(gpu)) if _flag(pynvml.nvmlDeviceGetMigMode(gpu)[0]) else 0
        except errors:
            slots = 0
        for slot in range(slots):
            try:
                yield pynvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, slot)
            except errors:
                continue  # an empty slot: NOT_FOUND


def handle_by_uuid(pynvml: Any, uuid: str) -> Any:
    """The GPU or MIG slice with this UUID; CUDA also accepts a unique prefix, so prefixes are matched too."""
    errors = nvml_errors(pynvml)
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(uuid)
    except errors:
        pass
    matches = []
    for handle in all_handles(pynvml):
        try:
            if _text(pynvml.nvmlDeviceGetUUID(handle)).lower().startswith(uuid.lower()):
                matches.append(handle)
        except errors:
            continue
    if len(matches) != 1:
        found = "no" if not matches else f"{len(matches)}"
        raise NvmlUnavailable(f"{found} GPU or MIG device NVML knows has the UUID {uuid!r}")
    return matches[0]


def _index_note(index: int, source: str) -> str:
    if os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return f"NVML index {index} ({source}; CUDA_DEVICE_ORDER=PCI_BUS_ID is NVML's order)"
    return (
        f"NVML index {index} ({source}; right only if CUDA orders the GPUs as NVML does: "
        "set CUDA_DEVICE_ORDER=PCI_BUS_ID on a host with different GPUs)"
    )


def find_handle(pynvml: Any, cuda_index: int, identity_of: Callable[[int], CudaIdentity | None]) -> tuple[Any, str]:
    """NVML's handle for CUDA device ``cuda_index`` and how it was found (see the module docstring)."""
    errors = nvml_errors(pynvml)
    entry = visible_devices_entry(cuda_index)
    if entry is not None and entry.upper().startswith(("GPU-", "MIG-")):
        return handle_by_uuid(pynvml, entry), f"UUID {entry} from CUDA_VISIBLE_DEVICES"
    identity = identity_of(cuda_index)
    if identity is not None and identity.uuid:
        for prefix in ("GPU-", "MIG-"):
            try:
                handle = pynvml.nvmlDeviceGetHandleByUUID(prefix + identity.uuid)
            except errors:
                continue
            return handle, f"UUID {prefix}{identity.uuid} from the CUDA driver"
    if identity is not None and identity.pci_bus_id:
        try:
            return pynvml.nvmlDeviceGetHandleByPciBusId(identity.pci_bus_id), f"PCI bus id {identity.pci_bus_id}"
        except errors:
            pass
    if entry is not None and entry.isdigit():
        index, source = int(entry), f"CUDA_VISIBLE_DEVICES entry {cuda_index}"
    else:
        index, source = cuda_index, "CUDA's device index"
    return pynvml.nvmlDeviceGetHandleByIndex(index), _index_note(index, source)


@dataclass(frozen=True)
class NvmlDevice:
    """Paddle's GPU in NVML: ``handle`` is the device (a MIG slice on MIG), ``gpu_handle`` the physical GPU."""

    pynvml: Any
    handle: Any
    gpu_handle: Any
    mig: bool
    found_by: str

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        return nvml_errors(self.pynvml)


def open_device(cuda_index: int = 0, identity_of: Callable[[int], CudaIdentity | None] | None = None) -> NvmlDevice:
    """NVML's view of CUDA device ``cuda_index``; NvmlUnavailable with the reason where there is none.
    ``identity_of``: how to ask CUDA for a device's UUID and PCI bus id (default: the CUDA driver)."""
    pynvml = load_pynvml()
    try:
        pynvml.nvmlInit()
        handle, found_by = find_handle(pynvml, cuda_index, identity_of or cuda_device_identity)
        mig = is_mig_handle(pynvml, handle)
        gpu_handle = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle) if mig else handle
    except nvml_errors(pynvml) as error:
        raise NvmlUnavailable(f"NVML unavailable: {explain(error)}") from None
    return NvmlDevice(pynvml, handle, gpu_handle, mig, found_by)


# ---------------------------------------------------------------------------------------------
# Readings. Each raises the binding's errors (see ``nvml_errors``); callers turn them into reasons.


def clock_event_mask(pynvml: Any, gpu_handle: Any) -> int:
    """The current clock event ("throttle") reasons. The newer name (NVML 12.5) may exist in the
    binding while the driver's library lacks it: then the older call answers."""
    newer = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if newer is not None:
        try:
            return int(newer(gpu_handle))
        except pynvml.NVMLError_FunctionNotFound:
            pass
    return int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(gpu_handle))


def violation_ns(pynvml: Any, gpu_handle: Any, policy: int) -> int:
    """Nanoseconds (cumulative, since the driver loaded) the clocks were held back by ``policy``."""
    return int(pynvml.nvmlDeviceGetViolationStatus(gpu_handle, policy).violationTime)


def driver_version(pynvml: Any) -> str:
    return _text(pynvml.nvmlSystemGetDriverVersion())


def garbled_process_entries(driver: str | None) -> str | None:
    """Why process entries after the first cannot be trusted on this driver (e.g. "535.54.03"), or None."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", driver or ""))
    first, last = GARBLED_PROCESS_DRIVERS
    if not numbers or not first <= numbers[:2] < last:
        return None
    return (
        f"driver {driver} (R535 before 535.98) fills a larger process record than nvidia-ml-py reads, "
        "so every process entry after the first is garbled; update the driver"
    )


def compute_processes(pynvml: Any, handle: Any) -> list[Any]:
    """Compute processes on ``handle``. Bindings call the ``_v3`` symbol; a driver without it
    (before R510) raises the binding's version mismatch, and the ``_v2`` call answers instead."""
    mismatch = tuple(error for error in nvml_errors(pynvml) if error is not pynvml.NVMLError)
    try:
        return list(pynvml.nvmlDeviceGetComputeRunningProcesses(handle))
    except mismatch:
        older = getattr(pynvml, "nvmlDeviceGetComputeRunningProcesses_v2", None)
        if older is None:
            raise
        return list(older(handle))


class ProcessesUnreadable(Exception):
    """NVML's process list for the device cannot be read or trusted; the message says why."""


def process_used_bytes(device: NvmlDevice, pid: int) -> int | None:
    """GPU memory NVML attributes to ``pid`` on Paddle's device (the slice on MIG), None if it lists
    none. ProcessesUnreadable with the reason where the list cannot be read or trusted."""
    pynvml = device.pynvml
    try:
        processes = compute_processes(pynvml, device.handle)
        garbled = garbled_process_entries(driver_version(pynvml)) if len(processes) > 1 else None
    except device.errors as error:
        raise ProcessesUnreadable(f"cannot list the GPU's processes: {explain(error)}") from None
    if garbled is not None:
        raise ProcessesUnreadable(garbled)
    for process in processes:
        used = getattr(process, "usedGpuMemory", None)
        if process.pid == pid and used is not None:
            return int(used)
    return None


class ClockEvents:
    """The physical GPU's clock event reasons at the instant of reading; None once unreadable. Read after each
    measured round's closing synchronize, when the GPU is idle: informative only; whether a limit held the
    clocks back during the round is ``ViolationCounters``' verdict."""

    def __init__(self, device: NvmlDevice | None, absent_reason: str | None = None) -> None:
        self.device = device
        self.absent_reason = absent_reason

    def read(self) -> int | None:
        if self.device is None or self.absent_reason is not None:
            return None
        try:
            return clock_event_mask(self.device.pynvml, self.device.gpu_handle)
        except self.device.errors as error:
            self.absent_reason = f"clock event reasons unreadable: {explain(error)}"
            return None


class ViolationCounters:
    """The physical GPU's violation counters (ns per policy of ``VIOLATION_POLICIES``), read right before a
    round's start stamp and right after its end stamp. The first reading finds which policies this GPU
    counts; ``read()`` gives None once unreadable, and ``absent_reason`` says why."""

    def __init__(self, device: NvmlDevice | None, absent_reason: str | None = None) -> None:
        self.device = device
        self.absent_reason = absent_reason
        self.policies: dict[str, int] | None = None  # name -> NVML policy, fixed by the first reading
        self.not_counted: dict[str, str] = {}  # optional policies this GPU or driver does not count, and why

    def read(self) -> dict[str, int] | None:
        if self.device is None or self.absent_reason is not None:
            return None
        if self.policies is None:
            return self._first_read(self.device)
        try:
            return {
                name: violation_ns(self.device.pynvml, self.device.gpu_handle, p) for name, p in self.policies.items()
            }
        except self.device.errors as error:
            self.absent_reason = f"NVML's clock-limit violation counters became unreadable: {explain(error)}"
            return None

    def _first_read(self, device: NvmlDevice) -> dict[str, int] | None:
        values: dict[str, int] = {}
        policies: dict[str, int] = {}
        for name, constant, required in VIOLATION_POLICIES:
            policy = getattr(device.pynvml, constant, None)
            if policy is None:
                why = f"this nvidia-ml-py has no {constant}"
            else:
                try:
                    values[name], policies[name] = violation_ns(device.pynvml, device.gpu_handle, policy), policy
                    continue
                except device.errors as error:
                    why = f"nvmlDeviceGetViolationStatus({constant}) failed: {explain(error)}"
            if required:
                self.absent_reason = (
                    f"NVML's {name} violation counter is unreadable, so clock limits are not known: {why}"
                )
                return None
            self.not_counted[name] = why
        self.policies = policies
        return values

    def delta(self, start: dict[str, int] | None, end: dict[str, int] | None) -> dict[str, int] | None:
        """Each counter's increase between two readings; None where either is missing or a counter went back."""
        if start is None or end is None:
            return None
        back = [name for name in start if end[name] < start[name]]
        if back:
            self.absent_reason = (
                f"NVML's {', '.join(back)} violation counter went backwards during a round (the driver was reloaded?)"
            )
            return None
        return {name: end[name] - start[name] for name in start}
