"""PACE with ECDH generic mapping (ICAO 9303-11 4.4, worked example G.1), reader side, plus shared helpers.

The CCCD announces id-PACE-ECDH-GM-AES-CBC-CMAC-128 on brainpoolP256r1 and takes the CAN as password. The
helpers below (password key, generator mapping, the 7C dynamic-authentication objects, the 7F49 token input) are
also what the simulated chip uses, so the worked example pins both sides at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from enum import IntEnum

from edge.errors import (
    AccessControlError,
    AccessKeyRejectedError,
    InvalidPointError,
    PaceNotSupportedError,
    TlvError,
)
from edge.protocol import crypto, ec, tlv
from edge.protocol.access.card_access import PaceInfo
from edge.protocol.apdu import ApduConnection, CommandApdu, ResponseApdu
from edge.protocol.crypto import CipherSuite, Random
from edge.protocol.iso7816 import (
    CLA_CHAINING,
    INS_GENERAL_AUTHENTICATE,
    INS_MSE,
    SW_CLA_NOT_SUPPORTED,
    SW_FUNC_NOT_SUPPORTED,
    SW_INS_NOT_SUPPORTED,
    SW_OK,
    SW_REF_NOT_FOUND,
    SW_SECURITY_STATUS,
    SW_VERIFICATION_FAILED,
    SW_WRONG_DATA,
)
from edge.protocol.sm import SessionKeys

TAG_DYNAMIC_AUTH = 0x7C
TAG_ENCRYPTED_NONCE = 0x80
TAG_MAP_IFD = 0x81
TAG_MAP_IC = 0x82
TAG_EPH_IFD = 0x83
TAG_EPH_IC = 0x84
TAG_TOKEN_IFD = 0x85
TAG_TOKEN_IC = 0x86

#: MSE:Set AT answers meaning "this chip does not do PACE (this way)": the caller may fall back to BAC.
NOT_SUPPORTED_SW = (SW_WRONG_DATA, SW_FUNC_NOT_SUPPORTED, SW_REF_NOT_FOUND, SW_INS_NOT_SUPPORTED, SW_CLA_NOT_SUPPORTED)
#: GENERAL AUTHENTICATE step 4 answers meaning "wrong password" (63Cx: retries left).
REJECTED_PASSWORD_SW = (SW_VERIFICATION_FAILED, SW_SECURITY_STATUS)
NONCE_LENGTH = 16


class PasswordType(IntEnum):
    """Password reference of MSE:Set AT (tag 83)."""

    MRZ = 1
    CAN = 2


@dataclass(frozen=True, slots=True)
class PacePassword:
    """f(pi): SHA-1 of the MRZ information, or the CAN's digits as bytes. Hidden from repr."""

    kind: PasswordType
    secret: bytes = field(repr=False)

    @classmethod
    def can(cls, can: str) -> PacePassword:
        return cls(PasswordType.CAN, can.encode("ascii"))

    @classmethod
    def mrz(cls, mrz_info: str) -> PacePassword:
        return cls(PasswordType.MRZ, hashlib.sha1(mrz_info.encode("ascii")).digest())  # noqa: S324 - ICAO f(pi)


@dataclass(frozen=True, slots=True)
class PaceResult:
    """Outcome of PACE: session keys (SSC starts at 0) and what chip authentication / logs need."""

    protocol: str
    parameter_id: int
    keys: SessionKeys
    ssc: int
    chip_ephemeral_public_key: bytes  # uncompressed point, for CA binding and the audit record
    apdu_count: int

    @property
    def suite(self) -> CipherSuite:
        return self.keys.suite


# --- shared helpers (reader and simulated chip) ----------------------------------------------------------------


def dynamic_auth_data(tag: int, value: bytes) -> bytes:
    return tlv.encode(TAG_DYNAMIC_AUTH, tlv.encode(tag, value) if tag else b"")


def parse_dynamic_auth_data(data: bytes, tag: int) -> bytes:
    """The value of ``tag`` inside a 7C object; AccessControlError if absent or malformed."""
    try:
        outer = tlv.decode(data)
        if outer.tag != TAG_DYNAMIC_AUTH:
            raise TlvError(f"7C expected, found {outer.tag:X}", what="GENERAL AUTHENTICATE")
        return outer.require(tag).value
    except TlvError as exc:
        raise AccessControlError(f"malformed GENERAL AUTHENTICATE data: {exc}") from exc


def mse_set_at_pace(protocol: str, password: PasswordType) -> CommandApdu:
    data = tlv.encode(0x80, tlv.encode_oid(protocol)) + tlv.encode(0x83, bytes((password,)))
    return CommandApdu(0x00, INS_MSE, 0xC1, 0xA4, data)


def decrypt_nonce(suite: CipherSuite, password: PacePassword, encrypted: bytes) -> bytes:
    return crypto.decrypt_cbc(suite, crypto.pace_password_key(password.secret, suite), encrypted)


def encrypt_nonce(suite: CipherSuite, password: PacePassword, nonce: bytes) -> bytes:
    return crypto.encrypt_cbc(suite, crypto.pace_password_key(password.secret, suite), nonce)


def map_generator(
    params: ec.DomainParameters, nonce: bytes, mapping_key: int, other_mapping_public: ec.EcPoint
) -> ec.DomainParameters:
    """Generic mapping: G' = s*G + H with H = SK_map * PK_map(other side)."""
    shared = ec.multiply(params, mapping_key, other_mapping_public)
    mapped = ec.add(params, ec.multiply(params, int.from_bytes(nonce, "big"), params.generator), shared)
    return params.with_generator(mapped)


def public_key_object(protocol: str, encoded_point: bytes) -> bytes:
    """The 7F49 object the authentication tokens are computed over (OID + tag 86 point)."""
    return tlv.encode(0x7F49, tlv.encode(0x06, tlv.encode_oid(protocol)) + tlv.encode(0x86, encoded_point))


def session_keys(suite: CipherSuite, shared_secret: bytes) -> SessionKeys:
    return SessionKeys(
        suite, crypto.kdf(shared_secret, crypto.KDF_ENC, suite), crypto.kdf(shared_secret, crypto.KDF_MAC, suite)
    )


def authentication_token(keys: SessionKeys, protocol: str, other_public: bytes) -> bytes:
    return crypto.token_mac(keys.suite, keys.ks_mac, public_key_object(protocol, other_public))


def decode_peer_point(params: ec.DomainParameters, data: bytes, what: str) -> ec.EcPoint:
    try:
        return ec.decode_point(params, data)
    except InvalidPointError as exc:
        raise AccessControlError(f"{what}: {exc}") from exc


# --- reader side -----------------------------------------------------------------------------------------------


def _general_authenticate(conn: ApduConnection, tag: int, value: bytes, *, last: bool) -> ResponseApdu:
    return conn.send_and_receive(
        CommandApdu(0x00 if last else CLA_CHAINING, INS_GENERAL_AUTHENTICATE, 0x00, 0x00, dynamic_auth_data(tag, value),
                    le=256)
    )


def _require_ok(response: ResponseApdu, step: str) -> bytes:
    if response.sw != SW_OK:
        raise AccessControlError(f"PACE {step} answered {response.sw:04X}")
    return response.data


def perform_pace(
    conn: ApduConnection, password: PacePassword, info: PaceInfo, *, rng: Random = os.urandom
) -> PaceResult:
    """Run PACE-ECDH-GM with ``info`` (from EF.CardAccess). Wrong password -> AccessKeyRejectedError."""
    if not info.is_ecdh_gm:
        raise PaceNotSupportedError(f"PACE mapping {info.protocol} is not implemented (ECDH-GM only)")
    if info.parameter_id is None:
        raise PaceNotSupportedError("PACEInfo without a standardized parameterId is not supported")
    try:
        params = ec.standard_parameters(info.parameter_id)
    except AccessControlError as exc:
        raise PaceNotSupportedError(str(exc)) from exc
    suite = info.suite

    mse = conn.send_and_receive(mse_set_at_pace(info.protocol, password.kind))
    if mse.sw in NOT_SUPPORTED_SW:
        raise PaceNotSupportedError(f"MSE:Set AT for PACE answered {mse.sw:04X}")
    if mse.sw != SW_OK and not 0x63C1 <= mse.sw <= 0x63CF:
        raise AccessControlError(f"MSE:Set AT for PACE answered {mse.sw:04X}")

    step1 = _require_ok(_general_authenticate(conn, 0, b"", last=False), "step 1 (nonce)")
    nonce = decrypt_nonce(suite, password, parse_dynamic_auth_data(step1, TAG_ENCRYPTED_NONCE))

    map_key = ec.generate_private_key(params, rng)
    map_public = ec.multiply(params, map_key, params.generator)
    step2 = _require_ok(
        _general_authenticate(conn, TAG_MAP_IFD, ec.encode_point(params, map_public), last=False), "step 2 (map)"
    )
    chip_map_public = decode_peer_point(params, parse_dynamic_auth_data(step2, TAG_MAP_IC), "chip mapping key")
    if chip_map_public == map_public:
        raise AccessControlError("chip echoed the terminal's mapping key")
    try:
        mapped = map_generator(params, nonce, map_key, chip_map_public)
    except InvalidPointError as exc:
        raise AccessControlError(f"generic mapping failed: {exc}") from exc

    eph_key = ec.generate_private_key(mapped, rng)
    eph_public_raw = ec.encode_point(mapped, ec.multiply(mapped, eph_key, mapped.generator))
    step3 = _require_ok(
        _general_authenticate(conn, TAG_EPH_IFD, eph_public_raw, last=False), "step 3 (key agreement)"
    )
    chip_eph_raw = parse_dynamic_auth_data(step3, TAG_EPH_IC)
    chip_eph = decode_peer_point(mapped, chip_eph_raw, "chip ephemeral key")
    if chip_eph_raw == eph_public_raw:
        raise AccessControlError("chip echoed the terminal's ephemeral key")
    try:
        shared = ec.x_coordinate(mapped, ec.multiply(mapped, eph_key, chip_eph))
    except InvalidPointError as exc:
        raise AccessControlError(f"key agreement failed: {exc}") from exc
    keys = session_keys(suite, shared)

    token = authentication_token(keys, info.protocol, chip_eph_raw)
    step4 = _general_authenticate(conn, TAG_TOKEN_IFD, token, last=True)
    if step4.sw in REJECTED_PASSWORD_SW or 0x63C0 <= step4.sw <= 0x63CF:
        raise AccessKeyRejectedError(f"chip rejected the PACE password ({step4.sw:04X})")
    chip_token = parse_dynamic_auth_data(_require_ok(step4, "step 4 (tokens)"), TAG_TOKEN_IC)
    if not hmac.compare_digest(chip_token, authentication_token(keys, info.protocol, eph_public_raw)):
        raise AccessControlError("chip's authentication token does not verify")
    return PaceResult(info.protocol, info.parameter_id, keys, 0, chip_eph_raw, apdu_count=5)
