"""Per-round latency and throughput metrics from step timestamps (docs/facts.md §4). Pure.

A round is one ``generate()`` call producing exactly ``N`` new tokens for each of ``B`` sequences.
Timestamps are ``perf_counter_ns`` values taken after a device synchronization: ``start`` just
before submitting, one per decoding step when that step's tokens exist, and ``end`` after
``generate()`` returned. Optional per-round readings (absent: None) give two more families:

- host overhead: the process's CPU time (all threads) from the first token to the end, per
  generated token and as a share of that decode window's wall time. On a GPU a share near 100 %
  means decoding waits on the host (kernel launches, Python), not on the GPU; on a CPU a share well
  under 100 % (with one thread) means the process was waiting for cores other tenants held.
- energy: the device energy counter's increase from start to end: joules per round, tokens per
  joule (all B·N new tokens of the round) and the average power.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
UJ_PER_J = 1_000_000

SPEED, HOST, ENERGY, MEMORY = "speed", "host", "energy", "memory"


@dataclass(frozen=True)
class Metric:
    """What every part of the suite knows about one metric. The registry below is the only place that
    says it: measuring, the gate, baselines, the paired engine, compare, tables and plots all read it."""

    name: str
    unit: str
    label: str  # column heading in tables, axis label in plots
    higher_is_better: bool
    family: str = SPEED  # speed, host or energy (per round), memory (per case, in bytes)
    digits: int = 1  # decimals in tables
    in_baseline: bool = False  # baselines keep its per-round samples: the stored-baseline gate can judge it
    gate_min_effect_percent: float | None = None  # judged by default, with this smallest change that counts
    # The paired engine estimates its ratio, and calls a change faster/slower from this size on (paired
    # intervals are finer than a stored baseline's, so these are smaller than the gate's).
    paired_min_effect_percent: float | None = None
    # memory: the allowed growth is the larger of (percent, bytes)
    memory_tolerance: tuple[float, int] | None = None


MIB = 1024 * 1024
REGISTRY: tuple[Metric, ...] = (
    Metric("decode_tokens_per_s", "tokens/s", "decode tok/s", True, in_baseline=True, gate_min_effect_percent=5.0,
           paired_min_effect_percent=3.0),
    Metric("ttft_ms", "ms", "TTFT ms", False, digits=2, in_baseline=True, gate_min_effect_percent=10.0,
           paired_min_effect_percent=10.0),
    Metric("tpot_ms", "ms", "TPOT ms", False, digits=3, in_baseline=True),
    Metric("e2e_ms", "ms", "E2E ms", False, digits=1),
    Metric("e2e_tokens_per_s", "tokens/s", "E2E tok/s", True, paired_min_effect_percent=3.0),
    # The field report's (input+output)/time: prompt tokens inflate it; kept for continuity, never judged.
    Metric("input_output_tokens_per_s", "tokens/s", "(in+out) tok/s", True),
    Metric("host_cpu_ms_per_token", "ms", "host CPU ms/token", False, family=HOST, digits=3),
    Metric("host_cpu_percent_of_wall", "%", "host CPU % of wall", False, family=HOST),
    Metric("round_energy_j", "J", "J/round", False, family=ENERGY, digits=2),
    Metric("tokens_per_j", "tokens/J", "tokens/J", True, family=ENERGY, digits=2),
    Metric("average_power_w", "W", "avg W", False, family=ENERGY),
    # Allocator peaks of fixed shapes are deterministic: 2 % of the peak, at least 1 MiB (a 64 MiB floor let the
    # tiny model's 6.7 MiB peak grow tenfold unnoticed).
    Metric("peak_allocated_bytes", "bytes", "peak alloc MiB", False, family=MEMORY, memory_tolerance=(2.0, MIB)),
    Metric("peak_reserved_bytes", "bytes", "peak reserved MiB", False, family=MEMORY, memory_tolerance=(2.0, MIB)),
    Metric("peak_nvml_process_bytes", "bytes", "peak NVML MiB", False, family=MEMORY,
           memory_tolerance=(5.0, 256 * MIB)),
    Metric("peak_rss_bytes", "bytes", "peak RSS MiB", False, family=MEMORY, memory_tolerance=(10.0, 256 * MIB)),
)  # fmt: skip
METRICS: dict[str, Metric] = {metric.name: metric for metric in REGISTRY}

# Views of the registry, by the job that needs them.
ROUND_METRICS = tuple(m.name for m in REGISTRY if m.family != MEMORY)  # computed per round by round_metrics
METRIC_UNITS: dict[str, str] = {name: METRICS[name].unit for name in ROUND_METRICS}
HIGHER_IS_BETTER = frozenset(m.name for m in REGISTRY if m.higher_is_better)
HOST_METRICS = tuple(m.name for m in REGISTRY if m.family == HOST)
ENERGY_METRICS = tuple(m.name for m in REGISTRY if m.family == ENERGY)
MEMORY_METRICS = tuple(m.name for m in REGISTRY if m.family == MEMORY)
BASELINE_METRICS = tuple(m.name for m in REGISTRY if m.in_baseline)  # also: the ones the gate can judge
PAIRED_METRICS = tuple(m.name for m in REGISTRY if m.paired_min_effect_percent is not None)
PAIRED_MIN_EFFECT_PERCENT = {
    m.name: m.paired_min_effect_percent for m in REGISTRY if m.paired_min_effect_percent is not None
}
# The paired gate judges what the stored-baseline gate judges by default (of the metrics it estimates).
PAIRED_GATED_METRICS = tuple(m for m in PAIRED_METRICS if METRICS[m].gate_min_effect_percent is not None)
DEFAULT_GATE_MIN_EFFECT_PERCENT = {
    m.name: m.gate_min_effect_percent for m in REGISTRY if m.gate_min_effect_percent is not None
}
MEMORY_TOLERANCE = {m.name: m.memory_tolerance for m in REGISTRY if m.memory_tolerance is not None}


@dataclass(frozen=True)
class RoundTimes:
    """One round's clock readings. The optional fields are None where not read (and in older records)."""

    start_ns: int
    step_ns: tuple[int, ...]
    end_ns: int
    decode_cpu_ns: int | None = None  # process CPU time, all threads, from the first token to the end
    energy_uj: int | None = None  # the device energy counter's increase from start to end, microjoules
    clock_event_mask: int | None = None  # NVML clock event ("throttle") reasons read right after the round

    def __post_init__(self) -> None:
        stamps = (self.start_ns, *self.step_ns, self.end_ns)
        if any(later < earlier for earlier, later in itertools.pairwise(stamps)):
            raise ValueError("round timestamps must not decrease")
        if not self.step_ns:
            raise ValueError("a round needs at least one decoding step")
        for name in ("decode_cpu_ns", "energy_uj", "clock_event_mask"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"invalid {name} {value}: must be >= 0 or None")


def round_metrics(times: RoundTimes, batch_size: int, prompt_tokens: int) -> dict[str, float]:
    """TTFT, TPOT, decode/e2e tokens/s and the field report's (input+output)/time figure.

    - ttft_ms: submit -> first new token available (prefill + first step).
    - tpot_ms: (E2E - TTFT) / (N - 1); decode_tokens_per_s: B·(N-1) / (E2E - TTFT).
      Both need N >= 2 and are left out for N = 1.
    - e2e_tokens_per_s: B·N / E2E.
    - input_output_tokens_per_s: B·(P+N) / E2E, what the field report called tokens/s; prompt
      tokens inflate it, so it is kept for continuity only, never gated.
    """
    new_tokens = len(times.step_ns)
    e2e_ns = times.end_ns - times.start_ns
    ttft_ns = times.step_ns[0] - times.start_ns
    e2e_s = e2e_ns / NS_PER_S
    metrics = {
        "ttft_ms": ttft_ns / NS_PER_MS,
        "e2e_ms": e2e_ns / NS_PER_MS,
        "e2e_tokens_per_s": _rate(batch_size * new_tokens, e2e_s),
        "input_output_tokens_per_s": _rate(batch_size * (prompt_tokens + new_tokens), e2e_s),
    }
    if new_tokens >= 2:
        decode_ns = e2e_ns - ttft_ns
        metrics["tpot_ms"] = decode_ns / NS_PER_MS / (new_tokens - 1)
        metrics["decode_tokens_per_s"] = _rate(batch_size * (new_tokens - 1), decode_ns / NS_PER_S)
    metrics.update(host_metrics(times, batch_size))
    metrics.update(energy_metrics(times, batch_size))
    return metrics


def host_metrics(times: RoundTimes, batch_size: int) -> dict[str, float]:
    """host_cpu_ms_per_token: decode-window CPU time / (B·(N-1)); host_cpu_percent_of_wall: that CPU
    time over the window's wall time (E2E - TTFT), in percent (above 100 with several busy threads).
    Empty without a CPU reading, for N = 1, or for a zero-length window."""
    new_tokens = len(times.step_ns)
    decode_ns = times.end_ns - times.step_ns[0]
    if times.decode_cpu_ns is None or new_tokens < 2 or decode_ns <= 0:
        return {}
    return {
        "host_cpu_ms_per_token": times.decode_cpu_ns / NS_PER_MS / (batch_size * (new_tokens - 1)),
        "host_cpu_percent_of_wall": 100.0 * times.decode_cpu_ns / decode_ns,
    }


def energy_metrics(times: RoundTimes, batch_size: int) -> dict[str, float]:
    """round_energy_j, tokens_per_j (B·N / J) and average_power_w (J / E2E). Empty without an energy
    reading, or when the counter did not advance (a round shorter than its update interval is not 0 J)."""
    e2e_ns = times.end_ns - times.start_ns
    if not times.energy_uj or e2e_ns <= 0:
        return {}
    joules = times.energy_uj / UJ_PER_J
    return {
        "round_energy_j": joules,
        "tokens_per_j": batch_size * len(times.step_ns) / joules,
        "average_power_w": joules / (e2e_ns / NS_PER_S),
    }


def inter_token_ms(times: RoundTimes) -> list[float]:
    """Gaps between consecutive tokens (N-1 values), in milliseconds."""
    steps = times.step_ns
    return [(later - earlier) / NS_PER_MS for earlier, later in itertools.pairwise(steps)]


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")
