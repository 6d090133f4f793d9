"""The replay guards (commands.db, receipts.db) on a full disk: a typed StorageFullError naming the file, never
sqlite3's OperationalError, and the command or receipt is not accepted (issue 13: a disk error in any database is a
typed error). A real tmpfs filled to the last page, as the outbox's tests do."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.daemon.office_commands import CommandVerifier, ReplayGuard
from edge.errors import StorageFullError
from edge.protocol import jose
from tests.fixtures.storage import SmallDisk

pytestmark = pytest.mark.stack

NOW = 1_800_000_000
WARD = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))


def _ping() -> bytes:
    claims = {"iss": "ward-26734", "aud": "T-01", "jti": str(uuid.uuid4()), "iat": NOW, "exp": NOW + 60,
              "cmd": "ping"}  # fmt: skip
    return jose.sign_jws(WARD, claims, typ=jose.COMMAND_TYP).encode()


def _fill_until_refused(guard: ReplayGuard, path: Path) -> StorageFullError:
    """Remember fresh jtis on the full disk until the guard refuses one (the WAL's last free page used up)."""
    for _ in range(10_000):
        try:
            guard.remember(str(uuid.uuid4()) * 3, NOW + 3600, NOW)
        except StorageFullError as exc:
            return exc
    raise AssertionError(f"{path} never ran out of room")


def test_a_full_disk_under_the_replay_guard_is_a_typed_storage_error(small_disk: SmallDisk) -> None:
    path = small_disk.path / "commands.db"
    guard = ReplayGuard(path)
    verifier = CommandVerifier(WARD.public_key, "T-01", guard)
    try:
        assert verifier.verify(_ping(), NOW).cmd == "ping"  # room: accepted
        small_disk.fill()
        error = _fill_until_refused(guard, path)
        assert error.path == str(path)
        assert isinstance(error.__cause__, sqlite3.Error)
        with pytest.raises(StorageFullError):  # the verifier passes it on: not a rejection, not OperationalError
            verifier.verify(_ping(), NOW)
        small_disk.make_room()
        assert verifier.verify(_ping(), NOW).cmd == "ping"  # space back: commands are accepted again
    finally:
        guard.close()
