"""Durable outbox: a result is committed to SQLite before anyone tries to publish it, and deleted only on PUBACK.

Why SQLite (WAL, ``synchronous=FULL``): one file, atomic commits that survive ``kill -9`` and power loss, and
readable with standard tools by a support technician. ``seq`` is allocated in the same transaction that stores the
payload, so it is strictly increasing and gap-free across restarts; the office uses it to spot lost results.

Personal data at rest: every payload is sealed with AES-256-GCM under a key in ``outbox.key`` (0600, next to the
database). We do this even when results are already JWE-encrypted to the ward, because JWE is optional in the
config and a copied database file, a stale WAL page or a backup must not leak a citizen's data either way.
``secure_delete`` zeroes the pages of acknowledged rows. The key beside the database does not protect against
someone who has root on the terminal; it protects the file when it travels without the key.

When the queue is full (count or bytes), :meth:`Outbox.enqueue` raises :class:`OutboxFullError`: the terminal
refuses new reads with a visible reason rather than dropping older results.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.errors import DeliveryError, OutboxCorruptError, OutboxFullError
from edge.files import create_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL UNIQUE,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('last_seq', 0);
"""
_AAD = b"cccd-edge outbox v1"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    seq: int
    created: float  # unix seconds at enqueue
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    count: int
    bytes: int
    last_seq: int


def _load_key(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        raise DeliveryError(f"{path} is readable by group/others; chmod 600 it")
    key = path.read_bytes()
    if len(key) != 32:
        raise OutboxCorruptError(f"{path} does not hold a 32-byte key")
    return key


def _load_or_create_key(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load_key(path)
    key = AESGCM.generate_key(bit_length=256)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return key


#: The outbox database's name in the state directory (the daemon's and ``cccd-edge doctor``'s).
OUTBOX_FILE = "outbox.db"


def key_path(database: Path) -> Path:
    """Where the AES key that seals ``database``'s entries lives: beside it, never inside it."""
    return database.with_suffix(".key")


def read_only_uri(path: Path) -> str:
    """An SQLite URI that reads ``path`` and creates nothing beside it. Without a ``-wal`` file the database is
    complete in the main file and is opened immutable (no ``-shm`` is made, which as root would lock the service
    user out); with one, its ``-shm`` exists already and a plain read-only connection sees the latest commits."""
    wal = path.with_name(path.name + "-wal")
    return f"{path.as_uri()}?mode=ro" + ("" if wal.exists() else "&immutable=1")


class Outbox:
    """A bounded, durable, encrypted FIFO of signed result tokens, ordered by ``seq``. Thread-safe."""

    def __init__(self, path: Path, *, max_count: int, max_bytes: int, read_only: bool = False) -> None:
        """``read_only`` (``cccd-edge doctor``): an existing outbox and key, opened without creating or changing
        any file, so a check run as root leaves nothing the service user cannot write."""
        self.path = path
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            if read_only:
                self._aead = AESGCM(_load_key(key_path(path)))
                self._db = sqlite3.connect(read_only_uri(path), uri=True, check_same_thread=False, timeout=30)
                return
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._aead = AESGCM(_load_or_create_key(key_path(path)))
            create_private(path)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise OutboxCorruptError(f"cannot open outbox {path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _seal(self, seq: int, payload: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        return nonce, self._aead.encrypt(nonce, payload, _AAD + struct.pack(">Q", seq))

    def _open(self, seq: int, nonce: bytes, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, sealed, _AAD + struct.pack(">Q", seq))
        except InvalidTag:
            raise OutboxCorruptError(f"outbox entry seq {seq} does not decrypt (wrong key or damaged)") from None

    def enqueue(self, payload: bytes | Callable[[int], bytes], *, now: float | None = None) -> tuple[int, int]:
        """Store a payload durably and return ``(id, seq)``; the commit is on disk when this returns.

        ``payload`` may be a function of the allocated ``seq`` (the signed token carries its own seq): it runs
        inside the transaction, so a failure there consumes no seq.
        """
        created = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                last_seq = self._db.execute("SELECT value FROM meta WHERE name='last_seq'").fetchone()[0]
                count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
                seq = last_seq + 1
                data = payload(seq) if callable(payload) else payload
                if count >= self.max_count or size + len(data) > self.max_bytes:
                    raise OutboxFullError(
                        f"outbox full ({count}/{self.max_count} results, {size}/{self.max_bytes} bytes)"
                    )
                nonce, sealed = self._seal(seq, data)
                cursor = self._db.execute(
                    "INSERT INTO outbox (seq, created, size, nonce, sealed) VALUES (?, ?, ?, ?, ?)",
                    (seq, created, len(data), nonce, sealed),
                )
                self._db.execute("UPDATE meta SET value=? WHERE name='last_seq'", (seq,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        entry_id = cursor.lastrowid
        assert entry_id is not None
        return entry_id, seq

    def pending(self, *, after_seq: int = 0, limit: int = 1000) -> list[OutboxEntry]:
        """Undelivered entries with ``seq > after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, seq, created, nonce, sealed FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxEntry(row[0], row[1], row[2], self._open(row[1], row[3], row[4])) for row in rows]

    def ack(self, entry_id: int) -> bool:
        """Delete a delivered entry; False when it was already gone (a duplicate PUBACK)."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM outbox WHERE id=?", (entry_id,))
        return cursor.rowcount == 1

    def ack_many(self, entry_ids: list[int]) -> int:
        """Delete several delivered entries in one commit (one fsync); returns how many were still there."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = sum(
                    self._db.execute("DELETE FROM outbox WHERE id=?", (entry_id,)).rowcount for entry_id in entry_ids
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return deleted

    def stats(self) -> OutboxStats:
        with self._lock:
            count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
            last_seq = self._db.execute("SELECT value FROM meta WHERE name='last_seq'").fetchone()[0]
        return OutboxStats(count=count, bytes=size, last_seq=last_seq)

    def has_room(self, expected_bytes: int = 0, *, stats: OutboxStats | None = None) -> bool:
        """Whether one more result of about ``expected_bytes`` fits: checked before starting a read. ``stats`` just
        read by the caller saves a second query."""
        stats = self.stats() if stats is None else stats
        return stats.count < self.max_count and stats.bytes + expected_bytes <= self.max_bytes
