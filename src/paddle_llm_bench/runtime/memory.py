"""Peak memory of one case, from every probe the device offers.

- ``peak_allocated_bytes`` / ``peak_reserved_bytes``: Paddle's allocator (GPU allocator on a GPU,
  host allocator on a CPU), peaks reset before the measured rounds.
- ``peak_nvml_process_bytes``: what NVML says this process holds on the GPU (allocator pool plus
  CUDA context), the maximum over the ends of the measured rounds. GPU only.
- ``peak_rss_bytes``: the process's peak resident set (``VmHWM``), reset per case through
  ``/proc/self/clear_refs``. Linux only.

A probe that cannot give a figure here is reported in ``absent`` with the reason, never as 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from paddle_llm_bench.core.metrics import MEMORY, metric_names
from paddle_llm_bench.runtime.device import Device, import_paddle
from paddle_llm_bench.runtime.nvml import (
    NvmlDevice,
    NvmlUnavailable,
    ProcessesUnreadable,
    process_used_bytes,
)


@dataclass(frozen=True)
class MemoryPeaks:
    bytes_by_metric: dict[str, int] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)


def read_vm_hwm_bytes(status_path: Path = Path("/proc/self/status")) -> int:
    for line in status_path.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmHWM line in {status_path}")


class NvmlProcessMemory:
    """This process's GPU memory as NVML sees it, sampled after each round; the peak, or why not.

    An NVML error while sampling (a driver hiccup, a permission NVML withdraws) makes the metric
    absent with the reason and stops the sampling; it never fails the case.
    """

    def __init__(self, device: NvmlDevice | None, absent_reason: str | None = None) -> None:
        self.device = device
        self.absent_reason = absent_reason
        self.peak_bytes = 0
        self.samples = 0

    def sample(self) -> None:
        if self.device is None or self.absent_reason is not None:
            return
        self.samples += 1
        try:
            used = process_used_bytes(self.device, os.getpid())
        except ProcessesUnreadable as error:
            self.absent_reason = f"NVML failed at sample {self.samples}: {error}"
            return
        if used is None:
            self.absent_reason = (
                f"NVML lists no GPU memory for this process (pid {os.getpid()}); in a container NVML may see other PIDs"
            )
        else:
            self.peak_bytes = max(self.peak_bytes, used)

    def peak(self) -> tuple[int | None, str]:
        """The peak, or None and why there is none."""
        if self.absent_reason is not None:
            return None, self.absent_reason
        if not self.peak_bytes:
            return None, "not sampled (no measured round completed)"
        return self.peak_bytes, ""


def open_nvml_process_memory(device: Device) -> NvmlProcessMemory:
    if device.kind != "gpu":
        return NvmlProcessMemory(None, "no GPU: NVML reports GPU memory only")
    try:
        return NvmlProcessMemory(device.nvml())
    except NvmlUnavailable as error:
        return NvmlProcessMemory(None, str(error))


class MemoryTracker:
    """``reset()`` before the measured rounds, ``sample()`` after each, ``read()`` at the end."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._absent: dict[str, str] = {}
        self._nvml = open_nvml_process_memory(device)

    def reset(self) -> None:
        self._nvml.peak_bytes = 0
        paddle = import_paddle()
        if self.device.kind == "gpu":
            paddle.device.cuda.reset_max_memory_allocated(self.device.index)
            paddle.device.cuda.reset_max_memory_reserved(self.device.index)
        else:
            from paddle.base import core

            core.host_memory_stat_reset_peak_value("Allocated", 0)
            core.host_memory_stat_reset_peak_value("Reserved", 0)
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._absent.pop("peak_rss_bytes", None)
        except OSError as error:
            self._absent["peak_rss_bytes"] = f"cannot reset the peak RSS (/proc/self/clear_refs): {error}"

    def sample(self) -> None:
        self._nvml.sample()

    def nvml_peak(self) -> tuple[int | None, str]:
        """NVML's peak for this process so far, or None and why there is none (GPU only)."""
        return self._nvml.peak()

    def read(self) -> MemoryPeaks:
        paddle = import_paddle()
        values: dict[str, int] = {}
        if self.device.kind == "gpu":
            values["peak_allocated_bytes"] = int(paddle.device.cuda.max_memory_allocated(self.device.index))
            values["peak_reserved_bytes"] = int(paddle.device.cuda.max_memory_reserved(self.device.index))
        else:
            from paddle.base import core

            values["peak_allocated_bytes"] = int(core.host_memory_stat_peak_value("Allocated", 0))
            values["peak_reserved_bytes"] = int(core.host_memory_stat_peak_value("Reserved", 0))
        nvml_peak, why = self.nvml_peak()
        if nvml_peak is not None:
            values["peak_nvml_process_bytes"] = nvml_peak
        else:
            self._absent["peak_nvml_process_bytes"] = why
        if "peak_rss_bytes" not in self._absent:
            try:
                values["peak_rss_bytes"] = read_vm_hwm_bytes()
            except OSError as error:
                self._absent["peak_rss_bytes"] = f"cannot read VmHWM: {error}"
        absent = {k: v for k, v in self._absent.items() if k not in values}
        for metric in metric_names(MEMORY):
            if metric not in values and metric not in absent:
                absent[metric] = "not sampled (no measured round completed)"
        return MemoryPeaks(values, absent)
