"""`paddle-llm-bench merge`: real shard runs in, one saved run out that pytest-benchmark and the gate read."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench import cli
from paddle_llm_bench.core.config import Sweep
from paddle_llm_bench.results.baselines import load_saved_run
from paddle_llm_bench.results.merge import MergeError, merge_runs, write_json_atomically

REPO = Path(__file__).resolve().parents[1]
# Two shards emulated by splitting the decoding dimension (what --llm-shard K/N does by cost).
SHARD_DECODINGS = ("greedy", "sampling")


def shard_command(decoding: str, output: Path, cache_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider", "--llm-no-gate",
        "--llm-model", "tiny", "--llm-dtype", "float32", "--llm-decoding", decoding,
        "--llm-max-new-tokens", "8", "--llm-batch-size", "1", "--llm-prompt-tokens", "8,16",
        "--llm-rounds", "5", "--llm-warmup-rounds", "1", "--llm-cache-dir", str(cache_dir),
        "--benchmark-json", str(output),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def shard_runs(tmp_path_factory: pytest.TempPathFactory, llm_cache_dir: Path) -> list[Path]:
    """Two real shard runs, side by side as on two runners (a concurrent checkpoint build is safe)."""
    directory = tmp_path_factory.mktemp("shards")
    paths = [directory / f"shard-{k}-of-2.json" for k in (1, 2)]
    processes = [
        subprocess.Popen(
            shard_command(decoding, path, llm_cache_dir),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for decoding, path in zip(SHARD_DECODINGS, paths, strict=True)
    ]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-5000:]
    return paths


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def extra_by_case(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["extra_info"]["case_id"]: b["extra_info"] for b in run["benchmarks"]}


@pytest.mark.e2e
def test_merge_of_real_shards_keeps_every_case_and_its_extra_info(shard_runs: list[Path], tmp_path: Path) -> None:
    merged_path = tmp_path / "merged.json"
    assert cli.main(["merge", *map(str, shard_runs), "-o", str(merged_path)]) == 0
    merged, shards = read(merged_path), [read(p) for p in shard_runs]

    expected: dict[str, dict[str, Any]] = {}
    for shard in shards:
        expected.update(extra_by_case(shard))
    whole_sweep = Sweep(("tiny",), ("float32",), SHARD_DECODINGS, (8,), (1,), (8, 16)).cases()
    assert set(expected) == {case.id for case in whole_sweep}  # the shards cover the whole sweep, once
    assert extra_by_case(merged) == expected
    assert {b["extra_info"]["case"]["decoding"] for b in merged["benchmarks"]} == set(SHARD_DECODINGS)
    # machine_info, commit_info and datetime are the first shard's, plus where the run came from
    facts = merged["machine_info"]["paddle_llm_bench"]
    assert facts["merged_from"] == [p.name for p in shard_runs]
    assert {k: v for k, v in facts.items() if k != "merged_from"} == shards[0]["machine_info"]["paddle_llm_bench"]
    assert merged["commit_info"] == shards[0]["commit_info"] and merged["datetime"] == shards[0]["datetime"]
    # the gate reads it like any saved run
    fingerprint, by_case, _ = load_saved_run(merged_path)
    assert fingerprint == facts["hardware_fingerprint"] and set(by_case) == set(expected)


def test_pytest_benchmark_compare_reads_the_merged_run(shard_runs: list[Path], tmp_path: Path) -> None:
    merged_path = tmp_path / "merged.json"
    write_json_atomically(merge_runs(shard_runs).run.document(), merged_path)
    compare = Path(sys.executable).with_name("pytest-benchmark")
    done = subprocess.run(
        [str(compare), "compare", str(merged_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tiny-float32-greedy-new8-bs1-prompt8" in done.stdout
    assert "tiny-float32-sampling-new8-bs1-prompt16" in done.stdout


def test_a_case_in_two_shards_is_an_error_naming_both_files(shard_runs: list[Path], tmp_path: Path) -> None:
    copy_path = tmp_path / "again.json"
    copy_path.write_text(shard_runs[0].read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(MergeError, match=rf"case tiny-float32-greedy-\S+ is in both {shard_runs[0]} and {copy_path}"):
        merge_runs([shard_runs[0], copy_path])


@pytest.mark.parametrize(
    ("key", "others"),
    [
        ("hardware_fingerprint", ("gpu:NVIDIA H200", "gpu:NVIDIA H100 80GB HBM3")),
        ("paddle_version", ("3.0.0", "3.3.1")),
    ],
)
def test_shards_must_agree_on_hardware_and_paddle(
    shard_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, others: tuple[str, str]
) -> None:
    run = read(shard_runs[1])
    original = run["machine_info"]["paddle_llm_bench"][key]
    # Another value than this machine's (an H200 runner's fingerprint is the first; Paddle may be 3.0.0)
    other = next(value for value in others if value != original)
    run["machine_info"]["paddle_llm_bench"][key] = other
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(run), encoding="utf-8")
    output = tmp_path / "merged.json"
    assert cli.main(["merge", str(shard_runs[0]), str(odd), "-o", str(output)]) == 4  # bad input
    error = capsys.readouterr().err
    assert f"different {key}" in error and repr(original) in error and repr(other) in error and str(odd) in error
    assert not output.exists()


def test_unreadable_and_foreign_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(MergeError, match=f"cannot read saved run {missing}"):
        merge_runs([missing])
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(MergeError, match=f"{foreign} is not a pytest-benchmark saved run"):
        merge_runs([foreign])
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"benchmarks": [], "machine_info": {}}), encoding="utf-8")
    with pytest.raises(MergeError, match="not a run of the paddle-llm-bench suite"):
        merge_runs([plain])
    with pytest.raises(MergeError, match="no saved runs given"):
        merge_runs([])


def test_gate_findings_are_concatenated_and_a_commit_mismatch_warned(shard_runs: list[Path], tmp_path: Path) -> None:
    runs = [copy.deepcopy(read(p)) for p in shard_runs]
    for k, run in enumerate(runs):
        run["paddle_llm_bench_gate"] = [{"case_id": f"finding-{k}"}]
    runs[1]["commit_info"]["id"] = "0" * 40
    paths = []
    for k, run in enumerate(runs):
        paths.append(tmp_path / f"s{k}.json")
        paths[-1].write_text(json.dumps(run), encoding="utf-8")
    result = merge_runs(paths)
    assert result.run.document()["paddle_llm_bench_gate"] == [{"case_id": "finding-0"}, {"case_id": "finding-1"}]
    assert len(result.warnings) == 1 and "0" * 40 in result.warnings[0]


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "merged.json"
    write_json_atomically({"benchmarks": []}, target)
    write_json_atomically({"benchmarks": [1]}, target)
    assert read(target) == {"benchmarks": [1]}
    assert [p.name for p in target.parent.iterdir()] == ["merged.json"]


def write_with_shard(source: Path, target: Path, shard: str) -> Path:
    run = read(source)
    run["machine_info"]["paddle_llm_bench"]["shard"] = shard
    target.write_text(json.dumps(run), encoding="utf-8")
    return target


def test_recorded_shards_must_cover_one_split(shard_runs: list[Path], tmp_path: Path) -> None:
    one = write_with_shard(shard_runs[0], tmp_path / "one.json", "1/2")
    two = write_with_shard(shard_runs[1], tmp_path / "two.json", "2/2")
    merged = merge_runs([one, two]).run.document()
    assert "shard" not in merged["machine_info"]["paddle_llm_bench"]
    first_of_three = write_with_shard(shard_runs[0], tmp_path / "a.json", "1/3")
    third_of_three = write_with_shard(shard_runs[1], tmp_path / "c.json", "3/3")
    with pytest.raises(MergeError, match=r"shard\(s\) 2/3 missing"):
        merge_runs([first_of_three, third_of_three])
    with pytest.raises(MergeError, match="shards of different splits"):
        merge_runs([first_of_three, two])
    with pytest.raises(MergeError, match=r"shard 2/2 is both"):
        merge_runs([two, write_with_shard(shard_runs[0], tmp_path / "again.json", "2/2")])


def test_the_output_may_not_be_one_of_the_inputs(shard_runs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    before = shard_runs[0].read_bytes()
    assert cli.main(["merge", *map(str, shard_runs), "-o", str(shard_runs[0])]) == 4  # bad input
    assert "is also one of the inputs" in capsys.readouterr().err
    assert shard_runs[0].read_bytes() == before
