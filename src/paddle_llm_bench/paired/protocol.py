"""The JSON-lines protocol between the coordinator and a worker. Pure.

One request per line on the worker's stdin, one reply per line on its protocol channel (the
worker's original stdout; whatever Paddle prints goes to its stderr). Every reply has ``ok``; a
failed request has ``error`` (the message) and ``kind`` (the exception's class name). Each message is a typed
model below (pydantic), checked where it arrives: a request with a field this version does not define, or a
round whose stamps decrease, is refused by name instead of failing later.

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
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.metrics import RoundTimes
from paddle_llm_bench.core.versioned import describe_invalid

PROTOCOL_VERSION = 3  # 2: slots (sides sharing one worker); 3: a side's own execution mode in prepare
WORKER_MODULE = "paddle_llm_bench.paired.worker"
DEFAULT_RUNNER = "suite"


class ProtocolError(ValueError):
    """A line that is not a message of this protocol: the other end is not a worker (or coordinator) of it."""


class Request(BaseModel):
    """A request: a field this protocol version does not define is refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(Request):
    op: Literal["hello"] = "hello"


class Quit(Request):
    op: Literal["quit"] = "quit"


class SlotRequest(Request):
    slot: int = 0  # the side's runner, where the sides share one worker


class Prepare(SlotRequest):
    op: Literal["prepare"] = "prepare"
    case: Case
    cache_dir: str
    warmup_rounds: int = 2
    device: str = "auto"
    max_positions: int | None = 4096
    slowdown_fraction: float = 0.0  # a busy-wait of this share of each forward pass (a known slowdown)
    runner: str = DEFAULT_RUNNER  # the suite's measured round, or a bare generate() loop
    mode: str | None = None  # this side's execution mode for every case, where it is not the case's own


class Turn(SlotRequest):
    op: Literal["turn"] = "turn"
    rounds: int = 1


class Memory(SlotRequest):
    op: Literal["memory"] = "memory"


AnyRequest = Annotated[Hello | Prepare | Turn | Memory | Quit, Field(discriminator="op")]
_REQUEST: TypeAdapter[AnyRequest] = TypeAdapter(AnyRequest)


class Reply(BaseModel):
    """An answer; a newer worker's extra fields are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    ok: bool = True


class HelloReply(Reply):
    # Lenient: a worker of another protocol version must still say which it speaks.
    protocol: int | None = None
    package_version: str = "?"
    paddle_version: str = ""
    paddlenlp_version: str = ""
    python: str = ""
    pid: int | None = None


class PrepareReply(Reply):
    device: str
    mode: str
    model_source: str
    warmup_round_s: float | None = None  # the engine sizes blocks by it


class TurnReply(Reply):
    rounds: list[RoundTimes]  # checked on arrival: stamps never decrease, every step stamped


class MemoryReply(Reply):
    bytes: dict[str, int]  # memory peaks since ``prepare``
    absent: dict[str, str]


class Failure(Reply):
    ok: bool = False
    kind: str = "error"  # the exception's class name
    error: str = ""


AnyReply = TypeVar("AnyReply", bound=Reply)


def encode(message: BaseModel) -> bytes:
    return (message.model_dump_json() + "\n").encode("utf-8")


def _json_object(line: bytes | str) -> dict[str, object]:
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        raise ProtocolError(f"not a protocol line: {text.strip()[:200]!r}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not a protocol message (a JSON object): {text.strip()[:200]!r}")
    return message


def decode_request(line: bytes | str) -> Hello | Prepare | Turn | Memory | Quit:
    try:
        return _REQUEST.validate_python(_json_object(line))
    except ValidationError as error:
        raise ProtocolError(f"not a request of protocol {PROTOCOL_VERSION}: {describe_invalid(error)}") from None


def decode_reply(line: bytes | str, expected: type[AnyReply]) -> AnyReply | Failure:
    """The worker's answer: ``expected``, or the ``Failure`` it reported; a ProtocolError if it is neither."""
    message = _json_object(line)
    try:
        return expected.model_validate(message) if message.get("ok") else Failure.model_validate(message)
    except ValidationError as error:
        raise ProtocolError(
            f"an answer this version cannot read ({describe_invalid(error)}): is the worker's paddle-llm-bench "
            "the same?"
        ) from None


def failure(error: BaseException) -> Failure:
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return Failure(kind=type(error).__name__, error=first[:2000] or type(error).__name__)
