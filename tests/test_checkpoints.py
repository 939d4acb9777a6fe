"""Corrupt checkpoints (issue 11, item 6): the broken file is named with the fix, and a model that
failed to load is not loaded again for every case. Real checkpoints: the tiny preset, then damaged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from paddle_llm_bench.core.config import Case, Sweep
from paddle_llm_bench.runtime import suite as suite_module
from paddle_llm_bench.runtime.checkpoints import CheckpointError, check_checkpoint_files
from paddle_llm_bench.runtime.device import detect_device
from paddle_llm_bench.runtime.models import synthetic_checkpoint
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
