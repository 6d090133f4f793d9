"""Office commands on a terminal's ``/cmd`` topic: their claims as models, shared by the office that signs them and
the terminal that verifies them (``edge.daemon.office_commands``: ward key, audience, lifetime, replays).

A command is a compact JWS (``typ`` :data:`~edge.protocol.jose.COMMAND_TYP`) signed with the ward command key;
its claims are one of :data:`AnyCommand`, told apart by ``cmd``. Every model refuses unknown fields, so the JSON
Schema generated from them (the AsyncAPI document's ``cmd`` channel) is the exact contract.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, TypeAdapter, WithJsonSchema

from edge.protocol.access.policy import AccessKey, CanKey, MrzKey
from edge.protocol.ds_list import MAX_DS_LIST_BYTES
from edge.protocol.jose import COMMAND_TYP, Signer, sign_jws
from edge.protocol.result import CONSENT_REF_PATTERN, MAX_CONSENT_REF_CHARS, ProcedureProfile

#: Longest accepted ``exp - iat``: an office command is meant for now, not for later.
MAX_LIFETIME = 600


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
#: The JSON Schema of ``key`` (the validator is hand-written: pydantic cannot derive it).
_KEY_SCHEMA: dict[str, Any] = {
    "title": "ChipAccessKey",
    "description": "PACE with the CAN, or BAC with the MRZ triple printed on the card (personal data: never logged)",
    "oneOf": [
        {"type": "object", "additionalProperties": False, "required": ["can"],
         "properties": {"can": {"type": "string", "pattern": "^[0-9]{6}$"}}},
        {"type": "object", "additionalProperties": False, "required": list(_MRZ_FIELDS),
         "properties": {"document_number": {"type": "string", "pattern": "^[0-9A-Z<]{9}$"},
                        "date_of_birth": {"type": "string", "pattern": "^[0-9]{6}$"},
                        "date_of_expiry": {"type": "string", "pattern": "^[0-9]{6}$"}}},
    ],
}  # fmt: skip


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
CommandKey = Annotated[AccessKey, PlainValidator(_access_key), PlainSerializer(_key_claim),
                       WithJsonSchema(_KEY_SCHEMA)]


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
    include_photo: bool = False  # read only when the profile needs the face too (edge.protocol.procedures)
    #: The procedure software's reference of the citizen's consent record, carried into the result's ``processing``.
    consent_ref: str | None = Field(default=None, max_length=MAX_CONSENT_REF_CHARS, pattern=CONSENT_REF_PATTERN)

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
COMMAND_ADAPTER = TypeAdapter[AnyCommand](Command)


def sign_command(command: AnyCommand, signer: Signer) -> bytes:
    """The ``/cmd`` payload: ``command``'s claims (unset options left out) as a JWS by the ward command key."""
    claims = command.model_dump(mode="json", exclude_none=True)
    return sign_jws(signer, claims, typ=COMMAND_TYP).encode("ascii")
