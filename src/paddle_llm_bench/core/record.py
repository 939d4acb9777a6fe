"""The saved record of one measured case: pytest-benchmark's ``extra_info``, its format checked and
older formats upgraded on read. Pure.

Written by ``runtime.measure.CaseResult.as_extra_info``; read back (through ``upgrade_record``) by every
reader of saved runs: baselines, compare, calibrate, ``baseline check``.

Format 2 (current): a value that could not be measured is absent from ``metrics``/``samples``/
``memory_bytes`` and named in ``absent`` with the reason, never stored as 0. Format 1 also had a top-level
``bandwidth_ceiling_absent``; it moves into ``absent["bandwidth_ceiling"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paddle_llm_bench.core.metrics import MEMORY, TOKEN_GAPS, Metric
from paddle_llm_bench.core.stats import summarize
from paddle_llm_bench.core.versioned import Format, FormatError


class RecordError(FormatError):
    """A record this version cannot read (a newer format, or a malformed one)."""


def _upgrade_v1(record: dict[str, Any]) -> dict[str, Any]:
    """Format 1 had a top-level ``bandwidth_ceiling_absent``; format 2 names every missing value in ``absent``."""
    upgraded = dict(record)
    absent = dict(upgraded.get("absent", {}))
    if "bandwidth_ceiling_absent" in upgraded:
        absent["bandwidth_ceiling"] = upgraded.pop("bandwidth_ceiling_absent")
    return {**upgraded, "absent": absent}


RECORD = Format("case record", 2, {1: _upgrade_v1}, unversioned=1)
RECORD_FORMAT = RECORD.current


def upgrade_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record in the current format (a new dict); RecordError if it is newer or malformed."""
    try:
        return RECORD.upgrade(dict(record))
    except FormatError as error:
        raise RecordError(f"case record {error}") from None


@dataclass(frozen=True)
class Figure:
    """One metric of one case as its record holds it: the value (a median across rounds for a per-round
    metric), its spread across rounds where known, or why it is missing."""

    value: float | None
    std: float | None = None
    reason: str = ""


NOT_RECORDED = "not recorded in this file (an older format?)"


def case_figure(record: Mapping[str, Any], metric: Metric) -> Figure:
    """Where each family keeps its figure: memory peaks in ``memory_bytes``; token-gap percentiles in
    ``inter_token_latency_ms`` (``itl_p99_ms`` is its ``p99``); per-round metrics as the median and std of
    their ``samples``, else of the stored summary in ``metrics``. Missing: the record's ``absent`` reason."""
    if metric.family == MEMORY:
        value = record.get("memory_bytes", {}).get(metric.name)
        return Figure(float(value)) if value is not None else _missing(record, metric.name)
    if metric.family == TOKEN_GAPS:
        percentile = metric.name.removeprefix("itl_").removesuffix("_ms")
        value = record.get("inter_token_latency_ms", {}).get(percentile)
        if value is not None:
            return Figure(float(value))
        return _missing(record, metric.name, "inter_token_latency_ms", "tpot_ms")
    samples = record.get("samples", {}).get(metric.name)
    if samples:
        summary = summarize([float(v) for v in samples])
        return Figure(summary.median, summary.std)
    stored = record.get("metrics", {}).get(metric.name, {})
    if isinstance(stored, Mapping) and stored.get("median") is not None:
        std = stored.get("std")
        return Figure(float(stored["median"]), float(std) if std is not None else None)
    return _missing(record, metric.name)


def _missing(record: Mapping[str, Any], *keys: str) -> Figure:
    absent = record.get("absent", {})
    return Figure(None, reason=next((str(absent[key]) for key in keys if key in absent), NOT_RECORDED))
