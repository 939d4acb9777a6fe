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
from collections.abc import Callable
from dataclasses import dataclass

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
UJ_PER_J = 1_000_000
MIB = 1024 * 1024

# Families: per round (speed, host, energy: computed from each round's clock readings), over every token gap of
# the case (token gaps: percentiles of inter-token latency), per case (memory: peaks in bytes).
SPEED, HOST, ENERGY, TOKEN_GAPS, MEMORY = "speed", "host", "energy", "token gaps", "memory"


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


# A per-round figure from the round's readings, its batch size and prompt length; None where it cannot be had.
PerRound = Callable[[RoundTimes, int, int], float | None]


@dataclass(frozen=True)
class Metric:
    """What every part of the suite knows about one metric. The registry below is the only place that
    says it: measuring, summaries, the gate, baselines, the paired engine, compare, every table and plot read
    it (through the functions under it, at the time they run).

    Where a metric is shown: the end-of-run tables show ``in_summary`` ones (speed, token gaps and memory
    in the first, host and energy in the second); ``compare`` shows ``in_comparison`` ones (a column with
    its ratio, a verdict where the gate judges it, a CSV/JSON field and a plot); the paired table shows
    every metric the paired engine estimates (``paired_min_effect_percent``) and the ``in_comparison``
    memory peaks."""

    name: str
    unit: str
    label: str  # column heading in tables, axis label in plots
    higher_is_better: bool
    family: str = SPEED
    digits: int = 1  # decimals in tables (memory: MiB with one decimal)
    per_round: PerRound | None = None  # how a round yields it (speed, host and energy families)
    in_summary: bool = False  # a column of the end-of-run tables
    in_comparison: bool = False  # a column of compare (and, for memory, of the paired table) and a plot
    in_baseline: bool = False  # baselines keep its per-round samples: the stored-baseline gate can judge it
    gate_min_effect_percent: float | None = None  # judged by default, with this smallest change that counts
    # The paired engine estimates its ratio, and calls a change faster/slower from this size on (paired
    # intervals are finer than a stored baseline's, so these are smaller than the gate's).
    paired_min_effect_percent: float | None = None
    # memory: the allowed growth is the larger of (percent, bytes)
    memory_tolerance: tuple[float, int] | None = None
    description: str = ""  # what the figure is, for the legends of tables that show it

    @property
    def judged_by_gate(self) -> bool:
        """The stored-baseline gate (and compare, through it) can give it a verdict."""
        return self.in_baseline or self.family == MEMORY

    def display(self, value: float) -> float:
        """The figure in the unit tables and plots show: MiB for bytes."""
        return value / MIB if self.unit == "bytes" else value

    @property
    def display_unit(self) -> str:
        return "MiB" if self.unit == "bytes" else self.unit


# --- per-round figures (docs/facts.md §4) --------------------------------------------------------------------


def _new_tokens(times: RoundTimes) -> int:
    return len(times.step_ns)


def _e2e_ns(times: RoundTimes) -> int:
    return times.end_ns - times.start_ns


def _ttft_ns(times: RoundTimes) -> int:
    return times.step_ns[0] - times.start_ns


def _decode_ns(times: RoundTimes) -> int | None:
    """E2E - TTFT: the window of tokens 2..N; None for N = 1."""
    return times.end_ns - times.step_ns[0] if _new_tokens(times) >= 2 else None


def _rate(count: int, ns: int | None) -> float | None:
    if ns is None:
        return None
    return count / (ns / NS_PER_S) if ns > 0 else float("inf")


def _ttft_ms(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float:
    return _ttft_ns(times) / NS_PER_MS


def _e2e_ms(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float:
    return _e2e_ns(times) / NS_PER_MS


def _tpot_ms(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float | None:
    decode_ns = _decode_ns(times)
    return None if decode_ns is None else decode_ns / NS_PER_MS / (_new_tokens(times) - 1)


def _decode_tokens_per_s(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float | None:
    return _rate(batch_size * (_new_tokens(times) - 1), _decode_ns(times))


def _e2e_tokens_per_s(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float | None:
    return _rate(batch_size * _new_tokens(times), _e2e_ns(times))


def _input_output_tokens_per_s(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float | None:
    return _rate(batch_size * (prompt_tokens + _new_tokens(times)), _e2e_ns(times))


def _decode_cpu_ns(times: RoundTimes) -> int | None:
    """The decode window's CPU time where it was read and the window has length."""
    decode_ns = _decode_ns(times)
    return None if times.decode_cpu_ns is None or not decode_ns else times.decode_cpu_ns


def _host_cpu_ms_per_token(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float | None:
    cpu_ns = _decode_cpu_ns(times)
    return None if cpu_ns is None else cpu_ns / NS_PER_MS / (batch_size * (_new_tokens(times) - 1))


def _host_cpu_percent_of_wall(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float | None:
    cpu_ns, decode_ns = _decode_cpu_ns(times), _decode_ns(times)
    return None if cpu_ns is None or not decode_ns else 100.0 * cpu_ns / decode_ns


def _joules(times: RoundTimes) -> float | None:
    """The counter's increase; None without a reading, or when it did not advance (a round shorter than its
    update interval is not 0 J)."""
    return times.energy_uj / UJ_PER_J if times.energy_uj and _e2e_ns(times) > 0 else None


def _round_energy_j(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float | None:
    return _joules(times)


def _tokens_per_j(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float | None:
    joules = _joules(times)
    return None if joules is None else batch_size * _new_tokens(times) / joules


def _average_power_w(times: RoundTimes, batch_size: int, prompt_tokens: int) -> float | None:
    joules = _joules(times)
    return None if joules is None else joules / (_e2e_ns(times) / NS_PER_S)


REGISTRY: tuple[Metric, ...] = (
    Metric("decode_tokens_per_s", "tokens/s", "decode tok/s", True, per_round=_decode_tokens_per_s,
           in_summary=True, in_comparison=True, in_baseline=True, gate_min_effect_percent=5.0,
           paired_min_effect_percent=3.0,
           description="B·(N-1) new tokens over the decode window (E2E - TTFT), median across rounds"),
    Metric("ttft_ms", "ms", "TTFT ms", False, digits=2, per_round=_ttft_ms, in_summary=True, in_comparison=True,
           in_baseline=True, gate_min_effect_percent=10.0, paired_min_effect_percent=10.0,
           description="submit to the first new token (prefill and first step), median across rounds"),
    Metric("tpot_ms", "ms", "TPOT ms", False, digits=3, per_round=_tpot_ms, in_summary=True, in_baseline=True),
    Metric("e2e_ms", "ms", "E2E ms", False, digits=1, per_round=_e2e_ms),
    Metric("e2e_tokens_per_s", "tokens/s", "E2E tok/s", True, per_round=_e2e_tokens_per_s,
           paired_min_effect_percent=3.0, description="B·N new tokens over the whole generate(), TTFT included"),
    # The field report's (input+output)/time: prompt tokens inflate it; kept for continuity, never judged.
    Metric("input_output_tokens_per_s", "tokens/s", "(in+out) tok/s", True, per_round=_input_output_tokens_per_s),
    # Percentiles of the gaps between consecutive tokens over every round: the per-token latency tail.
    Metric("itl_p50_ms", "ms", "ITL p50 ms", False, family=TOKEN_GAPS, digits=3, in_summary=True),
    Metric("itl_p99_ms", "ms", "ITL p99 ms", False, family=TOKEN_GAPS, digits=3, in_summary=True,
           in_comparison=True, description="99th percentile of the gaps between consecutive tokens over all "
           "rounds (the per-token latency tail)"),
    Metric("host_cpu_ms_per_token", "ms", "host CPU ms/token", False, family=HOST, digits=3,
           per_round=_host_cpu_ms_per_token, in_summary=True, in_comparison=True,
           description="the process's CPU time per generated token while decoding, median across rounds"),
    Metric("host_cpu_percent_of_wall", "%", "host CPU % of wall", False, family=HOST,
           per_round=_host_cpu_percent_of_wall, in_summary=True),
    Metric("round_energy_j", "J", "J/round", False, family=ENERGY, digits=2, per_round=_round_energy_j),
    Metric("tokens_per_j", "tokens/J", "tokens/J", True, family=ENERGY, digits=2, per_round=_tokens_per_j,
           in_summary=True, in_comparison=True,
           description="tokens per joule of the device's energy counter, median across rounds"),
    Metric("average_power_w", "W", "avg W", False, family=ENERGY, per_round=_average_power_w, in_summary=True),
    # Allocator peaks of fixed shapes are deterministic: 2 % of the peak, at least 1 MiB (a 64 MiB floor let the
    # tiny model's 6.7 MiB peak grow tenfold unnoticed).
    Metric("peak_allocated_bytes", "bytes", "peak alloc MiB", False, family=MEMORY, in_summary=True,
           in_comparison=True, memory_tolerance=(2.0, MIB), description="the Paddle allocator's peak"),
    Metric("peak_reserved_bytes", "bytes", "peak reserved MiB", False, family=MEMORY, memory_tolerance=(2.0, MIB)),
    Metric("peak_nvml_process_bytes", "bytes", "peak NVML MiB", False, family=MEMORY,
           memory_tolerance=(5.0, 256 * MIB)),
    Metric("peak_rss_bytes", "bytes", "peak RSS MiB", False, family=MEMORY, in_summary=True,
           memory_tolerance=(10.0, 256 * MIB)),
)  # fmt: skip


# Views of the registry, by the job that needs them. Functions, not constants: they read REGISTRY when called.


def metric_by_name(name: str) -> Metric:
    for entry in REGISTRY:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown metric {name!r}: one of {', '.join(m.name for m in REGISTRY)}")


def metric_names(family: str | None = None) -> tuple[str, ...]:
    return tuple(m.name for m in REGISTRY if family is None or m.family == family)


def round_metric_names() -> tuple[str, ...]:
    """Computed per round by ``round_metrics``."""
    return tuple(m.name for m in REGISTRY if m.per_round is not None)


def baseline_metric_names() -> tuple[str, ...]:
    """Kept in baselines: also the speed metrics the stored-baseline gate can judge."""
    return tuple(m.name for m in REGISTRY if m.in_baseline)


def paired_metric_names() -> tuple[str, ...]:
    """Estimated by the paired engine, decode tok/s first (its stop rule reads the first a case has)."""
    return tuple(m.name for m in REGISTRY if m.paired_min_effect_percent is not None)


def paired_min_effects() -> dict[str, float]:
    return {m.name: m.paired_min_effect_percent for m in REGISTRY if m.paired_min_effect_percent is not None}


def paired_gated_metric_names() -> tuple[str, ...]:
    """The paired gate judges what the stored-baseline gate judges by default (of the metrics it estimates)."""
    return tuple(name for name in paired_metric_names() if metric_by_name(name).gate_min_effect_percent is not None)


def default_gate_min_effects() -> dict[str, float]:
    return {m.name: m.gate_min_effect_percent for m in REGISTRY if m.gate_min_effect_percent is not None}


def memory_tolerances() -> dict[str, tuple[float, int]]:
    return {m.name: m.memory_tolerance for m in REGISTRY if m.memory_tolerance is not None}


def summary_metrics(*families: str) -> tuple[Metric, ...]:
    return tuple(m for m in REGISTRY if m.in_summary and m.family in families)


def comparison_metrics() -> tuple[Metric, ...]:
    return tuple(m for m in REGISTRY if m.in_comparison)


def round_metrics(times: RoundTimes, batch_size: int, prompt_tokens: int) -> dict[str, float]:
    """Every registered per-round metric the round can give (docs/facts.md §4).

    - ttft_ms: submit -> first new token available (prefill + first step).
    - tpot_ms: (E2E - TTFT) / (N - 1); decode_tokens_per_s: B·(N-1) / (E2E - TTFT).
      Both need N >= 2 and are left out for N = 1.
    - e2e_tokens_per_s: B·N / E2E.
    - input_output_tokens_per_s: B·(P+N) / E2E, what the field report called tokens/s; prompt
      tokens inflate it, so it is kept for continuity only, never gated.
    - host_cpu_ms_per_token: decode-window CPU time / (B·(N-1)); host_cpu_percent_of_wall: that CPU time over
      the window's wall time, in percent (above 100 with several busy threads). Left out without a CPU
      reading, for N = 1, or for a zero-length window.
    - round_energy_j, tokens_per_j (B·N / J) and average_power_w (J / E2E): left out without an energy
      reading, or when the counter did not advance.
    """
    found = {m.name: m.per_round(times, batch_size, prompt_tokens) for m in REGISTRY if m.per_round is not None}
    return {name: value for name, value in found.items() if value is not None}


def inter_token_ms(times: RoundTimes) -> list[float]:
    """Gaps between consecutive tokens (N-1 values), in milliseconds."""
    steps = times.step_ns
    return [(later - earlier) / NS_PER_MS for earlier, later in itertools.pairwise(steps)]
