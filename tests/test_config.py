"""Parsing of --llm-* values and expansion of a sweep into cases. Pure: no Paddle."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paddle_llm_bench.core.config import (
    DECODINGS,
    DEFAULT_SWEEPS,
    DTYPES,
    MIN_ROUNDS,
    Case,
    ConfigError,
    Sweep,
    make_sweep,
    model_label,
    parse_choices,
    parse_models,
    parse_positive_int,
    parse_positive_ints,
    parse_sweep_dimension,
)
from paddle_llm_bench.runtime.models import PRESETS

PRESET_NAMES = tuple(PRESETS)


# --- parse_choices ---------------------------------------------------------------------------------


def test_parse_choices_keeps_order_strips_and_deduplicates() -> None:
    assert parse_choices(" float16, float32 ,float16,", DTYPES, "--llm-dtype") == ("float16", "float32")


def test_parse_choices_error_names_value_source_and_allowed_values() -> None:
    with pytest.raises(ConfigError) as error:
        parse_choices("float32,float8", DTYPES, "--llm-dtype")
    message = str(error.value)
    assert "'float8'" in message
    assert "--llm-dtype" in message
    assert ", ".join(DTYPES) in message


def test_parse_choices_decoding_error_lists_decodings() -> None:
    with pytest.raises(
        ConfigError, match=r"'nope' from ini option llm_decoding: allowed values are greedy, sampling, beam4"
    ):
        parse_choices("nope", tuple(DECODINGS), "ini option llm_decoding")


@pytest.mark.parametrize("text", ["", " ", ",", " , ,"])
def test_parse_choices_rejects_empty(text: str) -> None:
    with pytest.raises(ConfigError, match=rf"empty value from --llm-dtype: give one or more of {', '.join(DTYPES)}$"):
        parse_choices(text, DTYPES, "--llm-dtype")


def test_parse_choices_is_case_sensitive() -> None:
    with pytest.raises(ConfigError, match="'Float32'"):
        parse_choices("Float32", DTYPES, "--llm-dtype")


# --- parse_positive_ints / parse_positive_int ------------------------------------------------------


def test_parse_positive_ints() -> None:
    assert parse_positive_ints("32, 128,32", "--llm-max-new-tokens") == (32, 128)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("abc", r"invalid value 'abc' from --llm-batch-size: expected an integer >= 1"),
        ("4,2.5", r"invalid value '2\.5' from --llm-batch-size: expected an integer >= 1"),
        ("0", r"invalid value 0 from --llm-batch-size: must be >= 1"),
        ("8,-3", r"invalid value -3 from --llm-batch-size: must be >= 1"),
        ("", r"empty value from --llm-batch-size: give one or more integers >= 1"),
    ],
)
def test_parse_positive_ints_errors_name_the_value(text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parse_positive_ints(text, "--llm-batch-size")


def test_parse_positive_ints_minimum() -> None:
    assert parse_positive_ints("0", "--llm-warmup-rounds", minimum=0) == (0,)
    with pytest.raises(ConfigError, match=r"invalid value 4 from --llm-rounds: must be >= 5"):
        parse_positive_ints("4", "--llm-rounds", minimum=5)


def test_parse_positive_int_takes_exactly_one() -> None:
    assert parse_positive_int(" 7 ", "--llm-rounds") == 7
    with pytest.raises(ConfigError, match=r"invalid value '5,6' from --llm-rounds: expected one integer >= 1"):
        parse_positive_int("5,6", "--llm-rounds")


# --- parse_models ----------------------------------------------------------------------------------


def test_parse_models_accepts_presets_and_paths() -> None:
    assert parse_models("tiny, /ckpt/qwen,./local,tiny", PRESET_NAMES, "--llm-model") == (
        "tiny",
        "/ckpt/qwen",
        "./local",
    )


def test_parse_models_accepts_an_existing_directory_by_bare_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my-checkpoint").mkdir()
    monkeypatch.chdir(tmp_path)
    assert parse_models("my-checkpoint", PRESET_NAMES, "--llm-model") == ("my-checkpoint",)


def test_parse_models_error_names_value_and_presets() -> None:
    with pytest.raises(ConfigError) as error:
        parse_models("tiny,qwen-7b", PRESET_NAMES, "--llm-model")
    message = str(error.value)
    assert "'qwen-7b'" in message
    assert "--llm-model" in message
    assert "tiny" in message and "deepseek-r1-distill-qwen-1.5b" in message
    assert "directory" in message


def test_parse_models_rejects_empty() -> None:
    with pytest.raises(ConfigError, match="empty value from --llm-model"):
        parse_models(" , ", PRESET_NAMES, "--llm-model")


# --- parse_sweep_dimension -------------------------------------------------------------------------


def test_parse_sweep_dimension_dispatches_on_the_field() -> None:
    assert parse_sweep_dimension("dtypes", "float32", "x", PRESET_NAMES) == ("float32",)
    assert parse_sweep_dimension("decodings", "beam4,greedy", "x", PRESET_NAMES) == ("beam4", "greedy")
    assert parse_sweep_dimension("prompt_tokens", "16,256", "x", PRESET_NAMES) == (16, 256)
    assert parse_sweep_dimension("models", "tiny", "x", PRESET_NAMES) == ("tiny",)
    with pytest.raises(ConfigError, match=rf"'float8'.*allowed values are {', '.join(DTYPES)}$"):
        parse_sweep_dimension("dtypes", "float8", "--llm-dtype", PRESET_NAMES)
    with pytest.raises(ConfigError, match="unknown sweep dimension 'colours'"):
        parse_sweep_dimension("colours", "red", "x", PRESET_NAMES)


# --- make_sweep -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rounds", [-1, 0, 1, MIN_ROUNDS - 1])
def test_make_sweep_rejects_fewer_than_min_rounds(rounds: int) -> None:
    with pytest.raises(ConfigError, match=rf"invalid rounds {rounds}: at least {MIN_ROUNDS} measured rounds"):
        make_sweep({}, "cpu", rounds=rounds, warmup_rounds=1)


def test_make_sweep_rejects_negative_warmup() -> None:
    with pytest.raises(ConfigError, match=r"invalid warm-up rounds -1: must be >= 0"):
        make_sweep({}, "cpu", rounds=MIN_ROUNDS, warmup_rounds=-1)


@pytest.mark.parametrize("device_kind", ["cpu", "gpu"])
def test_make_sweep_puts_chosen_dimensions_into_the_device_defaults(device_kind: str) -> None:
    sweep = make_sweep({"dtypes": ("float32",), "batch_sizes": (3,)}, device_kind, rounds=MIN_ROUNDS, warmup_rounds=0)
    defaults = DEFAULT_SWEEPS[device_kind]
    assert sweep.dtypes == ("float32",)
    assert sweep.batch_sizes == (3,)
    assert sweep.models == defaults["models"]
    assert sweep.decodings == defaults["decodings"]
    assert (sweep.rounds, sweep.warmup_rounds) == (MIN_ROUNDS, 0)


def test_default_sweeps_only_use_known_values() -> None:
    for sweep in DEFAULT_SWEEPS.values():
        assert set(sweep["dtypes"]) <= set(DTYPES)
        assert set(sweep["decodings"]) <= set(DECODINGS)
        assert set(sweep["models"]) <= set(PRESETS)


# --- Sweep.cases and Case.id ------------------------------------------------------------------------


def small_sweep(**overrides: tuple[Any, ...]) -> Sweep:
    dimensions: dict[str, tuple[Any, ...]] = {
        "models": ("tiny", "/ckpt/qwen-1.5b"),
        "dtypes": ("float16", "float32"),
        "decodings": ("greedy", "beam4"),
        "max_new_tokens": (32, 128),
        "batch_sizes": (1, 4),
        "prompt_tokens": (32,),
    }
    dimensions.update(overrides)
    return Sweep(**dimensions)


def test_cases_are_the_full_cross_product() -> None:
    sweep = small_sweep()
    cases = sweep.cases()
    expected = set(
        itertools.product(
            sweep.models, sweep.dtypes, sweep.decodings, sweep.max_new_tokens, sweep.batch_sizes, sweep.prompt_tokens
        )
    )
    got = [(c.model, c.dtype, c.decoding, c.max_new_tokens, c.batch_size, c.prompt_tokens) for c in cases]
    assert len(got) == 2 * 2 * 2 * 2 * 2 * 1
    assert set(got) == expected
    assert len(set(got)) == len(got)


def test_cases_grouped_by_model_and_dtype_in_user_order() -> None:
    cases = small_sweep().cases()
    groups = [key for key, _ in itertools.groupby(cases, key=lambda c: (c.model, c.dtype))]
    assert groups == [
        ("tiny", "float16"),
        ("tiny", "float32"),
        ("/ckpt/qwen-1.5b", "float16"),
        ("/ckpt/qwen-1.5b", "float32"),
    ]


def test_case_ids_are_unique_and_readable() -> None:
    cases = small_sweep().cases()
    ids = [case.id for case in cases]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "tiny-float16-greedy-new32-bs1-prompt32"
    assert "qwen-1.5b-float32-beam4-new128-bs4-prompt32" in ids
    for case_id in ids:
        assert re.fullmatch(
            r"[\w.-]+-(float16|float32|bfloat16)-(greedy|sampling|beam4)-new\d+-bs\d+-prompt\d+", case_id
        )
        assert "/" not in case_id


def test_case_as_dict() -> None:
    case = Case("tiny", "float32", "greedy", 8, 2, 16)
    assert case.as_dict() == {
        "model": "tiny",
        "dtype": "float32",
        "decoding": "greedy",
        "max_new_tokens": 8,
        "batch_size": 2,
        "prompt_tokens": 16,
        "mode": "eager",
    }


def test_model_label() -> None:
    assert model_label("tiny") == "tiny"
    assert model_label("/data/ckpt/Qwen2-0.5B") == "Qwen2-0.5B"
    assert model_label("./runs/ckpt") == "ckpt"


def test_checkpoints_with_the_same_directory_name_never_share_case_ids() -> None:
    """Case ids name a checkpoint by its directory's last part: run1/checkpoint-1000 and
    run2/checkpoint-1000 must be refused with both paths named, or get distinct ids."""
    models = ("/runs/a/checkpoint-1000", "/runs/b/checkpoint-1000")
    try:
        sweep = make_sweep({"models": models}, "cpu", rounds=MIN_ROUNDS, warmup_rounds=1)
    except ConfigError as error:
        assert all(model in str(error) for model in models), str(error)
        return
    ids = [case.id for case in sweep.cases()]
    assert len(set(ids)) == len(ids), "two checkpoints would share case ids and baselines"


def subsets(values: tuple[object, ...]) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True).map(tuple)


@given(
    models=subsets(("tiny", "deepseek-r1-distill-qwen-1.5b", "/ckpt/x", "./y")),
    dtypes=subsets(DTYPES),
    decodings=subsets(tuple(DECODINGS)),
    max_new_tokens=subsets((1, 2, 32, 200)),
    batch_sizes=subsets((1, 4, 8)),
    prompt_tokens=subsets((16, 1024)),
)
def test_cases_properties(
    models: tuple[str, ...],
    dtypes: tuple[str, ...],
    decodings: tuple[str, ...],
    max_new_tokens: tuple[int, ...],
    batch_sizes: tuple[int, ...],
    prompt_tokens: tuple[int, ...],
) -> None:
    sweep = Sweep(models, dtypes, decodings, max_new_tokens, batch_sizes, prompt_tokens)
    cases = sweep.cases()
    sizes = [len(models), len(dtypes), len(decodings), len(max_new_tokens), len(batch_sizes), len(prompt_tokens)]
    assert len(cases) == len({c.id for c in cases}) == len(set(cases))
    assert len(cases) == math.prod(sizes)
    groups = [key for key, _ in itertools.groupby(cases, key=lambda c: (c.model, c.dtype))]
    assert groups == list(itertools.product(models, dtypes))  # each (model, dtype) once: one load each


@pytest.mark.parametrize("text", ["1,,2", ",1", "1, ,2", "1,2,,"])
def test_an_empty_item_is_an_error_naming_the_text_and_source(text: str) -> None:
    with pytest.raises(ConfigError, match=rf"empty item in {text!r} from --llm-batch-size"):
        parse_positive_ints(text, "--llm-batch-size")
    with pytest.raises(ConfigError, match="empty item"):
        parse_choices(text.replace("1", "float32").replace("2", "float16"), DTYPES, "--llm-dtype")


def test_one_trailing_comma_is_allowed() -> None:
    assert parse_positive_ints("1,2,", "--llm-batch-size") == (1, 2)
