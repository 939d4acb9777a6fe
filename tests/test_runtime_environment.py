"""The hardware fingerprint (runtime/environment.py): which results may be compared with which.

On a GPU, eager decode is bound by the host CPU that launches the kernels, and a driver branch moves
launch costs: two runners with the same GPU but another CPU or driver branch are different hardware.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench.results.baselines import baseline_path
from paddle_llm_bench.runtime.device import detect_device
from paddle_llm_bench.runtime.environment import collect_all, driver_major, hardware_fingerprint

H100_HOST: dict[str, Any] = {
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "gpu_driver_version": "550.54.15",
    "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
    "cpu_logical_cores": 224,
}


def test_on_a_gpu_the_fingerprint_is_the_gpu_the_host_cpu_and_the_driver_branch() -> None:
    assert hardware_fingerprint(H100_HOST) == "gpu:NVIDIA H100 80GB HBM3:cpu:Intel(R) Xeon(R) Platinum 8480+:driver550"


@pytest.mark.parametrize(
    "other",
    [{"cpu_model": "AMD EPYC 7763 64-Core Processor"}, {"gpu_driver_version": "535.183.01"}],
    ids=["another-cpu", "another-driver-branch"],
)
def test_runners_with_the_same_gpu_but_another_cpu_or_driver_branch_differ(other: dict[str, Any]) -> None:
    assert hardware_fingerprint({**H100_HOST, **other}) != hardware_fingerprint(H100_HOST)


def test_the_same_driver_branch_and_another_core_count_are_the_same_hardware() -> None:
    same = {**H100_HOST, "gpu_driver_version": "550.127.05", "cpu_logical_cores": 112}
    assert hardware_fingerprint(same) == hardware_fingerprint(H100_HOST)


def test_an_unreadable_driver_version_is_marked_unknown() -> None:
    facts = {k: v for k, v in H100_HOST.items() if k != "gpu_driver_version"}
    assert hardware_fingerprint(facts).endswith(":driver?")
    assert driver_major(b"470.223.02") == "470" and driver_major(None) == "?" and driver_major("n/a") == "?"


def test_the_cpu_fingerprint_is_the_cpu_model_and_its_cores() -> None:
    assert hardware_fingerprint({"cpu_model": "AMD EPYC 7B13", "cpu_logical_cores": 2}) == "cpu:AMD EPYC 7B13:2cores"
    facts = collect_all(detect_device("cpu")).document()
    assert "gpu_name" not in facts and facts["cpu_model"] and "gpu_absent" in facts  # kept though not typed
    assert facts["hardware_fingerprint"] == f"cpu:{facts['cpu_model']}:{facts['cpu_logical_cores']}cores"


def test_each_gpu_fingerprint_has_its_own_baseline_file(tmp_path: Path) -> None:
    other_cpu = hardware_fingerprint({**H100_HOST, "cpu_model": "AMD EPYC 7763 64-Core Processor"})
    assert baseline_path(tmp_path, hardware_fingerprint(H100_HOST)) != baseline_path(tmp_path, other_cpu)
