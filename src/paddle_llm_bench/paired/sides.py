"""What a side of a comparison is: a named Python with Paddle, PaddleNLP and this project installed.

A side is given as a Python (a path to an interpreter) or, by the commands that build environments,
as a Paddle version. ``check_side`` starts one worker and asks it who it is, so a bad reference
(not a Python, no Paddle, another version of this project) fails in seconds with the fix, before
anything is measured.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from paddle_llm_bench.core.config import MODES
from paddle_llm_bench.paired.protocol import HelloReply

RUNNERS = ("suite", "bare")  # the worker's measured round, or a plain generate() loop


class SideError(Exception):
    """A side that cannot take part: the message names it and says what to do."""


@dataclass(frozen=True)
class Side:
    """One side: its label in tables, its interpreter, extra environment variables for its workers."""

    name: str
    python: str
    env: dict[str, str] = field(default_factory=dict)
    slowdown_fraction: float = 0.0  # calibration only: a busy-wait of this share of each decoding step
    paddle_version: str | None = None  # when set, a worker reporting another Paddle is refused
    runner: str = "suite"  # what generates: the suite's measured rounds ("suite") or a plain generate loop ("bare")
    mode: str | None = None  # every case's execution mode on this side (None: the case's own)

    def __post_init__(self) -> None:
        if self.runner not in RUNNERS:
            raise SideError(f"unknown runner {self.runner!r} for {self.name}: allowed values are {', '.join(RUNNERS)}")
        if self.mode is not None and self.mode not in MODES:
            allowed = ", ".join(MODES)
            raise SideError(f"unknown execution mode {self.mode!r} for {self.name}: allowed values are {allowed}")

    def describe(self) -> str:
        injected = f", injected slowdown {100 * self.slowdown_fraction:g} %" if self.slowdown_fraction else ""
        mode = f", every case {self.mode}" if self.mode else ""
        return f"{self.name} ({self.python}{injected}{mode})"


def python_side(text: str, name: str | None = None, source: str = "--reference") -> Side:
    """A side from a path (or a command on PATH) to a Python interpreter."""
    path = Path(text).expanduser()
    found = str(path) if path.is_file() else shutil.which(text)
    if found is None or not os.access(found, os.X_OK):
        raise SideError(
            f"{text!r} from {source} is not an executable Python interpreter: give the path of the "
            "environment's python (e.g. /opt/paddle-3.0/bin/python), or a Paddle version to build an environment"
        )
    return Side(name or text, str(Path(found).absolute()))


def this_python(name: str = "this environment") -> Side:
    return Side(name, sys.executable)


def looks_like_version(text: str) -> bool:
    """``3.0.0``, ``3.3.1``, ``3.1.0rc1``: a Paddle version, as opposed to a path to an interpreter."""
    return bool(text) and text[0].isdigit() and "/" not in text


def check_hello(side: Side, reply: HelloReply, protocol: int) -> None:
    """Raise SideError unless the worker's hello shows a compatible worker with the expected Paddle."""
    if reply.protocol != protocol:
        raise SideError(
            f"{side.describe()} runs paddle-llm-bench {reply.package_version} with worker protocol "
            f"{reply.protocol!r}, this one speaks {protocol}: install this checkout into it "
            f"({side.python} -m pip install -e <this checkout>)"
        )
    printed = reply.paddle_version
    if side.paddle_version is not None and not _same_version(printed, side.paddle_version):
        raise SideError(
            f"{side.describe()} imports Paddle {printed!r}, not {side.paddle_version}: the wrong environment"
        )


def _same_version(printed: str, expected: str) -> bool:
    try:
        return Version(printed).public == Version(expected).public
    except InvalidVersion:
        return printed == expected


def hello_failure_hint(side: Side, stderr_tail: str) -> str:
    """What a failed first contact means, from the worker's stderr."""
    if "No module named 'paddle_llm_bench'" in stderr_tail or "No module named paddle_llm_bench" in stderr_tail:
        return f"paddle-llm-bench is not installed there: {side.python} -m pip install -e <this checkout>"
    if "No module named 'paddle'" in stderr_tail or "ModuleNotFoundError: No module named 'paddle'" in stderr_tail:
        return (
            f"Paddle is not installed there: {side.python} -m pip install paddlepaddle==VERSION (or paddlepaddle-gpu)"
        )
    if "No module named 'paddlenlp'" in stderr_tail:
        return f"PaddleNLP is not installed there: {side.python} -m pip install -e <this checkout> brings it"
    return "is it a Python with Paddle, PaddleNLP and this project installed?"
