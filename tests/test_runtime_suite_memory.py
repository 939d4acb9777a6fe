"""An out-of-memory case must not inflate the next case's peaks (runtime/suite.py), on the real tiny model.

The failing round allocates a large Paddle tensor, then raises what Paddle raises when memory runs out.
While that error (with the frames holding the tensor) is alive, the suite frees memory in vain, and
every peak of the next case starts from the tensor: the allocator's (reset to what is allocated now)
and the resident set's (reset to the current RSS). On a CPU there is no pool for ``empty_cache`` to
return, so the order is shown directly (the tensor is gone when the suite frees memory) and through a
caller that keeps the ``CaseFailed`` (as ``pytest.raises`` does): the next case's peaks match the same
case measured by a fresh ``Suite`` before it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench.core.config import Case, Sweep
from paddle_llm_bench.runtime.device import Device, detect_device, import_paddle
from paddle_llm_bench.runtime.measure import CaseResult
from paddle_llm_bench.runtime.suite import CaseFailed, Suite

LEAK_BYTES = 320 * 1024 * 1024
# What another case may differ by in peak allocated/reserved and peak RSS, far below the leak.
TOLERANCE_BYTES = LEAK_BYTES // 3
WARMUP_ROUNDS = 1
CASE = Case("tiny", "float32", "greedy", max_new_tokens=8, batch_size=1, prompt_tokens=8)
OOM_CASE = Case("tiny", "float32", "greedy", max_new_tokens=8, batch_size=2, prompt_tokens=8)


def new_suite(cache_dir: Path, cpu: Device) -> Suite:
    sweep = Sweep(("tiny",), ("float32",), ("greedy",), (8,), (1, 2), (8,), rounds=5, warmup_rounds=WARMUP_ROUNDS)
    return Suite(sweep, cpu, cache_dir, progress=lambda _: None)


@pytest.fixture(scope="module")
def cpu() -> Device:
    return detect_device("cpu")


class ExhaustingGenerate:
    """Wraps the real ``generate``: the first measured round allocates ``LEAK_BYTES`` (written, so resident) and
    raises Paddle's out-of-memory error; ``tensors`` keeps weak references to what it allocated."""

    def __init__(self, generate: Callable[..., Any]) -> None:
        self.generate = generate
        self.calls = 0
        self.tensors: list[weakref.ref[Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= WARMUP_ROUNDS:
            return self.generate(**kwargs)
        block = import_paddle().full([LEAK_BYTES // 4], 1.0, dtype="float32")
        self.tensors.append(weakref.ref(block))
        raise RuntimeError(
            "ResourceExhaustedError: \n\nOut of memory error on CPU 0. Cannot allocate 320.000000MB memory on CPU 0"
        )


def exhaust_memory(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> ExhaustingGenerate:
    """Makes ``OOM_CASE``'s first measured round run out of memory (the real generate otherwise)."""
    model = suite.model_for(OOM_CASE).model
    exhausting = ExhaustingGenerate(model.generate)
    monkeypatch.setattr(model, "generate", exhausting)
    return exhausting


def peaks(result: CaseResult) -> dict[str, int]:
    values = result.memory.bytes_by_metric
    return {name: values[name] for name in ("peak_allocated_bytes", "peak_reserved_bytes", "peak_rss_bytes")}


def test_the_failed_rounds_tensors_are_gone_before_the_suite_frees_memory(
    llm_cache_dir: Path, cpu: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = new_suite(llm_cache_dir, cpu)
    exhausting = exhaust_memory(suite, monkeypatch)
    alive_when_freeing: list[bool] = []
    free_memory = suite._free_memory

    def observed_free_memory() -> None:
        alive_when_freeing.extend(ref() is not None for ref in exhausting.tensors)
        free_memory()

    monkeypatch.setattr(suite, "_free_memory", observed_free_memory)
    with pytest.raises(CaseFailed, match="ran out of memory"):
        suite.run(OOM_CASE)
    assert len(exhausting.tensors) == 1
    assert alive_when_freeing == [False]  # gc + empty_cache ran after the tensor was released


def test_the_next_cases_peaks_are_unaffected_by_an_out_of_memory_case(
    llm_cache_dir: Path, cpu: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = peaks(new_suite(llm_cache_dir, cpu).run(CASE))  # before: while a leak lives, it counts here too
    suite = new_suite(llm_cache_dir, cpu)
    exhausting = exhaust_memory(suite, monkeypatch)
    with pytest.raises(CaseFailed, match=r"ran out of memory.*batch-size \(now 2\)") as failed:
        suite.run(OOM_CASE)
    monkeypatch.undo()  # the real generate again
    assert len(exhausting.tensors) == 1
    assert exhausting.tensors[0]() is None  # freed, although this caller still holds the CaseFailed
    after_failure = peaks(suite.run(CASE))
    for name, value in after_failure.items():
        assert value - fresh[name] < TOLERANCE_BYTES, (name, after_failure, fresh)
    assert failed.value is not None  # held to the end, as a caller reporting it would
