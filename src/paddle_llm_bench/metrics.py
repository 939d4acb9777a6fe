"""Per-round latency and throughput metrics from step timestamps (FIELD-NOTES.md §4). Pure.

A round is one ``generate()`` call producing exactly ``N`` new tokens for each of ``B`` sequences.
Timestamps are ``perf_counter_ns`` values taken after a device synchronization: ``start`` just
before submitting, one per decoding step when that step's tokens exist, and ``end`` after
``generate()`` returned.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

# Every per-round metric, its unit and which direction is better.
METRIC_UNITS: dict[str, str] = {
    "decode_tokens_per_s": "tokens/s",
    "ttft_ms": "ms",
    "tpot_ms": "ms",
    "e2e_ms": "ms",
    "e2e_tokens_per_s": "tokens/s",
    "input_output_tokens_per_s": "tokens/s",
}
HIGHER_IS_BETTER = frozenset({"decode_tokens_per_s", "e2e_tokens_per_s", "input_output_tokens_per_s"})


@dataclass(frozen=True)
class RoundTimes:
    start_ns: int
    step_ns: tuple[int, ...]
    end_ns: int

    def __post_init__(self) -> None:
        stamps = (self.start_ns, *self.step_ns, self.end_ns)
        if any(later < earlier for earlier, later in itertools.pairwise(stamps)):
            raise ValueError("round timestamps must not decrease")
        if not self.step_ns:
            raise ValueError("a round needs at least one decoding step")


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
    return metrics


def inter_token_ms(times: RoundTimes) -> list[float]:
    """Gaps between consecutive tokens (N-1 values), in milliseconds."""
    steps = times.step_ns
    return [(later - earlier) / NS_PER_MS for earlier, later in itertools.pairwise(steps)]


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")
