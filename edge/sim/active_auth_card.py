"""The chip side of Active Authentication: answer INTERNAL AUTHENTICATE the way a real eMRTD chip does.

RSA chips sign with ISO/IEC 9796-2 scheme 1 and partial message recovery (M1 = random filler chosen by the chip,
M2 = the terminal's challenge, which the terminal already knows); EC chips return plain ``r || s``. Producing the
real format, rather than something our own verifier happens to accept, is what makes the simulator a fair test.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from edge.protocol.access.active_auth import (
    CHALLENGE_LENGTH,
    HASH_TRAILER_IDS,
    TRAILER_EXPLICIT,
    TRAILER_IMPLICIT_SHA1,
    default_ecdsa_hash,
)
from edge.protocol.verify.signatures import hash_algorithm


def sign_active_auth(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    challenge: bytes,
    *,
    hash_name: str | None = None,
    implicit_sha1_trailer: bool = True,
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """Sign an AA challenge. RSA: 9796-2 scheme 1 (SHA-1 with trailer ``BC`` unless ``hash_name`` or
    ``implicit_sha1_trailer=False`` asks for the two-byte trailer); EC: ``r || s`` with the key-size hash."""
    if len(challenge) != CHALLENGE_LENGTH:
        raise ValueError(f"AA challenge must be {CHALLENGE_LENGTH} bytes")
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        chosen = hash_name or default_ecdsa_hash(private_key.curve.key_size)
        r, s = decode_dss_signature(private_key.sign(challenge, ec.ECDSA(hash_algorithm(chosen))))
        size = (private_key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    chosen = hash_name or "sha1"
    if chosen == "sha1" and implicit_sha1_trailer:
        trailer = bytes((TRAILER_IMPLICIT_SHA1,))
    else:
        trailer = bytes((HASH_TRAILER_IDS[chosen], TRAILER_EXPLICIT))
    numbers = private_key.private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    if n.bit_length() % 8:
        raise ValueError("the simulator signs only with moduli of a whole number of bytes")
    k = n.bit_length() // 8
    hash_length = hash_algorithm(chosen).digest_size
    m1 = rng(k - 1 - hash_length - len(trailer))
    representative = b"\x6a" + m1 + hashlib.new(chosen, m1 + challenge).digest() + trailer
    return pow(int.from_bytes(representative, "big"), d, n).to_bytes(k, "big")
