"""NVML on the GPU path, through the fake NVML (tests/fake_nvml.py): finding the right GPU, MIG,
errors that become reasons, the process list, energy counters, clock-limit violation counters and clock
events; the nvidia-ml-py pin."""

from __future__ import annotations

import importlib.metadata
import os
from importlib.metadata import version
from pathlib import Path

import pynvml as real_pynvml
import pytest
import tomllib
from fake_nvml import GIB, FakeMig, FakeNvml, FakeProcess, ViolationTime, gpus, install, mig_uuid_of, uuid_of
from packaging.requirements import Requirement

from paddle_llm_bench.core.metrics import RoundTimes
from paddle_llm_bench.runtime.device import Device, device_kind_without_paddle
from paddle_llm_bench.runtime.energy import NvmlEnergyCounter, RaplEnergyCounter
from paddle_llm_bench.runtime.measure import clock_events_summary, round_probes
from paddle_llm_bench.runtime.memory import MemoryTracker
from paddle_llm_bench.runtime.nvml import (
    ClockEvents,
    CudaIdentity,
    NvmlUnavailable,
    ProcessesUnreadable,
    ViolationCounters,
    clock_event_mask,
    garbled_process_entries,
    open_device,
    process_used_bytes,
)

ROOT = Path(__file__).resolve().parents[1]


def gpu_device() -> Device:
    """A new Device for each test: a Device keeps the NVML it opened, and each test installs its own fake."""
    return Device("gpu", 0, "NVIDIA H100 80GB HBM3")


POWER, THERMAL = real_pynvml.NVML_PERF_POLICY_POWER, real_pynvml.NVML_PERF_POLICY_THERMAL
BOARD_LIMIT, RELIABILITY = real_pynvml.NVML_PERF_POLICY_BOARD_LIMIT, real_pynvml.NVML_PERF_POLICY_RELIABILITY
MS = 1_000_000  # ns


def mig_gpu(processes: list[FakeProcess] | None = None) -> FakeNvml:
    """One H100 with MIG on: a 1g.10gb slice (this process on it) and a 3g.40gb slice."""
    (gpu,) = gpus(1)
    gpu.migs = [
        FakeMig(mig_uuid_of(1), "NVIDIA H100 80GB HBM3 MIG 1g.10gb", int(9.75 * GIB), processes or []),
        FakeMig(mig_uuid_of(2), "NVIDIA H100 80GB HBM3 MIG 3g.40gb", int(39.5 * GIB)),
    ]
    return FakeNvml([gpu])


def test_the_fake_uses_only_names_the_real_pynvml_has() -> None:
    module = FakeNvml(gpus(1)).module()
    names = [name for name in vars(module) if not name.startswith("__")]
    assert names and all(hasattr(real_pynvml, name) for name in names), [
        name for name in names if not hasattr(real_pynvml, name)
    ]
    assert module.NVMLError_NoPermission is real_pynvml.NVMLError_NoPermission


def test_the_fakes_violation_record_has_the_real_structs_fields() -> None:
    real_fields = [name for name, _ in real_pynvml.c_nvmlViolationTime_t._fields_]
    assert real_fields == list(ViolationTime.__dataclass_fields__) == ["referenceTime", "violationTime"]


# Item 3: the right GPU, by UUID or PCI bus id, not by CUDA's index.


@pytest.mark.parametrize("entry", [uuid_of(2), uuid_of(2)[:12]])
def test_a_uuid_in_cuda_visible_devices_picks_that_gpu_not_gpu_0(monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    fake = install(monkeypatch, FakeNvml(gpus(3)), cuda_visible_devices=f"{entry},{uuid_of(0)}")
    device = open_device(0)
    assert device.handle.gpu is fake.gpus[2] and not device.mig
    assert f"UUID {entry} from CUDA_VISIBLE_DEVICES" == device.found_by
    assert open_device(1).handle.gpu is fake.gpus[0]


def test_a_mig_uuid_picks_the_slice_and_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, mig_gpu(), cuda_visible_devices=mig_uuid_of(2))
    device = open_device(0)
    assert device.mig and device.handle.mig is fake.gpus[0].migs[1]
    assert device.gpu_handle.mig is None and device.gpu_handle.gpu is fake.gpus[0]


def test_a_uuid_nvml_does_not_know_is_an_error_not_gpu_0(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeNvml(gpus(2)), cuda_visible_devices="GPU-deadbeef-0000-0000-0000-000000000000")
    with pytest.raises(NvmlUnavailable, match="no GPU or MIG device NVML knows has the UUID 'GPU-deadbeef"):
        open_device(0)


def test_cudas_fastest_first_order_is_mapped_by_the_drivers_uuid_or_pci_bus_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CUDA's device 0 is NVML's GPU 1 (CUDA_DEVICE_ORDER=FASTEST_FIRST on a host with two different GPUs).
    fake = install(monkeypatch, FakeNvml(gpus(2)))
    by_uuid = open_device(0, identity_of=lambda ordinal: CudaIdentity(uuid_of(1).removeprefix("GPU-"), None))
    assert by_uuid.handle.gpu is fake.gpus[1] and "from the CUDA driver" in by_uuid.found_by
    by_bus = open_device(0, identity_of=lambda ordinal: CudaIdentity(None, "0000:3B:00.0"))
    assert by_bus.handle.gpu is fake.gpus[1] and by_bus.found_by == "PCI bus id 0000:3B:00.0"


def test_an_index_is_the_last_resort_and_says_what_it_assumes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeNvml(gpus(2)), cuda_visible_devices="1")
    device = open_device(0)
    assert device.handle.gpu is fake.gpus[1]
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in device.found_by and "right only if" in device.found_by


# Item 2: one NVML error while sampling makes the metric absent; it never fails the case.


def test_an_nvml_error_while_sampling_process_memory_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    (gpu,) = gpus(1)
    gpu.processes = [FakeProcess(os.getpid(), 3 * GIB)]
    fake = install(monkeypatch, FakeNvml([gpu]))
    fake.fail("nvmlDeviceGetComputeRunningProcesses", real_pynvml.NVMLError_GpuIsLost, after_calls=1)
    tracker = MemoryTracker(gpu_device())  # reset() and read() need Paddle on a GPU; sample() is NVML only
    tracker.sample()
    assert tracker.nvml_peak() == (3 * GIB, "")
    tracker.sample()  # raised NVMLError_GpuIsLost before
    tracker.sample()
    peak, why = tracker.nvml_peak()
    assert peak is None and "NVML failed at sample 2" in why and "NVMLError_GpuIsLost" in why
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses"] == 2  # sampling stopped after the error


def test_process_memory_on_a_mig_slice_is_read_from_the_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    pid = os.getpid()
    install(monkeypatch, mig_gpu([FakeProcess(pid, 2 * GIB)]), cuda_visible_devices=mig_uuid_of(1))
    tracker = MemoryTracker(gpu_device())
    tracker.sample()
    assert tracker.nvml_peak() == (2 * GIB, "")


def test_no_permission_on_a_whole_mig_gpu_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, mig_gpu())
    with pytest.raises(ProcessesUnreadable, match=r"NVMLError_NoPermission.*need root"):
        process_used_bytes(open_device(0), 1)


# Item 8: process entries an early R535 driver garbles; a driver without the _v3 query.


def test_early_r535_drivers_garble_process_entries_after_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    assert garbled_process_entries("535.54.03") is not None and garbled_process_entries("535.43.02") is not None
    assert garbled_process_entries("535.98") is None and garbled_process_entries("550.54.15") is None
    assert garbled_process_entries("530.30.02") is None and garbled_process_entries(None) is None
    (gpu,) = gpus(1)
    gpu.processes = [FakeProcess(10, GIB), FakeProcess(11, GIB)]
    install(monkeypatch, FakeNvml([gpu], driver_version="535.54.03"))
    with pytest.raises(ProcessesUnreadable, match=r"driver 535\.54\.03 .* garbled"):
        process_used_bytes(open_device(0), 11)
    gpu.processes = gpu.processes[:1]  # the first entry is read right
    assert process_used_bytes(open_device(0), 10) == GIB


def test_a_driver_without_the_v3_process_query_is_asked_with_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    (gpu,) = gpus(1)
    gpu.processes = [FakeProcess(10, GIB)]
    install(monkeypatch, FakeNvml([gpu], driver_version="470.223.02", has_v3_processes=False))
    assert process_used_bytes(open_device(0), 10) == GIB


def test_nvidia_ml_py_is_pinned_to_the_tested_range_and_the_installed_one_is_in_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (spec,) = [Requirement(r) for r in project["dependencies"] if r.startswith("nvidia-ml-py")]
    assert str(spec.specifier) == "<14,>=12.535.108"
    assert version("nvidia-ml-py") in spec.specifier
    assert "12.535.77" not in spec.specifier  # reads a larger process record: garbled on every other driver


# Item 5: the clock event reasons fall back to the older call; clock limits during the rounds come from
# NVML's violation counters, read right before each round's start stamp and right after its end stamp.


def test_clock_events_fall_back_when_the_driver_lacks_the_newer_call(monkeypatch: pytest.MonkeyPatch) -> None:
    (gpu,) = gpus(1, clock_event_mask=0x4)
    fake = install(monkeypatch, FakeNvml([gpu]))
    fake.fail("nvmlDeviceGetCurrentClocksEventReasons", real_pynvml.NVMLError_FunctionNotFound)
    device = open_device(0)
    assert clock_event_mask(device.pynvml, device.gpu_handle) == 0x4
    assert fake.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 1


def round_of(wall_ms: int, mask: int | None = 0x1) -> RoundTimes:
    """A measured round of ``wall_ms`` (two steps) whose clock event mask, read after it, is ``mask``."""
    return RoundTimes(0, (wall_ms * MS // 2, wall_ms * MS), wall_ms * MS, clock_event_mask=mask)


def test_counters_that_advance_during_a_round_give_the_warning_though_the_gpu_is_idle_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (gpu,) = gpus(1, violation_ns={POWER: 7 * MS})  # counters are cumulative: some ns before the case
    install(monkeypatch, FakeNvml([gpu]))
    counters = ViolationCounters(open_device(0))
    deltas = []
    for capped_ms in (0, 30, 0):
        start = counters.read()  # right before the round's start stamp
        gpu.hold_back(POWER, capped_ms * MS)  # a power cap during the round
        deltas.append(counters.delta(start, counters.read()))  # right after its end stamp
    summary = clock_events_summary([round_of(100)] * 3, deltas, counters.not_counted)
    assert summary is not None
    assert summary.violation_ns["power"] == [0, 30 * MS, 0] and summary.violation_ns["thermal"] == [0, 0, 0]
    assert summary.violation_percent_of_round["power"] == [0.0, 30.0, 0.0]
    assert summary.held_back_by == ["power"] and summary.rounds_held_back == 1
    assert summary.reasons_after_rounds == ["gpu_idle"]  # what the old after-the-round mask saw
    assert summary.warning.startswith("clocks held back during 1 of 3 measured rounds (power limit up to 30.0 %")


def test_counters_that_do_not_advance_during_the_rounds_give_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    (gpu,) = gpus(1)
    install(monkeypatch, FakeNvml([gpu]))
    counters = ViolationCounters(open_device(0))
    deltas = []
    for _ in range(3):
        start = counters.read()
        end = counters.read()
        deltas.append(counters.delta(start, end))
        gpu.hold_back(THERMAL, 50 * MS)  # between rounds, outside the timed span: not the rounds' concern
    summary = clock_events_summary([round_of(100, mask=0x4)] * 3, deltas)  # a power cap bit read at idle
    assert summary is not None and summary.held_back_by == [] and summary.rounds_held_back == 0
    assert not summary.warning and "warning" not in summary.model_dump(exclude_defaults=True)
    assert set(summary.violation_ns) == {"power", "thermal", "board_limit", "reliability"}


def test_the_summary_needs_every_round_read() -> None:
    assert clock_events_summary([round_of(100)] * 2, [{"power": 0, "thermal": 0}, None]) is None
    assert clock_events_summary([], []) is None
    summary = clock_events_summary([round_of(100, mask=None)], [{"power": 1, "thermal": 0}])
    assert summary is not None and summary.masks_after_round is None


@pytest.mark.parametrize(
    "error",
    [real_pynvml.NVMLError_NotSupported, real_pynvml.NVMLError_FunctionNotFound, real_pynvml.NVMLError_NoPermission],
)
def test_an_unsupported_violation_call_makes_clock_limits_absent_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    fake = install(monkeypatch, FakeNvml(gpus(1)))
    fake.fail("nvmlDeviceGetViolationStatus", error)
    counters = ViolationCounters(open_device(0))
    assert counters.read() is None and counters.read() is None
    assert fake.calls["nvmlDeviceGetViolationStatus"] == 1  # not asked again
    reason = str(counters.absent_reason)
    assert "power violation counter is unreadable" in reason and error.__name__ in reason
    assert clock_events_summary([round_of(100)], [counters.delta(None, None)]) is None


def test_limits_a_gpu_does_not_count_are_left_out_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    (gpu,) = gpus(1, uncounted_policies=frozenset({BOARD_LIMIT, RELIABILITY}))
    install(monkeypatch, FakeNvml([gpu]))
    counters = ViolationCounters(open_device(0))
    start = counters.read()
    gpu.hold_back(THERMAL, 10 * MS)
    delta = counters.delta(start, counters.read())
    assert delta == {"power": 0, "thermal": 10 * MS} and counters.absent_reason is None
    assert set(counters.not_counted) == {"board_limit", "reliability"}
    assert "NVMLError_NotSupported" in counters.not_counted["reliability"]
    summary = clock_events_summary([round_of(100)], [delta], counters.not_counted)
    assert summary is not None and summary.not_counted == counters.not_counted and summary.held_back_by == ["thermal"]


def test_violation_counters_on_a_mig_slice_are_the_physical_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, mig_gpu(), cuda_visible_devices=mig_uuid_of(1))
    counters = ViolationCounters(open_device(0))  # the slice's own handle answers NOT_SUPPORTED in the fake
    start = counters.read()
    fake.gpus[0].hold_back(POWER, MS)
    assert counters.delta(start, counters.read()) == {"power": MS, "thermal": 0, "board_limit": 0, "reliability": 0}


def test_violation_counters_failing_mid_case_stop_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeNvml(gpus(1)))
    fake.fail("nvmlDeviceGetViolationStatus", real_pynvml.NVMLError_GpuIsLost, after_calls=4)
    counters = ViolationCounters(open_device(0))
    start = counters.read()  # 4 calls: one per policy
    assert start is not None and counters.delta(start, counters.read()) is None
    assert "became unreadable" in str(counters.absent_reason) and "NVMLError_GpuIsLost" in str(counters.absent_reason)


def test_a_clock_event_reader_that_fails_stops_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeNvml(gpus(1)))
    fake.fail("nvmlDeviceGetCurrentClocksThrottleReasons", real_pynvml.NVMLError_NotSupported)
    fake.fail("nvmlDeviceGetCurrentClocksEventReasons", real_pynvml.NVMLError_NotSupported)
    reader = ClockEvents(open_device(0))
    assert reader.read() is None and reader.read() is None
    assert reader.absent_reason is not None and "NVMLError_NotSupported" in reader.absent_reason


# Energy counters.


def test_the_gpu_energy_counter_gives_microjoules_between_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeNvml(gpus(1)))
    energy, clock_events, violations = round_probes(gpu_device())
    assert isinstance(energy, NvmlEnergyCounter) and clock_events.read() == 0x1 and violations.read() is not None
    start, end = energy.read(), energy.read()
    assert energy.delta_uj(start, end) == 700_000 and energy.absent_reason is None


def test_energy_is_absent_with_the_reason_on_a_mig_slice_or_an_old_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, mig_gpu(), cuda_visible_devices=mig_uuid_of(1))
    on_mig = NvmlEnergyCounter(open_device(0))
    assert on_mig.read() is None and "MIG slice" in str(on_mig.absent_reason)
    fake = install(monkeypatch, FakeNvml(gpus(1)))
    fake.fail("nvmlDeviceGetTotalEnergyConsumption", real_pynvml.NVMLError_NotSupported)
    old = NvmlEnergyCounter(open_device(0))
    assert old.read() is None and "NVMLError_NotSupported" in str(old.absent_reason)


def test_a_device_opens_nvml_once_for_every_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Energy, clock events, violation counters and process memory of every case share one NVML device."""
    fake = install(monkeypatch, FakeNvml(gpus(2)))
    device = gpu_device()
    for _case in range(3):
        energy, _, violations = round_probes(device)
        MemoryTracker(device).sample()
        assert energy.read() is not None and violations.read() is not None
    assert fake.calls["nvmlInit"] == 1
    fake_none = install(monkeypatch, FakeNvml([]))  # a device without NVML remembers why, without asking again
    fake_none.fail("nvmlInit", real_pynvml.NVMLError_LibraryNotFound)
    lacking = gpu_device()
    assert "NVMLError_LibraryNotFound" in str(round_probes(lacking)[0].absent_reason)
    assert "NVMLError_LibraryNotFound" in MemoryTracker(lacking).nvml_peak()[1]
    assert fake_none.calls["nvmlInit"] == 1


def test_without_nvml_the_gpu_probes_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    # No NVIDIA driver: nvmlInit raises what the real pynvml raises there (so also on a runner that has one).
    fake = install(monkeypatch, FakeNvml([]))
    fake.fail("nvmlInit", real_pynvml.NVMLError_LibraryNotFound)
    energy, clock_events, violations = round_probes(gpu_device())
    assert energy.read() is None and "NVMLError_LibraryNotFound" in str(energy.absent_reason)
    assert clock_events.read() is None and "NVMLError_LibraryNotFound" in str(clock_events.absent_reason)
    assert violations.read() is None and "NVMLError_LibraryNotFound" in str(violations.absent_reason)


def write_rapl(root: Path, energy_uj: int, max_range_uj: int = 262_143_328_850) -> None:
    package = root / "intel-rapl:0"
    (package / "intel-rapl:0:0").mkdir(parents=True, exist_ok=True)  # a sub-domain (core): not counted
    (package / "energy_uj").write_text(f"{energy_uj}\n")
    (package / "max_energy_range_uj").write_text(f"{max_range_uj}\n")


def test_rapl_counts_package_energy_across_a_wrap_around(tmp_path: Path) -> None:
    write_rapl(tmp_path, 1_000)
    counter = RaplEnergyCounter(tmp_path)
    start = counter.read()
    write_rapl(tmp_path, 5_000)
    assert counter.delta_uj(start, counter.read()) == 4_000
    write_rapl(tmp_path, 262_143_328_000)
    before = counter.read()
    write_rapl(tmp_path, 150)
    assert counter.delta_uj(before, counter.read()) == 850 + 150


def test_no_rapl_or_an_unreadable_one_is_a_reason(tmp_path: Path) -> None:
    missing = RaplEnergyCounter(tmp_path / "nothing")
    assert missing.read() is None and "no RAPL package domain" in str(missing.absent_reason)
    write_rapl(tmp_path, 1)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("not a number")
    unreadable = RaplEnergyCounter(tmp_path)
    assert unreadable.read() is None and "unreadable" in str(unreadable.absent_reason)


@pytest.mark.parametrize(
    ("gpu_build", "gpu_count", "cuda_visible_devices", "requested", "kind"),
    [
        (True, 2, None, "auto", "gpu"),
        (True, 0, None, "auto", "cpu"),  # a CUDA build on a machine without a GPU
        (True, 2, "", "auto", "cpu"),  # CUDA_VISIBLE_DEVICES hides every GPU
        (True, 2, "-1", "auto", "cpu"),
        (False, 2, None, "auto", "cpu"),  # the CPU build never runs on the GPU
        (False, 0, None, "gpu", "gpu"),  # asked for: the real run refuses it with the reason
        (True, 2, None, "cpu", "cpu"),
    ],
)
def test_the_device_kind_is_found_without_paddle_for_runs_that_measure_nothing(
    monkeypatch: pytest.MonkeyPatch,
    gpu_build: bool,
    gpu_count: int,
    cuda_visible_devices: str | None,
    requested: str,
    kind: str,
) -> None:
    install(monkeypatch, FakeNvml(gpus(gpu_count)), cuda_visible_devices)
    real_distribution = importlib.metadata.distribution

    def distribution(name: str) -> importlib.metadata.Distribution:
        if name == "paddlepaddle-gpu" and not gpu_build:
            raise importlib.metadata.PackageNotFoundError(name)
        return real_distribution("paddlepaddle" if name == "paddlepaddle-gpu" else name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    assert device_kind_without_paddle(requested) == kind
