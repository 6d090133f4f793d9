"""Office commands arriving on ``/cmd``: ``read_request``, ``cancel``, ``ping``, ``trust_update``, each a JWS signed by
the ward key (their models: :mod:`edge.protocol.commands`, which the office signs with; the CLI's subcommands are
``edge.commands``).
``trust_update`` carries a signed DS list (:mod:`edge.daemon.ds_list`), verified on its own after the command: the
command proves the office sent it now, the list who vouches for the Document Signers in it.

A command is accepted only if it verifies under the ward key from the config, names this terminal in ``aud``, is
unexpired, lives no longer than :data:`MAX_LIFETIME` and its ``jti`` was never seen before. Seen ``jti`` values
are kept in SQLite until their ``exp`` passes, so a replay is refused across daemon restarts too; the lifetime cap
keeps that table small. Every refusal is a :class:`CommandRejectedError` with a machine-readable ``reason`` that
the daemon reports on ``/event`` (a broker is public enough that silence would hide an attack).

A ``read_request`` must also fit the procedure it names (``edge.protocol.procedures``; no ``profile``: the
terminal's configured one): a profile that sends the chip's files is refused (``encryption_required``) unless this
terminal encrypts its results to the ward, and a photo asked for under a profile that never needs the face is
refused (``photo_not_needed``) rather than silently left out.

A terminal whose clock is not synchronised (no RTC, no NTP yet) cannot judge ``iat``/``exp`` by its clock, and
refusing every command as expired would leave the office no way to reach it (nor to give it the time: an accepted
command's ``iat`` is the office's signed time, ``ClockState.observe_office_time``). It then judges them by the
floor, a time that has passed for certain: a command that expired before it is refused, and seen ``jti`` values
are purged only once they expired before the floor, so a command this terminal ever accepted is never accepted
again. What remains possible: a command withheld from the terminal (never delivered) and delivered late, while
its clock is not synchronised, as long as it expired after the floor.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from edge.daemon.storage import sqlite_errors_typed
from edge.errors import CommandRejectedError, TokenError, TokenExpiredError, TokenSignatureError, UnknownKeyError
from edge.files import create_private
from edge.protocol.clock import TimeEvidence
from edge.protocol.commands import (
    COMMAND_ADAPTER,
    MAX_LIFETIME,
    AnyCommand,
    CancelCommand,
    PingCommand,
    ReadCommand,
    TrustUpdateCommand,
)
from edge.protocol.ds_list import MAX_DS_LIST_BYTES
from edge.protocol.jose import COMMAND_TYP, DEFAULT_LEEWAY, key_id, verify_jws
from edge.protocol.procedures import ProcedureProfile, procedure

# The command models live in edge.protocol.commands (the office signs them too); the terminal's code imports them
# from here as well.
__all__ = ["MAX_COMMAND_BYTES", "MAX_LIFETIME", "AnyCommand", "CancelCommand", "CommandVerifier", "PingCommand",
           "ReadCommand", "ReplayGuard", "TrustUpdateCommand"]

#: Largest ``/cmd`` payload looked at: a signed read_request is under 1 KB; a trust_update carries a DS list of up
#: to MAX_DS_LIST_BYTES, base64url-encoded once more inside the command (4/3), plus the command's own claims.
MAX_COMMAND_BYTES = MAX_DS_LIST_BYTES * 4 // 3 + 16 * 1024


class ReplayGuard:
    """Remembers each accepted ``jti`` until it expires; the file is 0600 (it is not personal, but it is ours).

    A disk error (full, I/O) is a :class:`~edge.errors.StorageError` naming the file, at start and on every
    :meth:`remember`: the command or receipt is then not accepted (a replay could not be refused later)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_private(path)
        self._path = path
        self._lock = threading.Lock()
        with sqlite_errors_typed(path):
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS seen (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL)")

    def remember(self, jti: str, exp: int, now: int) -> bool:
        """Record ``jti``; False if it was already there (a replay)."""
        with self._lock, sqlite_errors_typed(self._path):
            self._db.execute("DELETE FROM seen WHERE exp < ?", (now - DEFAULT_LEEWAY,))
            try:
                self._db.execute("INSERT INTO seen (jti, exp) VALUES (?, ?)", (jti, exp))
            except sqlite3.IntegrityError:
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CommandVerifier:
    """Turns a ``/cmd`` payload into a typed command, or a :class:`CommandRejectedError` saying why not."""

    def __init__(self, ward_key: ec.EllipticCurvePublicKey, terminal_id: str, replay: ReplayGuard, *,
                 default_profile: ProcedureProfile = ProcedureProfile.RESIDENCE, encrypted: bool = False) -> None:
        """``default_profile``: the terminal's configured profile; ``encrypted``: its results are JWE to the ward."""
        self._keys = {key_id(ward_key): ward_key}
        self._default_profile = default_profile
        self._encrypted = encrypted
        self._terminal_id = terminal_id
        self._replay = replay

    def verify(self, payload: bytes, now: int | TimeEvidence) -> AnyCommand:
        """``now``: a trusted Unix time, or the terminal's :class:`TimeEvidence` (module docstring: a clock that is
        not synchronised judges ``exp`` by the floor only)."""
        when = now if isinstance(now, TimeEvidence) else TimeEvidence.trusted(datetime.fromtimestamp(now, UTC))
        trusted_now = int(when.now.timestamp()) if when.synchronised else None
        floor = int(when.floor.timestamp()) if when.floor is not None else 0
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandRejectedError("malformed", f"{len(payload)} bytes, more than {MAX_COMMAND_BYTES}")
        try:
            verified = verify_jws(payload, self._keys, trusted_now, typ=COMMAND_TYP)
        except UnknownKeyError as exc:
            raise CommandRejectedError("unknown_key", exc.kid) from None
        except TokenExpiredError as exc:
            raise CommandRejectedError("expired", str(exc)) from None
        except TokenSignatureError as exc:
            raise CommandRejectedError("bad_signature", str(exc)) from None
        except TokenError as exc:
            raise CommandRejectedError("malformed", str(exc)) from None
        jti = verified.claims.get("jti")
        jti = jti if isinstance(jti, str) else None
        try:
            command = COMMAND_ADAPTER.validate_python(verified.claims)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            reason = "unknown_command" if error["type"] == "union_tag_invalid" else "malformed"
            raise CommandRejectedError(reason, f"{where}: {error['msg']}", jti=jti) from None
        if command.aud != self._terminal_id:
            raise CommandRejectedError("wrong_terminal", f"addressed to {command.aud}", jti=jti)
        if command.exp - command.iat > MAX_LIFETIME:
            raise CommandRejectedError("malformed", f"lifetime over {MAX_LIFETIME} s", jti=jti)
        if isinstance(command, ReadCommand):
            self._fits_its_procedure(command)
        if trusted_now is None and command.exp + DEFAULT_LEEWAY < floor:
            raise CommandRejectedError("expired", "expired before a time this terminal knows has passed (its "
                                       "clock is not synchronised)", jti=jti)  # fmt: skip
        if not self._replay.remember(command.jti, command.exp, floor if trusted_now is None else trusted_now):
            raise CommandRejectedError("replayed", jti=jti)
        return command

    def _fits_its_procedure(self, command: ReadCommand) -> None:
        profile = command.profile or self._default_profile
        rules = procedure(profile)
        if rules.needs_encryption and not self._encrypted:
            raise CommandRejectedError("encryption_required", f"profile {profile.value} sends the chip's files, only "
                                       "ever encrypted to the ward, and this terminal has no ward encryption key",
                                       jti=command.jti)  # fmt: skip
        if command.include_photo and not rules.photo:
            raise CommandRejectedError("photo_not_needed", f"profile {profile.value} never reads the face",
                                       jti=command.jti)
