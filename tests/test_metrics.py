"""metrics.round_metrics / inter_token_ms on hand-computed rounds, and their identities under hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paddle_llm_bench.metrics import HIGHER_IS_BETTER, METRIC_UNITS, RoundTimes, inter_token_ms, round_metrics

MS = 1_000_000  # ns


def ms_round(start: float, steps: list[float], end: float) -> RoundTimes:
    return RoundTimes(int(start * MS), tuple(int(s * MS) for s in steps), int(end * MS))


def test_hand_computed_round() -> None:
    # submit at 0; 4 tokens at 10, 12, 14, 16 ms; generate() returns at 17 ms; batch 2, prompt 5.
    times = ms_round(0, [10, 12, 14, 16], 17)
    metrics = round_metrics(times, batch_size=2, prompt_tokens=5)
    assert metrics == {
        "ttft_ms": pytest.approx(10.0),
        "e2e_ms": pytest.approx(17.0),
        "tpot_ms": pytest.approx((17 - 10) / 3),
        "decode_tokens_per_s": pytest.approx(2 * 3 / 0.007),
        "e2e_tokens_per_s": pytest.approx(2 * 4 / 0.017),
        "input_output_tokens_per_s": pytest.approx(2 * (5 + 4) / 0.017),
    }
    assert inter_token_ms(times) == pytest.approx([2.0, 2.0, 2.0])


def test_start_offset_does_not_matter() -> None:
    # perf_counter_ns has an arbitrary origin: only differences may enter the metrics.
    base = round_metrics(ms_round(0, [10, 12, 14, 16], 17), 2, 5)
    shifted = round_metrics(ms_round(123_456, [123_466, 123_468, 123_470, 123_472], 123_473), 2, 5)
    assert shifted == pytest.approx(base)


def test_prompt_tokens_only_enter_the_input_output_figure() -> None:
    short = round_metrics(ms_round(0, [10, 12, 14, 16], 17), 2, 5)
    long = round_metrics(ms_round(0, [10, 12, 14, 16], 17), 2, 500)
    assert long["input_output_tokens_per_s"] == pytest.approx(2 * (500 + 4) / 0.017)
    assert {k: v for k, v in long.items() if k != "input_output_tokens_per_s"} == {
        k: v for k, v in short.items() if k != "input_output_tokens_per_s"
    }


def test_uneven_gaps() -> None:
    times = ms_round(1, [4, 5, 9], 10)
    metrics = round_metrics(times, batch_size=1, prompt_tokens=3)
    assert metrics["ttft_ms"] == pytest.approx(3.0)
    assert metrics["tpot_ms"] == pytest.approx((9 - 3) / 2)  # end - first token, over N - 1 = 2
    assert inter_token_ms(times) == pytest.approx([1.0, 4.0])


def test_one_token_leaves_out_tpot_and_decode_rate() -> None:
    times = ms_round(0, [10], 12)
    metrics = round_metrics(times, batch_size=4, prompt_tokens=8)
    assert set(metrics) == {"ttft_ms", "e2e_ms", "e2e_tokens_per_s", "input_output_tokens_per_s"}
    assert metrics["ttft_ms"] == pytest.approx(10.0)
    assert metrics["e2e_tokens_per_s"] == pytest.approx(4 * 1 / 0.012)
    assert inter_token_ms(times) == []


def test_every_metric_has_a_unit() -> None:
    metrics = round_metrics(ms_round(0, [1, 2], 3), 1, 1)
    assert set(metrics) == set(METRIC_UNITS)
    assert set(HIGHER_IS_BETTER) <= set(METRIC_UNITS)
    for name, unit in METRIC_UNITS.items():
        assert unit == ("tokens/s" if name.endswith("_per_s") else "ms"), name
        assert (name in HIGHER_IS_BETTER) == name.endswith("_per_s"), name


def test_zero_duration_gives_infinite_rate_not_a_crash() -> None:
    metrics = round_metrics(RoundTimes(5, (5, 5), 5), 1, 1)
    assert metrics["e2e_tokens_per_s"] == float("inf")
    assert metrics["decode_tokens_per_s"] == float("inf")
    assert metrics["tpot_ms"] == 0.0


@pytest.mark.parametrize(
    ("start", "steps", "end"),
    [
        (10, (5, 12), 20),  # first token before submit
        (0, (5, 4), 20),  # tokens out of order
        (0, (5, 6), 5),  # generate() returned before its last token
    ],
)
def test_round_times_reject_decreasing_stamps(start: int, steps: tuple[int, ...], end: int) -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        RoundTimes(start, steps, end)


def test_round_times_need_a_step() -> None:
    with pytest.raises(ValueError, match="at least one decoding step"):
        RoundTimes(0, (), 10)


def test_round_times_allow_equal_stamps() -> None:
    assert RoundTimes(0, (0, 0), 0).step_ns == (0, 0)


@st.composite
def rounds(draw: st.DrawFn, min_tokens: int = 2) -> RoundTimes:
    start = draw(st.integers(min_value=0, max_value=10**15))
    first = draw(st.integers(min_value=1, max_value=10**10))
    gaps = draw(st.lists(st.integers(min_value=1, max_value=10**9), min_size=min_tokens - 1, max_size=300))
    tail = draw(st.integers(min_value=0, max_value=10**9))
    steps = [start + first]
    for gap in gaps:
        steps.append(steps[-1] + gap)
    return RoundTimes(start, tuple(steps), steps[-1] + tail)


batch_sizes = st.integers(min_value=1, max_value=512)
prompt_lengths = st.integers(min_value=0, max_value=32768)


@given(rounds(), batch_sizes, prompt_lengths)
def test_tpot_and_ttft_add_up_to_e2e(times: RoundTimes, batch: int, prompt: int) -> None:
    metrics = round_metrics(times, batch, prompt)
    n = len(times.step_ns)
    assert metrics["tpot_ms"] * (n - 1) + metrics["ttft_ms"] == pytest.approx(metrics["e2e_ms"], rel=1e-9)


@given(rounds(), batch_sizes, prompt_lengths)
def test_decode_rate_is_batch_over_tpot(times: RoundTimes, batch: int, prompt: int) -> None:
    metrics = round_metrics(times, batch, prompt)
    assert metrics["decode_tokens_per_s"] == pytest.approx(batch * 1000 / metrics["tpot_ms"], rel=1e-9)


@given(rounds(min_tokens=1), batch_sizes, prompt_lengths)
def test_rates_and_times_are_consistent(times: RoundTimes, batch: int, prompt: int) -> None:
    metrics = round_metrics(times, batch, prompt)
    n = len(times.step_ns)
    assert 0 <= metrics["ttft_ms"] <= metrics["e2e_ms"]
    assert metrics["e2e_tokens_per_s"] == pytest.approx(batch * n * 1000 / metrics["e2e_ms"], rel=1e-9)
    assert metrics["input_output_tokens_per_s"] == pytest.approx(
        metrics["e2e_tokens_per_s"] * (prompt + n) / n, rel=1e-9
    )


@given(rounds(min_tokens=1))
def test_inter_token_gaps_span_first_to_last_token(times: RoundTimes) -> None:
    gaps = inter_token_ms(times)
    assert len(gaps) == len(times.step_ns) - 1
    assert all(gap >= 0 for gap in gaps)
    assert sum(gaps) == pytest.approx((times.step_ns[-1] - times.step_ns[0]) / MS, rel=1e-9, abs=1e-9)
