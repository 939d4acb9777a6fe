"""Checks of a local checkpoint's files before Paddle reads them: a broken file is named, with the fix.

Without them a bad ``config.json`` or a truncated ``model.safetensors`` gives a long traceback from deep
inside PaddleNLP that does not name the file. Checked here, without Paddle and without reading the
weights: ``config.json`` is a JSON object whose size fields are positive whole numbers; each
safetensors file's header parses and the file holds every byte its header promises; a sharded
checkpoint's index names shards that exist.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

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


class CheckpointError(Exception):
    """A checkpoint file that cannot be loaded; the message names the file, what is wrong and the fix."""


def check_checkpoint_files(directory: Path) -> None:
    """Raise ``CheckpointError`` for the first broken file in a local checkpoint directory. Missing files
    are left to ``models.check_checkpoint_dir``, which says what a checkpoint directory must hold."""
    fix = f"copy or export the checkpoint into {directory} again (save_pretrained writes these files)"
    if not (directory / "config.json").is_file():
        return
    _check_config(directory / "config.json", fix)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        for shard in _shards(index, fix):
            _check_safetensors(directory / shard, fix)
    elif (directory / "model.safetensors").is_file():
        _check_safetensors(directory / "model.safetensors", fix)


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


def _check_safetensors(path: Path, fix: str) -> None:
    """The 8-byte header length, the JSON header, and a file long enough for every tensor it lists."""
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
