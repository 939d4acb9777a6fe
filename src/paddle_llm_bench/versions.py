"""`paddle-llm-bench versions 3.0.0 3.3.1 [-- PYTEST ARGS]`: the suite under several Paddle versions.

1. Check the input: two or more distinct versions, the checkout (``benchmarks/`` and ``conftest.py``), and
   that the package index lists every version (``pip index versions``), so a typo fails in seconds.
2. One isolated, cached virtual environment per version and build (``<env-dir>/paddle-3.3.1-cpu``):
   ``python -m venv``, then ``pip install paddlepaddle==V -e <checkout>`` (or ``paddlepaddle-gpu`` from
   Paddle's CUDA index). The checkout is installed editable with its core dependencies only (never the
   ``cpu`` extra, which pins another Paddle), so the environments always run the checkout's current code.
   A marker file, written last and atomically after ``import paddle, paddlenlp`` printed the expected
   version, makes an environment reusable; one without it is half-built and is rebuilt. Every
   environment is made before anything is measured: one that fails stops the command (exit 2).
3. The suite runs once per pass and version, each in its own process, alternating the environments
   (A B A B ...) so that drift of the machine falls on every version alike. Each run writes
   ``<NN>_paddle-<V>.json`` (``--benchmark-json``) and ``<NN>_paddle-<V>.log`` into the output folder;
   the saved run's ``machine_info.paddle_llm_bench.paddle_version`` is checked against the version.
4. With several passes, the passes of a version are merged into ``merged_paddle-<V>.json``: per case, the
   rounds of every pass are concatenated (samples, token gaps, pytest-benchmark's timings), so the
   comparison's medians and spreads cover all passes, drift between them included.
5. ``paddle-llm-bench compare`` of the versions in the order given (the first is the reference): the
   table on stdout and in ``comparison.txt``, Markdown in ``comparison.md``, PNG plots in ``plots/``, and
   with several passes ``passes.md``, every pass against the first (A1 B1 A2 B2 ...: A2 against A1 is the
   drift between two passes of one version).

Exit status: 0 when every run produced results and the comparison was written; 1 when a run (or some of
its cases) failed, the comparison of what ran still written; 2 for bad input or an environment that could
not be made, before anything was measured.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from .config import as_argparse_type, parse_positive_int
from .files import write_atomic

HELP = "run the suite under several Paddle versions in isolated environments and compare them"
USAGE_ERROR = 2
RUN_FAILED = 1

ENV_DIR_VARIABLE = "PADDLE_LLM_BENCH_ENV_DIR"
MARKER_NAME = "paddle-llm-bench-env.json"
MARKER_FORMAT = 1
PADDLE_INDEX = "https://www.paddlepaddle.org.cn/packages/stable/{cuda}/"
CUDA_TAG = re.compile(r"cu\d{2,3}")
CPU_PACKAGE = "paddlepaddle"
GPU_PACKAGE = "paddlepaddle-gpu"
# A small sweep that fits minutes per run: 2 cases on the device's default model.
DEFAULT_SUITE_ARGS: tuple[str, ...] = (
    "--llm-decoding",
    "greedy,sampling",
    "--llm-max-new-tokens",
    "32",
    "--llm-batch-size",
    "1",
    "--llm-prompt-tokens",
    "32",
    "--llm-rounds",
    "20",
)
CPU_SUITE_ARGS: tuple[str, ...] = ("--llm-dtype", "float32")  # the CPU has no float16/bfloat16 kernels
IMPORT_CHECK = "import paddle, paddlenlp, paddle_llm_bench.plugin; print(paddle.__version__)"
PIP_TIMEOUT_S = 1800
INDEX_TIMEOUT_S = 120
LOG_TAIL_LINES = 25
SUITE_PROGRESS_PREFIX = "[paddle-llm-bench]"
BUSY_LOAD_PER_CORE = 0.5  # a 1-minute load average above this per core means other work is running


class VersionsError(Exception):
    """Input or an environment that stops the command before anything is measured (exit 2)."""


def say(message: str) -> None:
    print(f"[versions] {message}", flush=True)


# Input: versions, builds, the checkout.


def parse_version(text: str) -> str:
    """A Paddle version as pip understands it (``3.3.1``, ``3.0.0rc1``); an error names the value."""
    try:
        Version(text)
    except InvalidVersion:
        raise VersionsError(
            f"invalid Paddle version {text!r}: expected a release number such as 3.0.0 or 3.3.1 "
            f"(see the available ones with `{sys.executable} -m pip index versions {CPU_PACKAGE}`)"
        ) from None
    return text


def split_versions(values: Sequence[str]) -> tuple[list[str], list[str]]:
    """Versions, and the pytest arguments given after ``--``.

    argparse gives a ``+`` positional everything after ``--`` (and drops the ``--`` itself on some Python
    versions), so the pytest arguments start at the first word that is ``--`` or begins with ``-``.
    """
    for index, value in enumerate(values):
        if value.startswith("-"):
            rest = list(values[index:])
            return list(values[:index]), rest[1:] if rest[0] == "--" else rest
    return list(values), []


def check_versions(texts: Sequence[str]) -> list[str]:
    versions = [parse_version(text) for text in texts]
    if len(versions) < 2:
        raise VersionsError(
            f"versions needs at least two Paddle versions to compare, got {len(versions)} "
            f"({', '.join(versions) or 'none'}): e.g. `paddle-llm-bench versions 3.0.0 3.3.1`"
        )
    seen: dict[Version, str] = {}
    for version in versions:
        if Version(version) in seen:
            raise VersionsError(f"Paddle version {version} is given twice (it is {seen[Version(version)]!r})")
        seen[Version(version)] = version
    return versions


@dataclass(frozen=True)
class Build:
    """Which Paddle distribution, from where: the CPU build, or a CUDA build from Paddle's own index."""

    package: str  # paddlepaddle or paddlepaddle-gpu
    tag: str  # "cpu" or the CUDA tag, e.g. "cu123"
    index_url: str | None  # where Paddle's wheels are (given to pip as --extra-index-url); None: pip's usual index

    @property
    def is_gpu(self) -> bool:
        return self.package == GPU_PACKAGE

    def describe(self) -> str:
        where = f"from {self.index_url}" if self.index_url else "from pip's usual index"
        return f"{self.package} ({self.tag}) {where}"


def make_build(gpu: bool, cuda: str | None, index_url: str | None) -> Build:
    """The build from --gpu / --cuda / --index-url; --cuda implies --gpu."""
    if cuda is not None and not CUDA_TAG.fullmatch(cuda):
        raise VersionsError(
            f"invalid CUDA tag {cuda!r} from --cuda: expected cuNNN as in Paddle's package index, e.g. cu118, "
            "cu123, cu126 (https://www.paddlepaddle.org.cn/install/quick lists the ones for each version)"
        )
    if not (gpu or cuda):
        return Build(CPU_PACKAGE, "cpu", index_url)
    if cuda is None and index_url is None:
        raise VersionsError(
            "--gpu needs --cuda TAG (e.g. cu118, cu123, cu126: the CUDA build of Paddle's index "
            f"{PADDLE_INDEX.format(cuda='<TAG>')}) or --index-url URL: Paddle 3.x GPU wheels are not on PyPI"
        )
    tag = cuda or "gpu"
    return Build(GPU_PACKAGE, tag, index_url or PADDLE_INDEX.format(cuda=tag))


def env_name(version: str, build: Build) -> str:
    """``paddle-3.3.1-cpu``, ``paddle-3.0.0-cu123``; a custom index adds a short hash of its URL."""
    name = f"paddle-{version}-{build.tag}"
    default_index = PADDLE_INDEX.format(cuda=build.tag) if build.is_gpu else None
    if build.index_url is not None and build.index_url != default_index:
        name += "-index" + hashlib.sha256(build.index_url.encode()).hexdigest()[:8]
    return name


def find_repo(start: Path) -> Path:
    """The checkout to benchmark: ``start`` or its nearest parent holding ``benchmarks/`` and ``conftest.py``."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / "benchmarks").is_dir() and (candidate / "conftest.py").is_file():
            return candidate
    raise VersionsError(
        f"no checkout here: neither {start} nor a parent holds benchmarks/ and conftest.py; "
        "run from the paddle-llm-bench checkout or give --repo DIR"
    )


def project_source(repo: Path) -> Path:
    """What to install into each environment: the checkout itself, else the source tree this code runs from."""
    candidates = [repo, Path(__file__).resolve().parents[2]]
    for candidate in candidates:
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and re.search(r'(?m)^name\s*=\s*"paddle-llm-bench"', pyproject.read_text("utf-8")):
            return candidate
    raise VersionsError(
        f"cannot find paddle-llm-bench's source to install into the environments (no pyproject.toml naming it in "
        f"{' or '.join(str(c) for c in candidates)}): give --repo a paddle-llm-bench checkout"
    )


def requirements_fingerprint(source: Path) -> str:
    """A hash of the project's core dependencies: an environment made for other dependencies is rebuilt."""
    text = (source / "pyproject.toml").read_text("utf-8")
    try:
        import tomllib

        dependencies = tomllib.loads(text).get("project", {}).get("dependencies", [])
        text = "\n".join(sorted(str(d) for d in dependencies))
    except ImportError:  # Python 3.10: any change of pyproject.toml counts
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Environments and their markers.


@dataclass(frozen=True)
class EnvSpec:
    """What an environment must hold; its marker records it, and a mismatch means rebuilding."""

    paddle_version: str
    package: str
    build: str
    index_url: str | None
    python: str  # major.minor of the interpreter that made the venv
    project: str  # the checkout installed editable
    requirements: str  # requirements_fingerprint

    def as_marker(self) -> dict[str, Any]:
        return {"format_version": MARKER_FORMAT, **asdict(self)}


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def marker_path(env: Path) -> Path:
    return env / MARKER_NAME


def env_state(env: Path, spec: EnvSpec) -> tuple[str, str]:
    """("ready" | "missing" | "rebuild", why): may ``env`` be reused for ``spec``?"""
    if not env.exists():
        return "missing", "not made yet"
    marker = marker_path(env)
    if not marker.is_file():
        return "rebuild", f"half-built (no marker file {MARKER_NAME}): an earlier attempt did not finish"
    try:
        recorded = json.loads(marker.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return "rebuild", f"its marker {marker} is unreadable ({error})"
    if not isinstance(recorded, dict):
        return "rebuild", f"its marker {marker} is not a JSON object"
    if not env_python(env).exists():
        return "rebuild", f"its interpreter {env_python(env)} is gone"
    expected = spec.as_marker()
    changed = [
        f"{key} {recorded.get(key)!r} -> {value!r}" for key, value in expected.items() if recorded.get(key) != value
    ]
    if changed:
        return "rebuild", "made for something else: " + "; ".join(changed)
    return "ready", "reused"


def write_marker(env: Path, spec: EnvSpec) -> None:
    """Last step of a build: a temporary file beside the marker, then a rename."""
    write_atomic(marker_path(env), json.dumps({**spec.as_marker(), "created": _now()}, indent=2) + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def version_matches(printed: str, expected: str) -> bool:
    """Does ``paddle.__version__`` (``printed``) answer the version that was asked for?"""
    try:
        return Version(printed).public == Version(expected).public or Version(printed) == Version(expected)
    except InvalidVersion:
        return printed == expected


def imported_version(stdout: str) -> str:
    """The version the import check printed: its last non-empty line (imports may print before it)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def pip_install_command(python: Path, version: str, build: Build, source: Path) -> list[str]:
    command = [str(python), "-m", "pip", "install", "--progress-bar", "off", f"{build.package}=={version}"]
    command += ["-e", str(source)]
    if build.index_url:
        command += ["--extra-index-url", build.index_url]
    return command


def pip_environment() -> dict[str, str]:
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def child_environment(env: Path) -> dict[str, str]:
    """The environment's own interpreter, not this one's paths; quiet Paddle logs."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    bin_dir = env_python(env).parent
    return {
        **inherited,
        "VIRTUAL_ENV": str(env),
        "PATH": f"{bin_dir}{os.pathsep}{inherited.get('PATH', '')}",
        "GLOG_minloglevel": inherited.get("GLOG_minloglevel", "2"),
    }


@contextlib.contextmanager
def env_lock(env_dir: Path, name: str) -> Iterator[None]:
    """One process at a time makes or checks an environment (two CI jobs sharing a cache, say)."""
    env_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no locking
        yield
        return
    with open(env_dir / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _run_logged(command: Sequence[str], log: Path, env: Mapping[str, str], timeout_s: float) -> int:
    """Run ``command`` with its output appended to ``log``; the exit status (124 on a timeout)."""
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"\n$ {shlex.join(command)}\n")
        handle.flush()
        try:
            return subprocess.run(
                command, stdout=handle, stderr=subprocess.STDOUT, env=dict(env), timeout=timeout_s, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            handle.write(f"\ntimed out after {timeout_s:.0f} s\n")
            return 124
        except OSError as error:
            handle.write(f"\ncannot run: {error}\n")
            return 127


def not_found_hint(log_text: str, version: str, build: Build) -> str:
    """pip's "from versions: ..." turned into a sentence, when pip could not find ``version``."""
    match = re.search(r"\(from versions: ([^)]*)\)", log_text)
    if match is None and "No matching distribution found" not in log_text:
        return ""
    available = match.group(1).strip() if match else "none"
    return (
        f"pip found no {build.package}=={version} for this Python ({sys.version_info.major}."
        f"{sys.version_info.minor}); it offers: {available or 'none'}. {list_versions_hint(build)}"
    )


def list_versions_hint(build: Build) -> str:
    extra = f" --extra-index-url {build.index_url}" if build.index_url else ""
    return f"See the available versions with `{sys.executable} -m pip index versions {build.package}{extra}`."


def ensure_env(env_dir: Path, version: str, build: Build, spec: EnvSpec) -> Path:
    """The environment for ``version``: reused when its marker matches, else (re)made. Raises VersionsError."""
    name = env_name(version, build)
    env = env_dir / name
    with env_lock(env_dir, name):
        state, why = env_state(env, spec)
        if state == "ready":
            say(f"paddle {version}: environment {env} ({why})")
            return env
        if state == "rebuild":
            if not (env.is_dir() and ((env / "pyvenv.cfg").is_file() or not any(env.iterdir()))):
                raise VersionsError(
                    f"{env} exists but is not a virtual environment (no pyvenv.cfg): not deleting it; "
                    "move it away or give another --env-dir"
                )
            say(f"paddle {version}: {env} is {why}: deleting it")
            shutil.rmtree(env)
        log = env_dir / f"{name}.log"
        log.write_text(f"# {_now()}: making the environment for paddle {version} ({build.describe()})\n", "utf-8")
        say(f"creating env for paddle {version} in {env} (about a minute, once; log: {log})...")
        started = time.monotonic()
        python = env_python(env)
        steps: list[tuple[str, list[str]]] = [
            ("python -m venv", [sys.executable, "-m", "venv", str(env)]),
            ("pip install", pip_install_command(python, version, build, Path(spec.project))),
        ]
        for label, command in steps:
            if _run_logged(command, log, pip_environment(), PIP_TIMEOUT_S) != 0:
                hint = not_found_hint(log.read_text("utf-8", errors="replace"), version, build)
                raise VersionsError(
                    f"cannot make the environment for paddle {version}: `{label}` failed (log: {log})"
                    + (f"\n  {hint}" if hint else f"\n  last lines of the log:\n{log_tail(log)}")
                )
        try:
            check = run_import_check(env)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise VersionsError(f"the environment for paddle {version} does not work: {error} (log: {log})") from None
        printed = imported_version(check.stdout)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"\n$ python -c {IMPORT_CHECK!r}\n{check.stdout}{check.stderr}")
        if check.returncode != 0 or not version_matches(printed, version):
            what = f"printed {printed!r}" if check.returncode == 0 else f"failed (exit {check.returncode})"
            raise VersionsError(
                f"the environment for paddle {version} does not work: `python -c {IMPORT_CHECK!r}` {what} "
                f"(log: {log})\n{log_tail(log)}"
            )
        write_marker(env, spec)
        say(f"paddle {version}: environment ready in {time.monotonic() - started:.0f} s")
        return env


def run_captured(command: Sequence[str], timeout_s: float, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, env=dict(env), timeout=timeout_s, check=False)


def run_import_check(env: Path) -> subprocess.CompletedProcess[str]:
    """``import paddle, paddlenlp, paddle_llm_bench.plugin`` in the environment; prints Paddle's version."""
    environment = child_environment(env)
    environment.setdefault("PPNLP_HOME", str(env / "paddlenlp-home"))  # else PaddleNLP makes ~/.paddlenlp
    return run_captured([str(env_python(env)), "-c", IMPORT_CHECK], 600, environment)


def available_versions(pip_output: str) -> list[str] | None:
    """The versions ``pip index versions`` lists; None when its output has no such line."""
    match = re.search(r"(?m)^Available versions:(.*)$", pip_output)
    if match is None:
        return None
    return [v.strip() for v in match.group(1).split(",") if v.strip()]


def missing_versions(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """The requested versions that are not among the available ones (compared as versions: 3.3 == 3.3.0)."""
    known = set()
    for text in available:
        with contextlib.suppress(InvalidVersion):
            known.add(Version(text))
    return [version for version in requested if Version(version) not in known]


def check_index(versions: Sequence[str], build: Build) -> None:
    """Fail in seconds when the index lacks a version; say so and go on when the index cannot be asked."""
    command = [sys.executable, "-m", "pip", "index", "versions", "--pre", build.package]
    if build.index_url:
        command += ["--extra-index-url", build.index_url]
    try:
        answer = run_captured(command, INDEX_TIMEOUT_S, pip_environment())
    except (OSError, subprocess.TimeoutExpired) as error:
        say(f"could not ask the index which {build.package} versions exist ({error}); going on")
        return
    available = available_versions(answer.stdout)
    if available is None:
        if "No matching distribution found" in answer.stdout + answer.stderr:
            available = []
        else:
            say(f"could not read which {build.package} versions exist (`{shlex.join(command)}`); going on")
            return
    missing = missing_versions(versions, available)
    if missing:
        shown = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "")
        complaints = [line for line in answer.stderr.splitlines() if line.startswith(("WARNING:", "ERROR:"))]
        raise VersionsError(
            f"{build.package} {', '.join(missing)} not found ({build.describe()}, for Python "
            f"{sys.version_info.major}.{sys.version_info.minor} on this platform). Available: {shown or 'none'}. "
            + (f"pip said: {complaints[-1]} " if complaints else "")
            + list_versions_hint(build)
        )


# The schedule and the runs.


@dataclass(frozen=True)
class PlannedRun:
    number: int  # 1-based, in the order the runs happen
    version: str
    pass_number: int  # 1-based pass of this version

    def stem(self, width: int) -> str:
        return f"{self.number:0{width}d}_paddle-{self.version}"


def plan_runs(versions: Sequence[str], passes: int) -> list[PlannedRun]:
    """A B C A B C ...: every pass runs each version once, in the order given."""
    if passes < 1:
        raise VersionsError(f"invalid --rounds-per-version {passes}: must be >= 1")
    order = [(p, v) for p in range(1, passes + 1) for v in versions]
    return [PlannedRun(number, version, p) for number, (p, version) in enumerate(order, start=1)]


def number_width(runs: Sequence[PlannedRun]) -> int:
    return max(2, len(str(len(runs))))


def suite_arguments(user_args: Sequence[str], build: Build) -> list[str]:
    """The user's pytest arguments, or the default small sweep."""
    if user_args:
        return list(user_args)
    return [*DEFAULT_SUITE_ARGS, *(() if build.is_gpu else CPU_SUITE_ARGS)]


def pytest_command(python: Path, json_path: Path, suite_args: Sequence[str]) -> list[str]:
    return [
        str(python),
        "-m",
        "pytest",
        "benchmarks",
        "-p",
        "no:cacheprovider",
        "--llm-no-gate",
        "--benchmark-json",
        str(json_path),
        "--benchmark-save-data",  # per-round timings, so passes can be merged exactly
        *suite_args,
    ]


@dataclass(frozen=True)
class RunOutcome:
    run: PlannedRun
    json_path: Path
    log_path: Path
    exit_status: int
    cases: int
    seconds: float
    problem: str  # "" when the run is complete

    @property
    def usable(self) -> bool:
        return self.cases > 0 and self.exit_status in (0, 1) and not self.problem.startswith("unusable")


def case_count(document: Mapping[str, Any]) -> int:
    return sum(1 for bench in document.get("benchmarks", []) if "case_id" in bench.get("extra_info", {}))


def judge_run(exit_status: int, document: Mapping[str, Any] | None, version: str) -> tuple[int, str]:
    """(cases with results, problem): "" for a complete run; "unusable: ..." for one that cannot be compared."""
    if document is None:
        return 0, f"unusable: pytest exited {exit_status} without writing results"
    cases = case_count(document)
    recorded = document.get("machine_info", {}).get("paddle_llm_bench", {}).get("paddle_version")
    if cases and not (isinstance(recorded, str) and version_matches(recorded, version)):
        return cases, f"unusable: the run records Paddle {recorded!r}, not {version}: the wrong environment ran"
    if cases == 0:
        return 0, f"unusable: pytest exited {exit_status} and no case has results"
    if exit_status == 1:
        return cases, "some cases failed"
    if exit_status != 0:
        return cases, f"unusable: pytest exited {exit_status}"
    return cases, ""


def busy_warning(load_1min: float | None, cores: int) -> str | None:
    """A warning when other processes keep the machine busy: runs then drift apart and verdicts blur."""
    if load_1min is None or load_1min <= BUSY_LOAD_PER_CORE * cores:
        return None
    return (
        f"the machine is busy (load average {load_1min:.1f} on {cores} cores) before this run: other processes "
        "make the runs noisy; for figures to publish, measure on a quiet machine"
    )


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on Windows
        return None


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def run_suite(
    run: PlannedRun,
    env: Path,
    repo: Path,
    out_dir: Path,
    width: int,
    suite_args: Sequence[str],
    echo: Callable[[str], None],
) -> RunOutcome:
    """One pass of one version in its own process; its output goes to the log, progress lines to ``echo``."""
    json_path = out_dir / f"{run.stem(width)}.json"
    log_path = out_dir / f"{run.stem(width)}.log"
    command = pytest_command(env_python(env), json_path, suite_args)
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ cd {shlex.quote(str(repo))} && {shlex.join(command)}\n")
        log.flush()
        try:
            process = subprocess.Popen(
                command,
                cwd=repo,
                env=child_environment(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as error:
            log.write(f"cannot start: {error}\n")
            status = 127
        else:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                echo(line.rstrip("\n"))
            status = process.wait()
    cases, problem = judge_run(status, read_json(json_path), run.version)
    return RunOutcome(run, json_path, log_path, status, cases, time.monotonic() - started, problem)


# Merging the passes of one version.


def merge_passes(documents: Sequence[Mapping[str, Any]], sources: Sequence[str]) -> dict[str, Any]:
    """One saved run from several passes of one version: per case, the rounds of every pass concatenated.

    Samples, per-round token gaps and pytest-benchmark's per-round timings are concatenated and their
    summaries recomputed; memory peaks are the largest of the passes; the output digest is kept when
    every pass agrees. A case missing from some passes is merged from those that have it.
    """
    from pytest_benchmark.stats import Stats

    if not documents:
        raise ValueError("merge_passes needs at least one saved run")
    versions = {str(doc.get("machine_info", {}).get("paddle_llm_bench", {}).get("paddle_version")) for doc in documents}
    if len(versions) > 1:
        raise ValueError(f"cannot merge runs of different Paddle versions ({', '.join(sorted(versions))})")
    merged = copy.deepcopy(dict(documents[0]))
    by_case: dict[str, list[Mapping[str, Any]]] = {}
    others: list[Any] = []
    for index, document in enumerate(documents):
        for bench in document.get("benchmarks", []):
            case_id = bench.get("extra_info", {}).get("case_id")
            if case_id is None:
                if index == 0:
                    others.append(copy.deepcopy(bench))
                continue
            by_case.setdefault(str(case_id), []).append(bench)
    benchmarks = []
    for benches in by_case.values():
        bench = copy.deepcopy(dict(benches[0]))
        bench["extra_info"] = merge_extra_info([b["extra_info"] for b in benches])
        datas = [b.get("stats", {}).get("data") for b in benches]
        if all(datas):
            stats = Stats()  # type: ignore[no-untyped-call]
            for data in datas:
                for duration in data or []:
                    stats.update(duration)  # type: ignore[no-untyped-call]
            bench["stats"] = {
                **stats.as_dict(),  # type: ignore[no-untyped-call]
                "data": list(stats.data),
                "iterations": bench.get("stats", {}).get("iterations", 1),
            }
        benchmarks.append(bench)
    merged["benchmarks"] = benchmarks + others
    merged["paddle_llm_bench_versions"] = {"merged_from": list(sources), "passes": len(documents)}
    return merged


def merge_extra_info(infos: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One case's ``extra_info`` from several passes (see ``merge_passes``)."""
    from .stats import percentile, summarize

    merged = copy.deepcopy(dict(infos[0]))
    samples: dict[str, list[float]] = {}
    for info in infos:
        for metric, values in info.get("samples", {}).items():
            samples.setdefault(metric, []).extend(float(v) for v in values)
    merged["samples"] = samples
    units = {name: entry.get("unit") for info in infos for name, entry in info.get("metrics", {}).items()}
    merged["metrics"] = {
        metric: {"unit": units.get(metric), **summarize(values).as_dict()}
        for metric, values in samples.items()
        if values
    }
    merged["rounds"] = sum(int(info.get("rounds", 0)) for info in infos)
    gaps_by_round = [list(gaps) for info in infos for gaps in info.get("inter_token_ms_by_round", [])]
    merged["inter_token_ms_by_round"] = gaps_by_round
    gaps = [float(gap) for gaps in gaps_by_round for gap in gaps]
    if gaps:
        merged["inter_token_latency_ms"] = {f"p{q}": percentile(gaps, q) for q in (50, 90, 99)} | {"n": len(gaps)}
    memory: dict[str, Any] = {}
    for info in infos:
        for metric, value in info.get("memory_bytes", {}).items():
            if value is not None:
                memory[metric] = max(memory.get(metric, value), value)
    merged["memory_bytes"] = memory
    absent: dict[str, Any] = {}
    for info in infos:
        for key, reason in info.get("absent", {}).items():
            absent.setdefault(key, reason)
    digests = {info.get("output_digest") for info in infos}
    if len(digests) == 1:
        merged["output_digest"] = next(iter(digests))
    else:
        merged["output_digest"] = None
        absent["output_digest"] = f"the passes disagree: {', '.join(sorted(str(d) for d in digests))}"
    merged["absent"] = {key: reason for key, reason in absent.items() if key not in memory}
    profile = next((info["operator_profile"] for info in infos if info.get("operator_profile")), None)
    if profile is not None:
        merged["operator_profile"] = profile
    merged["merged_passes"] = len(infos)
    return merged


def write_merged(version: str, outcomes: Sequence[RunOutcome], out_dir: Path) -> Path:
    documents = [read_json(outcome.json_path) for outcome in outcomes]
    merged = merge_passes([d for d in documents if d is not None], [o.json_path.name for o in outcomes])
    path = out_dir / f"merged_paddle-{version}.json"
    write_atomic(path, json.dumps(merged, indent=2) + "\n")
    return path


# Comparing.


def run_compare(arguments: Sequence[str]) -> tuple[int, str, str]:
    """``paddle-llm-bench compare ARGUMENTS`` in this process: (exit status, stdout, stderr)."""
    from .cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli_main(["compare", *arguments])
        except SystemExit as stop:  # argparse refused the arguments
            status = stop.code if isinstance(stop.code, int) else USAGE_ERROR
    return status, out.getvalue(), err.getvalue()


def compare_outputs(runs: Sequence[Path], pass_runs: Sequence[Path], out_dir: Path) -> bool:
    """The table on stdout and in comparison.txt; comparison.md, comparison.json, plots/; passes.md.

    False when compare could not compare the runs at all; a missing plot or Markdown file is only said.
    """
    files = [str(path) for path in runs]
    status, table, errors = run_compare(files)
    print(errors, file=sys.stderr, end="")  # compare's warnings and errors
    if status != 0:
        say(f"compare failed (exit {status}); the saved runs are kept in {out_dir}")
        return False
    print()
    print(table, end="", flush=True)
    write_atomic(out_dir / "comparison.txt", table)
    written = [out_dir / "comparison.txt"]
    jobs: list[tuple[list[str], Path]] = [
        ([*files, "--format", "markdown", "--output", str(out_dir / "comparison.md")], out_dir / "comparison.md"),
        ([*files, "--format", "json", "--output", str(out_dir / "comparison.json")], out_dir / "comparison.json"),
        ([*files, "--plots", str(out_dir / "plots")], out_dir / "plots"),
    ]
    if len(pass_runs) > len(runs):
        passes = [str(path) for path in pass_runs]
        jobs.append(([*passes, "--format", "markdown", "--output", str(out_dir / "passes.md")], out_dir / "passes.md"))
    for arguments, target in jobs:
        status, _out, errors = run_compare(arguments)
        if status == 0:
            written.append(target)
        else:
            say(f"{target} not written: {errors.strip() or f'compare exited {status}'}")
    say("wrote " + ", ".join(str(path) for path in written))
    return True


# The command.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "paddle-llm-bench versions VERSION VERSION [VERSION ...] [--rounds-per-version N] [--env-dir DIR] "
        "[--out-dir DIR] [--repo DIR] [--gpu --cuda TAG | --index-url URL] [--show-output] [-- PYTEST ARGS ...]"
    )
    parser.epilog = (
        "PYTEST ARGS after -- replace the default sweep (" + shlex.join([*DEFAULT_SUITE_ARGS, *CPU_SUITE_ARGS]) + "; "
        "no --llm-dtype on a GPU); they must begin with an option. Exit status: 0 all runs complete, 1 a run or "
        "some of its cases failed (the comparison of what ran is still written), 2 bad input or an environment "
        "that could not be made (nothing measured)."
    )
    parser.add_argument(
        "versions",
        nargs="+",
        metavar="VERSION",
        help="Paddle versions, e.g. 3.0.0 3.3.1; the first is the reference of the comparison",
    )
    parser.add_argument(
        "--rounds-per-version",
        type=as_argparse_type(parse_positive_int, "--rounds-per-version"),
        default=2,
        metavar="N",
        help="passes of the suite per version, alternating the versions (A B A B ...); default 2",
    )
    parser.add_argument(
        "--env-dir",
        type=Path,
        metavar="DIR",
        help=f"where the cached environments live (default ${ENV_DIR_VARIABLE}, "
        "else <repo>/.cache/paddle-llm-bench/envs)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        metavar="DIR",
        help="where runs, logs and the comparison go (default <repo>/.benchmarks/versions/<UTC time>_<versions>)",
    )
    parser.add_argument(
        "--repo",
        type=Path,
        metavar="DIR",
        help="the checkout holding benchmarks/ and conftest.py (default: the current directory or a parent)",
    )
    parser.add_argument(
        "--gpu", action="store_true", help=f"{GPU_PACKAGE} from Paddle's CUDA index instead of the CPU build"
    )
    parser.add_argument(
        "--cuda",
        metavar="TAG",
        help=f"the CUDA build to take with --gpu, e.g. cu118, cu123, cu126 (index {PADDLE_INDEX.format(cuda='TAG')})",
    )
    parser.add_argument(
        "--index-url",
        metavar="URL",
        help="take Paddle's wheel from this index (given to pip as --extra-index-url: the other dependencies "
        "still come from your usual index); overrides --cuda's index",
    )
    parser.add_argument(
        "--show-output", action="store_true", help="print every line of the suite runs (default: progress lines)"
    )


@dataclass(frozen=True)
class Plan:
    versions: list[str]
    build: Build
    repo: Path
    source: Path
    env_dir: Path
    out_dir: Path
    runs: list[PlannedRun]
    suite_args: list[str]


def make_plan(args: argparse.Namespace, cwd: Path | None = None) -> Plan:
    """Everything decided from the arguments, before any process runs. Raises VersionsError."""
    cwd = cwd or Path.cwd()
    texts, pytest_args = split_versions(args.versions)
    versions = check_versions(texts)
    build = make_build(args.gpu, args.cuda, args.index_url)
    repo = find_repo(args.repo if args.repo is not None else cwd)
    source = project_source(repo)
    from_variable = os.environ.get(ENV_DIR_VARIABLE)
    env_dir = args.env_dir or (Path(from_variable) if from_variable else repo / ".cache" / "paddle-llm-bench" / "envs")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out_dir = args.out_dir or repo / ".benchmarks" / "versions" / f"{stamp}_{'_'.join(versions)}"
    return Plan(
        versions=versions,
        build=build,
        repo=repo,
        source=source,
        env_dir=Path(env_dir).resolve(),
        out_dir=Path(out_dir).resolve(),
        runs=plan_runs(versions, args.rounds_per_version),
        suite_args=suite_arguments(pytest_args, build),
    )


def env_spec(plan: Plan, version: str) -> EnvSpec:
    return EnvSpec(
        paddle_version=version,
        package=plan.build.package,
        build=plan.build.tag,
        index_url=plan.build.index_url,
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        project=str(plan.source),
        requirements=requirements_fingerprint(plan.source),
    )


def main(args: argparse.Namespace) -> int:
    try:
        plan = make_plan(args)
        say(
            f"paddle {', '.join(plan.versions)}: {plan.build.describe()}; {args.rounds_per_version} pass(es) each, "
            f"in the order {' '.join(run.version for run in plan.runs)}"
        )
        say(f"environments: {plan.env_dir}; results: {plan.out_dir}")
        check_index(plan.versions, plan.build)
        envs = {
            version: ensure_env(plan.env_dir, version, plan.build, env_spec(plan, version)) for version in plan.versions
        }
    except VersionsError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    return measure_and_compare(plan, envs, show_output=args.show_output)


def measure_and_compare(plan: Plan, envs: Mapping[str, Path], show_output: bool = False) -> int:
    width = number_width(plan.runs)
    say(f"suite: cd {plan.repo} && <env>/bin/python -m pytest benchmarks ... {shlex.join(plan.suite_args)}")

    def echo(line: str) -> None:
        if show_output or line.startswith(SUITE_PROGRESS_PREFIX):
            print(f"    {line}", flush=True)

    outcomes: list[RunOutcome] = []
    for run in plan.runs:
        say(f"run {run.number}/{len(plan.runs)}: paddle {run.version}, pass {run.pass_number}...")
        busy = busy_warning(load_average(), os.cpu_count() or 1)
        if busy:
            say(f"WARNING: {busy}")
        outcome = run_suite(run, envs[run.version], plan.repo, plan.out_dir, width, plan.suite_args, echo)
        outcomes.append(outcome)
        verdict = "ok" if not outcome.problem else outcome.problem
        say(
            f"run {run.number}/{len(plan.runs)}: paddle {run.version}, pass {run.pass_number}: {verdict}; "
            f"{outcome.cases} case(s) in {outcome.seconds:.0f} s -> {outcome.json_path.name} (log {outcome.log_path})"
        )
        if outcome.problem:
            print(log_tail(outcome.log_path), file=sys.stderr)
    usable = {version: [o for o in outcomes if o.run.version == version and o.usable] for version in plan.versions}
    compared: list[Path] = []
    for version, good in usable.items():
        if not good:
            say(f"paddle {version}: no usable run, left out of the comparison")
        elif len(good) == 1:
            compared.append(good[0].json_path)
        else:
            path = write_merged(version, good, plan.out_dir)
            say(f"paddle {version}: {len(good)} passes merged into {path.name}")
            compared.append(path)
    complete = all(not outcome.problem for outcome in outcomes)
    if len(compared) < 2:
        say(f"fewer than two versions have results: nothing to compare; the runs and logs are in {plan.out_dir}")
        return RUN_FAILED
    every_pass = [o.json_path for o in outcomes if o.usable]
    compared_ok = compare_outputs(compared, every_pass, plan.out_dir)
    return 0 if complete and compared_ok else RUN_FAILED
