"""Checkpoints this suite builds into its cache: synthetic ones (a config with seeded random weights, for the
presets and the dtype probe) and Paddle copies of PyTorch checkpoints (PaddleNLP's converter, run once).

Each is built in a staging directory beside its target and renamed into place, so no half-written
checkpoint is ever at the target and two processes building the same one never harm each other.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from paddle_llm_bench.core.architecture import Architecture
from paddle_llm_bench.runtime.checkpoints import PADDLE_WEIGHTS, CheckpointError
from paddle_llm_bench.runtime.device import first_line, import_paddle, import_paddlenlp
from paddle_llm_bench.runtime.progress import say

# Bump when the way synthetic checkpoints are written changes: old cache entries are then rebuilt.
SYNTHETIC_FORMAT = 1
WEIGHT_SCALE = 0.02
# Bump when the way PyTorch checkpoints are converted into the cache changes.
CONVERTED_FORMAT = 1
# Files a converted copy is keyed on (with their sizes and modification times): another file, another copy.
CONVERSION_INPUTS = ("config.json", "model*.safetensors*", "pytorch_model*.bin*")


def build_synthetic(
    preset: str, architecture: Architecture, cache_dir: Path, seed: int, progress: Callable[[str], None]
) -> Path:
    """The checkpoint of ``architecture`` under the name ``preset`` in the cache, built once if missing."""
    target = cache_dir / "models" / f"{preset}-seed{seed}-v{SYNTHETIC_FORMAT}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    progress(f"building synthetic {preset} (random weights, seed {seed}) into {target} - once per cache")
    return build_atomically(target, "model.safetensors", lambda staging: _write_synthetic(architecture, staging, seed))


def build_atomically(target: Path, weights: str, build: Callable[[Path], None]) -> Path:
    """``build`` a checkpoint into a staging directory next to ``target``, then rename it into place: no
    half-written checkpoint is ever at ``target``, and a concurrent build's result is as good as ours."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: theirs is as good as ours
            if not (target / weights).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def converted_checkpoint(
    directory: Path, weight_file: Path, cache_dir: Path, progress: Callable[[str], None] = say
) -> Path:
    """A Paddle copy (``config.json`` + ``model_state.pdparams``) of the PyTorch checkpoint in ``directory``,
    whose weights PaddleNLP would load from ``weight_file``; converted once per cache and per file version."""
    target = cache_dir / "converted" / f"{directory.resolve().name}-{_conversion_key(directory)}"
    if (target / "config.json").is_file() and (target / PADDLE_WEIGHTS).is_file():
        return target
    progress(f"converting the PyTorch weights of {directory} into {target} with PaddleNLP - once per cache")
    try:
        return build_atomically(target, PADDLE_WEIGHTS, lambda staging: _convert_torch(directory, weight_file, staging))
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever PaddleNLP's converter raised: its text, and the way out
        raise CheckpointError(
            f"{weight_file} holds PyTorch weights that PaddleNLP could not convert ({first_line(error)}); convert "
            f"the checkpoint first, e.g. AutoModelForCausalLM.from_pretrained({str(directory)!r}, "
            "convert_from_torch=True).save_pretrained(NEW_DIR) with PaddleNLP, and pass NEW_DIR to --llm-model"
        ) from None


def _conversion_key(directory: Path) -> str:
    """Changes with the directory, its weight and config files (names, sizes, modification times) and PaddleNLP."""
    paddlenlp = import_paddlenlp()
    inputs = sorted({path for pattern in CONVERSION_INPUTS for path in directory.glob(pattern) if path.is_file()})
    stats = [(path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in inputs]
    text = repr((str(directory.resolve()), stats, paddlenlp.__version__, CONVERTED_FORMAT))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _convert_torch(directory: Path, weight_file: Path, staging: Path) -> None:
    """PaddleNLP's converter (the one ``from_pretrained(convert_from_torch=True)`` runs), writing into ``staging``."""
    import_paddlenlp()
    from paddlenlp.transformers import AutoModelForCausalLM

    model_class = AutoModelForCausalLM._get_model_class_from_config(None, str(directory / "config.json"))
    config = model_class.config_class.from_pretrained(str(directory))
    model_class.convert(str(weight_file), config, cache_dir=str(staging))  # writes model_state.pdparams
    if not (staging / PADDLE_WEIGHTS).is_file():
        raise CheckpointError(f"PaddleNLP's converter wrote no {PADDLE_WEIGHTS}")
    for name in ("config.json", "generation_config.json"):
        if (directory / name).is_file():
            shutil.copyfile(directory / name, staging / name)


def _write_synthetic(architecture: Architecture, directory: Path, seed: int) -> None:
    """Write config.json and float16 weights uniform in ±WEIGHT_SCALE (norm weights 1)."""
    paddle = import_paddle()
    import_paddlenlp()
    from paddlenlp.transformers import Qwen2Config, Qwen2ForCausalLM
    from paddlenlp.transformers.model_utils import no_init_weights
    from safetensors.numpy import save_file

    config = Qwen2Config(**architecture.config())
    # Only the parameters' names and shapes are needed: build lazily, without initialization
    # and without the RoPE caches (their size follows max_position_embeddings, not the weights).
    shape_config = Qwen2Config(**architecture.config(max_position_embeddings=16))
    with no_init_weights(), paddle.LazyGuard():
        shapes = {name: list(p.shape) for name, p in Qwen2ForCausalLM(shape_config).state_dict().items()}
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray[Any, Any]] = {}
    for name, shape in shapes.items():
        if name.endswith("norm.weight"):
            weights[name] = np.ones(shape, dtype=np.float16)
            continue
        values = rng.random(shape, dtype=np.float32)
        values -= 0.5
        values *= 2 * WEIGHT_SCALE
        weights[name] = values.astype(np.float16)
    save_file(weights, str(directory / "model.safetensors"))
    config.save_pretrained(str(directory))
