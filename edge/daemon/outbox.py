"""Durable outbox: a result is committed to SQLite before anyone tries to publish it, and deleted only once it is
safe elsewhere: on the office gateway's signed receipt (``delivery.mode = "receipt"``), or on the broker's PUBACK
(PUBACK-only delivery).

Two queues in one table: *unpublished* (``published`` NULL: never acknowledged by the broker) and *awaiting receipt*
(``published`` holds the time of the last PUBACK, ``attempts`` how many PUBACKs it has had). A receipt deletes the
results it names whatever their queue (:meth:`Outbox.delete_named`); both queues count against the limits, since a
result awaiting its receipt is as much the terminal's to keep as one never sent. ``jti`` is the result's own id as
receipts name it: given by the sealer (a JWE's claims are sealed to the ward), else read from a JWS payload.

Why SQLite (WAL, ``synchronous=FULL``): one file, atomic commits that survive ``kill -9`` and power loss, and
readable with standard tools by a support technician. ``seq`` is allocated in the same transaction that stores the
payload, so it is strictly increasing and gap-free across restarts; the office uses it to spot lost results.

Personal data at rest: every payload is sealed with AES-256-GCM under a key in ``outbox.key`` (0600, next to the
database). We do this even when results are already JWE-encrypted to the ward, because JWE is optional in the
config and a copied database file, a stale WAL page or a backup must not leak a citizen's data either way.
``secure_delete`` zeroes the pages of acknowledged rows. The key beside the database does not protect against
someone who has root on the terminal; it protects the file when it travels without the key.

When the queue is full (count or bytes), :meth:`Outbox.enqueue` raises :class:`OutboxFullError`: the terminal
refuses new reads with a visible reason rather than dropping older results. A disk error (full, I/O) is a
:class:`~edge.errors.StorageError`, never "damaged": the data already committed is intact.

One entry that no longer decrypts must not block every later one: it is moved to the ``quarantine`` table (kept
sealed, for support) and reported once. That is only done once the key is known to be this database's (a sealed
``key_check`` row opens): with a wrong key every entry would fail, and that is a fault to fix, not data to move.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.daemon.storage import free_bytes, is_disk_error, sqlite_errors_typed, storage_error
from edge.errors import DeliveryError, OutboxCorruptError, OutboxFullError
from edge.files import create_private
from edge.protocol.receipt import readable_result_jti

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL UNIQUE,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    published REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    jti TEXT
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    moved REAL NOT NULL,
    reason TEXT NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS key_check (id INTEGER PRIMARY KEY CHECK (id = 1), nonce BLOB NOT NULL, sealed BLOB NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('last_seq', 0);
"""
#: Columns an outbox from before receipts lacks (added on open; a read-only outbox reads as all unpublished).
_RECEIPT_COLUMNS = {"published": "REAL", "attempts": "INTEGER NOT NULL DEFAULT 0", "jti": "TEXT"}
_PENDING = ("SELECT id, seq, created, nonce, sealed, attempts, jti FROM outbox WHERE published IS NULL AND seq > ? "
            "ORDER BY seq LIMIT ?")
_PENDING_BEFORE_RECEIPTS = ("SELECT id, seq, created, nonce, sealed, 0, NULL FROM outbox WHERE seq > ? "
                            "ORDER BY seq LIMIT ?")
_ENTRY = "SELECT id, seq, created, nonce, sealed, attempts, jti FROM outbox WHERE id=?"
_RECEIPT_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (seq) WHERE published IS NULL;
CREATE INDEX IF NOT EXISTS outbox_jti ON outbox (jti);
"""
_AAD = b"cccd-edge outbox v1"
_KEY_CHECK_AAD = _AAD + b" key check"
_KEY_CHECK = b"this key seals this outbox"
#: Entries tried when an outbox from before the key check is opened: the key is its own if one of them opens.
_KEY_PROOF_SAMPLE = 16
#: Why an entry was quarantined (the only reason so far; the event and doctor name it).
UNDECRYPTABLE = "undecryptable"
_DAMAGED_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    seq: int
    created: float  # unix seconds at enqueue
    payload: bytes
    attempts: int = 0  # PUBACKs so far: 0 unpublished, else awaiting its receipt
    jti: str | None = None


@dataclass(frozen=True, slots=True)
class Payload:
    """What :meth:`Outbox.enqueue` stores: the token and, when the outbox cannot read it from the token (a JWE is
    sealed to the ward), the result's ``jti`` that receipts name."""

    data: bytes
    jti: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    count: int  # both queues: what the limits count
    bytes: int
    last_seq: int
    quarantined: int = 0  # entries moved aside because they no longer decrypt
    awaiting: int = 0  # published (PUBACK), awaiting the office's receipt
    most_attempts: int = 0  # the most PUBACKs one entry awaiting a receipt has had
    oldest_published: float | None = None  # unix seconds of the oldest last PUBACK among those awaiting a receipt

    @property
    def unpublished(self) -> int:
        """Entries the broker has not acknowledged yet."""
        return self.count - self.awaiting


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
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
    except OSError:
        path.unlink(missing_ok=True)  # an empty key left by a full disk would later read as "damaged"
        raise
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

    def __init__(self, path: Path, *, max_count: int, max_bytes: int, min_free_bytes: int = 0,
                 read_only: bool = False) -> None:
        """``min_free_bytes``: the disk reserve :meth:`has_room` keeps (SQLite needs room for its WAL, the system
        for its logs). ``read_only`` (``cccd-edge doctor``): an existing outbox and key, opened without creating
        or changing any file, so a check run as root leaves nothing the service user cannot write."""
        self.path = path
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self.read_only = read_only
        self._lock = threading.Lock()
        try:
            if read_only:
                self._aead = AESGCM(_load_key(key_path(path)))
                self._db = sqlite3.connect(read_only_uri(path), uri=True, check_same_thread=False, timeout=30)
            else:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._aead = AESGCM(_load_or_create_key(key_path(path)))
                create_private(path)
                self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA secure_delete=ON")
                self._db.executescript(_SCHEMA)
                self._add_receipt_columns()
            self._tracks_receipts = self._has_receipt_columns()
            self._key_proven = self._prove_key()
            self._unreported = self._count_unreported()
        except (sqlite3.Error, OSError) as exc:
            if is_disk_error(exc):
                raise storage_error(exc, path) from exc
            raise OutboxCorruptError(f"cannot open outbox {path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _has_receipt_columns(self) -> bool:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        return columns >= _RECEIPT_COLUMNS.keys()

    def _add_receipt_columns(self) -> None:
        """An outbox from before receipts: its entries were never acknowledged (those were deleted), so they stay
        unpublished."""
        if not self._has_receipt_columns():
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
            with self._db:  # one transaction: an interrupted upgrade leaves the old table, upgraded next time
                self._db.execute("BEGIN IMMEDIATE")
                for name, kind in _RECEIPT_COLUMNS.items():
                    if name not in columns:
                        self._db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
        self._db.executescript(_RECEIPT_INDEXES)

    # --- keys and sealing ----------------------------------------------------------------------------------------

    def _seal(self, seq: int, payload: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        return nonce, self._aead.encrypt(nonce, payload, _AAD + struct.pack(">Q", seq))

    def _opened(self, seq: int, nonce: bytes, sealed: bytes) -> bytes | None:
        try:
            return self._aead.decrypt(nonce, sealed, _AAD + struct.pack(">Q", seq))
        except InvalidTag:
            return None

    def _prove_key(self) -> bool:
        """Whether the key is this database's: the sealed check row opens, or (an outbox from before the check)
        one of the oldest entries does; a writable outbox then stores the check row for next time."""
        row = self._db.execute("SELECT nonce, sealed FROM key_check").fetchone()
        if row is not None:
            try:
                return self._aead.decrypt(row[0], row[1], _KEY_CHECK_AAD) == _KEY_CHECK
            except InvalidTag:
                return False
        sample = self._db.execute("SELECT seq, nonce, sealed FROM outbox ORDER BY seq LIMIT ?",
                                  (_KEY_PROOF_SAMPLE,)).fetchall()  # fmt: skip
        if sample and all(self._opened(*entry) is None for entry in sample):
            return False
        if not self.read_only:
            nonce = os.urandom(12)
            self._db.execute("INSERT INTO key_check (id, nonce, sealed) VALUES (1, ?, ?)",
                             (nonce, self._aead.encrypt(nonce, _KEY_CHECK, _KEY_CHECK_AAD)))  # fmt: skip
        return True

    # --- transactions --------------------------------------------------------------------------------------------

    @contextmanager
    def _typed_errors(self) -> Iterator[None]:
        """SQLite's errors as this module's: the disk's as :class:`StorageError`, a damaged file's as
        :class:`OutboxCorruptError`; anything else (a bug) as it is."""
        try:
            with sqlite_errors_typed(self.path):
                yield
        except sqlite3.DatabaseError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF not in _DAMAGED_CODES:
                raise
            raise OutboxCorruptError(f"outbox {self.path} is damaged: {exc}") from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock, with typed errors."""
        with self._lock, self._typed_errors():
            yield self._db

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` under the lock. A disk error is a typed :class:`StorageError`, and
        a failed ``ROLLBACK`` never hides the error that caused it (SQLite may already have rolled back itself,
        as it does when a commit finds the disk full)."""
        with self._lock, self._typed_errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error as rollback:
                        log.warning("outbox rollback failed too: %s", rollback)
                raise

    # --- the queue -----------------------------------------------------------------------------------------------

    def enqueue(self, payload: bytes | Payload | Callable[[int], bytes | Payload], *,
                now: float | None = None) -> tuple[int, int]:  # fmt: skip
        """Store a payload durably and return ``(id, seq)``; the commit is on disk when this returns.

        ``payload`` may be a function of the allocated ``seq`` (the signed token carries its own seq): it runs
        inside the transaction, so a failure there (or in the commit) consumes no seq: the next enqueue gets it.
        """
        created = time.time() if now is None else now
        with self._writing() as db:
            last_seq = db.execute("SELECT value FROM meta WHERE name='last_seq'").fetchone()[0]
            count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
            seq = last_seq + 1
            made = payload(seq) if callable(payload) else payload
            data, jti = (made.data, made.jti) if isinstance(made, Payload) else (made, None)
            if count >= self.max_count or size + len(data) > self.max_bytes:
                raise OutboxFullError(f"outbox full ({count}/{self.max_count} results, {size}/{self.max_bytes} bytes)")
            nonce, sealed = self._seal(seq, data)
            cursor = db.execute(
                "INSERT INTO outbox (seq, created, size, nonce, sealed, jti) VALUES (?, ?, ?, ?, ?, ?)",
                (seq, created, len(data), nonce, sealed, jti if jti is not None else readable_result_jti(data)),
            )
            db.execute("UPDATE meta SET value=? WHERE name='last_seq'", (seq,))
        entry_id = cursor.lastrowid
        assert entry_id is not None
        return entry_id, seq

    def pending(self, *, after_seq: int = 0, limit: int = 1000) -> list[OutboxEntry]:
        """Unpublished entries with ``seq > after_seq``, oldest first.

        An entry that does not decrypt under this database's key is moved to the quarantine (a read-only outbox
        skips it) and the rest are returned; with a key not proven to be this database's, it raises
        :class:`OutboxCorruptError` instead: then every entry would fail, and none may be moved.
        """
        query = _PENDING if self._tracks_receipts else _PENDING_BEFORE_RECEIPTS
        with self._reading() as db:
            rows = db.execute(query, (after_seq, limit)).fetchall()
        return self._opened_entries(rows)

    def entries(self, entry_ids: list[int]) -> list[OutboxEntry]:
        """The entries of ``entry_ids`` still here (a receipt may have taken some), in seq order: to publish again."""
        with self._reading() as db:
            rows = [row for entry_id in entry_ids for row in db.execute(_ENTRY, (entry_id,)).fetchall()]
        return self._opened_entries(sorted(rows, key=lambda row: int(row[1])))

    def _opened_entries(self, rows: list[tuple[int, int, float, bytes, bytes, int, str | None]]) -> list[OutboxEntry]:
        """Decrypted entries of ``rows``; the undecryptable ones quarantined (:meth:`pending`)."""
        entries: list[OutboxEntry] = []
        damaged: list[int] = []
        for entry_id, seq, created, nonce, sealed, attempts, jti in rows:
            payload = self._opened(seq, nonce, sealed)
            if payload is not None:
                entries.append(OutboxEntry(entry_id, seq, created, payload, attempts, jti))
            elif not self._key_proven:
                raise OutboxCorruptError(f"outbox entry seq {seq} does not decrypt (wrong key or damaged)")
            else:
                damaged.append(seq)
        if damaged and not self.read_only:
            self._quarantine(damaged, UNDECRYPTABLE)
        return entries

    def _quarantine(self, seqs: list[int], reason: str) -> None:
        """Move entries aside in one commit, sealed as they were: support may still open them with a backup key."""
        with self._writing() as db:
            for seq in seqs:
                db.execute("INSERT OR REPLACE INTO quarantine (seq, created, moved, reason, nonce, sealed) "
                           "SELECT seq, created, ?, ?, nonce, sealed FROM outbox WHERE seq=?",
                           (time.time(), reason, seq))  # fmt: skip
                db.execute("DELETE FROM outbox WHERE seq=?", (seq,))
            self._unreported += len(seqs)
        log.error("outbox: %d entr%s quarantined (%s): seq %s", len(seqs), "y" if len(seqs) == 1 else "ies",
                  reason, ", ".join(map(str, seqs)))

    def _count_unreported(self) -> int:
        count: int = self._db.execute("SELECT COUNT(*) FROM quarantine WHERE reported=0").fetchone()[0]
        return count

    @property
    def unreported_quarantine(self) -> int:
        """Quarantined entries the office has not been told about (cheap: kept in memory)."""
        return self._unreported

    def quarantine_to_report(self) -> list[tuple[int, str]]:
        """``(seq, reason)`` of each quarantined entry not yet reported, oldest first."""
        with self._reading() as db:
            rows = db.execute("SELECT seq, reason FROM quarantine WHERE reported=0 ORDER BY seq").fetchall()
        return [(int(seq), str(reason)) for seq, reason in rows]

    def mark_reported(self, seqs: list[int]) -> None:
        """The office acknowledged the report of these quarantined entries: never report them again."""
        with self._writing() as db:
            changed = sum(db.execute("UPDATE quarantine SET reported=1 WHERE seq=? AND reported=0",
                                     (seq,)).rowcount for seq in seqs)  # fmt: skip
            self._unreported = max(0, self._unreported - changed)

    def ack(self, entry_id: int) -> bool:
        """Delete a delivered entry; False when it was already gone (a duplicate PUBACK)."""
        return self.ack_many([entry_id]) == 1

    # --- awaiting receipts ---------------------------------------------------------------------------------------

    def mark_published(self, entry_ids: list[int], *, now: float | None = None) -> dict[int, int]:
        """The broker acknowledged these entries: they now await a receipt. Returns ``{id: attempts}`` for each one
        still here (a receipt that came first has deleted it), in one commit."""
        published = time.time() if now is None else now
        attempts: dict[int, int] = {}
        with self._writing() as db:
            for entry_id in entry_ids:
                row = db.execute("UPDATE outbox SET published=?, attempts=attempts+1 WHERE id=? RETURNING attempts",
                                 (published, entry_id)).fetchone()  # fmt: skip
                if row is not None:
                    attempts[entry_id] = int(row[0])
        return attempts

    def awaiting(self) -> list[tuple[int, int]]:
        """``(id, attempts)`` of every entry awaiting a receipt, in seq order (no payload is opened)."""
        if not self._tracks_receipts:
            return []
        with self._reading() as db:
            rows = db.execute("SELECT id, attempts FROM outbox WHERE published IS NOT NULL ORDER BY seq").fetchall()
        return [(int(entry_id), int(attempts)) for entry_id, attempts in rows]

    def unpublish_awaiting(self) -> int:
        """Make every result awaiting a receipt unpublished again (a terminal switched to PUBACK-only delivery: it
        publishes them once more and deletes them on that PUBACK; the copy the broker acknowledged may have expired
        there). Returns how many."""
        if not self._tracks_receipts:
            return 0
        with self._writing() as db:
            return db.execute("UPDATE outbox SET published=NULL WHERE published IS NOT NULL").rowcount

    def delete_named(self, jtis: Sequence[str], seq_ranges: Sequence[tuple[int, int]],
                     names: Callable[[int, str | None], bool]) -> list[tuple[int, int]]:  # fmt: skip
        """Delete the entries a receipt names, in one commit, and return their ``(id, seq)``. Candidates are the
        entries with one of ``jtis`` or a seq in ``seq_ranges``; ``names(seq, jti)`` (the receipt's rule, ``jti``
        None when the outbox does not know it) decides."""
        deleted: list[tuple[int, int]] = []
        with self._writing() as db:
            rows: set[tuple[int, int, str | None]] = set()
            for named in jtis:
                rows.update(db.execute("SELECT id, seq, jti FROM outbox WHERE jti=?", (named,)).fetchall())
            for first, last in seq_ranges:
                rows.update(db.execute("SELECT id, seq, jti FROM outbox WHERE seq BETWEEN ? AND ?",
                                       (first, last)).fetchall())  # fmt: skip
            for entry_id, seq, jti in sorted(rows, key=lambda row: int(row[1])):
                if names(seq, jti):
                    db.execute("DELETE FROM outbox WHERE id=?", (entry_id,))
                    deleted.append((int(entry_id), int(seq)))
        return deleted

    def ack_many(self, entry_ids: list[int]) -> int:
        """Delete several delivered entries in one commit (one fsync); returns how many were still there."""
        with self._writing() as db:
            return sum(db.execute("DELETE FROM outbox WHERE id=?", (entry_id,)).rowcount for entry_id in entry_ids)

    def stats(self) -> OutboxStats:
        with self._reading() as db:
            count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
            last_seq = db.execute("SELECT value FROM meta WHERE name='last_seq'").fetchone()[0]
            quarantined = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
            awaiting, most_attempts, oldest = (db.execute(
                "SELECT COUNT(*), COALESCE(MAX(attempts), 0), MIN(published) FROM outbox WHERE published IS NOT NULL"
            ).fetchone() if self._tracks_receipts else (0, 0, None))  # fmt: skip
        return OutboxStats(count=count, bytes=size, last_seq=last_seq, quarantined=quarantined, awaiting=awaiting,
                           most_attempts=most_attempts, oldest_published=oldest)  # fmt: skip

    # --- room ----------------------------------------------------------------------------------------------------

    def within_limits(self, expected_bytes: int = 0, *, stats: OutboxStats | None = None) -> bool:
        """Whether one more result of about ``expected_bytes`` fits the configured count and size limits."""
        stats = self.stats() if stats is None else stats
        return stats.count < self.max_count and stats.bytes + expected_bytes <= self.max_bytes

    def free_bytes(self) -> int:
        """Free bytes on the disk holding the outbox (0 when it cannot even be asked)."""
        try:
            return free_bytes(self.path.parent)
        except OSError:
            return 0

    def disk_has_room(self, expected_bytes: int = 0) -> bool:
        """Whether the disk keeps its reserve (``min_free_bytes``) after one more result of ``expected_bytes``."""
        return self.free_bytes() >= self.min_free_bytes + expected_bytes

    def has_room(self, expected_bytes: int = 0, *, stats: OutboxStats | None = None) -> bool:
        """Whether one more result of about ``expected_bytes`` can be stored: checked before starting a read.
        ``stats`` just read by the caller saves a second query."""
        return self.within_limits(expected_bytes, stats=stats) and self.disk_has_room(expected_bytes)
