"""Atomic file writes, versioned JSON documents read and written, storage errors that name their cause, and
the lock around baseline updates.

Every file this tool writes goes through ``write_atomic``; every versioned document (``core.versioned``)
through ``read_document`` and ``write_document``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from paddle_llm_bench.core.versioned import Format, FormatError

# What an OSError's errno means for a user whose results were being written.
CAUSES = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOENT: "the folder does not exist and could not be created",
    errno.ENOTDIR: "a path component is a file, not a folder",
    errno.EIO: "input/output error on the device",
}


def write_atomic(path: Path, content: str | bytes, overwrite: bool = True) -> None:
    """A temporary file beside the target, fsync, rename: a crash or Ctrl-C leaves the old file or the
    whole new one, never half of one. The file gets the usual permissions (0666 less the umask), not
    mkstemp's private 0600, so committed files stay readable by all.

    With ``overwrite=False`` the file is linked into place only if ``path`` does not exist yet
    (``FileExistsError`` otherwise), so two writers choosing the same new name never replace each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # atomic, and fails if the name is taken
        _fsync_directory(path.parent)
    finally:
        Path(temporary).unlink(missing_ok=True)


def read_document(path: Path, kind: Format) -> dict[str, Any]:
    """The document in ``path``, checked and upgraded to ``kind``'s current format. A FormatError names the file
    and what is wrong with it (unreadable, not JSON, not of this kind, newer); the file is never changed."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FormatError(f"cannot read {kind.name} {path}: not valid JSON ({error})") from None
    except OSError as error:
        raise FormatError(f"cannot read {kind.name} {path}: {describe_os_error(error)}") from None
    try:
        return kind.upgrade(document)
    except FormatError as error:
        raise type(error)(f"{kind.name} {path} {error}") from None  # a newer format stays a NewerFormatError


def write_document(
    path: Path, kind: Format, document: dict[str, Any], indent: int = 1, sort_keys: bool = False
) -> None:
    """``document`` stamped with ``kind``'s tag and current version, written atomically as UTF-8."""
    text = json.dumps(kind.stamp(document), indent=indent, sort_keys=sort_keys, ensure_ascii=False)
    write_atomic(path, text + "\n")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (a power cut after it keeps the new name)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def describe_os_error(error: OSError) -> str:
    """The cause in words, then the system's own message: 'permission denied ([Errno 13] ...)'."""
    cause = CAUSES.get(error.errno or 0, type(error).__name__)
    return f"{cause} ({error})"


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a file or folder; it need not exist) between the processes of this machine
    while the block runs: writers wait. ``filelock`` (``flock`` on POSIX, ``msvcrt`` on Windows) on a file in the
    temporary folder named after ``path``'s hash, so nothing is left beside ``path``, no write permission there
    is needed (a read-only folder still fails at the write, with its real cause), and a killed run never leaves
    the lock held: it dies with its process."""
    key = hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"paddle-llm-bench-{key}.lock"):
        yield
