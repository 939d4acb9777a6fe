"""`paddle-llm-bench doctor`: can this machine's numbers be trusted? Also the session-start self-check.

On a GPU (Paddle built with CUDA):
- synchronization really waits: a batch of large matmuls is timed to the host's return (enqueue
  only) and to ``paddle.device.synchronize()``; a scalar read back afterwards must then be instant;
- the memory probes read non-zero and agree: after allocating a known block, Paddle's allocator
  reports at least that much, ``reserved >= allocated``, and NVML's figure for this process is at
  least Paddle's reserved pool and at most ``MEMORY_MARGIN_BYTES`` (the CUDA context) above it;
- NVML facts: clocks (current and maximum), power limit, persistence mode, ECC mode, throttle
  reasons (decoded), other processes on the GPU (a warning, with their pids and memory), and the
  memory bandwidth (the SKU table, cross-checked against NVML's memory bus width and clock).

On a CPU: Paddle's version and threads, the CPU, that the peak-RSS reset through
``/proc/self/clear_refs`` works, that the host allocator's statistics count an allocation; and
it says which checks need a GPU.

The NVML part (``nvml_report``, ``other_processes``) imports only pynvml, so it also runs on a
GPU machine without Paddle. Every check is a ``Check(status, name, message)``; ``status`` is
``ok``, ``warn``, ``skip`` or ``FAIL``. The command exits 1 if any check FAILs, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .bandwidth import GB, bandwidth_from_memory_bus, lookup_bandwidth

HELP = "self-check of the measuring setup: synchronization, memory probes, GPU state"

OK, WARN, SKIP, FAIL = "ok", "warn", "skip", "FAIL"
MIB = 1024 * 1024
GIB = 1024 * MIB
# NVML counts the CUDA context (and cuBLAS/cuDNN workspaces) on top of Paddle's pool.
MEMORY_MARGIN_BYTES = 1 * GIB
MEMORY_PROBE_BLOCK_BYTES = 256 * MIB
RSS_PROBE_BLOCK_BYTES = 64 * MIB
HOST_ALLOCATOR_PROBE_BYTES = 32 * MIB
# Synchronized time must exceed the enqueue time by this factor for the check to tell them apart.
SYNC_MIN_RATIO = 3.0
# SKU table and NVML's memory bus may differ this much before a warning.
BANDWIDTH_AGREEMENT = 0.15

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
GPU_ONLY_CHECKS: tuple[tuple[str, str], ...] = (
    ("synchronization", "Paddle's CPU kernels run synchronously: there is no queue to wait for"),
    ("memory probes", "Paddle's GPU allocator against NVML's per-process figure"),
)
NVML_CHECKS = ("nvml", "clocks", "power limit", "persistence mode", "ecc", "throttle reasons", "other processes")


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    message: str

    def line(self) -> str:
        return f"{self.status}: {self.name}: {self.message}"


@dataclass
class DoctorReport:
    """The checks in order, and the facts worth recording in ``machine_info``."""

    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, status: str, name: str, message: str) -> Check:
        check = Check(status, name, message)
        self.checks.append(check)
        return check

    @property
    def failed(self) -> bool:
        return any(check.status == FAIL for check in self.checks)

    def lines(self) -> list[str]:
        return [check.line() for check in self.checks]

    def machine_info(self) -> dict[str, Any]:
        """The facts plus every check's line, for ``machine_info["paddle_llm_bench"]``."""
        return {**self.facts, "self_check": self.lines()}

    def as_dict(self) -> dict[str, Any]:
        return {"failed": self.failed, "checks": [asdict(check) for check in self.checks], "facts": self.facts}


class NvmlUnavailable(Exception):
    """NVML cannot be used here (no driver, no GPU); the message says why."""


# ---------------------------------------------------------------------------------------------
# Pure judgements: numbers in, a Check out.


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


def judge_throttle(mask: int) -> Check:
    reasons = decode_throttle_reasons(mask)
    slowdowns = [reason for reason in reasons if reason in SLOWDOWN_REASONS]
    if slowdowns:
        return Check(WARN, "throttle reasons", f"clocks held back by {', '.join(slowdowns)} (mask {mask:#x})")
    return Check(OK, "throttle reasons", f"none that slow the GPU ({', '.join(reasons) or 'no reason set'})")


def judge_synchronization(enqueue_s: float, synchronized_s: float, readback_s: float) -> Check:
    """Times from the start of a batch of GPU work: the host's return, ``synchronize()``'s return,
    and a scalar read back after it (which cannot finish before the work). Seconds, all three.

    A synchronize that waits makes ``synchronized_s`` much longer than ``enqueue_s`` and leaves
    nothing for the read-back to wait for.
    """
    numbers = f"host returned after {enqueue_s * 1e3:.2f} ms, synchronize after {synchronized_s * 1e3:.2f} ms, "
    numbers += f"a read-back after {readback_s * 1e3:.2f} ms"
    leftover_s = readback_s - synchronized_s
    if leftover_s > 1e-3 and leftover_s > 0.5 * (synchronized_s - enqueue_s):
        return Check(FAIL, "synchronization", f"synchronize returned before the GPU finished: {numbers}")
    if synchronized_s < SYNC_MIN_RATIO * enqueue_s:
        return Check(
            WARN,
            "synchronization",
            f"the host waited for the kernels while launching them (CUDA_LAUNCH_BLOCKING?), so a missing wait "
            f"could not be detected: {numbers}",
        )
    return Check(OK, "synchronization", f"waits for the GPU: {numbers}")


def judge_memory_probes(
    allocated_bytes: int,
    reserved_bytes: int,
    nvml_process_bytes: int | None,
    block_bytes: int = MEMORY_PROBE_BLOCK_BYTES,
    margin_bytes: int = MEMORY_MARGIN_BYTES,
) -> Check:
    """Paddle's allocator and NVML after allocating ``block_bytes``: non-zero and consistent."""
    numbers = (
        f"allocated {allocated_bytes / MIB:.0f} MiB, reserved {reserved_bytes / MIB:.0f} MiB, "
        + ("NVML absent" if nvml_process_bytes is None else f"NVML {nvml_process_bytes / MIB:.0f} MiB")
        + f" after allocating {block_bytes / MIB:.0f} MiB"
    )
    if allocated_bytes < block_bytes:
        return Check(FAIL, "memory probes", f"Paddle's allocator misses the probe block: {numbers}")
    if reserved_bytes < allocated_bytes:
        return Check(FAIL, "memory probes", f"reserved is below allocated: {numbers}")
    if nvml_process_bytes is None:
        return Check(
            WARN,
            "memory probes",
            f"NVML lists no memory for this process (pid {os.getpid()}; in a container NVML may show host pids), "
            f"so the allocator cannot be cross-checked: {numbers}",
        )
    if nvml_process_bytes < reserved_bytes:
        return Check(FAIL, "memory probes", f"NVML sees less than Paddle reserved: {numbers}")
    if nvml_process_bytes - reserved_bytes >= margin_bytes:
        return Check(
            WARN,
            "memory probes",
            f"NVML exceeds Paddle's reserved pool by {(nvml_process_bytes - reserved_bytes) / MIB:.0f} MiB, more "
            f"than the {margin_bytes / MIB:.0f} MiB allowed for the CUDA context: memory outside Paddle's "
            f"allocator is not in peak_allocated_bytes: {numbers}",
        )
    return Check(
        OK,
        "memory probes",
        f"agree within the {margin_bytes / MIB:.0f} MiB margin for the CUDA context: {numbers}",
    )


def judge_peak_rss_reset(before_bytes: int, peak_bytes: int, after_reset_bytes: int, block_bytes: int) -> Check:
    """VmHWM after a reset, after touching ``block_bytes``, and after freeing it and resetting again."""
    numbers = (
        f"VmHWM {before_bytes / MIB:.0f} MiB -> {peak_bytes / MIB:.0f} MiB with a {block_bytes / MIB:.0f} MiB block "
        f"-> {after_reset_bytes / MIB:.0f} MiB after freeing it and resetting"
    )
    if peak_bytes - before_bytes < 0.9 * block_bytes:
        return Check(FAIL, "peak RSS", f"the peak did not see the block: {numbers}")
    if after_reset_bytes > peak_bytes - 0.5 * block_bytes:
        return Check(FAIL, "peak RSS", f"the reset did not lower the peak: {numbers}")
    return Check(OK, "peak RSS", f"reset through /proc/self/clear_refs works: {numbers}")


def judge_bandwidth(device_name: str, bus_bandwidth_bytes_per_s: float | None) -> tuple[Check, float | None]:
    """The memory bandwidth to use for ceilings: the SKU table's, cross-checked against NVML's memory bus."""
    lookup = lookup_bandwidth(device_name)
    table = lookup.memory_bandwidth_bytes_per_s
    bus = (
        f"NVML memory bus {bus_bandwidth_bytes_per_s / GB:.0f} GB/s"
        if bus_bandwidth_bytes_per_s
        else "no NVML bus figure"
    )
    if table is not None:
        if bus_bandwidth_bytes_per_s and abs(bus_bandwidth_bytes_per_s - table) > BANDWIDTH_AGREEMENT * table:
            return Check(WARN, "memory bandwidth", f"{lookup.reason} disagrees with {bus}; using the table"), table
        return Check(OK, "memory bandwidth", f"{lookup.reason}; {bus}"), table
    if bus_bandwidth_bytes_per_s:
        return Check(OK, "memory bandwidth", f"{bus} ({lookup.reason})"), bus_bandwidth_bytes_per_s
    return Check(WARN, "memory bandwidth", f"unknown, so no ceiling shares: {lookup.reason}"), None


def _mib_text(value: int | None) -> str:
    return "memory unknown" if value is None else f"{value / MIB:.0f} MiB"


def judge_other_processes(processes: list[dict[str, Any]]) -> Check:
    if not processes:
        return Check(OK, "other processes", "none on this GPU")
    listed = ", ".join(f"pid {p['pid']} ({_mib_text(p.get('used_bytes'))})" for p in processes)
    return Check(WARN, "other processes", f"{len(processes)} other process(es) share this GPU: {listed}")


# ---------------------------------------------------------------------------------------------
# NVML: pynvml only, no Paddle.


def _nvml_device(index: int) -> Any:
    """pynvml and a handle for GPU ``index`` (NVML's numbering), or NvmlUnavailable with the reason."""
    try:
        import pynvml
    except ImportError as error:
        raise NvmlUnavailable(f"pynvml is not installed ({error}); pip install nvidia-ml-py") from None
    try:
        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
    except pynvml.NVMLError as error:
        raise NvmlUnavailable(f"NVML unavailable: {type(error).__name__}: {error}") from None


def nvml_report(index: int) -> dict[str, Any]:
    """NVML facts of GPU ``index`` as a flat dict for ``machine_info``; never raises.

    A fact NVML cannot give is ``"<key>_absent": reason``; without NVML at all, ``nvml_absent``.
    """
    try:
        pynvml, handle = _nvml_device(index)
    except NvmlUnavailable as error:
        return {"nvml_absent": str(error)}
    facts: dict[str, Any] = {"nvml_index": index}

    def read(key: str, query: Callable[[], Any]) -> None:
        try:
            facts[key] = query()
        except pynvml.NVMLError as error:
            facts[f"{key}_absent"] = f"{type(error).__name__}: {error}"

    read("gpu_nvml_name", lambda: str(pynvml.nvmlDeviceGetName(handle)))
    read("gpu_driver_version", lambda: str(pynvml.nvmlSystemGetDriverVersion()))
    read("gpu_sm_clock_mhz", lambda: int(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)))
    read("gpu_sm_clock_max_mhz", lambda: int(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)))
    read("gpu_memory_clock_mhz", lambda: int(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)))
    read("gpu_memory_clock_max_mhz", lambda: int(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)))
    read("gpu_memory_bus_width_bits", lambda: int(pynvml.nvmlDeviceGetMemoryBusWidth(handle)))
    read("gpu_power_limit_w", lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000)
    read("gpu_power_default_limit_w", lambda: pynvml.nvmlDeviceGetPowerManagementDefaultLimit(handle) / 1000)
    read("gpu_power_draw_w", lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000)
    read("gpu_temperature_c", lambda: int(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)))
    read("gpu_performance_state", lambda: f"P{int(pynvml.nvmlDeviceGetPerformanceState(handle))}")
    read("gpu_persistence_mode", lambda: bool(pynvml.nvmlDeviceGetPersistenceMode(handle)))
    read("gpu_ecc_enabled", lambda: bool(pynvml.nvmlDeviceGetEccMode(handle)[0]))
    read("gpu_memory_total_bytes", lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).total))
    read("gpu_memory_used_bytes", lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).used))
    # NVML 12.5 renamed "throttle reasons" to "clock event reasons"; older bindings have only the old name.
    reasons = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if reasons is None:
        reasons = pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
    read("gpu_throttle_reasons_mask", lambda: int(reasons(handle)))
    if "gpu_throttle_reasons_mask" in facts:
        facts["gpu_throttle_reasons"] = decode_throttle_reasons(facts["gpu_throttle_reasons_mask"])
    if "gpu_memory_bus_width_bits" in facts and "gpu_memory_clock_max_mhz" in facts:
        facts["gpu_memory_bus_bandwidth_bytes_per_s"] = bandwidth_from_memory_bus(
            facts["gpu_memory_bus_width_bits"], facts["gpu_memory_clock_max_mhz"]
        )
    if "gpu_nvml_name" in facts:
        lookup = lookup_bandwidth(facts["gpu_nvml_name"])
        if lookup.memory_bandwidth_bytes_per_s is not None:
            facts["gpu_memory_bandwidth_bytes_per_s"] = lookup.memory_bandwidth_bytes_per_s
        else:
            facts["gpu_memory_bandwidth_bytes_per_s_absent"] = lookup.reason
    return facts


def other_processes(index: int, own_pid: int) -> list[dict[str, Any]]:
    """Compute and graphics processes on GPU ``index`` other than ``own_pid``: pid, kind, used bytes.

    Raises NvmlUnavailable (with the reason) where NVML cannot be used.
    """
    pynvml, handle = _nvml_device(index)
    found: dict[int, dict[str, Any]] = {}
    for kind, query in (
        ("compute", pynvml.nvmlDeviceGetComputeRunningProcesses),
        ("graphics", pynvml.nvmlDeviceGetGraphicsRunningProcesses),
    ):
        try:
            processes = query(handle)
        except pynvml.NVMLError:
            continue
        for process in processes:
            if process.pid == own_pid or process.pid in found:
                continue
            used = getattr(process, "usedGpuMemory", None)
            found[process.pid] = {
                "pid": int(process.pid),
                "kind": kind,
                "used_bytes": None if used is None else int(used),
            }
    return list(found.values())


def nvml_checks(report: DoctorReport, index: int, paddle_runs_on_gpu: bool) -> None:
    """Add the NVML checks for GPU ``index`` to ``report`` (skips with the reason where NVML is absent)."""
    facts = nvml_report(index)
    report.facts.update(facts)
    if "nvml_absent" in facts:
        also = ", ".join(name for name in NVML_CHECKS[1:])
        report.add(SKIP, "nvml", f"needs a GPU and its driver ({also}, memory bandwidth): {facts['nvml_absent']}")
        return
    name = facts.get("gpu_nvml_name", f"GPU {index}")
    report.add(OK, "nvml", f"GPU {index}: {name}, driver {facts.get('gpu_driver_version', '?')}")
    if not paddle_runs_on_gpu:
        report.add(WARN, "device", f"{name} is present but Paddle runs on the CPU (the CPU build of Paddle?)")
    report.add(
        OK,
        "clocks",
        f"SM {facts.get('gpu_sm_clock_mhz', '?')}/{facts.get('gpu_sm_clock_max_mhz', '?')} MHz, memory "
        f"{facts.get('gpu_memory_clock_mhz', '?')}/{facts.get('gpu_memory_clock_max_mhz', '?')} MHz (current/max), "
        f"{facts.get('gpu_performance_state', 'P?')}, {facts.get('gpu_temperature_c', '?')} C",
    )
    limit, default = facts.get("gpu_power_limit_w"), facts.get("gpu_power_default_limit_w")
    if limit is not None and default is not None and limit < 0.95 * default:
        report.add(WARN, "power limit", f"{limit:.0f} W enforced, below the default {default:.0f} W")
    else:
        shown = "unknown" if limit is None else f"{limit:.0f} W"
        report.add(OK, "power limit", shown if default is None else f"{shown} (default {default:.0f} W)")
    persistence = facts.get("gpu_persistence_mode")
    if persistence is False:
        report.add(WARN, "persistence mode", "off: the driver may re-initialize the GPU between processes")
    else:
        report.add(
            OK, "persistence mode", "on" if persistence else f"unknown ({facts.get('gpu_persistence_mode_absent')})"
        )
    ecc = facts.get("gpu_ecc_enabled")
    ecc_text = "unknown" if ecc is None else ("enabled" if ecc else "disabled")
    report.add(OK, "ecc", ecc_text if ecc is not None else f"{ecc_text} ({facts.get('gpu_ecc_enabled_absent')})")
    if "gpu_throttle_reasons_mask" in facts:
        report.checks.append(judge_throttle(facts["gpu_throttle_reasons_mask"]))
    else:
        report.add(WARN, "throttle reasons", f"unreadable: {facts.get('gpu_throttle_reasons_mask_absent')}")
    try:
        processes = other_processes(index, os.getpid())
        report.facts["gpu_other_processes"] = processes
        report.checks.append(judge_other_processes(processes))
    except NvmlUnavailable as error:
        report.add(WARN, "other processes", str(error))
    check, bandwidth = judge_bandwidth(str(name), facts.get("gpu_memory_bus_bandwidth_bytes_per_s"))
    report.checks.append(check)
    if bandwidth is not None:
        report.facts["gpu_memory_bandwidth_bytes_per_s"] = bandwidth


# ---------------------------------------------------------------------------------------------
# Paddle: GPU measurements and host probes.


def measure_synchronization(paddle: Any, place: str, size: int = 4096, repeats: int = 8) -> Check:
    """Time ``repeats`` ``size``x``size`` matmuls to the host's return, to synchronize, to a read-back."""
    x = paddle.rand([size, size], dtype="float32")
    y = paddle.matmul(x, x)
    paddle.device.synchronize(place)  # warm: cuBLAS handles and workspaces exist before timing
    start = time.perf_counter()
    for _ in range(repeats):
        y = paddle.matmul(x, x)
    enqueue_s = time.perf_counter() - start
    paddle.device.synchronize(place)
    synchronized_s = time.perf_counter() - start
    float(y[0, 0])  # a device-to-host copy: it cannot finish before the matmuls
    readback_s = time.perf_counter() - start
    return judge_synchronization(enqueue_s, synchronized_s, readback_s)


def measure_memory_probes(paddle: Any, device_index: int, nvml_device_index: int) -> Check:
    from .memory import nvml_process_used_bytes

    block = paddle.zeros([MEMORY_PROBE_BLOCK_BYTES // 4], dtype="float32")
    paddle.device.synchronize(f"gpu:{device_index}")
    allocated = int(paddle.device.cuda.memory_allocated(device_index))
    reserved = int(paddle.device.cuda.memory_reserved(device_index))
    try:
        _pynvml, handle = _nvml_device(nvml_device_index)
        nvml_bytes = nvml_process_used_bytes(handle, os.getpid())
    except NvmlUnavailable:
        nvml_bytes = None
    del block
    return judge_memory_probes(allocated, reserved, nvml_bytes)


def _vm_hwm_bytes() -> int:
    from .memory import read_vm_hwm_bytes

    return read_vm_hwm_bytes()


def measure_peak_rss_reset() -> Check:
    clear_refs = Path("/proc/self/clear_refs")
    try:
        clear_refs.write_text("5")
        before = _vm_hwm_bytes()
        block = b"\x01" * RSS_PROBE_BLOCK_BYTES  # written, so resident
        peak = _vm_hwm_bytes()
        del block
        clear_refs.write_text("5")
        after = _vm_hwm_bytes()
    except OSError as error:
        return Check(FAIL, "peak RSS", f"cannot reset or read the peak RSS: {error}")
    return judge_peak_rss_reset(before, peak, after, RSS_PROBE_BLOCK_BYTES)


def measure_host_allocator(paddle: Any) -> Check:
    try:
        from paddle.base import core

        core.host_memory_stat_reset_peak_value("Allocated", 0)
        block = paddle.ones([HOST_ALLOCATOR_PROBE_BYTES // 4], dtype="float32")
        peak = int(core.host_memory_stat_peak_value("Allocated", 0))
        del block
    except Exception as error:  # noqa: BLE001 - an unreadable statistic is this check's finding
        return Check(FAIL, "host allocator", f"statistics unreadable: {type(error).__name__}: {error}")
    if peak < HOST_ALLOCATOR_PROBE_BYTES:
        return Check(
            FAIL,
            "host allocator",
            f"peak {peak / MIB:.0f} MiB after allocating {HOST_ALLOCATOR_PROBE_BYTES / MIB:.0f} MiB: "
            "it misses allocations",
        )
    return Check(
        OK,
        "host allocator",
        f"statistics readable: peak {peak / MIB:.0f} MiB after a {HOST_ALLOCATOR_PROBE_BYTES / MIB:.0f} MiB tensor",
    )


def self_check(device: Any) -> DoctorReport:
    """The checks for a ``device.Device`` Paddle already runs on: what the session start runs on a GPU."""
    from .device import import_paddle
    from .memory import nvml_index

    paddle = import_paddle()
    report = DoctorReport()
    report.checks.append(measure_peak_rss_reset())
    if device.kind == "gpu":
        report.checks.append(_guarded("synchronization", lambda: measure_synchronization(paddle, device.place)))
        index = nvml_index(device.index)
        report.checks.append(_guarded("memory probes", lambda: measure_memory_probes(paddle, device.index, index)))
        nvml_checks(report, index, paddle_runs_on_gpu=True)
        paddle.device.cuda.empty_cache()  # the probes' blocks leave Paddle's pool before anything is measured
    else:
        report.checks.append(measure_host_allocator(paddle))
        for name, why in GPU_ONLY_CHECKS:
            report.add(SKIP, name, f"needs a GPU ({why})")
        nvml_checks(report, 0, paddle_runs_on_gpu=False)
    return report


def _guarded(name: str, measure: Callable[[], Check]) -> Check:
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - a probe that crashes is a failed check, with its error
        return Check(FAIL, name, f"{type(error).__name__}: {error}")


def run_doctor(requested_device: str = "auto") -> DoctorReport:
    """Everything ``paddle-llm-bench doctor`` checks, for the device ``requested_device`` resolves to."""
    from .config import ConfigError

    try:
        from .device import detect_device, paddle_version_info

        info = paddle_version_info()
        device = detect_device(requested_device)
    except ImportError as error:
        report = DoctorReport()
        report.add(FAIL, "paddle", f"cannot import paddle ({error}): install paddlepaddle or paddlepaddle-gpu (README)")
        for name, _why in GPU_ONLY_CHECKS:
            report.add(SKIP, name, "needs Paddle")
        nvml_checks(report, 0, paddle_runs_on_gpu=False)
        return report
    except ConfigError as error:
        report = DoctorReport()
        report.add(FAIL, "device", str(error))
        return report
    build = f"CUDA {info['paddle_cuda_version']}" if info["paddle_compiled_with_cuda"] else "compiled without CUDA"
    head = DoctorReport(facts={**info, "device": device.describe()})
    head.add(OK, "paddle", f"Paddle {info['paddle_version']} (commit {str(info['paddle_commit'])[:12]}, {build})")
    head.add(OK, "device", f"{device.describe()}; {_threads_text()}")
    report = self_check(device)
    return DoctorReport(head.checks + report.checks, {**head.facts, **report.facts})


def _threads_text() -> str:
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"{os.cpu_count()} logical CPU cores, OMP_NUM_THREADS={omp}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .device import DEVICE_CHOICES

    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default="auto", help="which device to check (default auto: the GPU if any)"
    )
    parser.add_argument("--json", action="store_true", help="print the checks and facts as one JSON object")


def main(args: argparse.Namespace) -> int:
    report = run_doctor(args.device)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        for line in report.lines():
            print(line)
        skipped = [c.name for c in report.checks if c.status == SKIP and c.message.startswith("needs a GPU")]
        if skipped:
            print(f"skipped: needs a GPU: {', '.join(skipped)}")
        print("FAIL: numbers from this setup cannot be trusted" if report.failed else "doctor: no check failed")
    return 1 if report.failed else 0
