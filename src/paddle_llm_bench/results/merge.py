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
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from paddle_llm_bench.core.exit_status import ExitStatus
from paddle_llm_bench.core.record import MachineFacts
from paddle_llm_bench.core.versioned import Document
from paddle_llm_bench.results.baselines import BaselineError, SavedBenchmark, SavedRun, read_saved_run
from paddle_llm_bench.results.files import write_atomic

# Facts the shards must share for their numbers to belong in one run.
MUST_AGREE = ("hardware_fingerprint", "paddle_version")


class MergeError(Exception):
    """Shards that cannot be merged; the message names the files and values."""


@dataclass
class MergeResult:
    run: SavedRun
    warnings: list[str] = field(default_factory=list)


def _load(path: Path) -> SavedRun:
    try:
        return read_saved_run(path)
    except BaselineError as error:
        raise MergeError(str(error)) from None


def merge_runs(paths: Sequence[Path]) -> MergeResult:
    """One saved run holding every shard's benchmarks (see the module docstring)."""
    if not paths:
        raise MergeError("no saved runs given: name the shards' JSON files")
    runs = [(path, _load(path)) for path in paths]
    first_path, first = runs[0]
    agreed = {key: getattr(first.facts, key) for key in MUST_AGREE}
    for key, value in agreed.items():
        if value is None:
            raise MergeError(
                f"{first_path} has no machine_info.paddle_llm_bench.{key}: not a run of the paddle-llm-bench suite"
            )
    warnings: list[str] = []
    seen: dict[str, Path] = {}
    benchmarks: list[SavedBenchmark] = []
    for path, run in runs:
        for key, value in agreed.items():
            if getattr(run.facts, key) != value:
                raise MergeError(
                    f"cannot merge runs of different {key}: {first_path} has {value!r} "
                    f"but {path} has {getattr(run.facts, key)!r}"
                )
        commit, first_commit = (run.commit_info or {}).get("id"), (first.commit_info or {}).get("id")
        if commit != first_commit:
            warnings.append(
                f"{path} was measured at commit {commit}, {first_path} at {first_commit}: keeping the first"
            )
        for benchmark in run.benchmarks:
            if benchmark.key in seen:
                raise MergeError(
                    f"case {benchmark.key} is in both {seen[benchmark.key]} and {path}: shards must not overlap"
                )
            seen[benchmark.key] = path
            benchmarks.append(benchmark)
    _check_shard_coverage(runs)
    facts = first.facts.model_dump(exclude_unset=True)
    facts.pop("shard", None)
    machine_info = first.machine_info.model_copy(
        update={"paddle_llm_bench": MachineFacts.model_validate({**facts, "merged_from": [p.name for p, _ in runs]})}
    )
    update: dict[str, object] = {"benchmarks": benchmarks, "machine_info": machine_info}
    findings = [run.paddle_llm_bench_gate for _, run in runs if run.paddle_llm_bench_gate is not None]
    if findings:
        update["paddle_llm_bench_gate"] = [finding for found in findings for finding in found]
    return MergeResult(first.model_copy(update=update), warnings)


def _check_shard_coverage(runs: Sequence[tuple[Path, SavedRun]]) -> None:
    """Runs that record ``machine_info.paddle_llm_bench.runtime.shard`` ("K/N") must be shards 1..N of one split."""
    shards = {path: run.facts.shard for path, run in runs}
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


def write_json_atomically(data: Document, target: Path) -> None:
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
        write_json_atomically(result.run.document(), args.output)
    except MergeError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitStatus.USAGE_ERROR
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitStatus.FAILED
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    count = len(result.run.benchmarks)
    print(f"merged {len(args.runs)} run(s), {count} benchmark(s), into {args.output}")
    return 0
