"""One benchmark session: the device, the loaded model, the measured results. No pytest here.

The pytest plugin hands each case to ``Suite.run`` with a ``timed_rounds`` function (pytest-benchmark's
``pedantic``), so the same code measures under pytest, from the CLI and in tests.
"""

from __future__ import annotations

import gc
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from paddle_llm_bench.core.architecture import Architecture
from paddle_llm_bench.core.bandwidth import CeilingCheck, batch1_decode_ceiling, check_ceiling, decode_weight_bytes
from paddle_llm_bench.core.config import HUB_PREFIX, Case, ConfigError, Sweep
from paddle_llm_bench.runtime.checkpoints import CheckpointError, check_checkpoint_files
from paddle_llm_bench.runtime.device import Device, import_paddle, is_out_of_memory
from paddle_llm_bench.runtime.measure import CaseResult, CaseRunner, host_load
from paddle_llm_bench.runtime.memory import MemoryTracker
from paddle_llm_bench.runtime.models import PRESETS, LoadedModel, dtype_unsupported_reason, load_model
from paddle_llm_bench.runtime.modes import ModeMismatch, mode_unsupported_reason
from paddle_llm_bench.runtime.operators import profile_operators
from paddle_llm_bench.runtime.progress import say

# timed_rounds(one_round, after_each_round, rounds): runs and times `rounds` calls of one_round.
TimedRounds = Callable[[Callable[[], None], Callable[[], None], int], None]


class CaseFailed(Exception):
    """A case could not be measured (out of memory, a kernel error); the message says why and what to try."""


def run_rounds_plainly(one_round: Callable[[], None], after_each_round: Callable[[], None], rounds: int) -> None:
    for _ in range(rounds):
        one_round()
        after_each_round()


@dataclass
class Suite:
    sweep: Sweep
    device: Device
    cache_dir: Path
    max_positions: int | None = 4096
    progress: Callable[[str], None] = say
    profile_operators: bool = False
    results: list[CaseResult] = field(default_factory=list)
    # From the session-start self-check (SKU table, else NVML's memory bus); None: the SKU table by name.
    memory_bandwidth_bytes_per_s: float | None = None
    _loaded: LoadedModel | None = None
    # Why a model (or a model in one dtype) could not be loaded: its later cases fail at once, no reload.
    _load_failures: dict[tuple[str, str], str] = field(default_factory=dict)

    def unsupported_reason(self, case: Case) -> str | None:
        """Why the device cannot run the case's dtype or execution mode (probed once per session), or None."""
        return dtype_unsupported_reason(self.device, case.dtype, self.cache_dir) or mode_unsupported_reason(
            self.device, case.mode, self.cache_dir
        )

    def model_for(self, case: Case) -> LoadedModel:
        """The case's model, loaded once and kept while consecutive cases share (model, dtype).

        A local checkpoint's files are checked first (``checkpoints``); a model that failed to load fails
        its later cases with the same message, without being loaded again."""
        loaded = self._loaded
        if loaded is not None and (loaded.name, loaded.dtype) == (case.model, case.dtype):
            return loaded
        for key in ((case.model, ""), (case.model, case.dtype)):
            if key in self._load_failures:
                raise CaseFailed(self._load_failures[key])
        self._loaded = None
        del loaded
        self._free_memory()
        self._check_files(case)
        self.device.activate()
        try:
            self._loaded = load_model(case.model, case.dtype, self.cache_dir, self.max_positions, self.progress)
        except (ConfigError, MemoryError):
            raise
        except CheckpointError as error:  # e.g. PyTorch weights PaddleNLP cannot convert: any dtype fails
            message = f"model {case.model!r} cannot be loaded: {error}"
            self._load_failures[(case.model, "")] = message
            raise CaseFailed(message) from None
        except Exception as error:
            if "out of memory" in str(error).lower():
                raise
            first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            message = (
                f"model {case.model!r} could not be loaded as {case.dtype} ({type(error).__name__}: "
                f"{first.strip()[:300]}); its other cases in {case.dtype} are skipped without reloading"
            )
            self._load_failures[(case.model, case.dtype)] = message
            raise CaseFailed(message) from error
        return self._loaded

    def _check_files(self, case: Case) -> None:
        """A local checkpoint directory's files, before Paddle reads them."""
        directory = Path(case.model).expanduser()
        if case.model in PRESETS or case.model.startswith(HUB_PREFIX) or not directory.is_dir():
            return
        try:
            check_checkpoint_files(directory)
        except CheckpointError as error:
            message = f"model {case.model!r} cannot be loaded: {error}"
            self._load_failures[(case.model, "")] = message
            raise CaseFailed(message) from None

    def run(self, case: Case, timed_rounds: TimedRounds = run_rounds_plainly, record: bool = True) -> CaseResult:
        """Warm up, reset the memory peaks, time the rounds, and keep the result (unless ``record`` is False).

        Memory is freed after the case's runner and tracker are gone and, when it ran out of memory, after the
        error's frames (which hold the failed round's tensors) are dropped: else the next case's reserved and
        NVML peaks would start from the pool this one left. Then the case fails with ``CaseFailed``."""
        loaded = self.model_for(case)
        try:
            outcome = self._measure(case, loaded, timed_rounds)
        except ModeMismatch as error:
            raise CaseFailed(str(error)) from None
        finally:
            self._free_memory()  # another error keeps its frames: its traceback is what the user needs
        if isinstance(outcome, str):
            raise CaseFailed(outcome)
        result = outcome
        result.bandwidth = self._bandwidth_ceiling(case, loaded, result)
        result.measurement_error = result.bandwidth.error
        if record and result.measurement_error is None:
            self.results.append(result)
        return result

    def _measure(self, case: Case, loaded: LoadedModel, timed_rounds: TimedRounds) -> CaseResult | str:
        """The case's result, or why it ran out of memory: that error leaves as a message, its frames cleared."""
        try:
            return self._measure_rounds(case, loaded, timed_rounds)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            message = _out_of_memory(case, error)
            _drop_frames(error)
            return message

    def _measure_rounds(self, case: Case, loaded: LoadedModel, timed_rounds: TimedRounds) -> CaseResult:
        """Warm-up, peak reset, timed rounds; the runner and tracker live in this frame only."""
        runner = CaseRunner(loaded, case, self.device)
        tracker = MemoryTracker(self.device)
        runner.warmup(self.sweep.warmup_rounds)
        tracker.reset()
        timed_rounds(runner.measured_round, tracker.sample, self.sweep.rounds)
        result = runner.result(tracker.read(), self.sweep.warmup_rounds)
        result.host_load = host_load()
        if self.profile_operators:
            result.operator_profile = profile_operators(runner.generate_once, self.device)
        return result

    def _bandwidth_ceiling(self, case: Case, loaded: LoadedModel, result: CaseResult) -> CeilingCheck:
        """Batch-1 decode on a GPU: its share of the memory-bandwidth ceiling (docs/facts.md §3), and
        an error if a round was faster than the ceiling allows (a measurement error)."""
        if case.batch_size != 1:
            return CeilingCheck()
        if self.device.kind != "gpu":
            return CeilingCheck(absent_reason="on a CPU: the ceiling is checked for GPUs (HBM bandwidth by SKU)")
        ceiling = batch1_decode_ceiling(
            self.device.name,
            Architecture.of(loaded.model.config.to_dict()),
            case.dtype,
            case.prompt_tokens,
            case.max_new_tokens,
            self.memory_bandwidth_bytes_per_s,
            weight_bytes=decode_weight_bytes(loaded.model),
        )
        return check_ceiling(ceiling, result.samples.get("decode_tokens_per_s", []))

    def release_model(self) -> None:
        """Drop the loaded model (before other processes need the device's memory)."""
        self._loaded = None
        self._free_memory()

    def _free_memory(self) -> None:
        gc.collect()
        if self.device.kind == "gpu":
            import_paddle().device.cuda.empty_cache()


def _drop_frames(error: BaseException) -> None:
    """Clear the locals of every finished frame the error (and the errors chained to it) passed through, and
    the tracebacks themselves: the tensors of a failed round are then free to go."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips the frames still running (this one's callers)
        current.__traceback__ = None
        pending += [chained for chained in (current.__cause__, current.__context__) if chained is not None]


def _out_of_memory(case: Case, error: BaseException) -> str:
    first_line = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return (
        f"{case.id} ran out of memory ({first_line.strip()[:200]}); the rest of the sweep goes on. "
        f"Try a smaller --llm-batch-size (now {case.batch_size}), --llm-prompt-tokens (now {case.prompt_tokens}) "
        f"or --llm-max-new-tokens (now {case.max_new_tokens})."
    )
