"""A paired comparison's worker processes: start, greet, ask, and end them.

A ``WorkerProcess`` is a child process of one side's Python running ``paddle_llm_bench.paired.worker``, speaking
JSON lines over pipes; its stderr is kept in a temporary file for error messages. A ``SideWorker`` is one side's
view of it: its own process, or its slot in the one process every side shares (``--same-process``). Every wait
for an answer looks for a stop request (SIGTERM) in short slices, so a stop ends a worker's start or a model's
load within a second.
"""

from __future__ import annotations

import os
import random
import select
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import IO

from paddle_llm_bench.core import stopping
from paddle_llm_bench.paired.protocol import (
    PROTOCOL_VERSION,
    WORKER_MODULE,
    AnyReply,
    Failure,
    Hello,
    HelloReply,
    ProtocolError,
    Quit,
    Request,
    SlotRequest,
    decode_reply,
    encode,
)
from paddle_llm_bench.paired.sides import Side, SideError, check_hello, hello_failure_hint

HELLO_TIMEOUT_S = 300.0
STOP_POLL_S = 0.25  # how often a wait for a worker looks for a stop request
STDERR_TAIL_LINES = 15
LIVE_WORKERS: list[WorkerProcess] = []  # started and not yet closed, in the order they started


class WorkerFailed(Exception):
    """A worker died, hung or broke the protocol; the message has its stderr tail."""


class CaseError(Exception):
    """A worker answered a request with an error (out of memory, a kernel error, a bad case)."""


class WorkerProcess:
    """One worker: a child process speaking the protocol, its stderr kept in a temporary file."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.hello = HelloReply()
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        try:
            self.process = subprocess.Popen(
                [side.python, "-m", WORKER_MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env={**os.environ, **side.env},
                start_new_session=True,  # Ctrl-C reaches the coordinator, which ends its workers
            )
        except OSError as error:
            raise SideError(f"cannot start {side.describe()}: {error}") from None
        LIVE_WORKERS.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(
        self, message: Request, expected: type[AnyReply], timeout_s: float, side: Side | None = None
    ) -> AnyReply:
        """Send one request and wait for its answer; errors name ``side`` (whose runner was asked: in a process
        that every side shares, not always the one it was started for)."""
        self.send(message, side)
        return self.receive(message, expected, timeout_s, side)

    def send(self, message: Request, side: Side | None = None) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(encode(message))
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerFailed(self._died(side or self.side, f"could not send {_op(message)!r}")) from None

    def receive(
        self, message: Request, expected: type[AnyReply], timeout_s: float, side: Side | None = None
    ) -> AnyReply:
        """The answer to ``message`` (sent before), within ``timeout_s``: ``expected``; a ``CaseError`` if the
        worker reports a failure, ``WorkerFailed`` if it dies, hangs or answers outside the protocol."""
        assert self.process.stdout is not None
        side = side or self.side
        if not self._answer_ready(timeout_s):
            self.kill()
            raise WorkerFailed(self._died(side, f"no answer to {_op(message)!r} within {timeout_s:g} s (hung)"))
        line = self.process.stdout.readline()
        if not line:
            try:  # its output closed: it is exiting; its status says how
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            raise WorkerFailed(self._died(side, f"ended its output during {_op(message)!r}"))
        try:
            reply = decode_reply(line, expected)
        except ProtocolError as error:
            self.kill()
            raise WorkerFailed(self._died(side, str(error))) from None
        if isinstance(reply, Failure):
            raise CaseError(f"{side.name}: {reply.kind}: {reply.error}")
        return reply

    def _answer_ready(self, timeout_s: float) -> bool:
        """Wait for the answer in short slices: a stop asked for (SIGTERM) ends the wait within a slice, not after
        a worker's start or a model load (up to a minute)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while True:
            stopping.checkpoint()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.process.stdout], [], [], min(left, STOP_POLL_S))
            if ready:
                return True

    def _died(self, side: Side, what: str) -> str:
        code = self.process.poll()
        status = f"exit status {code}" if code is not None else "still running, killed"
        return f"{side.describe()} worker (pid {self.pid}) {what}; {status}; its stderr ends:\n{self.stderr_tail()}"

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", errors="replace")
        return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty)"

    def close(self) -> None:
        """Ask it to quit; kill it if it does not within a few seconds."""
        if self in LIVE_WORKERS:
            LIVE_WORKERS.remove(self)
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(encode(Quit()))
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self.stderr.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class SideWorker:
    """One side's worker: its own process, or (``same_process``) its slot in the one process every side shares."""

    def __init__(self, side: Side, process: WorkerProcess, slot: int) -> None:
        self.side = side
        self.process = process
        self.slot = slot

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def hello(self) -> HelloReply:
        return self.process.hello

    def request(self, message: SlotRequest, expected: type[AnyReply], timeout_s: float) -> AnyReply:
        """``message`` for this side's runner (its slot in a shared process)."""
        return self.process.request(message.model_copy(update={"slot": self.slot}), expected, timeout_s, self.side)


def _op(message: Request) -> str:
    return str(getattr(message, "op", type(message).__name__))


def check_same_process(sides: Sequence[Side]) -> None:
    """Sides can share one worker process only if that process can be each of them: one Python, one
    environment, and no injected slowdown (it would slow the shared model, every side's rounds)."""
    first = sides[0]
    for side in sides[1:]:
        if (side.python, side.env) != (first.python, first.env):
            raise SideError(
                f"{side.describe()} and {first.describe()} are different Pythons or environments: sides can share "
                "one worker process only when they run the same Python (leave out the same-process option)"
            )
    if any(side.slowdown_fraction for side in sides):
        raise SideError("an injected slowdown needs a process of its own per side (leave out the same-process option)")


def start_workers(
    sides: Sequence[Side], rng: random.Random | None = None, same_process: bool = False
) -> list[SideWorker]:
    """One worker per side (returned in ``sides``' order), all starting and importing Paddle at once, then each
    checked. With ``rng`` they start, and are greeted, in a random order: which process starts or imports first
    can decide which core it lands on and how its memory is laid out, and that must not be the same side every
    time. With ``same_process``, one worker
    process holds every side's runner (slot = side index): what differs between the sides inside a process
    is compared without the process-to-process spread."""
    order = list(range(len(sides)))
    if rng is not None:
        rng.shuffle(order)
    if same_process:
        check_same_process(sides)
        shared = WorkerProcess(sides[0])
        started = dict.fromkeys(order, shared)
    else:
        started = {index: WorkerProcess(sides[index]) for index in order}
    workers = [SideWorker(side, started[index], index) for index, side in enumerate(sides)]
    processes = list(dict.fromkeys(started[index] for index in order))
    hello = Hello()
    try:
        for process in processes:  # every worker imports Paddle at once, greeted in the order they started
            try:
                process.send(hello)
            except WorkerFailed as error:
                raise _cannot_run(process.side, error) from None
        for process in processes:
            try:
                reply = process.receive(hello, HelloReply, HELLO_TIMEOUT_S)
            except (WorkerFailed, CaseError) as error:
                raise _cannot_run(process.side, error) from None
            check_hello(process.side, reply, PROTOCOL_VERSION)
            process.hello = reply
    except BaseException:
        for process in processes:  # a refused or stopped start: no worker is waited for
            process.kill()
        close_all(workers)
        raise
    return workers


def _cannot_run(side: Side, error: Exception) -> SideError:
    return SideError(f"{side.describe()} cannot run a worker: {hello_failure_hint(side, str(error))}\n{error}")


def greet(side: Side) -> None:
    """Start ``side``'s worker, check its hello (Paddle imports, this project, the protocol) and end it: a bad
    side is refused (``SideError``) before anything is measured, not after a sweep."""
    close_all(start_workers([side]))


def close_all(workers: Sequence[SideWorker]) -> None:
    for process in dict.fromkeys(worker.process for worker in workers):
        process.close()
