"""Office commands to a terminal (``<prefix>/<ward>/<terminal>/cmd``), built and signed at the office.

The claims are :mod:`edge.protocol.commands`' models (the ones the terminal verifies), signed with the ward command
key by :func:`~edge.protocol.commands.sign_command`. A ``read_request`` built here always carries a fresh 8-byte
Active Authentication challenge: the chip signs it during the read and the office checks the answer against the
challenge it registered (``ResultStore.register_read_request``), so the result proves it is *this* read and not one
replayed from earlier. The officer's desk ("Đọc thẻ") and the REST API share these functions.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from edge.errors import CommandError
from edge.protocol.access.active_auth import CHALLENGE_LENGTH
from edge.protocol.access.policy import AccessKey
from edge.protocol.commands import CancelCommand, ReadCommand, sign_command
from edge.protocol.jose import Signer
from edge.protocol.result import ProcedureProfile

_Command = TypeVar("_Command", bound=BaseModel)
#: Lifetime of a command the office signs: long enough for a busy broker, far below the terminal's 600 s cap.
COMMAND_LIFETIME = 120


@dataclass(frozen=True, slots=True)
class SignedCommand:
    """A signed command and what the office keeps of it (``challenge``: a read_request's AA challenge)."""

    jti: str
    token: bytes
    terminal: str
    ward: str
    cmd: str
    challenge: bytes | None = None

    def topic(self, prefix: str) -> str:
        return f"{prefix}/{self.ward}/{self.terminal}/cmd"


def _validated(model: type[_Command], claims: dict[str, Any]) -> _Command:
    """``claims`` as ``model``; a :class:`CommandError` naming where they are out of shape, never their values (a
    read request's key is personal data)."""
    try:
        return model.model_validate(claims)
    except ValidationError as exc:
        raise CommandError(f"command out of shape at {exc.errors()[0]['loc']}") from None


def _common(ward: str, terminal: str, now: int, lifetime: int) -> dict[str, str | int]:
    return {"iss": f"ward-{ward}", "aud": terminal, "jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime}


def sign_read_request(signer: Signer, *, ward: str, terminal: str, key: AccessKey, now: int,
                      profile: ProcedureProfile | None = None, include_photo: bool = False,
                      consent_ref: str | None = None, lifetime: int = COMMAND_LIFETIME) -> SignedCommand:  # fmt: skip
    """A ``read_request`` for the card ``key`` opens, with a fresh AA challenge. ``key`` is personal data: it
    travels only inside the command, never in a log line. Raises :class:`CommandError` for a claim out of shape."""
    challenge = os.urandom(CHALLENGE_LENGTH)
    command = _validated(ReadCommand, {
        **_common(ward, terminal, now, lifetime), "cmd": "read_request", "key": key, "challenge": challenge.hex(),
        "profile": profile, "include_photo": include_photo, "consent_ref": consent_ref})  # fmt: skip
    return SignedCommand(command.jti, sign_command(command, signer), terminal, ward, command.cmd, challenge)


def sign_cancel(signer: Signer, *, ward: str, terminal: str, now: int,
                lifetime: int = COMMAND_LIFETIME) -> SignedCommand:  # fmt: skip
    """``cancel``: the terminal stops waiting for (or reading) the card of the current request. Raises
    :class:`CommandError` for a claim out of shape."""
    command = _validated(CancelCommand, {**_common(ward, terminal, now, lifetime), "cmd": "cancel"})
    return SignedCommand(command.jti, sign_command(command, signer), terminal, ward, command.cmd)
