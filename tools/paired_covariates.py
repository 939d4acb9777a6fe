"""Experiment: can a covariate timed next to each turn make paired comparisons quieter? (issue #18)

Runs the paired design by hand (blocks of two fresh worker processes of this Python, single-round turns of the
tiny greedy case in random order) and records next to every turn what the code under test cannot move:

- ``cal_before`` / ``cal_after``: a fixed pure-Python loop (~3 ms, one core) timed just before and after the turn;
- ``blas_before`` / ``blas_after``: a fixed numpy matrix product (~1 ms, on every core) timed the same way;
- ``cpu_share``: the process's CPU time over the turn's wall time (on-CPU share);
- ``wait_share``: the time the worker's threads waited for a core (``/proc/self/task/*/schedstat``);
- ``steal``: the machine's steal share over the turn (``/proc/stat``).

Then it regresses each pair's log time ratio on each covariate's log ratio (the slope within blocks) and prints
the correlation, the pair and block spread before and after the adjustment, and the mean per side (an A/A lean).

    .venv/bin/python tools/paired_covariates.py --blocks 8 --pairs 20 --out covariates.jsonl
    .venv/bin/python tools/paired_covariates.py --blocks 8 --pairs 20 --noisy-neighbour --out noisy.jsonl

``--noisy-neighbour`` adds a process that burns one core in on/off regimes of 0.3-3 s. docs/verdicts.md
quotes what it showed. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.metrics import RoundTimes, round_metrics
from paddle_llm_bench.paired.protocol import decode, encode, failure
from paddle_llm_bench.paired.stats import hodges_lehmann
from paddle_llm_bench.paired.worker import Worker
from paddle_llm_bench.runtime.models import default_cache_dir

CASE = Case("tiny", "float32", "greedy", 32, batch_size=1, prompt_tokens=32)


def python_loop_ns(iterations: int = 60_000) -> int:
    started = time.perf_counter_ns()
    total = 0
    for value in range(iterations):
        total += value
    return time.perf_counter_ns() - started


@functools.cache
def square_matrix() -> Any:
    import numpy

    return numpy.random.default_rng(0).standard_normal((192, 192), dtype=numpy.float32)


def matmul_ns(repeats: int = 8) -> int:
    """A fixed matrix product on every core numpy's BLAS uses (Paddle's kernels use every core too)."""
    matrix = square_matrix()
    started = time.perf_counter_ns()
    for _ in range(repeats):
        matrix @ matrix
    return time.perf_counter_ns() - started


def steal_and_total_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return values[7], sum(values)


def threads_waited_ns() -> int:
    waited = 0
    for thread in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError, IndexError):  # a thread that ended meanwhile
            waited += int(Path(f"/proc/self/task/{thread}/schedstat").read_text().split()[1])
    return waited


class CovariateWorker(Worker):
    """The paired worker, with the covariates timed around each turn."""

    def turn(self, request: dict[str, Any]) -> dict[str, Any]:
        runner = self.runners[0]
        cal_before, blas_before = python_loop_ns(), matmul_ns()
        steal0, total0 = steal_and_total_jiffies()
        waited0, cpu0, wall0 = threads_waited_ns(), time.process_time_ns(), time.perf_counter_ns()
        times = runner.generate_once()
        wall1, cpu1, waited1 = time.perf_counter_ns(), time.process_time_ns(), threads_waited_ns()
        steal1, total1 = steal_and_total_jiffies()
        wall = wall1 - wall0
        covariates = {
            "cal_before": cal_before,
            "cal_after": python_loop_ns(),
            "blas_before": blas_before,
            "blas_after": matmul_ns(),
            "cpu_share": (cpu1 - cpu0) / wall,
            "wait_share": (waited1 - waited0) / wall,
            "steal": (steal1 - steal0) / max(1, total1 - total0),
        }
        return {"round": dataclasses.asdict(times), "covariates": covariates}


def serve() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    os.environ.setdefault("GLOG_minloglevel", "2")
    warnings.filterwarnings("ignore")
    worker = CovariateWorker()
    for line in sys.stdin:
        try:
            request = decode(line)
            reply = worker.handle(request)
        except Exception as error:  # noqa: BLE001 - answered, the coordinator stops
            request, reply = {}, failure(error)
        replies.write(encode(reply))
        replies.flush()
        if request.get("op") == "quit":
            return


def ask(process: subprocess.Popen[bytes], message: dict[str, Any]) -> dict[str, Any]:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(encode(message))
    process.stdin.flush()
    reply = decode(process.stdout.readline())
    if not reply.get("ok"):
        raise SystemExit(f"worker failed: {reply}")
    return reply


def measure(blocks: int, pairs: int, out: Path, seed: int) -> None:
    rng = random.Random(seed)
    with out.open("a") as records:
        for block in range(blocks):
            workers = [
                subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                for _ in range(2)
            ]
            prepare = {"op": "prepare", "case": CASE.as_dict(), "device": "cpu", "cache_dir": str(default_cache_dir())}
            for side in rng.sample(range(2), 2):  # who imports Paddle first varies (it leans a side by ~1 %)
                ask(workers[side], {"op": "hello"})
                ask(workers[side], prepare)
            for _ in range(pairs):
                sides: list[dict[str, float]] = [{}, {}]
                for side in rng.sample(range(2), 2):
                    reply = ask(workers[side], {"op": "turn"})
                    times = RoundTimes(**{**reply["round"], "step_ns": tuple(reply["round"]["step_ns"])})
                    metrics = round_metrics(times, CASE.batch_size, CASE.prompt_tokens)
                    sides[side] = {"decode_s": 1.0 / metrics["decode_tokens_per_s"], **reply["covariates"]}
                records.write(json.dumps({"block": block, "sides": sides}) + "\n")
            for worker in workers:
                ask(worker, {"op": "quit"})
                worker.wait()
            print(f"block {block + 1}/{blocks} measured", file=sys.stderr, flush=True)


def log_ratio(record: dict[str, Any], key: str) -> float:
    reference, candidate = record["sides"]
    timed = key.startswith(("cal", "blas"))
    return math.log(candidate[key] / reference[key]) if timed else candidate[key] - reference[key]


def analyse(out: Path) -> None:
    records = [json.loads(line) for line in out.read_text().splitlines()]
    blocks = sorted({record["block"] for record in records})
    y = [math.log(r["sides"][1]["decode_s"] / r["sides"][0]["decode_s"]) for r in records]
    print(f"{len(records)} pairs in {len(blocks)} blocks; decode time log ratio: pair sd {statistics.stdev(y):.4f}")
    for name in ("cal_before", "cal_after", "blas_before", "blas_after", "cpu_share", "wait_share", "steal"):
        x = [log_ratio(r, name) for r in records]
        theta = within_block_slope(records, x, y)
        adjusted = [yi - theta * xi for xi, yi in zip(x, y, strict=True)]
        before = block_estimates(records, blocks, y)
        after = block_estimates(records, blocks, adjusted)
        print(
            f"  {name:10s} corr {statistics.correlation(x, y):+.3f}  pair sd {statistics.stdev(adjusted):.4f}  "
            f"block sd {statistics.stdev(before):.4f} -> {statistics.stdev(after):.4f}  "
            f"mean {statistics.fmean(before):+.4f} -> {statistics.fmean(after):+.4f}"
        )


def within_block_slope(records: list[dict[str, Any]], x: list[float], y: list[float]) -> float:
    covariance = variance = 0.0
    for block in {record["block"] for record in records}:
        members = [i for i, record in enumerate(records) if record["block"] == block]
        x_mean, y_mean = statistics.fmean(x[i] for i in members), statistics.fmean(y[i] for i in members)
        covariance += sum((x[i] - x_mean) * (y[i] - y_mean) for i in members)
        variance += sum((x[i] - x_mean) ** 2 for i in members)
    return covariance / variance if variance else 0.0


def block_estimates(records: list[dict[str, Any]], blocks: list[int], values: list[float]) -> list[float]:
    return [hodges_lehmann([v for v, r in zip(values, records, strict=True) if r["block"] == b]) for b in blocks]


def noisy_neighbour(seed: int) -> None:
    rng = random.Random(seed)
    while True:
        deadline = time.perf_counter() + rng.uniform(0.3, 3.0)
        while time.perf_counter() < deadline:
            pass
        time.sleep(rng.uniform(0.3, 3.0))


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    if sys.argv[1:] == ["--neighbour"]:
        noisy_neighbour(1)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--noisy-neighbour", action="store_true", help="burn one core in regimes of 0.3-3 s")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, appended (a second run adds blocks)")
    args = parser.parse_args()
    neighbour = subprocess.Popen([sys.executable, __file__, "--neighbour"]) if args.noisy_neighbour else None
    try:
        measure(args.blocks, args.pairs, args.out, args.seed)
    finally:
        if neighbour is not None:
            neighbour.kill()
    analyse(args.out)


if __name__ == "__main__":
    main()
