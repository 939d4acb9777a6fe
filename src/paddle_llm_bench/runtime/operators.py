"""Per-operator call counts and times of one extra, untimed round, from Paddle's profiler.

Used to explain a change ("concat got 40 % slower"), never to time a case: the profiler slows
generation by 1.1-2.6x (docs/facts.md §6), so it runs only after the measured rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from paddle_llm_bench.core.record import OperatorProfile, OperatorTimes
from paddle_llm_bench.runtime.device import Device

NS_PER_MS = 1_000_000


def profile_operators(one_round: Callable[[], object], device: Device) -> OperatorProfile:
    """Run ``one_round`` under ``paddle.profiler`` and summarize operators by total time."""
    from paddle import profiler
    from paddle.profiler.profiler_statistic import StatisticData

    targets = [profiler.ProfilerTarget.CPU]
    if device.kind == "gpu":
        targets.append(profiler.ProfilerTarget.GPU)
    # on_trace_ready: keep the default from writing a Chrome trace into ./profiler_log
    prof = profiler.Profiler(targets=targets, on_trace_ready=lambda _prof: None)
    prof.start()
    start_ns = time.perf_counter_ns()
    try:
        one_round()
    finally:
        prof.stop()
    elapsed_ns = time.perf_counter_ns() - start_ns
    result = prof.profiler_result
    statistics = StatisticData(result.get_data(), result.get_extra_info())  # type: ignore[no-untyped-call]
    operators: dict[str, OperatorTimes] = {}
    for raw_name, item in statistics.event_summary.items.items():
        name = str(raw_name).removesuffix(" dygraph").strip()  # an operator may be listed under two names
        before = operators.get(name, OperatorTimes())
        gpu_ms = (before.gpu_time_ms or 0.0) + item.gpu_time / NS_PER_MS if device.kind == "gpu" else None
        operators[name] = OperatorTimes(
            calls=before.calls + int(item.call),
            cpu_time_ms=before.cpu_time_ms + item.cpu_time / NS_PER_MS,
            gpu_time_ms=gpu_ms,
        )
    return OperatorProfile(
        note="one extra untimed round under paddle.profiler after the measured rounds; times include its overhead",
        targets=[str(t).split(".")[-1] for t in targets],
        profiled_round_ms=elapsed_ns / NS_PER_MS,
        operators=dict(sorted(operators.items(), key=lambda kv: (-kv[1].cpu_time_ms, kv[0]))),
    )
