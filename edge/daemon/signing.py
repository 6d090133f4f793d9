"""Signed (JWS ES256) and optionally encrypted (JWE ECDH-ES + A256GCM) result tokens, written on ``cryptography``.

Why not a JOSE library: we need exactly one signature algorithm and one encryption mode, both short and pinned by
test vectors from RFC 7515 A.3 and RFC 7518 C; a general library would bring algorithm negotiation (``alg: none``,
HS/RS confusion) that we would then have to switch off. Verification here accepts ES256 and nothing else.

The office side imports the ``verify_*`` / ``decrypt_*`` functions from here (via ``edge.office.verify``), so both
ends share one encoding; the pure JWS core both sides need is ``edge.protocol.jose``.

A result token's header carries the device certificate (``x5c``) when the terminal has one (``paths.device_cert``):
the office gateway then finds the key through the ward CA, and a new terminal needs no office configuration.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.x509 import load_pem_x509_certificate

from edge.errors import ConfigError, TokenError, TokenExpiredError, UnknownKeyError
from edge.files import private_key_pem, write_private
from edge.protocol.jose import ES256 as ES256  # re-exported: the terminal's modules and tests import them from here
from edge.protocol.jose import MAX_TOKEN_JSON_BYTES as MAX_TOKEN_JSON_BYTES
from edge.protocol.jose import b64url as b64url
from edge.protocol.jose import b64url_decode as b64url_decode
from edge.protocol.jose import es256_signature, json_bytes, json_object, sign_compact, split_compact, x5c_value
from edge.protocol.jose import jwk_to_public_key as jwk_to_public_key
from edge.protocol.jose import key_id as key_id
from edge.protocol.jose import public_jwk as public_jwk
from edge.protocol.jose import verify_es256 as verify_es256
from edge.protocol.pkcs11_uri import Pkcs11Uri

RESULT_TYP = "cccd-result+jwt"
COMMAND_TYP = "cccd-command+jwt"
#: Clock skew tolerated between terminal and office (both should run NTP; the Pi has no RTC).
DEFAULT_LEEWAY = 120
#: A result received this long after its read is late: the office flags it, ``doctor`` warns when one waits so long.
RESULT_LATE_AFTER = 24 * 3600
#: Largest time claim taken, in seconds either side of 1970 (SQLite's INTEGER): no clock says more.
MAX_TIME_CLAIM = (1 << 63) - 1
_json_bytes = json_bytes
_json_object = json_object
_split = split_compact


# --- keys --------------------------------------------------------------------------------------------------------


def load_public_key(path: Path, *, config_key: str = "") -> ec.EllipticCurvePublicKey:
    """A P-256 public key from a PEM public key or certificate (the office gets the terminal's certificate)."""
    config_key = config_key or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key=config_key) from None
    try:
        key: object
        if b"BEGIN CERTIFICATE" in data:
            key = load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"not a PEM public key or certificate: {exc}", key=config_key) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("the key must be EC P-256", key=config_key)
    return key


def load_private_key(path: Path, *, config_key: str = "paths.device_key") -> ec.EllipticCurvePrivateKey:
    """An unencrypted P-256 PEM private key, refused when group or others may read it (it signs evidence)."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path} is accessible by group/others (mode {stat.S_IMODE(mode):04o}); chmod 600 it",
                              key=config_key)
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key=config_key) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not an unencrypted PEM private key: {exc}", key=config_key) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("the key must be EC P-256", key=config_key)
    return key


def write_private_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    """Write ``key`` as PEM, created 0600 (provisioning and tests)."""
    write_private(path, private_key_pem(key))


# --- signing -----------------------------------------------------------------------------------------------------


class Signer(Protocol):
    """Whatever holds the device key: a PEM file (:class:`FileKeySigner`) or a PKCS#11 token (``Pkcs11Signer``)."""

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


class KeySigner:
    """ES256 with an in-memory P-256 private key."""

    alg = ES256

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self._kid = key_id(key.public_key())

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        return es256_signature(self._key, data)

    def close(self) -> None:
        """Nothing to release: the key is only memory."""


class FileKeySigner(KeySigner):
    """The terminal's device key from a 0600 PEM file (``paths.device_key``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(load_private_key(path))


def device_signer(key: Path | Pkcs11Uri) -> Signer:
    """The signer for ``paths.device_key``: a 0600 PEM file, or a key that never leaves its PKCS#11 token."""
    if isinstance(key, Path):
        return FileKeySigner(key)
    from edge.daemon.pkcs11_signer import Pkcs11Signer  # that module imports this one: bound at call time

    return Pkcs11Signer.open(key)


def check_certified_key(signer: Signer, cert_path: Path) -> bytes:
    """Refuse a device key that ``cert_path`` does not certify: the office would reject every result it signs (a
    rotation stopped half-way, a certificate copied from another terminal). Returns the certificate's DER, which
    result tokens carry (``x5c``)."""
    if key_id(load_public_key(cert_path)) != signer.kid:
        raise ConfigError(f"{cert_path} is not for the key", key="paths.device_key",
                          hint="install the certificate the ward signed for this terminal's CSR: "
                          "python -m provisioning device install")
    return load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)


def sign_jws(signer: Signer, claims: Mapping[str, Any], *, typ: str, x5c: tuple[bytes, ...] = ()) -> str:
    """Compact JWS (RFC 7515 §7.1) over the JSON ``claims``; ``x5c``: the signer's DER certificate chain, leaf
    first, put in the protected header."""
    header: dict[str, Any] = {"alg": signer.alg, "kid": signer.kid, "typ": typ}
    if x5c:
        header["x5c"] = x5c_value(x5c)
    return sign_compact(header, claims, signer.sign)


def result_claims(
    *, terminal_id: str, kid: str, seq: int, document: Mapping[str, Any], now: int, lifetime: int | None = None
) -> dict[str, Any]:
    """Claims of a result token. ``seq`` lets the office spot gaps; ``jti`` lets it drop duplicates.

    A result is evidence of a read, not a permission: it carries no ``exp`` (the office stores it whatever its age,
    flagged: :func:`verify_result_jws`). ``lifetime`` signs the ``exp = iat + lifetime`` that terminals signed
    before that rule (60 days), for the tests that show the office ignores it.
    """
    expiry = {"exp": now + lifetime} if lifetime is not None else {}
    return {
        "iss": terminal_id,
        "kid": kid,
        "seq": seq,
        "jti": str(uuid.uuid4()),
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
) -> bytes:
    """The bytes the outbox stores and MQTT carries: a signed result, wrapped in a JWE when the ward has a key.

    ``certificate``: the device certificate's DER (:func:`check_certified_key`), sent as ``x5c`` so the office
    finds the key through the ward CA. Meant as ``outbox.enqueue(lambda seq: result_token(..., seq=seq, ...))`` so
    the signed seq is the stored one.
    """
    claims = result_claims(terminal_id=terminal_id, kid=signer.kid, seq=seq, document=document, now=now,
                           lifetime=lifetime)
    jws = sign_jws(signer, claims, typ=RESULT_TYP, x5c=(certificate,) if certificate is not None else ())
    return (encrypt_jwe(jws.encode("ascii"), encrypt_to) if encrypt_to is not None else jws).encode("ascii")


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


def verify_result_jws(token: str | bytes, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> VerifiedToken:
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


def _verify_signed(token: str | bytes, keys: Mapping[str, ec.EllipticCurvePublicKey], typ: str | None) -> VerifiedToken:
    """Signature (key chosen by ``kid``), ``typ`` and the ``kid`` claim; no time checks."""
    head64 = _split(token, 3)[0]
    kid = _json_object(b64url_decode(head64), "JWS header").get("kid")
    if not isinstance(kid, str):
        raise TokenError("JWS header has no kid")
    key = keys.get(kid)
    if key is None:
        raise UnknownKeyError(kid)
    header, payload = verify_es256(token, key)
    if typ is not None and header.get("typ") != typ:
        raise TokenError(f"token type {header.get('typ')!r}, expected {typ!r}")
    claims = _json_object(payload, "JWS payload")
    if "kid" in claims and claims["kid"] != kid:
        raise TokenError("kid claim differs from the header's")
    return VerifiedToken(header, claims)


def _int_claim(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- encryption --------------------------------------------------------------------------------------------------


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
    protected = b64url(_json_bytes(header))
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    return f"{protected}..{b64url(iv)}.{b64url(sealed[:-16])}.{b64url(sealed[-16:])}"


def decrypt_jwe(token: str | bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Open a compact JWE made by :func:`encrypt_jwe`; :class:`TokenError` on any mismatch or tampering."""
    protected, encrypted_key, iv64, ct64, tag64 = _split(token, 5)
    header = _json_object(b64url_decode(protected), "JWE header")
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
