"""Sharding a sweep: every case in exactly one shard, balanced by expected cost, deterministic."""

from __future__ import annotations

import random
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paddle_llm_bench.core.config import DECODINGS, DEFAULT_SWEEPS, DTYPES, MODES, Case, ConfigError, Sweep
from paddle_llm_bench.runtime.shard import (
    COMPILE_COST_PER_SHAPE,
    assign_shards,
    expected_cost,
    first_generation_cost,
    first_generation_seconds,
    parse_shard,
    round_cost,
    select_shard,
)

T = TypeVar("T")
MODELS = ("tiny", "deepseek-r1-distill-qwen-1.5b")


def dimension(elements: st.SearchStrategy[T], most: int) -> st.SearchStrategy[tuple[T, ...]]:
    return st.lists(elements, min_size=1, max_size=most, unique=True).map(tuple)


@st.composite
def sweeps(draw: st.DrawFn) -> list[Case]:
    sweep = Sweep(
        models=draw(dimension(st.sampled_from(MODELS), 2)),
        dtypes=draw(dimension(st.sampled_from(DTYPES), 3)),
        decodings=draw(dimension(st.sampled_from(tuple(DECODINGS)), 3)),
        max_new_tokens=draw(dimension(st.integers(1, 512), 3)),
        batch_sizes=draw(dimension(st.integers(1, 16), 2)),
        prompt_tokens=draw(dimension(st.integers(1, 4096), 2)),
        modes=draw(dimension(st.sampled_from(tuple(MODES)), 2)),
    )
    return sweep.cases()


@settings(max_examples=60, deadline=None)
@given(cases=sweeps(), n=st.integers(1, 8))
def test_every_case_lands_in_exactly_one_shard(cases: list[Case], n: int) -> None:
    shards = [select_shard(cases, k, n) for k in range(1, n + 1)]
    landed = [case for shard in shards for case in shard]
    assert sorted(landed, key=lambda c: c.id) == sorted(cases, key=lambda c: c.id)
    assert len({c.id for c in landed}) == len(cases)


@settings(max_examples=60, deadline=None)
@given(cases=sweeps(), n=st.integers(1, 8))
def test_shards_are_balanced_within_the_costliest_case(cases: list[Case], n: int) -> None:
    loads = [sum(expected_cost(case) for case in select_shard(cases, k, n)) for k in range(1, n + 1)]
    costliest = max(expected_cost(case) for case in cases)
    assert max(loads) - min(loads) <= costliest * (1 + 1e-9)


@settings(max_examples=40, deadline=None)
@given(cases=sweeps(), n=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_deterministic_and_independent_of_the_input_order(cases: list[Case], n: int, seed: int) -> None:
    shuffled = list(cases)
    random.Random(seed).shuffle(shuffled)
    for k in range(1, n + 1):
        first = select_shard(cases, k, n)
        assert select_shard(cases, k, n) == first
        assert {c.id for c in select_shard(shuffled, k, n)} == {c.id for c in first}


@settings(max_examples=40, deadline=None)
@given(cases=sweeps(), n=st.integers(1, 8))
def test_a_shard_keeps_the_sweep_order(cases: list[Case], n: int) -> None:
    position = {case.id: i for i, case in enumerate(cases)}
    for k in range(1, n + 1):
        indices = [position[case.id] for case in select_shard(cases, k, n)]
        assert indices == sorted(indices)


def test_the_default_gpu_sweep_splits_evenly_in_two() -> None:
    cases = Sweep(**DEFAULT_SWEEPS["gpu"]).cases()
    halves = [select_shard(cases, k, 2) for k in (1, 2)]
    loads = [sum(expected_cost(c) for c in half) for half in halves]
    assert len(halves[0]) + len(halves[1]) == len(cases)
    assert abs(loads[0] - loads[1]) <= 0.05 * sum(loads)


def test_more_shards_than_cases_leaves_some_empty() -> None:
    cases = Sweep(("tiny",), ("float32",), ("greedy",), (8,), (1,), (8, 16)).cases()
    assert [len(select_shard(cases, k, 3)) for k in (1, 2, 3)] == [1, 1, 0]


BASE = Case("deepseek-r1-distill-qwen-1.5b", "float16", "greedy", 64, 1, 64)


@pytest.mark.parametrize(
    "bigger",
    [
        Case(BASE.model, BASE.dtype, BASE.decoding, 128, 1, 64),
        Case(BASE.model, BASE.dtype, BASE.decoding, 64, 2, 64),
        Case(BASE.model, BASE.dtype, BASE.decoding, 64, 1, 128),
        Case(BASE.model, BASE.dtype, "beam4", 64, 1, 64),
        Case(BASE.model, BASE.dtype, "sampling", 64, 1, 64),
        Case(BASE.model, BASE.dtype, BASE.decoding, 64, 1, 64, mode="to_static"),
    ],
    ids=["max_new_tokens", "batch_size", "prompt_tokens", "beams", "sampling", "a static mode"],
)
def test_cost_grows_with_every_dimension(bigger: Case) -> None:
    assert expected_cost(bigger) > expected_cost(BASE)


def test_a_static_mode_compiles_once_per_case_not_per_round() -> None:
    static = Case(BASE.model, BASE.dtype, BASE.decoding, 64, 1, 64, mode="to_static")
    assert round_cost(static) == round_cost(BASE)  # the steady state is what the rounds measure
    assert expected_cost(static, rounds=10) == pytest.approx(10 * round_cost(BASE) + 65 * COMPILE_COST_PER_SHAPE)
    assert first_generation_cost(BASE) == 0.0
    # The tiny model's measured first generation (50.6 s for 32 steps on this project's VM, ~7.6 ms a step):
    tiny = Case("tiny", "float32", "greedy", 32, 1, 32, mode="to_static")
    assert 25.0 < first_generation_seconds(tiny, 0.0076) < 100.0


def test_cost_scales_with_rounds_and_model_size() -> None:
    assert expected_cost(BASE, rounds=10) == pytest.approx(10 * expected_cost(BASE))
    tiny = Case("tiny", BASE.dtype, BASE.decoding, 64, 1, 64)
    assert expected_cost(tiny) < expected_cost(BASE)
    assert expected_cost(Case("./no/such/checkpoint", "float16", "greedy", 64, 1, 64)) > 0


@pytest.mark.parametrize(("text", "expected"), [("1/1", (1, 1)), ("2/3", (2, 3)), (" 8/8 ", (8, 8))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text, "--llm-shard") == expected


@pytest.mark.parametrize("text", ["3/2", "0/2", "1", "a/b", "1/0", "-1/2", "1/2/3", ""])
def test_parse_shard_names_the_bad_value_and_its_source(text: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_shard(text, "--llm-shard")
    assert str(error.value) == f"invalid shard {text!r} from --llm-shard: expected K/N with 1 <= K <= N, e.g. 1/2"


def test_select_shard_rejects_a_shard_outside_the_count() -> None:
    with pytest.raises(ConfigError, match="invalid shard 3/2"):
        select_shard([BASE], 3, 2)
    with pytest.raises(ConfigError, match="invalid shard count 0"):
        assign_shards([BASE], 0)
