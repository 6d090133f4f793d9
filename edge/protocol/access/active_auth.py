"""Active Authentication (ICAO 9303-11 §6.1): the chip proves it holds the private key of DG15, so it is not a copy.

Passive authentication proves the *data* is genuine; a cloned chip carries the same data. AA sends a fresh
8-byte challenge in INTERNAL AUTHENTICATE and checks the chip's signature over it with the DG15 key:

* RSA: ISO/IEC 9796-2 digital signature scheme 1 with partial message recovery. The recovered representative is
  ``6A || M1 || H(M1 || challenge) || trailer``; the trailer is ``BC`` (SHA-1 implied) or ``<hash id> CC`` with the
  ISO/IEC 10118-3 identifiers 33 SHA-1, 38 SHA-224, 34 SHA-256, 36 SHA-384, 35 SHA-512.
* ECDSA: plain ``r || s`` (BSI TR-03111) over the challenge, hashed with the algorithm DG14's
  ActiveAuthenticationInfo names (``card_access.parse_security_infos(...).active_authentication``) or, without
  one, the hash that matches the key size.

The check is only meaningful inside a secure channel; the caller passes the secured connection.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from edge.errors import SignatureError, StatusWordError
from edge.protocol.apdu import ApduConnection, CommandApdu
from edge.protocol.crypto import plain_ecdsa_to_der
from edge.protocol.iso7816 import INS_INTERNAL_AUTHENTICATE
from edge.protocol.keys import PublicKey
from edge.protocol.verify.checks import ACTIVE_AUTHENTICATION, Check, CheckStatus
from edge.protocol.verify.signatures import MAX_RSA_BITS, digest, ecdsa_hash_for, hash_algorithm

CHALLENGE_LENGTH = 8

#: ISO/IEC 10118-3 hash-function identifiers used in the two-byte ISO/IEC 9796-2 trailer ``<id> CC``.
TRAILER_HASH_IDS: dict[int, str] = {0x33: "sha1", 0x38: "sha224", 0x34: "sha256", 0x36: "sha384", 0x35: "sha512"}
HASH_TRAILER_IDS = {name: ident for ident, name in TRAILER_HASH_IDS.items()}
TRAILER_IMPLICIT_SHA1 = 0xBC
TRAILER_EXPLICIT = 0xCC

Random = Callable[[int], bytes]
HashSource = Literal["trailer", "DG14", "key size", ""]


@dataclass(frozen=True, slots=True)
class ActiveAuthResult:
    """Outcome of AA; ``algorithm`` e.g. ``RSA-ISO9796-2/sha256`` and where the hash choice came from.

    The ``challenge`` (once sent), the chip's ``signature`` and DG14's ``signature_algorithm_oid`` (once it answered)
    are kept, verified or not: with DG15's key they let the office that chose the challenge redo the check itself.
    """

    status: CheckStatus
    reason: str
    algorithm: str = ""
    hash_source: HashSource = ""
    challenge: bytes | None = None
    signature: bytes | None = None
    signature_algorithm_oid: str | None = None

    @property
    def verified(self) -> bool:
        return self.status is CheckStatus.PASSED

    def check(self) -> Check:
        detail = {"algorithm": self.algorithm, "hash_source": self.hash_source} if self.algorithm else {}
        return Check(ACTIVE_AUTHENTICATION, self.status, self.reason, detail)

    @classmethod
    def not_supported(cls) -> ActiveAuthResult:
        """The card has no DG15: it offers no active authentication (not a failure by itself)."""
        return cls(CheckStatus.NOT_SUPPORTED, "the card has no Active Authentication key (no DG15)")


def default_ecdsa_hash(key_size: int) -> str:
    """The hash matching an EC key size, used when DG14 names no AA signature algorithm."""
    for limit, name in ((160, "sha1"), (224, "sha224"), (256, "sha256"), (384, "sha384")):
        if key_size <= limit:
            return name
    return "sha512"


def internal_authenticate_command(challenge: bytes, *, extended: bool = False) -> CommandApdu:
    """``00 88 00 00 08 <challenge> 00`` (extended Le for RSA keys above 2048 bits, when the transport allows)."""
    if len(challenge) != CHALLENGE_LENGTH:
        raise ValueError(f"AA challenge must be {CHALLENGE_LENGTH} bytes")
    return CommandApdu(0x00, INS_INTERNAL_AUTHENTICATE, 0x00, 0x00, challenge,
                       le=65536 if extended else 256, extended=extended)  # fmt: skip


def verify_active_auth(
    public_key: PublicKey, challenge: bytes, signature: bytes, *, signature_algorithm_oid: str | None = None
) -> tuple[str, HashSource]:
    """Verify the chip's answer; return (algorithm label, hash source). Raises :class:`SignatureError`."""
    if len(challenge) != CHALLENGE_LENGTH:
        raise SignatureError(f"the challenge must be {CHALLENGE_LENGTH} bytes")
    if isinstance(public_key, rsa.RSAPublicKey):
        hash_name = _verify_iso9796_2(public_key, challenge, signature)
        return f"RSA-ISO9796-2/{hash_name}", "trailer"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        source: HashSource = "key size"
        hash_name = default_ecdsa_hash(public_key.curve.key_size)
        if signature_algorithm_oid:
            named = ecdsa_hash_for(signature_algorithm_oid)
            if named is None:
                raise SignatureError(f"DG14 names an unsupported AA algorithm {signature_algorithm_oid}")
            hash_name, source = named, "DG14"
        size = (public_key.curve.key_size + 7) // 8
        if len(signature) != 2 * size:
            raise SignatureError(f"ECDSA answer of {len(signature)} bytes, expected {2 * size} (r || s)")
        der = plain_ecdsa_to_der(signature)
        try:
            public_key.verify(der, challenge, ec.ECDSA(hash_algorithm(hash_name)))
        except InvalidSignature as exc:
            raise SignatureError("the chip's signature does not match the challenge") from exc
        return f"ECDSA/{public_key.curve.name}/{hash_name}", source
    raise SignatureError(f"unsupported AA key type {type(public_key).__name__}")


def _verify_iso9796_2(key: rsa.RSAPublicKey, challenge: bytes, signature: bytes) -> str:
    """ISO/IEC 9796-2 scheme 1, partial recovery; returns the hash name the trailer declares."""
    if key.key_size > MAX_RSA_BITS:
        raise SignatureError(f"RSA key of {key.key_size} bits is beyond any real chip")
    numbers = key.public_numbers()
    n, e = numbers.n, numbers.e
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        raise SignatureError(f"RSA answer of {len(signature)} bytes for a {key.key_size}-bit key")
    s = int.from_bytes(signature, "big")
    if not 0 < s < n:
        raise SignatureError("the RSA answer is not a number below the modulus")
    m = pow(s, e, n)
    if m & 0x0F != 0x0C:  # the standard lets the signer send n - J instead of J
        m = n - m
    block = m.to_bytes(k, "big")
    if block[0] & 0xC0 != 0x40:
        raise SignatureError("the chip's answer is not an ISO/IEC 9796-2 signature (wrong header)")
    if block[-1] == TRAILER_IMPLICIT_SHA1:
        hash_name, trailer = "sha1", 1
    elif block[-1] == TRAILER_EXPLICIT and block[-2] in TRAILER_HASH_IDS:
        hash_name, trailer = TRAILER_HASH_IDS[block[-2]], 2
    else:
        raise SignatureError("the chip's answer has an unknown ISO/IEC 9796-2 trailer")
    if not block[0] & 0x20:
        raise SignatureError("total message recovery: the challenge is not bound into the signature")
    start = next((i for i, byte in enumerate(block) if byte & 0x0F == 0x0A), -1)
    if start < 0 or any(byte != 0xBB for byte in block[1:start]) or (start > 0 and block[0] & 0x0F != 0x0B):
        raise SignatureError("the chip's answer has malformed ISO/IEC 9796-2 padding")
    hash_length = hash_algorithm(hash_name).digest_size
    end = k - trailer - hash_length
    if end < start + 1:
        raise SignatureError("the RSA key is too small for this hash")
    m1, expected = block[start + 1 : end], block[end : k - trailer]
    if not hmac.compare_digest(digest(hash_name, m1 + challenge), expected):
        raise SignatureError("the chip's signature does not match the challenge")
    return hash_name


def active_authenticate(
    connection: ApduConnection,
    public_key: PublicKey,
    *,
    signature_algorithm_oid: str | None = None,
    rng: Random = os.urandom,
) -> ActiveAuthResult:
    """Challenge the chip and verify its answer. A refusal by the chip or a bad signature is a failed result;
    transport and secure-messaging errors propagate, because they say nothing about the card's genuineness."""
    challenge = rng(CHALLENGE_LENGTH)
    extended = (
        isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size > 2048
        and connection.supports_extended_length
    )  # fmt: skip
    try:
        response = connection.send_and_receive(internal_authenticate_command(challenge, extended=extended))
        signature = response.check("INTERNAL AUTHENTICATE")
    except StatusWordError as exc:  # secure-messaging and transport errors propagate: the read failed, not AA
        return ActiveAuthResult(CheckStatus.FAILED, f"the chip refused Active Authentication: {exc}",
                                challenge=challenge)
    algorithm = ""  # both stay empty unless the signature verifies
    source: HashSource = ""
    try:
        algorithm, source = verify_active_auth(
            public_key, challenge, signature, signature_algorithm_oid=signature_algorithm_oid
        )
    except SignatureError as exc:
        status, reason = CheckStatus.FAILED, f"Active Authentication failed: {exc}; the chip may be a copy"
    else:
        status, reason = CheckStatus.PASSED, "the chip proved it holds the key in DG15"
    return ActiveAuthResult(status, reason, algorithm, source, challenge=challenge, signature=signature,
                            signature_algorithm_oid=signature_algorithm_oid)
