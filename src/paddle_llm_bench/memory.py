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
from typing import Any

from .device import Device, import_paddle

MEMORY_METRICS = ("peak_allocated_bytes", "peak_reserved_bytes", "peak_nvml_process_bytes", "peak_rss_bytes")


@dataclass(frozen=True)
class MemoryPeaks:
    bytes_by_metric: dict[str, int] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)


def read_vm_hwm_bytes(status_path: Path = Path("/proc/self/status")) -> int:
    for line in status_path.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmHWM line in {status_path}")


class MemoryTracker:
    """``reset()`` before the measured rounds, ``sample()`` after each, ``read()`` at the end."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._nvml_peak_bytes = 0
        self._absent: dict[str, str] = {}
        self._nvml_handle: Any = None
        if device.kind == "gpu":
            self._nvml_handle = self._open_nvml()
        else:
            self._absent["peak_nvml_process_bytes"] = "no GPU: NVML reports GPU memory only"

    def _open_nvml(self) -> Any:
        try:
            import pynvml

            pynvml.nvmlInit()
            return pynvml.nvmlDeviceGetHandleByIndex(nvml_index(self.device.index))
        except Exception as error:  # noqa: BLE001 - any NVML failure makes this one metric absent
            self._absent["peak_nvml_process_bytes"] = f"NVML unavailable: {type(error).__name__}: {error}"
            return None

    def reset(self) -> None:
        self._nvml_peak_bytes = 0
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
        if self._nvml_handle is None:
            return
        used = nvml_process_used_bytes(self._nvml_handle, os.getpid())
        if used is None:
            self._absent["peak_nvml_process_bytes"] = (
                f"NVML lists no GPU memory for this process (pid {os.getpid()}); in a container NVML may see other PIDs"
            )
        else:
            self._nvml_peak_bytes = max(self._nvml_peak_bytes, used)

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
        if self._nvml_peak_bytes and "peak_nvml_process_bytes" not in self._absent:
            values["peak_nvml_process_bytes"] = self._nvml_peak_bytes
        if "peak_rss_bytes" not in self._absent:
            try:
                values["peak_rss_bytes"] = read_vm_hwm_bytes()
            except OSError as error:
                self._absent["peak_rss_bytes"] = f"cannot read VmHWM: {error}"
        absent = {k: v for k, v in self._absent.items() if k not in values}
        for metric in MEMORY_METRICS:
            if metric not in values and metric not in absent:
                absent[metric] = "not sampled (no measured round completed)"
        return MemoryPeaks(values, absent)


def nvml_index(paddle_index: int) -> int:
    """NVML numbers GPUs physically; CUDA_VISIBLE_DEVICES may renumber them for Paddle."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if paddle_index < len(visible) and visible[paddle_index].isdigit():
        return int(visible[paddle_index])
    return paddle_index


def nvml_process_used_bytes(handle: Any, pid: int) -> int | None:
    """GPU memory NVML attributes to ``pid`` on ``handle``'s device, or None if it lists none."""
    import pynvml

    for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if process.pid == pid and process.usedGpuMemory is not None:
            return int(process.usedGpuMemory)
    return None
