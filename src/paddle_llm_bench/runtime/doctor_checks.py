"""The checks of `paddle-llm-bench doctor` as pure judgements: numbers in, a ``Check`` out.

``runtime.doctor`` measures (Paddle, NVML, the host) and hands the numbers here; each judgement says ``ok``,
``warn``, ``skip`` or ``FAIL`` with the figures that decided it, so every threshold is tested without a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from pydantic import JsonValue

from paddle_llm_bench.core.bandwidth import GB, lookup_bandwidth
from paddle_llm_bench.core.metrics import MIB
from paddle_llm_bench.runtime.nvml import SLOWDOWN_REASONS, decode_throttle_reasons

OK, WARN, SKIP, FAIL = "ok", "warn", "skip", "FAIL"
GIB = 1024 * MIB
# NVML counts the CUDA context (and cuBLAS/cuDNN workspaces) on top of Paddle's pool.
MEMORY_MARGIN_BYTES = 1 * GIB
MEMORY_PROBE_BLOCK_BYTES = 256 * MIB  # what the memory probe allocates
# Synchronized time must exceed the enqueue time by this factor for the check to tell them apart.
SYNC_MIN_RATIO = 3.0
# SKU table and NVML's memory bus may differ this much before a warning.
BANDWIDTH_AGREEMENT = 0.15


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    message: str

    def line(self) -> str:
        return f"{self.status}: {self.name}: {self.message}"


GpuFacts = dict[str, JsonValue]  # what the checks read, by name; ``<name>_absent``: why one could not be read


def number(facts: Mapping[str, JsonValue], key: str) -> float | None:
    """A numeric fact, or None where it is absent (or not a number)."""
    value = facts.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class DoctorReport:
    """The checks in order, and the facts worth recording in ``machine_info``."""

    checks: list[Check] = field(default_factory=list)
    facts: GpuFacts = field(default_factory=dict)

    def add(self, status: str, name: str, message: str) -> Check:
        check = Check(status, name, message)
        self.checks.append(check)
        return check

    @property
    def failed(self) -> bool:
        return any(check.status == FAIL for check in self.checks)

    def lines(self) -> list[str]:
        return [check.line() for check in self.checks]

    def machine_info(self) -> GpuFacts:
        """The facts plus every check's line, for ``machine_info["paddle_llm_bench"]``."""
        return {**self.facts, "self_check": list[JsonValue](self.lines())}

    def as_dict(self) -> GpuFacts:
        checks = list[JsonValue](asdict(check) for check in self.checks)
        return {"failed": self.failed, "checks": checks, "facts": self.facts}


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
    nvml_absent_reason: str | None = None,
) -> Check:
    """Paddle's allocator and NVML after allocating ``block_bytes``: non-zero and consistent.

    ``nvml_absent_reason``: why NVML gave no figure (its process list unreadable), when it gave none.
    """
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
        why = nvml_absent_reason or (
            f"NVML lists no memory for this process (pid {os.getpid()}; in a container NVML may show host pids)"
        )
        return Check(WARN, "memory probes", f"{why}, so the allocator cannot be cross-checked: {numbers}")
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


def judge_bandwidth(
    device_name: str, bus_bandwidth_bytes_per_s: float | None, mig_share: float | None = None
) -> tuple[Check, float | None]:
    """The memory bandwidth to use for ceilings: the SKU table's, cross-checked against NVML's memory bus.

    ``mig_share``: on a MIG slice, its share of the GPU's memory slices; the GPU's bandwidth is scaled by it.
    """
    check, bandwidth = _judge_gpu_bandwidth(device_name, bus_bandwidth_bytes_per_s)
    if mig_share is None or bandwidth is None:
        return check, bandwidth
    message = f"MIG slice with {mig_share * 8:.0f}/8 of the memory: {mig_share:.3g} x the GPU's ({check.message})"
    return Check(check.status, check.name, message), bandwidth * mig_share


def _judge_gpu_bandwidth(device_name: str, bus_bandwidth_bytes_per_s: float | None) -> tuple[Check, float | None]:
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


@dataclass(frozen=True)
class GpuProcess:
    """Another process on the GPU, as NVML lists it."""

    pid: int
    kind: str  # "compute" or "graphics"
    used_bytes: int | None  # None: NVML does not say (no permission, or a MIG slice)


def judge_other_processes(processes: Sequence[GpuProcess]) -> Check:
    if not processes:
        return Check(OK, "other processes", "none on this GPU")
    listed = ", ".join(f"pid {p.pid} ({_mib_text(p.used_bytes)})" for p in processes)
    return Check(WARN, "other processes", f"{len(processes)} other process(es) share this GPU: {listed}")


def judge_throttle_facts(facts: GpuFacts) -> Check:
    """At idle, before any load. What capped the clocks during the measured rounds comes from NVML's violation
    counters, read around each round (``gpu_clock_events`` per case)."""
    mask = facts.get("gpu_throttle_reasons_mask")
    if isinstance(mask, int):  # a bit mask: kept whole, not through a float
        return judge_throttle(mask)
    return Check(WARN, "throttle reasons", f"unreadable: {facts.get('gpu_throttle_reasons_mask_absent')}")


def judge_energy_counter(facts: GpuFacts) -> Check:
    if facts.get("gpu_mig"):
        return Check(
            WARN,
            "energy counter",
            "on a MIG slice the GPU's energy counter includes the other slices: energy per token is absent",
        )
    energy_mj = number(facts, "gpu_total_energy_mj")
    if energy_mj is not None:
        return Check(OK, "energy counter", f"readable ({energy_mj / 1000:,.0f} J since driver load)")
    return Check(
        WARN, "energy counter", f"unreadable, so energy per token is absent: {facts.get('gpu_total_energy_mj_absent')}"
    )
