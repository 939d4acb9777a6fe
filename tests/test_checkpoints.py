"""Corrupt checkpoints (issue 11, item 6): the broken file is named with the fix, and a model that
failed to load is not loaded again for every case. Real checkpoints: the tiny preset, then damaged.
A checkpoint PyTorch saved (a Hugging Face layout of the tiny preset, written here offline) is
converted by PaddleNLP and generates what the original does."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from paddle_llm_bench.core.config import Case, Sweep
from paddle_llm_bench.runtime import suite as suite_module
from paddle_llm_bench.runtime.checkpoints import (
    CheckpointError,
    check_checkpoint_files,
    safetensors_format,
    torch_weights,
)
from paddle_llm_bench.runtime.device import detect_device, import_paddle
from paddle_llm_bench.runtime.measure import generation_inputs
from paddle_llm_bench.runtime.models import LoadedModel, load_model, synthetic_checkpoint
from paddle_llm_bench.runtime.suite import CaseFailed, Suite


@pytest.fixture
def checkpoint(llm_cache_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny preset's real checkpoint, free to damage."""
    source = synthetic_checkpoint("tiny", llm_cache_dir, progress=lambda _: None)
    return Path(shutil.copytree(source, tmp_path / "tiny-copy"))


def test_a_good_checkpoint_passes(checkpoint: Path) -> None:
    check_checkpoint_files(checkpoint)


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "config.json").write_text('{"hidden_size": 128,'), "config.json is not valid JSON"),
        (lambda d: (d / "config.json").write_text("[1, 2]"), "config.json holds list"),
        (lambda d: (d / "config.json").write_text('{"vocab_size": 0}'), "field vocab_size is 0"),
        (lambda d: truncate(d / "model.safetensors", 5000), "model.safetensors is truncated: its header lists"),
        (lambda d: truncate(d / "model.safetensors", 4), "model.safetensors is truncated or not a safetensors"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"{garbage}" * 4), "corrupt header"),
    ],
    ids=["config-json", "config-list", "config-zero", "truncated-weights", "tiny-weights", "bad-header"],
)
def test_each_broken_file_is_named_with_the_fix(checkpoint: Path, damage: object, message: str) -> None:
    damage(checkpoint)  # type: ignore[operator]
    with pytest.raises(CheckpointError, match="copy or export the checkpoint") as raised:
        check_checkpoint_files(checkpoint)
    assert message in str(raised.value) and str(checkpoint) in str(raised.value)


def test_a_missing_shard_is_named(checkpoint: Path) -> None:
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "part-1.safetensors"}}))
    with pytest.raises(CheckpointError, match=r"part-1\.safetensors"):
        check_checkpoint_files(checkpoint)


def suite_for(model: str, cache_dir: Path) -> tuple[Suite, list[Case]]:
    sweep = Sweep((model,), ("float32",), ("greedy",), (4,), (1,), (4, 8), rounds=5, warmup_rounds=0)
    return Suite(sweep, detect_device("cpu"), cache_dir, progress=lambda _: None), sweep.cases()


@pytest.fixture
def load_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = suite_module.load_model

    def counted(model: str, *args: object, **kwargs: object) -> object:
        calls.append(model)
        return real(model, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(suite_module, "load_model", counted)
    return calls


def test_a_truncated_checkpoint_fails_every_case_without_loading(
    checkpoint: Path, llm_cache_dir: Path, load_calls: list[str]
) -> None:
    truncate(checkpoint / "model.safetensors", 5000)
    suite, cases = suite_for(str(checkpoint), llm_cache_dir)
    for case in cases:
        with pytest.raises(CaseFailed, match=r"model\.safetensors is truncated"):
            suite.run(case)
    assert load_calls == []


def test_a_model_that_fails_to_load_is_not_reloaded_for_every_case(
    checkpoint: Path, llm_cache_dir: Path, load_calls: list[str]
) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(architectures=["NoSuchForCausalLM"], model_type="nosuch")  # well formed, but no such model
    (checkpoint / "config.json").write_text(json.dumps(config))
    suite, cases = suite_for(str(checkpoint), llm_cache_dir)
    messages = []
    for case in cases:
        with pytest.raises(CaseFailed) as raised:
            suite.run(case)
        messages.append(str(raised.value))
    assert load_calls == [str(checkpoint)]  # loaded once, not once per case
    assert messages[0] == messages[1] and "could not be loaded as float32" in messages[0]


# Issue 14, item 3: a checkpoint PyTorch saved (a Hugging Face directory) is converted by PaddleNLP, then loaded.

LINEAR_WEIGHT = re.compile(r"(_proj\.weight|^lm_head\.weight)$")  # nn.Linear: [in, out] in Paddle, [out, in] in torch
GREEDY = Case("hf-tiny", "float32", "greedy", max_new_tokens=12, batch_size=2, prompt_tokens=8)


@pytest.fixture(scope="module")
def paddle_saved(llm_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray[Any, Any]]:
    """The tiny preset's model saved by Paddle (save_pretrained, safetensors), and its greedy output."""
    detect_device("cpu")  # before loading: the model goes to Paddle's current device
    loaded = load_model("tiny", "float32", llm_cache_dir, 4096, progress=lambda _: None)
    directory = tmp_path_factory.mktemp("paddle-saved")
    loaded.model.save_pretrained(str(directory), safe_serialization=True)
    assert safetensors_format(directory / "model.safetensors", "") == "np"
    return directory, greedy_ids(loaded)


def greedy_ids(loaded: LoadedModel) -> np.ndarray[Any, Any]:
    paddle = import_paddle()
    input_ids, attention_mask, kwargs = generation_inputs(loaded, GREEDY)
    with paddle.no_grad():
        output_ids, _scores = loaded.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    return np.asarray(output_ids.numpy())


def hugging_face_copy(paddle_dir: Path, target: Path) -> Path:
    """What Hugging Face's save_pretrained writes for the same Qwen2 weights: ``model.`` where PaddleNLP has
    ``qwen2.`` (PaddleNLP's Qwen2 name mappings), Linear weights as [out, in], metadata format "pt", HF's config."""
    target.mkdir()
    weights = {}
    for name, value in load_file(str(paddle_dir / "model.safetensors")).items():
        hf_name = "model." + name.removeprefix("qwen2.") if name.startswith("qwen2.") else name
        weights[hf_name] = np.ascontiguousarray(value.T) if LINEAR_WEIGHT.search(name) else value
    assert "model.layers.0.self_attn.q_proj.weight" in weights and "lm_head.weight" in weights
    save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((paddle_dir / "config.json").read_text())
    config.pop("paddlenlp_version", None)
    config.update(transformers_version="4.44.0", torch_dtype="float32")
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_pytorch_saved_weights_are_told_from_paddles(paddle_saved: tuple[Path, Any], tmp_path: Path) -> None:
    paddle_dir, _ = paddle_saved
    hf_dir = hugging_face_copy(paddle_dir, tmp_path / "hf")
    assert torch_weights(hf_dir) == hf_dir / "model.safetensors"
    assert torch_weights(paddle_dir) is None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pytorch_model.bin").write_bytes(b"PK")  # told by its name: only PyTorch writes these
    assert torch_weights(bin_dir) == bin_dir / "pytorch_model.bin"
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for shard, saved in (("model-00001-of-00002.safetensors", "pt"), ("model-00002-of-00002.safetensors", "pt")):
        save_file({shard[:14]: np.zeros(2, dtype=np.float32)}, str(sharded / shard), metadata={"format": saved})
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert torch_weights(sharded) == sharded / "model.safetensors.index.json"
    save_file({"b": np.zeros(2, dtype=np.float32)}, str(sharded / "model-00002-of-00002.safetensors"))
    with pytest.raises(CheckpointError, match=r"shards model-00001-of-00002\.safetensors were saved by PyTorch"):
        torch_weights(sharded)


def test_a_hugging_face_checkpoint_loads_through_the_suite_and_generates_the_same_tokens(
    paddle_saved: tuple[Path, np.ndarray[Any, Any]], llm_cache_dir: Path, tmp_path: Path
) -> None:
    paddle_dir, expected = paddle_saved
    hf_dir = hugging_face_copy(paddle_dir, tmp_path / "hf-tiny")
    files = sorted(path.name for path in hf_dir.iterdir())
    messages: list[str] = []
    sweep = Sweep((str(hf_dir),), ("float32",), ("greedy",), (12,), (2,), (8,), rounds=5, warmup_rounds=0)
    loaded = Suite(sweep, detect_device("cpu"), llm_cache_dir, progress=messages.append).model_for(sweep.cases()[0])
    assert "converted by PaddleNLP into" in loaded.source and any("converting the PyTorch" in m for m in messages)
    ids = greedy_ids(loaded)
    assert ids.tolist() == expected.tolist() and len(set(expected.ravel().tolist())) > 1
    assert sorted(path.name for path in hf_dir.iterdir()) == files  # the user's directory is only read
    messages.clear()
    again = Suite(sweep, detect_device("cpu"), llm_cache_dir, progress=messages.append).model_for(sweep.cases()[0])
    assert not any("converting" in m for m in messages) and greedy_ids(again).tolist() == expected.tolist()


def test_pytorch_weights_paddlenlp_cannot_convert_name_the_file_and_the_fix(
    paddle_saved: tuple[Path, Any], llm_cache_dir: Path, tmp_path: Path, load_calls: list[str]
) -> None:
    hf_dir = hugging_face_copy(paddle_saved[0], tmp_path / "hf-unknown")
    config = json.loads((hf_dir / "config.json").read_text())
    config.update(architectures=["NoSuchForCausalLM"], model_type="nosuch")  # no converter for it
    (hf_dir / "config.json").write_text(json.dumps(config))
    suite, cases = suite_for(str(hf_dir), llm_cache_dir)
    messages = []
    for case in cases:
        with pytest.raises(CaseFailed) as raised:
            suite.run(case)
        messages.append(str(raised.value))
    assert messages[0] == messages[1] and load_calls == [str(hf_dir)]  # not converted again for every case
    assert f"{hf_dir / 'model.safetensors'} holds PyTorch weights that PaddleNLP could not convert" in messages[0]
    assert f"from_pretrained({str(hf_dir)!r}, convert_from_torch=True).save_pretrained(NEW_DIR)" in messages[0]
    assert not (llm_cache_dir / "converted").is_dir() or not any(
        path.name.startswith("hf-unknown") for path in (llm_cache_dir / "converted").iterdir()
    )  # no half-converted copy left in the cache
