"""The pure core of the JOSE tokens (compact JWS ES256): encode, sign with a given function, verify with a given key.

Pure (no files, no clock), so both ends import it: the terminal's signer and the office (``edge.daemon.signing``
builds result and command tokens on it; ``edge.protocol.receipt`` verifies the gateway's receipts on the terminal).
ES256 and nothing else: no algorithm negotiation to switch off (``alg: none``, HS/RS confusion).

``x5c`` (RFC 7515 §4.1.6) carries the signer's certificate chain in the protected header, leaf first, each DER in
*standard* base64 (padded, not base64url): the office finds a new terminal's key through its ward CA instead of a
list of keys configured by hand.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from edge.errors import JsonError, TokenError, TokenSignatureError
from edge.protocol.b64url import b64url_decode as strict_b64url_decode
from edge.protocol.b64url import b64url_encode
from edge.protocol.bounded_json import loads_bounded
from edge.protocol.crypto import plain_ecdsa_to_der

ES256 = "ES256"
_COORD = 32  # P-256 coordinate / scalar length in bytes
#: Largest JOSE header or payload JSON accepted: a result with the largest photo is under a third of it.
MAX_TOKEN_JSON_BYTES = 1 << 20
#: An ``x5c`` holds the device certificate and at most a few intermediates; a ward CA signs devices directly.
MAX_X5C_CERTIFICATES = 4
#: One certificate's DER: a provisioning certificate is ~600 bytes; this leaves room, not room for abuse.
MAX_X5C_CERTIFICATE_BYTES = 8192

b64url = b64url_encode


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url (one spelling); :class:`TokenError` otherwise."""
    try:
        return strict_b64url_decode(text)
    except ValueError as exc:
        raise TokenError(str(exc)) from None


def json_bytes(obj: Mapping[str, Any]) -> bytes:
    """The compact, key-sorted JSON a token signs."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object from untrusted bytes, bounded in size and depth; :class:`TokenError` otherwise."""
    try:  # bounded: a header or payload nested thousands deep would raise RecursionError in json.loads
        value = loads_bounded(data, what=what, max_bytes=MAX_TOKEN_JSON_BYTES)
    except JsonError as exc:
        raise TokenError(str(exc)) from None
    if not isinstance(value, dict):
        raise TokenError(f"{what} is not a JSON object")
    return value


# --- keys --------------------------------------------------------------------------------------------------------


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    if not isinstance(key.curve, ec.SECP256R1):
        raise TokenError(f"only P-256 keys are supported, not {key.curve.name}")
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(_COORD, "big")),
        "y": b64url(numbers.y.to_bytes(_COORD, "big")),
    }


def jwk_to_public_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """A P-256 public JWK; raises :class:`TokenError` for anything else or a point off the curve."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise TokenError("only EC P-256 JWKs are supported")
    x, y = b64url_decode(str(jwk.get("x", ""))), b64url_decode(str(jwk.get("y", "")))
    if len(x) != _COORD or len(y) != _COORD:
        raise TokenError("JWK coordinates must be 32 bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
    except ValueError as exc:
        raise TokenError(f"JWK point is not on P-256: {exc}") from None


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 JWK thumbprint: both sides derive the same kid from the key alone, nothing to provision."""
    jwk = public_jwk(key)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


# --- compact JWS ---------------------------------------------------------------------------------------------------


def es256_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """The JWS form of an ES256 signature over ``data``: raw r||s, 64 bytes."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")


def sign_compact(header: Mapping[str, Any], claims: Mapping[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """Compact JWS (RFC 7515 §7.1): ``sign`` returns the raw ES256 signature (r||s) over the signing input."""
    signing_input = f"{b64url(json_bytes(header))}.{b64url(json_bytes(claims))}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


def split_compact(token: str | bytes, parts: int) -> list[str]:
    """The dot-separated parts of an ASCII compact token; :class:`TokenError` for another count or non-ASCII."""
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise TokenError("token is not ASCII") from None
    elif not token.isascii():  # a compact token is ASCII by definition; later steps encode parts as ASCII
        raise TokenError("token is not ASCII")
    pieces = token.strip().split(".")
    if len(pieces) != parts:
        raise TokenError(f"expected {parts} dot-separated parts, got {len(pieces)}")
    return pieces


def unverified_header(token: str | bytes) -> dict[str, Any]:
    """The protected header of a compact JWS, before any check: only to choose the key (``kid``, ``x5c``)."""
    return json_object(b64url_decode(split_compact(token, 3)[0]), "JWS header")


def verify_es256(token: str | bytes, key: ec.EllipticCurvePublicKey) -> tuple[dict[str, Any], bytes]:
    """Check a compact ES256 JWS against one key; return (header, payload bytes). No claim checks."""
    head64, body64, sig64 = split_compact(token, 3)
    header = json_object(b64url_decode(head64), "JWS header")
    if header.get("alg") != ES256:
        raise TokenError(f"algorithm {header.get('alg')!r} is not accepted (ES256 only)")
    if "crit" in header:
        raise TokenError("critical header extensions are not supported")
    signature = b64url_decode(sig64)
    if len(signature) != 2 * _COORD:
        raise TokenError("ES256 signature must be 64 bytes")
    der = plain_ecdsa_to_der(signature)
    try:
        key.verify(der, f"{head64}.{body64}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise TokenSignatureError("signature does not verify") from None
    return header, b64url_decode(body64)


# --- x5c -----------------------------------------------------------------------------------------------------------


def x5c_value(chain: Sequence[bytes]) -> list[str]:
    """The ``x5c`` header value for DER certificates, leaf first."""
    return [base64.b64encode(der).decode("ascii") for der in chain]


def x5c_chain(header: Mapping[str, Any]) -> tuple[bytes, ...]:
    """The DER certificates of the header's ``x5c`` (empty when it has none); :class:`TokenError` for a value that
    is not a short list of canonical standard-base64 strings. Parsing them as certificates is the caller's."""
    value = header.get("x5c")
    if value is None:
        return ()
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_X5C_CERTIFICATES:
        raise TokenError(f"x5c must be a list of 1 to {MAX_X5C_CERTIFICATES} certificates")
    chain = []
    for entry in value:
        if not isinstance(entry, str) or len(entry) > MAX_X5C_CERTIFICATE_BYTES * 4 // 3 + 4 or not entry.isascii():
            raise TokenError("x5c entry is not a certificate of a sensible size in base64")
        try:
            der = base64.b64decode(entry, validate=True)
        except (binascii.Error, ValueError):
            raise TokenError("x5c entry is not standard base64") from None
        if base64.b64encode(der).decode("ascii") != entry:
            raise TokenError("x5c entry is not canonical base64")
        chain.append(der)
    return tuple(chain)
