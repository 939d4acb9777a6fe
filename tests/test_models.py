"""Presets, synthetic checkpoints and real checkpoint directories, through the real loading path."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paddle_llm_bench.core.config import Case, ConfigError
from paddle_llm_bench.runtime import models
from paddle_llm_bench.runtime.checkpoints import CheckpointError, weight_mismatches
from paddle_llm_bench.runtime.device import detect_device, import_paddle
from paddle_llm_bench.runtime.measure import CaseRunner
from paddle_llm_bench.runtime.models import PRESETS, REPORT_PROMPT, load_model, synthetic_checkpoint


def parameter_count(preset: str) -> int:
    """Parameters of a preset from its shapes alone (lazy build: no weights, no RoPE caches)."""
    paddle = import_paddle()
    from paddlenlp.transformers import Qwen2Config, Qwen2ForCausalLM
    from paddlenlp.transformers.model_utils import no_init_weights

    config = Qwen2Config(**PRESETS[preset].config(max_position_embeddings=16))
    with no_init_weights(), paddle.LazyGuard():
        model = Qwen2ForCausalLM(config)
    return sum(int(np.prod(p.shape)) for p in model.state_dict().values())


def test_the_1_5b_preset_has_deepseek_r1_distill_qwen_1_5b_architecture() -> None:
    architecture = PRESETS["deepseek-r1-distill-qwen-1.5b"]
    assert (architecture.hidden_size, architecture.num_hidden_layers) == (1536, 28)
    assert (architecture.num_attention_heads, architecture.num_key_value_heads) == (12, 2)
    assert (architecture.vocab_size, architecture.intermediate_size) == (151936, 8960)
    assert architecture.tie_word_embeddings is False
    # 28 layers x 46,797,824 + 2 x 151936 x 1536 (untied embeddings) + the final norm's 1536.
    assert parameter_count("deepseek-r1-distill-qwen-1.5b") == 1_777_088_000


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_synthetic_checkpoint_is_built_once_and_atomically(cache_dir: Path) -> None:
    first = synthetic_checkpoint("tiny", cache_dir, progress=lambda _: None)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    messages: list[str] = []
    again = synthetic_checkpoint("tiny", cache_dir, progress=messages.append)
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert messages == []  # nothing rebuilt
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]  # no staging directory left


def test_synthetic_checkpoint_is_deterministic(tmp_path: Path, cache_dir: Path) -> None:
    reference = synthetic_checkpoint("tiny", cache_dir, progress=lambda _: None)
    rebuilt = synthetic_checkpoint("tiny", tmp_path, progress=lambda _: None)
    assert (rebuilt / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()


def make_tokenizer(directory: Path) -> None:
    """A byte-level BPE trained here, saved as PaddleNLP's Qwen2Tokenizer (what Qwen2 checkpoints ship)."""
    from paddlenlp.transformers import Qwen2Tokenizer
    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator([REPORT_PROMPT, "def quicksort(items): return sorted(items)"] * 20, vocab_size=300)
    trainer.save_model(str(directory))
    Qwen2Tokenizer(vocab_file=str(directory / "vocab.json"), merges_file=str(directory / "merges.txt")).save_pretrained(
        str(directory)
    )


def test_a_checkpoint_directory_with_a_tokenizer_uses_the_report_prompt(tmp_path: Path, cache_dir: Path) -> None:
    checkpoint = tmp_path / "my-checkpoint"
    shutil.copytree(synthetic_checkpoint("tiny", cache_dir, progress=lambda _: None), checkpoint)
    make_tokenizer(checkpoint)
    from paddlenlp.transformers import AutoTokenizer

    expected = AutoTokenizer.from_pretrained(str(checkpoint))(REPORT_PROMPT)["input_ids"]
    cpu = detect_device("cpu")  # before loading: the model goes to Paddle's current device (a GPU build's is the GPU)
    loaded = load_model(str(checkpoint), "float32", cache_dir, 4096, progress=lambda _: None)
    assert loaded.prompt_token_ids == expected
    assert loaded.source.startswith("checkpoint ")
    ids = loaded.prompt_ids(batch_size=2, prompt_tokens=len(expected) + 3)
    assert ids.tolist()[1] == [*expected, *expected[:3]]  # the real prompt, tiled to the asked length

    case = Case(str(checkpoint), "float32", "greedy", max_new_tokens=4, batch_size=2, prompt_tokens=12)
    times = CaseRunner(loaded, case, cpu).generate_once()
    assert len(times.step_ns) == 4
    assert case.id.startswith("my-checkpoint-float32-greedy")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "does not exist"),
        (lambda d: d.mkdir(), "has no config.json"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text("{}")), "has no weights"),
        (lambda d: d.write_text("x"), "is not a directory"),
    ],
)
def test_a_path_that_holds_no_model_is_a_clear_error(
    tmp_path: Path, cache_dir: Path, make: object, message: str
) -> None:
    path = tmp_path / "model"
    make(path)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message):
        load_model(str(path), "float32", cache_dir, 4096, progress=lambda _: None)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("vocab_size", 2000, "qwen2.embed_tokens.weight is [1000, 192], config.json (vocab_size, hidden_size) implies"),
        ("intermediate_size", 1024, "mlp.gate_proj.weight is [192, 512], config.json (hidden_size, intermediate_size)"),
    ],
)
def test_a_config_that_disagrees_with_its_weights_is_named_not_measured(
    tmp_path: Path, cache_dir: Path, field: str, value: int, named: str
) -> None:
    """PaddleNLP would load either: the first fails deep in generate(), the second measures another model."""
    checkpoint = tmp_path / "edited"
    shutil.copytree(synthetic_checkpoint("tiny", cache_dir, progress=lambda _: None), checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(CheckpointError, match=re.escape(named)) as error:
        load_model(str(checkpoint), "float32", cache_dir, 4096, progress=lambda _: None)
    assert "Use the config.json the weights were saved with" in str(error.value)


def test_weights_that_match_their_config_pass_tied_or_not() -> None:
    config = PRESETS["tiny"]
    hidden, vocab, inter = config.hidden_size, config.vocab_size, config.intermediate_size
    shapes = {
        "qwen2.embed_tokens.weight": [vocab, hidden],
        "qwen2.layers.0.mlp.up_proj.weight": [hidden, inter],
        "qwen2.layers.0.input_layernorm.weight": [hidden],
        "lm_head.weight": [hidden, vocab],
    }
    assert weight_mismatches(shapes, config) == []
    tied = {**shapes, "lm_head.weight": [vocab, hidden]}  # a tied head is the embedding itself
    assert weight_mismatches(tied, config.model_copy(update={"tie_word_embeddings": True})) == []
    assert weight_mismatches(tied, config) == [
        "lm_head.weight is [1000, 192], config.json (hidden_size, vocab_size) implies [192, 1000]"
    ]
    # another architecture: only its token embedding is checked
    llama = config.model_copy(update={"model_type": "llama"})
    assert weight_mismatches({**tied, "model.embed_tokens.weight": [7, hidden]}, llama) == [
        "model.embed_tokens.weight is [7, 192], config.json (vocab_size, hidden_size) implies [1000, 192]"
    ]


def test_an_unknown_preset_names_the_allowed_ones(cache_dir: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("allowed values are deepseek-r1-distill-qwen-1.5b, tiny")):
        synthetic_checkpoint("llama-70b", cache_dir)


@pytest.mark.slow
def test_the_1_5b_preset_builds_loads_and_generates_on_cpu(tmp_path: Path) -> None:
    """Minutes and ~16 GB of RAM on a CPU: the full path for the real architecture, 2 tokens."""
    cpu = detect_device("cpu")  # before loading: the model goes to Paddle's current device (a GPU build's is the GPU)
    loaded = load_model("deepseek-r1-distill-qwen-1.5b", "float32", tmp_path, 4096, progress=lambda _: None)
    case = Case("deepseek-r1-distill-qwen-1.5b", "float32", "greedy", max_new_tokens=2, batch_size=1, prompt_tokens=8)
    times = CaseRunner(loaded, case, cpu).generate_once()
    assert len(times.step_ns) == 2
    assert loaded.eos_token_id == 151643 and loaded.vocab_size == 151936


def test_a_damaged_cached_preset_is_rebuilt_and_loads(tmp_path: Path) -> None:
    directory = synthetic_checkpoint("tiny", tmp_path, progress=lambda _: None)
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # "MetadataIncompleteBuffer" when loaded
    said: list[str] = []
    loaded = load_model("tiny", "float32", tmp_path, max_positions=512, progress=said.append)
    assert loaded.vocab_size > 0 and weights.stat().st_size > 100_000
    assert any(f"the cached tiny in {directory} is damaged" in line and "rebuilding" in line for line in said)


def test_a_damaged_cached_probe_is_rebuilt_and_never_skips_a_case(tmp_path: Path) -> None:
    cpu = detect_device("cpu")
    assert models.dtype_unsupported_reason.__wrapped__(cpu, "float32", tmp_path) is None  # builds the probe
    weights = next((tmp_path / "models").glob("probe-*/model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:40])  # truncated: "InvalidHeaderLength" when loaded
    models.working_probe.cache_clear()
    assert models.dtype_unsupported_reason.__wrapped__(cpu, "float32", tmp_path) is None
    assert weights.stat().st_size > 1000  # rebuilt in place


def test_a_probe_that_cannot_run_at_all_fails_loudly_naming_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any) -> Any:
        raise RuntimeError("(External) CUDA error(719), unspecified launch failure")

    monkeypatch.setattr(models, "_from_pretrained", broken)
    models.working_probe.cache_clear()
    for dtype in ("float32", "float16"):  # float16 is not called unsupported for the machine's fault
        with pytest.raises(models.ProbeError) as raised:
            models.dtype_unsupported_reason.__wrapped__(detect_device("cpu"), dtype, tmp_path)
        message = str(raised.value)
        assert "cannot generate in float32" in message and "CUDA error(719)" in message
        assert str(tmp_path / "models") in message and "rebuilt once" in message and "doctor" in message
    models.working_probe.cache_clear()


def test_running_out_of_memory_in_the_probe_is_not_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = models._from_pretrained

    def no_memory_in_float16(directory: Any, dtype: str, overrides: dict[str, Any]) -> Any:
        if dtype == "float16":
            raise MemoryError("Out of memory error on GPU 0")
        return real(directory, dtype, overrides)

    monkeypatch.setattr(models, "_from_pretrained", no_memory_in_float16)
    with pytest.raises(models.ProbeError, match=r"ran out of memory in float16 .*free the device's memory"):
        models.dtype_unsupported_reason.__wrapped__(detect_device("cpu"), "float16", tmp_path)


def test_the_dtype_probe_reaches_the_gemm_path_batch_above_1_and_8_prompt_tokens(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Weight-only matmuls use a GEMV kernel for m <= 3 rows: a 3-token, batch-1 probe never ran the
    # GEMM kernel every prefill and batch-8 step needs. The real probe model generates; we record its inputs.
    seen: list[list[int]] = []
    real_from_pretrained = models._from_pretrained

    def recording(directory: Any, dtype: str, overrides: dict[str, Any]) -> Any:
        model = real_from_pretrained(directory, dtype, overrides)
        generate = model.generate

        def spy(**kwargs: Any) -> Any:
            seen.append(list(kwargs["input_ids"].shape))
            return generate(**kwargs)

        model.generate = spy
        return model

    monkeypatch.setattr(models, "_from_pretrained", recording)
    cpu = detect_device("cpu")
    assert models.dtype_unsupported_reason.__wrapped__(cpu, "float32", cache_dir) is None
    (shape,) = seen
    batch, prompt_tokens = shape
    assert batch > 1 and prompt_tokens >= 8 and batch * prompt_tokens > 3
    assert shape == [models.PROBE_BATCH_SIZE, models.PROBE_PROMPT_TOKENS]
    ids = np.asarray(models.probe_prompt_ids())
    assert (ids[0] != ids[1]).any() and ids.min() >= 3 and ids.max() < models.PROBE_ARCHITECTURE.vocab_size
