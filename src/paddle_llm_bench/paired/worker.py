"""``python -m paddle_llm_bench.paired.worker``: one side of a paired comparison.

Started by the coordinator with the Python of the environment under test. It loads a case's model
once (kept while the next case shares model and dtype), warms up, and on each ``turn`` request runs
measured rounds with the suite's own ``CaseRunner`` — the same synchronized step clock and exact
token checks as ``pytest benchmarks`` — or, when ``prepare`` names the ``"bare"`` runner, with a plain
generate() loop timed as a user would time it (``BareLoop``, what ``paddle-llm-bench overhead``
measures the suite against). Between requests it blocks on reading its input: it holds no core while
the other side measures. It exits at the end of its input, so a coordinator that dies takes its
workers with it.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from paddle_llm_bench.paired.protocol import (
    PROTOCOL_VERSION,
    Hello,
    HelloReply,
    Memory,
    MemoryReply,
    Prepare,
    PrepareReply,
    Quit,
    Reply,
    Turn,
    TurnReply,
    decode_request,
    encode,
    failure,
)
from paddle_llm_bench.paired.sides import (
    RUNNERS,  # what generates a side's rounds: the suite's CaseRunner, or a plain loop
)

if TYPE_CHECKING:
    from paddle_llm_bench.core.config import Case
    from paddle_llm_bench.core.metrics import RoundTimes
    from paddle_llm_bench.runtime.device import Device
    from paddle_llm_bench.runtime.models import LoadedModel


def busy_wait(seconds: float) -> None:
    """Burn the CPU for ``seconds``: an injected slowdown that costs what real work costs (a sleep would not)."""
    deadline = time.perf_counter_ns() + int(seconds * 1e9)
    while time.perf_counter_ns() < deadline:
        pass


class BareClock:
    """The bare loop's only addition to a plain generate(): a stopping criterion that never stops and
    reads the clock at each step (generate() deep-copies its criteria: the clock hands out itself)."""

    def __init__(self) -> None:
        self.step_ns: list[int] = []

    def __deepcopy__(self, memo: dict[int, Any]) -> BareClock:
        return self

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        self.step_ns.append(time.perf_counter_ns())
        return False


class BareLoop:
    """A user's own timed ``model.generate()`` loop, with the suite's inputs and generate() arguments.

    No synchronization at the start or at each step, no CPU-time, energy or clock-event reads, no output
    check inside or around the timed span: the clock is read before generate(), at each step by
    ``BareClock``, and after generate() returned and (on a GPU) the device was synchronized once, as a
    user timing their loop would. After the end stamp, the output's shape and the number of steps are
    checked (metadata only: no copy from the device), so every round the engine gets has exactly the
    asked number of tokens. On a GPU the per-step stamps are taken when a step's work was queued, not
    done: the bare side's e2e time is exact, its TTFT and decode split are approximate.
    """

    def __init__(self, loaded: LoadedModel, case: Case, device: Device) -> None:
        from paddlenlp.generation.stopping_criteria import StoppingCriteriaList

        from paddle_llm_bench.runtime.device import import_paddle
        from paddle_llm_bench.runtime.measure import generation_inputs

        self.paddle = import_paddle()
        self.criteria_list = StoppingCriteriaList
        self.loaded = loaded
        self.model = loaded.model
        self.case = case
        self.input_ids, self.attention_mask, self.generate_kwargs = generation_inputs(loaded, case)
        self.synchronize: Callable[[], None] | None = device.synchronize if device.kind == "gpu" else None

    def generate_once(self) -> RoundTimes:
        from paddle_llm_bench.core.metrics import RoundTimes
        from paddle_llm_bench.runtime.measure import TokenCountError
        from paddle_llm_bench.runtime.modes import use_mode

        use_mode(self.loaded, self.case.mode)  # the case's execution mode, as the suite's runner has it
        clock = BareClock()
        criteria = self.criteria_list([clock])
        start_ns = time.perf_counter_ns()
        with self.paddle.no_grad():
            output_ids, _scores = self.model.generate(
                input_ids=self.input_ids,
                attention_mask=self.attention_mask,
                stopping_criteria=criteria,
                **self.generate_kwargs,
            )
        if self.synchronize is not None:
            self.synchronize()
        end_ns = time.perf_counter_ns()
        shape = list(output_ids.shape)
        if shape != [self.case.batch_size, self.case.max_new_tokens] or len(clock.step_ns) != self.case.max_new_tokens:
            raise TokenCountError(
                f"{self.case.id} (bare loop): asked for exactly {self.case.max_new_tokens} new tokens per sequence "
                f"for batch {self.case.batch_size}, got output shape {shape} after {len(clock.step_ns)} decoding steps"
            )
        return RoundTimes(start_ns, tuple(clock.step_ns), end_ns)

    def warmup(self, rounds: int) -> None:
        for _ in range(rounds):
            self.generate_once()


def check_runner(name: str) -> str:
    """``name`` if it is a known runner; a ValueError naming the allowed values otherwise."""
    if name not in RUNNERS:
        raise ValueError(f"unknown runner {name!r}: allowed values are {', '.join(RUNNERS)}")
    return name


class Worker:
    """The state of one worker: the device, the loaded model, the prepared case's runner per slot (one slot
    unless the sides share this process) and the memory tracker."""

    def __init__(self) -> None:
        self.device: Any = None
        self.loaded: Any = None
        self.runners: dict[int, Any] = {}  # by slot: one per side when the sides share this process
        self.tracker: Any = None
        self.slowdown_hooks: list[Any] = []

    def handle(self, request: Hello | Prepare | Turn | Memory | Quit) -> Reply:
        if isinstance(request, Hello):
            return self.hello()
        if isinstance(request, Prepare):
            return self.prepare(request)
        if isinstance(request, Turn):
            return self.turn(request)
        if isinstance(request, Memory):
            return self.memory()
        return Reply()  # quit

    def hello(self) -> HelloReply:
        from importlib.metadata import PackageNotFoundError, version

        try:
            package_version = version("paddle-llm-bench")
        except PackageNotFoundError:
            package_version = "unknown"
        from paddle_llm_bench.runtime.device import import_paddle, import_paddlenlp

        paddle = import_paddle()
        paddlenlp = import_paddlenlp()
        return HelloReply(
            protocol=PROTOCOL_VERSION,
            package_version=package_version,
            paddle_version=str(paddle.__version__),
            paddlenlp_version=str(paddlenlp.__version__),
            python=sys.executable,
            pid=os.getpid(),
        )

    def prepare(self, request: Prepare) -> PrepareReply:
        runner = check_runner(request.runner)  # before anything is loaded
        from paddle_llm_bench.runtime.device import detect_device
        from paddle_llm_bench.runtime.measure import CaseRunner
        from paddle_llm_bench.runtime.memory import MemoryTracker
        from paddle_llm_bench.runtime.models import load_model

        case = request.case
        if request.mode:  # this side runs every case in its own execution mode (mode against mode)
            case = dataclasses.replace(case, mode=request.mode)
        slot = request.slot
        if self.device is None:
            self.device = detect_device(request.device)
        self._remove_slowdown()
        if self.loaded is None or (self.loaded.name, self.loaded.dtype) != (case.model, case.dtype):
            self.runners.clear()
            self.loaded = None
            gc.collect()
            self.loaded = load_model(
                case.model,
                case.dtype,
                Path(request.cache_dir),
                request.max_positions,
                progress=lambda message: print(message, file=sys.stderr),
            )
        self.runners[slot] = (
            CaseRunner(self.loaded, case, self.device)
            if runner == "suite"
            else BareLoop(self.loaded, case, self.device)
        )
        if request.slowdown_fraction > 0.0:
            self._inject_slowdown(request.slowdown_fraction)
        round_s = []
        warmup_rounds = request.warmup_rounds
        if case.mode != "eager":  # a static mode compiles in its first generation: never in a measured turn
            warmup_rounds = max(warmup_rounds, 1)
        for _ in range(warmup_rounds):
            started = time.perf_counter()
            self.runners[slot].warmup(1)
            round_s.append(time.perf_counter() - started)
        self._free_pool()  # the previous case's pool must not set this case's reserved peak
        self.tracker = MemoryTracker(self.device)
        self.tracker.reset()
        return PrepareReply(
            device=self.device.describe(),
            mode=case.mode,
            model_source=self.loaded.source,
            warmup_round_s=min(round_s) if round_s else None,
        )

    def _free_pool(self) -> None:
        gc.collect()
        if self.device is not None and self.device.kind == "gpu":
            from paddle_llm_bench.runtime.device import import_paddle

            import_paddle().device.cuda.empty_cache()

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

    def turn(self, request: Turn) -> TurnReply:
        runner = self.runners.get(request.slot)
        if runner is None:
            raise RuntimeError(f"no case prepared in slot {request.slot}: send prepare before turn")
        rounds = [runner.generate_once() for _ in range(request.rounds)]
        self.tracker.sample()
        return TurnReply(rounds=rounds)

    def memory(self) -> MemoryReply:
        if self.tracker is None:
            raise RuntimeError("no case prepared: send prepare before memory")
        peaks = self.tracker.read()
        return MemoryReply(bytes=dict(peaks.bytes_by_metric), absent=dict(peaks.absent))


def serve(requests: IO[str], replies: IO[bytes]) -> None:
    worker = Worker()
    for line in requests:
        if not line.strip():
            continue
        request: Hello | Prepare | Turn | Memory | Quit | None = None
        try:
            request = decode_request(line)
            reply = worker.handle(request)
        except Exception as error:  # noqa: BLE001 - every failure is answered; the coordinator decides
            reply = failure(error)
        replies.write(encode(reply))
        replies.flush()
        if isinstance(request, Quit):
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
