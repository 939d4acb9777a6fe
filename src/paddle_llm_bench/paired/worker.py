"""``python -m paddle_llm_bench.paired.worker``: one side of a paired comparison.

Started by the coordinator with the Python of the environment under test. It loads a case's model
once (kept while the next case shares model and dtype), warms up, and on each ``turn`` request runs
measured rounds with the suite's own ``CaseRunner`` — the same synchronized step clock and exact
token checks as ``pytest benchmarks``. Between requests it blocks on reading its input: it holds no
core while the other side measures. It exits at the end of its input, so a coordinator that dies
takes its workers with it.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .protocol import PROTOCOL_VERSION, decode, encode, failure


def busy_wait(seconds: float) -> None:
    """Burn the CPU for ``seconds``: an injected slowdown that costs what real work costs (a sleep would not)."""
    deadline = time.perf_counter_ns() + int(seconds * 1e9)
    while time.perf_counter_ns() < deadline:
        pass


class Worker:
    """The state of one worker: the device, the loaded model, the prepared case and its memory tracker."""

    def __init__(self) -> None:
        self.device: Any = None
        self.loaded: Any = None
        self.runner: Any = None
        self.tracker: Any = None
        self.slowdown_hooks: list[Any] = []

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "hello": self.hello,
            "prepare": self.prepare,
            "turn": self.turn,
            "memory": self.memory,
            "quit": lambda _request: {},
        }
        if op not in handlers:
            raise ValueError(f"unknown op {op!r}: this worker knows {', '.join(handlers)}")
        return {"ok": True, **handlers[str(op)](request)}

    def hello(self, _request: dict[str, Any]) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            package_version = version("paddle-llm-bench")
        except PackageNotFoundError:
            package_version = "unknown"
        from ..device import import_paddle, import_paddlenlp

        paddle = import_paddle()
        paddlenlp = import_paddlenlp()
        return {
            "protocol": PROTOCOL_VERSION,
            "package_version": package_version,
            "paddle_version": str(paddle.__version__),
            "paddlenlp_version": str(paddlenlp.__version__),
            "python": sys.executable,
            "pid": os.getpid(),
        }

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        from ..config import Case
        from ..device import detect_device
        from ..measure import CaseRunner
        from ..memory import MemoryTracker
        from ..models import load_model

        case = Case(**request["case"])
        if self.device is None:
            self.device = detect_device(str(request.get("device", "auto")))
        self._remove_slowdown()
        if self.loaded is None or (self.loaded.name, self.loaded.dtype) != (case.model, case.dtype):
            self.runner = self.loaded = None
            gc.collect()
            self.loaded = load_model(
                case.model,
                case.dtype,
                Path(request["cache_dir"]),
                request.get("max_positions"),
                progress=lambda message: print(message, file=sys.stderr),
            )
        self.runner = CaseRunner(self.loaded, case, self.device)
        fraction = float(request.get("slowdown_fraction", 0.0))
        if fraction > 0.0:
            self._inject_slowdown(fraction)
        self.runner.warmup(int(request.get("warmup_rounds", 2)))
        self.tracker = MemoryTracker(self.device)
        self.tracker.reset()
        return {"device": self.device.describe(), "model_source": self.loaded.source}

    def _inject_slowdown(self, fraction: float) -> None:
        """After every forward pass (one per decoding step, and the prefill), busy-wait ``fraction`` of the
        time that forward pass took: a slowdown of a known share of the model's work, which follows the
        machine's speed as it changes (a fixed delay measured once would not)."""
        started_ns = [0]

        def before(*_: Any) -> None:
            started_ns[0] = time.perf_counter_ns()

        def after(*_: Any) -> None:
            busy_wait(fraction * (time.perf_counter_ns() - started_ns[0]) / 1e9)

        model = self.loaded.model
        self.slowdown_hooks = [model.register_forward_pre_hook(before), model.register_forward_post_hook(after)]

    def _remove_slowdown(self) -> None:
        for hook in self.slowdown_hooks:
            hook.remove()
        self.slowdown_hooks = []

    def turn(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.runner is None:
            raise RuntimeError("no case prepared: send prepare before turn")
        rounds = [dataclasses.asdict(self.runner.generate_once()) for _ in range(int(request.get("rounds", 1)))]
        self.tracker.sample()
        return {"rounds": rounds}

    def memory(self, _request: dict[str, Any]) -> dict[str, Any]:
        if self.tracker is None:
            raise RuntimeError("no case prepared: send prepare before memory")
        peaks = self.tracker.read()
        return {"bytes": dict(peaks.bytes_by_metric), "absent": dict(peaks.absent)}


def serve(requests: IO[str], replies: IO[bytes]) -> None:
    worker = Worker()
    for line in requests:
        if not line.strip():
            continue
        try:
            request = decode(line)
            reply = worker.handle(request)
        except Exception as error:  # noqa: BLE001 - every failure is answered; the coordinator decides
            request, reply = {}, failure(error)
        replies.write(encode(reply))
        replies.flush()
        if request.get("op") == "quit":
            return


def main() -> None:
    # The protocol gets the original stdout; anything printed by Paddle or PaddleNLP goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    os.environ.setdefault("GLOG_minloglevel", "2")
    import warnings

    warnings.filterwarnings("ignore")
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
