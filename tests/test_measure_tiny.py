"""The measurement path on the real `tiny` preset: real Paddle, real generate(), CPU, float32.

The model is built into a session cache and loaded once (Suite.model_for); each test runs a few
short generations (16 new tokens, 16-token prompts, 5 rounds after 1 warm-up).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_nvml import FakeNvml
from fake_nvml import gpus as fake_gpus
from fake_nvml import install as install_fake_nvml
from pynvml import NVML_PERF_POLICY_POWER as POWER

from paddle_llm_bench.analysis.report import summary_table
from paddle_llm_bench.core.config import Case, Sweep
from paddle_llm_bench.core.metrics import ENERGY, MEMORY, RoundTimes, metric_by_name, metric_names, round_metric_names
from paddle_llm_bench.core.record import CaseRecord
from paddle_llm_bench.runtime import measure
from paddle_llm_bench.runtime.device import Device, detect_device
from paddle_llm_bench.runtime.energy import NvmlEnergyCounter, RaplEnergyCounter
from paddle_llm_bench.runtime.measure import CaseResult, CaseRunner, TokenCountError
from paddle_llm_bench.runtime.memory import MemoryPeaks
from paddle_llm_bench.runtime.models import LoadedModel
from paddle_llm_bench.runtime.nvml import ClockEvents, ViolationCounters, open_device
from paddle_llm_bench.runtime.operators import profile_operators
from paddle_llm_bench.runtime.suite import Suite

NEW_TOKENS = 16
PROMPT_TOKENS = 16
ROUNDS = 5
WARMUP_ROUNDS = 1
DIGEST = re.compile(r"sha256:[0-9a-f]{16}")


def tiny_case(decoding: str = "greedy", batch_size: int = 1, prompt_tokens: int = PROMPT_TOKENS) -> Case:
    return Case("tiny", "float32", decoding, NEW_TOKENS, batch_size, prompt_tokens)


@pytest.fixture(scope="module", autouse=True)
def no_rapl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The CPU path with no readable RAPL counter, as in most VMs: on a bare-metal runner (a GPU runner,
    as root) the real /sys/class/powercap is readable and the energy metrics would be measured."""
    empty = tmp_path_factory.mktemp("no-powercap")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(measure, "RaplEnergyCounter", functools.partial(RaplEnergyCounter, empty))
        yield


# Module scope, not session: the RAPL patch above must be in place when the suite measures.
@pytest.fixture(scope="module")
def cpu() -> Device:
    return detect_device("cpu")


@pytest.fixture(scope="module")
def progress_messages() -> list[str]:
    return []


@pytest.fixture(scope="module")
def suite(no_rapl: None, llm_cache_dir: Path, cpu: Device, progress_messages: list[str]) -> Suite:
    sweep = Sweep(
        models=("tiny",),
        dtypes=("float32",),
        decodings=("greedy", "sampling", "beam4"),
        max_new_tokens=(NEW_TOKENS,),
        batch_sizes=(1, 3),
        prompt_tokens=(PROMPT_TOKENS,),
        rounds=ROUNDS,
        warmup_rounds=WARMUP_ROUNDS,
    )
    return Suite(sweep, cpu, llm_cache_dir, progress=progress_messages.append)


@pytest.fixture(scope="module")
def loaded(suite: Suite) -> LoadedModel:
    return suite.model_for(tiny_case())


@pytest.fixture(scope="module")
def greedy_result(suite: Suite, loaded: LoadedModel) -> CaseResult:
    return suite.run(tiny_case("greedy"))


@pytest.fixture(scope="module")
def sampling_result(suite: Suite, loaded: LoadedModel) -> CaseResult:
    return suite.run(tiny_case("sampling"))


class GenerateSpy:
    """Wraps the real ``model.generate`` to keep what each call returned."""

    def __init__(self, generate: Callable[..., Any]) -> None:
        self.generate = generate
        self.outputs: list[np.ndarray[Any, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        output_ids, scores = self.generate(**kwargs)
        self.outputs.append(output_ids.numpy())
        return output_ids, scores


@pytest.fixture
def generate_spy(loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> GenerateSpy:
    spy = GenerateSpy(loaded.model.generate)
    monkeypatch.setattr(loaded.model, "generate", spy)
    return spy


def greedy_tokens(loaded: LoadedModel, runner: CaseRunner) -> np.ndarray[Any, Any]:
    output_ids, _ = loaded.model.generate(
        input_ids=runner.input_ids, attention_mask=runner.attention_mask, **runner.generate_kwargs
    )
    return np.asarray(output_ids.numpy())


# --- the model and the suite ------------------------------------------------------------------------


def test_model_loads_once_and_is_reused(suite: Suite, loaded: LoadedModel, progress_messages: list[str]) -> None:
    assert suite.model_for(tiny_case("beam4", batch_size=3)) is loaded
    assert progress_messages.count("loading tiny as float32") == 1
    assert loaded.source.startswith("synthetic tiny")
    assert (loaded.name, loaded.dtype, loaded.vocab_size, loaded.eos_token_id) == ("tiny", "float32", 1000, 2)


# --- exact token counts -----------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("decoding", ["greedy", "sampling", "beam4"])
def test_generate_once_gives_exactly_n_tokens(
    decoding: str, batch_size: int, loaded: LoadedModel, cpu: Device, generate_spy: GenerateSpy
) -> None:
    runner = CaseRunner(loaded, tiny_case(decoding, batch_size), cpu)
    times = runner.generate_once()
    assert len(times.step_ns) == NEW_TOKENS
    assert times.start_ns < times.step_ns[0] and times.step_ns[-1] <= times.end_ns
    assert all(a < b for a, b in zip(times.step_ns, times.step_ns[1:], strict=False)), "one stamp per step"
    [output] = generate_spy.outputs
    assert output.shape == (batch_size, NEW_TOKENS)
    assert output.dtype == np.int64
    assert ((output >= 0) & (output < loaded.vocab_size)).all()
    # min_new_tokens = N masks EOS for all N steps: it can never appear in a forced-length output
    assert loaded.eos_token_id not in output


def test_forced_length_outlasts_an_eos_the_model_wants_to_emit(
    loaded: LoadedModel, cpu: Device, generate_spy: GenerateSpy
) -> None:
    runner = CaseRunner(loaded, tiny_case("greedy"), cpu)
    tokens = greedy_tokens(loaded, runner)[0]
    # Declare the 3rd greedy token EOS: without forcing, greedy decoding would stop right there.
    runner.generate_kwargs["eos_token_id"] = int(tokens[2])
    times = runner.generate_once()
    assert len(times.step_ns) == NEW_TOKENS
    assert generate_spy.outputs[-1].shape == (1, NEW_TOKENS)


def test_wrong_token_count_raises(loaded: LoadedModel, cpu: Device) -> None:
    runner = CaseRunner(loaded, tiny_case("greedy"), cpu)
    tokens = [int(t) for t in greedy_tokens(loaded, runner)[0]]
    # The first token that did not occur before it: declared EOS, greedy search ends there.
    stop_at = next(i for i in range(1, NEW_TOKENS) if tokens[i] not in tokens[:i])
    runner.generate_kwargs["eos_token_id"] = tokens[stop_at]
    runner.generate_kwargs["min_new_tokens"] = 1  # let EOS end the sequence early: a real short generation
    produced = stop_at + 1
    with pytest.raises(TokenCountError) as error:
        runner.generate_once()
    message = str(error.value)
    assert message.startswith("tiny-float32-greedy-new16-bs1-prompt16: asked for exactly 16 new tokens")
    assert f"got output shape [1, {produced}] after {produced} decoding steps" in message
    assert isinstance(error.value, AssertionError)  # pytest reports it as a failed check
    assert not runner.rounds


# --- timing of the rounds ---------------------------------------------------------------------------


def test_result_has_every_round(greedy_result: CaseResult) -> None:
    assert len(greedy_result.rounds) == ROUNDS
    assert greedy_result.warmup_rounds == WARMUP_ROUNDS
    assert set(greedy_result.samples) == set(round_metric_names()) - set(metric_names(ENERGY))  # no energy counter here
    assert all(len(values) == ROUNDS for values in greedy_result.samples.values())
    assert all(len(times.step_ns) == NEW_TOKENS for times in greedy_result.rounds)
    itl = greedy_result.inter_token_latency_ms()
    assert itl["n"] == ROUNDS * (NEW_TOKENS - 1)
    assert 0 < itl["p50"] <= itl["p90"] <= itl["p99"]


@pytest.mark.parametrize("result_fixture", ["greedy_result", "sampling_result"])
def test_ttft_below_e2e_every_round(result_fixture: str, request: pytest.FixtureRequest) -> None:
    result: CaseResult = request.getfixturevalue(result_fixture)
    for ttft, e2e, tpot in zip(
        result.samples["ttft_ms"], result.samples["e2e_ms"], result.samples["tpot_ms"], strict=True
    ):
        assert 0 < ttft < e2e
        assert 0 < tpot < e2e
        assert ttft + tpot * (NEW_TOKENS - 1) == pytest.approx(e2e)
    for times in result.rounds:
        assert times.step_ns[0] - times.start_ns < times.end_ns - times.start_ns


def test_extra_info_is_json_and_consistent(greedy_result: CaseResult) -> None:
    info = json.loads(json.dumps(greedy_result.as_extra_info()))
    assert info["case_id"] == "tiny-float32-greedy-new16-bs1-prompt16"
    assert info["rounds"] == ROUNDS
    assert info["device"].startswith("cpu")
    for name in round_metric_names():
        if name in metric_names(ENERGY):
            assert info["absent"][name] and name not in info["metrics"]
            continue
        summary = info["metrics"][name]
        assert summary["unit"] == metric_by_name(name).unit
        assert summary["n"] == ROUNDS
        assert summary["median"] == pytest.approx(statistics.median(info["samples"][name]))
        assert summary["min"] <= summary["median"] <= summary["max"]
    assert len(info["inter_token_ms_by_round"]) == ROUNDS
    assert all(len(gaps) == NEW_TOKENS - 1 for gaps in info["inter_token_ms_by_round"])


# --- host overhead and energy ---------------------------------------------------------------------


def test_host_overhead_per_token_on_the_tiny_model(greedy_result: CaseResult) -> None:
    for times, per_token_ms, percent in zip(
        greedy_result.rounds,
        greedy_result.samples["host_cpu_ms_per_token"],
        greedy_result.samples["host_cpu_percent_of_wall"],
        strict=True,
    ):
        assert times.decode_cpu_ns is not None and times.decode_cpu_ns > 0
        assert per_token_ms * (NEW_TOKENS - 1) == pytest.approx(times.decode_cpu_ns / 1e6)
        assert 0 < percent <= 100 * (os.cpu_count() or 1) * 1.05  # CPU time of every thread over the wall time
        assert RoundTimes(**dataclasses.asdict(times)) == times  # the worker's serialization keeps it


def test_the_summary_shows_host_overhead_and_absent_energy_as_n_a(greedy_result: CaseResult) -> None:
    lines = summary_table([greedy_result.record()])
    header = next(line for line in lines if line.startswith("case") and "host CPU ms/token" in line)
    assert header.split("  ")[-2:] == ["avg W", "1st gen ms"]
    row = lines[lines.index(header) + 2]
    cells = row.split()
    assert cells[0] == greedy_result.case.id and float(cells[1]) > 0 and cells[-3:-1] == ["n/a", "n/a"]
    first_generation_ms = float(cells[-1].replace(",", ""))  # the case's first generate(), before warm-up
    assert first_generation_ms == pytest.approx(greedy_result.first_generation_ms, abs=0.5)


def test_energy_and_clock_events_are_absent_with_the_reason_on_this_cpu(greedy_result: CaseResult) -> None:
    absent = greedy_result.as_extra_info()["absent"]  # no RAPL counter (the no_rapl fixture)
    for name in metric_names(ENERGY):
        assert "no energy counter on this CPU" in absent[name]
    assert "on a CPU" in absent["gpu_clock_events"]
    assert all(times.energy_uj is None and times.clock_event_mask is None for times in greedy_result.rounds)


def test_energy_and_clock_events_are_read_around_each_measured_round(
    loaded: LoadedModel, cpu: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real tiny model generates; NVML's energy counter, violation counters and clock events come from the
    # fake NVML.
    (gpu,) = fake_gpus(1, energy_step_mj=700)
    install_fake_nvml(monkeypatch, FakeNvml([gpu]))
    runner = CaseRunner(loaded, tiny_case("greedy", batch_size=3), cpu)
    runner.energy, runner.clock_events = NvmlEnergyCounter(open_device(0)), ClockEvents(open_device(0))
    runner.violations = ViolationCounters(open_device(0))
    runner.warmup(1)
    runner.measured_round()
    # The power cap holds the clocks back from the second round on: 5 ms per counter reading, so 5 ms from the
    # reading before a round's start stamp to the one after its end stamp. The mask after a round sees an idle GPU.
    gpu.violation_step_ns = {POWER: 5_000_000}
    runner.measured_round()
    runner.measured_round()
    result = runner.result(MemoryPeaks())
    assert [times.energy_uj for times in result.rounds] == [700_000] * 3  # one counter step from start to end
    assert result.samples["round_energy_j"] == pytest.approx([0.7] * 3)
    assert result.samples["tokens_per_j"] == pytest.approx([3 * NEW_TOKENS / 0.7] * 3)
    e2e_s = [(t.end_ns - t.start_ns) / 1e9 for t in result.rounds]
    assert result.samples["average_power_w"] == pytest.approx([0.7 / s for s in e2e_s])
    events = result.as_extra_info()["gpu_clock_events"]
    assert len(runner.round_violations) == 3  # measured rounds only, not the warm-up
    assert events["violation_ns"]["power"] == [0, 5_000_000, 5_000_000] and events["held_back_by"] == ["power"]
    assert events["violation_ns"]["thermal"] == [0, 0, 0]
    assert events["violation_percent_of_round"]["power"][1:] == pytest.approx(
        [0.5e9 / (t.end_ns - t.start_ns) for t in result.rounds[1:]], rel=1e-3
    )
    assert events["masks_after_round"] == [0x1, 0x1, 0x1] and events["reasons_after_rounds"] == ["gpu_idle"]
    assert "clocks held back during 2 of 3 measured rounds (power limit up to" in events["warning"]
    assert f"WARNING: {result.case.id}: {events['warning']}" in summary_table([result.record()])


def test_the_violation_counters_are_read_outside_the_timed_span(
    loaded: LoadedModel, cpu: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_nvml(monkeypatch, FakeNvml(fake_gpus(1)))
    runner = CaseRunner(loaded, tiny_case("greedy"), cpu)
    counters = ViolationCounters(open_device(0))
    spans: list[tuple[int, int]] = []  # (entered, returned) of each reading

    def timed_read() -> dict[str, int] | None:
        entered = time.perf_counter_ns()
        values: dict[str, int] | None = ViolationCounters.read(counters)
        spans.append((entered, time.perf_counter_ns()))
        return values

    monkeypatch.setattr(counters, "read", timed_read)
    runner.violations = counters
    runner.measured_round()
    runner.measured_round()
    for times, (before, after) in zip(runner.rounds, zip(spans[::2], spans[1::2], strict=True), strict=True):
        assert before[1] <= times.start_ns and after[0] >= times.end_ns
    assert runner.round_violations == [{"power": 0, "thermal": 0, "board_limit": 0, "reliability": 0}] * 2


def test_an_energy_counter_that_does_not_advance_is_absent_not_zero(
    loaded: LoadedModel, cpu: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_nvml(monkeypatch, FakeNvml(fake_gpus(1, energy_step_mj=0)))
    runner = CaseRunner(loaded, tiny_case("greedy"), cpu)
    runner.energy = NvmlEnergyCounter(open_device(0))
    runner.measured_round()
    runner.measured_round()
    result = runner.result(MemoryPeaks())
    assert "tokens_per_j" not in result.samples
    assert "did not advance in 2 of 2 rounds" in result.absent["tokens_per_j"]


# --- output fingerprint ------------------------------------------------------------------------------


def test_greedy_digest_stable_across_rounds_and_runs(suite: Suite, greedy_result: CaseResult) -> None:
    assert greedy_result.output_digest is not None
    assert DIGEST.fullmatch(greedy_result.output_digest)
    assert "output_digest" not in greedy_result.as_extra_info()["absent"]
    again = suite.run(tiny_case("greedy"))
    assert again.output_digest == greedy_result.output_digest


def test_digest_tells_outputs_apart(suite: Suite, greedy_result: CaseResult) -> None:
    other_prompt = suite.run(tiny_case("greedy", prompt_tokens=PROMPT_TOKENS - 1))
    assert other_prompt.output_digest is not None
    assert other_prompt.output_digest != greedy_result.output_digest


def test_sampling_digest_absent_with_reason(sampling_result: CaseResult) -> None:
    assert sampling_result.output_digest is None
    info = sampling_result.as_extra_info()
    assert "output_digest" not in info  # absent, with the reason:
    assert "sampling" in info["absent"]["output_digest"]


def test_changing_output_of_a_deterministic_decoding_is_reported(loaded: LoadedModel, cpu: Device) -> None:
    runner = CaseRunner(loaded, tiny_case("greedy"), cpu)
    runner.measured_round()
    runner.input_ids = runner.input_ids[:, ::-1]  # as if a round had produced a different output
    runner.measured_round()
    result = runner.result(MemoryPeaks())
    assert result.output_digest is None
    assert result.absent["output_digest"] == "2 different outputs across rounds of a deterministic decoding"


# --- memory ------------------------------------------------------------------------------------------


def test_memory_peaks_on_cpu(greedy_result: CaseResult, loaded: LoadedModel) -> None:
    peaks = greedy_result.memory.bytes_by_metric
    absent = greedy_result.as_extra_info()["absent"]
    parameter_bytes = sum(int(np.prod(p.shape)) * 4 for p in loaded.model.parameters())
    # the peak was reset with the weights already allocated: it holds them plus the activations
    assert peaks["peak_allocated_bytes"] > parameter_bytes
    assert peaks["peak_rss_bytes"] > parameter_bytes
    assert "peak_nvml_process_bytes" not in peaks
    assert absent["peak_nvml_process_bytes"]  # a reason, never a 0
    assert all(value > 0 for value in peaks.values()), "a probe without a figure must be absent, not 0"
    assert set(peaks) | set(greedy_result.memory.absent) == set(metric_names(MEMORY))
    assert not set(peaks) & set(greedy_result.memory.absent)


def test_allocator_peak_is_reset_per_case(suite: Suite, greedy_result: CaseResult) -> None:
    big = suite.run(tiny_case("greedy", batch_size=4, prompt_tokens=128))
    small = suite.run(tiny_case("greedy"))
    big_peak = big.memory.bytes_by_metric["peak_allocated_bytes"]
    small_peak = small.memory.bytes_by_metric["peak_allocated_bytes"]
    assert small_peak < big_peak, "the small case after the big one must not inherit its peak"
    assert small_peak == greedy_result.memory.bytes_by_metric["peak_allocated_bytes"], "fixed shapes, same peak"


# --- timing against a known injected delay ----------------------------------------------------------


class Delay:
    """A forward post hook that sleeps, recording how long each call really took."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ns: list[int] = []

    def __call__(self, layer: Any, inputs: Any, outputs: Any) -> None:
        start = time.perf_counter_ns()
        time.sleep(self.seconds)
        self.ns.append(time.perf_counter_ns() - start)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.ns) / 1e6


@contextlib.contextmanager
def forward_hook(model: Any, hook: Delay | None) -> Iterator[None]:
    handle = model.register_forward_post_hook(hook) if hook is not None else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


DELAY_ROUNDS = 7
DELAY_ATTEMPTS = 3


def measure_with_delays(
    loaded: LoadedModel, cpu: Device
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Median TPOT and TTFT (ms) without a hook, with a 10 ms and with a 20 ms sleep after every forward,
    and the mean time each sleep really took. Rounds of the three are interleaved, so that drifts of a
    shared machine hit all three alike."""
    delays: dict[str, Delay | None] = {"none": None, "10ms": Delay(0.010), "20ms": Delay(0.020)}
    runners = {name: CaseRunner(loaded, tiny_case("greedy"), cpu) for name in delays}
    for runner in runners.values():
        runner.warmup(WARMUP_ROUNDS)
    for _ in range(DELAY_ROUNDS):
        for name, runner in runners.items():
            with forward_hook(loaded.model, delays[name]):
                runner.measured_round()
    for delay in delays.values():
        # one call per decoding step of its own rounds only: the hook was removed after each of them
        assert delay is None or len(delay.ns) == DELAY_ROUNDS * NEW_TOKENS, "one forward per decoding step"
    results = {name: runner.result(MemoryPeaks()) for name, runner in runners.items()}
    tpot = {name: result.median("tpot_ms") or 0.0 for name, result in results.items()}
    ttft = {name: result.median("ttft_ms") or 0.0 for name, result in results.items()}
    slept = {name: (delay.mean_ms if delay else 0.0) for name, delay in delays.items()}
    return tpot, ttft, slept


def delay_mismatches(tpot: dict[str, float], ttft: dict[str, float], slept: dict[str, float]) -> list[str]:
    """The checks that fail, each as ``name = ratio, not in [low, high]``."""
    tpot_10_to_20 = tpot["20ms"] - tpot["10ms"]
    ratios = {
        "(TPOT(20 ms) - TPOT(10 ms)) / 10 ms": (tpot_10_to_20 / 10.0, 0.85, 1.15),
        "(TPOT(20 ms) - TPOT(10 ms)) / slept difference": (tpot_10_to_20 / (slept["20ms"] - slept["10ms"]), 0.85, 1.15),
        "(TPOT(10 ms) - TPOT(none)) / slept": ((tpot["10ms"] - tpot["none"]) / slept["10ms"], 0.85, 1.5),
        "(TTFT(20 ms) - TTFT(none)) / slept": ((ttft["20ms"] - ttft["none"]) / slept["20ms"], 0.75, 1.25),
        "(TTFT(10 ms) - TTFT(none)) / slept": ((ttft["10ms"] - ttft["none"]) / slept["10ms"], 0.4, 1.6),
    }
    return [
        f"{name} = {ratio:.3f}, not in [{low}, {high}]"
        for name, (ratio, low, high) in ratios.items()
        if not low <= ratio <= high
    ]


def test_injected_delay_shows_up_in_tpot_and_ttft(loaded: LoadedModel, cpu: Device) -> None:
    """A sleep after every forward (one per decoding step) must add itself to TPOT and to TTFT.

    The step that follows a pause runs measurably slower on a CPU (cold caches: about +1 ms per step
    here), so the exact check is the TPOT difference between the 10 ms and 20 ms sleeps, which both pay
    that penalty; the check against no sleep allows for it. On a shared machine another process can
    take the CPU for milliseconds at a time, so the measurement is repeated (up to 3 times) until one
    passes every check: a timer that is wrong (units, missed steps, stamps in the wrong place) fails
    them all.
    """
    attempts = []
    for _ in range(DELAY_ATTEMPTS):
        tpot, ttft, slept = measure_with_delays(loaded, cpu)
        mismatches = delay_mismatches(tpot, ttft, slept)
        attempts.append(f"TPOT {tpot}, TTFT {ttft}, mean sleep {slept} (ms): failed {mismatches}")
        if not mismatches:
            return
    pytest.fail("injected delays not measured as injected:\n" + "\n".join(attempts))


def test_an_injected_step_delay_slows_every_decoding_step_by_its_milliseconds(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """$PADDLE_LLM_BENCH_INJECT_STEP_MS (calibration: a GPU's cadence on a CPU) adds its delay to each step."""
    from paddle_llm_bench.runtime.models import INJECT_STEP_MS

    case = Case("tiny", "float32", "greedy", max_new_tokens=8, batch_size=1, prompt_tokens=8)
    sweep = Sweep(("tiny",), ("float32",), ("greedy",), (8,), (1,), (8,), rounds=5, warmup_rounds=1)
    cache = tmp_path_factory.mktemp("inject")
    plain = Suite(sweep, detect_device("cpu"), cache, progress=lambda _: None).run(case).median("tpot_ms")
    monkeypatch.setenv(INJECT_STEP_MS, "40")
    slowed_suite = Suite(sweep, detect_device("cpu"), cache, progress=lambda _: None)
    slowed = slowed_suite.run(case).median("tpot_ms")
    assert plain is not None and slowed is not None
    assert 35.0 < slowed - plain < 60.0  # 40 ms per step, give or take this VM's noise
    assert "+40 ms busy-wait per forward pass" in slowed_suite.model_for(case).source


def test_an_operator_profile_counts_the_real_models_operators(suite: Suite, loaded: LoadedModel) -> None:
    """`--llm-profile`: one extra round under Paddle's profiler, each operator's calls and CPU time, saved typed."""
    runner = CaseRunner(loaded, tiny_case("greedy"), suite.device)
    profile = profile_operators(runner.generate_once, suite.device)
    assert profile.targets == ["CPU"] and profile.profiled_round_ms is not None and profile.profiled_round_ms > 0
    assert profile.operators and all(op.calls > 0 and op.gpu_time_ms is None for op in profile.operators.values())
    times = [op.cpu_time_ms for op in profile.operators.values()]
    assert times == sorted(times, reverse=True)  # ranked by total CPU time
    assert any("matmul" in name for name in profile.operators)  # every projection of the model is one
    assert CaseRecord.read({"case_id": "x", "operator_profile": profile.model_dump()}).operator_profile == profile
