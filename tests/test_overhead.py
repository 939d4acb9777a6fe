"""`paddle-llm-bench overhead` and the bare runner of the paired worker, on the real tiny model.

The bare runner is exercised through a real worker process (the protocol, the model, exact counts);
the command end to end with the smallest settings that still make two blocks of fresh processes.
Nothing here asserts a ratio: on a shared 2-core machine a handful of pairs cannot resolve 1 %.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from paddle_llm_bench.cli import ArgumentParser
from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.metrics import round_metrics
from paddle_llm_bench.envs.overhead import add_arguments, sides_for, summary
from paddle_llm_bench.paired import engine, processes
from paddle_llm_bench.paired.processes import WorkerProcess
from paddle_llm_bench.paired.protocol import (
    Hello,
    HelloReply,
    Memory,
    MemoryReply,
    Prepare,
    PrepareReply,
    Turn,
    TurnReply,
)
from paddle_llm_bench.paired.results import load_paired_run
from paddle_llm_bench.paired.sides import Side, SideError
from paddle_llm_bench.paired.worker import RUNNERS, check_runner, serve

NEW_TOKENS = 8


def prepare_request(case: Case, cache_dir: Path, runner: str) -> Prepare:
    return Prepare(
        case=case, warmup_rounds=1, device="cpu", cache_dir=str(cache_dir), max_positions=4096, runner=runner
    )


@pytest.mark.e2e
def test_the_bare_runner_gives_exact_counts_and_valid_round_times_through_a_real_worker(llm_cache_dir: Path) -> None:
    worker = WorkerProcess(Side("bare", sys.executable, runner="bare"))
    try:
        worker.request(Hello(), HelloReply, processes.HELLO_TIMEOUT_S)
        for decoding in ("greedy", "beam4"):  # beam search has its own loop and its own call of the criteria
            case = Case("tiny", "float32", decoding, NEW_TOKENS, batch_size=2, prompt_tokens=8)
            worker.request(prepare_request(case, llm_cache_dir, "bare"), PrepareReply, engine.PREPARE_TIMEOUT_S)
            rounds = worker.request(Turn(rounds=2), TurnReply, engine.TURN_TIMEOUT_S).rounds  # stamps checked
            assert len(rounds) == 2
            for times in rounds:
                assert len(times.step_ns) == NEW_TOKENS
                assert times.start_ns < times.step_ns[0] <= times.step_ns[-1] <= times.end_ns
                # Nothing but the clock: no CPU-time, energy or clock-event reads in the bare loop.
                assert (times.decode_cpu_ns, times.energy_uj, times.clock_event_mask) == (None, None, None)
                metrics = round_metrics(times, case.batch_size, case.prompt_tokens)
                assert metrics["decode_tokens_per_s"] > 0 and metrics["ttft_ms"] > 0
            memory = worker.request(Memory(), MemoryReply, engine.TURN_TIMEOUT_S)
            assert memory.bytes["peak_allocated_bytes"] > 0
    finally:
        worker.close()


def test_an_unknown_runner_is_refused_naming_the_allowed_values(llm_cache_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown runner 'fast': allowed values are suite, bare"):
        check_runner("fast")
    assert RUNNERS == ("suite", "bare") and check_runner("bare") == "bare"
    # Through the protocol: answered as an error, before any model is loaded.
    case = Case("tiny", "float32", "greedy", NEW_TOKENS, batch_size=1, prompt_tokens=8)
    replies = io.BytesIO()
    serve(io.StringIO(prepare_request(case, llm_cache_dir, "fast").model_dump_json() + "\n"), replies)
    reply = json.loads(replies.getvalue())
    assert reply["ok"] is False and reply["kind"] == "ValueError"
    assert reply["error"] == "unknown runner 'fast': allowed values are suite, bare"


def test_the_command_refuses_an_unknown_runner(capsys: pytest.CaptureFixture[str]) -> None:
    parser = ArgumentParser(prog="paddle-llm-bench overhead")  # exits 4 on bad input, as every command
    add_arguments(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--candidate-runner", "fast"])
    assert exit_info.value.code == 4
    assert "invalid choice: 'fast' (choose from 'suite', 'bare')" in capsys.readouterr().err
    defaults = parser.parse_args([])
    assert (defaults.reference_runner, defaults.candidate_runner) == ("bare", "suite")
    assert defaults.decoding == ("greedy", "sampling", "beam4")


def test_sides_are_bare_against_suite_by_default_and_name_an_a_a_run() -> None:
    reference, candidate = sides_for("bare", "suite")
    assert (reference.name, reference.runner, candidate.name, candidate.runner) == ("bare", "bare", "suite", "suite")
    assert all(side.python == sys.executable for side in (reference, candidate))
    assert [side.name for side in sides_for("bare", "bare")] == ["bare", "bare (A/A)"]


@pytest.mark.e2e
@pytest.mark.parametrize("same_process", [False, True], ids=["process-per-side", "same-process"])
def test_overhead_runs_end_to_end_and_writes_its_outputs(
    tmp_path: Path, llm_cache_dir: Path, same_process: bool
) -> None:
    out_dir = tmp_path / "out"
    command = [sys.executable, "-m", "paddle_llm_bench.cli", "overhead", "--device", "cpu"]
    command += ["--pairs-per-block", "3", "--min-blocks", "2", "--max-blocks", "2", "--max-new-tokens", "8"]
    command += ["--prompt-tokens", "8", "--decoding", "greedy", "--cache-dir", str(llm_cache_dir)]
    command += ["--out-dir", str(out_dir)] + (["--same-process"] if same_process else [])
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    names = {"paired.json", "comparison.txt", "comparison.md", "comparison.csv", "comparison.json", "forest.png"}
    assert names | {"overhead.txt"} <= {path.name for path in out_dir.iterdir()}
    run = load_paired_run(out_dir / "paired.json")
    assert [side.name for side in run.sides] == ["bare", "suite"]
    (comparison,) = run.cases
    assert comparison.error is None and comparison.case.decoding == "greedy"
    assert len(comparison.blocks) == 2 and all(len(block.pairs) == 3 for block in comparison.blocks)
    # Fresh processes per block: one per side, or one both sides share.
    assert [len(set(block.pids)) for block in comparison.blocks] == [1 if same_process else 2] * 2
    assert len({pid for block in comparison.blocks for pid in block.pids}) == (2 if same_process else 4)
    assert run.settings.same_process is same_process
    absent = comparison.memory_absent(1, "peak_allocated_bytes")
    assert (absent == engine.SHARED_MEMORY_ABSENT) if same_process else comparison.memory(1, "peak_allocated_bytes")
    text = (out_dir / "overhead.txt").read_text()
    assert text == summary(run) and text in result.stdout
    blocks = "fresh worker processes, both sides in one" if same_process else "fresh processes"
    assert text.startswith(f"suite ÷ bare (95 % interval over blocks of {blocks};")
    case_id = comparison.case.id
    assert f"{case_id} decode tok/s: " in text and f"{case_id} e2e tok/s: " in text
    assert "goal" in text or "not resolved" in text


def test_sides_share_a_process_only_when_one_process_can_be_each_of_them() -> None:
    bare, suite = sides_for("bare", "suite")
    processes.check_same_process([bare, suite])  # one Python, no slowdown: allowed
    other = Side("other", "/opt/other/bin/python")
    with pytest.raises(SideError, match=r"different Pythons or environments"):
        processes.check_same_process([bare, other])
    with pytest.raises(SideError, match=r"different Pythons or environments"):
        processes.check_same_process([bare, Side("env", sys.executable, env={"OMP_NUM_THREADS": "1"})])
    with pytest.raises(SideError, match=r"injected slowdown needs a process of its own"):
        processes.check_same_process([bare, Side("slow", sys.executable, slowdown_fraction=0.1)])


@pytest.mark.e2e
def test_a_shared_worker_routes_each_sides_requests_to_its_runner_and_names_that_side_in_errors(
    llm_cache_dir: Path,
) -> None:
    """One process holds every side's runner: each side's turns must come from its own runner (known here:
    only the suite's reads the CPU time), and its errors must not be blamed on the side it started for."""
    sides = sides_for("bare", "suite")
    workers = processes.start_workers(sides, same_process=True)
    try:
        assert workers[0].process is workers[1].process
        with pytest.raises(processes.CaseError, match=r"^suite: .*no case prepared in slot 1"):
            workers[1].request(Turn(), TurnReply, 60.0)
        case = Case("tiny", "float32", "greedy", NEW_TOKENS, batch_size=1, prompt_tokens=8)
        for worker in workers:
            worker.request(prepare_request(case, llm_cache_dir, worker.side.runner), PrepareReply, 600.0)
        bare, suite = (worker.request(Turn(), TurnReply, engine.TURN_TIMEOUT_S).rounds[0] for worker in workers)
        assert bare.decode_cpu_ns is None and suite.decode_cpu_ns is not None
        workers[1].process.kill()
        with pytest.raises(processes.WorkerFailed, match=r"^suite \(.*\) worker \(pid \d+\) could not send 'turn'"):
            workers[1].request(Turn(), TurnReply, 60.0)
    finally:
        processes.close_all(workers)
