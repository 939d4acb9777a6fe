"""The session's bookkeeping around a measurement: the bandwidth ceiling and what is recorded."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from paddle_llm_bench.core.config import Case, Sweep
from paddle_llm_bench.core.record import HostLoad
from paddle_llm_bench.runtime.device import Device, import_paddle, import_paddlenlp
from paddle_llm_bench.runtime.measure import CaseResult, host_load
from paddle_llm_bench.runtime.memory import MemoryPeaks
from paddle_llm_bench.runtime.models import PRESETS
from paddle_llm_bench.runtime.suite import Suite

CASE = Case("deepseek-r1-distill-qwen-1.5b", "float16", "greedy", max_new_tokens=200, batch_size=1, prompt_tokens=16)
H100_SXM = Device("gpu", 0, "NVIDIA H100 80GB HBM3")


def suite_on(device: Device) -> Suite:
    sweep = Sweep((CASE.model,), (CASE.dtype,), ("greedy",), (200,), (1,), (16,))
    return Suite(sweep, device, Path("unused"))


def result_with(decode_tokens_per_s: list[float]) -> CaseResult:
    return CaseResult(CASE, "gpu:0", [], {"decode_tokens_per_s": decode_tokens_per_s}, MemoryPeaks(), None)


@pytest.fixture(scope="module")
def lazy_model() -> Any:
    """The real preset's architecture in float16, parameters lazy (no weights allocated)."""
    paddle = import_paddle()
    import_paddlenlp()
    from paddlenlp.transformers import Qwen2Config, Qwen2ForCausalLM
    from paddlenlp.transformers.model_utils import dtype_guard, no_init_weights

    config = Qwen2Config(**PRESETS[CASE.model].config(max_position_embeddings=16), dtype="float16")
    with dtype_guard("float16"), no_init_weights(), paddle.LazyGuard():
        return Qwen2ForCausalLM(config)


@pytest.fixture
def loaded_1_5b(lazy_model: Any) -> SimpleNamespace:
    """The ceiling reads the model's config and counts its parameters' bytes."""
    return SimpleNamespace(model=lazy_model)


def test_a_batch_1_gpu_case_reports_its_share_of_the_bandwidth_ceiling(loaded_1_5b: SimpleNamespace) -> None:
    check = suite_on(H100_SXM)._bandwidth_ceiling(CASE, loaded_1_5b, result_with([80.0, 85.0, 90.0]))  # type: ignore[arg-type]
    assert check.error is None and check.share is not None
    assert 1000 < check.share.ceiling_tokens_per_s < 1120  # ~3.09 GB/token at 3.35 TB/s (docs/facts.md §3)
    assert check.share.share_of_ceiling == 85.0 / check.share.ceiling_tokens_per_s


def test_a_figure_above_the_ceiling_is_a_measurement_error(loaded_1_5b: SimpleNamespace) -> None:
    check = suite_on(H100_SXM)._bandwidth_ceiling(CASE, loaded_1_5b, result_with([90.0, 2500.0]))  # type: ignore[arg-type]
    assert check.error is not None and "ceiling" in check.error
    assert check.share is not None and check.share.fastest_round_share_of_ceiling > 1.0


def test_on_a_cpu_the_ceiling_is_absent_with_the_reason(loaded_1_5b: SimpleNamespace) -> None:
    check = suite_on(Device("cpu", 0, "AMD EPYC"))._bandwidth_ceiling(CASE, loaded_1_5b, result_with([5.0]))  # type: ignore[arg-type]
    assert check.error is None and check.share is None and "CPU" in check.absent_reason


def test_host_load_names_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.4, 1.0, 1.0))
    assert host_load().busy == "machine busy: load average 2.4 on 2 cores (> 1.5) while measuring"
    monkeypatch.setattr(os, "getloadavg", lambda: (1.1, 1.0, 1.0))
    assert host_load() == HostLoad(load_average_1min=1.1, logical_cores=2, busy="")
