"""The saved record of one measured case — pytest-benchmark's ``extra_info`` — as one typed model
(``CaseRecord``, pydantic v2), its format checked and older formats upgraded on read. Pure.

Built by ``runtime.measure.CaseResult.record``, written as ``CaseRecord.document()``; read back through
``CaseRecord.read`` by every reader of saved runs: baselines, compare, calibrate, ``baseline check``.

Format 2 (current): a value that could not be measured is absent from ``metrics``/``samples``/
``memory_bytes`` and named in ``absent`` with the reason, never stored as 0. Format 1 also had a top-level
``bandwidth_ceiling_absent``; it moves into ``absent["bandwidth_ceiling"]``. Fields this release does not
know (written by a newer one) are kept, not dropped.

Why pydantic: it is installed already (PaddleNLP needs it), it validates while it reads (one bad sample is
named with its path: ``samples.ttft_ms[3] is nan``) and dumps back to the same JSON; msgspec would be one more
dependency, for speed the suite does not need (a run holds tens of records).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from paddle_llm_bench.core.metrics import MEMORY, TOKEN_GAPS, Metric
from paddle_llm_bench.core.stats import summarize
from paddle_llm_bench.core.versioned import Document, Format, FormatError, describe_invalid

# Any real sample (tokens/s, milliseconds) lies far inside these; beyond them sums overflow or print as noise.
SAMPLE_MIN, SAMPLE_MAX = 1e-9, 1e12


def _finite(value: object) -> int | float | None:
    """``value`` if it is a finite number (not a bool, not a numeric string), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _sample(value: object) -> float:
    number = _finite(value)
    if number is None or not SAMPLE_MIN <= number <= SAMPLE_MAX:
        raise ValueError(
            f"every sample must be a number from {SAMPLE_MIN:g} to {SAMPLE_MAX:g} (tokens/s or milliseconds)"
        )
    return float(number)


def _bytes(value: object) -> int | float:
    number = _finite(value)
    if number is None or number < 0:
        raise ValueError("memory must be a finite number of bytes, at least 0")
    return number


Sample = Annotated[float, BeforeValidator(_sample)]  # one round's figure: finite, positive, in range
Bytes = Annotated[int | float, BeforeValidator(_bytes)]  # a memory figure: finite, not negative (ints stay ints)
Samples = Mapping[str, Sequence[Sample]]  # metric name -> one figure per measured round (read as dict of lists)
MemoryBytes = Mapping[str, Bytes]  # memory metric name -> bytes
FactValue = str | int | float | bool | None  # a JSON scalar
CaseParameters = dict[str, FactValue]  # ``Case.as_dict()``
Readings = dict[str, FactValue]  # what a machine-fact collector read, by name (``MachineFacts`` reads them)


class Model(BaseModel):
    """The suite's typed documents: fields it does not know are kept (a newer release wrote them)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class StoredSummary(Model):
    """``metrics[name]``: a per-round metric summarized across rounds (``core.stats.Summary``)."""

    unit: str = ""
    n: int | None = None
    median: float | None = None
    mean: float | None = None
    std: float | None = None
    cv_percent: float | None = None
    min: float | None = None
    max: float | None = None


class HostLoad(Model):
    """The machine's load while the case was measured; ``busy`` says why it counts as busy, if it does."""

    load_average_1min: float | None = None
    logical_cores: int | None = None
    busy: str = ""


class ClockEventSummary(Model):
    """What held the GPU's clocks back (power, thermal) during the measured rounds: each violation counter's
    increase per round, in ns and in % of the round's wall time; ``warning`` when one advanced."""

    violation_ns: dict[str, list[int]]
    violation_percent_of_round: dict[str, list[float]]
    held_back_by: list[str]
    rounds_held_back: int
    not_counted: dict[str, str] = {}  # counters this GPU or driver does not give, and why
    masks_after_round: list[int | None] | None = None  # clock event reasons read after each round (context)
    reasons_after_rounds: list[str] | None = None
    warning: str = ""


class BandwidthShare(Model):
    """A batch-1 GPU case against its memory-bandwidth ceiling (docs/facts.md §3): the median round's share, and
    the fastest round's (above 1: a figure that cannot be true)."""

    ceiling_tokens_per_s: float
    share_of_ceiling: float
    fastest_round_share_of_ceiling: float
    memory_bandwidth_bytes_per_s: float | None = None
    bytes_per_token: float | None = None
    source: str = ""  # where the bandwidth came from (the SKU table, NVML, a given figure)
    weight_bytes_source: str = ""


class OperatorTimes(Model):
    calls: int = 0
    cpu_time_ms: float = 0.0
    gpu_time_ms: float | None = None  # GPU kernel time, where the profiler read the GPU


class OperatorProfile(Model):
    """One extra, untimed round under Paddle's profiler (``--llm-profile``): each operator's calls and times, by
    total CPU time. It explains a change; it never times a case (the profiler slows generation)."""

    note: str = ""
    targets: list[str] = []
    profiled_round_ms: float | None = None
    operators: dict[str, OperatorTimes] = {}


class RecordError(FormatError):
    """A record this version cannot read (a newer format, or a malformed one)."""


def _upgrade_v1(record: Document) -> Document:
    """Format 1 had a top-level ``bandwidth_ceiling_absent``; format 2 names every missing value in ``absent``."""
    upgraded = dict(record)
    absent = dict(upgraded.get("absent", {}))
    if "bandwidth_ceiling_absent" in upgraded:
        absent["bandwidth_ceiling"] = upgraded.pop("bandwidth_ceiling_absent")
    return {**upgraded, "absent": absent}


RECORD = Format("case record", 2, {1: _upgrade_v1}, unversioned=1)
RECORD_FORMAT = RECORD.current


class CaseRecord(Model):
    """Everything measured for one case, as saved (``extra_info``)."""

    format_version: int = RECORD_FORMAT
    case_id: str
    case: CaseParameters = {}
    device: str = ""
    model_source: str = ""
    rounds: int | None = None
    warmup_rounds: int = 0
    metrics: dict[str, StoredSummary] = {}
    samples: Samples = {}  # older records kept only the summary in ``metrics``
    inter_token_latency_ms: dict[str, int | float] = {}  # p50/p90/p99 over every step's gap, and n
    inter_token_ms_by_round: list[list[float]] = []
    memory_bytes: MemoryBytes = {}
    absent: dict[str, str] = {}  # metric (or figure) -> why it could not be measured
    output_digest: str | None = None
    first_generation_ms: float | None = None  # the case's first generate(), before warm-up
    host_load: HostLoad = HostLoad()
    gpu_clock_events: ClockEventSummary | None = None
    bandwidth_ceiling: BandwidthShare | None = None  # batch 1 on a GPU
    measurement_error: str | None = None  # a figure that cannot be true: kept for inspection, out of the gate
    operator_profile: OperatorProfile | None = None

    @classmethod
    def read(cls, document: object, where: str = "") -> CaseRecord:
        """A saved record in the current format; a RecordError names a newer format or the bad field
        (``where``: the record's place in its file, e.g. ``benchmarks[3].extra_info``)."""
        try:
            return cls.model_validate(RECORD.upgrade(document))
        except FormatError as error:
            raise RecordError(f"case record {error}") from None
        except ValidationError as error:
            raise RecordError(describe_invalid(error, where)) from None

    def document(self) -> Document:
        """The record as saved: JSON types, optional parts left out when there is nothing in them."""
        return self.model_dump(mode="json", exclude_none=True)


class MachineFacts(Model):
    """What measured a run — a saved run's ``machine_info.paddle_llm_bench``. The facts the suite reads are typed;
    every other reading of the collectors (``runtime.environment``), and ``<fact>_absent`` with the reason a fact
    could not be read, is kept as it was read."""

    hardware_fingerprint: str | None = None  # which results may be compared with which
    device: str = ""
    paddle_version: str | None = None
    paddlenlp_version: str | None = None
    run_id: str | None = None  # the measuring session: a baseline never merges the same run twice
    run_started: str = ""  # ISO 8601; the gate groups runs of one session by it
    commit: str | None = None  # the checkout measured (pytest-benchmark's commit_info.id)
    accepted: str | None = None  # why a slower or bigger run was accepted into the baseline
    shard: str | None = None  # "k/n" of a sharded sweep
    interrupted_cases: list[str] = []  # stopped mid-measurement, not saved

    def document(self) -> Document:
        return self.model_dump(mode="json", exclude_defaults=True)


@dataclass(frozen=True)
class Figure:
    """One metric of one case as its record holds it: the value (a median across rounds for a per-round
    metric), its spread across rounds where known, or why it is missing."""

    value: float | None
    std: float | None = None
    reason: str = ""


NOT_RECORDED = "not recorded in this file (an older format?)"


def case_figure(record: CaseRecord, metric: Metric) -> Figure:
    """Where each family keeps its figure: memory peaks in ``memory_bytes``; token-gap percentiles in
    ``inter_token_latency_ms`` (``itl_p99_ms`` is its ``p99``); per-round metrics as the median and std of
    their ``samples``, else of the stored summary in ``metrics``. Missing: the record's ``absent`` reason."""
    if metric.family == MEMORY:
        value = record.memory_bytes.get(metric.name)
        return Figure(float(value)) if value is not None else _missing(record, metric.name)
    if metric.family == TOKEN_GAPS:
        percentile = record.inter_token_latency_ms.get(metric.name.removeprefix("itl_").removesuffix("_ms"))
        if percentile is not None:
            return Figure(percentile)
        return _missing(record, metric.name, "inter_token_latency_ms", "tpot_ms")
    samples = record.samples.get(metric.name)
    if samples:
        summary = summarize(samples)
        return Figure(summary.median, summary.std)
    stored = record.metrics.get(metric.name)
    if stored is not None and stored.median is not None:
        return Figure(stored.median, stored.std)
    return _missing(record, metric.name)


def _missing(record: CaseRecord, *keys: str) -> Figure:
    return Figure(None, reason=next((record.absent[key] for key in keys if key in record.absent), NOT_RECORDED))
