"""Splitting a sweep across N runners: deterministic, balanced by expected cost, not by count.

Every runner computes the same sweep and the same split, so ``--llm-shard K/N`` needs no
coordination: shard K takes the cases that longest-processing-time-first (LPT) list scheduling
gives it. LPT hands the costliest remaining case to the least-loaded shard; after every step the
most and least loaded shards differ by at most the cost of the single costliest case.

The cost model (``expected_cost``) is deliberately simple; it only has to rank cases and be
roughly proportional, and it is monotone in every dimension of a case. In units of one decode
step's fixed overhead (kernel launches and Python per step, which dominate eager decoding)::

    width          = parameters / PARAMETERS_PER_STEP_OVERHEAD     per sequence, per token
    prefill        = STEP_OVERHEAD + PREFILL_TOKEN_SHARE * width * batch * beams * prompt_tokens
    decode         = max_new_tokens * (STEP_OVERHEAD * decoding_overhead + width * batch * beams)
    compile        = (max_new_tokens + 1) * COMPILE_COST_PER_SHAPE     static modes only, once per case
    expected_cost  = rounds * (prefill + decode) + compile

``parameters`` comes from the preset's architecture (``models.PRESETS``) or a checkpoint
directory's ``config.json``; an unknown model counts as ``DEFAULT_PARAMETERS``. The dtype is left
out: eager decoding is bound by per-step overhead far more than by the bytes of a weight, and
every runner must compute the same costs whatever its GPU. Loading a model (once per (model,
dtype) group in a shard) is left out too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

from paddle_llm_bench.core.config import DECODINGS, Case, ConfigError

STEP_OVERHEAD = 1.0
# A 1e9-parameter model's per-sequence work per token costs about one step's fixed overhead.
PARAMETERS_PER_STEP_OVERHEAD = 1e9
# Prefill processes the prompt's tokens in parallel: a prompt token costs a tenth of a decode step's work.
PREFILL_TOKEN_SHARE = 0.1
# Beam search reorders caches and scores beams every step; sampling sorts for top-k/top-p.
DECODING_STEP_OVERHEAD = {"greedy_search": 1.0, "sampling": 1.2, "beam_search": 1.5}
DEFAULT_PARAMETERS = 1_000_000_000
# A static execution mode (to_static, sot, cinn) compiles a program per input shape in its first generation: one
# for the prefill and one per decoding step (the cache grows). On this project's VM the tiny model's first
# generation took 50.6 s for 32 greedy steps and 69.2 s for beam4, about 200 eager steps' time per shape.
COMPILE_COST_PER_SHAPE = 200.0 * STEP_OVERHEAD


@functools.cache
def _parameters(model: str) -> int:
    """Parameter count of a preset or a checkpoint directory; ``DEFAULT_PARAMETERS`` if unknown."""
    from paddle_llm_bench.core.architecture import Architecture
    from paddle_llm_bench.core.bandwidth import qwen2_parameter_counts
    from paddle_llm_bench.runtime.models import PRESETS

    architecture = PRESETS.get(model)
    if architecture is None:
        try:
            architecture = Architecture.of(json.loads((Path(model) / "config.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):  # unreadable, not JSON, not a decoder's layout
            return DEFAULT_PARAMETERS
    return qwen2_parameter_counts(architecture).total


def expected_cost(case: Case, rounds: int = 1, parameters: int | None = None) -> float:
    """Relative cost of measuring ``case`` for ``rounds`` rounds, its first generation's compiling included (see
    the module docstring)."""
    return rounds * round_cost(case, parameters) + first_generation_cost(case)


def first_generation_cost(case: Case) -> float:
    """What a static mode's first generation adds to the rounds: a program compiled per shape (0 for eager)."""
    return 0.0 if case.mode == "eager" else (case.max_new_tokens + 1) * COMPILE_COST_PER_SHAPE


def round_cost(case: Case, parameters: int | None = None) -> float:
    """One round: the prefill and every decoding step."""
    decoding = DECODINGS[case.decoding]
    beams = int(dict(decoding.settings).get("num_beams", 1))
    width = (parameters if parameters is not None else _parameters(case.model)) / PARAMETERS_PER_STEP_OVERHEAD
    sequences = case.batch_size * beams
    prefill = STEP_OVERHEAD + PREFILL_TOKEN_SHARE * width * sequences * case.prompt_tokens
    step = STEP_OVERHEAD * DECODING_STEP_OVERHEAD.get(decoding.strategy, 1.0) + width * sequences
    return prefill + case.max_new_tokens * step


def parse_shard(text: str, source: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N; the error names the value and where it came from."""
    k_text, slash, n_text = text.strip().partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k = n = 0
    if not slash or not 1 <= k <= n:
        raise ConfigError(f"invalid shard {text!r} from {source}: expected K/N with 1 <= K <= N, e.g. 1/2")
    return k, n


def assign_shards(cases: Sequence[Case], n: int, rounds: int = 1) -> list[int]:
    """0-based shard of each case (by position): LPT over cases sorted by (-cost, id)."""
    if n < 1:
        raise ConfigError(f"invalid shard count {n}: must be >= 1")
    costs = [expected_cost(case, rounds) for case in cases]
    order = sorted(range(len(cases)), key=lambda i: (-costs[i], cases[i].id, i))
    loads = [0.0] * n
    shard_of = [0] * len(cases)
    for i in order:
        target = min(range(n), key=lambda s: (loads[s], s))  # least loaded; ties: the lowest shard
        shard_of[i] = target
        loads[target] += costs[i]
    return shard_of


def select_shard(cases: Sequence[Case], k: int, n: int, rounds: int = 1) -> list[Case]:
    """The cases of shard ``k`` (1-based) of ``n``, in the sweep's original order (groups stay together)."""
    if not 1 <= k <= n:
        raise ConfigError(f"invalid shard {k}/{n}: expected K/N with 1 <= K <= N")
    shard_of = assign_shards(cases, n, rounds)
    return [case for case, shard in zip(cases, shard_of, strict=True) if shard == k - 1]


# On a GPU eager decode is bound by launching kernels: a step of 32 sequences costs little more than a step of
# one. Each sequence beyond the first adds this share of a step (an expectation until a night measures it).
GPU_SEQUENCE_SHARE = 0.02
# One greedy batch-1 decoding step, before anything was measured: eager decode of the 1.5B model on a big GPU;
# the tiny model on a CPU (5-10 ms on this project's 2-core VM).
DEFAULT_STEP_MS = {"gpu": 30.0, "cpu": 5.0}


def round_seconds(case: Case, step_s: float, device: str) -> float:
    """Expected seconds of one round of ``case``, from ``step_s``, one greedy batch-1 decoding step of its model.

    On a CPU the cost model scales it (per-sequence work is real work there); on a GPU a step costs about the
    same for any batch (``GPU_SEQUENCE_SHARE`` per extra sequence, the decoding's own per-step overhead), and
    prefill about one step per thousand prompt tokens per sequence. A night's measured rounds replace this."""
    if device == "gpu":
        decoding = DECODINGS[case.decoding]
        sequences = case.batch_size * int(dict(decoding.settings).get("num_beams", 1))
        step = step_s * DECODING_STEP_OVERHEAD.get(decoding.strategy, 1.0) * (1 + GPU_SEQUENCE_SHARE * (sequences - 1))
        return case.max_new_tokens * step + step_s * (1 + sequences * case.prompt_tokens / 1000)
    return round_cost(case) * _seconds_per_unit(case, step_s)


def first_generation_seconds(case: Case, step_s: float) -> float:
    """Expected seconds a static mode's first generation adds (compiling), from ``step_s`` as ``round_seconds``."""
    return first_generation_cost(case) * _seconds_per_unit(case, step_s)


def _seconds_per_unit(case: Case, step_s: float) -> float:
    """``step_s`` is one greedy batch-1 step of the model: ``STEP_OVERHEAD + width`` in the cost model's units."""
    return step_s / (STEP_OVERHEAD + _parameters(case.model) / PARAMETERS_PER_STEP_OVERHEAD)
