"""Per-Paddle-version virtual environments, made once and cached: what ``versions`` and ``--llm-reference`` run in.

One isolated environment per version and build (``<env-dir>/paddle-3.3.1-cpu``): ``uv venv --seed``, then
``uv pip install paddlepaddle==V -e <checkout>`` (or ``paddlepaddle-gpu`` from Paddle's CUDA index); uv's
cache is shared by every version, so an environment takes seconds where pip takes minutes. Without uv (it
is a dependency of this project, but may be missing from a hand-made interpreter): ``python -m venv`` and
pip, the same packages. The
checkout is installed editable with its core dependencies only (never the ``cpu`` extra, which pins
another Paddle), so the environments always run the checkout's current code. A marker file, written
last and atomically after ``import paddle, paddlenlp`` printed the expected version, makes an
environment reusable; one without it is half-built and is rebuilt. The index is asked first
(``pip index versions``), so a typo fails in seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from paddle_llm_bench.core.versioned import Format
from paddle_llm_bench.results.files import exclusive_lock, write_document
from paddle_llm_bench.runtime import progress

ENV_DIR_VARIABLE = "PADDLE_LLM_BENCH_ENV_DIR"
MARKER_NAME = "paddle-llm-bench-env.json"
MARKER = Format("environment marker", 1)  # a marker of another version means: rebuild
PADDLE_INDEX = "https://www.paddlepaddle.org.cn/packages/stable/{cuda}/"
CUDA_TAG = re.compile(r"cu\d{2,3}")
CPU_PACKAGE = "paddlepaddle"
GPU_PACKAGE = "paddlepaddle-gpu"
IMPORT_CHECK = "import paddle, paddlenlp, paddle_llm_bench.plugin; print(paddle.__version__)"
PIP_TIMEOUT_S = 1800
INDEX_TIMEOUT_S = 120
LOG_TAIL_LINES = 25


class VersionsError(Exception):
    """Input or an environment that stops the command before anything is measured (exit 2)."""


def say(message: str) -> None:
    progress.say(message, "versions")


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
    candidates = [repo, Path(__file__).resolve().parents[3]]
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
        return MARKER.stamp(asdict(self))


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
    write_document(marker_path(env), MARKER, {**asdict(spec), "created": _now()}, indent=2)


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


def find_uv() -> str | None:
    """The uv executable: the one this project's ``uv`` dependency installed, else one on PATH; None: none."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def install_steps(env: Path, version: str, build: Build, source: Path, uv: str | None) -> list[tuple[str, list[str]]]:
    """The commands that make the environment: uv's when there is a uv (seconds), else venv and pip (minutes).
    ``--seed`` gives uv's environment pip and setuptools, as ``python -m venv`` does (PaddleNLP imports
    setuptools); bytecode is compiled at install, as pip does, so no worker compiles it while measured."""
    packages = [f"{build.package}=={version}", "-e", str(source)]
    index = ["--extra-index-url", build.index_url] if build.index_url else []
    python = str(env_python(env))
    if uv is not None:
        return [
            ("uv venv", [uv, "venv", "--seed", "--python", sys.executable, str(env)]),
            ("uv pip install", [uv, "pip", "install", "--python", python, "--compile-bytecode", *packages, *index]),
        ]
    return [
        ("python -m venv", [sys.executable, "-m", "venv", str(env)]),
        ("pip install", [python, "-m", "pip", "install", "--progress-bar", "off", *packages, *index]),
    ]


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
    """pip's "from versions: ..." (or uv's "no version of") turned into a sentence, when ``version`` is not found."""
    match = re.search(r"\(from versions: ([^)]*)\)", log_text)
    if match is None and "No matching distribution found" not in log_text and "no version of" not in log_text:
        return ""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    offers = f"; it offers: {match.group(1).strip() or 'none'}" if match else ""
    return f"no {build.package}=={version} was found for this Python ({python}){offers}. {list_versions_hint(build)}"


def list_versions_hint(build: Build) -> str:
    extra = f" --extra-index-url {build.index_url}" if build.index_url else ""
    return f"See the available versions with `{sys.executable} -m pip index versions {build.package}{extra}`."


def ensure_env(env_dir: Path, version: str, build: Build, spec: EnvSpec) -> Path:
    """The environment for ``version``: reused when its marker matches, else (re)made. Raises VersionsError."""
    name = env_name(version, build)
    env = env_dir / name
    with exclusive_lock(env):  # one process at a time makes or checks it
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
        env_dir.mkdir(parents=True, exist_ok=True)  # a fresh machine has no --env-dir yet
        log = env_dir / f"{name}.log"
        log.write_text(f"# {_now()}: making the environment for paddle {version} ({build.describe()})\n", "utf-8")
        uv = find_uv()
        how = "with uv, seconds once its cache has the wheels" if uv else "with pip (no uv found), minutes"
        say(f"creating env for paddle {version} in {env} ({how}; once; log: {log})...")
        started = time.monotonic()
        for label, command in install_steps(env, version, build, Path(spec.project), uv):
            say(f"paddle {version}: `{label}` ({time.monotonic() - started:.0f} s so far)")
            if _run_logged(command, log, pip_environment(), PIP_TIMEOUT_S) != 0:
                hint = not_found_hint(log.read_text("utf-8", errors="replace"), version, build)
                raise VersionsError(
                    f"cannot make the environment for paddle {version}: `{label}` failed (log: {log})"
                    + (f"\n  {hint}" if hint else f"\n  last lines of the log:\n{log_tail(log)}")
                )
        say(f"paddle {version}: import check ({time.monotonic() - started:.0f} s so far)")
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


def env_spec(version: str, build: Build, source: Path) -> EnvSpec:
    """What the environment for ``version`` must hold, made by this Python from the checkout ``source``."""
    return EnvSpec(
        paddle_version=version,
        package=build.package,
        build=build.tag,
        index_url=build.index_url,
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        project=str(source),
        requirements=requirements_fingerprint(source),
    )


def default_env_dir(repo: Path) -> Path:
    """``$PADDLE_LLM_BENCH_ENV_DIR``, else ``<repo>/.cache/paddle-llm-bench/envs``."""
    configured = os.environ.get(ENV_DIR_VARIABLE)
    return Path(configured) if configured else repo / ".cache" / "paddle-llm-bench" / "envs"


def version_environments(versions: Sequence[str], build: Build, env_dir: Path, repo: Path) -> dict[str, Path]:
    """Every version's environment, made where missing (after one look at the index). Raises VersionsError."""
    source = project_source(repo)
    check_index(versions, build)
    return {version: ensure_env(env_dir, version, build, env_spec(version, build, source)) for version in versions}
