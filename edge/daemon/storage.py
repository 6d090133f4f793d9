"""The terminal's disk: free space, and SQLite's disk errors as typed :class:`~edge.errors.StorageError` leaves.

Why one place: a full SD card must look the same wherever it is met (the outbox at start-up, a commit after a read,
the delete after a PUBACK, the replay guard): a storage fault the officer can act on, never a failed card or a
"damaged" database. SQLite does not always say "full": opening a database whose ``-wal``/``-shm`` cannot grow
fails with a plain "disk I/O error", so an I/O error on a filesystem without room is called full as well.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.errors import EdgeError, StorageError, StorageFullError

#: Below this much free space an I/O error is taken for a full disk (SQLite needs a few pages for its WAL).
NEARLY_FULL_BYTES = 1024 * 1024
#: SQLite's primary result codes that mean the disk, not the database's content (the low byte of extended codes).
_DISK_CODES = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY,
               sqlite3.SQLITE_PERM}  # fmt: skip
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``directory`` (``statvfs``)."""
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def _nearly_full(directory: Path) -> bool:
    try:
        return free_bytes(directory) < NEARLY_FULL_BYTES
    except OSError:
        return False


def is_disk_error(exc: BaseException) -> bool:
    """Whether ``exc`` is about the disk (full, I/O, permissions) rather than a database's content or a bug."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _DISK_CODES
    return isinstance(exc, OSError) and not isinstance(exc, EdgeError)


def storage_error(exc: sqlite3.Error | OSError, path: Path) -> StorageError:
    """The typed error for a disk error met on ``path``: :class:`StorageFullError` when there is no room."""
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        full = code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _nearly_full(path.parent))
        message = str(exc)
    else:
        full = exc.errno in _FULL_ERRNOS
        message = exc.strerror or str(exc)
    if full:
        return StorageFullError(f"storage full ({message})", path=str(path))
    return StorageError(message, path=str(path))


@contextmanager
def sqlite_errors_typed(path: Path) -> Iterator[None]:
    """Re-raise SQLite's disk errors met inside the block as a :class:`StorageError` for the database ``path``.

    Only :class:`sqlite3.Error` is looked at: an ``OSError`` raised by other code in the block (a signer called
    inside a transaction) is not a disk error of this database.
    """
    try:
        yield
    except sqlite3.Error as exc:
        if not is_disk_error(exc):
            raise
        raise storage_error(exc, path) from exc
