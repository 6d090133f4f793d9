"""Outbox on a real SQLite file: ordering, bounds, encryption at rest, 0600 files, and kill -9 at random points."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.daemon.outbox import UNDECRYPTABLE, Outbox
from edge.errors import DeliveryError, OutboxCorruptError, OutboxFullError, StorageFullError
from tests.fixtures.storage import SmallDisk

REPO = Path(__file__).resolve().parents[2]


def _outbox(tmp_path: Path, **limits: int) -> Outbox:
    return Outbox(tmp_path / "state" / "outbox.db", max_count=limits.get("max_count", 100),
                  max_bytes=limits.get("max_bytes", 1_000_000))


def test_fifo_seq_and_ack(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    ids = [box.enqueue(f"result {i}".encode()) for i in range(5)]
    assert [seq for _, seq in ids] == [1, 2, 3, 4, 5]
    assert box.enqueue(lambda seq: f"token with seq {seq}".encode())[1] == 6
    assert [e.payload for e in box.pending(after_seq=4)] == [b"result 4", b"token with seq 6"]
    assert box.ack(ids[0][0]) is True
    assert box.ack(ids[0][0]) is False  # duplicate PUBACK
    assert [e.seq for e in box.pending()] == [2, 3, 4, 5, 6]
    box.close()
    reopened = _outbox(tmp_path)
    assert reopened.stats().last_seq == 6
    assert reopened.enqueue(b"after restart")[1] == 7


def test_failed_payload_builder_consumes_no_seq(tmp_path: Path) -> None:
    box = _outbox(tmp_path)

    def explode(seq: int) -> bytes:
        raise DeliveryError(f"signer unavailable for {seq}")

    with pytest.raises(DeliveryError):
        box.enqueue(explode)
    assert box.enqueue(b"x")[1] == 1


def test_full_by_count_and_by_bytes_refuses_and_keeps_old(tmp_path: Path) -> None:
    box = _outbox(tmp_path, max_count=3, max_bytes=2000)
    for _ in range(3):
        box.enqueue(b"r" * 10)
    assert not box.has_room()
    with pytest.raises(OutboxFullError, match="3/3"):
        box.enqueue(b"r")
    assert [e.seq for e in box.pending()] == [1, 2, 3]
    box.ack(box.pending()[0].id)
    assert box.has_room(10)
    with pytest.raises(OutboxFullError, match="bytes"):
        box.enqueue(b"r" * 1990)
    assert box.enqueue(b"r")[1] == 4  # the refused one consumed no seq


def test_private_files_and_encryption_at_rest(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    secret = "Nguyễn Văn An 079203012345".encode()
    box.enqueue(secret)
    files = list((tmp_path / "state").iterdir())
    assert {f.name for f in files} >= {"outbox.db", "outbox.key"}
    for f in files:
        assert f.stat().st_mode & 0o077 == 0, f.name
        assert secret not in f.read_bytes(), f.name
    assert (tmp_path / "state").stat().st_mode & 0o077 == 0


def test_damaged_key_or_row_is_a_typed_error(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.enqueue(b"payload")
    box.close()
    key = tmp_path / "state" / "outbox.key"
    key.write_bytes(os.urandom(32))
    with pytest.raises(OutboxCorruptError, match="does not decrypt"):
        _outbox(tmp_path).pending()
    key.write_bytes(b"short")
    with pytest.raises(OutboxCorruptError, match="32-byte"):
        _outbox(tmp_path)
    key.chmod(0o644)
    with pytest.raises(DeliveryError, match="chmod 600"):
        _outbox(tmp_path)


def _damage_row(db: Path, seq: int) -> None:
    """Flip one byte of an entry's sealed payload, as a bad SD card sector would."""
    with sqlite3.connect(db) as raw:
        sealed = bytearray(raw.execute("SELECT sealed FROM outbox WHERE seq=?", (seq,)).fetchone()[0])
        sealed[5] ^= 0x40
        raw.execute("UPDATE outbox SET sealed=? WHERE seq=?", (bytes(sealed), seq))
    raw.close()


def test_one_undecryptable_entry_is_quarantined_once_and_blocks_nothing(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    for i in range(5):
        box.enqueue(b"result %d" % i)
    _damage_row(tmp_path / "state" / "outbox.db", 2)
    assert [e.seq for e in box.pending()] == [1, 3, 4, 5]  # the damaged one no longer blocks the batch
    assert box.stats().quarantined == 1
    assert box.stats().count == 4
    assert box.quarantine_to_report() == [(2, UNDECRYPTABLE)]
    assert box.unreported_quarantine == 1
    box.mark_reported([2])
    assert box.quarantine_to_report() == []
    assert [e.seq for e in box.pending()] == [1, 3, 4, 5]
    box.close()
    reopened = _outbox(tmp_path)  # reported once: not again after a restart
    assert reopened.unreported_quarantine == 0
    assert reopened.stats().quarantined == 1
    assert reopened.enqueue(b"next")[1] == 6  # its seq is never reused


def test_a_lone_undecryptable_entry_is_quarantined_but_a_wrong_key_moves_nothing(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.enqueue(b"only one")
    _damage_row(tmp_path / "state" / "outbox.db", 1)
    assert box.pending() == []
    assert box.stats().quarantined == 1
    box.enqueue(b"then another")
    box.close()
    (tmp_path / "state" / "outbox.key").write_bytes(os.urandom(32))  # the key of another terminal
    wrong = _outbox(tmp_path)
    with pytest.raises(OutboxCorruptError, match="does not decrypt"):
        wrong.pending()
    assert (wrong.stats().quarantined, wrong.stats().count) == (1, 1)  # nothing moved under the wrong key
    wrong.close()


def test_full_disk_is_a_typed_storage_error_and_loses_nothing(tmp_path: Path, small_disk: SmallDisk) -> None:
    path = small_disk.path / "outbox.db"
    box = Outbox(path, max_count=100, max_bytes=10**6, min_free_bytes=256 * 1024)
    first_id, _ = box.enqueue(os.urandom(3000))
    assert box.has_room(16 * 1024)
    small_disk.fill()
    assert not box.has_room(16 * 1024)  # checked before a read: the disk's reserve, not only the limits
    assert box.within_limits(16 * 1024)
    with pytest.raises(StorageFullError, match="storage full"):  # not the ROLLBACK's "no transaction is active"
        box.enqueue(os.urandom(3000))
    with pytest.raises(StorageFullError):
        box.ack_many([first_id])
    assert [e.seq for e in box.pending()] == [1]
    small_disk.make_room()
    assert box.enqueue(b"after")[1] == 2  # the refused one consumed no seq
    assert box.ack_many([first_id]) == 1
    assert [e.seq for e in box.pending()] == [2]
    box.close()
    small_disk.fill()
    with pytest.raises(StorageFullError, match="storage full"):  # starting on a full disk: not "damaged"
        Outbox(path, max_count=100, max_bytes=10**6)
    small_disk.make_room()
    box = Outbox(path, max_count=100, max_bytes=10**6)
    assert [e.seq for e in box.pending()] == [2]
    box.close()


def test_first_start_on_a_full_disk_leaves_no_empty_key_behind(small_disk: SmallDisk) -> None:
    small_disk.fill()
    with pytest.raises(StorageFullError):
        Outbox(small_disk.path / "outbox.db", max_count=10, max_bytes=10**6)
    assert not (small_disk.path / "outbox.key").exists()  # an empty key would read as "damaged" later
    small_disk.make_room()
    box = Outbox(small_disk.path / "outbox.db", max_count=10, max_bytes=10**6)
    assert box.enqueue(b"x")[1] == 1
    box.close()


def test_doctor_on_a_full_disk_says_storage_full_and_shows_the_real_queue(small_disk: SmallDisk) -> None:
    from edge.config import OutboxConfig
    from edge.daemon import doctor

    box = Outbox(small_disk.path / "outbox.db", max_count=100, max_bytes=10**6)
    for _ in range(3):
        box.enqueue(os.urandom(2000))
    small_disk.fill()  # while the daemon holds the outbox open
    now = datetime.now(UTC)
    storage = doctor.check_storage(small_disk.path, 16 * 1024 * 1024)
    assert not storage.ok
    assert "storage full" in storage.detail
    queue = doctor.check_outbox(small_disk.path, OutboxConfig(max_count=100, max_bytes=10**6), now)
    assert queue.ok, queue  # the outbox itself is fine: three results, not "damaged"
    assert "3/100 results" in queue.detail
    databases = doctor.check_databases(small_disk.path)
    assert all(result.ok for result in databases), databases
    box.close()


_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edge.daemon.outbox import Outbox
    box = Outbox(Path(sys.argv[1]), max_count=100000, max_bytes=10**9)
    while True:
        entry_id, seq = box.enqueue(lambda s: b"token-%d" % s)
        print("E", seq, flush=True)
        if seq % 3 == 0:
            box.ack(entry_id)
            print("A", seq, flush=True)
    """
)


def test_survives_kill_9_at_random_points(tmp_path: Path) -> None:
    db = tmp_path / "state" / "outbox.db"
    rng = random.Random(9)
    enqueued: list[int] = []
    acked: set[int] = set()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(db)], stdout=subprocess.PIPE, env=env, text=True)
        assert child.stdout is not None
        for _ in range(rng.randint(1, 60)):
            kind, seq = child.stdout.readline().split()
            (enqueued.append if kind == "E" else acked.add)(int(seq))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()

        with sqlite3.connect(db) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        box = Outbox(db, max_count=100000, max_bytes=10**9)
        present = [e.seq for e in box.pending(limit=100000)]
        last_seq = box.stats().last_seq
        box.close()
        assert enqueued == sorted(set(enqueued)), "seq must be strictly increasing across restarts"
        assert present == sorted(present)
        assert last_seq >= enqueued[-1]
        # Committed and not acknowledged => still there; at most the one ack in flight at the kill is unknown.
        missing = set(enqueued) - acked - set(present)
        assert missing <= {enqueued[-1]}
        assert all(s <= last_seq for s in present)
        assert all(e.payload == b"token-%d" % e.seq for e in Outbox(db, max_count=1, max_bytes=1024).pending())
