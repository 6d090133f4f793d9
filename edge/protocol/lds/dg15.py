"""DG15 (tag 6F): the Active Authentication public key, a SubjectPublicKeyInfo (RSA or EC, maybe explicit)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.errors import LdsError, PublicKeyFormatError
from edge.protocol import tlv
from edge.protocol.keys import PublicKey, load_public_key
from edge.protocol.lds.common import unwrap

TAG_DG15 = 0x6F


@dataclass(frozen=True, slots=True)
class Dg15:
    public_key: PublicKey
    spki_der: bytes  # as stored: explicit curve parameters stay visible here


def parse_dg15(data: bytes) -> Dg15:
    outer = unwrap(data, TAG_DG15, "DG15")
    try:
        return Dg15(load_public_key(outer.value), outer.value)
    except PublicKeyFormatError as exc:
        raise LdsError(str(exc), what="DG15", offset=outer.offset) from exc


def encode_dg15(public_key: PublicKey | bytes) -> bytes:
    """DG15 around a key (named-curve SPKI) or around ready-made SPKI DER (e.g. with explicit parameters)."""
    if isinstance(public_key, bytes):
        spki = public_key
    else:
        spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return tlv.encode(TAG_DG15, spki)
