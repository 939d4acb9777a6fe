"""stats.summarize and stats.percentile on fixed data and with hypothesis properties."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from paddle_llm_bench.core.stats import Summary, percentile, summarize

# Magnitudes of real samples (ms, tokens/s, bytes) without float overflow in sums and squares.
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=1, max_size=50)
positive_samples = st.lists(positive, min_size=2, max_size=50)
quantile = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def close(a: float, b: float, scale: float = 1.0) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, scale))


def test_summarize_fixed_data() -> None:
    summary = summarize([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert summary.n == 8
    assert summary.median == 4.5
    assert summary.mean == 5.0
    # sum of squared deviations is 32; the sample std divides by n - 1 = 7
    assert summary.std == pytest.approx(math.sqrt(32 / 7))
    assert summary.cv_percent == pytest.approx(100 * math.sqrt(32 / 7) / 5.0)
    assert (summary.min, summary.max) == (2.0, 9.0)


def test_summarize_odd_count_median_is_middle_value() -> None:
    assert summarize([10.0, 1.0, 3.0]).median == 3.0


def test_summarize_one_sample_has_zero_spread() -> None:
    summary = summarize([12.5])
    assert summary == Summary(n=1, median=12.5, mean=12.5, std=0.0, cv_percent=0.0, min=12.5, max=12.5)


def test_summarize_cv_uses_absolute_mean() -> None:
    assert summarize([-1.0, -3.0]).cv_percent == pytest.approx(100 * math.sqrt(2) / 2)


def test_summarize_zero_mean_with_spread_has_infinite_cv() -> None:
    assert summarize([-1.0, 1.0]).cv_percent == math.inf


def test_summarize_as_dict_has_every_field() -> None:
    assert summarize([1.0, 2.0, 3.0]).as_dict() == {
        "n": 3,
        "median": 2.0,
        "mean": 2.0,
        "std": 1.0,
        "cv_percent": 50.0,
        "min": 1.0,
        "max": 3.0,
    }


def test_summarize_rejects_no_samples() -> None:
    with pytest.raises(ValueError, match="zero samples"):
        summarize([])


@pytest.mark.parametrize("q", [0, 1, 5, 25, 50, 62.5, 90, 99, 99.9, 100])
def test_percentile_matches_numpy_default(q: float) -> None:
    data = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0]
    assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)))


def test_percentile_interpolates_between_order_statistics() -> None:
    assert percentile([10.0, 20.0], 25) == 12.5
    assert percentile([0.0, 10.0, 20.0, 30.0, 40.0], 90) == 36.0


@pytest.mark.parametrize("q", [-0.1, 100.1])
def test_percentile_rejects_q_outside_0_100(q: float) -> None:
    with pytest.raises(ValueError, match=rf"within 0\.\.100, got {q}"):
        percentile([1.0, 2.0], q)


def test_percentile_rejects_no_samples() -> None:
    with pytest.raises(ValueError, match="zero samples"):
        percentile([], 50)


@given(samples)
def test_min_le_median_le_max(values: list[float]) -> None:
    summary = summarize(values)
    assert summary.min <= summary.median <= summary.max
    rounding = 1e-12 * max(1.0, abs(summary.min), abs(summary.max))  # the mean is rounded twice (sum, division)
    assert summary.min - rounding <= summary.mean <= summary.max + rounding
    assert summary.n == len(values)


@given(samples, quantile, quantile)
def test_percentile_monotone_in_q(values: list[float], q1: float, q2: float) -> None:
    low, high = sorted((q1, q2))
    assert percentile(values, low) <= percentile(values, high)


@given(samples, quantile)
def test_percentile_agrees_with_numpy(values: list[float], q: float) -> None:
    scale = max(abs(v) for v in values)
    assert close(percentile(values, q), float(np.percentile(values, q)), scale * 1e3)


@given(samples)
def test_percentile_ends_and_middle(values: list[float]) -> None:
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)
    assert percentile(values, 50) == pytest.approx(statistics.median(values), rel=1e-9, abs=1e-6)


@given(samples, st.randoms(use_true_random=False))
def test_summarize_invariant_to_permutation(values: list[float], rng: object) -> None:
    shuffled = list(values)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    first, second = summarize(values), summarize(shuffled)
    scale = max(abs(v) for v in values)
    assert (first.n, first.median, first.min, first.max) == (second.n, second.median, second.min, second.max)
    assert close(first.mean, second.mean, scale)
    assert close(first.std, second.std, scale)


@given(positive_samples, st.floats(min_value=1e-3, max_value=1e3))
def test_cv_percent_is_scale_invariant(values: list[float], factor: float) -> None:
    assume(summarize(values).std > 1e-6 * max(values))  # keep away from cancellation noise
    original = summarize(values).cv_percent
    scaled = summarize([v * factor for v in values]).cv_percent
    assert scaled == pytest.approx(original, rel=1e-6)


@given(finite, st.integers(min_value=1, max_value=30))
def test_constant_samples_have_zero_std(value: float, n: int) -> None:
    summary = summarize([value] * n)
    assert summary.std == 0.0
    assert summary.median == summary.min == summary.max == value
    assert summary.cv_percent == 0.0
