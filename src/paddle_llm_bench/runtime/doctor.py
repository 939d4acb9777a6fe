"""Can this machine's numbers be trusted? The checks of `paddle-llm-bench doctor` and of the session-start
self-check (the command itself: ``doctor_cli``).

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

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from paddle_llm_bench.core.bandwidth import bandwidth_from_memory_bus, lookup_bandwidth, mig_memory_share
from paddle_llm_bench.core.metrics import MIB
from paddle_llm_bench.runtime.doctor_checks import (
    FAIL,
    MEMORY_PROBE_BLOCK_BYTES,
    OK,
    SKIP,
    WARN,
    Check,
    DoctorReport,
    GpuFacts,
    GpuProcess,
    judge_bandwidth,
    judge_energy_counter,
    judge_memory_probes,
    judge_other_processes,
    judge_peak_rss_reset,
    judge_synchronization,
    judge_throttle_facts,
    number,
)
from paddle_llm_bench.runtime.nvml import (
    NvmlDevice,
    NvmlUnavailable,
    ProcessesUnreadable,
    clock_event_mask,
    compute_processes,
    decode_throttle_reasons,
    driver_version,
    explain,
    garbled_process_entries,
    open_device,
    process_used_bytes,
)

RSS_PROBE_BLOCK_BYTES = 64 * MIB
HOST_ALLOCATOR_PROBE_BYTES = 32 * MIB

GPU_ONLY_CHECKS: tuple[tuple[str, str], ...] = (
    ("synchronization", "Paddle's CPU kernels run synchronously: there is no queue to wait for"),
    ("memory probes", "Paddle's GPU allocator against NVML's per-process figure"),
)
NVML_CHECKS = (
    "nvml",
    "clocks",
    "power limit",
    "persistence mode",
    "ecc",
    "throttle reasons",
    "energy counter",
    "other processes",
)


# ---------------------------------------------------------------------------------------------
# NVML: pynvml only, no Paddle.


def nvml_report(index: int, device: NvmlDevice | None = None) -> GpuFacts:
    """NVML facts of CUDA device ``index`` (found by UUID, see ``nvml``) as a flat dict for
    ``machine_info``; never raises. ``device``: an already opened one.

    A fact NVML cannot give is ``"<key>_absent": reason``; without NVML at all, ``nvml_absent``.
    GPU-wide facts (clocks, power, energy, clock events) come from the physical GPU, also on a MIG slice.
    """
    try:
        device = device or open_device(index)
    except NvmlUnavailable as error:
        return {"nvml_absent": str(error)}
    pynvml, gpu = device.pynvml, device.gpu_handle
    facts: GpuFacts = {"nvml_device_found_by": device.found_by, "gpu_mig": device.mig}

    def read(key: str, query: Callable[[], JsonValue]) -> None:
        try:
            facts[key] = query()
        except device.errors as error:
            facts[f"{key}_absent"] = explain(error)

    read("nvml_index", lambda: int(pynvml.nvmlDeviceGetIndex(gpu)))
    read("gpu_nvml_name", lambda: _text(pynvml.nvmlDeviceGetName(gpu)))
    read("gpu_uuid", lambda: _text(pynvml.nvmlDeviceGetUUID(device.handle)))
    read("gpu_driver_version", lambda: _text(pynvml.nvmlSystemGetDriverVersion()))
    read("gpu_sm_clock_mhz", lambda: int(pynvml.nvmlDeviceGetClockInfo(gpu, pynvml.NVML_CLOCK_SM)))
    read("gpu_sm_clock_max_mhz", lambda: int(pynvml.nvmlDeviceGetMaxClockInfo(gpu, pynvml.NVML_CLOCK_SM)))
    read("gpu_memory_clock_mhz", lambda: int(pynvml.nvmlDeviceGetClockInfo(gpu, pynvml.NVML_CLOCK_MEM)))
    read("gpu_memory_clock_max_mhz", lambda: int(pynvml.nvmlDeviceGetMaxClockInfo(gpu, pynvml.NVML_CLOCK_MEM)))
    read("gpu_memory_bus_width_bits", lambda: int(pynvml.nvmlDeviceGetMemoryBusWidth(gpu)))
    read("gpu_power_limit_w", lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(gpu) / 1000)
    read("gpu_power_default_limit_w", lambda: pynvml.nvmlDeviceGetPowerManagementDefaultLimit(gpu) / 1000)
    read("gpu_power_draw_w", lambda: pynvml.nvmlDeviceGetPowerUsage(gpu) / 1000)
    read("gpu_total_energy_mj", lambda: int(pynvml.nvmlDeviceGetTotalEnergyConsumption(gpu)))
    read("gpu_temperature_c", lambda: int(pynvml.nvmlDeviceGetTemperature(gpu, pynvml.NVML_TEMPERATURE_GPU)))
    read("gpu_performance_state", lambda: f"P{int(pynvml.nvmlDeviceGetPerformanceState(gpu))}")
    read("gpu_persistence_mode", lambda: bool(pynvml.nvmlDeviceGetPersistenceMode(gpu)))
    read("gpu_ecc_enabled", lambda: bool(pynvml.nvmlDeviceGetEccMode(gpu)[0]))
    read("gpu_memory_total_bytes", lambda: int(pynvml.nvmlDeviceGetMemoryInfo(gpu).total))
    read("gpu_memory_used_bytes", lambda: int(pynvml.nvmlDeviceGetMemoryInfo(gpu).used))
    read("gpu_throttle_reasons_mask", lambda: clock_event_mask(pynvml, gpu))
    mask = facts.get("gpu_throttle_reasons_mask")
    if isinstance(mask, int):  # a bit mask: kept whole, not through a float
        facts["gpu_throttle_reasons"] = list[JsonValue](decode_throttle_reasons(mask))
    if device.mig:
        read("gpu_mig_name", lambda: _text(pynvml.nvmlDeviceGetName(device.handle)))
        read("gpu_mig_memory_total_bytes", lambda: int(pynvml.nvmlDeviceGetMemoryInfo(device.handle).total))
        slice_bytes, gpu_bytes = number(facts, "gpu_mig_memory_total_bytes"), number(facts, "gpu_memory_total_bytes")
        if slice_bytes is not None and gpu_bytes is not None:
            facts["gpu_mig_memory_share"] = mig_memory_share(int(slice_bytes), int(gpu_bytes))
    _bandwidth_facts(facts)
    return facts


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bandwidth_facts(facts: GpuFacts) -> None:
    """The bandwidth for ceilings: the SKU table's, scaled to a MIG slice's share of the memory.
    ``gpu_memory_bus_bandwidth_bytes_per_s`` stays the whole GPU's (a cross-check of the table)."""
    width, clock = number(facts, "gpu_memory_bus_width_bits"), number(facts, "gpu_memory_clock_max_mhz")
    if width is not None and clock is not None:
        facts["gpu_memory_bus_bandwidth_bytes_per_s"] = bandwidth_from_memory_bus(int(width), int(clock))
    if facts.get("gpu_mig") and "gpu_mig_memory_share" not in facts:
        facts["gpu_memory_bandwidth_bytes_per_s_absent"] = "a MIG slice whose share of the GPU's memory is unknown"
        return
    share = number(facts, "gpu_mig_memory_share") or 1.0
    if "gpu_nvml_name" in facts:
        lookup = lookup_bandwidth(str(facts["gpu_nvml_name"]))
        if lookup.memory_bandwidth_bytes_per_s is not None:
            facts["gpu_memory_bandwidth_bytes_per_s"] = share * lookup.memory_bandwidth_bytes_per_s
        else:
            facts["gpu_memory_bandwidth_bytes_per_s_absent"] = lookup.reason


def other_processes(index: int, own_pid: int, device: NvmlDevice | None = None) -> list[GpuProcess]:
    """Compute and graphics processes on CUDA device ``index`` (its MIG slice on MIG) other than
    ``own_pid``: pid, kind, used bytes.

    Raises NvmlUnavailable (with the reason) where NVML cannot be used, and ProcessesUnreadable
    where the compute process list cannot be read (NO_PERMISSION on a MIG-enabled GPU in a
    container) or trusted (an early R535 driver). The graphics list is optional: many data-center
    GPUs answer NOT_SUPPORTED.
    """
    device = device or open_device(index)
    pynvml = device.pynvml
    try:
        listed = [("compute", p) for p in compute_processes(pynvml, device.handle)]
        garbled = garbled_process_entries(driver_version(pynvml)) if len(listed) > 1 else None
    except device.errors as error:
        raise ProcessesUnreadable(f"cannot list the GPU's processes: {explain(error)}") from None
    if garbled is not None:
        raise ProcessesUnreadable(garbled)
    with contextlib.suppress(*device.errors):
        listed += [("graphics", p) for p in pynvml.nvmlDeviceGetGraphicsRunningProcesses(device.handle)]
    found: dict[int, GpuProcess] = {}
    for kind, process in listed:
        if process.pid == own_pid or process.pid in found:
            continue
        used = getattr(process, "usedGpuMemory", None)
        found[process.pid] = GpuProcess(int(process.pid), kind, None if used is None else int(used))
    return list(found.values())


def nvml_checks(report: DoctorReport, index: int, why_paddle_is_not_on_it: str | None) -> None:
    """Add the NVML checks for CUDA device ``index`` to ``report`` (skips with the reason where NVML is absent).
    ``why_paddle_is_not_on_it``: None where Paddle runs on that GPU, else why not (said where NVML sees one).

    Nothing NVML refuses here is a FAIL: an unreadable fact is a warning that names what goes missing.
    """
    facts: GpuFacts
    try:
        device: NvmlDevice | None = open_device(index)
    except NvmlUnavailable as error:
        device, facts = None, {"nvml_absent": str(error)}
    if device is not None:
        facts = nvml_report(index, device)
    report.facts.update(facts)
    if device is None:
        also = ", ".join(name for name in NVML_CHECKS[1:])
        report.add(SKIP, "nvml", f"needs a GPU and its driver ({also}, memory bandwidth): {facts['nvml_absent']}")
        return
    name = facts.get("gpu_nvml_name", f"GPU {index}")
    where = f"MIG slice {facts.get('gpu_mig_name', '?')} of " if device.mig else ""
    report.add(
        OK,
        "nvml",
        f"CUDA device {index}: {where}{name}, driver {facts.get('gpu_driver_version', '?')}; "
        f"found by {device.found_by}",
    )
    if why_paddle_is_not_on_it is not None:
        report.add(WARN, "device", f"{name} is present but Paddle does not run on it: {why_paddle_is_not_on_it}")
    _state_checks(report, facts)
    report.checks.append(judge_throttle_facts(facts))
    report.checks.append(judge_energy_counter(facts))
    report.checks.append(_other_processes_check(report, index, device))
    if device.mig and "gpu_mig_memory_share" not in facts:
        why = facts.get("gpu_mig_memory_total_bytes_absent") or facts.get("gpu_memory_total_bytes_absent")
        report.add(WARN, "memory bandwidth", f"a MIG slice whose share of the GPU's memory is unknown ({why})")
        return
    check, bandwidth = judge_bandwidth(
        str(name), number(facts, "gpu_memory_bus_bandwidth_bytes_per_s"), number(facts, "gpu_mig_memory_share")
    )
    report.checks.append(check)
    if bandwidth is not None:
        report.facts["gpu_memory_bandwidth_bytes_per_s"] = bandwidth


def _state_checks(report: DoctorReport, facts: GpuFacts) -> None:
    """Clocks, power limit, persistence mode and ECC, from the facts."""
    report.add(
        OK,
        "clocks",
        f"SM {facts.get('gpu_sm_clock_mhz', '?')}/{facts.get('gpu_sm_clock_max_mhz', '?')} MHz, memory "
        f"{facts.get('gpu_memory_clock_mhz', '?')}/{facts.get('gpu_memory_clock_max_mhz', '?')} MHz (current/max), "
        f"{facts.get('gpu_performance_state', 'P?')}, {facts.get('gpu_temperature_c', '?')} C",
    )
    limit, default = number(facts, "gpu_power_limit_w"), number(facts, "gpu_power_default_limit_w")
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


def _other_processes_check(report: DoctorReport, index: int, device: NvmlDevice) -> Check:
    try:
        processes = other_processes(index, os.getpid(), device)
    except (NvmlUnavailable, ProcessesUnreadable) as error:
        return Check(WARN, "other processes", f"{error}; peak_nvml_process_bytes may be absent")
    report.facts["gpu_other_processes"] = list[JsonValue](dataclasses.asdict(process) for process in processes)
    return judge_other_processes(processes)


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


def measure_memory_probes(paddle: Any, device_index: int) -> Check:
    block = paddle.zeros([MEMORY_PROBE_BLOCK_BYTES // 4], dtype="float32")
    paddle.device.synchronize(f"gpu:{device_index}")
    allocated = int(paddle.device.cuda.memory_allocated(device_index))
    reserved = int(paddle.device.cuda.memory_reserved(device_index))
    nvml_bytes, why = nvml_process_reading(device_index)
    del block
    return judge_memory_probes(allocated, reserved, nvml_bytes, nvml_absent_reason=why)


def nvml_process_reading(device_index: int, pid: int | None = None) -> tuple[int | None, str | None]:
    """NVML's figure for this process on CUDA device ``device_index``, or None and why; never raises."""
    pid = os.getpid() if pid is None else pid
    try:
        used = process_used_bytes(open_device(device_index), pid)
    except (NvmlUnavailable, ProcessesUnreadable) as error:
        return None, str(error)
    return used, None


def _vm_hwm_bytes() -> int:
    from paddle_llm_bench.runtime.memory import read_vm_hwm_bytes

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
    from paddle_llm_bench.runtime.device import import_paddle

    paddle = import_paddle()
    report = DoctorReport()
    report.checks.append(measure_peak_rss_reset())
    if device.kind == "gpu":
        report.checks.append(_guarded("synchronization", lambda: measure_synchronization(paddle, device.place)))
        report.checks.append(_guarded("memory probes", lambda: measure_memory_probes(paddle, device.index)))
        nvml_checks(report, device.index, why_paddle_is_not_on_it=None)
        paddle.device.cuda.empty_cache()  # the probes' blocks leave Paddle's pool before anything is measured
    else:
        report.checks.append(measure_host_allocator(paddle))
        for name, why in GPU_ONLY_CHECKS:
            report.add(SKIP, name, f"needs a GPU ({why})")
        nvml_checks(report, 0, why_paddle_is_not_on_it=why_on_the_cpu(bool(paddle.is_compiled_with_cuda())))
    return report


def why_on_the_cpu(compiled_with_cuda: bool) -> str:
    if compiled_with_cuda:
        return "this CUDA build of Paddle runs on the CPU (asked for with --device cpu, or it sees no GPU)"
    return "this is the CPU build of Paddle (paddlepaddle-gpu runs on GPUs: README, 'On a GPU')"


def _guarded(name: str, measure: Callable[[], Check]) -> Check:
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - a probe that crashes is a failed check, with its error
        return Check(FAIL, name, f"{type(error).__name__}: {error}")


def run_doctor(requested_device: str = "auto") -> DoctorReport:
    """Everything ``paddle-llm-bench doctor`` checks, for the device ``requested_device`` resolves to."""
    from paddle_llm_bench.core.config import ConfigError

    try:
        from paddle_llm_bench.runtime.device import detect_device, paddle_version_info

        info = paddle_version_info()
        device = detect_device(requested_device)
    except ImportError as error:
        report = DoctorReport()
        report.add(FAIL, "paddle", f"cannot import paddle ({error}): install paddlepaddle or paddlepaddle-gpu (README)")
        for name, _why in GPU_ONLY_CHECKS:
            report.add(SKIP, name, "needs Paddle")
        nvml_checks(report, 0, why_paddle_is_not_on_it="Paddle is not installed")
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
