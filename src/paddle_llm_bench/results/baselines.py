"""Versioned, human-diffable baseline files: read (upgrading old formats), merge, write atomically.

One file per hardware fingerprint in ``baselines/``. Layout (format 2)::

    {"format_version": 2, "hardware_fingerprint": "cpu:AMD EPYC:2cores",
     "cases": {"<case id>": {"case": {...parameters...},
                             "runs": [{"date": ..., "commit": ..., "environment": {...},
                                       "samples": {"decode_tokens_per_s": [...], "ttft_ms": [...], "tpot_ms": [...]},
                                       "memory_bytes": {...}}, ...]}}}

The last ``MAX_RUNS_PER_CASE`` accepted runs are kept per case, so the noise between runs is known.
Each run records the ``run_id`` of the session that measured it: merging the same run again adds
nothing (nor does a run whose samples equal a kept run's, for runs saved before run ids existed).
A saved pytest-benchmark run (``.benchmarks/.../NNNN_*.json``) can stand in as a one-run baseline.

Every file read here is validated: a bad field is an error naming the file, the field and the fix;
samples must be finite and positive, memory figures finite and not negative.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, JsonValue, ValidationError, model_validator

from paddle_llm_bench.core.gate import CaseMeasurement
from paddle_llm_bench.core.metrics import baseline_metric_names
from paddle_llm_bench.core.record import (
    CaseParameters,
    CaseRecord,
    MachineFacts,
    MemoryBytes,
    Model,
    RecordError,
    Samples,
)
from paddle_llm_bench.core.versioned import Document, Format, FormatError, NewerFormatError, describe_invalid
from paddle_llm_bench.results.files import describe_os_error, read_document, write_document

MAX_RUNS_PER_CASE = 5
ENVIRONMENT_KEYS = (
    "paddle_version",
    "paddle_commit",
    "paddlenlp_version",
    "paddle_cuda_version",
    "paddle_cudnn_version",
    "gpu_driver_version",
    "device",
)


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file and the fix."""


class BaselineRun(Model):
    """One accepted run of a case: its per-round samples of the gated metrics and its memory peaks."""

    date: str = ""  # when the run was measured (ISO 8601)
    commit: str | None = None
    environment: dict[str, JsonValue] = Field(default_factory=dict)  # the ``ENVIRONMENT_KEYS`` it was measured with
    rounds: int | None = None
    samples: Samples = Field(default_factory=dict)
    memory_bytes: MemoryBytes = Field(default_factory=dict)
    run_id: str | None = None  # the measuring session: the same run is never merged twice
    accepted: str | None = None  # why a slower or bigger run was accepted

    @model_validator(mode="after")
    def _something_to_compare(self) -> BaselineRun:
        if not self.samples and not self.memory_bytes:
            raise ValueError("holds neither samples nor memory_bytes: nothing to compare with")
        return self

    def measurement(self, case_id: str) -> CaseMeasurement:
        return CaseMeasurement(case_id, self.samples, self.memory_bytes, started=self.date)

    def same_as(self, other: BaselineRun) -> bool:
        """Two baseline runs are one measurement if they carry the same run id or identical samples."""
        if self.run_id and self.run_id == other.run_id:
            return True
        return bool(other.samples) and self.samples == other.samples


class BaselineCase(Model):
    case: CaseParameters = Field(default_factory=dict)
    runs: list[BaselineRun]


class BaselineDocument(Model):
    cases: dict[str, BaselineCase]
    hardware_fingerprint: Annotated[str, Field(min_length=1)]


@dataclass
class BaselineStore:
    path: Path
    hardware_fingerprint: str
    cases: dict[str, BaselineCase] = field(default_factory=dict)

    def measurements(self) -> dict[str, list[CaseMeasurement]]:
        return {case_id: [run.measurement(case_id) for run in entry.runs] for case_id, entry in self.cases.items()}

    def document(self) -> Document:
        cases = {case_id: entry.model_dump(mode="json", exclude_none=True) for case_id, entry in self.cases.items()}
        return {"hardware_fingerprint": self.hardware_fingerprint, "cases": cases}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


def baseline_path(directory: Path, fingerprint: str) -> Path:
    return directory / f"{slug(fingerprint)}.json"


def _upgrade_v1(data: Document) -> Document:
    """Format 1 kept one run per case at ``cases[id]`` itself; format 2 keeps a list of runs."""
    if not isinstance(data.get("cases"), dict) or not all(isinstance(v, dict) for v in data["cases"].values()):
        raise FormatError("field cases is not a mapping of case id to entries")
    cases = {}
    for case_id, entry in data["cases"].items():
        if "runs" in entry:  # read as format 1, its runs would vanish without a word
            raise FormatError(
                f"field cases[{case_id!r}] holds a list of runs (format 2's layout) but the file says format_version 1"
            )
        run = {k: v for k, v in entry.items() if k != "case"}
        cases[case_id] = {"case": entry.get("case", {}), "runs": [run]}
    return {**data, "cases": cases}


BASELINE = Format("baseline", 2, {1: _upgrade_v1})
FORMAT_VERSION = BASELINE.current


def read_json(path: Path, what: str, fix: str) -> Any:
    """The JSON in ``path``; a BaselineError naming ``what`` it should be, the file, the cause and ``fix``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BaselineError(f"cannot read {what} {path}: not valid JSON ({error}); {fix}") from None
    except OSError as error:
        raise BaselineError(f"cannot read {what} {path}: {describe_os_error(error)}") from None


def load(path: Path) -> BaselineStore:
    """Read and validate a baseline file, upgrading older formats in memory (the file changes only on the
    next update). Any bad field is a ``BaselineError`` naming the file, the field and the fix."""
    fix = (
        f"restore it (git checkout -- {path}), correct or remove that entry, or delete the file and record "
        "a new baseline with --llm-baseline-update"
    )
    try:
        data = read_document(path, BASELINE)
    except NewerFormatError as error:
        raise BaselineError(str(error)) from None
    except FormatError as error:
        raise BaselineError(f"{error}; {fix}") from None
    try:
        document = BaselineDocument.model_validate(data)
    except ValidationError as error:
        raise BaselineError(f"baseline {path}: {describe_invalid(error)}; {fix}") from None
    return BaselineStore(path, document.hardware_fingerprint, dict(document.cases))


def find_for_hardware(directory: Path, fingerprint: str) -> tuple[BaselineStore | None, list[str]]:
    """This hardware's baseline (None if there is none yet) and notes on files for other hardware."""
    notes = []
    own = baseline_path(directory, fingerprint)
    for other in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        if other != own:
            notes.append(f"{other} is for other hardware, not compared (this machine is {fingerprint!r})")
    if not own.exists():
        return None, notes
    store = load(own)
    if store.hardware_fingerprint != fingerprint:
        raise BaselineError(
            f"baseline {own} says it is for {store.hardware_fingerprint!r} but this machine is {fingerprint!r}: "
            "rename or delete the file; it is not compared"
        )
    return store, notes


def run_entry(record: CaseRecord, facts: MachineFacts, commit: str | None, date: str) -> BaselineRun:
    """A measured case as a baseline run: the gated metrics' samples, the memory peaks, what measured them."""
    known = facts.model_dump()
    return BaselineRun(
        date=date,
        commit=commit,
        environment={k: known[k] for k in ENVIRONMENT_KEYS if known.get(k) is not None},
        rounds=record.rounds,
        samples={m: list(record.samples[m]) for m in baseline_metric_names() if m in record.samples},
        memory_bytes=dict(record.memory_bytes),
        run_id=facts.run_id or None,
        accepted=facts.accepted or None,
    )


@dataclass
class MergeCount:
    added: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)


def merge(
    store: BaselineStore,
    results: Iterable[CaseRecord],
    facts: MachineFacts,
    commit: str | None = None,
    keep: int = MAX_RUNS_PER_CASE,
    restart: bool = False,
) -> MergeCount:
    """Add each result as the newest run of its case, keeping the last ``keep`` (with ``restart``, dropping the
    older ones); a run the case already holds (same run id, or same samples) is not added again."""
    # When the run was measured (its sessions decide which runs show the noise), else when it was merged.
    date = facts.run_started or datetime.now(timezone.utc).isoformat(timespec="seconds")
    count = MergeCount()
    for record in results:
        entry = store.cases.get(record.case_id) or BaselineCase(case=dict(record.case), runs=[])
        new = run_entry(record, facts, commit, date)
        if any(kept.same_as(new) for kept in entry.runs):
            count.already_there.append(record.case_id)
            continue
        runs = [new] if restart else [*entry.runs, new][-keep:]
        store.cases[record.case_id] = entry.model_copy(update={"runs": runs})
        count.added.append(record.case_id)
    store.cases = dict(sorted(store.cases.items()))
    return count


def save_atomic(store: BaselineStore) -> None:
    """Write to a temporary file beside the target, fsync, then rename: a crash never leaves half a file."""
    write_document(store.path, BASELINE, store.document(), indent=2, sort_keys=True)


def measurement_from_record(record: CaseRecord, started: str = "") -> CaseMeasurement:
    """A case of a run measured at ``started`` (ISO 8601), as the gate reads it."""
    return CaseMeasurement(record.case_id, record.samples, record.memory_bytes, record.host_load.busy, started)


class SavedBenchmark(Model):
    name: str = ""
    fullname: str = ""  # pytest's node id
    extra_info: dict[str, JsonValue] = Field(default_factory=dict)  # our case record, where ``case_id`` is in it

    @property
    def key(self) -> str:
        """The case id of a paddle-llm-bench benchmark, else its pytest node id."""
        case_id = self.extra_info.get("case_id")
        return str(case_id) if case_id is not None else self.fullname or self.name


class SavedMachineInfo(Model):
    paddle_llm_bench: MachineFacts = MachineFacts()  # the machine facts this suite adds


class SavedRun(Model):
    """The parts of a pytest-benchmark saved run (``.benchmarks/.../NNNN_*.json``) that this suite reads."""

    benchmarks: list[SavedBenchmark]
    machine_info: SavedMachineInfo = SavedMachineInfo()
    commit_info: dict[str, JsonValue] | None = None
    datetime: str | None = None
    paddle_llm_bench_gate: list[JsonValue] | None = None  # the end-of-run gate's findings

    @property
    def facts(self) -> MachineFacts:
        return self.machine_info.paddle_llm_bench

    def document(self) -> Document:
        """The file as read, with what was changed: nothing it did not hold is added."""
        return self.model_dump(mode="json", exclude_unset=True)


SAVED_RUN_FIX = "name an unmodified saved run (.benchmarks/.../NNNN_*.json or a --benchmark-json file) or measure again"


def read_saved_run(path: Path) -> SavedRun:
    """A pytest-benchmark saved run, its fields checked; a ``BaselineError`` names the file, the field and the fix."""
    data = read_json(path, "saved run", "name a saved run (.benchmarks/.../NNNN_*.json or a --benchmark-json file)")
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise BaselineError(f"{path} is not a pytest-benchmark saved run (no 'benchmarks' list)")
    try:
        return SavedRun.model_validate(data)
    except ValidationError as error:
        raise BaselineError(f"saved run {path}: {describe_invalid(error)}; {SAVED_RUN_FIX}") from None


def load_saved_run(path: Path) -> tuple[str | None, dict[str, CaseRecord], MachineFacts]:
    """A pytest-benchmark saved run: (hardware fingerprint, records by case id, machine facts).

    Validated: a bad field is a ``BaselineError`` naming the file, the field and the fix."""
    saved = read_saved_run(path)
    fix = SAVED_RUN_FIX
    by_case = {}
    for index, bench in enumerate(saved.benchmarks):
        if "case_id" in bench.extra_info:
            try:
                record = CaseRecord.read(bench.extra_info, f"benchmarks[{index}].extra_info")
            except RecordError as error:
                raise BaselineError(f"saved run {path}, case {bench.extra_info['case_id']}: {error}; {fix}") from None
            by_case[record.case_id] = record
    facts = saved.machine_info.paddle_llm_bench
    if not facts.model_fields_set and not facts.model_extra:  # not measured by this suite: nothing to complete
        return None, by_case, facts
    update: dict[str, object] = {}
    commit = (saved.commit_info or {}).get("id")
    if commit:
        update["commit"] = str(commit)  # pytest-benchmark's record of the checkout measured
    if not facts.run_started and saved.datetime:
        update["run_started"] = _utc(saved.datetime)  # saved before runs recorded their start
    if not facts.run_id:
        update["run_id"] = f"saved:{saved.datetime or path.name}"  # saved before run ids: its date stands in
    return facts.hardware_fingerprint or None, by_case, facts.model_copy(update=update)


def _utc(text: str) -> str:
    """pytest-benchmark's ``datetime`` (UTC, naive ISO) as an aware ISO 8601 time; "" if unreadable."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return ""
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).isoformat(timespec="seconds")
