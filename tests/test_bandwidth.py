"""The batch-1 bandwidth ceiling (docs/facts.md §3): arithmetic, the SKU table, the over-ceiling error."""

from __future__ import annotations

import types
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paddle_llm_bench.core.bandwidth import (
    GB,
    GPU_SKUS,
    bandwidth_from_memory_bus,
    batch1_decode_ceiling,
    bytes_per_parameter,
    ceiling_tokens_per_s,
    check_against_ceiling,
    check_ceiling,
    decode_bytes_per_token,
    decode_weight_bytes,
    lookup_bandwidth,
    mig_memory_share,
    normalize_device_name,
    qwen2_decode_weight_bytes,
    qwen2_kv_bytes_per_token_of_context,
    qwen2_parameter_counts,
)
from paddle_llm_bench.core.config import ConfigError
from paddle_llm_bench.runtime.device import import_paddle, import_paddlenlp
from paddle_llm_bench.runtime.models import PRESETS

QWEN_1_5B = PRESETS["deepseek-r1-distill-qwen-1.5b"]


def test_parameter_counts_of_the_1_5b_architecture() -> None:
    counts = qwen2_parameter_counts(QWEN_1_5B)
    assert counts.total == 1_777_088_000  # "about 1.777 B parameters"
    assert counts.input_embedding == 151936 * 1536
    assert counts.total - counts.input_embedding == pytest.approx(1.544e9, rel=1e-3)


def test_kv_cache_bytes_per_token_of_context() -> None:
    # 28 layers x (key + value) x 2 kv heads x head dim 128 x 2 bytes: "about 29 KB per token of context"
    assert qwen2_kv_bytes_per_token_of_context(QWEN_1_5B, 2) == 28_672


def test_bytes_per_token_in_fp16_is_3_09_gb() -> None:
    counts = qwen2_parameter_counts(QWEN_1_5B)
    per_token = decode_bytes_per_token(counts.total, counts.input_embedding, 2, 0, 0)
    assert per_token == pytest.approx(3.09e9, rel=2e-3)
    with_kv = decode_bytes_per_token(counts.total, counts.input_embedding, 2, 28_672, 1024)
    assert (with_kv - per_token) / per_token < 0.01  # "under 1 % at 1k tokens"


@pytest.mark.parametrize(
    ("device_name", "expected_tokens_per_s"),
    [
        ("Tesla P40", 112),
        ("NVIDIA H100 PCIe", 650),
        ("NVIDIA H100 80GB HBM3", 1085),  # the SXM5 H100's CUDA/NVML name
        ("NVIDIA H200", 1555),
    ],
)
def test_field_notes_ceilings_within_2_percent(device_name: str, expected_tokens_per_s: float) -> None:
    ceiling = batch1_decode_ceiling(device_name, QWEN_1_5B, "float16", prompt_tokens=16, max_new_tokens=200)
    assert ceiling.ceiling_tokens_per_s == pytest.approx(expected_tokens_per_s, rel=0.02)


def test_the_field_report_figure_is_about_ten_percent_of_the_p40_ceiling() -> None:
    ceiling = batch1_decode_ceiling("Tesla P40", QWEN_1_5B, "float16", 16, 200).ceiling_tokens_per_s
    assert ceiling is not None
    share, error = check_against_ceiling(11.76, ceiling)
    assert error is None
    assert share == pytest.approx(0.105, abs=0.005)


def test_a_synthetic_over_ceiling_figure_fails() -> None:
    ceiling = batch1_decode_ceiling("NVIDIA H100 80GB HBM3", QWEN_1_5B, "float16", 16, 200).ceiling_tokens_per_s
    assert ceiling is not None
    share, error = check_against_ceiling(1.2 * ceiling, ceiling)
    assert share == pytest.approx(1.2)
    assert error is not None
    assert "measurement error" in error and "120%" in error


def test_exactly_at_the_ceiling_is_not_an_error() -> None:
    assert check_against_ceiling(100.0, 100.0) == (1.0, None)


def test_the_formula_of_whole_model_quantization_halves_and_quarters_the_bytes() -> None:
    counts = qwen2_parameter_counts(QWEN_1_5B)
    fp16 = decode_bytes_per_token(counts.total, counts.input_embedding, bytes_per_parameter("float16"), 0, 0)
    int8 = decode_bytes_per_token(counts.total, counts.input_embedding, bytes_per_parameter("int8"), 0, 0)
    int4 = decode_bytes_per_token(counts.total, counts.input_embedding, bytes_per_parameter("int4"), 0, 0)
    assert int8 == pytest.approx(fp16 / 2)
    assert int4 == pytest.approx(fp16 / 4)


def lazy_1_5b(monkeypatch: pytest.MonkeyPatch, algo: str | None) -> Any:
    """The 1.5B architecture as PaddleNLP builds it in float16, weight-only quantized by PaddleNLP's own
    ``replace_with_quantization_linear`` when ``algo`` is given; parameters lazy (no weights allocated)."""
    paddle = import_paddle()
    import_paddlenlp()
    import paddlenlp.quantization.quantization_utils as quantization_utils
    from paddlenlp.quantization.quantization_config import QuantizationConfig
    from paddlenlp.transformers import Qwen2Config, Qwen2ForCausalLM
    from paddlenlp.transformers.model_utils import dtype_guard, no_init_weights

    # It calls gc.collect() once per sub-layer: 100 s for the 1.5B on this VM, and no other effect.
    monkeypatch.setattr(quantization_utils, "gc", types.SimpleNamespace(collect=lambda: 0))
    config = Qwen2Config(**QWEN_1_5B.config(max_position_embeddings=16), dtype="float16")
    with dtype_guard("float16"), no_init_weights(), paddle.LazyGuard():
        model = Qwen2ForCausalLM(config)
        if algo is not None:
            quantization_utils.replace_with_quantization_linear(model, QuantizationConfig(weight_quantize_algo=algo))
    return model


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dtype", "algo", "expected_gb"),
    [
        ("float16", None, 3.087),
        ("weight_only_int8", "weight_only_int8", 1.779),
        ("weight_only_int4", "weight_only_int4", 1.123),
    ],
)
def test_bytes_per_token_are_counted_from_the_1_5b_models_own_parameters(
    monkeypatch: pytest.MonkeyPatch, dtype: str, algo: str | None, expected_gb: float
) -> None:
    model = lazy_1_5b(monkeypatch, algo)
    counted = decode_weight_bytes(model)
    # the figures: about 1.78 GB (int8) and 1.12 GB (int4), not 1.54 and 0.77 GB
    assert counted.read_bytes / GB == pytest.approx(expected_gb, abs=0.001)
    assert "qwen2.embed_tokens.weight (gathered, one row per token)" in counted.source
    # what the quantization swapped (the nn.Linear layers) and what stayed float16 (the LM head, norms, biases)
    lm_head = [p for name, p in model.named_parameters() if name == "lm_head.weight"]
    assert len(lm_head) == 1 and str(lm_head[0].dtype) == "paddle.float16"
    if algo is not None:
        assert type(model.qwen2.layers[0].mlp.down_proj).__name__ == "QuantizationLinear"
        assert type(model.lm_head).__name__ == "Qwen2LMHead"
    # the config-based count applies the same rule
    assert qwen2_decode_weight_bytes(QWEN_1_5B, dtype).read_bytes == counted.read_bytes


def test_a_tied_output_layer_counts_the_embedding_once(monkeypatch: pytest.MonkeyPatch) -> None:
    paddle = import_paddle()
    import_paddlenlp()
    from paddlenlp.transformers import Qwen2Config, Qwen2ForCausalLM
    from paddlenlp.transformers.model_utils import no_init_weights

    tied = PRESETS["tiny"].model_copy(update={"tie_word_embeddings": True})
    with no_init_weights(), paddle.LazyGuard():
        model = Qwen2ForCausalLM(Qwen2Config(**tied.config()))
    counted = decode_weight_bytes(model)
    assert "left out" not in counted.source  # the one matrix is read whole by the output layer
    assert counted.read_bytes == qwen2_decode_weight_bytes(tied, "float32").read_bytes


def test_weight_only_ceilings_leave_the_lm_head_in_float16() -> None:
    fp16 = batch1_decode_ceiling("NVIDIA H200", QWEN_1_5B, "float16", 16, 200)
    int8 = batch1_decode_ceiling("NVIDIA H200", QWEN_1_5B, "weight_only_int8", 16, 200)
    int4 = batch1_decode_ceiling("NVIDIA H200", QWEN_1_5B, "weight_only_int4", 16, 200)
    assert fp16.ceiling_tokens_per_s is not None and int8.ceiling_tokens_per_s is not None
    assert int4.ceiling_tokens_per_s is not None
    # the old formula (every weight quantized) put them 15-45 % too high
    assert 1.7 < int8.ceiling_tokens_per_s / fp16.ceiling_tokens_per_s < 1.75
    assert 2.7 < int4.ceiling_tokens_per_s / fp16.ceiling_tokens_per_s < 2.76
    assert int8.weight_bytes_source == "Qwen2 layer shapes: float16 0.468 GB, weight_only_int8 1.310 GB"
    given = qwen2_decode_weight_bytes(QWEN_1_5B, "float16")
    assert batch1_decode_ceiling("NVIDIA H200", QWEN_1_5B, "weight_only_int8", 16, 200, weight_bytes=given) == (
        batch1_decode_ceiling("NVIDIA H200", QWEN_1_5B, "float16", 16, 200)
    )


@pytest.mark.parametrize(
    ("device_name", "eighths", "full_gb_per_s"),
    [
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", 1, 3350),
        ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", 4, 3350),
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", 1, 1555),
        ("NVIDIA A100-SXM4-80GB MIG 2g.20gb", 2, 2039),
        ("NVIDIA H200 MIG 1g.18gb", 1, 4800),
        ("NVIDIA H200 MIG 7g.141gb", 8, 4800),
    ],
)
def test_a_mig_slice_gets_its_share_of_the_bandwidth(device_name: str, eighths: int, full_gb_per_s: float) -> None:
    lookup = lookup_bandwidth(device_name)
    assert lookup.memory_bandwidth_bytes_per_s == pytest.approx(full_gb_per_s * GB * eighths / 8)
    assert f"{eighths}/8 of it" in lookup.reason


def test_mig_memory_share_in_eighths() -> None:
    assert mig_memory_share(9.75, 79.6) == 1 / 8 and mig_memory_share(39.5, 79.6) == 4 / 8
    assert mig_memory_share(0.1, 80) == 1 / 8 and mig_memory_share(100, 80) == 1
    with pytest.raises(ValueError, match="must be > 0"):
        mig_memory_share(0, 80)


def test_bytes_per_parameter_of_every_dtype_and_a_clear_error() -> None:
    assert [bytes_per_parameter(d) for d in ("float32", "float16", "bfloat16", "int8", "int4")] == [4, 2, 2, 1, 0.5]
    assert bytes_per_parameter("weight_only_int8") == 1 and bytes_per_parameter("weight_only_int4") == 0.5
    with pytest.raises(
        ConfigError, match=r"unknown dtype 'float8'.*float32, float16, bfloat16, int8, int4, weight_only"
    ):
        bytes_per_parameter("float8")


@pytest.mark.parametrize(
    ("device_name", "sku", "gb_per_s"),
    [
        ("Tesla P40", "Tesla P40", 346),
        ("Tesla V100-SXM2-32GB", "Tesla V100 SXM2", 900),
        ("NVIDIA A10", "A10", 600),
        ("NVIDIA L4", "L4", 300),
        ("NVIDIA A100-PCIE-40GB", "A100 40GB PCIe", 1555),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM", 2039),
        ("NVIDIA H100 PCIe", "H100 PCIe", 2000),
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 3350),
        ("NVIDIA H100 NVL", "H100 NVL", 3900),
        ("NVIDIA H200", "H200", 4800),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", 1008),
        ("NVIDIA GeForce RTX 3090", "GeForce RTX 3090", 936),
        ("NVIDIA GeForce RTX 3090 Ti", "GeForce RTX 3090 Ti", 1008),
    ],
)
def test_sku_table_matches_real_device_names(device_name: str, sku: str, gb_per_s: float) -> None:
    lookup = lookup_bandwidth(device_name)
    assert (lookup.sku, lookup.memory_bandwidth_bytes_per_s) == (sku, gb_per_s * GB)


def test_whole_tokens_only_a10_is_not_a100() -> None:
    assert lookup_bandwidth("NVIDIA A10").sku == "A10"
    assert lookup_bandwidth("NVIDIA A100-SXM4-40GB").sku == "A100 40GB SXM"


def test_unknown_and_ambiguous_names_give_none_with_the_reason() -> None:
    unknown = lookup_bandwidth("Matrox G200")
    assert unknown.memory_bandwidth_bytes_per_s is None
    assert "not in the SKU table" in unknown.reason and "H100 SXM" in unknown.reason
    ambiguous = lookup_bandwidth("NVIDIA H100")
    assert ambiguous.memory_bandwidth_bytes_per_s is None
    assert "H100 variant" in ambiguous.reason and "H100 PCIe 2000 GB/s" in ambiguous.reason
    no_ceiling = batch1_decode_ceiling("NVIDIA H100", QWEN_1_5B, "float16", 16, 200)
    assert no_ceiling.ceiling_tokens_per_s is None and no_ceiling.source == ambiguous.reason


def test_every_sku_matches_its_own_name() -> None:
    for sku in GPU_SKUS:
        assert lookup_bandwidth(f"NVIDIA {sku.patterns[0]}").sku == sku.name


def test_normalized_names() -> None:
    assert normalize_device_name("NVIDIA A100-SXM4-80GB") == "nvidia a100 sxm4 80gb"


def test_bandwidth_from_the_memory_bus_agrees_with_the_datasheets() -> None:
    assert bandwidth_from_memory_bus(5120, 2619) == pytest.approx(3350 * GB, rel=0.01)  # H100 SXM
    assert bandwidth_from_memory_bus(384, 10501) == pytest.approx(1008 * GB, rel=0.01)  # RTX 4090
    with pytest.raises(ValueError, match="must be positive"):
        bandwidth_from_memory_bus(0, 1000)


def test_ceiling_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="must both be > 0"):
        ceiling_tokens_per_s(1e12, 0)
    with pytest.raises(ValueError, match="embedding parameters"):
        decode_bytes_per_token(10, 11, 2, 0, 0)


@given(
    bandwidth=st.floats(1e9, 1e13),
    parameters=st.integers(1_000, 10**11),
    dtype=st.sampled_from(["float32", "float16", "bfloat16", "int8", "int4"]),
)
def test_a_figure_at_or_below_the_ceiling_never_fails(bandwidth: float, parameters: int, dtype: str) -> None:
    ceiling = ceiling_tokens_per_s(bandwidth, decode_bytes_per_token(parameters, 0, bytes_per_parameter(dtype), 0, 0))
    assert check_against_ceiling(ceiling * 0.999, ceiling)[1] is None
    assert check_against_ceiling(ceiling * 1.001, ceiling)[1] is not None


def test_the_ceiling_check_reports_the_share_and_fails_an_impossible_round() -> None:
    ceiling = batch1_decode_ceiling("Tesla P40", QWEN_1_5B, "float16", 16, 200)
    assert ceiling.ceiling_tokens_per_s is not None
    check = check_ceiling(ceiling, [11.5, 11.76, 12.0])
    assert check.error is None and check.share is not None
    assert check.share.share_of_ceiling == pytest.approx(11.76 / ceiling.ceiling_tokens_per_s)
    assert check.share.source.startswith("SKU table: Tesla P40")
    error = check_ceiling(ceiling, [11.5, 11.76, 130.0]).error  # one round faster than physics allows
    assert error is not None and error.startswith("the fastest round: measurement error")
    absent = check_ceiling(batch1_decode_ceiling("NVIDIA H100", QWEN_1_5B, "float16", 16, 200), [10.0])
    assert absent.error is None and absent.share is None and "H100 variant" in absent.absent_reason
