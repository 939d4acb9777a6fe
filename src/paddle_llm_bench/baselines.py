"""Versioned, human-diffable baseline files: read (upgrading old formats), merge, write atomically.

One file per hardware fingerprint in ``baselines/``. Layout (format 2)::

    {"format_version": 2, "hardware_fingerprint": "cpu:AMD EPYC:2cores",
     "cases": {"<case id>": {"case": {...parameters...},
                             "runs": [{"date": ..., "commit": ..., "environment": {...},
                                       "samples": {"decode_tokens_per_s": [...], "ttft_ms": [...], "tpot_ms": [...]},
                                       "memory_bytes": {...}}, ...]}}}

The last ``MAX_RUNS_PER_CASE`` accepted runs are kept per case, so the noise between runs is known.
A saved pytest-benchmark run (``.benchmarks/.../NNNN_*.json``) can stand in as a one-run baseline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .files import write_atomic
from .gate import CaseMeasurement

FORMAT_VERSION = 2
MAX_RUNS_PER_CASE = 5
BASELINE_SAMPLE_METRICS = ("decode_tokens_per_s", "ttft_ms", "tpot_ms")
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


@dataclass
class BaselineStore:
    path: Path
    hardware_fingerprint: str
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)

    def measurements(self) -> dict[str, list[CaseMeasurement]]:
        return {
            case_id: [
                CaseMeasurement(case_id, run.get("samples", {}), run.get("memory_bytes", {})) for run in entry["runs"]
            ]
            for case_id, entry in self.cases.items()
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "hardware_fingerprint": self.hardware_fingerprint,
            "cases": self.cases,
        }


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


def baseline_path(directory: Path, fingerprint: str) -> Path:
    return directory / f"{slug(fingerprint)}.json"


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 kept one run per case at ``cases[id]`` itself; format 2 keeps a list of runs."""
    cases = {}
    for case_id, entry in data.get("cases", {}).items():
        run = {k: v for k, v in entry.items() if k != "case"}
        cases[case_id] = {"case": entry.get("case", {}), "runs": [run]}
    return {**data, "format_version": 2, "cases": cases}


UPGRADES = {1: _upgrade_v1}


def load(path: Path) -> BaselineStore:
    """Read a baseline file, upgrading older formats in memory (the file changes only on the next update)."""
    fix = f"restore it (git checkout -- {path}) or delete it and record a new baseline with --llm-baseline-update"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BaselineError(f"baseline {path} is not valid JSON ({error}): {fix}") from None
    except OSError as error:
        raise BaselineError(f"cannot read baseline {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("format_version"), int):
        raise BaselineError(f"baseline {path} has no format_version: it is not a paddle-llm-bench baseline; {fix}")
    version = data["format_version"]
    if version > FORMAT_VERSION:
        raise BaselineError(
            f"baseline {path} has format {version}, newer than this paddle-llm-bench understands ({FORMAT_VERSION}): "
            "upgrade paddle-llm-bench; the file was left untouched"
        )
    while version < FORMAT_VERSION:
        data = UPGRADES[version](data)
        version = data["format_version"]
    try:
        cases = {str(k): {"case": v.get("case", {}), "runs": list(v["runs"])} for k, v in data["cases"].items()}
        return BaselineStore(path, str(data["hardware_fingerprint"]), cases)
    except (KeyError, TypeError, AttributeError) as error:
        raise BaselineError(f"baseline {path} is malformed (missing {error}): {fix}") from None


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
    return {
        "date": date,
        "commit": commit,
        "environment": {k: environment[k] for k in ENVIRONMENT_KEYS if k in environment},
        "rounds": extra_info.get("rounds"),
        "samples": {m: list(samples[m]) for m in BASELINE_SAMPLE_METRICS if m in samples},
        "memory_bytes": dict(extra_info.get("memory_bytes", {})),
    }


def merge(
    store: BaselineStore,
    results: Iterable[Mapping[str, Any]],
    environment: Mapping[str, Any],
    commit: str | None = None,
    keep: int = MAX_RUNS_PER_CASE,
) -> BaselineStore:
    """Add each result (an ``extra_info`` dict) as the newest run of its case, keeping the last ``keep``."""
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for extra_info in results:
        case_id = str(extra_info["case_id"])
        entry = store.cases.setdefault(case_id, {"case": dict(extra_info.get("case", {})), "runs": []})
        entry["runs"] = [*entry["runs"], run_entry(extra_info, environment, commit, date)][-keep:]
    store.cases = dict(sorted(store.cases.items()))
    return store


def save_atomic(store: BaselineStore) -> None:
    """Write to a temporary file beside the target, fsync, then rename: a crash never leaves half a file."""
    write_atomic(store.path, json.dumps(store.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def measurement_from_extra_info(extra_info: Mapping[str, Any]) -> CaseMeasurement:
    return CaseMeasurement(
        str(extra_info["case_id"]),
        extra_info.get("samples", {}),
        extra_info.get("memory_bytes", {}),
        str(extra_info.get("host_load", {}).get("busy", "")),
    )


def load_saved_run(path: Path) -> tuple[str | None, dict[str, dict[str, Any]], dict[str, Any]]:
    """A pytest-benchmark saved run: (hardware fingerprint, extra_info by case id, machine facts)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise BaselineError(f"cannot read saved run {path}: {error}") from None
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise BaselineError(f"{path} is not a pytest-benchmark saved run (no 'benchmarks' list)")
    facts = dict(data.get("machine_info", {}).get("paddle_llm_bench", {}))
    by_case = {}
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info", {})
        if "case_id" in extra:
            by_case[str(extra["case_id"])] = extra
    return facts.get("hardware_fingerprint"), by_case, facts
