"""Atomic file writes, storage errors that name their cause, and the lock around baseline updates.

Every file this tool writes goes through ``write_atomic``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
def locked_directory(directory: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the directory itself while the block runs: writers in other processes wait.

    Locking the directory (not a lock file in it) leaves nothing behind and needs no write permission,
    so a read-only directory still fails at the write, with its real cause. The lock is released when the
    process dies, so a killed run never leaves it held.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
