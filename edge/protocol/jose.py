"""JOSE for both ends: base64url, JWK and RFC 7638 key ids, compact JWS ES256 (sign with a :class:`Signer`, verify
with a key), JWE ECDH-ES + A256GCM, and the result and command tokens built on them.

Pure (no files, no clock: times are passed in), so the terminal, the office side and provisioning import it without
importing the daemon. Where the device key lives (a PEM file, a PKCS#11 token) is :mod:`edge.signers`.

Why not a JOSE library: we need exactly one signature algorithm and one encryption mode, both short and pinned by
test vectors from RFC 7515 A.3 and RFC 7518 C; a general library would bring algorithm negotiation (``alg: none``,
HS/RS confusion) that we would then have to switch off. Verification accepts ES256 and nothing else.

``x5c`` (RFC 7515 §4.1.6) carries the signer's certificate chain in the protected header, leaf first, each DER in
*standard* base64 (padded, not base64url): the office finds a new terminal's key through its ward CA instead of a
list of keys configured by hand. A result token carries the device certificate when the terminal has one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from edge.errors import JsonError, TokenError, TokenExpiredError, TokenSignatureError, UnknownKeyError
from edge.protocol.b64url import b64url_decode as strict_b64url_decode
from edge.protocol.b64url import b64url_encode
from edge.protocol.bounded_json import loads_bounded
from edge.protocol.crypto import plain_ecdsa_to_der

ES256 = "ES256"
_COORD = 32  # P-256 coordinate / scalar length in bytes
#: Largest JOSE header or payload JSON accepted: the largest result (online_check, every chip file at its cap) is a
#: third of it.
MAX_TOKEN_JSON_BYTES = 1 << 20
#: An ``x5c`` holds the device certificate and at most a few intermediates; a ward CA signs devices directly.
MAX_X5C_CERTIFICATES = 4
#: One certificate's DER: a provisioning certificate is ~600 bytes; this leaves room, not room for abuse.
MAX_X5C_CERTIFICATE_BYTES = 8192
RESULT_TYP = "cccd-result+jwt"
COMMAND_TYP = "cccd-command+jwt"
#: Clock skew tolerated between terminal and office (both should run NTP; the Pi has no RTC).
DEFAULT_LEEWAY = 120
#: A result received this long after its read is late: the office flags it, ``doctor`` warns when one waits so long.
RESULT_LATE_AFTER = 24 * 3600
#: Largest time claim taken, in seconds either side of 1970 (SQLite's INTEGER): no clock says more.
MAX_TIME_CLAIM = (1 << 63) - 1

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


@dataclass(frozen=True, slots=True)
class CompactJws:
    """A compact JWS split, and its protected header parsed, once (:func:`parse_compact`): choosing the key and
    verifying read these instead of parsing the token again (the gateway read each header four times)."""

    header: dict[str, Any]
    signing_input: bytes
    payload64: str
    signature64: str

    def unverified_payload(self, what: str = "JWS payload") -> dict[str, Any]:
        """The payload as a JSON object, before the signature is checked."""
        return json_object(b64url_decode(self.payload64), what)


def parse_compact(token: str | bytes | CompactJws) -> CompactJws:
    """``token`` split into its parts with its header parsed (bounded); :class:`TokenError` otherwise."""
    if isinstance(token, CompactJws):
        return token
    head64, body64, sig64 = split_compact(token, 3)
    return CompactJws(json_object(b64url_decode(head64), "JWS header"), f"{head64}.{body64}".encode("ascii"),
                      body64, sig64)


def unverified_header(token: str | bytes | CompactJws) -> dict[str, Any]:
    """The protected header of a compact JWS, before any check: only to choose the key (``kid``, ``x5c``)."""
    return parse_compact(token).header


def verify_es256(token: str | bytes | CompactJws, key: ec.EllipticCurvePublicKey) -> tuple[dict[str, Any], bytes]:
    """Check a compact ES256 JWS against one key; return (header, payload bytes). No claim checks."""
    jws = parse_compact(token)
    header = jws.header
    if header.get("alg") != ES256:
        raise TokenError(f"algorithm {header.get('alg')!r} is not accepted (ES256 only)")
    if "crit" in header:
        raise TokenError("critical header extensions are not supported")
    signature = b64url_decode(jws.signature64)
    if len(signature) != 2 * _COORD:
        raise TokenError("ES256 signature must be 64 bytes")
    der = plain_ecdsa_to_der(signature)
    try:
        key.verify(der, jws.signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise TokenSignatureError("signature does not verify") from None
    return header, b64url_decode(jws.payload64)


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


# --- signing with a Signer -----------------------------------------------------------------------------------------


class Signer(Protocol):
    """Whatever holds a signing key: an in-memory or file key, a PKCS#11 token (:mod:`edge.signers`)."""

    @property
    def kid(self) -> str: ...

    @property
    def alg(self) -> str: ...

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign(self, data: bytes) -> bytes:
        """The JWS signature over ``data`` (for ES256: raw r||s, 64 bytes)."""
        ...

    def close(self) -> None:
        """Let go of the key: a token session logs out, so the next open in this process can log in again."""
        ...


def sign_jws(signer: Signer, claims: Mapping[str, Any], *, typ: str, x5c: tuple[bytes, ...] = ()) -> str:
    """Compact JWS (RFC 7515 §7.1) over the JSON ``claims``; ``x5c``: the signer's DER certificate chain, leaf
    first, put in the protected header."""
    header: dict[str, Any] = {"alg": signer.alg, "kid": signer.kid, "typ": typ}
    if x5c:
        header["x5c"] = x5c_value(x5c)
    return sign_compact(header, claims, signer.sign)


# --- result tokens -------------------------------------------------------------------------------------------------


def result_claims(
    *, terminal_id: str, kid: str, seq: int, document: Mapping[str, Any], now: int, lifetime: int | None = None,
    jti: str | None = None,
) -> dict[str, Any]:
    """Claims of a result token. ``seq`` lets the office spot gaps; ``jti`` (a new UUID unless given: the terminal
    keeps it to match the office's receipts) lets it drop duplicates.

    A result is evidence of a read, not a permission: it carries no ``exp`` (the office stores it whatever its age,
    flagged: :func:`verify_result_jws`). ``lifetime`` signs the ``exp = iat + lifetime`` that terminals signed
    before that rule (60 days), for the tests that show the office ignores it.
    """
    expiry = {"exp": now + lifetime} if lifetime is not None else {}
    return {
        "iss": terminal_id,
        "kid": kid,
        "seq": seq,
        "jti": jti if jti is not None else str(uuid.uuid4()),
        "iat": now,
        "result": dict(document),
    } | expiry


def result_token(
    signer: Signer,
    *,
    terminal_id: str,
    seq: int,
    document: Mapping[str, Any],
    now: int,
    lifetime: int | None = None,
    encrypt_to: ec.EllipticCurvePublicKey | None = None,
    certificate: bytes | None = None,
    jti: str | None = None,
) -> bytes:
    """The bytes the outbox stores and MQTT carries: a signed result, wrapped in a JWE when the ward has a key.

    ``certificate``: the device certificate's DER (``edge.signers.check_certified_key``), sent as ``x5c`` so the
    office finds the key through the ward CA. Meant as ``outbox.enqueue(lambda seq: result_token(..., seq=seq, ...))``
    so the signed seq is the stored one.
    """
    claims = result_claims(terminal_id=terminal_id, kid=signer.kid, seq=seq, document=document, now=now,
                           lifetime=lifetime, jti=jti)
    jws = sign_jws(signer, claims, typ=RESULT_TYP, x5c=(certificate,) if certificate is not None else ())
    return (encrypt_jwe(jws.encode("ascii"), encrypt_to) if encrypt_to is not None else jws).encode("ascii")


# --- verifying tokens ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    header: dict[str, Any]
    claims: dict[str, Any]


def verify_jws(
    token: str | bytes,
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    now: int | None,
    *,
    typ: str | None = None,
    leeway: int = DEFAULT_LEEWAY,
) -> VerifiedToken:
    """Verify signature (key chosen by ``kid``), ``typ``, ``iat`` and ``exp``; return header and claims.

    ``now`` None: the caller has no trusted time (a terminal whose clock is not synchronised), so ``iat`` and
    ``exp`` are only checked to be integers and the caller judges them against what it knows has passed.
    For what authorises something (commands): a stale or early one is refused. A result's times are never checked
    here (:func:`verify_result_jws`). Raises :class:`UnknownKeyError`, :class:`TokenExpiredError` or
    :class:`TokenError`.
    """
    verified = _verify_signed(token, keys, typ)
    exp, iat = _int_claim(verified.claims, "exp"), _int_claim(verified.claims, "iat")
    if exp is None or iat is None:
        raise TokenError("claims need integer iat and exp")
    if now is not None and now > exp + leeway:
        raise TokenExpiredError(f"token expired {now - exp} s ago")
    if now is not None and iat > now + leeway:
        raise TokenExpiredError(f"token issued {iat - now} s in the future")
    return verified


def verify_result_jws(token: str | bytes | CompactJws, keys: Mapping[str, ec.EllipticCurvePublicKey]
                      ) -> VerifiedToken:  # fmt: skip
    """Verify a result token's signature, ``typ`` and integer ``iat``, and nothing about its times.

    A result is evidence that a read happened: one that waited 90 days in an outbox, or was signed by a terminal
    whose clock said 1970, is as true as a fresh one, and the terminal deleted it once the broker had it. So its
    ``iat`` is a fact the office flags (``edge.office.verify.result_flags``), never a reason to refuse, and the
    ``exp`` that older terminals signed is ignored. ``iat`` must fit SQLite's INTEGER (the office stores it).
    """
    verified = _verify_signed(token, keys, RESULT_TYP)
    iat = _int_claim(verified.claims, "iat")
    if iat is None:
        raise TokenError("claims need an integer iat")
    if abs(iat) > MAX_TIME_CLAIM:
        raise TokenError(f"iat {iat} is outside any clock's range")
    return verified


def _verify_signed(token: str | bytes | CompactJws, keys: Mapping[str, ec.EllipticCurvePublicKey],
                   typ: str | None) -> VerifiedToken:  # fmt: skip
    """Signature (key chosen by ``kid``), ``typ`` and the ``kid`` claim; no time checks."""
    token = parse_compact(token)
    kid = token.header.get("kid")
    if not isinstance(kid, str):
        raise TokenError("JWS header has no kid")
    key = keys.get(kid)
    if key is None:
        raise UnknownKeyError(kid)
    header, payload = verify_es256(token, key)
    if typ is not None and header.get("typ") != typ:
        raise TokenError(f"token type {header.get('typ')!r}, expected {typ!r}")
    claims = json_object(payload, "JWS payload")
    if "kid" in claims and claims["kid"] != kid:
        raise TokenError("kid claim differs from the header's")
    return VerifiedToken(header, claims)


def _int_claim(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- JWE -----------------------------------------------------------------------------------------------------------


def _concat_kdf(shared: bytes, enc: str, key_bits: int, apu: bytes = b"", apv: bytes = b"") -> bytes:
    """RFC 7518 §4.6.2: Concat KDF (NIST SP 800-56A) with the JWE ``otherinfo`` layout."""

    def with_length(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    other = with_length(enc.encode()) + with_length(apu) + with_length(apv) + key_bits.to_bytes(4, "big")
    return ConcatKDFHash(hashes.SHA256(), key_bits // 8, other).derive(shared)


def encrypt_jwe(plaintext: bytes, recipient: ec.EllipticCurvePublicKey, *, cty: str = "JWT") -> str:
    """Compact JWE, ``alg`` ECDH-ES (direct agreement, fresh ephemeral key) and ``enc`` A256GCM."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    cek = _concat_kdf(ephemeral.exchange(ec.ECDH(), recipient), "A256GCM", 256)
    header = {"alg": "ECDH-ES", "enc": "A256GCM", "kid": key_id(recipient), "cty": cty,
              "epk": public_jwk(ephemeral.public_key())}
    protected = b64url(json_bytes(header))
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    return f"{protected}..{b64url(iv)}.{b64url(sealed[:-16])}.{b64url(sealed[-16:])}"


def decrypt_jwe(token: str | bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Open a compact JWE made by :func:`encrypt_jwe`; :class:`TokenError` on any mismatch or tampering."""
    protected, encrypted_key, iv64, ct64, tag64 = split_compact(token, 5)
    header = json_object(b64url_decode(protected), "JWE header")
    if header.get("alg") != "ECDH-ES" or header.get("enc") != "A256GCM":
        raise TokenError(f"JWE {header.get('alg')}/{header.get('enc')} not accepted (ECDH-ES/A256GCM only)")
    if encrypted_key:
        raise TokenError("ECDH-ES direct agreement carries no encrypted key")
    epk = header.get("epk")
    if not isinstance(epk, dict):
        raise TokenError("JWE header has no epk")
    peer = jwk_to_public_key(epk)
    apu = b64url_decode(header["apu"]) if "apu" in header else b""
    apv = b64url_decode(header["apv"]) if "apv" in header else b""
    cek = _concat_kdf(private_key.exchange(ec.ECDH(), peer), "A256GCM", 256, apu, apv)
    iv, tag = b64url_decode(iv64), b64url_decode(tag64)
    if len(iv) != 12 or len(tag) != 16:
        raise TokenError("JWE iv must be 12 bytes and tag 16 bytes")
    try:
        return AESGCM(cek).decrypt(iv, b64url_decode(ct64) + tag, protected.encode("ascii"))
    except InvalidTag:
        raise TokenError("JWE does not decrypt (wrong key or tampered)") from None


def is_jwe(token: str | bytes) -> bool:
    """Five parts: an encrypted token; three: a plain JWS."""
    dots = token.count(b".") if isinstance(token, bytes) else token.count(".")
    return dots == 4
