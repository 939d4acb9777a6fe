"""The gate on real measurements of the tiny model: A/A passes, injected slowdowns and memory growth fail.

Delays are injected as a busy-wait in a forward post-hook (one per decoding step), so the model
really gets slower by a known fraction; memory growth is a real 128 MiB Paddle buffer held
during generation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench.core.config import Case, Sweep
from paddle_llm_bench.core.gate import GateSettings
from paddle_llm_bench.core.record import MachineFacts
from paddle_llm_bench.results.regression import GateReport, check_run, update_baselines
from paddle_llm_bench.runtime import suite as suite_module
from paddle_llm_bench.runtime.device import detect_device, import_paddle
from paddle_llm_bench.runtime.environment import collect_all
from paddle_llm_bench.runtime.suite import Suite

pytestmark = pytest.mark.e2e  # real measurements of the tiny model through the gate: tens of seconds each

CASE = Case("tiny", "float32", "greedy", max_new_tokens=32, batch_size=1, prompt_tokens=16)
BASELINE_RUNS = 5  # 3 (2 dof of between-run noise) left -50 % inconclusive at 12 % noise in a fresh-clone run


@pytest.fixture(autouse=True)
def quiet_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests inject known slowdowns; a busy test machine must not turn them inconclusive
    (the load check itself is tested in test_gate.py and test_suite.py)."""
    monkeypatch.setattr(suite_module, "host_load", lambda: {"busy": ""})


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    sweep = Sweep(("tiny",), ("float32",), ("greedy",), (32,), (1,), (16,), rounds=10, warmup_rounds=2)
    return Suite(sweep, detect_device("cpu"), tmp_path_factory.mktemp("cache"), progress=lambda _: None)


@pytest.fixture(scope="module")
def facts(suite: Suite) -> MachineFacts:
    return collect_all(suite.device)


@pytest.fixture(scope="module")
def baseline_dir(suite: Suite, facts: MachineFacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("baselines")
    for _ in range(BASELINE_RUNS):
        update_baselines([suite.run(CASE, record=False).record()], facts, directory, commit=None)
    return directory


@pytest.fixture(scope="module")
def step_seconds(suite: Suite, baseline_dir: Path) -> float:
    """The median time per decoding step of the unmodified model."""
    return float(suite.run(CASE, record=False).median("tpot_ms") or 0.0) / 1000.0


def spin(seconds: float) -> None:
    deadline = time.perf_counter_ns() + int(seconds * 1e9)
    while time.perf_counter_ns() < deadline:
        pass


@contextmanager
def forward_hook(suite: Suite, hook: Callable[..., None]) -> Iterator[None]:
    handle = suite.model_for(CASE).model.register_forward_post_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def gate(suite: Suite, facts: MachineFacts, baseline_dir: Path, settings: GateSettings | None = None) -> GateReport:
    """As the session gates: judge, measure the suspects again, confirm."""
    current = suite.run(CASE, record=False).record()
    now = datetime.now(timezone.utc).isoformat()  # the baseline's runs were measured minutes ago: this session
    fingerprint = str(facts.hardware_fingerprint)
    report = check_run([current], fingerprint, baseline_dir, settings=settings, started=now)
    report.confirm({case_id: suite.run(CASE, record=False).record() for case_id in report.suspects})
    return report


def regressions(report: GateReport) -> dict[str, Any]:
    return {v.metric: v for v in report.regressions}


def test_a_a_against_its_own_fresh_baseline_passes(suite: Suite, facts: MachineFacts, baseline_dir: Path) -> None:
    report = gate(suite, facts, baseline_dir)
    assert not report.failed, report.lines()
    assert {v.metric for v in report.verdicts} >= {"decode_tokens_per_s", "ttft_ms", "peak_allocated_bytes"}
    assert not report.unjudged  # five runs of this session show the run-to-run noise: speed was judged


def test_a_three_quarters_decode_slowdown_fails_on_decode_throughput(
    suite: Suite, facts: MachineFacts, baseline_dir: Path, step_seconds: float
) -> None:
    # Each step four times as long (-75 % tok/s), judged at alpha 0.05: five baseline runs give a t-test on
    # 4 dof, and under load this VM's runs of one session scatter by 20-30 % (-67 % at alpha 0.01 was
    # inconclusive at a load average of 4). The stored gate is for large changes here; small ones are the
    # paired engine's.
    with forward_hook(suite, lambda *_: spin(3.0 * step_seconds)):
        report = gate(suite, facts, baseline_dir, GateSettings(alpha=0.05))
    assert report.failed, report.lines()
    found = regressions(report)["decode_tokens_per_s"]
    # 1/4 - 1 = -75 % on a quiet machine. The step time the delay is scaled from is measured
    # separately, so on a busy machine the injected share varies; the delay's accuracy itself is
    # checked in test_measure_tiny.py. Here: a clear slowdown, of a plausible size.
    assert found.change_percent is not None and -90.0 < found.change_percent < -30.0
    assert "confirmed by re-measurement" in found.evidence
    assert "decode_tokens_per_s slower" in found.message()


def test_a_1_percent_slowdown_does_not_fail(
    suite: Suite, facts: MachineFacts, baseline_dir: Path, step_seconds: float
) -> None:
    with forward_hook(suite, lambda *_: spin(0.01 * step_seconds)):
        report = gate(suite, facts, baseline_dir)
    assert not report.failed, report.lines()


def test_an_extra_buffer_held_during_generation_fails_the_memory_gate(
    suite: Suite, facts: MachineFacts, baseline_dir: Path
) -> None:
    paddle = import_paddle()
    held: list[Any] = []

    def hold_128_mib(*_: Any) -> None:
        if not held:
            held.append(paddle.ones([32 * 1024 * 1024], dtype="float32"))

    with forward_hook(suite, hold_128_mib):
        report = gate(suite, facts, baseline_dir)
    held.clear()
    found = regressions(report)["peak_allocated_bytes"]
    assert found.candidate is not None and found.reference is not None
    assert found.candidate - found.reference == pytest.approx(128 * 1024 * 1024, rel=0.05)
    assert report.failed, report.lines()
