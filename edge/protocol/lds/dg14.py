"""DG14 (tag 6E): SecurityInfos for Chip Authentication (and TA/PACE info), per ICAO 9303-11 / BSI TR-03110.

SecurityInfos are interpreted by the same parser as EF.CardAccess (``edge.protocol.access.card_access``), so chip
authentication reads one kind of object whichever file it came from; the exact SET OF DER is kept as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.errors import LdsError
from edge.protocol import tlv
from edge.protocol.access.card_access import (
    ID_CA_ECDH_AES_CBC_CMAC_128,
    ID_PK_ECDH,
    ID_TA,
    SecurityInfos,
    parse_security_infos,
)
from edge.protocol.lds.common import decode_oid, encode_oid, lds_errors, unwrap

TAG_DG14 = 0x6E


@dataclass(frozen=True, slots=True)
class Dg14:
    security_infos: SecurityInfos
    security_infos_der: bytes  # the SET OF SecurityInfo as stored
    protocol_oids: tuple[str, ...]  # dotted protocol OID of each SecurityInfo, in order


def parse_dg14(data: bytes) -> Dg14:
    outer = unwrap(data, TAG_DG14, "DG14")
    with lds_errors("DG14"):
        infos = outer.children()
        if len(infos) != 1 or infos[0].tag != 0x31:
            raise LdsError("DG14 must hold one SET OF SecurityInfo", what="DG14", offset=outer.offset)
        oids: list[str] = []
        for info in infos[0].children():
            parts = info.children() if info.tag == 0x30 else []
            if len(parts) < 2 or parts[0].tag != 0x06:
                raise LdsError("SecurityInfo is not SEQUENCE { OID, ... }", what="DG14", offset=info.offset)
            oids.append(decode_oid(parts[0].value, "DG14"))
        der = infos[0].to_bytes()
        return Dg14(parse_security_infos(der, what="DG14"), der, tuple(oids))


def encode_dg14(ca_public_key: ec.EllipticCurvePublicKey | bytes, *, key_id: int | None = None) -> bytes:
    """DG14 with ChipAuthenticationInfo (ECDH, AES-128), ChipAuthenticationPublicKeyInfo and TA info.

    ``ca_public_key`` may be ready-made SPKI DER (e.g. with explicit domain parameters, as many chips use).
    """
    if isinstance(ca_public_key, bytes):
        spki = ca_public_key
    else:
        spki = ca_public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    key_ref = () if key_id is None else (tlv.encode_integer(key_id),)
    ca_info = tlv.encode_constructed(0x30, encode_oid(ID_CA_ECDH_AES_CBC_CMAC_128), tlv.encode_integer(1), *key_ref)
    pk_info = tlv.encode_constructed(0x30, encode_oid(ID_PK_ECDH), spki, *key_ref)
    ta_info = tlv.encode_constructed(0x30, encode_oid(ID_TA), tlv.encode_integer(1))
    infos = sorted((ca_info, pk_info, ta_info))  # DER orders a SET OF by encoding
    return tlv.encode(TAG_DG14, tlv.encode_constructed(0x31, *infos))
