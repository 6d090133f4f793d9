"""Basic Access Control (ICAO 9303-11 4.3, worked example in appendix D): the MRZ key, 3DES, mutual challenge.

Only the fallback for chips without PACE. The helpers that build and check the cryptograms are shared with the
simulated chip, so the reader and the chip cannot disagree about the layout of S = RND.IFD || RND.IC || K.IFD.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field

from edge.errors import AccessControlError, AccessKeyRejectedError, SmIntegrityError
from edge.protocol import crypto
from edge.protocol.apdu import ApduConnection, CommandApdu
from edge.protocol.crypto import Random
from edge.protocol.iso7816 import (
    INS_EXTERNAL_AUTHENTICATE,
    INS_GET_CHALLENGE,
    SW_OK,
    SW_SECURITY_STATUS,
    SW_VERIFICATION_FAILED,
)
from edge.protocol.sm import SessionKeys

#: Status words a chip gives to a wrong MRZ key at EXTERNAL AUTHENTICATE.
REJECTED_KEY_SW = (SW_VERIFICATION_FAILED, SW_SECURITY_STATUS)


@dataclass(frozen=True, slots=True)
class BacKeys:
    """Document basic access keys derived from the MRZ (never logged)."""

    k_enc: bytes = field(repr=False)
    k_mac: bytes = field(repr=False)

    @classmethod
    def from_mrz_information(cls, mrz_info: str) -> BacKeys:
        seed = crypto.bac_key_seed(mrz_info)
        return cls(crypto.kdf(seed, crypto.KDF_ENC, crypto.TDES), crypto.kdf(seed, crypto.KDF_MAC, crypto.TDES))


@dataclass(frozen=True, slots=True)
class BacResult:
    """Outcome of BAC: session keys, the starting SSC, and the APDUs it cost."""

    keys: SessionKeys
    ssc: int
    apdu_count: int


def authentication_cryptogram(keys: BacKeys, plain: bytes) -> bytes:
    """E || M with E = 3DES-CBC(K.enc, plain), M = retail MAC(K.mac, pad(E)): the body of EXTERNAL AUTHENTICATE."""
    encrypted = crypto.encrypt_cbc(crypto.TDES, keys.k_enc, plain)
    return encrypted + crypto.retail_mac(keys.k_mac, crypto.pad(encrypted, 8))


def open_cryptogram(keys: BacKeys, data: bytes) -> bytes:
    """Check the MAC of E || M (32 + 8 bytes) and return the decrypted 32 bytes."""
    if len(data) != 40:
        raise SmIntegrityError(f"BAC cryptogram of {len(data)} bytes, 40 expected")
    encrypted, mac = data[:32], data[32:]
    if not hmac.compare_digest(crypto.retail_mac(keys.k_mac, crypto.pad(encrypted, 8)), mac):
        raise SmIntegrityError("BAC cryptogram MAC does not verify")
    return crypto.decrypt_cbc(crypto.TDES, keys.k_enc, encrypted)


def session_from(k_ifd: bytes, k_ic: bytes, rnd_ic: bytes, rnd_ifd: bytes) -> tuple[SessionKeys, int]:
    """KSenc/KSmac from K.IFD xor K.IC; SSC = last 4 bytes of RND.IC || last 4 bytes of RND.IFD."""
    seed = bytes(a ^ b for a, b in zip(k_ifd, k_ic, strict=True))
    keys = SessionKeys(
        crypto.TDES, crypto.kdf(seed, crypto.KDF_ENC, crypto.TDES), crypto.kdf(seed, crypto.KDF_MAC, crypto.TDES)
    )
    return keys, int.from_bytes(rnd_ic[4:] + rnd_ifd[4:], "big")


def perform_bac(conn: ApduConnection, mrz_info: str, *, rng: Random = os.urandom) -> BacResult:
    """Run BAC on the (already selected) eMRTD applet. Wrong key -> AccessKeyRejectedError."""
    keys = BacKeys.from_mrz_information(mrz_info)
    challenge = conn.send_and_receive(CommandApdu(0x00, INS_GET_CHALLENGE, 0x00, 0x00, le=8))
    if challenge.sw != SW_OK or len(challenge.data) != 8:
        raise AccessControlError(f"GET CHALLENGE answered {challenge.sw:04X} with {len(challenge.data)} bytes")
    rnd_ic = challenge.data
    rnd_ifd = rng(8)
    k_ifd = rng(16)
    body = authentication_cryptogram(keys, rnd_ifd + rnd_ic + k_ifd)
    answer = conn.send_and_receive(CommandApdu(0x00, INS_EXTERNAL_AUTHENTICATE, 0x00, 0x00, body, le=40))
    if answer.sw in REJECTED_KEY_SW:
        raise AccessKeyRejectedError(f"chip rejected the MRZ key ({answer.sw:04X})")
    if answer.sw != SW_OK:
        raise AccessControlError(f"EXTERNAL AUTHENTICATE answered {answer.sw:04X}")
    try:
        plain = open_cryptogram(keys, answer.data)
    except SmIntegrityError as exc:
        raise AccessControlError(f"chip's BAC answer does not authenticate: {exc}") from exc
    if plain[:8] != rnd_ic or plain[8:16] != rnd_ifd:
        raise AccessControlError("chip's BAC answer does not echo the challenges")
    session_keys, ssc = session_from(k_ifd, plain[16:32], rnd_ic, rnd_ifd)
    return BacResult(session_keys, ssc, apdu_count=2)
