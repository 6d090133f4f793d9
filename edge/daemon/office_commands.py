"""Office commands arriving on ``/cmd``: ``read_request``, ``cancel``, ``ping``, ``trust_update``, each a JWS signed by
the ward key (the CLI's subcommands are ``edge.commands``; the office's own side is ``edge.office``).
``trust_update`` carries a signed DS list (:mod:`edge.daemon.ds_list`), verified on its own after the command: the
command proves the office sent it now, the list who vouches for the Document Signers in it.

A command is accepted only if it verifies under the ward key from the config, names this terminal in ``aud``, is
unexpired, lives no longer than :data:`MAX_LIFETIME` and its ``jti`` was never seen before. Seen ``jti`` values
are kept in SQLite until their ``exp`` passes, so a replay is refused across daemon restarts too; the lifetime cap
keeps that table small. Every refusal is a :class:`CommandRejectedError` with a machine-readable ``reason`` that
the daemon reports on ``/event`` (a broker is public enough that silence would hide an attack).

A terminal whose clock is not synchronised (no RTC, no NTP yet) cannot judge ``iat``/``exp`` by its clock, and
refusing every command as expired would leave the office no way to reach it (nor to give it the time: an accepted
command's ``iat`` is the office's signed time, ``ClockState.observe_office_time``). It then judges them by the
floor, a time that has passed for certain: a command that expired before it is refused, and seen ``jti`` values
are purged only once they expired before the floor, so a command this terminal ever accepted is never accepted
again. What remains possible: a command withheld from the terminal (never delivered) and delivered late, while
its clock is not synchronised, as long as it expired after the floor.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, TypeAdapter, ValidationError

from edge.errors import CommandRejectedError, TokenError, TokenExpiredError, TokenSignatureError, UnknownKeyError
from edge.files import create_private
from edge.protocol.access.policy import AccessKey, CanKey, MrzKey
from edge.protocol.clock import TimeEvidence
from edge.protocol.ds_list import MAX_DS_LIST_BYTES
from edge.protocol.jose import COMMAND_TYP, DEFAULT_LEEWAY, key_id, verify_jws
from edge.protocol.result import ProcedureProfile

#: Longest accepted ``exp - iat``: an office command is meant for now, not for later.
MAX_LIFETIME = 600
#: Largest ``/cmd`` payload looked at: a signed read_request is under 1 KB; a trust_update carries a DS list of up
#: to MAX_DS_LIST_BYTES, base64url-encoded once more inside the command (4/3), plus the command's own claims.
MAX_COMMAND_BYTES = MAX_DS_LIST_BYTES * 4 // 3 + 16 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The shapes of a ``read_request``'s ``key`` (ASCII only: a regex's \d would take any Unicode digit).
_KEY_FIELDS = {
    "can": re.compile(r"[0-9]{6}"),  # PACE: the last 6 digits of the ID number
    "document_number": re.compile(r"[0-9A-Z<]{9}"),  # BAC: the MRZ triple printed on the back of the card
    "date_of_birth": re.compile(r"[0-9]{6}"),  # YYMMDD
    "date_of_expiry": re.compile(r"[0-9]{6}"),  # YYMMDD
}
_MRZ_FIELDS = ("document_number", "date_of_birth", "date_of_expiry")


def _access_key(value: object) -> AccessKey:
    """The ``key`` claim as the protocol's own key type: ``{"can"}`` or the MRZ triple; ValueError otherwise (the
    message names fields, never their values: they are personal data)."""
    if isinstance(value, CanKey | MrzKey):
        return value
    if not isinstance(value, dict) or set(value) not in ({"can"}, set(_MRZ_FIELDS)):
        raise ValueError("key must be {can} or {document_number, date_of_birth, date_of_expiry}")
    for name, text in value.items():
        if not isinstance(text, str) or not _KEY_FIELDS[name].fullmatch(text):
            raise ValueError(f"key.{name} does not match {_KEY_FIELDS[name].pattern}")
    if "can" in value:
        return CanKey(value["can"])
    return MrzKey(*(value[name] for name in _MRZ_FIELDS))


def _key_claim(key: AccessKey) -> dict[str, str]:
    if isinstance(key, CanKey):
        return {"can": key.can}
    return {name: getattr(key, name) for name in _MRZ_FIELDS}


#: A ``read_request``'s key, parsed into :mod:`edge.protocol.access.policy`'s types (one key type end to end).
CommandKey = Annotated[AccessKey, PlainValidator(_access_key), PlainSerializer(_key_claim)]


class _Claims(_Model):
    iss: str = Field(min_length=1, max_length=64)
    aud: str = Field(min_length=1, max_length=64)
    jti: str = Field(min_length=8, max_length=64)
    iat: int
    exp: int


class ReadCommand(_Claims):
    """Read the card this key opens: the office's request (what the chip is asked is ``edge.protocol.chip``'s)."""

    cmd: Literal["read_request"]
    key: CommandKey
    challenge: str | None = Field(default=None, pattern=r"^([0-9a-fA-F]{2}){8}$")  # AA: 8 bytes, hex
    profile: ProcedureProfile | None = None  # None: the terminal's configured default
    include_photo: bool = False

    @property
    def challenge_bytes(self) -> bytes | None:
        return bytes.fromhex(self.challenge) if self.challenge else None


class CancelCommand(_Claims):
    cmd: Literal["cancel"]


class PingCommand(_Claims):
    cmd: Literal["ping"]


class TrustUpdateCommand(_Claims):
    """Pin the Document Signers of a signed DS list (the compact JWS in ``ds_list``) in the terminal's store."""

    cmd: Literal["trust_update"]
    ds_list: str = Field(min_length=1, max_length=MAX_DS_LIST_BYTES)


AnyCommand = ReadCommand | CancelCommand | PingCommand | TrustUpdateCommand
Command = Annotated[AnyCommand, Field(discriminator="cmd")]
_COMMAND = TypeAdapter[AnyCommand](Command)


class ReplayGuard:
    """Remembers each accepted ``jti`` until it expires; the file is 0600 (it is not personal, but it is ours)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_private(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL)")

    def remember(self, jti: str, exp: int, now: int) -> bool:
        """Record ``jti``; False if it was already there (a replay)."""
        with self._lock:
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

    def __init__(self, ward_key: ec.EllipticCurvePublicKey, terminal_id: str, replay: ReplayGuard) -> None:
        self._keys = {key_id(ward_key): ward_key}
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
            command = _COMMAND.validate_python(verified.claims)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            reason = "unknown_command" if error["type"] == "union_tag_invalid" else "malformed"
            raise CommandRejectedError(reason, f"{where}: {error['msg']}", jti=jti) from None
        if command.aud != self._terminal_id:
            raise CommandRejectedError("wrong_terminal", f"addressed to {command.aud}", jti=jti)
        if command.exp - command.iat > MAX_LIFETIME:
            raise CommandRejectedError("malformed", f"lifetime over {MAX_LIFETIME} s", jti=jti)
        if trusted_now is None and command.exp + DEFAULT_LEEWAY < floor:
            raise CommandRejectedError("expired", "expired before a time this terminal knows has passed (its "
                                       "clock is not synchronised)", jti=jti)  # fmt: skip
        if not self._replay.remember(command.jti, command.exp, floor if trusted_now is None else trusted_now):
            raise CommandRejectedError("replayed", jti=jti)
        return command
