"""The pytest plugin end to end: real pytest sessions (pytester, in subprocesses) running the shipped
benchmark file on the tiny preset, their output lines, the saved pytest-benchmark run, and bad input."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.utils import get_machine_id

from paddle_llm_bench.core.config import DECODINGS, DTYPES
from paddle_llm_bench.core.metrics import ENERGY, metric_names, round_metric_names

BENCHMARK_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "test_generation.py"
TIMEOUT_S = 300
ALLOWED_DTYPES = ", ".join(DTYPES)
ALLOWED_DECODINGS = ", ".join(DECODINGS)
# A short sweep of one case: the tiny preset, 4 tokens, no warm-up.
ONE_SHORT_CASE = (
    "--llm-dtype=float32",
    "--llm-decoding=greedy",
    "--llm-max-new-tokens=4",
    "--llm-batch-size=1",
    "--llm-prompt-tokens=4",
    "--llm-rounds=5",
    "--llm-warmup-rounds=0",
)


# In a pytester session's conftest: the CPU path with no readable RAPL counter, as in most VMs (on a
# bare-metal runner, a GPU runner as root, /sys/class/powercap is readable and energy would be measured).
NO_RAPL_CONFTEST = """
import functools
import pathlib

from paddle_llm_bench.runtime import energy, measure

measure.RaplEnergyCounter = functools.partial(energy.RaplEnergyCounter, pathlib.Path("/nonexistent/powercap"))
"""


def installed_paddle_version() -> str:
    """The installed Paddle's version: the CPU build (paddlepaddle) or the GPU build (paddlepaddle-gpu)."""
    for distribution in ("paddlepaddle", "paddlepaddle-gpu"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise AssertionError("neither paddlepaddle nor paddlepaddle-gpu is installed")


def run_benchmarks(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest with the plugin on a copy of benchmarks/test_generation.py, in a fresh subprocess."""
    pytester.makepyfile(test_generation=BENCHMARK_FILE.read_text())
    return pytester.runpytest_subprocess("-p", "paddle_llm_bench.plugin", *args, timeout=TIMEOUT_S)


def refused(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The same session in this process, for input refused before anything is measured (no Paddle import to pay).

    It must not import Paddle: pytester takes the imported modules back out after the session, and Paddle's C
    extension, which stays loaded, cannot be imported again in this process (every later test would fail)."""
    pytester.makepyfile(test_generation=BENCHMARK_FILE.read_text())
    loaded_before = paddle_extension_loaded()
    result = pytester.runpytest_inprocess("-p", "paddle_llm_bench.plugin", *args)
    assert loaded_before or not paddle_extension_loaded(), "a refused in-process session imported Paddle"
    return result


def paddle_extension_loaded() -> bool:
    return "libpaddle" in Path("/proc/self/maps").read_text()


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "paddle_llm_bench.plugin", "--help", timeout=TIMEOUT_S)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*LLM generation benchmarks (paddle-llm-bench)*"])
    for option in ("--llm-model", "--llm-dtype", "--llm-decoding", "--llm-max-new-tokens", "--llm-rounds"):
        assert option in result.stdout.str()


PADDLE_NOT_IMPORTED_CONFTEST = """
import sys


def pytest_sessionfinish(session):
    print("paddle imported:", "paddle" in sys.modules)
"""


@pytest.mark.parametrize("option", ["--collect-only", "--benchmark-skip"])
def test_collect_only_and_benchmark_skip_never_import_paddle(pytester: pytest.Pytester, option: str) -> None:
    """They measure nothing: no Paddle import (seconds), no GPU self-check, yet the CPU sweep's ids."""
    pytester.makeconftest(PADDLE_NOT_IMPORTED_CONFTEST)
    result = run_benchmarks(pytester, "--llm-device=cpu", "--llm-dtype=float32", "--llm-decoding=greedy", "-v", option)
    assert result.ret == pytest.ExitCode.OK, output(result)
    result.stdout.fnmatch_lines(["*tiny-float32-greedy-new32-bs1-prompt32*", "*paddle imported: False"])
    if option == "--benchmark-skip":
        result.assert_outcomes(skipped=8)


def test_benchmark_compare_fail_is_named_as_pytest_benchmarks_own_gate(pytester: pytest.Pytester) -> None:
    storage = pytester.path / "storage" / get_machine_id()  # where pytest-benchmark looks for this machine's runs
    storage.mkdir(parents=True)
    (storage / "0001_earlier.json").write_text(json.dumps({"machine_info": {}, "commit_info": {}, "benchmarks": []}))
    result = refused(
        pytester,
        "--llm-device=cpu",
        "--llm-dtype=float32",
        "--llm-decoding=greedy",
        "--benchmark-skip",  # nothing measured: the note is printed all the same
        f"--benchmark-storage={pytester.path / 'storage'}",
        "--benchmark-compare=0001",
        "--benchmark-compare-fail=mean:5%",
        "-W",
        "ignore::pytest_benchmark.logger.PytestBenchmarkWarning",  # "machine_info is different" from the stub run
    )
    assert result.ret == pytest.ExitCode.OK, output(result)
    result.stdout.fnmatch_lines(["*--benchmark-compare-fail is pytest-benchmark's own gate*docs/gate.md*"])


@pytest.mark.e2e
def test_sweep_end_to_end(pytester: pytest.Pytester, llm_cache_dir: Path) -> None:
    # The CPU path, asked for: a GPU runner's default would be its GPU (float16 runs there, NVML answers).
    pytester.makeconftest(NO_RAPL_CONFTEST)
    result = run_benchmarks(
        pytester,
        "--llm-device",
        "cpu",
        "--llm-dtype",
        "float32,float16",
        "--llm-decoding",
        "greedy,beam4",
        "--llm-max-new-tokens",
        "8",
        "--llm-batch-size",
        "1",
        "--llm-prompt-tokens",
        "8",
        "--llm-rounds",
        "5",
        "--llm-warmup-rounds",
        "1",
        "--llm-cache-dir",
        str(llm_cache_dir),
        "--benchmark-autosave",
        "--benchmark-histogram=histogram/tiny",
        "-rs",
    )
    result.assert_outcomes(passed=2, skipped=2)
    assert result.ret == pytest.ExitCode.OK
    # pytest-benchmark's own histogram works (pygal comes with the project): one SVG per group
    assert [path.name for path in (pytester.path / "histogram").iterdir()] == ["tiny-tiny-float32.svg"]
    # progress reaches the terminal although pytest captures output
    result.stdout.re_match_lines(
        [
            r"\[paddle-llm-bench\] 4 case\(s\), 2 of them skipped: the device cannot run them; 6 round\(s\) each",
            r"\[paddle-llm-bench\] (building synthetic tiny|loading tiny)",
            # the first case's line (after its progress dot)
            r".*\[paddle-llm-bench\] 1/4 case\(s\) done after [\d.]+ (s|min), about [\d.]+ (s|min|h) left",
        ]
    )
    # float16 has no CPU kernels: skipped with the probed error, not a hard-coded table
    result.stdout.fnmatch_lines(["SKIPPED [[]2[]] *float16 generation does not run on cpu*"])
    # the summary table: header, then one row per measured case with a positive decode rate
    result.stdout.re_match_lines(
        [
            r"^case\s+decode tok/s\s+TTFT ms\s+TPOT ms\s+ITL p50 ms\s+ITL p99 ms"
            r"\s+peak alloc MiB\s+peak RSS MiB\s+CV %$",
            r"^tiny-float32-greedy-new8-bs1-prompt8\s+[1-9][\d,]*\.\d\s",
            r"^tiny-float32-beam4-new8-bs1-prompt8\s+[1-9][\d,]*\.\d\s",
        ]
    )

    saved = sorted(pytester.path.glob(".benchmarks/*/0001_*.json"))
    assert len(saved) == 1, f"expected one autosaved run, found {saved}"
    check_saved_run(json.loads(saved[0].read_text()))

    compare = subprocess.run(
        [str(Path(sys.executable).with_name("pytest-benchmark")), "compare", str(saved[0])],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert "tiny-float32-greedy-new8-bs1-prompt8" in compare.stdout


def check_saved_run(run: dict[str, Any]) -> None:
    facts = run["machine_info"]["paddle_llm_bench"]
    # Not `import paddle` here: pytester restores sys.modules after each test, and a re-import of
    # Paddle's C extension in the same process then fails for every later test.
    assert facts["paddle_version"] == installed_paddle_version()
    assert facts["device"].startswith("cpu (") and facts["hardware_fingerprint"].startswith("cpu:")
    by_case = {benchmark["extra_info"]["case_id"]: benchmark for benchmark in run["benchmarks"]}
    assert sorted(by_case) == ["tiny-float32-beam4-new8-bs1-prompt8", "tiny-float32-greedy-new8-bs1-prompt8"]
    for case_id, benchmark in by_case.items():
        info = benchmark["extra_info"]
        assert benchmark["param"] == case_id
        assert benchmark["stats"]["rounds"] == 5, "pytest-benchmark timed the 5 measured rounds"
        assert info["case"]["max_new_tokens"] == 8
        assert info["rounds"] == 5 and info["warmup_rounds"] == 1
        assert info["metrics"]["decode_tokens_per_s"]["median"] > 0
        assert info["metrics"]["decode_tokens_per_s"]["unit"] == "tokens/s"
        assert set(info["samples"]) == set(round_metric_names()) - set(
            metric_names(ENERGY)
        )  # no RAPL counter (NO_RAPL_CONFTEST)
        assert all("no energy counter on this CPU" in info["absent"][metric] for metric in metric_names(ENERGY))
        assert all(len(values) == 5 for values in info["samples"].values()), info["samples"]
        assert info["memory_bytes"]["peak_allocated_bytes"] > 0
        assert info["memory_bytes"]["peak_rss_bytes"] > 0
        assert "peak_nvml_process_bytes" not in info["memory_bytes"]
        assert info["absent"]["peak_nvml_process_bytes"]
        assert info["output_digest"].startswith("sha256:")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--llm-dtype", "float8"), ["'float8'", "--llm-dtype", ALLOWED_DTYPES]),
        (("--llm-decoding", "nope"), ["'nope'", "--llm-decoding", ALLOWED_DECODINGS]),
        (("--llm-batch-size", "0"), ["invalid value 0", "--llm-batch-size", ">= 1"]),
        (("--llm-model", "qwen-7b"), ["'qwen-7b'", "--llm-model", "tiny"]),
        (("--llm-device", "tpu"), ["'tpu'", "--llm-device", "auto, cpu, gpu"]),
    ],
    ids=["dtype", "decoding", "batch-size", "model", "device"],
)
def test_bad_option_is_a_usage_error(pytester: pytest.Pytester, args: tuple[str, ...], expected: list[str]) -> None:
    result = refused(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    error_lines = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(error_lines) == 1, output(result)
    for text in expected:
        assert text in error_lines[0]
    assert "Traceback" not in output(result)


def test_bad_ini_value_names_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nllm_dtype = float32, float8\n")
    result = refused(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines([f"ERROR: invalid value 'float8' from ini option llm_dtype: *{ALLOWED_DTYPES}*"])


@pytest.mark.e2e
def test_bad_model_directories_fail_their_cases_with_the_reason(pytester: pytest.Pytester, llm_cache_dir: Path) -> None:
    empty = pytester.mkdir("empty_model")
    config_only = pytester.mkdir("config_only")
    (config_only / "config.json").write_text("{}")
    models = f"/nonexistent/dir,{empty},{config_only}"
    result = run_benchmarks(pytester, "--llm-model", models, "--llm-cache-dir", str(llm_cache_dir), *ONE_SHORT_CASE)
    result.assert_outcomes(failed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*model directory '/nonexistent/dir' does not exist*"])
    result.stdout.fnmatch_lines([f"*model directory '{empty}' has no config.json*"])
    result.stdout.fnmatch_lines(
        [f"*model directory '{config_only}' has no weights (expected one of model.safetensors*"]
    )
    assert "INTERNALERROR" not in output(result)
    assert "Traceback" not in output(result), "a bad model directory is reported, not a crash"


def test_too_few_rounds_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = refused(pytester, "--llm-rounds", "3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines(["ERROR: *3*--llm-rounds*>= 5*"])


@pytest.mark.e2e
def test_paddlenlp_home_stays_in_the_cache_dir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PPNLP_HOME", raising=False)  # the in-process tests set it for this process
    cache_dir = pytester.path / "fresh-cache"
    result = run_benchmarks(pytester, "--llm-cache-dir", str(cache_dir), *ONE_SHORT_CASE)
    result.assert_outcomes(passed=1)
    home = Path(pytester.path)  # pytester sets HOME to its directory
    assert not (home / ".paddlenlp").exists(), "PaddleNLP wrote into the user's home"
    assert (cache_dir / "paddlenlp-home").is_dir()


def test_pyproject_lists_and_gate_options_are_read(pytester: pytest.Pytester) -> None:
    """A TOML list is a list option's value, and the gate's options may live in pyproject.toml too."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nllm_dtype = ["float32", "float8"]\nllm_gate_alpha = "0.9"\n')
    result = refused(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines(["ERROR: invalid value 'float8' from ini option llm_dtype: *"])
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nllm_dtype = ["float32"]\nllm_gate_alpha = "0.9"\n')
    result = refused(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines(
        ["ERROR: invalid value 0.9 from ini option llm_gate_alpha: *"]
    )  # named where it was set


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("[pytest]\nllm_dtype =\n", "ERROR: empty value from ini option llm_dtype: give a value, or remove the line*"),
        (
            "[pytest]\nllm_rounds =\n",
            "ERROR: empty value from ini option llm_rounds: give a value, or remove the line*",
        ),
        ("[pytest]\nllm_decoding = greedy,\n  ,\n", "ERROR: empty item in * from ini option llm_decoding: *"),
    ],
    ids=["empty-list", "empty-setting", "empty-item"],
)
def test_an_ini_option_set_to_nothing_is_a_usage_error_not_the_default_sweep(
    pytester: pytest.Pytester, ini: str, message: str
) -> None:
    pytester.makeini(ini)
    result = refused(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines([message])


def test_a_cache_dir_that_cannot_be_written_is_a_usage_error(pytester: pytest.Pytester) -> None:
    blocker = pytester.path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    result = refused(pytester, f"--llm-cache-dir={blocker / 'cache'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    assert f"invalid value '{blocker / 'cache'}' from --llm-cache-dir: cannot write there" in output(result)


def test_benchmark_json_naming_a_folder_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = refused(pytester, f"--benchmark-json={pytester.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    assert "from --benchmark-json: it is a folder; name the JSON file to write" in output(result)


@pytest.mark.e2e
def test_benchmark_disable_runs_each_case_once_and_gates_or_stores_nothing(
    pytester: pytest.Pytester, llm_cache_dir: Path
) -> None:
    baselines = pytester.path / "baselines"
    result = run_benchmarks(
        pytester, *ONE_SHORT_CASE, f"--llm-cache-dir={llm_cache_dir}", "--benchmark-disable",
        "--llm-baseline-update", f"--llm-baseline-dir={baselines}",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.OK, output(result)
    assert "benchmarks disabled (--benchmark-disable): each case generated once as a smoke test" in output(result)
    assert "1 passed" in output(result) and "regression gate" not in output(result)
    assert not list(baselines.glob("*.json"))  # nothing merged into baselines


@pytest.mark.e2e
def test_a_shard_without_a_case_is_a_usage_error_not_a_green_run(pytester: pytest.Pytester) -> None:
    result = run_benchmarks(pytester, *ONE_SHORT_CASE, "--llm-shard", "2/3", "--benchmark-autosave")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    assert "--llm-shard 2/3 holds no case: the sweep has 1 case(s), so use at most 1 shard(s)" in output(result)


@pytest.mark.e2e
def test_llm_reference_measures_every_case_paired_and_saves_it_with_the_run(
    pytester: pytest.Pytester, llm_cache_dir: Path
) -> None:
    """`--llm-reference PYTHON`: the sweep as usual, then each case interleaved against the reference in fresh
    workers; the paired run lands beside the saved run and its summary inside it. Same code on both sides:
    no regression may be called on a case whose ratio is near 1."""
    paired = (
        "--llm-paired-pairs-per-block=3",
        "--llm-paired-min-blocks=3",
        "--llm-paired-max-blocks=3",
        "--llm-paired-follow-up-blocks=0",  # three blocks, whatever they show
    )
    result = run_benchmarks(
        pytester,
        *ONE_SHORT_CASE,
        f"--llm-cache-dir={llm_cache_dir}",
        "--llm-no-gate",
        "--benchmark-autosave",
        f"--llm-reference={sys.executable}",
        *paired,
    )
    text = output(result)
    assert "paired comparison against reference" in text
    (saved,) = pytester.path.glob(".benchmarks/*/0001_*.json")  # pytest-benchmark's folder: only its run
    document = json.loads(saved.read_text())
    summary = document["paddle_llm_bench_paired"]
    assert [side["name"] for side in summary["sides"]] == [f"reference {sys.executable}", "this environment"]
    decode = next(j for j in summary["verdicts"] if j["metric"] == "decode_tokens_per_s")
    assert decode["case_id"] == "tiny-float32-greedy-new4-bs1-prompt4" and summary["cases"][0]["blocks"] == 3
    assert 0.5 < decode["ratio"] < 2.0
    paired_run = saved.parent / f"{saved.stem}.paired" / "paired.json"
    assert Path(summary["paired_run"]).resolve() == paired_run.resolve() and paired_run.is_file()
    assert "paired against reference" in text and "paired run saved to" in text
    assert result.ret == (pytest.ExitCode.TESTS_FAILED if decode["regression"] else pytest.ExitCode.OK), text


def test_llm_reference_that_is_not_a_python_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = refused(pytester, *ONE_SHORT_CASE, f"--llm-reference={tmp_path / 'missing' / 'python'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "from --llm-reference is not an executable Python interpreter" in output(result)


def test_a_reference_without_this_project_is_refused_before_the_sweep(
    pytester: pytest.Pytester, python_without_this_project: str
) -> None:
    reference = f"--llm-reference={python_without_this_project}"
    result = run_benchmarks(pytester, *ONE_SHORT_CASE, "--benchmark-autosave", reference)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    assert "cannot run a worker: paddle-llm-bench is not installed there" in output(result)
    assert not list(pytester.path.glob(".benchmarks/*/*.json"))  # refused before anything was measured


def test_bad_paired_options_are_usage_errors(pytester: pytest.Pytester) -> None:
    result = refused(pytester, *ONE_SHORT_CASE, "--llm-paired-min-blocks=5", "--llm-paired-max-blocks=3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llm-paired-max-blocks 3 must be at least --llm-paired-min-blocks 5" in output(result)
