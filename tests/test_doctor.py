"""`paddle-llm-bench doctor`: the CPU path end to end, NVML absent or present, and the pure judgements.

The same assertions hold on a machine without an NVIDIA driver and on a GPU runner: the CPU path is
asked for with ``--device cpu``, and NVML comes from the fake (tests/fake_nvml.py), with or without a
driver, wherever a test is about what NVML says."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest
from fake_nvml import GIB, FakeMig, FakeNvml, FakeProcess, gpus, install, mig_uuid_of, uuid_of

from paddle_llm_bench import cli
from paddle_llm_bench.core.metrics import MIB
from paddle_llm_bench.runtime.device import import_paddle
from paddle_llm_bench.runtime.doctor import (
    nvml_checks,
    nvml_process_reading,
    nvml_report,
    other_processes,
    why_on_the_cpu,
)
from paddle_llm_bench.runtime.doctor_checks import (
    FAIL,
    OK,
    SKIP,
    WARN,
    Check,
    DoctorReport,
    GpuProcess,
    judge_bandwidth,
    judge_memory_probes,
    judge_other_processes,
    judge_peak_rss_reset,
    judge_synchronization,
    judge_throttle,
)
from paddle_llm_bench.runtime.nvml import NvmlUnavailable, decode_throttle_reasons


def nvml_initializes() -> bool:
    """Whether the real pynvml finds a driver here (a GPU runner), as opposed to NVMLError_LibraryNotFound."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def without_a_driver(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """NVML as on a machine without an NVIDIA driver: nvmlInit raises what the real pynvml raises there."""
    fake = install(monkeypatch, FakeNvml([]))
    fake.fail("nvmlInit", pynvml.NVMLError_LibraryNotFound)
    return fake


def paddle_build_text() -> str:
    """What the paddle line says about this Paddle build (paddlepaddle: no CUDA; paddlepaddle-gpu: its CUDA)."""
    paddle = import_paddle()
    return f"CUDA {paddle.version.cuda()}" if paddle.is_compiled_with_cuda() else "compiled without CUDA"


def test_doctor_on_this_cpu_reports_what_it_checked_and_what_needs_a_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    without_a_driver(monkeypatch)
    assert cli.main(["doctor", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    build = paddle_build_text()
    assert any(line.startswith("ok: paddle: Paddle ") and line.endswith(f", {build})") for line in lines), lines
    assert any(line.startswith("ok: device: cpu (") for line in lines)
    assert any(line.startswith("ok: peak RSS: reset through /proc/self/clear_refs works") for line in lines)
    assert any(line.startswith("ok: host allocator: statistics readable") for line in lines)
    assert any(line.startswith("skip: synchronization: needs a GPU") for line in lines)
    assert any(line.startswith("skip: memory probes: needs a GPU") for line in lines)
    assert any(line.startswith("skip: nvml: needs a GPU") and "NVMLError_LibraryNotFound" in line for line in lines)
    assert "skipped: needs a GPU: synchronization, memory probes, nvml" in lines
    assert lines[-1] == "doctor: no check failed"
    assert all(line.split(":")[0] in ("ok", "warn", "skip", "FAIL", "skipped", "doctor") for line in lines)


def test_doctor_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    without_a_driver(monkeypatch)
    assert cli.main(["doctor", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["failed"] is False
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert statuses["peak RSS"] == OK and statuses["synchronization"] == SKIP and statuses["nvml"] == SKIP
    assert report["facts"]["paddle_compiled_with_cuda"] is bool(import_paddle().is_compiled_with_cuda())
    assert report["facts"]["nvml_absent"].startswith("NVML unavailable: NVMLError_LibraryNotFound")


def test_the_cpu_path_on_a_machine_with_a_gpu_says_paddle_runs_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # --device cpu on a GPU runner: NVML answers, and the doctor warns that the GPU goes unused.
    install(monkeypatch, FakeNvml(gpus(1)))
    assert cli.main(["doctor", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("ok: device: cpu (") for line in lines)
    assert any(line.startswith("ok: nvml: CUDA device 0: NVIDIA H100 80GB HBM3, driver 550.54.15") for line in lines)
    why = why_on_the_cpu(bool(import_paddle().is_compiled_with_cuda()))
    assert f"warn: device: NVIDIA H100 80GB HBM3 is present but Paddle does not run on it: {why}" in lines
    assert "skipped: needs a GPU: synchronization, memory probes" in lines
    assert lines[-1] == "doctor: no check failed"


@pytest.mark.parametrize(
    ("compiled_with_cuda", "why"),
    [(False, "Paddle was built without CUDA"), (True, "no GPU is visible")],
    ids=["cpu-build", "gpu-build-without-a-gpu"],
)
def test_asking_for_a_gpu_without_one_fails_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], compiled_with_cuda: bool, why: str
) -> None:
    # The build and the GPU count are what detect_device reads; set here, so a GPU runner checks this path too.
    paddle = import_paddle()
    monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: compiled_with_cuda)
    monkeypatch.setattr(paddle.device.cuda, "device_count", lambda: 0)
    assert cli.main(["doctor", "--device", "gpu"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL: device: --llm-device gpu was asked for but {why}" in out


def test_nvml_report_without_a_driver_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    without_a_driver(monkeypatch)
    assert nvml_report(0) == {
        "nvml_absent": "NVML unavailable: NVMLError_LibraryNotFound: NVML Shared Library Not Found"
    }
    with pytest.raises(NvmlUnavailable, match="NVMLError_LibraryNotFound"):
        other_processes(0, own_pid=1)


@pytest.mark.skipif(nvml_initializes(), reason="asserts the real pynvml's no-driver error; this machine has a driver")
def test_nvml_report_with_the_real_pynvml_and_no_driver_says_why() -> None:
    # The real pynvml on a machine without an NVIDIA driver: nvmlInit raises NVMLError_LibraryNotFound.
    assert nvml_report(0) == {
        "nvml_absent": "NVML unavailable: NVMLError_LibraryNotFound: NVML Shared Library Not Found"
    }
    with pytest.raises(NvmlUnavailable, match="NVMLError_LibraryNotFound"):
        other_processes(0, own_pid=1)


def test_throttle_bitmask_decoding() -> None:
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x1) == ["gpu_idle"]
    assert decode_throttle_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert decode_throttle_reasons(0x7FF) == [
        "gpu_idle",
        "applications_clocks_setting",
        "sw_power_cap",
        "hw_slowdown",
        "sync_boost",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "display_clock_setting",
        "board_limit",
        "reliability",
    ]
    assert decode_throttle_reasons(0x1000 | 0x1) == ["gpu_idle", "unknown_0x1000"]


def test_throttle_judgement_warns_only_for_slowdowns() -> None:
    assert judge_throttle(0x1).status == OK
    assert judge_throttle(0x0).status == OK
    slowed = judge_throttle(0x4 | 0x1)
    assert slowed.status == WARN and "sw_power_cap" in slowed.message and "gpu_idle" not in slowed.message


def test_synchronization_judgement() -> None:
    assert judge_synchronization(0.0003, 0.025, 0.0251).status == OK
    broken = judge_synchronization(0.0003, 0.0004, 0.025)  # the read-back had to wait: sync did not
    assert broken.status == FAIL and "returned before the GPU finished" in broken.message
    blocking = judge_synchronization(0.024, 0.025, 0.0251)  # launches themselves waited
    assert blocking.status == WARN and "CUDA_LAUNCH_BLOCKING" in blocking.message


def test_memory_probe_judgement() -> None:
    block = 256 * MIB
    assert judge_memory_probes(block, 300 * MIB, 800 * MIB).status == OK
    assert judge_memory_probes(0, 0, 500 * MIB).status == FAIL
    assert judge_memory_probes(block, block - 1, 800 * MIB).status == FAIL
    assert judge_memory_probes(block, 300 * MIB, 200 * MIB).status == FAIL
    assert judge_memory_probes(block, 300 * MIB, None).status == WARN
    too_much = judge_memory_probes(block, 300 * MIB, 300 * MIB + 2 * GIB)
    assert too_much.status == WARN and "1024 MiB allowed for the CUDA context" in too_much.message


def test_peak_rss_judgement() -> None:
    block = 64 * MIB
    assert judge_peak_rss_reset(300 * MIB, 364 * MIB, 300 * MIB, block).status == OK
    assert judge_peak_rss_reset(300 * MIB, 310 * MIB, 300 * MIB, block).status == FAIL
    assert judge_peak_rss_reset(300 * MIB, 364 * MIB, 364 * MIB, block).status == FAIL


def test_bandwidth_judgement() -> None:
    check, bandwidth = judge_bandwidth("NVIDIA H100 80GB HBM3", 5120 / 8 * 2619e6 * 2)
    assert check.status == OK and bandwidth == 3350e9
    check, bandwidth = judge_bandwidth("NVIDIA H100 80GB HBM3", 1000e9)
    assert check.status == WARN and bandwidth == 3350e9
    check, bandwidth = judge_bandwidth("NVIDIA B200", 8000e9)
    assert check.status == OK and bandwidth == 8000e9
    check, bandwidth = judge_bandwidth("NVIDIA B200", None)
    assert check.status == WARN and bandwidth is None


def test_other_processes_judgement() -> None:
    assert judge_other_processes([]).status == OK
    check = judge_other_processes([GpuProcess(42, "compute", 512 * MIB), GpuProcess(43, "graphics", None)])
    assert check.status == WARN and "pid 42 (512 MiB)" in check.message and "pid 43 (memory unknown)" in check.message


# Run in a fresh process without Paddle: the fake NVML (tests/fake_nvml.py) with one GPU, or without a driver.
WITHOUT_PADDLE = """
import sys
sys.modules["paddle"] = None
sys.path.insert(0, {tests!r})
import pynvml
import pytest
from fake_nvml import FakeNvml, gpus, install
fake = install(pytest.MonkeyPatch(), FakeNvml(gpus(1)))
if {without_a_driver!r}:
    fake.fail("nvmlInit", pynvml.NVMLError_LibraryNotFound)
from paddle_llm_bench.runtime.doctor import nvml_report
facts = nvml_report(0)
assert {fact!r} in facts, facts
from paddle_llm_bench.cli import main
sys.exit(main(["doctor"]))
"""


@pytest.mark.parametrize(
    ("without_a_driver", "fact", "nvml_line"),
    [
        (False, "gpu_nvml_name", "ok: nvml: CUDA device 0: NVIDIA H100 80GB HBM3"),
        (True, "nvml_absent", "skip: nvml: needs a GPU and its driver"),
    ],
    ids=["gpu", "no-driver"],
)
def test_the_nvml_side_runs_without_paddle(without_a_driver: bool, fact: str, nvml_line: str) -> None:
    # As on a GPU machine with pynvml but no Paddle: importing paddle fails, doctor still reports NVML.
    script = WITHOUT_PADDLE.format(tests=str(Path(__file__).parent), without_a_driver=without_a_driver, fact=fact)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("FAIL: paddle: cannot import paddle")
    assert "skip: synchronization: needs Paddle" in lines
    assert any(line.startswith(nvml_line) for line in lines), lines
    if not without_a_driver:
        unused = "warn: device: NVIDIA H100 80GB HBM3 is present but Paddle does not run on it: Paddle is not installed"
        assert unused in lines


# The GPU path through the fake NVML (tests/fake_nvml.py): what would break on real runners.


def nvml_checks_of(index: int = 0) -> DoctorReport:
    report = DoctorReport()
    nvml_checks(report, index, why_paddle_is_not_on_it=None)
    return report


def status_of(report: DoctorReport, name: str) -> Check:
    (check,) = [check for check in report.checks if check.name == name]
    return check


def one_mig_gpu() -> FakeNvml:
    (gpu,) = gpus(1)
    gpu.migs = [FakeMig(mig_uuid_of(1), "NVIDIA H100 80GB HBM3 MIG 1g.10gb", int(9.75 * GIB))]
    return FakeNvml([gpu])


@pytest.mark.parametrize(
    ("fake", "error"),
    [
        (one_mig_gpu, None),  # a whole MIG-enabled GPU in a non-root container: NO_PERMISSION
        (lambda: FakeNvml(gpus(1)), pynvml.NVMLError_NotSupported),
    ],
    ids=["no-permission-on-a-mig-parent", "not-supported"],
)
def test_a_process_query_nvml_refuses_is_a_warning_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, fake: Callable[[], FakeNvml], error: type[Exception] | None
) -> None:
    installed = install(monkeypatch, fake())
    if error is not None:
        installed.fail("nvmlDeviceGetComputeRunningProcesses", error)
    report = nvml_checks_of()
    assert not report.failed
    check = status_of(report, "other processes")
    assert check.status == WARN and "cannot list the GPU's processes" in check.message
    # the session-start memory probe reads the same list: a reason, not an exception that FAILs the check
    used, why = nvml_process_reading(0)
    assert used is None and why is not None and "cannot list the GPU's processes" in why
    probe = judge_memory_probes(300 * MIB, 300 * MIB, used, nvml_absent_reason=why)
    assert probe.status == WARN and why in probe.message


def test_the_nvml_facts_come_from_the_gpu_cuda_visible_devices_names(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeNvml(gpus(3)), cuda_visible_devices=uuid_of(2))
    fake.gpus[2].name = "NVIDIA H200"
    facts = nvml_report(0)
    assert facts["nvml_index"] == 2 and facts["gpu_uuid"] == uuid_of(2) and facts["gpu_nvml_name"] == "NVIDIA H200"
    assert facts["nvml_device_found_by"] == f"UUID {uuid_of(2)} from CUDA_VISIBLE_DEVICES"
    assert facts["gpu_memory_bandwidth_bytes_per_s"] == 4800e9


def test_throttle_reasons_fall_back_to_the_older_call(monkeypatch: pytest.MonkeyPatch) -> None:
    (gpu,) = gpus(1, clock_event_mask=0x4)
    fake = install(monkeypatch, FakeNvml([gpu]))
    fake.fail("nvmlDeviceGetCurrentClocksEventReasons", pynvml.NVMLError_FunctionNotFound)
    report = nvml_checks_of()
    assert report.facts["gpu_throttle_reasons"] == ["sw_power_cap"]
    check = status_of(report, "throttle reasons")
    assert check.status == WARN and "sw_power_cap" in check.message and "unreadable" not in check.message


def test_a_mig_slice_gets_its_share_of_the_bandwidth_and_no_energy(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, one_mig_gpu(), cuda_visible_devices=mig_uuid_of(1))
    report = nvml_checks_of()
    assert not report.failed
    assert report.facts["gpu_mig"] is True and report.facts["gpu_mig_memory_share"] == 1 / 8
    assert report.facts["gpu_memory_bandwidth_bytes_per_s"] == pytest.approx(3350e9 / 8)
    bandwidth = status_of(report, "memory bandwidth")
    assert bandwidth.status == OK and "MIG slice with 1/8 of the memory" in bandwidth.message
    assert status_of(report, "energy counter").status == WARN
    assert status_of(report, "other processes").status == OK  # the slice's own list answers
    assert "MIG slice NVIDIA H100 80GB HBM3 MIG 1g.10gb of NVIDIA H100 80GB HBM3" in status_of(report, "nvml").message


def test_a_whole_gpu_reports_its_energy_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeNvml(gpus(1)))
    assert status_of(nvml_checks_of(), "energy counter").status == OK
    fake.fail("nvmlDeviceGetTotalEnergyConsumption", pynvml.NVMLError_NotSupported)
    check = status_of(nvml_checks_of(), "energy counter")
    assert check.status == WARN and "NVMLError_NotSupported" in check.message


def test_an_early_r535_driver_warns_that_process_entries_are_garbled(monkeypatch: pytest.MonkeyPatch) -> None:
    (gpu,) = gpus(1)
    gpu.processes = [FakeProcess(10, GIB), FakeProcess(11, GIB)]
    install(monkeypatch, FakeNvml([gpu], driver_version="535.54.03"))
    report = nvml_checks_of()
    check = status_of(report, "other processes")
    assert not report.failed and check.status == WARN and "garbled" in check.message
