"""The metric registry, the one set of gate options, and the case record's format (core/metrics.py,
core/gate_options.py, core/record.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paddle_llm_bench.core.bandwidth import ACTIVATION_DTYPE, BYTES_PER_PARAMETER
from paddle_llm_bench.core.config import DEFAULT_SWEEPS, DTYPES, QUANTIZED_DTYPES, ConfigError
from paddle_llm_bench.core.gate import GateSettings
from paddle_llm_bench.core.gate_options import GATE_OPTIONS, add_gate_arguments, gate_settings, gate_settings_from_args
from paddle_llm_bench.core.metrics import (
    MEMORY,
    REGISTRY,
    TOKEN_GAPS,
    RoundTimes,
    baseline_metric_names,
    default_gate_min_effects,
    memory_tolerances,
    metric_by_name,
    metric_names,
    paired_metric_names,
    round_metric_names,
    round_metrics,
)
from paddle_llm_bench.core.record import RECORD_FORMAT, CaseRecord, RecordError
from paddle_llm_bench.paired.results import PairedSettings
from paddle_llm_bench.results.baselines import BaselineError, load_saved_run


def test_registry_names_are_unique_and_every_view_comes_from_it() -> None:
    assert len(set(metric_names())) == len(REGISTRY)
    per_round = {m.name for m in REGISTRY if m.per_round is not None}
    assert (
        per_round
        == set(round_metric_names())
        == set(metric_names()) - set(metric_names(MEMORY)) - set(metric_names(TOKEN_GAPS))
    )
    assert set(default_gate_min_effects()) <= set(baseline_metric_names())  # a default the gate could never judge
    assert set(memory_tolerances()) == set(metric_names(MEMORY))
    assert all(metric_by_name(m).family != "memory" for m in paired_metric_names() + baseline_metric_names())
    paired = PairedSettings()  # the paired engine's defaults are the registry's, not literals of its own
    assert set(paired.min_effect_percent) == set(paired_metric_names())
    assert set(paired.gated_metrics) == set(paired_metric_names()) & set(default_gate_min_effects())


def test_round_metrics_computes_exactly_the_registered_round_metrics() -> None:
    """With every optional reading present, a round yields each registered per-round metric, no other."""
    times = RoundTimes(0, (10_000_000, 20_000_000, 30_000_000), 31_000_000, decode_cpu_ns=5_000_000, energy_uj=9)
    assert set(round_metrics(times, batch_size=2, prompt_tokens=8)) == set(round_metric_names())


def test_the_gate_refuses_a_metric_it_could_never_judge() -> None:
    """e2e_ms was once accepted as a min effect and silently never gated: baselines hold no e2e samples."""
    assert "e2e_ms" not in baseline_metric_names()
    with pytest.raises(ValueError, match="cannot judge e2e_ms"):
        GateSettings(min_effect_percent={"e2e_ms": 5.0})
    with pytest.raises(ConfigError, match="invalid value 'e2e_ms=5' from --llm-gate-min-effect"):
        gate_settings({"min-effect": ("e2e_ms=5", "--llm-gate-min-effect")})


def test_every_gateable_metric_is_accepted_and_merged_over_the_defaults() -> None:
    for metric in baseline_metric_names():
        settings = gate_settings({"min-effect": (f"{metric}=7.5", "--llm-gate-min-effect")})
        assert settings.min_effect_percent == {**default_gate_min_effects(), metric: 7.5}


def test_subcommands_and_pytest_share_one_parser_and_name_the_option_typed() -> None:
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    args = parser.parse_args(["--alpha", "0.05", "--noise-floor", "3", "--max-cv", "20"])
    settings = gate_settings_from_args(args)
    assert (settings.alpha, settings.noise_floor_percent, settings.max_cv_percent) == (0.05, 3.0, 20.0)
    assert gate_settings_from_args(parser.parse_args([])) == GateSettings()
    with pytest.raises(ConfigError, match="from --alpha"):
        gate_settings_from_args(parser.parse_args(["--alpha", "0.9"]))
    with pytest.raises(ConfigError, match="from ini option llm_gate_alpha"):
        gate_settings({"alpha": ("0.9", "ini option llm_gate_alpha")})
    assert set(GATE_OPTIONS) == {"alpha", "min-effect", "noise-floor", "max-cv"}


# --- the case record ---------------------------------------------------------------------------------


def record(**fields: Any) -> dict[str, Any]:
    return {"case_id": "tiny-float32-greedy-new8-bs1-prompt8", "samples": {}, "absent": {}, **fields}


def test_format_1_moves_its_top_level_absent_reason_into_absent() -> None:
    old = record(format_version=1, bandwidth_ceiling_absent="on a CPU", absent={"tokens_per_j": "no counter"})
    new = CaseRecord.read(old)
    assert new.format_version == RECORD_FORMAT
    assert new.absent == {"tokens_per_j": "no counter", "bandwidth_ceiling": "on a CPU"}
    assert "bandwidth_ceiling_absent" not in new.document() and "bandwidth_ceiling_absent" in old  # input unchanged


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4))
def test_reading_a_current_record_changes_nothing(absent: dict[str, str]) -> None:
    current = CaseRecord.read(record(format_version=RECORD_FORMAT, absent=absent, unknown_field={"kept": [1]}))
    assert CaseRecord.read(current.document()) == current
    assert current.document()["unknown_field"] == {"kept": [1]}  # a newer release's field survives
    upgraded = CaseRecord.read(record(format_version=1, absent=absent))
    assert CaseRecord.read(upgraded.document()) == upgraded


@pytest.mark.parametrize("version", [RECORD_FORMAT + 1, 0, "2", True])
def test_a_newer_or_malformed_format_is_refused(version: object) -> None:
    with pytest.raises(RecordError, match="format_version"):
        CaseRecord.read(record(format_version=version))


def saved_run(tmp_path: Path, extra_info: dict[str, Any]) -> Path:
    path = tmp_path / "0001_run.json"
    data = {
        "machine_info": {"paddle_llm_bench": {"hardware_fingerprint": "cpu:test:2cores", "run_id": "r"}},
        "commit_info": {"id": "abc123"},
        "benchmarks": [{"name": "test_generation", "stats": {}, "extra_info": extra_info}],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_saved_runs_of_the_previous_format_still_load_upgraded(tmp_path: Path) -> None:
    path = saved_run(tmp_path, record(format_version=1, bandwidth_ceiling_absent="on a CPU"))
    _, by_case, _ = load_saved_run(path)
    (loaded,) = by_case.values()
    assert loaded.absent["bandwidth_ceiling"] == "on a CPU" and loaded.format_version == RECORD_FORMAT


def test_a_saved_run_from_a_newer_version_is_refused_naming_file_and_case(tmp_path: Path) -> None:
    path = saved_run(tmp_path, record(format_version=RECORD_FORMAT + 1))
    with pytest.raises(BaselineError, match=r"0001_run\.json, case tiny-float32.*upgrade paddle-llm-bench"):
        load_saved_run(path)


def test_every_dtype_has_what_measuring_it_needs() -> None:
    """Adding a dtype touches three tables (docs/development.md, "Where to add"); forgetting the bytes per
    parameter failed every batch-1 GPU case of the dtype at its bandwidth ceiling, so it fails here instead."""
    assert set(DTYPES) <= set(BYTES_PER_PARAMETER)
    assert all(ACTIVATION_DTYPE[dtype] == activation for dtype, activation in QUANTIZED_DTYPES.items())
    assert all(set(sweep["dtypes"]) <= set(DTYPES) for sweep in DEFAULT_SWEEPS.values())
