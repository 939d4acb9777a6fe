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
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from paddle_llm_bench.core.gate import CaseMeasurement
from paddle_llm_bench.core.metrics import baseline_metric_names
from paddle_llm_bench.core.record import RecordError, upgrade_record
from paddle_llm_bench.core.versioned import Format, FormatError, NewerFormatError
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Any real sample (tokens/s, milliseconds) lies far inside these; beyond them sums overflow or print as noise.
SAMPLE_MIN, SAMPLE_MAX = 1e-9, 1e12


def check_samples(samples: Any, where: str) -> str | None:
    """What is wrong with a ``samples`` mapping (metric -> list of finite positive numbers), or None."""
    if not isinstance(samples, dict):
        return f"{where} is {type(samples).__name__}, not a mapping of metric to per-round samples"
    for metric, values in samples.items():
        if not isinstance(values, list) or not values:
            return f"{where}.{metric} is {values!r}, not a non-empty list of per-round samples"
        for index, value in enumerate(values):
            if not _is_number(value) or not math.isfinite(value) or not SAMPLE_MIN <= value <= SAMPLE_MAX:
                return (
                    f"{where}.{metric}[{index}] is {value!r}: every sample must be a number from {SAMPLE_MIN:g} to "
                    f"{SAMPLE_MAX:g} (tokens/s or milliseconds)"
                )
    return None


def check_memory(memory: Any, where: str) -> str | None:
    """What is wrong with a ``memory_bytes`` mapping (metric -> finite number >= 0), or None."""
    if not isinstance(memory, dict):
        return f"{where} is {type(memory).__name__}, not a mapping of memory metric to bytes"
    for metric, value in memory.items():
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            return f"{where}.{metric} is {value!r}: memory must be a finite number of bytes, at least 0"
    return None


def _check_store(data: dict[str, Any]) -> str | None:
    """What is wrong with a format-2 baseline (after upgrades), naming the field, or None."""
    cases = data.get("cases")
    if not isinstance(cases, dict):
        return f"field cases is {cases!r}, not a mapping of case id to runs"
    fingerprint = data.get("hardware_fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        return f"field hardware_fingerprint is {fingerprint!r}, not the name of the hardware"
    for case_id, entry in cases.items():
        where = f"cases[{case_id!r}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("runs"), list):
            return f"field {where}.runs is missing or not a list of runs"
        if not isinstance(entry.get("case", {}), dict):
            return f"field {where}.case is {entry['case']!r}, not a mapping of case parameters"
        for index, run in enumerate(entry["runs"]):
            problem = _check_run(run, f"{where}.runs[{index}]")
            if problem:
                return problem
    return None


def _check_run(run: Any, where: str) -> str | None:
    if not isinstance(run, dict):
        return f"field {where} is {type(run).__name__}, not a run"
    if not run.get("samples") and not run.get("memory_bytes"):
        return f"field {where} holds neither samples nor memory_bytes: nothing to compare with"
    problem = check_samples(run.get("samples", {}), f"{where}.samples") or check_memory(
        run.get("memory_bytes", {}), f"{where}.memory_bytes"
    )
    return f"field {problem}" if problem else None


@dataclass
class BaselineStore:
    path: Path
    hardware_fingerprint: str
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)

    def measurements(self) -> dict[str, list[CaseMeasurement]]:
        return {
            case_id: [
                CaseMeasurement(
                    case_id, run.get("samples", {}), run.get("memory_bytes", {}), started=str(run.get("date", ""))
                )
                for run in entry["runs"]
            ]
            for case_id, entry in self.cases.items()
        }

    def document(self) -> dict[str, Any]:
        return {"hardware_fingerprint": self.hardware_fingerprint, "cases": self.cases}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


def baseline_path(directory: Path, fingerprint: str) -> Path:
    return directory / f"{slug(fingerprint)}.json"


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
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
    problem = _check_store(data)
    if problem:
        raise BaselineError(f"baseline {path}: {problem}; {fix}")
    cases = {str(k): {"case": v.get("case", {}), "runs": list(v["runs"])} for k, v in data["cases"].items()}
    return BaselineStore(path, data["hardware_fingerprint"], cases)


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


def run_entry(
    extra_info: Mapping[str, Any], environment: Mapping[str, Any], commit: str | None, date: str
) -> dict[str, Any]:
    samples = extra_info.get("samples", {})
    entry = {
        "date": date,
        "commit": commit,
        "environment": {k: environment[k] for k in ENVIRONMENT_KEYS if k in environment},
        "rounds": extra_info.get("rounds"),
        "samples": {m: list(samples[m]) for m in baseline_metric_names() if m in samples},
        "memory_bytes": dict(extra_info.get("memory_bytes", {})),
    }
    if environment.get("run_id"):
        entry["run_id"] = str(environment["run_id"])
    if environment.get("accepted"):
        entry["accepted"] = str(environment["accepted"])  # why a slower or bigger run was accepted
    return entry


def same_run(kept: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Two baseline runs are one measurement if they carry the same run id or identical samples."""
    if kept.get("run_id") and kept.get("run_id") == new.get("run_id"):
        return True
    return bool(new["samples"]) and kept.get("samples") == new["samples"]


@dataclass
class MergeCount:
    added: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)


def merge(
    store: BaselineStore,
    results: Iterable[Mapping[str, Any]],
    environment: Mapping[str, Any],
    commit: str | None = None,
    keep: int = MAX_RUNS_PER_CASE,
    restart: bool = False,
) -> MergeCount:
    """Add each result (an ``extra_info`` dict) as the newest run of its case, keeping the last ``keep`` (with
    ``restart``, dropping the older ones); a run the case already holds (same run id, or same samples) is not
    added again."""
    # When the run was measured (its sessions decide which runs show the noise), else when it was merged.
    date = str(environment.get("run_started") or datetime.now(timezone.utc).isoformat(timespec="seconds"))
    count = MergeCount()
    for extra_info in results:
        case_id = str(extra_info["case_id"])
        entry = store.cases.setdefault(case_id, {"case": dict(extra_info.get("case", {})), "runs": []})
        new = run_entry(extra_info, environment, commit, date)
        if any(same_run(kept, new) for kept in entry["runs"]):
            count.already_there.append(case_id)
            continue
        entry["runs"] = [new] if restart else [*entry["runs"], new][-keep:]
        count.added.append(case_id)
    store.cases = dict(sorted(store.cases.items()))
    return count


def save_atomic(store: BaselineStore) -> None:
    """Write to a temporary file beside the target, fsync, then rename: a crash never leaves half a file."""
    write_document(store.path, BASELINE, store.document(), indent=2, sort_keys=True)


def measurement_from_extra_info(extra_info: Mapping[str, Any], started: str = "") -> CaseMeasurement:
    """A case of a run measured at ``started`` (ISO 8601), as the gate reads it."""
    return CaseMeasurement(
        str(extra_info["case_id"]),
        extra_info.get("samples", {}),
        extra_info.get("memory_bytes", {}),
        str(extra_info.get("host_load", {}).get("busy", "")),
        started,
    )


def load_saved_run(path: Path) -> tuple[str | None, dict[str, dict[str, Any]], dict[str, Any]]:
    """A pytest-benchmark saved run: (hardware fingerprint, extra_info by case id, machine facts).

    Validated: a bad field is a ``BaselineError`` naming the file, the field and the fix."""
    data = read_json(path, "saved run", "name a saved run (.benchmarks/.../NNNN_*.json or a --benchmark-json file)")
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise BaselineError(f"{path} is not a pytest-benchmark saved run (no 'benchmarks' list)")
    problem = _check_saved_run(data)
    if problem:
        raise BaselineError(
            f"saved run {path}: {problem}; name an unmodified saved run (.benchmarks/.../NNNN_*.json "
            "or a --benchmark-json file) or measure again"
        )
    facts = dict(data.get("machine_info", {}).get("paddle_llm_bench", {}))
    by_case = {}
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info", {})
        if "case_id" in extra:
            try:
                by_case[str(extra["case_id"])] = upgrade_record(extra)
            except RecordError as error:
                raise BaselineError(f"saved run {path}, case {extra['case_id']}: {error}") from None
    commit_info = data.get("commit_info")
    if facts and isinstance(commit_info, dict) and commit_info.get("id"):
        facts["commit"] = str(commit_info["id"])  # pytest-benchmark's record of the checkout measured
    if facts and not facts.get("run_started") and isinstance(data.get("datetime"), str):
        facts["run_started"] = _utc(data["datetime"])  # saved before runs recorded their start
    if facts and not facts.get("run_id"):
        # Saved before run ids existed: the saved run's own date stands in for one.
        facts["run_id"] = f"saved:{data.get('datetime', path.name)}"
    return facts.get("hardware_fingerprint"), by_case, facts


def _check_saved_run(data: dict[str, Any]) -> str | None:
    """What is wrong with a saved run's fields that this suite reads, naming the field, or None."""
    if not isinstance(data["benchmarks"], list):
        return f"field benchmarks is {data['benchmarks']!r}, not a list of benchmarks"
    machine_info = data.get("machine_info", {})
    if not isinstance(machine_info, dict) or not isinstance(machine_info.get("paddle_llm_bench", {}), dict):
        return "field machine_info.paddle_llm_bench is not a mapping of machine facts"
    for index, bench in enumerate(data["benchmarks"]):
        where = f"benchmarks[{index}]"
        if not isinstance(bench, dict) or not isinstance(bench.get("extra_info", {}), dict):
            return f"field {where} is not a benchmark with an extra_info mapping"
        extra = bench.get("extra_info", {})
        if "case_id" not in extra:
            continue
        problem = check_samples(extra.get("samples"), f"{where}.extra_info.samples") or check_memory(
            extra.get("memory_bytes", {}), f"{where}.extra_info.memory_bytes"
        )
        if problem:
            return f"field {problem}"
    return None


def _utc(text: str) -> str:
    """pytest-benchmark's ``datetime`` (UTC, naive ISO) as an aware ISO 8601 time; "" if unreadable."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return ""
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).isoformat(timespec="seconds")
