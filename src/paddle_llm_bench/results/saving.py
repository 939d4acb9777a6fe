"""The measured run reaches disk first, whole, and somewhere: pytest-benchmark's saves made atomic.

pytest-benchmark writes ``--benchmark-autosave``/``--benchmark-save`` files and ``--benchmark-json``
with a plain ``open(...).write``: a full disk leaves half a file, an unwritable folder a traceback
("file not found") and no results. ``install`` replaces those two writers on the session object:

- each file is written to a temporary file in the same folder, fsynced, then renamed into place
  (a new storage file is linked into place only if its number is still free, so concurrent runs
  sharing a storage folder never replace each other's file);
- a write that fails is reported with its cause (permission denied, read-only, disk full) and the
  run is written to ``rescue_dir`` instead; if that fails too, the report says nothing was saved;
- every saved path is recorded, so what runs afterwards (gate, baseline update) can add to the
  saved files, and a Ctrl-C or SIGTERM hint can name them.

Also here: SIGTERM (a CI cancel or timeout) asks for a stop that ``stopping.checkpoint`` turns into
the KeyboardInterrupt SIGINT raises, so pytest stops the same way and pytest-benchmark saves the
completed cases.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from paddle_llm_bench.core import stopping
from paddle_llm_bench.results.files import describe_os_error, write_atomic

SignalHandler = Callable[[int, FrameType | None], Any] | int | None
# How often a storage file's number is re-chosen when another run took it first.
NUMBER_RETRIES = 100


def default_rescue_dir() -> Path:
    """One folder per user: another user's folder in a shared temporary directory could not be written."""
    user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"paddle-llm-bench-unsaved-{user}"


@dataclass
class SaveLog:
    """What happened to this session's saved files."""

    rescue_dir: Path = field(default_factory=default_rescue_dir)
    saved: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [f"error: {e}" for e in self.errors]
        if stopping.requested():
            lines.append(
                f"stopped by {stopping.requested()}: the cases completed before it are kept, the rest are not run"
            )
        return lines


def install(bench_session: Any, log: SaveLog) -> None:
    """Replace pytest-benchmark's file writers on its session object with atomic ones that log to ``log``."""
    storage = bench_session.storage
    if hasattr(storage, "_next_num") and hasattr(storage, "get"):  # FileStorage; elasticsearch is left alone

        def save(output_json: dict[str, Any], save_name: str) -> None:
            save_to_storage(storage, output_json, save_name, log)

        storage.save = save

    def save_json(output_json: dict[str, Any]) -> None:
        save_to_path(Path(bench_session.json), output_json, log)

    bench_session.save_json = save_json


def dumps(output_json: dict[str, Any]) -> str:
    """pytest-benchmark's own serialization (non-JSON values as strings), so its tools read our files."""
    from pytest_benchmark.utils import safe_dumps

    return str(safe_dumps(output_json, ensure_ascii=True, indent=4))  # type: ignore[no-untyped-call]


def save_to_storage(storage: Any, output_json: dict[str, Any], save_name: str, log: SaveLog) -> Path | None:
    """The next ``NNNN_<name>.json`` in the storage folder, written atomically; on failure, the rescue copy."""
    text = dumps(output_json)
    folder = Path(storage.get("x")).parent
    target = folder / f"{storage._next_num}_{save_name}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)  # pytest-benchmark swallows this error; we name it
        for _ in range(NUMBER_RETRIES):
            try:
                write_atomic(target, text, overwrite=False)
                break
            except FileExistsError:
                target = folder / f"{storage._next_num}_{save_name}.json"
        else:
            raise FileExistsError(f"no free number for {target.name} after {NUMBER_RETRIES} tries")
    except OSError as error:
        return _rescue(target, text, error, log, f"move it into {folder} once the cause is fixed")
    storage.logger.info(f"Saved benchmark data in: {target}")
    log.saved.append(target)
    return target


def save_to_path(target: Path, output_json: dict[str, Any], log: SaveLog) -> Path | None:
    """``--benchmark-json PATH``, written atomically; on failure, the rescue copy."""
    text = dumps(output_json)
    try:
        write_atomic(target, text)
    except OSError as error:
        return _rescue(target, text, error, log, f"copy it to {target} once the cause is fixed")
    log.saved.append(target)
    return target


def _rescue(target: Path, text: str, error: OSError, log: SaveLog, then: str) -> Path | None:
    """Write the run to the rescue folder and log both the cause and where the run went."""
    problem = f"could not save the measured run to {target}: {describe_os_error(error)}"
    rescue = log.rescue_dir / target.name
    try:
        write_atomic(rescue, text, overwrite=False)
    except FileExistsError:
        rescue = log.rescue_dir / f"{os.getpid()}-{target.name}"
        return _rescue_again(rescue, text, problem, log, then)
    except OSError as rescue_error:
        log.errors.append(
            f"{problem}; nor to {rescue} ({describe_os_error(rescue_error)}): NOTHING of this run was saved, "
            "its results are only in this output"
        )
        return None
    log.errors.append(f"{problem}; the run was saved to {rescue} instead: {then}")
    log.saved.append(rescue)
    return rescue


def _rescue_again(rescue: Path, text: str, problem: str, log: SaveLog, then: str) -> Path | None:
    try:
        write_atomic(rescue, text)
    except OSError as error:
        log.errors.append(f"{problem}; nor to {rescue} ({describe_os_error(error)}): NOTHING of this run was saved")
        return None
    log.errors.append(f"{problem}; the run was saved to {rescue} instead: {then}")
    log.saved.append(rescue)
    return rescue


def add_to_saved(log: SaveLog, key: str, value: Any) -> None:
    """Add ``key`` to every saved file of this run (rewritten atomically); a failure is logged, the file kept."""
    for path in log.saved:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data[key] = value
            write_atomic(path, dumps(data))
        except (OSError, ValueError) as error:
            cause = describe_os_error(error) if isinstance(error, OSError) else str(error)
            log.errors.append(f"could not add {key} to {path} ({cause}); the measurements in it are intact")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    stopping.request("SIGTERM")


def stop_on_sigterm() -> SignalHandler:
    """SIGTERM stops the run at its next checkpoint, as Ctrl-C would; more of them change nothing.
    Returns the previous handler, for ``restore_sigterm``. Must run in the main thread (else ValueError)."""
    return signal.signal(signal.SIGTERM, _on_sigterm)


def keep_sigterm_handler() -> None:
    """Put the handler back: importing Paddle installs its own C++ handler and importing PaddleNLP resets
    it to the default (with sigaction, so ``signal.getsignal`` cannot see either); both kill the process
    with nothing saved."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def restore_sigterm(previous: SignalHandler) -> None:
    stopping.clear()
    signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
