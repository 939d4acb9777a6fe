"""The sweep's progress lines: cases done, skipped, and the time left from the cases measured so far."""

from __future__ import annotations

import pytest

from paddle_llm_bench.core.config import Case, make_sweep
from paddle_llm_bench.runtime.progress import SweepProgress, format_duration
from paddle_llm_bench.runtime.shard import expected_cost, first_generation_seconds, round_seconds


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def sweep_cases() -> list[Case]:  # 2 dtypes x 2 token counts
    chosen = {"dtypes": ("float32", "float16"), "max_new_tokens": (8, 32), "decodings": ("greedy",)}
    chosen |= {"batch_sizes": (1,), "prompt_tokens": (16,)}
    return make_sweep(chosen, "cpu", rounds=5, warmup_rounds=1).cases()


def test_the_time_left_scales_the_measured_seconds_by_the_cost_model() -> None:
    cases, clock = sweep_cases(), FakeClock()
    progress = SweepProgress(cases, rounds=6, clock=clock)
    assert progress.seconds_left() is None  # nothing measured: no estimate, never 0
    first = cases[0]
    clock.now_s = 10.0
    line = progress.finished(first.id, 10.0, skipped=False)
    rest = sum(expected_cost(case, 6) for case in cases[1:])
    assert progress.seconds_left() == pytest.approx(10.0 / expected_cost(first, 6) * rest)
    assert line is not None and line.startswith("1/4 case(s) done after 10 s, about ")


def test_a_skipped_dtype_leaves_the_estimate_with_every_case_of_that_dtype() -> None:
    cases, clock = sweep_cases(), FakeClock()
    progress = SweepProgress(cases, rounds=6, clock=clock)
    float32 = [case for case in cases if case.dtype == "float32"]
    float16 = [case for case in cases if case.dtype == "float16"]
    progress.finished(float32[0].id, 4.0, skipped=False)
    progress.finished(float16[0].id, 0.1, skipped=True)
    rate = 4.0 / expected_cost(float32[0], 6)
    assert progress.seconds_left() == pytest.approx(rate * expected_cost(float32[1], 6))
    assert "(1 skipped)" in progress.line()


def test_lines_come_at_most_every_30_s_and_the_last_has_no_estimate() -> None:
    cases, clock = sweep_cases(), FakeClock()
    progress = SweepProgress(cases, rounds=6, clock=clock)
    lines = []
    for i, case in enumerate(cases):
        clock.now_s = 20.0 * (i + 1)
        lines.append(progress.finished(case.id, 20.0, skipped=False))
    assert [line is not None for line in lines] == [True, False, True, False]  # at 20 s, then 60 s (>= 30 s later)
    assert progress.line() == "4/4 case(s) done after 80 s"
    assert progress.finished(cases[0].id, 1.0, skipped=False) is None  # a case counted once
    assert progress.finished("not-a-case", 1.0, skipped=False) is None


@pytest.mark.parametrize(("seconds", "text"), [(45, "45 s"), (210, "3.5 min"), (7560, "2.1 h")])
def test_durations_read_in_the_unit_that_fits(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_the_opening_line_gives_a_first_guess_from_the_cost_model() -> None:
    cases = sweep_cases()
    progress = SweepProgress(cases, rounds=6, device_kind="cpu")
    assert progress.planned_seconds() == pytest.approx(6 * sum(round_seconds(case, 0.005, "cpu") for case in cases))
    assert progress.opening_line().startswith(
        f"4 case(s); 6 round(s) each (warm-up included): a first guess of "
        f"{format_duration(progress.planned_seconds())} (the cost model at 5 ms per decoding step)"
    )


def test_cases_the_device_cannot_run_take_no_time_from_the_start() -> None:
    cases = sweep_cases()
    float16 = frozenset(case.id for case in cases if case.dtype == "float16")
    progress = SweepProgress(cases, rounds=6, clock=FakeClock(), cannot_run=float16)
    runnable = [case for case in cases if case.id not in float16]
    assert progress.planned_seconds() == pytest.approx(6 * sum(round_seconds(c, 0.005, "cpu") for c in runnable))
    assert progress.opening_line().startswith("4 case(s), 2 of them skipped: the device cannot run them; ")
    progress.finished(runnable[0].id, 4.0, skipped=False)
    assert progress.seconds_left() == pytest.approx(4.0 / expected_cost(runnable[0], 6) * expected_cost(runnable[1], 6))


def test_a_skipped_mode_leaves_the_other_modes_of_its_dtype_in_the_estimate() -> None:
    chosen = {"dtypes": ("float32",), "max_new_tokens": (8, 32), "decodings": ("greedy",), "modes": ("eager", "sot")}
    cases = make_sweep(chosen | {"batch_sizes": (1,), "prompt_tokens": (16,)}, "cpu", rounds=5, warmup_rounds=1).cases()
    progress = SweepProgress(cases, rounds=6, clock=FakeClock())
    eager = [case for case in cases if case.mode == "eager"]
    sot = [case for case in cases if case.mode == "sot"]
    progress.finished(eager[0].id, 4.0, skipped=False)
    progress.finished(sot[0].id, 0.1, skipped=True)  # SOT cannot run: its other case leaves, eager's stays
    rate = 4.0 / expected_cost(eager[0], 6)
    assert progress.seconds_left() == pytest.approx(rate * expected_cost(eager[1], 6))


def test_a_static_modes_first_generation_is_in_the_first_guess() -> None:
    """A to_static case compiles a program per decoding step once (50 s for 32 steps of the tiny model here)."""
    chosen = {"dtypes": ("float32",), "max_new_tokens": (32,), "decodings": ("greedy",), "batch_sizes": (1,)}
    sweep = make_sweep(chosen | {"prompt_tokens": (32,), "modes": ("eager", "to_static")}, "cpu", 5, 1)
    eager, static = sweep.cases()
    rounds_s = 6 * round_seconds(eager, 0.005, "cpu")
    assert SweepProgress([eager], rounds=6).planned_seconds() == pytest.approx(rounds_s)
    assert SweepProgress([static], rounds=6).planned_seconds() == pytest.approx(
        rounds_s + first_generation_seconds(static, 0.005)
    )
    assert first_generation_seconds(static, 0.005) > 10 * rounds_s  # compiling dominates a short case
