"""Runs one case: warm-up and timed rounds of ``generate()`` with exact token counts.

Per-step timestamps come from a stopping criterion that ``generate()`` calls once per decoding
step, after the step's tokens exist, for every decode strategy (a streamer would not work for beam
search). It synchronizes the device before reading the clock. Nothing here imports pytest or prints.

Each round also reads, outside its timed span: the process CPU time at the first token and at the
end (host overhead), the device energy counter at the start and end (energy per round), and on a
GPU NVML's clock-limit violation counters right before the start stamp and right after the end
stamp (their increase is the time a power, thermal, board or reliability limit capped the clocks
during the round) and the clock event ("throttle") reasons after the end, when the GPU is idle again
(informative only) (``metrics`` and docs/gpu-path.md).
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paddle_llm_bench.core import stopping
from paddle_llm_bench.core.bandwidth import CeilingCheck
from paddle_llm_bench.core.config import DECODINGS, Case
from paddle_llm_bench.core.metrics import (
    ENERGY,
    HOST,
    RoundTimes,
    inter_token_ms,
    metric_by_name,
    metric_names,
    round_metric_names,
    round_metrics,
)
from paddle_llm_bench.core.record import CaseRecord, ClockEventSummary, HostLoad, OperatorProfile, StoredSummary
from paddle_llm_bench.core.stats import percentile, summarize
from paddle_llm_bench.runtime.device import Device, import_paddle
from paddle_llm_bench.runtime.energy import EnergyCounter, NoEnergyCounter, NvmlEnergyCounter, RaplEnergyCounter
from paddle_llm_bench.runtime.memory import MemoryPeaks
from paddle_llm_bench.runtime.models import LoadedModel
from paddle_llm_bench.runtime.modes import ModeMismatch, use_mode
from paddle_llm_bench.runtime.nvml import (
    ClockEvents,
    NvmlUnavailable,
    ViolationCounters,
    decode_throttle_reasons,
)


class TokenCountError(AssertionError):
    """generate() did not produce exactly the asked number of tokens: every figure would be wrong."""


class StepClock:
    """A PaddleNLP stopping criterion that never stops: it synchronizes and timestamps each step.

    ``generate()`` deep-copies its criteria, so the clock hands out itself to keep the timestamps.
    ``synchronize`` is None where the device needs none (a CPU's kernels are synchronous): each step
    then costs one clock read and one append (and a test), what a user's own timing criterion costs.
    The process CPU time is read at the first step only.
    """

    def __init__(self, synchronize: Callable[[], None] | None) -> None:
        self.synchronize = synchronize
        self.step_ns: list[int] = []
        self.first_step_cpu_ns: int | None = None  # process CPU time when the first token existed

    def __deepcopy__(self, memo: dict[int, Any]) -> StepClock:
        return self

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        if self.synchronize is not None:
            self.synchronize()
        self.step_ns.append(time.perf_counter_ns())
        if self.first_step_cpu_ns is None:
            self.first_step_cpu_ns = time.process_time_ns()
        stopping.checkpoint()  # a SIGTERM stops the run here, inside a round, at a clean point
        return False


def step_synchronize(device: Device) -> Callable[[], None] | None:
    """What the step clock calls before each stamp: None on a CPU; on a GPU Paddle's synchronize with the
    place resolved once (the ``"gpu:N"`` string would be parsed again at every step)."""
    if device.kind != "gpu":
        return None
    paddle = import_paddle()
    return functools.partial(paddle.device.synchronize, paddle.CUDAPlace(device.index))


def generation_inputs(loaded: LoadedModel, case: Case, seed: int = 0) -> tuple[Any, Any, dict[str, Any]]:
    """A case's ``input_ids``, ``attention_mask`` and generate() keyword arguments: what every round passes
    (the suite's rounds and the bare loop of ``paddle-llm-bench overhead`` alike)."""
    paddle = import_paddle()
    ids = loaded.prompt_ids(case.batch_size, case.prompt_tokens, seed)
    input_ids = paddle.to_tensor(ids, dtype="int64")
    attention_mask = paddle.ones_like(input_ids)  # mandatory: Qwen2 fails without it
    generate_kwargs: dict[str, Any] = {
        "max_new_tokens": case.max_new_tokens,
        "min_new_tokens": case.max_new_tokens,  # forced length: EOS cannot end a sequence early
        "eos_token_id": loaded.eos_token_id,
        **DECODINGS[case.decoding].generate_kwargs(),
    }
    return input_ids, attention_mask, generate_kwargs


@dataclass
class CaseResult:
    """Everything measured for one case, as stored in pytest-benchmark's ``extra_info``."""

    case: Case
    device: str
    rounds: list[RoundTimes]
    samples: dict[str, list[float]]
    memory: MemoryPeaks
    output_digest: str | None
    absent: dict[str, str] = field(default_factory=dict)
    model_source: str = ""
    warmup_rounds: int = 0
    operator_profile: OperatorProfile | None = None
    bandwidth: CeilingCheck = field(default_factory=CeilingCheck)  # batch 1 on a GPU: share of the ceiling
    measurement_error: str | None = None  # a figure that cannot be true (e.g. above the bandwidth ceiling)
    host_load: HostLoad = field(default_factory=HostLoad)  # the machine's load while measuring
    gpu_clock_events: ClockEventSummary | None = None  # GPU: clock limits during the rounds
    # The case's first generate(), before warm-up: conversion and compiling included in a static mode.
    first_generation_ms: float | None = None

    def median(self, metric: str) -> float | None:
        values = self.samples.get(metric)
        return summarize(values).median if values else None

    def inter_token_latency_ms(self) -> dict[str, float]:
        gaps = [gap for times in self.rounds for gap in inter_token_ms(times)]
        if not gaps:
            return {}
        return {f"p{q}": percentile(gaps, q) for q in (50, 90, 99)} | {"n": len(gaps)}

    def record(self) -> CaseRecord:
        """The case's saved record (``core.record``)."""
        return CaseRecord(
            case=self.case.as_dict(),
            case_id=self.case.id,
            device=self.device,
            model_source=self.model_source,
            rounds=len(self.rounds),
            warmup_rounds=self.warmup_rounds,
            metrics={
                name: StoredSummary.model_validate({"unit": metric_by_name(name).unit, **summarize(values).as_dict()})
                for name, values in self.samples.items()
            },
            samples=self.samples,
            inter_token_latency_ms=self.inter_token_latency_ms(),
            inter_token_ms_by_round=[[round(gap, 4) for gap in inter_token_ms(t)] for t in self.rounds],
            memory_bytes=self.memory.bytes_by_metric,
            absent={**self.absent, **self.memory.absent, **self._bandwidth_absent()},
            output_digest=self.output_digest,
            first_generation_ms=self.first_generation_ms,
            host_load=self.host_load,
            gpu_clock_events=self.gpu_clock_events,
            bandwidth_ceiling=self.bandwidth.share,
            measurement_error=self.measurement_error,
            operator_profile=self.operator_profile,
        )

    def _bandwidth_absent(self) -> dict[str, str]:
        return {"bandwidth_ceiling": self.bandwidth.absent_reason} if self.bandwidth.absent_reason else {}

    def as_extra_info(self) -> dict[str, Any]:
        """The record as pytest-benchmark saves it."""
        return self.record().document()


def host_load() -> HostLoad:
    """The 1-minute load average against the cores, and why it counts as busy if it does.

    This process accounts for about 1; above max(1.5, 0.75 x cores) other work was running, which
    moves speed as much as a code change does, so the gate will not call a change on it.
    """
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    limit = max(1.5, 0.75 * cores)
    busy = (
        f"machine busy: load average {load:.1f} on {cores} cores (> {limit:g}) while measuring" if load > limit else ""
    )
    return HostLoad(load_average_1min=round(load, 2), logical_cores=cores, busy=busy)


class CaseRunner:
    """Holds one case's inputs; each ``measured_round()`` is one synchronized, checked generation."""

    def __init__(self, loaded: LoadedModel, case: Case, device: Device, seed: int = 0) -> None:
        self.loaded = loaded
        self.case = case
        self.device = device
        self.seed = seed
        self.input_ids, self.attention_mask, self.generate_kwargs = generation_inputs(loaded, case, seed)
        # Resolved once: Device.synchronize builds a new function at every access.
        self._synchronize = device.synchronize
        self._step_synchronize = step_synchronize(device)
        self.rounds: list[RoundTimes] = []
        # Per measured round: each violation counter's increase (ns) from before the start stamp to after the end.
        self.round_violations: list[dict[str, int] | None] = []
        self.digests: set[str] = set()
        self.energy, self.clock_events, self.violations = round_probes(device)
        self.first_generation_ms: float | None = None
        self.mode = case.mode  # how the forward runs in this runner's rounds (eager once, for the digest check)

    def generate_once(self) -> RoundTimes:
        """One generation: synchronized start, per-step stamps, synchronized end, exact count checked."""
        return self._generate()[0]

    def _generate(self) -> tuple[RoundTimes, dict[str, int] | None]:
        """``generate_once`` and the violation counters' increases during the round (None where not read)."""
        paddle = import_paddle()
        from paddlenlp.generation.stopping_criteria import StoppingCriteriaList

        use_mode(self.loaded, self.mode)  # another runner may share the model (overhead --same-process)
        clock = StepClock(self._step_synchronize)
        criteria = StoppingCriteriaList([clock])
        self._synchronize()
        energy_start = self.energy.read()
        violations_start = self.violations.read()
        start_ns = time.perf_counter_ns()
        with paddle.no_grad():
            output_ids, _scores = self.loaded.model.generate(
                input_ids=self.input_ids,
                attention_mask=self.attention_mask,
                stopping_criteria=criteria,
                **self.generate_kwargs,
            )
        self._synchronize()
        end_ns = time.perf_counter_ns()
        end_cpu_ns = time.process_time_ns()
        energy_end = self.energy.read()
        violations_end = self.violations.read()
        clock_event_mask = self.clock_events.read()
        expected = [self.case.batch_size, self.case.max_new_tokens]
        shape = list(output_ids.shape)
        if shape != expected or len(clock.step_ns) != self.case.max_new_tokens:
            raise TokenCountError(
                f"{self.case.id}: asked for exactly {self.case.max_new_tokens} new tokens per sequence for "
                f"batch {self.case.batch_size}, got output shape {shape} after {len(clock.step_ns)} decoding steps"
            )
        ids = output_ids.numpy()
        if (ids == self.loaded.eos_token_id).any():
            raise TokenCountError(
                f"{self.case.id}: a sequence ended early (EOS id {self.loaded.eos_token_id} in the output, the rest "
                "padded) although min_new_tokens forces the length: its tokens would be counted but never computed"
            )
        if DECODINGS[self.case.decoding].deterministic:
            self.digests.add(_digest(ids))
        times = RoundTimes(
            start_ns,
            tuple(clock.step_ns),
            end_ns,
            decode_cpu_ns=None if clock.first_step_cpu_ns is None else end_cpu_ns - clock.first_step_cpu_ns,
            energy_uj=None
            if energy_start is None or energy_end is None
            else self.energy.delta_uj(energy_start, energy_end),
            clock_event_mask=clock_event_mask,
        )
        return times, self.violations.delta(violations_start, violations_end)

    def _energy_uj(self, start: Any, end: Any) -> int | None:
        return None if start is None or end is None else self.energy.delta_uj(start, end)

    def warmup(self, rounds: int) -> None:
        """Untimed rounds. The runner's first one is timed as ``first_generation_ms``; a static mode always gets
        it (its compiling must never land in a measured round) and, for a deterministic decoding, it must
        generate the tokens eager generation does."""
        converted = self.case.mode != "eager"
        if self.first_generation_ms is None and (rounds > 0 or converted):
            eager_digest = self._eager_digest() if converted and DECODINGS[self.case.decoding].deterministic else None
            start_ns = time.perf_counter_ns()
            self.generate_once()
            self.first_generation_ms = (time.perf_counter_ns() - start_ns) / 1e6
            if eager_digest is not None and self.digests != {eager_digest}:
                raise ModeMismatch(
                    f"{self.case.id}: {self.case.mode} generated other tokens than eager for the same inputs "
                    f"(output digest {', '.join(sorted(self.digests))} against eager's {eager_digest}): "
                    "the conversion changed what the model computes"
                )
            rounds -= 1
        for _ in range(rounds):
            self.generate_once()

    def _eager_digest(self) -> str:
        """The output digest of one eager generation of this case's inputs (the model put back in its mode after)."""
        self.mode = "eager"
        try:
            self.generate_once()
        finally:
            self.mode = self.case.mode
        (digest,) = self.digests
        self.digests.clear()
        return digest

    def measured_round(self) -> None:
        times, violations = self._generate()
        self.rounds.append(times)
        self.round_violations.append(violations)

    def result(self, memory: MemoryPeaks, warmup_rounds: int = 0) -> CaseResult:
        per_round = [round_metrics(t, self.case.batch_size, self.case.prompt_tokens) for t in self.rounds]
        samples = {
            name: [m[name] for m in per_round]
            for name in round_metric_names()
            if per_round and all(name in m for m in per_round)
        }
        absent: dict[str, str] = {}
        if self.case.max_new_tokens < 2:
            for name in ("tpot_ms", "decode_tokens_per_s"):
                absent[name] = "needs max_new_tokens >= 2 (decode time is E2E - TTFT over N - 1 tokens)"
        if per_round:
            absent.update({name: self._host_absent_reason() for name in metric_names(HOST) if name not in samples})
            absent.update({name: self._energy_absent_reason() for name in metric_names(ENERGY) if name not in samples})
        digest = None
        if not DECODINGS[self.case.decoding].deterministic:
            absent["output_digest"] = "sampling draws random tokens: no stable output to fingerprint"
        elif len(self.digests) == 1:
            digest = next(iter(self.digests))
        elif self.digests:
            absent["output_digest"] = f"{len(self.digests)} different outputs across rounds of a deterministic decoding"
        clock_events = clock_events_summary(self.rounds, self.round_violations, self.violations.not_counted)
        if clock_events is None and self.rounds:
            absent["gpu_clock_events"] = self.violations.absent_reason or "not read in every round"
        return CaseResult(
            case=self.case,
            device=self.device.describe(),
            rounds=list(self.rounds),
            samples=samples,
            memory=memory,
            output_digest=digest,
            absent=absent,
            model_source=self.loaded.source,
            warmup_rounds=warmup_rounds,
            gpu_clock_events=clock_events,
            first_generation_ms=self.first_generation_ms,
        )

    def _host_absent_reason(self) -> str:
        if self.case.max_new_tokens < 2:
            return "needs max_new_tokens >= 2 (the decode window runs from the first token to the end)"
        if any(t.decode_cpu_ns is None for t in self.rounds):
            return "the process CPU time was not read in every round"
        return "a round's decode window had zero length"

    def _energy_absent_reason(self) -> str:
        if self.energy.absent_reason is not None:
            return self.energy.absent_reason
        stalled = sum(1 for t in self.rounds if t.energy_uj == 0)
        if stalled:
            return (
                f"the energy counter did not advance in {stalled} of {len(self.rounds)} rounds: they are shorter "
                "than its update interval (more new tokens make longer rounds)"
            )
        return "the energy counter was not read in every round"


def round_probes(device: Device) -> tuple[EnergyCounter, ClockEvents, ViolationCounters]:
    """The energy counter, the clock-event reader and the violation counters for ``device``; each says why
    where it has none."""
    if device.kind != "gpu":
        why = "on a CPU: clock limits are a GPU reading (NVML)"
        return RaplEnergyCounter(), ClockEvents(None, why), ViolationCounters(None, why)
    try:
        nvml = device.nvml()
    except NvmlUnavailable as error:
        return NoEnergyCounter(str(error)), ClockEvents(None, str(error)), ViolationCounters(None, str(error))
    return NvmlEnergyCounter(nvml), ClockEvents(nvml), ViolationCounters(nvml)


def clock_events_summary(
    rounds: list[RoundTimes], violations: list[dict[str, int] | None], not_counted: dict[str, str] | None = None
) -> ClockEventSummary | None:
    """What held the GPU's clocks back during the measured rounds: each violation counter's increase per round
    (ns, and % of the round's wall time) and a warning where one advanced; None unless every round was read.
    The clock event reasons read after each round (the GPU idle again) are kept as context, not as the verdict."""
    if not rounds or len(violations) != len(rounds) or any(v is None for v in violations):
        return None
    read = [v for v in violations if v is not None]
    wall_ns = [max(t.end_ns - t.start_ns, 1) for t in rounds]
    by_policy = {name: [r[name] for r in read] for name in read[0]}
    percent = {name: [round(100 * ns / wall, 3) for ns, wall in zip(values, wall_ns, strict=True)]
               for name, values in by_policy.items()}  # fmt: skip
    held_back = [name for name, values in by_policy.items() if any(values)]
    rounds_held = sum(1 for r in read if any(r.values()))
    masks = [t.clock_event_mask for t in rounds]
    every_mask_read = all(mask is not None for mask in masks)
    combined = 0
    for mask in masks:
        combined |= int(mask or 0)
    warning = ""
    if held_back:
        worst = ", ".join(f"{name} limit up to {max(percent[name]):.1f} %" for name in held_back)
        warning = (
            f"clocks held back during {rounds_held} of {len(read)} measured rounds ({worst} of a round's time): "
            "these figures are slower than the GPU runs unthrottled"
        )
    return ClockEventSummary(
        violation_ns=by_policy,
        violation_percent_of_round=percent,
        held_back_by=held_back,
        rounds_held_back=rounds_held,
        not_counted=dict(not_counted or {}),
        masks_after_round=masks if every_mask_read else None,
        reasons_after_rounds=decode_throttle_reasons(combined) if every_mask_read else None,
        warning=warning,
    )


def _digest(ids: np.ndarray[Any, Any]) -> str:
    array = np.ascontiguousarray(ids, dtype=np.int64)
    return "sha256:" + hashlib.sha256(str(array.shape).encode() + array.tobytes()).hexdigest()[:16]
