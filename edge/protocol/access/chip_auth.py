"""Chip authentication (ICAO 9303-11 6.2): ECDH with the chip's static DG14 key, then fresh SM keys.

CA proves the chip holds the private key matching DG14 (which EF.SOD signs), so a cloned chip fails. The proof is
implicit: only the genuine chip can compute the new session keys, so the first secured response after CA that
verifies (every response MAC is checked) is the evidence. Callers therefore read on through the same
:class:`SecureMessaging` object and treat an :class:`SmIntegrityError` there as "chip not authentic".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from edge.errors import AccessControlError, ParseError, StatusWordError
from edge.protocol import crypto, ec, tlv
from edge.protocol.access import pace
from edge.protocol.access.card_access import (
    ID_PK_ECDH,
    ChipAuthenticationInfo,
    ChipAuthenticationPublicKeyInfo,
    SecurityInfos,
)
from edge.protocol.apdu import CommandApdu
from edge.protocol.crypto import Random
from edge.protocol.iso7816 import INS_GENERAL_AUTHENTICATE, INS_MSE
from edge.protocol.sm import SecureMessaging


@dataclass(frozen=True, slots=True)
class ChipAuthResult:
    """What CA used: protocol OID (empty for CA v1 3DES without ChipAuthenticationInfo), key id, suite."""

    protocol: str
    key_id: int | None
    suite_name: str
    apdu_count: int


NO_CHIP_AUTHENTICATION = "the card offers no chip authentication"
DH_ONLY = "the chip offers only DH chip authentication, which this terminal does not implement"


def chip_auth_unsupported(infos: SecurityInfos) -> str | None:
    """Why CA cannot run with the keys DG14 offers, or None when it can.

    A card without an ECDH key has not failed anything: it offers what this terminal cannot use (ICAO 9303-11
    still allows DH), so the caller reports "not supported" rather than a failed CA.
    """
    keys = infos.chip_authentication_keys
    if not keys:
        return NO_CHIP_AUTHENTICATION
    if all(key.protocol != ID_PK_ECDH for key in keys):
        return DH_ONLY
    return None


def _choose(infos: SecurityInfos) -> tuple[ChipAuthenticationInfo | None, ChipAuthenticationPublicKeyInfo]:
    unsupported = chip_auth_unsupported(infos)
    if unsupported is not None:
        raise AccessControlError(unsupported)
    keys = [key for key in infos.chip_authentication_keys if key.protocol == ID_PK_ECDH]
    ca_infos = [info for info in infos.chip_authentication if info.is_ecdh]
    for info in ca_infos:
        for key in keys:
            if info.key_id is None or key.key_id is None or info.key_id == key.key_id:
                return info, key
    if ca_infos:
        raise AccessControlError("no DG14 key matches the ChipAuthenticationInfo key id")
    return None, keys[0]  # CA v1 without ChipAuthenticationInfo: 3DES


def perform_chip_auth(sm: SecureMessaging, dg14: SecurityInfos, *, rng: Random = os.urandom) -> ChipAuthResult:
    """Run CA over the open secure channel ``sm`` and switch it to the new keys (SSC restarts at 0)."""
    info, key_info = _choose(dg14)
    try:
        params, chip_public = key_info.ec_public_key()
    except ParseError as exc:  # malformed, off its curve, or on parameters no known curve has: nothing computed
        raise AccessControlError(f"DG14 chip authentication key is unusable: {exc}",
                                 hint="the card offers a key this terminal refuses to use; report the card") from exc
    suite = info.suite if info is not None else crypto.TDES
    secret = ec.generate_private_key(params, rng)
    public_raw = ec.encode_point(params, ec.multiply(params, secret, params.generator))
    key_ref = tlv.encode(0x84, key_info.key_id.to_bytes(max(1, (key_info.key_id.bit_length() + 7) // 8), "big")) if (
        key_info.key_id is not None
    ) else b""
    if info is not None and suite.kind is crypto.CipherKind.AES:
        commands = [
            CommandApdu(0x00, INS_MSE, 0x41, 0xA4, tlv.encode(0x80, tlv.encode_oid(info.protocol)) + key_ref),
            CommandApdu(0x00, INS_GENERAL_AUTHENTICATE, 0x00, 0x00, pace.dynamic_auth_data(0x80, public_raw), le=256),
        ]
    else:  # CA v1 with 3DES: MSE:Set KAT carries the key and switches at once
        commands = [CommandApdu(0x00, INS_MSE, 0x41, 0xA6, tlv.encode(0x91, public_raw) + key_ref)]
    for command in commands:
        try:
            sm.send_and_receive(command).check("chip authentication")
        except StatusWordError as exc:
            raise AccessControlError(f"chip refused chip authentication ({exc.sw:04X})") from exc
    shared = ec.x_coordinate(params, ec.multiply(params, secret, chip_public))
    sm.rekey(pace.session_keys(suite, shared), 0)
    return ChipAuthResult(info.protocol if info is not None else "", key_info.key_id, suite.name, len(commands))
