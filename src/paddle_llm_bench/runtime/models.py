"""Models without downloads: presets of real architectures with random weights, or a local checkpoint.

A synthetic preset is written once into the cache as an ordinary checkpoint directory
(``config.json`` + ``model.safetensors``) and then loaded through
``AutoModelForCausalLM.from_pretrained``, the path users rely on. With the output length forced,
generation speed does not depend on the weights' values, so random weights cost what real ones do.

A checkpoint directory PyTorch saved (a Hugging Face download: safetensors with metadata format
"pt", or ``pytorch_model*.bin``; ``checkpoints.torch_weights``) is converted once per cache by
PaddleNLP's own converter (what ``from_pretrained(convert_from_torch=True)`` runs: names mapped,
Linear weights transposed) into ``<cache>/converted/``, and that Paddle checkpoint is loaded. The
user's directory is only read (``convert_from_torch`` itself writes ``model_state.pdparams`` into it,
fails on a read-only one, converts again at every load, and cannot load with ``low_cpu_mem_usage``).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paddle_llm_bench.core.architecture import Architecture
from paddle_llm_bench.core.config import HUB_PREFIX, QUANTIZED_DTYPES, ConfigError
from paddle_llm_bench.runtime import synthetic
from paddle_llm_bench.runtime.checkpoints import (
    CheckpointError,
    check_checkpoint_files,
    torch_weights,
    weight_mismatches,
)
from paddle_llm_bench.runtime.device import Device, first_line, import_paddle, import_paddlenlp, is_out_of_memory
from paddle_llm_bench.runtime.progress import say

# The prompt of the field report (docs/facts.md §1): "write a quicksort".
REPORT_PROMPT = "写一个快速排序代码"


def qwen2(**layout: int) -> Architecture:
    """A Qwen2ForCausalLM of this ``layout`` (sizes, heads, token ids), with the family's other settings."""
    return Architecture.of(
        {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_act": "silu",
            "rope_theta": 10000.0,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "use_sliding_window": False,
            **layout,
        }
    )


PRESETS: dict[str, Architecture] = {
    # Exactly DeepSeek-R1-Distill-Qwen-1.5B's architecture (docs/facts.md §2), about 1.777 B parameters.
    "deepseek-r1-distill-qwen-1.5b": qwen2(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=131072,
        bos_token_id=151643,
        eos_token_id=151643,
    ),
    # The same family scaled down (same head layout: 6:1 query to key/value heads, head dim 32)
    # for CPU runs and tests: Python-overhead bound, like eager decode of a large model on a GPU.
    "tiny": qwen2(
        vocab_size=1000,
        hidden_size=192,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
    ),
}

# The smallest model of the family: loaded in each dtype once per session to find out, by running
# it, whether this device and Paddle build can generate in that dtype.
PROBE_ARCHITECTURE = qwen2(
    vocab_size=64,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=2,
)

# The dtype probe's generation: weight-only matmuls take a GEMV kernel for m <= 3 rows and a GEMM
# kernel above; every prefill and every batch-8 step uses the GEMM one, so the probe must reach it.
PROBE_BATCH_SIZE = 2
PROBE_PROMPT_TOKENS = 8
PROBE_NEW_TOKENS = 2


def default_cache_dir() -> Path:
    return Path(os.environ.get("PADDLE_LLM_BENCH_CACHE", Path.cwd() / ".cache" / "paddle-llm-bench"))


@dataclass
class LoadedModel:
    """A model ready to generate, with what a case needs to build its inputs."""

    name: str
    dtype: str
    model: Any
    vocab_size: int
    eos_token_id: int
    source: str
    prompt_token_ids: list[int] | None  # the tokenized report prompt, when a tokenizer exists
    # Execution mode -> the forward paddle.jit.to_static made of this model (runtime/modes.py), with its programs.
    converted_forwards: dict[str, Any] = field(default_factory=dict)

    def prompt_ids(self, batch_size: int, prompt_tokens: int, seed: int = 0) -> np.ndarray[Any, Any]:
        """``[batch_size, prompt_tokens]`` int64 ids: the real prompt tiled, or seeded random ids."""
        if self.prompt_token_ids:
            row = np.resize(np.asarray(self.prompt_token_ids, dtype=np.int64), prompt_tokens)
            return np.tile(row, (batch_size, 1))
        rng = np.random.default_rng(seed)
        ids = rng.integers(3, self.vocab_size, size=(batch_size, prompt_tokens), dtype=np.int64)
        ids[ids == self.eos_token_id] = 3
        return ids


def synthetic_checkpoint(preset: str, cache_dir: Path, seed: int = 0, progress: Callable[[str], None] = say) -> Path:
    """The directory of preset ``preset``'s checkpoint, built (once, atomically) if missing."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: allowed values are {', '.join(PRESETS)}")
    return synthetic.build_synthetic(preset, PRESETS[preset], cache_dir, seed, progress)


WEIGHT_FILES = (
    "model.safetensors",
    "model_state.pdparams",
    "model.safetensors.index.json",
    "model_state.pdparams.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_checkpoint_dir(path: Path) -> None:
    """A clear error for a directory that is missing or holds no model."""
    if not path.exists():
        raise ConfigError(
            f"model directory {str(path)!r} does not exist: "
            f"give a checkpoint directory or a preset ({', '.join(PRESETS)})"
        )
    if not path.is_dir():
        raise ConfigError(f"model path {str(path)!r} is not a directory: give the checkpoint's directory")
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"model directory {str(path)!r} has no config.json: it does not hold a PaddleNLP/HF checkpoint"
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ConfigError(f"model directory {str(path)!r} has no weights (expected one of {', '.join(WEIGHT_FILES)})")


def load_model(
    model: str,
    dtype: str,
    cache_dir: Path,
    max_positions: int | None,
    progress: Callable[[str], None] = say,
) -> LoadedModel:
    """Load a preset (built into the cache first if needed), a local checkpoint directory, or
    ``hub:ORG/NAME`` (downloaded by PaddleNLP; needs a network).

    ``max_positions`` caps ``max_position_embeddings``: PaddleNLP precomputes float32 RoPE caches of
    that many positions in every layer (3.7 GB for the 1.5B model's 131072), which grow on demand
    when a longer sequence comes; None keeps the checkpoint's value.
    """
    import_paddle(cache_dir)
    source_name: str
    converted: Path | None = None  # a PyTorch checkpoint's Paddle copy, where the weights are read instead
    if model in PRESETS:
        directory = synthetic_checkpoint(model, cache_dir, progress=progress)
        source, source_name = f"synthetic {model} (random weights, seed 0) from {directory}", str(directory)
    elif model.startswith(HUB_PREFIX):
        source_name = model.removeprefix(HUB_PREFIX)
        source = f"hub {source_name}"
    else:
        directory = Path(model).expanduser()
        check_checkpoint_dir(directory)
        source, source_name = f"checkpoint {directory.resolve()}", str(directory)
        torch_file = torch_weights(directory)
        if torch_file is not None:
            converted = synthetic.converted_checkpoint(directory, torch_file, cache_dir, progress)
            source += f" (PyTorch weights {torch_file.name}, converted by PaddleNLP into {converted})"
    overrides: dict[str, Any] = {}
    if max_positions is not None:
        overrides["max_position_embeddings"] = max_positions
    progress(f"loading {model} as {dtype}")
    try:
        loaded = _from_pretrained(converted or source_name, dtype, overrides)
        prompt_token_ids = _report_prompt_ids(source_name)
    except Exception as error:
        if model in PRESETS and _damaged(directory):  # the cache's copy (not the dtype) is at fault: rebuilt once
            progress(f"the cached {model} in {directory} is damaged ({first_line(error)}): rebuilding it")
            shutil.rmtree(directory, ignore_errors=True)
            directory = synthetic_checkpoint(model, cache_dir, progress=progress)
            loaded = _from_pretrained(str(directory), dtype, overrides)
            prompt_token_ids = _report_prompt_ids(str(directory))
        elif not model.startswith(HUB_PREFIX):
            raise
        else:
            raise ConfigError(
                f"could not load {source_name!r} from the hub ({first_line(error)}); without a network, "
                "copy the checkpoint here and pass its directory to --llm-model"
            ) from None
    config = loaded.config
    if dtype not in QUANTIZED_DTYPES:  # quantized weights have shapes of their own
        shapes = {name: list(tensor.shape) for name, tensor in loaded.state_dict().items()}
        try:
            architecture = Architecture.of(config.to_dict())
        except ValueError as error:
            raise CheckpointError(
                f"the config.json of {source_name} does not give a decoder's layout: {first_line(error)}"
            ) from None
        mismatches = weight_mismatches(shapes, architecture)
        if mismatches:
            raise CheckpointError(
                f"the weights of {source_name} do not match its config.json: "
                + "; ".join(mismatches[:3])
                + (f" (and {len(mismatches) - 3} more)" if len(mismatches) > 3 else "")
                + ". Use the config.json the weights were saved with (save_pretrained writes both)"
            )
    eos = config.eos_token_id
    eos_token_id = int(eos[0] if isinstance(eos, (list, tuple)) else eos)
    injected_ms = inject_step_delay(loaded)
    if injected_ms:
        source += f" (+{injected_ms:g} ms busy-wait per forward pass: {INJECT_STEP_MS})"
    return LoadedModel(
        name=model,
        dtype=dtype,
        model=loaded,
        vocab_size=int(config.vocab_size),
        eos_token_id=eos_token_id,
        source=source,
        prompt_token_ids=prompt_token_ids,
    )


# Calibration only: a busy-wait of this many milliseconds after every forward pass (the prefill and each
# decoding step) of every model this process loads. 30 ms makes the tiny model's 200-token round take ~6 s,
# the cadence of eager decode of the 1.5B model on a big GPU: budgets, plans and verdicts can be checked on
# a CPU. Saved runs record it (``injected_step_ms``); never set it for real measurements.
INJECT_STEP_MS = "PADDLE_LLM_BENCH_INJECT_STEP_MS"


def injected_step_ms() -> float:
    text = os.environ.get(INJECT_STEP_MS, "")
    try:
        value = float(text) if text else 0.0
    except ValueError:
        raise ConfigError(f"invalid value {text!r} from ${INJECT_STEP_MS}: expected milliseconds, e.g. 30") from None
    if value < 0 or not math.isfinite(value):
        raise ConfigError(f"invalid value {text!r} from ${INJECT_STEP_MS}: expected milliseconds >= 0")
    return value


def inject_step_delay(model: Any) -> float:
    """Busy-wait ``$PADDLE_LLM_BENCH_INJECT_STEP_MS`` after each forward pass of ``model``; the delay (ms, 0: none)."""
    delay_ms = injected_step_ms()
    if delay_ms:

        def after(*_: Any) -> None:
            deadline = time.perf_counter_ns() + int(delay_ms * 1e6)
            while time.perf_counter_ns() < deadline:
                pass

        model.register_forward_post_hook(after)
    return delay_ms


def _damaged(directory: Path) -> bool:
    """Whether a cached checkpoint's files fail the checks a user's checkpoint gets (a truncated file, say)."""
    try:
        check_checkpoint_files(directory)
    except CheckpointError:
        return True
    return False


def _from_pretrained(name_or_directory: str | Path, dtype: str, overrides: dict[str, Any]) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` in ``dtype``; weight-only quantized dtypes load float16
    weights and quantize them on load (PaddleNLP's QuantizationConfig), computing in float16."""
    import_paddlenlp()
    from paddlenlp.transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype, "low_cpu_mem_usage": True, **overrides}
    if dtype in QUANTIZED_DTYPES:
        from paddlenlp.quantization.quantization_config import QuantizationConfig

        kwargs["dtype"] = QUANTIZED_DTYPES[dtype]
        kwargs["quantization_config"] = QuantizationConfig(weight_quantize_algo=dtype)
    model = AutoModelForCausalLM.from_pretrained(str(name_or_directory), **kwargs)
    model.eval()
    return model


PROBE_DTYPE = "float32"  # runs wherever Paddle does: its failure is the probe's or the machine's, never a dtype's


class ProbeError(RuntimeError):
    """The dtype probe itself cannot run (a damaged cache that a rebuild did not fix, a broken installation, no
    memory): every case fails with this, none is skipped as "unsupported"."""


@functools.cache
def dtype_unsupported_reason(device: Device, dtype: str, cache_dir: Path) -> str | None:
    """None if generation in ``dtype`` works on ``device``, else the real error, found by loading a
    micro model of the family in that dtype through the usual loading path and generating 2 tokens
    for a batch of 2 prompts of 8 tokens, so that both the GEMV (decode) and GEMM (prefill, 16
    rows) paths of weight-only matmuls run (a fraction of a second, once per session). Nothing here
    is a fixed table: a Paddle that gains the missing kernels gets measured.

    Only a dtype's own failure means "unsupported": the probe first generates in float32, and a failure there
    (after rebuilding a cached probe that fails) or running out of memory raises ``ProbeError``."""
    import_paddle(cache_dir)
    directory = working_probe(device, cache_dir)
    if dtype == PROBE_DTYPE:
        return None
    try:
        probe_generate(device, directory, dtype)
    except Exception as error:
        if is_out_of_memory(error):
            raise ProbeError(
                f"the dtype probe ran out of memory in {dtype} on {_where(device)}: {first_line(error)}; free the "
                "device's memory (another process?) and run again"
            ) from error
        return f"{dtype} generation does not run on {_where(device)}: {first_line(error)}"
    return None


@functools.cache
def working_probe(device: Device, cache_dir: Path) -> Path:
    """The probe's checkpoint, shown to generate in float32; a cached copy that fails is rebuilt once."""
    for attempt in (1, 2):
        directory = synthetic.build_synthetic("probe", PROBE_ARCHITECTURE, cache_dir, 0, progress=lambda _: None)
        try:
            probe_generate(device, directory, PROBE_DTYPE)
            return directory
        except Exception as error:
            if attempt == 2 or is_out_of_memory(error):
                raise ProbeError(
                    f"the dtype probe cannot generate in {PROBE_DTYPE} on {_where(device)}: {first_line(error)} "
                    f"(probe checkpoint {directory}, rebuilt once); check the installation with "
                    "`paddle-llm-bench doctor`"
                ) from error
            shutil.rmtree(directory, ignore_errors=True)  # a damaged cache: the next attempt rebuilds it
    raise AssertionError("unreachable")


def _where(device: Device) -> str:
    return f"{device.describe()} with Paddle {import_paddle().__version__}"


def probe_generate(
    device: Device, directory: Path, dtype: str, prepare: Callable[[Any], None] = lambda _model: None
) -> None:
    """2 new tokens for 2 prompts from the probe checkpoint in ``dtype`` (``prepare`` may convert the model)."""
    paddle = import_paddle()
    model = _from_pretrained(directory, dtype, {})
    prepare(model)
    ids = paddle.to_tensor(probe_prompt_ids(), dtype="int64")
    model.generate(
        input_ids=ids,
        attention_mask=paddle.ones_like(ids),
        max_new_tokens=PROBE_NEW_TOKENS,
        min_new_tokens=PROBE_NEW_TOKENS,
        eos_token_id=2,
    )
    device.synchronize()


def probe_prompt_ids() -> list[list[int]]:
    """``PROBE_BATCH_SIZE`` different prompts of ``PROBE_PROMPT_TOKENS`` ids inside the probe's vocabulary, no EOS."""
    vocab = PROBE_ARCHITECTURE.vocab_size
    rows = range(PROBE_BATCH_SIZE)
    return [[3 + (row * 7 + col) % (vocab - 3) for col in range(PROBE_PROMPT_TOKENS)] for row in rows]


def _report_prompt_ids(name_or_directory: str) -> list[int] | None:
    """The field report's prompt through the checkpoint's own tokenizer, if it ships one."""
    local = Path(name_or_directory)
    if local.is_dir() and not (local / "tokenizer_config.json").is_file():
        return None
    from paddlenlp.transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_directory)
    ids = tokenizer(REPORT_PROMPT)["input_ids"]
    return [int(i) for i in ids] or None
