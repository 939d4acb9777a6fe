"""Checks of a local checkpoint's files before Paddle reads them: a broken file is named, with the fix.

Without them a bad ``config.json`` or a truncated ``model.safetensors`` gives a long traceback from deep
inside PaddleNLP that does not name the file. Checked here, without Paddle and without reading the
weights: ``config.json`` is a JSON object whose size fields are positive whole numbers; each
safetensors file's header parses and the file holds every byte its header promises; a sharded
checkpoint's index names shards that exist.

``torch_weights`` tells a checkpoint PyTorch saved (a Hugging Face directory) from one Paddle saved:
PaddleNLP loads the former only through its converter (``convert_from_torch``: Linear weights
transposed, names mapped). The signal is the one PaddleNLP's own loader goes by: the safetensors
header's ``__metadata__["format"]``, which Hugging Face's ``save_pretrained`` sets to ``"pt"`` and
PaddleNLP's to ``"np"`` (PaddleNLP refuses any other); and ``pytorch_model*.bin`` files, which only
PyTorch writes. ``config.json`` fields are no signal: converted checkpoints keep Hugging Face's
config, and a config says nothing of the weights' layout.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from paddle_llm_bench.core.architecture import Architecture

# config.json fields that, where present, must be whole numbers above 0.
POSITIVE_CONFIG_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
)
HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own cap on the JSON header
TORCH_FORMAT = "pt"  # safetensors metadata "format" of weights PyTorch saved (Paddle's: "np")
SAFE_INDEX, SAFE_WEIGHTS = "model.safetensors.index.json", "model.safetensors"
PADDLE_INDEX, PADDLE_WEIGHTS = "model_state.pdparams.index.json", "model_state.pdparams"
TORCH_INDEX, TORCH_WEIGHTS = "pytorch_model.bin.index.json", "pytorch_model.bin"


class CheckpointError(Exception):
    """A checkpoint file that cannot be loaded; the message names the file, what is wrong and the fix."""


def check_checkpoint_files(directory: Path) -> None:
    """Raise ``CheckpointError`` for the first broken file in a local checkpoint directory. Missing files
    are left to ``models.check_checkpoint_dir``, which says what a checkpoint directory must hold."""
    fix = f"copy or export the checkpoint into {directory} again (save_pretrained writes these files)"
    if not (directory / "config.json").is_file():
        return
    _check_config(directory / "config.json", fix)
    index = directory / SAFE_INDEX
    if index.is_file():
        for shard in _shards(index, fix):
            _check_safetensors(directory / shard, fix)
    elif (directory / SAFE_WEIGHTS).is_file():
        _check_safetensors(directory / SAFE_WEIGHTS, fix)


def _read_json(path: Path, fix: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read {path}: {error}; {fix}") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); {fix}") from None


def _check_config(path: Path, fix: str) -> None:
    config = _read_json(path, fix)
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds {type(config).__name__}, not a JSON object of model settings; {fix}")
    for name in POSITIVE_CONFIG_FIELDS:
        if name in config:
            value = config[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CheckpointError(f"{path}: field {name} is {value!r}, not a whole number above 0; {fix}")


def _shards(index: Path, fix: str) -> list[str]:
    data = _read_json(index, fix)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: field weight_map is missing or empty; {fix}")
    shards = sorted({str(name) for name in weight_map.values()})
    missing = [name for name in shards if not (index.parent / name).is_file()]
    if missing:
        raise CheckpointError(f"{index} names shard(s) that are not there: {', '.join(missing)}; {fix}")
    return [name for name in shards if name.endswith(".safetensors")]


def torch_weights(directory: Path) -> Path | None:
    """The weight file PaddleNLP loads from ``directory`` if PyTorch saved it (it must be converted), else None.

    PaddleNLP's order: sharded safetensors, safetensors, Paddle's pdparams (sharded or not), then
    PyTorch's ``pytorch_model.bin`` (sharded or not)."""
    fix = f"save every weight file in {directory} from the same framework (re-export the checkpoint)"
    if (directory / SAFE_INDEX).is_file():
        shards = [directory / name for name in _shards(directory / SAFE_INDEX, fix)]
        formats = {shard.name: safetensors_format(shard, fix) for shard in shards}
        torch = [name for name, saved in formats.items() if saved == TORCH_FORMAT]
        if torch and len(torch) < len(formats):
            raise CheckpointError(
                f"{directory / SAFE_INDEX}: shards {', '.join(torch)} were saved by PyTorch (format "
                f"{TORCH_FORMAT!r}), the others not: {formats}; {fix}"
            )
        return directory / SAFE_INDEX if torch else None
    if (directory / SAFE_WEIGHTS).is_file():
        weights = directory / SAFE_WEIGHTS
        return weights if safetensors_format(weights, fix) == TORCH_FORMAT else None
    if (directory / PADDLE_INDEX).is_file() or (directory / PADDLE_WEIGHTS).is_file():
        return None
    for name in (TORCH_INDEX, TORCH_WEIGHTS):
        if (directory / name).is_file():
            return directory / name
    return None


def safetensors_format(path: Path, fix: str) -> str | None:
    """The ``format`` a safetensors file's header metadata names ("pt": PyTorch, "np": Paddle), None if none."""
    header, _length, _size = _read_header(path, fix)
    metadata = header.get("__metadata__")
    saved = metadata.get("format") if isinstance(metadata, dict) else None
    return saved if isinstance(saved, str) else None


def _read_header(path: Path, fix: str) -> tuple[dict[str, Any], int, int]:
    """A safetensors file's JSON header, its length and the file's size."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if not 0 < length <= min(HEADER_LIMIT, size - 8):
                raise CheckpointError(
                    f"{path} is truncated or not a safetensors file ({size} bytes, header length "
                    f"{length if length >= 0 else 'missing'}); {fix}"
                )
            header = json.loads(handle.read(length))
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error}; {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} has a corrupt header ({error}); {fix}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupt header (not a JSON object); {fix}")
    return header, length, size


def _check_safetensors(path: Path, fix: str) -> None:
    """The 8-byte header length, the JSON header, and a file long enough for every tensor it lists."""
    header, length, size = _read_header(path, fix)
    data_bytes = size - 8 - length
    needed = max(_end_offset(path, name, entry, fix) for name, entry in header.items()) if header else 0
    if needed > data_bytes:
        raise CheckpointError(
            f"{path} is truncated: its header lists {needed} bytes of tensor data, the file holds {data_bytes}; {fix}"
        )


def _end_offset(path: Path, name: str, entry: Any, fix: str) -> int:
    if name == "__metadata__":
        return 0
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        raise CheckpointError(f"{path} has a corrupt header: tensor {name!r} has no data_offsets; {fix}")
    return int(offsets[1])


def weight_mismatches(shapes: dict[str, list[int]], config: Architecture) -> list[str]:
    """Loaded weights whose shape is not the one ``config.json`` implies, each as one line naming the fields.

    PaddleNLP's low-memory loading puts a checkpoint's tensors into the model whatever their shape: a config
    that disagrees with its weights either measures another model than the config says, silently, or fails
    deep in generation (an embedding index out of range). Checked for the Qwen2 family (every preset, the
    DeepSeek-R1-Distill-Qwen models) tensor by tensor; for any other model its token embedding only."""
    hidden, vocab = config.hidden_size, config.vocab_size
    expected: dict[str, tuple[tuple[int, ...], str]] = {
        "embed_tokens.weight": ((vocab, hidden), "vocab_size, hidden_size")
    }
    if config.model_type == "qwen2":
        kv_width, inter = config.kv_width, config.intermediate_size
        kv_fields = "hidden_size, num_attention_heads, num_key_value_heads"
        expected |= {
            "self_attn.q_proj.weight": ((hidden, hidden), "hidden_size"),
            "self_attn.q_proj.bias": ((hidden,), "hidden_size"),
            "self_attn.k_proj.weight": ((hidden, kv_width), kv_fields),
            "self_attn.k_proj.bias": ((kv_width,), kv_fields),
            "self_attn.v_proj.weight": ((hidden, kv_width), kv_fields),
            "self_attn.v_proj.bias": ((kv_width,), kv_fields),
            "self_attn.o_proj.weight": ((hidden, hidden), "hidden_size"),
            "mlp.gate_proj.weight": ((hidden, inter), "hidden_size, intermediate_size"),
            "mlp.up_proj.weight": ((hidden, inter), "hidden_size, intermediate_size"),
            "mlp.down_proj.weight": ((inter, hidden), "intermediate_size, hidden_size"),
            "norm.weight": ((hidden,), "hidden_size"),
        }
        if not config.tie_word_embeddings:  # tied: the head is the embedding, checked above
            expected["lm_head.weight"] = ((hidden, vocab), "hidden_size, vocab_size")
    found: list[str] = []
    for name, shape in shapes.items():
        suffix = next((suffix for suffix in expected if name.endswith(suffix)), None)
        if suffix is not None and tuple(shape) != expected[suffix][0]:
            want, fields = expected[suffix]
            found.append(f"{name} is {list(shape)}, config.json ({fields}) implies {list(want)}")
    return found
