"""metrics.round_metrics / inter_token_ms on hand-computed rounds, and their identities under hypothesis."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paddle_llm_bench.core.metrics import RoundTimes, inter_token_ms, metric_by_name, round_metric_names, round_metrics

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


UNIT_BY_SUFFIX = {"_per_s": "tokens/s", "_ms": "ms", "_per_token": "ms", "_of_wall": "%", "_j": "J", "_w": "W"}


def test_every_metric_has_a_unit() -> None:
    times = RoundTimes(0, (1 * MS, 2 * MS), 3 * MS, decode_cpu_ns=MS, energy_uj=500)
    metrics = round_metrics(times, 1, 1)
    assert set(metrics) == set(round_metric_names())
    for name in round_metric_names():
        unit = metric_by_name(name).unit
        if name == "tokens_per_j":
            assert unit == "tokens/J" and metric_by_name(name).higher_is_better
            continue
        suffix = next(suffix for suffix in UNIT_BY_SUFFIX if name.endswith(suffix))
        assert unit == UNIT_BY_SUFFIX[suffix], name
        assert (metric_by_name(name).higher_is_better) == name.endswith("_per_s"), name


def test_host_overhead_per_token_and_share_of_the_decode_window() -> None:
    # first token at 10 ms, end at 17 ms: a 7 ms decode window for N - 1 = 3 steps of batch 2; 3.5 ms of CPU.
    times = RoundTimes(0, (10 * MS, 12 * MS, 14 * MS, 16 * MS), 17 * MS, decode_cpu_ns=int(3.5 * MS))
    metrics = round_metrics(times, batch_size=2, prompt_tokens=5)
    assert metrics["host_cpu_ms_per_token"] == pytest.approx(3.5 / 6)
    assert metrics["host_cpu_percent_of_wall"] == pytest.approx(50.0)
    busy = RoundTimes(0, (10 * MS, 17 * MS), 17 * MS, decode_cpu_ns=14 * MS)  # two busy threads
    assert round_metrics(busy, 1, 1)["host_cpu_percent_of_wall"] == pytest.approx(200.0)


def test_energy_per_round_tokens_per_joule_and_average_power() -> None:
    times = RoundTimes(0, (100 * MS, 200 * MS, 300 * MS, 400 * MS), 500 * MS, energy_uj=2_000_000)  # 2 J in 0.5 s
    metrics = round_metrics(times, batch_size=3, prompt_tokens=5)
    assert metrics["round_energy_j"] == pytest.approx(2.0)
    assert metrics["tokens_per_j"] == pytest.approx(3 * 4 / 2.0)
    assert metrics["average_power_w"] == pytest.approx(4.0)


def test_missing_or_stalled_readings_leave_the_figures_out_never_zero() -> None:
    plain = round_metrics(ms_round(0, [10, 12], 17), 1, 1)
    assert not {"host_cpu_ms_per_token", "round_energy_j", "tokens_per_j", "average_power_w"} & set(plain)
    stalled = round_metrics(RoundTimes(0, (MS, 2 * MS), 3 * MS, energy_uj=0), 1, 1)
    assert "tokens_per_j" not in stalled and "round_energy_j" not in stalled
    one_token = round_metrics(RoundTimes(0, (MS,), 3 * MS, decode_cpu_ns=MS), 1, 1)
    assert "host_cpu_ms_per_token" not in one_token


def test_optional_readings_must_not_be_negative_and_survive_asdict() -> None:
    with pytest.raises(ValueError, match="invalid decode_cpu_ns -1"):
        RoundTimes(0, (1,), 2, decode_cpu_ns=-1)
    with pytest.raises(ValueError, match="invalid energy_uj -5"):
        RoundTimes(0, (1,), 2, energy_uj=-5)
    times = RoundTimes(0, (1, 2), 3, decode_cpu_ns=1, energy_uj=7, clock_event_mask=0x4)
    assert RoundTimes(**dataclasses.asdict(times)) == times
    assert RoundTimes(**{"start_ns": 0, "step_ns": (1,), "end_ns": 2}).energy_uj is None  # older records


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
