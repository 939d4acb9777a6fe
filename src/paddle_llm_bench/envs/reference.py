"""``pytest benchmarks --llm-reference VERSION_OR_PYTHON``: every measured case compared pair by pair
against a reference environment, after the sweep, in one window of time.

The run's own rounds stay pytest-benchmark's statistics (``--benchmark-autosave`` and
``pytest-benchmark compare`` work as before); the paired comparison is saved beside the run, in
``<run>.paired/paired.json``, and summarized in the run under ``paddle_llm_bench_paired``.
A case confirmed slower than the reference (Holm over the sweep) or bigger in allocator memory fails
the run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paddle_llm_bench.core.config import Case, ConfigError
from paddle_llm_bench.paired.engine import run_paired
from paddle_llm_bench.paired.render import as_json, render
from paddle_llm_bench.paired.results import PairedRun, PairedSettings, failures, judge, judge_memory
from paddle_llm_bench.paired.sides import Side, SideError, looks_like_version, python_side


def reference_side(text: str, repo: Path, gpu: bool, progress: Callable[[str], None]) -> Side:
    """The reference from ``--llm-reference``: a Python interpreter, or a Paddle version whose CPU
    environment is made (once, cached) like ``paddle-llm-bench versions`` makes it."""
    if not looks_like_version(text):
        try:
            return python_side(text, f"reference {text}", "--llm-reference")
        except SideError as error:
            raise ConfigError(str(error)) from None
    if gpu:
        raise ConfigError(
            f"--llm-reference {text}: on a GPU give the reference environment's Python (build it with "
            "`paddle-llm-bench versions` --gpu --cuda TAG, or install paddlepaddle-gpu==VERSION into a venv), "
            "so that the CUDA build is the one you chose"
        )
    from paddle_llm_bench.envs.venvs import (
        VersionsError,
        child_environment,
        default_env_dir,
        env_python,
        make_build,
        parse_version,
        version_environments,
    )

    try:
        version = parse_version(text)
        progress(f"reference Paddle {version}: making or reusing its environment")
        env = version_environments([version], make_build(False, None, None), default_env_dir(repo), repo)[version]
    except VersionsError as error:
        raise ConfigError(f"--llm-reference {text}: {error}") from None
    return Side(f"paddle {version}", str(env_python(env)), child_environment(env), paddle_version=version)


# Both sides' workers hold the case's model at once; this much of the device's memory is left to the CUDA
# contexts and the allocators' slack.
DEVICE_MEMORY_SHARE = 0.9


def too_big_to_pair(peak_bytes: int | None, device_bytes: int | None, sides: int = 2) -> str:
    """Why ``sides`` workers cannot hold a case whose one-process peak was ``peak_bytes`` on a device of
    ``device_bytes``, or "" when they can (or when either figure is unknown: the engine then tries)."""
    if not peak_bytes or not device_bytes or sides * peak_bytes <= DEVICE_MEMORY_SHARE * device_bytes:
        return ""
    gib = 1024**3
    return (
        f"not paired: {sides} workers would hold {sides} x {peak_bytes / gib:.1f} GiB (this case's peak in the sweep) "
        f"of the device's {device_bytes / gib:.1f} GiB; compare it on a larger GPU, or alone with `paddle-llm-bench "
        "versions` on a smaller sweep"
    )


@dataclass
class ReferenceOutcome:
    run: PairedRun
    path: Path
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # cases not paired, with the reason

    def lines(self) -> list[str]:
        table = render(self.run, "table").rstrip("\n").splitlines()
        verdicts = [f"REGRESSION {line}" for line in self.failures] or ["no case confirmed slower or bigger"]
        if self.run.interrupted:  # a stop, never a regression: the run exits 2
            verdicts.append("INTERRUPTED: the paired comparison was stopped; its verdicts are incomplete")
        return [*table, *self.skipped, *verdicts, f"paired run saved to {self.path}"]

    def summary(self) -> dict[str, Any]:
        return {**as_json(self.run), "paired_run": str(self.path)}


def compare_with_reference(
    cases: Sequence[Case],
    reference: Side,
    settings: PairedSettings,
    cache_dir: Path,
    path: Path,
    progress: Callable[[str], None],
    skipped: Sequence[str] = (),
) -> ReferenceOutcome:
    """Measure ``cases`` interleaved in the reference and in this Python; the run is saved to ``path`` as it grows.
    ``skipped`` names the cases left out before measuring, and why."""
    sides = [reference, Side("this environment", sys.executable)]
    run = run_paired(cases, sides, settings, cache_dir, progress=progress, on_update=lambda current: current.save(path))
    found = failures([*judge(run), *judge_memory(run)])
    found += [f"{c.case.id}: the paired comparison failed: {c.error}" for c in run.cases if c.error]
    return ReferenceOutcome(run, path, found, list(skipped))
