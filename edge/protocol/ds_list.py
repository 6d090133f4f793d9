"""The claims of a signed list of known Document Signers (a "DS list"): what a ward or province vouches for.

A real CCCD's CSCA is not public, so a ward proves cards genuine another way (the national authentication
service) and pins the Document Signer certificates of those cards: no forger can sign with a DS key, so a pinned
DS is a sound anchor (``verified_known_signer``). The list travels as a compact JWS (ES256, ``typ``
:data:`DS_LIST_TYP`) signed by the ward's command key or a province key (:func:`sign_ds_list`); the verification,
the accepted-version record and the import live in :mod:`edge.daemon.ds_list`. This module is the claims model,
the rules on them and signing, so that both ends (``python -m provisioning ds-list sign`` and the terminal) share
one definition.

Claims: ``iss``, ``iat``, optional ``exp`` (a list is meant to last: months), ``ward_code`` (one ward, or
:data:`PROVINCE` for every ward of the province: only a province key may say that), ``version`` (a list replaces
the one its key signed before, so an older version is never accepted after a newer one), and ``certificates``:
base64url DER with an optional note ("proven by C06 authentication 2026-12-01"). Every size is capped before use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from edge.errors import DsListRefusedError
from edge.protocol.b64url import b64url_decode, b64url_encode
from edge.protocol.jose import Signer, sign_jws

DS_LIST_TYP = "cccd-edge-ds-list+jwt"
#: ``ward_code`` of a list meant for every ward of the province.
PROVINCE = "province"
#: Real CCCDs have few Document Signers; a province's list stays far below this.
MAX_DS_CERTS = 256
#: A DS certificate with an RSA-4096 key and a 4096-bit signature is about 1.5 KB.
MAX_DS_CERT_BYTES = 2048
MAX_NOTE_CHARS = 200
#: Largest token accepted, before anything is decoded: room for the cap of typical (~1.1 KB) certificates, and
#: small enough that a ``trust_update`` command carrying it stays within the command size cap.
MAX_DS_LIST_BYTES = 640 * 1024
#: Largest ``version``: an integer JSON carries exactly everywhere (2^53 - 1).
MAX_VERSION = (1 << 53) - 1

#: Who a trusted list key speaks for: a ward key for its own ward, a province key also for :data:`PROVINCE`;
#: ``any`` is a key the installer named on the command line.
KeyScope = Literal["ward", "province", "any"]

_B64URL = r"^[A-Za-z0-9_-]+$"
_CODE = r"^[A-Za-z0-9_.-]{1,16}$"  # as config's ward_code


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DsEntry(_Model):
    """One pinned Document Signer certificate, and the ward's note on how it was proven."""

    cert: str = Field(min_length=1, max_length=-(-MAX_DS_CERT_BYTES * 4 // 3), pattern=_B64URL)
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)

    @field_validator("note")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        # Printed by `trust list` and `trust import`: no control or bidi characters that could rewrite a line.
        if value is not None and not value.isprintable():
            raise ValueError("the note must be printable text on one line")
        return value

    @field_validator("cert")
    @classmethod
    def _canonical(cls, value: str) -> str:
        try:
            b64url_decode(value)
        except ValueError:
            raise ValueError("not unpadded base64url") from None
        return value

    @property
    def der(self) -> bytes:
        return b64url_decode(self.cert)


class DsListClaims(_Model):
    iss: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    iat: StrictInt
    exp: StrictInt | None = None
    ward_code: str = Field(pattern=_CODE)
    version: Annotated[StrictInt, Field(ge=1, le=MAX_VERSION)]
    certificates: tuple[DsEntry, ...] = Field(max_length=MAX_DS_CERTS)

    @model_validator(mode="after")
    def _consistent(self) -> DsListClaims:
        if self.exp is not None and self.exp <= self.iat:
            raise ValueError("exp must be after iat")
        if len({entry.cert for entry in self.certificates}) != len(self.certificates):
            raise ValueError("a certificate is listed twice")
        return self

    @property
    def ders(self) -> tuple[bytes, ...]:
        return tuple(entry.der for entry in self.certificates)


def ds_list_claims(*, iss: str, ward_code: str, version: int, certificates: Sequence[bytes],
                   notes: Mapping[bytes, str] | None = None, now: int, lifetime: int | None = None) -> dict[str, Any]:
    """The claims of a new list, validated as the terminal will (a list the terminal would refuse is never signed).

    ``notes`` maps a certificate's DER to its note; ``lifetime`` in seconds sets ``exp`` (None: no expiry).
    """
    notes = notes or {}
    entries = [{"cert": b64url_encode(der), **({"note": notes[der]} if der in notes else {})} for der in certificates]
    claims: dict[str, Any] = {"iss": iss, "iat": now, "ward_code": ward_code, "version": version,
                              "certificates": entries}
    if lifetime is not None:
        claims["exp"] = now + lifetime
    parse_ds_list_claims(claims)
    return claims


def parse_ds_list_claims(data: object) -> DsListClaims:
    """The claims from a parsed JSON payload; :class:`DsListRefusedError` ``malformed`` naming the first problem."""
    try:
        return DsListClaims.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(claims)"
        raise DsListRefusedError("malformed", f"{where}: {error['msg']}") from None


def check_claims(claims: DsListClaims, *, scope: KeyScope, ward_code: str | None, now: int, leeway: int) -> None:
    """Refuse a list that is expired, issued in the future, or not for this terminal's ward.

    A ward key speaks for its own ward only; a province key for the province or one of its wards. ``ward_code``
    None (an installer naming the key by hand, no config) accepts any ward the key signed for.
    """
    if claims.iat > now + leeway:
        raise DsListRefusedError("expired", f"issued {claims.iat - now} s in the future (check the clock)")
    if claims.exp is not None and now > claims.exp + leeway:
        raise DsListRefusedError("expired", f"the list expired {now - claims.exp} s ago")
    if claims.ward_code == PROVINCE:
        if scope == "ward":
            raise DsListRefusedError("wrong_ward", "a ward key cannot sign a list for the whole province")
    elif ward_code is not None and claims.ward_code != ward_code:
        raise DsListRefusedError("wrong_ward", f"the list is for ward {claims.ward_code}, this terminal is in "
                                 f"ward {ward_code}")


def sign_ds_list(signer: Signer, claims: Mapping[str, object]) -> str:
    """A compact JWS of claims made by :func:`ds_list_claims`."""
    return sign_jws(signer, claims, typ=DS_LIST_TYP)
