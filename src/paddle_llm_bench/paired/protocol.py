"""The JSON-lines protocol between the coordinator and a worker. Pure.

One request per line on the worker's stdin, one reply per line on its protocol channel (the
worker's original stdout; whatever Paddle prints goes to its stderr). Every reply has ``ok``; a
failed request has ``error`` (the message) and ``kind`` (the exception's class name).

Requests:
- ``{"op": "hello"}`` -> ``protocol``, ``package_version``, ``paddle_version``, ``paddlenlp_version``, ``python``
- ``{"op": "prepare", "case": {...}, "warmup_rounds": 2, "device": "auto", "cache_dir": "...",
  "max_positions": 4096, "slowdown_fraction": 0.0, "runner": "suite"}`` -> ``device``, ``model_source``: load
  (once per model and dtype), warm up, reset the memory peaks, optionally inject a busy-wait of a fraction
  of each forward pass; ``runner`` names what generates (the suite's measured round, or a bare loop);
  ``slot`` (default 0) keeps one runner per side when the sides share this worker (the model is loaded once)
- ``{"op": "turn", "rounds": 1, "slot": 0}`` -> ``rounds``: that many measured generations of the slot's
  runner, as RoundTimes fields
- ``{"op": "memory"}`` -> ``bytes``, ``absent``: the peaks since ``prepare``
- ``{"op": "quit"}`` -> the worker answers and exits; end of input does the same
"""

from __future__ import annotations

import json
from typing import Any

PROTOCOL_VERSION = 3  # 2: slots (sides sharing one worker); 3: a side's own execution mode in prepare
WORKER_MODULE = "paddle_llm_bench.paired.worker"


class ProtocolError(ValueError):
    """A line that is not a JSON object: the other end is not a worker of this protocol."""


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict[str, Any]:
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        raise ProtocolError(f"not a protocol line: {text.strip()[:200]!r}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not a protocol message (a JSON object): {text.strip()[:200]!r}")
    return message


def failure(error: BaseException) -> dict[str, Any]:
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return {"ok": False, "kind": type(error).__name__, "error": first[:2000] or type(error).__name__}
