"""`paddle-llm-bench versions` and its environments (``venvs``): input checks, environment names and
markers, a wrong environment refused, and one end-to-end paired run with two real Paddle venvs.

Only the last test (marked slow) installs anything: two environments, about a minute each with uv from
an empty cache (seconds once its cache holds the wheels; minutes with pip); point PADDLE_LLM_BENCH_ENV_DIR
at a persistent folder to keep them between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench.cli import main as cli_main
from paddle_llm_bench.envs import venvs
from paddle_llm_bench.envs import versions as versions_command
from paddle_llm_bench.envs.venvs import MARKER_NAME, Build, EnvSpec, VersionsError
from paddle_llm_bench.paired.results import load_paired_run
from paddle_llm_bench.runtime.device import import_paddle

REPO = Path(__file__).resolve().parents[1]
CPU = Build("paddlepaddle", "cpu", None)
CASES = ("tiny-float32-greedy-new32-bs1-prompt32", "tiny-float32-sampling-new32-bs1-prompt32")
MIB = 1024 * 1024


def spec(version: str = "3.3.1", **changes: Any) -> EnvSpec:
    fields = {
        "paddle_version": version,
        "package": "paddlepaddle",
        "build": "cpu",
        "index_url": None,
        "python": "3.11",
        "project": "/work/checkout",
        "requirements": "abc123",
    }
    return EnvSpec(**{**fields, **changes})


def fake_env(root: Path, name: str = "paddle-3.3.1-cpu", marker: dict[str, Any] | None = None) -> Path:
    """An environment directory: an interpreter file, and a marker when given."""
    env = root / name
    python = venvs.env_python(env)
    python.parent.mkdir(parents=True)
    python.write_text("")
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    if marker is not None:
        (env / MARKER_NAME).write_text(json.dumps(marker))
    return env


# Input.


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["3.3.1"], r"at least two Paddle versions to compare, got 1 \(3.3.1\)"),
        ([], r"at least two Paddle versions to compare, got 0 \(none\)"),
        (["3.0.0", "three"], r"invalid Paddle version 'three'.*pip index versions paddlepaddle"),
        (["3.0.0", "3.3.1", "3.0"], r"Paddle version 3.0 is given twice \(it is '3.0.0'\)"),
    ],
)
def test_bad_version_lists_are_refused_with_the_value(texts: list[str], message: str) -> None:
    with pytest.raises(VersionsError, match=message):
        venvs.check_versions(texts)


def test_the_command_line_refuses_a_single_version_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["versions", "3.3.1", "--repo", str(REPO)]) == 4
    assert "at least two Paddle versions" in capsys.readouterr().err


def test_builds_from_the_gpu_options() -> None:
    assert venvs.make_build(False, None, None) == CPU
    gpu = venvs.make_build(True, "cu123", None)
    assert gpu == Build("paddlepaddle-gpu", "cu123", "https://www.paddlepaddle.org.cn/packages/stable/cu123/")
    assert venvs.make_build(False, "cu118", None).is_gpu  # --cuda implies --gpu
    assert venvs.make_build(True, "cu126", "https://mirror/x/").index_url == "https://mirror/x/"
    with pytest.raises(VersionsError, match=r"--gpu needs --cuda TAG"):
        venvs.make_build(True, None, None)
    with pytest.raises(VersionsError, match=r"invalid CUDA tag '12.3' from --cuda: expected cuNNN"):
        venvs.make_build(True, "12.3", None)


def test_environment_names_carry_version_and_build() -> None:
    assert venvs.env_name("3.3.1", CPU) == "paddle-3.3.1-cpu"
    assert venvs.env_name("3.0.0", venvs.make_build(True, "cu123", None)) == "paddle-3.0.0-cu123"
    mirror = venvs.env_name("3.3.1", Build("paddlepaddle", "cpu", "https://mirror/simple/"))
    other = venvs.env_name("3.3.1", Build("paddlepaddle", "cpu", "https://other/simple/"))
    assert re.fullmatch(r"paddle-3\.3\.1-cpu-index[0-9a-f]{8}", mirror) and mirror != other


def test_the_checkout_is_found_from_a_subdirectory(tmp_path: Path) -> None:
    assert venvs.find_repo(REPO / "src" / "paddle_llm_bench") == REPO
    with pytest.raises(VersionsError, match=r"neither .* nor a parent holds benchmarks/ and conftest.py.*--repo"):
        venvs.find_repo(tmp_path)


@pytest.mark.parametrize("uv", ["/bin/uv", None], ids=["uv", "pip"])
def test_the_installer_gets_the_checkout_editable_with_core_dependencies_and_the_asked_paddle(uv: str | None) -> None:
    env = Path("/envs/paddle-3.0.0-cpu")
    (make, make_command), (install, command) = venvs.install_steps(env, "3.0.0", CPU, Path("/checkout"), uv)
    assert make == ("uv venv" if uv else "python -m venv") and make_command[-1] == str(env)
    assert install == ("uv pip install" if uv else "pip install")
    assert str(venvs.env_python(env)) in command  # into the new environment, never this one
    packages = command[-3:]
    assert packages == ["paddlepaddle==3.0.0", "-e", "/checkout"]  # not "/checkout[cpu]": that pins 3.3.1
    gpu_build = venvs.make_build(True, "cu123", None)
    (_, _), (_, gpu) = venvs.install_steps(env, "3.0.0", gpu_build, Path("/c"), uv)
    assert "paddlepaddle-gpu==3.0.0" in gpu
    assert gpu[-2:] == ["--extra-index-url", "https://www.paddlepaddle.org.cn/packages/stable/cu123/"]


def test_uv_is_found_from_this_projects_dependency() -> None:
    uv = venvs.find_uv()
    assert uv is not None and Path(uv).is_file()  # `uv` is a dependency: the fast path is the one that runs


# The schedule.


# Environments and markers.


def test_a_missing_environment_is_made(tmp_path: Path) -> None:
    assert venvs.env_state(tmp_path / "paddle-3.3.1-cpu", spec())[0] == "missing"


def test_a_finished_environment_with_a_matching_marker_is_reused(tmp_path: Path) -> None:
    env = fake_env(tmp_path, marker=spec().as_marker())
    assert venvs.env_state(env, spec()) == ("ready", "reused")


def test_a_half_built_environment_is_rebuilt(tmp_path: Path) -> None:
    env = fake_env(tmp_path)
    state, why = venvs.env_state(env, spec())
    assert state == "rebuild" and "half-built" in why and MARKER_NAME in why


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"python": "3.10"}, "python '3.10' -> '3.11'"),
        ({"requirements": "old"}, "requirements 'old' -> 'abc123'"),
        ({"project": "/elsewhere"}, "project '/elsewhere' -> '/work/checkout'"),
    ],
)
def test_an_environment_made_for_something_else_is_rebuilt(tmp_path: Path, changes: dict[str, str], why: str) -> None:
    env = fake_env(tmp_path, marker={**spec().as_marker(), **changes})
    state, reason = venvs.env_state(env, spec())
    assert state == "rebuild" and why in reason


def test_an_unreadable_marker_means_rebuilding(tmp_path: Path) -> None:
    env = fake_env(tmp_path)
    (env / MARKER_NAME).write_text("{not json")
    assert venvs.env_state(env, spec())[0] == "rebuild"


def test_the_marker_is_written_atomically_and_read_back(tmp_path: Path) -> None:
    env = fake_env(tmp_path)
    venvs.write_marker(env, spec())
    assert venvs.env_state(env, spec()) == ("ready", "reused")
    assert not [p for p in env.iterdir() if p.name.endswith(".tmp")]
    assert json.loads((env / MARKER_NAME).read_text())["paddle_version"] == "3.3.1"


class FakeInstaller:
    """Stands in for `python -m venv` and pip: makes the interpreter file, or fails with pip's words."""

    def __init__(self, fail_with: str | None = None, prints: str = "3.3.1") -> None:
        self.commands: list[list[str]] = []
        self.fail_with = fail_with
        self.prints = prints

    def run_logged(self, command: Sequence[str], log: Path, env: object, timeout_s: float) -> int:
        self.commands.append(list(command))
        if "venv" in command:
            python = venvs.env_python(Path(command[-1]))
            python.parent.mkdir(parents=True, exist_ok=True)
            python.write_text("")
            (python.parent.parent / "pyvenv.cfg").write_text("home = /usr/bin\n")
            return 0
        if self.fail_with is not None:
            log.write_text(log.read_text() + self.fail_with)
            return 1
        return 0

    def import_check(self, env: Path) -> Any:
        return argparse.Namespace(returncode=0, stdout=f"some warning\n{self.prints}\n", stderr="")


def test_a_half_built_environment_is_deleted_then_made_and_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = fake_env(tmp_path)
    (env / "leftover").write_text("from the interrupted attempt")
    installer = FakeInstaller()
    monkeypatch.setattr(venvs, "_run_logged", installer.run_logged)
    monkeypatch.setattr(venvs, "run_import_check", installer.import_check)
    assert venvs.ensure_env(tmp_path, "3.3.1", CPU, spec()) == env
    assert not (env / "leftover").exists()
    assert venvs.env_state(env, spec()) == ("ready", "reused")
    out = capsys.readouterr().err
    assert "half-built" in out and "creating env for paddle 3.3.1" in out
    assert next(c for c in installer.commands if "pip" in c)[-3:] == ["paddlepaddle==3.3.1", "-e", "/work/checkout"]
    # the second time nothing is installed
    installer.commands.clear()
    venvs.ensure_env(tmp_path, "3.3.1", CPU, spec())
    assert installer.commands == [] and "reused" in capsys.readouterr().err


def test_an_env_dir_that_does_not_exist_yet_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh machine: --env-dir (by default ~/.cache/paddle-llm-bench/envs) is made with the first environment."""
    installer = FakeInstaller()
    monkeypatch.setattr(venvs, "_run_logged", installer.run_logged)
    monkeypatch.setattr(venvs, "run_import_check", installer.import_check)
    env_dir = tmp_path / "not" / "made" / "yet"
    env = venvs.ensure_env(env_dir, "3.3.1", CPU, spec())
    assert env == env_dir / "paddle-3.3.1-cpu" and venvs.env_state(env, spec()) == ("ready", "reused")
    assert (env_dir / "paddle-3.3.1-cpu.log").is_file()


def test_a_folder_that_is_not_a_virtual_environment_is_never_deleted(tmp_path: Path) -> None:
    precious = tmp_path / "paddle-3.3.1-cpu"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(VersionsError, match=r"is not a virtual environment \(no pyvenv.cfg\): not deleting it"):
        venvs.ensure_env(tmp_path, "3.3.1", CPU, spec())
    assert (precious / "thesis.tex").is_file()


PIP_SAYS = (
    "ERROR: Could not find a version that satisfies the requirement paddlepaddle==3.9.9 "
    "(from versions: 2.6.2, 3.0.0, 3.3.1)\nERROR: No matching distribution found for paddlepaddle==3.9.9\n"
)
UV_SAYS = (
    "error: No solution found when resolving dependencies\n  cause: Because there is no version of "
    "paddlepaddle==3.9.9 and you require paddlepaddle==3.9.9, we can conclude that your requirements are "
    "unsatisfiable.\n"
)


@pytest.mark.parametrize(("installer_says", "offers"), [(PIP_SAYS, "; it offers: 2.6.2, 3.0.0, 3.3.1"), (UV_SAYS, ".")])
def test_a_version_the_installer_cannot_find_is_named_with_the_ones_it_offers(
    installer_says: str, offers: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installer = FakeInstaller(fail_with=installer_says)
    monkeypatch.setattr(venvs, "_run_logged", installer.run_logged)
    with pytest.raises(VersionsError) as error:
        venvs.ensure_env(tmp_path, "3.9.9", CPU, spec("3.9.9"))
    message = str(error.value)
    assert f"no paddlepaddle==3.9.9 was found for this Python (3.11){offers}" in message
    assert "pip index versions paddlepaddle" in message and "paddle-3.9.9-cpu.log" in message
    assert venvs.env_state(tmp_path / "paddle-3.9.9-cpu", spec("3.9.9"))[0] == "rebuild"  # no marker


def test_an_environment_whose_paddle_reports_another_version_is_not_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installer = FakeInstaller(prints="3.3.0")
    monkeypatch.setattr(venvs, "_run_logged", installer.run_logged)
    monkeypatch.setattr(venvs, "run_import_check", installer.import_check)
    with pytest.raises(VersionsError, match=r"does not work: .* printed '3.3.0'"):
        venvs.ensure_env(tmp_path, "3.3.1", CPU, spec())
    assert not (tmp_path / "paddle-3.3.1-cpu" / MARKER_NAME).exists()


def test_version_matching_and_the_printed_version() -> None:
    assert venvs.imported_version("W0101 warning\n3.0.0\n\n") == "3.0.0"
    assert venvs.version_matches("3.3.0", "3.3") and venvs.version_matches("3.0.0rc1", "3.0.0-rc1")
    assert not venvs.version_matches("3.3.0", "3.3.1") and not venvs.version_matches("", "3.3.1")


def test_the_index_listing_is_read_and_missing_versions_named() -> None:
    output = "paddlepaddle (3.3.1)\nAvailable versions: 3.3.1, 3.3.0, 3.0.0, 3.0.0rc1\n  INSTALLED: 3.3.1\n"
    available = venvs.available_versions(output)
    assert available == ["3.3.1", "3.3.0", "3.0.0", "3.0.0rc1"]
    assert venvs.missing_versions(["3.0.0", "3.3", "3.9.9", "3.0.0rc1"], available) == ["3.9.9"]
    assert venvs.available_versions("WARNING: something else") is None


def test_an_unknown_version_stops_before_any_environment_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def index(command: list[str], timeout_s: float, env: object) -> Any:
        assert command[-4:] == ["index", "versions", "--pre", "paddlepaddle"]
        return argparse.Namespace(
            returncode=0,
            stdout="paddlepaddle (3.3.1)\nAvailable versions: 3.3.1, 3.0.0\n",
            stderr="WARNING: Retrying ... Failed to resolve 'mirror.example'\n",
        )

    monkeypatch.setattr(venvs, "run_captured", index)
    env_dir = tmp_path / "envs"
    status = cli_main(["versions", "3.0.0", "3.9.9", "--repo", str(REPO), "--env-dir", str(env_dir)])
    assert status == 4
    error = capsys.readouterr().err
    assert "paddlepaddle 3.9.9 not found" in error and "Available: 3.3.1, 3.0.0" in error
    assert "pip index versions paddlepaddle" in error and "pip said: WARNING: Retrying" in error
    assert not env_dir.exists()


# End to end: two real Paddle versions on the tiny model.


@pytest.fixture(scope="session")
def version_env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$PADDLE_LLM_BENCH_ENV_DIR when set (CI caches it), else a fresh folder for this session."""
    configured = os.environ.get(venvs.ENV_DIR_VARIABLE)
    return Path(configured) if configured else tmp_path_factory.mktemp("version-envs")


@pytest.mark.e2e
def test_an_environment_that_imports_another_paddle_is_refused_before_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both "environments" are this one: the one named for another Paddle version is the wrong environment.
    This one's Paddle is whatever is installed (paddlepaddle 3.3.1 here, paddlepaddle-gpu on a GPU runner)."""
    installed = str(import_paddle().__version__)
    other = "3.0.0" if installed != "3.0.0" else "3.3.1"
    fake_envs = {other: tmp_path / "a", installed: tmp_path / "b"}
    monkeypatch.setattr(versions_command, "version_environments", lambda *_args: fake_envs)
    monkeypatch.setattr(versions_command, "env_python", lambda _env: Path(sys.executable))
    status = cli_main(["versions", other, installed, "--repo", str(REPO), "--out-dir", str(tmp_path / "out")])
    assert status == 4
    assert f"imports Paddle {installed!r}, not {other}: the wrong environment" in capsys.readouterr().err
    assert not (tmp_path / "out" / "paired.json").exists()


@pytest.mark.slow
def test_two_real_paddle_versions_end_to_end(
    tmp_path: Path,
    version_env_dir: Path,
    llm_cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`versions 3.0.0 3.3.1` on two cases, 2 blocks of 4 pairs: a minute, plus about one per new environment."""
    out_dir = tmp_path / "out"
    started = time.monotonic()
    arguments = ["versions", "3.0.0", "3.3.1", "--repo", str(REPO), "--env-dir", str(version_env_dir)]
    arguments += ["--out-dir", str(out_dir), "--cache-dir", str(llm_cache_dir), "--decoding", "greedy,sampling"]
    arguments += ["--pairs-per-block", "4", "--min-blocks", "2", "--max-blocks", "2"]
    status = cli_main(arguments)
    captured = capsys.readouterr()
    with capsys.disabled():
        print(f"\n{captured.out}\n(versions took {time.monotonic() - started:.0f} s)")
    assert status == 0, captured.out + captured.err
    run = load_paired_run(out_dir / "paired.json")
    assert [side.paddle_version for side in run.sides] == ["3.0.0", "3.3.1"]
    assert [c.case.id for c in run.cases] == list(CASES)
    for comparison in run.cases:
        assert comparison.error is None and len(comparison.blocks) == 2
        assert all(len(block.pairs) == 4 for block in comparison.blocks)
        assert len({pid for block in comparison.blocks for pid in block.pids}) == 4  # fresh workers per block
        estimate = comparison.estimate(1, "decode_tokens_per_s", 0.95)
        assert estimate is not None and 0.3 < estimate.ratio < 3.0
    table = (out_dir / "comparison.txt").read_text()
    assert table in captured.out and "[versions]" not in captured.out  # `versions > out.txt` gets results only
    assert table.index("paddle 3.0.0") < table.index("paddle 3.3.1")  # the first version is the reference
    for name in ("comparison.md", "comparison.csv", "comparison.json", "forest.png"):
        assert (out_dir / name).is_file()
    # the environments are now reused without pip
    source = venvs.project_source(REPO)
    for version in ("3.0.0", "3.3.1"):
        env = version_env_dir / f"paddle-{version}-cpu"
        assert venvs.env_state(env, venvs.env_spec(version, CPU, source)) == ("ready", "reused")
