"""A stop asked for by a signal, raised where the code can stop cleanly.

A handler that raises ``KeyboardInterrupt`` itself lands at whatever instruction was running. In CI
one such SIGTERM landed on an instruction without a line number: pytest's traceback printer crashed
on it (``tb_lineno`` None), pytest exited 1 instead of 2, and the gate treated the stopped run as a
whole one. So the handler only records the request; ``checkpoint()`` raises it from this file, at
points the measuring code passes often: each decode step, each case's set-up, each paired turn.

Process-wide, as signals are. A request made after the last checkpoint is still seen by
``requested()`` (the plugin then marks the run interrupted).
"""

from __future__ import annotations

_requested: str | None = None


def request(reason: str) -> None:
    """Ask the run to stop at its next checkpoint (safe to call from a signal handler)."""
    global _requested
    if _requested is None:
        _requested = reason


def requested() -> str | None:
    """What asked for the stop (e.g. "SIGTERM"), or None."""
    return _requested


def checkpoint() -> None:
    """Raise ``KeyboardInterrupt``, the way Ctrl-C stops pytest, if a stop was asked for."""
    if _requested is not None:
        raise KeyboardInterrupt(_requested)


def clear() -> None:
    """Forget the request (the session that owned it has ended)."""
    global _requested
    _requested = None
