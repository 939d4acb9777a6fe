"""Facts about the machine and the software, for pytest-benchmark's ``machine_info``.

One small ``collect_*`` function per source; each returns a flat dict and never raises:
a fact that cannot be read is recorded as ``"<key>_absent": reason``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from typing import Any

from paddle_llm_bench.core.record import FactValue, MachineFacts, Readings
from paddle_llm_bench.runtime.device import Device, import_paddle, paddle_version_info
from paddle_llm_bench.runtime.models import INJECT_STEP_MS


def collect_software() -> Readings:
    import paddlenlp

    return {
        **paddle_version_info(),
        "paddlenlp_version": paddlenlp.__version__,
        "python_version": platform.python_version(),
    }


def collect_cpu() -> Readings:
    import psutil

    from paddle_llm_bench.runtime.device import _cpu_model

    return {
        "cpu_model": _cpu_model(),
        "cpu_logical_cores": psutil.cpu_count(logical=True),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "paddle_cpu_threads": _paddle_cpu_threads(),
        "memory_total_bytes": psutil.virtual_memory().total,
    }


def _paddle_cpu_threads() -> int | None:
    try:
        from paddle.base import core

        return int(core.get_num_threads()) if hasattr(core, "get_num_threads") else None
    except Exception:  # noqa: BLE001
        return None


def collect_gpu(device: Device) -> Readings:
    if device.kind != "gpu":
        return {"gpu_absent": "running on the CPU"}
    paddle = import_paddle()
    properties = paddle.device.cuda.get_device_properties(device.index)
    facts: Readings = {
        "gpu_name": properties.name,
        "gpu_memory_total_bytes": int(properties.total_memory),
        "gpu_compute_capability": f"{properties.major}.{properties.minor}",
    }
    try:
        nvml = device.nvml()  # found by UUID or PCI bus id, not by CUDA's index (docs/gpu-path.md)
        pynvml = nvml.pynvml
        facts["gpu_driver_version"] = pynvml.nvmlSystemGetDriverVersion()
        facts["gpu_nvml_name"] = pynvml.nvmlDeviceGetName(nvml.handle)
        facts["gpu_uuid"] = pynvml.nvmlDeviceGetUUID(nvml.handle)
        facts["gpu_mig"] = nvml.mig
    except Exception as error:  # noqa: BLE001 - machine facts must never fail a run
        facts["gpu_driver_version_absent"] = f"NVML unavailable: {type(error).__name__}: {error}"
    return facts


def hardware_fingerprint(facts: Mapping[str, FactValue]) -> str:
    """Which results may be compared with which (baselines, merged shards, saved runs).

    On a GPU: the GPU model, the host's CPU model and the NVIDIA driver's major version (eager decode is
    bound by the host CPU launching kernels, and a new driver branch moves launch costs), e.g.
    ``gpu:NVIDIA H100 80GB HBM3:cpu:Intel(R) Xeon(R) Platinum 8480+:driver550``; an unreadable driver version
    is ``driver?``. On a CPU: the CPU model and its logical cores."""
    cpu = facts.get("cpu_model", "unknown")
    if facts.get("gpu_name"):
        return f"gpu:{facts['gpu_name']}:cpu:{cpu}:driver{driver_major(facts.get('gpu_driver_version'))}"
    return f"cpu:{cpu}:{facts.get('cpu_logical_cores', '?')}cores"


def driver_major(version: Any) -> str:
    """``"550"`` of an NVIDIA driver version such as ``"550.54.15"`` (str or bytes), ``"?"`` where unknown."""
    text = version.decode() if isinstance(version, bytes) else str(version or "")
    major = text.strip().split(".", 1)[0]
    return major if major.isdigit() else "?"


def collect_all(device: Device) -> MachineFacts:
    facts: Readings = {"device": device.describe()}
    collectors: list[Callable[[], Readings]] = [collect_software, collect_cpu, lambda: collect_gpu(device)]
    for collect in collectors:
        try:
            facts.update(collect())
        except Exception as error:  # noqa: BLE001 - machine facts must never fail a run
            facts[f"{getattr(collect, '__name__', 'collect')}_absent"] = f"{type(error).__name__}: {error}"
    facts["hardware_fingerprint"] = hardware_fingerprint(facts)
    if os.environ.get(INJECT_STEP_MS):
        facts["injected_step_ms"] = os.environ[INJECT_STEP_MS]  # a calibration run: its speed is not real
    return MachineFacts.model_validate(facts)
