"""Symmetric primitives of ICAO 9303-11 (BAC, PACE, secure messaging, chip authentication).

One place for the KDF, the MRZ key seed, padding, the two MAC mechanisms and CBC, shared by the reader side
(``edge.protocol.access``, ``edge.protocol.sm``) and the simulated chip (``edge.sim.chip_security``), so that both
sides cannot drift apart. Everything here is pure; keys are bytes and never logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from edge.errors import MrzError, SmIntegrityError
from edge.protocol.mrz import check_digit

#: Injected randomness (``os.urandom`` in production; fixed bytes to replay the ICAO worked examples).
Random = Callable[[int], bytes]

KDF_ENC = 1
KDF_MAC = 2
KDF_PACE = 3


class CipherKind(Enum):
    TDES = "3DES"
    AES = "AES"


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """A block cipher with its key length: decides KDF hash, MAC mechanism, SSC size and IV rule."""

    kind: CipherKind
    key_length: int

    @property
    def block_size(self) -> int:
        return 8 if self.kind is CipherKind.TDES else 16

    @property
    def name(self) -> str:
        return "3DES" if self.kind is CipherKind.TDES else f"AES-{self.key_length * 8}"


TDES = CipherSuite(CipherKind.TDES, 16)
AES128 = CipherSuite(CipherKind.AES, 16)
AES192 = CipherSuite(CipherKind.AES, 24)
AES256 = CipherSuite(CipherKind.AES, 32)


# --- key derivation --------------------------------------------------------------------------------------------


def kdf(secret: bytes, counter: int, suite: CipherSuite) -> bytes:
    """ICAO 9303-11 9.7.1: H(secret || counter); SHA-1 for 3DES and AES-128, SHA-256 above."""
    data = secret + counter.to_bytes(4, "big")
    if suite.kind is CipherKind.TDES:
        return adjust_parity(hashlib.sha1(data).digest()[:16])  # noqa: S324 - mandated by ICAO 9303-11
    if suite.key_length == 16:
        return hashlib.sha1(data).digest()[:16]  # noqa: S324 - mandated by ICAO 9303-11
    return hashlib.sha256(data).digest()[: suite.key_length]


def adjust_parity(key: bytes) -> bytes:
    """Set the DES odd-parity bit of every byte (the ICAO examples print parity-adjusted keys)."""
    out = bytearray()
    for byte in key:
        high = byte & 0xFE
        out.append(high | ((bin(high).count("1") + 1) & 1))
    return bytes(out)


def mrz_information(document_number: str, date_of_birth: str, date_of_expiry: str) -> str:
    """Document number (filled to 9 with '<', longer ones kept whole) + DOB + DOE, each followed by its check digit."""
    number = document_number.upper().replace(" ", "")
    if not number or len(date_of_birth) != 6 or len(date_of_expiry) != 6:
        raise MrzError("document number, YYMMDD birth and expiry dates are required", what="MRZ key")
    if not (date_of_birth + date_of_expiry).isascii() or not (date_of_birth + date_of_expiry).isdigit():
        raise MrzError("dates must be YYMMDD digits", what="MRZ key")
    number = number.ljust(9, "<")
    return "".join(field + check_digit(field) for field in (number, date_of_birth, date_of_expiry))


def bac_key_seed(mrz_info: str) -> bytes:
    """Kseed = first 16 bytes of SHA-1(MRZ_information) (ICAO 9303-11 9.7.2)."""
    return hashlib.sha1(mrz_info.encode("ascii")).digest()[:16]  # noqa: S324 - mandated by ICAO 9303-11


def pace_password_key(password: bytes, suite: CipherSuite) -> bytes:
    """K_pi = KDF(f(pi), 3); ``password`` is already f(pi): SHA-1(MRZ_information) or the CAN's bytes."""
    return kdf(password, KDF_PACE, suite)


# --- padding ---------------------------------------------------------------------------------------------------


def pad(data: bytes, block_size: int) -> bytes:
    """ISO/IEC 9797-1 padding method 2: 0x80 then zeros up to the block boundary (always adds at least one byte)."""
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % block_size)


def unpad(data: bytes) -> bytes:
    """Strip method-2 padding; a missing 0x80 marker means the plaintext is corrupt."""
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise SmIntegrityError("decrypted data lacks ISO 9797-1 padding")
    return stripped[:-1]


# --- block cipher and MAC --------------------------------------------------------------------------------------


def _algorithm(suite: CipherSuite, key: bytes) -> TripleDES | algorithms.AES:
    if suite.kind is CipherKind.TDES:
        return TripleDES(key + key[:8] if len(key) == 16 else key)  # 2-key 3DES spelled as K1 K2 K1
    return algorithms.AES(key)


def encrypt_cbc(suite: CipherSuite, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
    """CBC without padding (callers pad explicitly, as ICAO defines where padding goes)."""
    encryptor = Cipher(_algorithm(suite, key), modes.CBC(iv or bytes(suite.block_size))).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def decrypt_cbc(suite: CipherSuite, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
    if len(data) % suite.block_size:
        raise SmIntegrityError(f"ciphertext of {len(data)} bytes is not whole {suite.name} blocks")
    decryptor = Cipher(_algorithm(suite, key), modes.CBC(iv or bytes(suite.block_size))).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def encrypt_block(suite: CipherSuite, key: bytes, block: bytes) -> bytes:
    """One ECB block: the AES SM IV is E(KSenc, SSC)."""
    encryptor = Cipher(_algorithm(suite, key), modes.ECB()).encryptor()  # noqa: S305 - single block by design
    return encryptor.update(block) + encryptor.finalize()


def sm_iv(suite: CipherSuite, ks_enc: bytes, ssc: bytes) -> bytes:
    """3DES SM uses a zero IV; AES SM uses E(KSenc, SSC) so every message has a fresh IV."""
    if suite.kind is CipherKind.TDES:
        return bytes(8)
    return encrypt_block(suite, ks_enc, ssc)


def retail_mac(key: bytes, data: bytes) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 with DES (the 'retail MAC'); ``data`` must already be padded."""
    if len(data) % 8 or len(key) != 16:
        raise ValueError("retail MAC needs 8-byte blocks and a 16-byte key")
    ka, kb = key[:8], key[8:]
    chained = encrypt_cbc(TDES, ka * 3, data)[-8:]
    decryptor = Cipher(TripleDES(kb * 3), modes.ECB()).decryptor()  # noqa: S305 - one block
    step = decryptor.update(chained) + decryptor.finalize()
    return encrypt_block(TDES, ka * 3, step)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def mac8(suite: CipherSuite, key: bytes, data: bytes) -> bytes:
    """The 8-byte MAC of ICAO 9303-11 over ``data`` as given: retail MAC (caller pads) or CMAC truncated to 8."""
    if suite.kind is CipherKind.TDES:
        return retail_mac(key, data)
    return aes_cmac(key, data)[:8]


def sm_mac(suite: CipherSuite, key: bytes, data: bytes) -> bytes:
    """Secure-messaging MAC: pad to the block size, then MAC (both ciphers pad explicitly)."""
    return mac8(suite, key, pad(data, suite.block_size))


def token_mac(suite: CipherSuite, key: bytes, data: bytes) -> bytes:
    """PACE authentication token: CMAC over the unpadded object (AES), retail MAC over the padded one (3DES)."""
    if suite.kind is CipherKind.TDES:
        return retail_mac(key, pad(data, 8))
    return aes_cmac(key, data)[:8]


def plain_ecdsa_to_der(signature: bytes) -> bytes:
    """ECDSA ``r || s`` (the plain form chips, tokens and JWS use, BSI TR-03111) as the DER ``cryptography`` verifies.
    Callers check the length against the key first: here the two halves are simply split."""
    half = len(signature) // 2
    return encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
