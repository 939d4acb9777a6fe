"""`paddle-llm-bench merge`: combine the saved runs of several shards into one saved run.

Each shard (``pytest benchmarks --llm-shard K/N --benchmark-json shard-K.json``) is an ordinary
pytest-benchmark saved run. The merged file is one too, so ``pytest-benchmark compare``, the gate
(``--llm-baseline-from``) and ``paddle-llm-bench compare`` read it like any other:

- ``benchmarks``: every shard's benchmarks, in the order the files are given; a case id (or, for a
  benchmark without one, its pytest node id) that appears twice is an error naming both files;
- ``machine_info``, ``commit_info``, ``datetime``, ``version``: the first file's; the shards must agree
  on ``machine_info.paddle_llm_bench.hardware_fingerprint`` and ``.paddle_version``, else the results
  are not comparable and merging is an error naming the values;
- ``machine_info.paddle_llm_bench.merged_from``: the shards' file names;
- ``paddle_llm_bench_gate``: the shards' gate findings, concatenated, where present;
- runs that record ``machine_info.paddle_llm_bench.runtime.shard`` ("K/N", set by ``--llm-shard``) must be
  shards 1..N of one split, each once: a missing or repeated shard is an error.

The output is written atomically (a temporary file in the same directory, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paddle_llm_bench.core.exit_status import ExitStatus
from paddle_llm_bench.results.files import write_atomic

# Facts the shards must share for their numbers to belong in one run.
MUST_AGREE = ("hardware_fingerprint", "paddle_version")


class MergeError(Exception):
    """Shards that cannot be merged; the message names the files and values."""


@dataclass
class MergeResult:
    run: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MergeError(f"cannot read saved run {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise MergeError(f"{path} is not a pytest-benchmark saved run (no 'benchmarks' list)")
    return data


def _facts(data: dict[str, Any]) -> dict[str, Any]:
    facts = data.get("machine_info", {}).get("paddle_llm_bench")
    return facts if isinstance(facts, dict) else {}


def benchmark_key(benchmark: dict[str, Any]) -> str:
    """The case id of a paddle-llm-bench benchmark, else its pytest node id."""
    case_id = benchmark.get("extra_info", {}).get("case_id")
    return str(case_id) if case_id is not None else str(benchmark.get("fullname", benchmark.get("name")))


def merge_runs(paths: Sequence[Path]) -> MergeResult:
    """One saved run holding every shard's benchmarks (see the module docstring)."""
    if not paths:
        raise MergeError("no saved runs given: name the shards' JSON files")
    runs = [(path, _load(path)) for path in paths]
    first_path, first = runs[0]
    first_facts = _facts(first)
    for key in MUST_AGREE:
        if key not in first_facts:
            raise MergeError(
                f"{first_path} has no machine_info.paddle_llm_bench.{key}: not a run of the paddle-llm-bench suite"
            )
    warnings: list[str] = []
    seen: dict[str, Path] = {}
    benchmarks: list[dict[str, Any]] = []
    gate_findings: list[Any] = []
    for path, data in runs:
        facts = _facts(data)
        for key in MUST_AGREE:
            if facts.get(key) != first_facts[key]:
                raise MergeError(
                    f"cannot merge runs of different {key}: {first_path} has {first_facts[key]!r} "
                    f"but {path} has {facts.get(key)!r}"
                )
        commit, first_commit = data.get("commit_info", {}).get("id"), first.get("commit_info", {}).get("id")
        if commit != first_commit:
            warnings.append(
                f"{path} was measured at commit {commit}, {first_path} at {first_commit}: keeping the first"
            )
        for benchmark in data["benchmarks"]:
            key = benchmark_key(benchmark)
            if key in seen:
                raise MergeError(f"case {key} is in both {seen[key]} and {path}: shards must not overlap")
            seen[key] = path
            benchmarks.append(benchmark)
        gate_findings.extend(data.get("paddle_llm_bench_gate", []))
    _check_shard_coverage(runs)
    merged = copy.deepcopy(first)
    merged["benchmarks"] = benchmarks
    merged["machine_info"]["paddle_llm_bench"]["merged_from"] = [path.name for path, _ in runs]
    merged["machine_info"]["paddle_llm_bench"].pop("shard", None)
    if gate_findings or any("paddle_llm_bench_gate" in data for _, data in runs):
        merged["paddle_llm_bench_gate"] = gate_findings
    return MergeResult(merged, warnings)


def _check_shard_coverage(runs: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """Runs that record ``machine_info.paddle_llm_bench.runtime.shard`` ("K/N") must be shards 1..N of one split."""
    shards = {path: _facts(data).get("shard") for path, data in runs}
    if not any(shards.values()):
        return
    parsed: dict[Path, tuple[int, int]] = {}
    for path, text in shards.items():
        k_text, _, n_text = str(text).partition("/")
        if not (k_text.isdigit() and n_text.isdigit()):
            raise MergeError(f"{path} records shard {text!r}: every merged run must be a shard K/N")
        parsed[path] = (int(k_text), int(n_text))
    counts = {n for _, n in parsed.values()}
    if len(counts) > 1:
        listed = ", ".join(f"{path} is {k}/{n}" for path, (k, n) in parsed.items())
        raise MergeError(f"shards of different splits cannot be merged: {listed}")
    (count,) = counts
    by_number: dict[int, Path] = {}
    for path, (k, _) in parsed.items():
        if k in by_number:
            raise MergeError(f"shard {k}/{count} is both {by_number[k]} and {path}")
        by_number[k] = path
    missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in by_number]
    if missing:
        raise MergeError(f"shard(s) {', '.join(missing)} missing: the merged run would lack their cases")


def write_json_atomically(data: dict[str, Any], target: Path) -> None:
    write_atomic(target, json.dumps(data, indent=4) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, metavar="SHARD.json", help="saved runs of the shards")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="MERGED.json", help="where to write the merged run"
    )


def main(args: argparse.Namespace) -> int:
    try:
        overwritten = [path for path in args.runs if path.resolve() == args.output.resolve()]
        if overwritten:
            raise MergeError(
                f"-o {args.output} is also one of the inputs: writing it would replace a shard's only copy; "
                "name a new file"
            )
        result = merge_runs(args.runs)
        write_json_atomically(result.run, args.output)
    except MergeError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitStatus.USAGE_ERROR
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitStatus.FAILED
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    count = len(result.run["benchmarks"])
    print(f"merged {len(args.runs)} run(s), {count} benchmark(s), into {args.output}")
    return 0
