"""The one place that knows whether we run on a GPU or a CPU.

Paddle is imported lazily, quietly and offline. Everything device-specific (synchronizing,
which dtypes have kernels) is found by probing, never from a hard-coded table, so a CPU and a
GPU machine take the same code path except inside this module and ``memory.py``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from paddle_llm_bench.core.config import ConfigError
from paddle_llm_bench.core.record import Readings
from paddle_llm_bench.runtime.nvml import NvmlDevice, NvmlUnavailable, open_device

DEVICE_CHOICES = ("auto", "cpu", "gpu")


@contextlib.contextmanager
def sigterm_handler_kept() -> Iterator[None]:
    """Importing Paddle installs its own C++ SIGTERM handler and importing PaddleNLP resets it to the default,
    with sigaction, unseen by ``signal.getsignal``: either kills the process with nothing saved. Around such an
    import, SIGTERM is held back and the Python handler installed before is put back, then the held signal
    (if one came) reaches it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        if callable(before):
            signal.signal(signal.SIGTERM, before)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def import_paddle(cache_dir: Path | None = None) -> ModuleType:
    """Import Paddle with logs quiet and PaddleNLP's home inside our cache (no ``~/.paddlenlp``)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    if cache_dir is not None:
        os.environ.setdefault("PPNLP_HOME", str(cache_dir / "paddlenlp-home"))
    if "paddle" not in sys.modules:  # the first import only: later calls cost a dictionary lookup
        with sigterm_handler_kept():
            import paddle
    import paddle

    return paddle


def import_paddlenlp() -> ModuleType:
    if "paddlenlp" not in sys.modules:
        with sigterm_handler_kept():
            import paddlenlp
    import paddlenlp
    from paddlenlp.utils.log import logger

    logger.set_level("ERROR")
    module: ModuleType = paddlenlp
    return module


@dataclass(frozen=True)
class Device:
    """Where generation runs. ``kind`` is ``"gpu"`` or ``"cpu"``; ``place`` is Paddle's name."""

    kind: str
    index: int
    name: str
    # NVML's view of this GPU, or why there is none: opened at the first ``nvml()`` and kept.
    _nvml: NvmlDevice | NvmlUnavailable | None = field(default=None, init=False, repr=False, compare=False)

    def nvml(self) -> NvmlDevice:
        """NVML's view of this GPU, opened once per ``Device`` and shared by everything that reads it (energy,
        clock events, violation counters, process memory, machine facts); ``NvmlUnavailable`` (remembered as
        well) where there is none. Call it only for a GPU: a CPU has no NVML device."""
        if self.kind != "gpu":
            raise NvmlUnavailable(f"{self.place} is not a GPU: NVML has nothing to say about it")
        if self._nvml is None:
            try:
                opened: NvmlDevice | NvmlUnavailable = open_device(self.index)
            except NvmlUnavailable as error:
                opened = error
            object.__setattr__(self, "_nvml", opened)  # frozen: set once, here
        if isinstance(self._nvml, NvmlUnavailable):
            raise self._nvml
        assert self._nvml is not None
        return self._nvml

    @property
    def place(self) -> str:
        return f"gpu:{self.index}" if self.kind == "gpu" else "cpu"

    @property
    def synchronize(self) -> Callable[[], None]:
        """A function that waits for the device's queued work (a no-op on a CPU, whose kernels are synchronous)."""
        if self.kind == "gpu":
            paddle = import_paddle()
            return functools.partial(paddle.device.synchronize, self.place)
        return _no_op

    def activate(self) -> None:
        """Make it Paddle's current device: models and inputs are created where this says, not where
        the last ``paddle.set_device`` left them (a CPU case on a GPU build would run on the GPU)."""
        import_paddle().set_device(self.place)

    def describe(self) -> str:
        return f"{self.place} ({self.name})"


def _no_op() -> None:
    return None


def detect_device(requested: str = "auto") -> Device:
    """The GPU if Paddle was built with CUDA and sees one (``auto``/``gpu``), else the CPU."""
    if requested not in DEVICE_CHOICES:
        raise ConfigError(f"invalid device {requested!r}: allowed values are {', '.join(DEVICE_CHOICES)}")
    paddle = import_paddle()
    if requested == "cpu":  # asked for: CUDA is not even queried (a GPU build with a broken driver still runs)
        paddle.set_device("cpu")
        return Device("cpu", 0, _cpu_model())
    gpu_count = paddle.device.cuda.device_count() if paddle.is_compiled_with_cuda() else 0
    if requested == "gpu" and gpu_count == 0:
        why = "Paddle was built without CUDA" if not paddle.is_compiled_with_cuda() else "no GPU is visible"
        raise ConfigError(
            f"--llm-device gpu was asked for but {why}: install paddlepaddle-gpu (see README, 'On a GPU') "
            "or use --llm-device cpu"
        )
    if gpu_count > 0:
        paddle.set_device("gpu:0")
        return Device("gpu", 0, str(paddle.device.cuda.get_device_name(0)))
    paddle.set_device("cpu")
    return Device("cpu", 0, _cpu_model())


def device_kind_without_paddle(requested: str = "auto") -> str:
    """The kind ``detect_device`` chooses, found without importing Paddle, for runs that measure nothing
    (``--collect-only``, ``--benchmark-skip``): a CUDA build (``paddlepaddle-gpu``) and a GPU NVML sees."""
    if requested in ("cpu", "gpu"):
        return requested
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return "cpu"
    try:
        importlib.metadata.distribution("paddlepaddle-gpu")
    except importlib.metadata.PackageNotFoundError:
        return "cpu"
    from paddle_llm_bench.runtime.nvml import gpu_count

    return "gpu" if gpu_count() > 0 else "cpu"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def is_out_of_memory(error: BaseException) -> bool:
    """Paddle's and Python's ways of saying a device or the host ran out of memory."""
    return (
        isinstance(error, MemoryError)
        or "out of memory" in str(error).lower()
        or "ResourceExhausted" in type(error).__name__
    )


def first_line(error: BaseException) -> str:
    """The error's type and first meaningful line, for a one-line reason."""
    text = str(error).strip()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not set(stripped) <= set("-="):
            return f"{type(error).__name__}: {stripped[:300]}"
    return type(error).__name__


def paddle_version_info() -> Readings:
    paddle = import_paddle()
    return {
        "paddle_version": paddle.__version__,
        "paddle_commit": paddle.version.commit,
        "paddle_cuda_version": paddle.version.cuda(),
        "paddle_cudnn_version": paddle.version.cudnn(),
        "paddle_compiled_with_cuda": bool(paddle.is_compiled_with_cuda()),
    }
