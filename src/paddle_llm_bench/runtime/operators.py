"""Per-operator call counts and times of one extra, untimed round, from Paddle's profiler.

Used to explain a change ("concat got 40 % slower"), never to time a case: the profiler slows
generation by 1.1-2.6x (docs/facts.md §6), so it runs only after the measured rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from paddle_llm_bench.runtime.device import Device

NS_PER_MS = 1_000_000


def profile_operators(one_round: Callable[[], object], device: Device) -> dict[str, Any]:
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
    operators: dict[str, dict[str, Any]] = {}
    for raw_name, item in statistics.event_summary.items.items():
        name = str(raw_name).removesuffix(" dygraph").strip()
        entry = operators.setdefault(name, {"calls": 0, "cpu_time_ms": 0.0, "gpu_time_ms": None})
        entry["calls"] += int(item.call)
        entry["cpu_time_ms"] += item.cpu_time / NS_PER_MS
        if device.kind == "gpu":
            entry["gpu_time_ms"] = (entry["gpu_time_ms"] or 0.0) + item.gpu_time / NS_PER_MS
    ranked = dict(sorted(operators.items(), key=lambda kv: (-kv[1]["cpu_time_ms"], kv[0])))
    return {
        "note": "one extra untimed round under paddle.profiler after the measured rounds; times include its overhead",
        "targets": [str(t).split(".")[-1] for t in targets],
        "profiled_round_ms": elapsed_ns / NS_PER_MS,
        "operators": ranked,
    }
