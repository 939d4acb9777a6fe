"""Execution modes on the real tiny model: eager, AST to_static, SOT, CINN (runtime/modes.py).

Each static case compiles a program per decoding step on its first generation (seconds here), so the cases
are short: 4 new tokens.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench.core.config import Case, ConfigError, Sweep, parse_sweep_dimension
from paddle_llm_bench.paired.protocol import Prepare, Turn
from paddle_llm_bench.paired.worker import Worker
from paddle_llm_bench.runtime import measure, modes
from paddle_llm_bench.runtime.device import Device, detect_device, import_paddle
from paddle_llm_bench.runtime.energy import RaplEnergyCounter
from paddle_llm_bench.runtime.suite import CaseFailed, Suite


def case(mode: str, decoding: str = "greedy") -> Case:
    return Case("tiny", "float32", decoding, max_new_tokens=4, batch_size=1, prompt_tokens=8, mode=mode)


@pytest.fixture(scope="module")
def cpu() -> Device:
    return detect_device("cpu")


@pytest.fixture(scope="module")
def suite(llm_cache_dir: Path, cpu: Device, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    sweep = Sweep(("tiny",), ("float32",), ("greedy",), (4,), (1,), (8,), rounds=5, warmup_rounds=1)
    empty = tmp_path_factory.mktemp("no-powercap")  # the CPU path with no readable RAPL, as in most VMs
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(measure, "RaplEnergyCounter", functools.partial(RaplEnergyCounter, empty))
        yield Suite(sweep, cpu, llm_cache_dir, progress=lambda _: None)


def test_mode_ids_and_the_sweep_dimension() -> None:
    assert case("eager").id == "tiny-float32-greedy-new4-bs1-prompt8"  # eager ids unchanged: baselines keep
    assert case("to_static").id == "tiny-float32-greedy-to_static-new4-bs1-prompt8"
    assert Case(**case("sot").as_dict()) == case("sot")  # the saved record and the paired protocol carry it
    assert parse_sweep_dimension("modes", "eager,to_static", "--llm-mode", ()) == ("eager", "to_static")
    with pytest.raises(ConfigError, match="'jit' from --llm-mode: allowed values are eager, to_static, sot, cinn"):
        parse_sweep_dimension("modes", "eager,jit", "--llm-mode", ())
    sweep = Sweep(("tiny",), ("float32",), ("greedy",), (4,), (1,), (8,), modes=("eager", "to_static"))
    assert [c.mode for c in sweep.cases()] == ["eager", "to_static"]


def test_to_static_generates_eagers_tokens_and_reports_its_first_generation(suite: Suite) -> None:
    eager = suite.run(case("eager"))
    static = suite.run(case("to_static"))
    assert static.output_digest == eager.output_digest is not None
    record = static.as_extra_info()
    assert record["case"]["mode"] == "to_static" and record["case_id"].endswith("to_static-new4-bs1-prompt8")
    # compiling a program per step makes the first generation far slower than a measured one
    assert record["first_generation_ms"] > 3 * max(static.samples["e2e_ms"])
    loaded = suite.model_for(case("eager"))
    assert "to_static" in loaded.converted_forwards  # kept, with its programs, for the next to_static case
    suite.run(case("eager"))
    assert "forward" not in loaded.model.__dict__  # eager is the forward as written again


def test_a_conversion_that_changes_the_tokens_fails_the_case_with_both_digests(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An injected change: a "converted" forward that shifts the logits towards another token."""

    def skewed(model: Any, mode: str) -> None:
        eager = type(model).forward.__get__(model)
        if mode == "eager":
            model.__dict__.pop("forward", None)
            return

        def forward(*args: Any, **kwargs: Any) -> Any:
            if args and args[0] is model:  # Paddle's Layer.__call__ passes the layer to a forward set on it
                args = args[1:]
            output = eager(*args, **kwargs)
            logits = output.logits if hasattr(output, "logits") else output[0]
            logits[..., 7] += 1e4  # token 7 wins every step
            return output

        model.forward = forward

    monkeypatch.setattr(modes, "convert", skewed)
    suite.model_for(case("eager")).converted_forwards.pop("sot", None)
    with pytest.raises(CaseFailed, match=r"sot generated other tokens than eager .*sha256:\w+ against eager's sha256:"):
        suite.run(case("sot"))


def test_a_mode_the_build_cannot_run_is_skipped_with_the_real_error(suite: Suite, cpu: Device) -> None:
    assert suite.unsupported_reason(case("eager")) is None
    cinn = suite.unsupported_reason(case("cinn"))
    if not import_paddle().is_compiled_with_cinn():
        assert cinn is not None and "has no CINN (paddle.is_compiled_with_cinn() is False)" in cinn
    sot = suite.unsupported_reason(case("sot"))  # fails on Paddle 3.3.1 + PaddleNLP 3.0.0b4; probed, not listed
    assert sot is None or sot.startswith(f"sot generation does not run on {cpu.describe()} with Paddle ")


def test_a_side_runs_its_own_mode_beside_an_eager_side_sharing_the_model(llm_cache_dir: Path) -> None:
    """`paired --candidate-mode`: the worker replaces the case's mode by the side's; two slots of one process
    (as `--same-process` has them) share the model, each generating in its own mode."""
    worker = Worker()
    prepare = Prepare(case=case("eager"), device="cpu", cache_dir=str(llm_cache_dir))
    assert worker.handle(prepare.model_copy(update={"slot": 0})).mode == "eager"
    assert worker.handle(prepare.model_copy(update={"slot": 1, "mode": "to_static"})).mode == "to_static"
    assert worker.runners[1].first_generation_ms is not None and "to_static" in worker.loaded.converted_forwards
    for slot in (1, 0, 1):
        (round_,) = worker.handle(Turn(slot=slot)).rounds
        assert len(round_.step_ns) == 4
    eager, static = worker.runners[0], worker.runners[1]
    assert len(eager.digests) == 1 and static.digests == eager.digests  # greedy: the same tokens in both modes
    with pytest.raises(ConfigError, match="'jit'"):
        worker.handle(prepare.model_copy(update={"slot": 1, "mode": "jit"}))
