"""The memory-bandwidth ceiling of batch-1 decode (FIELD-NOTES.md §3). Pure arithmetic, no Paddle.

Each generated token reads every weight once, except the input embedding, which only gathers one
row per token; it also reads the KV cache of every token of context so far. So at batch 1::

    bytes_per_token = (parameters - input_embedding_parameters) * bytes_per_parameter
                      + kv_bytes_per_token_of_context * context_tokens
    ceiling_tokens_per_s = memory_bandwidth_bytes_per_s / bytes_per_token

A measured batch-1 decode figure above that ceiling is physically impossible: it is a timing error
(a missing device synchronization, miscounted tokens), not a fast GPU. Bandwidths are the vendors'
datasheet peaks in decimal units (1 GB/s = 1e9 bytes/s); real kernels reach 70-90 % of them.

Weight-only int8/int4 quantization stores each weight in 1 or 0.5 bytes (the per-channel scales
are a rounding error); this model applies ``bytes_per_parameter`` to every counted weight.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import ConfigError

GB = 1e9  # datasheet bandwidths are decimal: 1 GB/s = 1e9 bytes/s

BYTES_PER_PARAMETER: dict[str, float] = {
    "float32": 4.0,
    "float16": 2.0,
    "bfloat16": 2.0,
    "int8": 1.0,  # weight-only int8
    "int4": 0.5,  # weight-only int4: two weights per byte
    # the suite's dtype names for the same (config.QUANTIZED_DTYPES)
    "weight_only_int8": 1.0,
    "weight_only_int4": 0.5,
}
# The dtype activations and the KV cache keep under weight-only quantization.
ACTIVATION_DTYPE = {"int8": "float16", "int4": "float16", "weight_only_int8": "float16", "weight_only_int4": "float16"}


@dataclass(frozen=True)
class GpuSku:
    """A GPU model: ``patterns`` are token sets matched against the normalized device name."""

    name: str
    memory_bandwidth_bytes_per_s: float
    patterns: tuple[str, ...]


# Datasheet HBM/GDDR bandwidths. Matching is by whole tokens (so "a10" never matches "a100"),
# most specific pattern first (so "h100 nvl" wins over a bare "h100").
GPU_SKUS: tuple[GpuSku, ...] = (
    GpuSku("Tesla P40", 346 * GB, ("p40",)),
    GpuSku("Tesla V100 SXM2", 900 * GB, ("v100 sxm2",)),
    GpuSku("Tesla V100 PCIe", 900 * GB, ("v100 pcie",)),
    GpuSku("A10", 600 * GB, ("a10",)),
    GpuSku("A10G", 600 * GB, ("a10g",)),
    GpuSku("L4", 300 * GB, ("l4",)),
    GpuSku("A100 40GB PCIe", 1555 * GB, ("a100 pcie 40gb",)),
    GpuSku("A100 40GB SXM", 1555 * GB, ("a100 sxm4 40gb",)),
    GpuSku("A100 80GB PCIe", 1935 * GB, ("a100 80gb pcie",)),
    GpuSku("A100 80GB SXM", 2039 * GB, ("a100 sxm4 80gb",)),
    GpuSku("H100 PCIe", 2000 * GB, ("h100 pcie",)),
    # NVML and CUDA call the SXM5 H100 "NVIDIA H100 80GB HBM3".
    GpuSku("H100 SXM", 3350 * GB, ("h100 sxm", "h100 sxm5", "h100 80gb hbm3")),
    GpuSku("H100 NVL", 3900 * GB, ("h100 nvl",)),
    GpuSku("H200", 4800 * GB, ("h200",)),
    GpuSku("GeForce RTX 4090", 1008 * GB, ("rtx 4090",)),
    GpuSku("GeForce RTX 3090", 936 * GB, ("rtx 3090",)),
    GpuSku("GeForce RTX 3090 Ti", 1008 * GB, ("rtx 3090 ti",)),
)

# Families whose variants differ in bandwidth: a bare family name is reported as ambiguous.
AMBIGUOUS_FAMILIES = ("a100", "h100", "v100")


@dataclass(frozen=True)
class BandwidthLookup:
    """The SKU table's answer for one device name: a bandwidth, or None with the reason."""

    device_name: str
    memory_bandwidth_bytes_per_s: float | None
    sku: str | None
    reason: str


def normalize_device_name(name: str) -> str:
    """Lower case, every run of non-alphanumerics one space: "NVIDIA A100-SXM4-80GB" -> "nvidia a100 sxm4 80gb"."""
    return " ".join(re.split(r"[^a-z0-9]+", name.lower())).strip()


def _tokens(text: str) -> frozenset[str]:
    return frozenset(normalize_device_name(text).split())


def lookup_bandwidth(device_name: str) -> BandwidthLookup:
    """The datasheet memory bandwidth of the GPU called ``device_name`` (NVML's or Paddle's name)."""
    name_tokens = _tokens(device_name)
    candidates = [
        (len(_tokens(pattern)), sku) for sku in GPU_SKUS for pattern in sku.patterns if _tokens(pattern) <= name_tokens
    ]
    if candidates:
        _, sku = max(candidates, key=lambda item: item[0])  # the most specific pattern wins
        return BandwidthLookup(
            device_name,
            sku.memory_bandwidth_bytes_per_s,
            sku.name,
            f"SKU table: {sku.name}, {sku.memory_bandwidth_bytes_per_s / GB:.0f} GB/s (datasheet)",
        )
    families = [family for family in AMBIGUOUS_FAMILIES if family in name_tokens]
    if families:
        variants = ", ".join(
            f"{sku.name} {sku.memory_bandwidth_bytes_per_s / GB:.0f} GB/s"
            for sku in GPU_SKUS
            if families[0] in sku.name.lower()
        )
        reason = f"the {families[0].upper()} variant of {device_name!r} is not identified (known: {variants})"
    else:
        reason = f"{device_name!r} is not in the SKU table ({', '.join(sku.name for sku in GPU_SKUS)})"
    return BandwidthLookup(device_name, None, None, reason)


def bandwidth_from_memory_bus(bus_width_bits: int, max_memory_clock_mhz: float) -> float:
    """Peak bandwidth from NVML's memory bus width and maximum memory clock, in bytes/s.

    NVML reports the memory clock such that two transfers happen per reported cycle, for HBM and
    GDDR alike (H100 SXM: 5120 bits x 2619 MHz x 2 = 3.35 TB/s; RTX 4090: 384 bits x 10501 MHz x 2
    = 1008 GB/s). A cross-check of the SKU table, and the fallback for a GPU it does not know.
    """
    if bus_width_bits <= 0 or max_memory_clock_mhz <= 0:
        raise ValueError(
            f"invalid memory bus {bus_width_bits} bits at {max_memory_clock_mhz} MHz: both must be positive"
        )
    return bus_width_bits / 8 * max_memory_clock_mhz * 1e6 * 2


def bytes_per_parameter(dtype: str) -> float:
    """Bytes one weight occupies in ``dtype`` (int8/int4: weight-only quantization)."""
    try:
        return BYTES_PER_PARAMETER[dtype]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}: allowed values are {', '.join(BYTES_PER_PARAMETER)}") from None


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    input_embedding: int


def qwen2_parameter_counts(architecture: Mapping[str, Any]) -> ParameterCounts:
    """Parameters of a Qwen2ForCausalLM from its config (as in ``models.PRESETS`` or a ``config.json``).

    Per layer: q/k/v projections with biases, o projection, the three MLP matrices, two RMS norms;
    plus the input embedding, the final norm and (unless tied) the output projection.
    """
    hidden = int(architecture["hidden_size"])
    intermediate = int(architecture["intermediate_size"])
    layers = int(architecture["num_hidden_layers"])
    heads = int(architecture["num_attention_heads"])
    kv_heads = int(architecture.get("num_key_value_heads", heads))
    vocab = int(architecture["vocab_size"])
    head_dim = hidden // heads
    kv_width = kv_heads * head_dim
    attention = (hidden * hidden + hidden) + 2 * (hidden * kv_width + kv_width) + hidden * hidden
    per_layer = attention + 3 * hidden * intermediate + 2 * hidden
    embedding = vocab * hidden
    output = 0 if architecture.get("tie_word_embeddings", False) else vocab * hidden
    return ParameterCounts(total=embedding + layers * per_layer + hidden + output, input_embedding=embedding)


def qwen2_kv_bytes_per_token_of_context(architecture: Mapping[str, Any], bytes_per_element: float) -> float:
    """KV-cache bytes one cached token adds: layers x (key + value) x kv heads x head dim x element size."""
    hidden = int(architecture["hidden_size"])
    heads = int(architecture["num_attention_heads"])
    kv_heads = int(architecture.get("num_key_value_heads", heads))
    layers = int(architecture["num_hidden_layers"])
    return layers * 2 * kv_heads * (hidden // heads) * bytes_per_element


def decode_bytes_per_token(
    parameter_count: int,
    embedding_parameters: int,
    bytes_per_parameter: float,
    kv_bytes_per_token_of_context: float,
    context_tokens: float,
) -> float:
    """Bytes read from device memory to generate one token at batch 1 (see the module docstring)."""
    if embedding_parameters < 0 or embedding_parameters > parameter_count:
        raise ValueError(f"invalid embedding parameters {embedding_parameters}: must be in [0, {parameter_count}]")
    if bytes_per_parameter <= 0 or kv_bytes_per_token_of_context < 0 or context_tokens < 0:
        raise ValueError(
            f"invalid sizes: bytes per parameter {bytes_per_parameter} must be > 0, KV bytes per token "
            f"{kv_bytes_per_token_of_context} and context tokens {context_tokens} must be >= 0"
        )
    weights = (parameter_count - embedding_parameters) * bytes_per_parameter
    return weights + kv_bytes_per_token_of_context * context_tokens


def mean_decode_context_tokens(prompt_tokens: int, max_new_tokens: int) -> float:
    """Average number of cached tokens read per decode step: the prompt plus half the new tokens."""
    return prompt_tokens + (max_new_tokens - 1) / 2


def ceiling_tokens_per_s(memory_bandwidth_bytes_per_s: float, bytes_per_token: float) -> float:
    """The most tokens per second batch-1 decode can produce: bandwidth / bytes per token."""
    if memory_bandwidth_bytes_per_s <= 0 or bytes_per_token <= 0:
        raise ValueError(
            f"invalid ceiling inputs: bandwidth {memory_bandwidth_bytes_per_s} bytes/s and "
            f"{bytes_per_token} bytes per token must both be > 0"
        )
    return memory_bandwidth_bytes_per_s / bytes_per_token


def check_against_ceiling(measured_tokens_per_s: float, ceiling: float) -> tuple[float, str | None]:
    """``(share_of_ceiling, error)``: ``error`` is a message when the share exceeds 1, else None.

    A share above 1.0 means more bytes per second than the memory can deliver: the measurement
    is wrong, whatever the number looks like.
    """
    if ceiling <= 0:
        raise ValueError(f"invalid ceiling {ceiling} tokens/s: must be > 0")
    share = measured_tokens_per_s / ceiling
    if share > 1.0:
        return share, (
            f"measurement error: {measured_tokens_per_s:.1f} decode tokens/s is {share:.0%} of the "
            f"memory-bandwidth ceiling of {ceiling:.1f} tokens/s at batch 1, which is physically impossible "
            "(an unsynchronized timer or miscounted tokens?)"
        )
    return share, None


@dataclass(frozen=True)
class DecodeCeiling:
    """The batch-1 ceiling of one case on one GPU, or why there is none (``ceiling_tokens_per_s`` None)."""

    ceiling_tokens_per_s: float | None
    memory_bandwidth_bytes_per_s: float | None
    bytes_per_token: float | None
    source: str


def batch1_decode_ceiling(
    device_name: str,
    architecture: Mapping[str, Any],
    dtype: str,
    prompt_tokens: int,
    max_new_tokens: int,
    memory_bandwidth_bytes_per_s: float | None = None,
) -> DecodeCeiling:
    """Everything above in one call, for a Qwen2 ``architecture`` in ``dtype`` on ``device_name``.

    ``memory_bandwidth_bytes_per_s`` overrides the SKU table (a measured or NVML-derived figure).
    The KV cache is kept in the activation dtype (float16 for weight-only int8/int4).
    """
    if memory_bandwidth_bytes_per_s is None:
        lookup = lookup_bandwidth(device_name)
        if lookup.memory_bandwidth_bytes_per_s is None:
            return DecodeCeiling(None, None, None, lookup.reason)
        memory_bandwidth_bytes_per_s, source = lookup.memory_bandwidth_bytes_per_s, lookup.reason
    else:
        source = f"given bandwidth {memory_bandwidth_bytes_per_s / GB:.0f} GB/s"
    counts = qwen2_parameter_counts(architecture)
    kv_element_bytes = bytes_per_parameter(ACTIVATION_DTYPE.get(dtype, dtype))
    per_token = decode_bytes_per_token(
        counts.total,
        counts.input_embedding,
        bytes_per_parameter(dtype),
        qwen2_kv_bytes_per_token_of_context(architecture, kv_element_bytes),
        mean_decode_context_tokens(prompt_tokens, max_new_tokens),
    )
    return DecodeCeiling(
        ceiling_tokens_per_s(memory_bandwidth_bytes_per_s, per_token), memory_bandwidth_bytes_per_s, per_token, source
    )


def ceiling_extra_info(
    ceiling: DecodeCeiling, decode_tokens_per_s: Sequence[float]
) -> tuple[dict[str, Any], str | None]:
    """A batch-1 case's ``extra_info`` entry for the ceiling, and an error if any round beat the ceiling.

    The median round gives ``share_of_ceiling``; the fastest round is what is checked, since one
    impossible round is enough to show the timer is wrong.
    """
    if ceiling.ceiling_tokens_per_s is None or not decode_tokens_per_s:
        why = ceiling.source if ceiling.ceiling_tokens_per_s is None else "no measured round"
        return {"bandwidth_ceiling_absent": why}, None
    limit = ceiling.ceiling_tokens_per_s
    share, _ = check_against_ceiling(statistics.median(decode_tokens_per_s), limit)
    fastest_share, error = check_against_ceiling(max(decode_tokens_per_s), limit)
    info = {
        "bandwidth_ceiling": {
            "ceiling_tokens_per_s": limit,
            "share_of_ceiling": share,
            "fastest_round_share_of_ceiling": fastest_share,
            "memory_bandwidth_bytes_per_s": ceiling.memory_bandwidth_bytes_per_s,
            "bytes_per_token": ceiling.bytes_per_token,
            "source": ceiling.source,
        }
    }
    return info, None if error is None else f"the fastest round: {error}"
