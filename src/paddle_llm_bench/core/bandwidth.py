"""The memory-bandwidth ceiling of batch-1 decode (docs/facts.md §3). Pure arithmetic, no Paddle.

Each generated token reads every weight once, except the input embedding, which only gathers one
row per token; it also reads the KV cache of every token of context so far. So at batch 1::

    bytes_per_token = (parameters - input_embedding_parameters) * bytes_per_parameter
                      + kv_bytes_per_token_of_context * context_tokens
    ceiling_tokens_per_s = memory_bandwidth_bytes_per_s / bytes_per_token

A measured batch-1 decode figure above that ceiling is physically impossible: it is a timing error
(a missing device synchronization, miscounted tokens), not a fast GPU. Bandwidths are the vendors'
datasheet peaks in decimal units (1 GB/s = 1e9 bytes/s); real kernels reach 70-90 % of them.

Which bytes a token reads is counted, not assumed: ``decode_weight_bytes(model)`` adds up the loaded
model's own parameters, each at its own dtype's size. Under PaddleNLP's weight-only int8/int4
quantization only the ``nn.Linear`` layers are swapped for quantized ones (1 or 0.5 bytes per
weight plus one compute-dtype scale per output feature); the LM head (``Qwen2LMHead``, not an
``nn.Linear``), the norms and the biases stay in the compute dtype (float16). For the 1.5B model
that is about 1.78 GB per token in int8 and 1.12 GB in int4, not 1.54 and 0.77 GB.
``qwen2_decode_weight_bytes(architecture, dtype)`` gives the same count from a Qwen2 config, for
when no model is at hand (docs/gpu-path.md).

A MIG slice has its share of the GPU's memory slices and of its bandwidth (eighths on A100/H100/H200).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paddle_llm_bench.core.architecture import Architecture
from paddle_llm_bench.core.config import ConfigError
from paddle_llm_bench.core.record import BandwidthShare

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
    """A GPU model: ``patterns`` are token sets matched against the normalized device name.
    ``memory_gb``: the datasheet memory of MIG-capable GPUs, to size a MIG slice's share."""

    name: str
    memory_bandwidth_bytes_per_s: float
    patterns: tuple[str, ...]
    memory_gb: float | None = None


# Datasheet HBM/GDDR bandwidths. Matching is by whole tokens (so "a10" never matches "a100"),
# most specific pattern first (so "h100 nvl" wins over a bare "h100").
GPU_SKUS: tuple[GpuSku, ...] = (
    GpuSku("Tesla P40", 346 * GB, ("p40",)),
    GpuSku("Tesla V100 SXM2", 900 * GB, ("v100 sxm2",)),
    GpuSku("Tesla V100 PCIe", 900 * GB, ("v100 pcie",)),
    GpuSku("A10", 600 * GB, ("a10",)),
    GpuSku("A10G", 600 * GB, ("a10g",)),
    GpuSku("L4", 300 * GB, ("l4",)),
    GpuSku("A100 40GB PCIe", 1555 * GB, ("a100 pcie 40gb",), 40),
    GpuSku("A100 40GB SXM", 1555 * GB, ("a100 sxm4 40gb",), 40),
    GpuSku("A100 80GB PCIe", 1935 * GB, ("a100 80gb pcie",), 80),
    GpuSku("A100 80GB SXM", 2039 * GB, ("a100 sxm4 80gb",), 80),
    GpuSku("H100 PCIe", 2000 * GB, ("h100 pcie",), 80),
    # NVML and CUDA call the SXM5 H100 "NVIDIA H100 80GB HBM3".
    GpuSku("H100 SXM", 3350 * GB, ("h100 sxm", "h100 sxm5", "h100 80gb hbm3"), 80),
    GpuSku("H100 NVL", 3900 * GB, ("h100 nvl",), 94),
    GpuSku("H200", 4800 * GB, ("h200",), 141),
    GpuSku("GeForce RTX 4090", 1008 * GB, ("rtx 4090",)),
    GpuSku("GeForce RTX 3090", 936 * GB, ("rtx 3090",)),
    GpuSku("GeForce RTX 3090 Ti", 1008 * GB, ("rtx 3090 ti",)),
)

# Families whose variants differ in bandwidth: a bare family name is reported as ambiguous.
AMBIGUOUS_FAMILIES = ("a100", "h100", "v100")
# NVML and CUDA name a MIG slice after its GPU plus its profile: "NVIDIA H100 80GB HBM3 MIG 1g.10gb".
MIG_PROFILE = re.compile(r"\bmig\s+(\d+)g\.(\d+)gb\b", re.IGNORECASE)
MIG_MEMORY_SLICES = 8  # A100/H100/H200 split memory, and the bandwidth to it, into eighths


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
    """The datasheet memory bandwidth of the GPU called ``device_name`` (NVML's or Paddle's name);
    for a MIG slice ("... MIG 1g.10gb"), its share of it."""
    full = _lookup_full_gpu(device_name)
    profile = MIG_PROFILE.search(device_name)
    if profile is None or full.memory_bandwidth_bytes_per_s is None:
        return full
    sku = next(sku for sku in GPU_SKUS if sku.name == full.sku)
    if sku.memory_gb is None:
        reason = f"{device_name!r} is a MIG slice of a {sku.name}, whose memory size the SKU table lacks"
        return BandwidthLookup(device_name, None, None, reason)
    share = mig_memory_share(float(profile.group(2)), sku.memory_gb)
    bandwidth = full.memory_bandwidth_bytes_per_s * share
    reason = f"{full.reason}; MIG slice {profile.group(0)}: {share * 8:.0f}/8 of it, {bandwidth / GB:.0f} GB/s"
    return BandwidthLookup(device_name, bandwidth, sku.name, reason)


def mig_memory_share(slice_memory: float, gpu_memory: float) -> float:
    """A MIG slice's share of the GPU's memory bandwidth: its memory slices, in eighths of the GPU.

    The memory, and the bandwidth to it, is split into eight slices; a slice's usable memory is a
    bit under its slices' share, so the ratio (any one unit for both) is rounded to the nearest
    eighth, at least one.
    """
    if slice_memory <= 0 or gpu_memory <= 0:
        raise ValueError(f"invalid memory sizes {slice_memory} (slice) and {gpu_memory} (GPU): both must be > 0")
    eighths = round(MIG_MEMORY_SLICES * slice_memory / gpu_memory)
    return min(MIG_MEMORY_SLICES, max(1, eighths)) / MIG_MEMORY_SLICES


def _lookup_full_gpu(device_name: str) -> BandwidthLookup:
    name_tokens = _tokens(MIG_PROFILE.sub(" ", device_name))
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


def qwen2_parameter_counts(architecture: Architecture) -> ParameterCounts:
    """Parameters of a Qwen2ForCausalLM from its config (as in ``models.PRESETS`` or a ``config.json``).

    Per layer: q/k/v projections with biases, o projection, the three MLP matrices, two RMS norms;
    plus the input embedding, the final norm and (unless tied) the output projection.
    """
    hidden, kv_width, vocab = architecture.hidden_size, architecture.kv_width, architecture.vocab_size
    attention = (hidden * hidden + hidden) + 2 * (hidden * kv_width + kv_width) + hidden * hidden
    per_layer = attention + 3 * hidden * architecture.intermediate_size + 2 * hidden
    embedding = vocab * hidden
    output = 0 if architecture.tie_word_embeddings else vocab * hidden
    total = embedding + architecture.num_hidden_layers * per_layer + hidden + output
    return ParameterCounts(total=total, input_embedding=embedding)


def qwen2_kv_bytes_per_token_of_context(architecture: Architecture, bytes_per_element: float) -> float:
    """KV-cache bytes one cached token adds: layers x (key + value) x kv heads x head dim x element size."""
    return architecture.num_hidden_layers * 2 * architecture.kv_width * bytes_per_element


@dataclass(frozen=True)
class WeightBytes:
    """The weight bytes one batch-1 decode step reads, by dtype, and how they were counted."""

    read_bytes: float
    bytes_by_dtype: dict[str, float]
    source: str


def decode_weight_bytes(model: Any) -> WeightBytes:
    """The loaded model's weight bytes read per token: every parameter once, at its own dtype's size,
    except the input embedding, of which a token gathers one row (unless the output layer shares it).

    ``model``: a PaddleNLP causal LM (``named_parameters``, ``get_input_embeddings``); no tensor is read,
    so a model built under ``paddle.LazyGuard`` (no weights allocated) gives the same count.
    """
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = output is not None and getattr(output, "weight", None) is embedding
    by_dtype: dict[str, float] = {}
    skipped = []
    for name, parameter in model.named_parameters():
        if parameter is embedding and not tied:
            skipped.append(name)
            continue
        dtype = str(parameter.dtype).removeprefix("paddle.")
        elements = math.prod(int(n) for n in parameter.shape)
        by_dtype[dtype] = by_dtype.get(dtype, 0.0) + elements * int(parameter.element_size())
    counted = ", ".join(f"{dtype} {size / GB:.3f} GB" for dtype, size in sorted(by_dtype.items()))
    left_out = f"; left out: {', '.join(skipped)} (gathered, one row per token)" if skipped else ""
    return WeightBytes(sum(by_dtype.values()), by_dtype, f"the loaded model's parameters: {counted}{left_out}")


def qwen2_decode_weight_bytes(architecture: Architecture, dtype: str) -> WeightBytes:
    """``decode_weight_bytes`` from a Qwen2 config, the same rule without a model: under weight-only
    quantization the seven ``nn.Linear`` weights of each layer take ``dtype``'s size plus one
    compute-dtype scale per output feature; biases, norms and the LM head keep the compute dtype."""
    hidden, intermediate, vocab = architecture.hidden_size, architecture.intermediate_size, architecture.vocab_size
    layers, kv_width = architecture.num_hidden_layers, architecture.kv_width
    compute_dtype = ACTIVATION_DTYPE.get(dtype, dtype)
    compute_bytes = bytes_per_parameter(compute_dtype)
    linear_weights = layers * (2 * hidden * hidden + 2 * hidden * kv_width + 3 * hidden * intermediate)
    outputs = layers * (3 * hidden + 2 * kv_width + 2 * intermediate)  # q, k, v, o, gate, up, down
    biases_and_norms = layers * (hidden + 2 * kv_width + 2 * hidden) + hidden
    lm_head = vocab * hidden  # tied or not, the output layer reads a vocab x hidden matrix
    in_compute_dtype = biases_and_norms + lm_head
    by_dtype = {compute_dtype: in_compute_dtype * compute_bytes}
    if dtype in ACTIVATION_DTYPE:
        by_dtype[dtype] = linear_weights * bytes_per_parameter(dtype)
        by_dtype[compute_dtype] += outputs * compute_bytes  # the quantization scales
    else:
        by_dtype[compute_dtype] += linear_weights * compute_bytes
    counted = ", ".join(f"{name} {size / GB:.3f} GB" for name, size in sorted(by_dtype.items()))
    return WeightBytes(sum(by_dtype.values()), by_dtype, f"Qwen2 layer shapes: {counted}")


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
    weight_bytes_source: str = ""


def batch1_decode_ceiling(
    device_name: str,
    architecture: Architecture,
    dtype: str,
    prompt_tokens: int,
    max_new_tokens: int,
    memory_bandwidth_bytes_per_s: float | None = None,
    weight_bytes: WeightBytes | None = None,
) -> DecodeCeiling:
    """Everything above in one call, for a Qwen2 ``architecture`` in ``dtype`` on ``device_name``.

    ``memory_bandwidth_bytes_per_s`` overrides the SKU table (a measured or NVML-derived figure).
    ``weight_bytes``: ``decode_weight_bytes(loaded_model)``; without it, the same count from the config.
    The KV cache is kept in the activation dtype (float16 for weight-only int8/int4).
    """
    if memory_bandwidth_bytes_per_s is None:
        lookup = lookup_bandwidth(device_name)
        if lookup.memory_bandwidth_bytes_per_s is None:
            return DecodeCeiling(None, None, None, lookup.reason)
        memory_bandwidth_bytes_per_s, source = lookup.memory_bandwidth_bytes_per_s, lookup.reason
    else:
        source = f"given bandwidth {memory_bandwidth_bytes_per_s / GB:.0f} GB/s"
    weights = weight_bytes if weight_bytes is not None else qwen2_decode_weight_bytes(architecture, dtype)
    kv_element_bytes = bytes_per_parameter(ACTIVATION_DTYPE.get(dtype, dtype))
    kv_bytes = qwen2_kv_bytes_per_token_of_context(architecture, kv_element_bytes)
    per_token = weights.read_bytes + kv_bytes * mean_decode_context_tokens(prompt_tokens, max_new_tokens)
    return DecodeCeiling(
        ceiling_tokens_per_s(memory_bandwidth_bytes_per_s, per_token),
        memory_bandwidth_bytes_per_s,
        per_token,
        source,
        weights.source,
    )


@dataclass(frozen=True)
class CeilingCheck:
    """A case's rounds against its ceiling: the share, or why it is absent; an error if a round beat it."""

    share: BandwidthShare | None = None
    absent_reason: str = ""  # why there is no share ("": the case has none to give, e.g. batch > 1)
    error: str | None = None  # a round faster than the ceiling allows: a measurement error


def check_ceiling(ceiling: DecodeCeiling, decode_tokens_per_s: Sequence[float]) -> CeilingCheck:
    """The median round gives ``share_of_ceiling``; the fastest round is what is checked, since one impossible
    round is enough to show the timer is wrong."""
    if ceiling.ceiling_tokens_per_s is None or not decode_tokens_per_s:
        return CeilingCheck(
            absent_reason=ceiling.source if ceiling.ceiling_tokens_per_s is None else "no measured round"
        )
    limit = ceiling.ceiling_tokens_per_s
    share, _ = check_against_ceiling(statistics.median(decode_tokens_per_s), limit)
    fastest_share, error = check_against_ceiling(max(decode_tokens_per_s), limit)
    found = BandwidthShare(
        ceiling_tokens_per_s=limit,
        share_of_ceiling=share,
        fastest_round_share_of_ceiling=fastest_share,
        memory_bandwidth_bytes_per_s=ceiling.memory_bandwidth_bytes_per_s,
        bytes_per_token=ceiling.bytes_per_token,
        source=ceiling.source,
        weight_bytes_source=ceiling.weight_bytes_source,
    )
    return CeilingCheck(found, error=None if error is None else f"the fastest round: {error}")
