"""JWS ES256 / JWE ECDH-ES+A256GCM: RFC vectors (interop), round trips, and every rejection path."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge import signers
from edge.errors import ConfigError, TokenError, TokenExpiredError, UnknownKeyError
from edge.protocol import jose

NOW = 1_800_000_000


def _jwk_private(d: str, x: str, y: str) -> ec.EllipticCurvePrivateKey:
    key = ec.derive_private_key(int.from_bytes(jose.b64url_decode(d), "big"), ec.SECP256R1())
    assert jose.public_jwk(key.public_key()) == {"kty": "EC", "crv": "P-256", "x": x, "y": y}
    return key


def test_rfc7515_a3_es256_example_verifies() -> None:
    # Somebody else's token: proves the r||s encoding and base64url are the standard's, not just self-consistent.
    key = jose.jwk_to_public_key({"kty": "EC", "crv": "P-256", "x": RFC7515_A3_X, "y": RFC7515_A3_Y})
    token = ("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19y"
             "b290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q")
    header, payload = jose.verify_es256(token, key)
    assert header == {"alg": "ES256"}
    assert json.loads(payload)["iss"] == "joe"
    with pytest.raises(TokenError, match="does not verify"):
        jose.verify_es256(token[:-2] + ("AQ" if not token.endswith("AQ") else "AA"), key)


def test_rfc7518_c_concat_kdf_vector() -> None:
    alice = _jwk_private("0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo", "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
                         "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps")
    bob = jose.jwk_to_public_key({"kty": "EC", "crv": "P-256", "x": "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ",
                                  "y": "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck"})
    derived = jose._concat_kdf(alice.exchange(ec.ECDH(), bob), "A128GCM", 128, b"Alice", b"Bob")
    assert jose.b64url(derived) == "VqqN6vgjbSBcIijNcacQGg"


@pytest.fixture
def signer() -> signers.KeySigner:
    return signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))


def _token(signer: signers.KeySigner, *, iat: int = NOW, lifetime: int = 3600) -> str:
    claims = jose.result_claims(terminal_id="T1", kid=signer.kid, seq=7, document={"verdict": "verified"},
                                now=iat, lifetime=lifetime)
    return jose.sign_jws(signer, claims, typ=jose.RESULT_TYP)


def test_round_trip_and_claims(signer: signers.KeySigner) -> None:
    verified = jose.verify_jws(_token(signer), {signer.kid: signer.public_key}, NOW, typ=jose.RESULT_TYP)
    assert verified.header == {"alg": "ES256", "kid": signer.kid, "typ": jose.RESULT_TYP}
    claims = verified.claims
    assert (claims["iss"], claims["seq"], claims["kid"], claims["exp"] - claims["iat"]) == ("T1", 7, signer.kid, 3600)
    assert len(claims["jti"]) == 36


#: A P-256 key with its RFC 7638 thumbprint as another standard publishes them: RFC 9449 (OAuth 2.0 DPoP), the
#: ``jwk`` of its example DPoP proof (section 4.1) and that key's ``jkt`` in its examples (section 6.1).
#: (RFC 7638's own example, section 3.1, is an RSA key; key_id takes P-256 keys only.)
RFC9449_JWK = {"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
               "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"}  # fmt: skip
RFC9449_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
#: RFC 7515 appendix A.3: the ES256 example's private key (its public half is the JWK of the A.3 token above).
RFC7515_A3_D = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"
RFC7515_A3_X = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
RFC7515_A3_Y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"


def _thumbprint_by_hand(x: str, y: str) -> str:
    """RFC 7638 section 3 written out for an EC key: the required members in lexicographic order, no whitespace,
    SHA-256, unpadded base64url. Independent of edge.protocol.jose on purpose."""
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}'.encode("ascii")
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode("ascii")


def test_kid_is_the_rfc7638_thumbprint_published_for_a_p256_key() -> None:
    assert jose.key_id(jose.jwk_to_public_key(RFC9449_JWK)) == RFC9449_JKT
    assert _thumbprint_by_hand(RFC9449_JWK["x"], RFC9449_JWK["y"]) == RFC9449_JKT  # the hand-written procedure too


def test_rejections(signer: signers.KeySigner) -> None:
    keys = {signer.kid: signer.public_key}
    with pytest.raises(TokenExpiredError):
        jose.verify_jws(_token(signer, iat=NOW - 7200), keys, NOW)
    with pytest.raises(TokenExpiredError):
        jose.verify_jws(_token(signer, iat=NOW + 3600), keys, NOW)
    with pytest.raises(UnknownKeyError):
        jose.verify_jws(_token(signer), {}, NOW)
    other = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(TokenError, match="does not verify"):
        jose.verify_jws(_token(signer), {signer.kid: other.public_key}, NOW)
    with pytest.raises(TokenError, match="token type"):
        jose.verify_jws(_token(signer), keys, NOW, typ=jose.COMMAND_TYP)
    head, body, sig = _token(signer).split(".")
    forged_body = jose.b64url(json.dumps({"iss": "T1", "iat": NOW, "exp": NOW + 10, "seq": 8}).encode())
    with pytest.raises(TokenError, match="does not verify"):
        jose.verify_jws(f"{head}.{forged_body}.{sig}", keys, NOW)
    none_head = jose.b64url(json.dumps({"alg": "none", "kid": signer.kid}).encode())
    with pytest.raises(TokenError, match="not accepted"):
        jose.verify_jws(f"{none_head}.{body}.", keys, NOW)
    for garbage in ("", "a.b", "a.b.c", "!!.??.**", b"\xff.\xfe.\xfd", f"{head}.{body}.{sig}="):
        with pytest.raises(TokenError):
            jose.verify_jws(garbage, keys, NOW)


def test_jwe_round_trip_and_tampering(signer: signers.KeySigner) -> None:
    ward = ec.generate_private_key(ec.SECP256R1())
    jws = _token(signer)
    jwe = jose.encrypt_jwe(jws.encode(), ward.public_key())
    assert jose.is_jwe(jwe)
    assert not jose.is_jwe(jws)
    assert jws.split(".")[1] not in jwe  # the claims do not travel in clear
    assert b"verified" not in jose.b64url_decode(jwe.split(".")[3])
    assert jose.decrypt_jwe(jwe, ward).decode() == jws
    header = json.loads(jose.b64url_decode(jwe.split(".")[0]))
    assert (header["alg"], header["enc"]) == ("ECDH-ES", "A256GCM")
    assert header["kid"] == _thumbprint_by_hand(*(jose.public_jwk(ward.public_key())[c] for c in ("x", "y")))
    to_rfc9449_key = jose.encrypt_jwe(jws.encode(), jose.jwk_to_public_key(RFC9449_JWK))
    assert json.loads(jose.b64url_decode(to_rfc9449_key.split(".")[0]))["kid"] == RFC9449_JKT
    with pytest.raises(TokenError, match="does not decrypt"):
        jose.decrypt_jwe(jwe, ec.generate_private_key(ec.SECP256R1()))
    parts = jwe.split(".")
    flipped = ("A" if parts[3][0] != "A" else "B") + parts[3][1:]  # first char: all six bits are used
    with pytest.raises(TokenError):
        jose.decrypt_jwe(".".join([*parts[:3], flipped, parts[4]]), ward)
    with pytest.raises(TokenError):
        jose.decrypt_jwe(jws, ward)


def test_file_key_signer_refuses_loose_permissions(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    signers.write_private_key(ec.generate_private_key(ec.SECP256R1()), path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert signers.FileKeySigner(path).alg == "ES256"
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match=r"paths\.device_key") as info:
        signers.FileKeySigner(path)
    assert "chmod 600" in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        signers.FileKeySigner(tmp_path / "missing.key")
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"not a key")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="PEM"):
        signers.FileKeySigner(bad)
    p384 = tmp_path / "p384.key"
    signers.write_private_key(ec.generate_private_key(ec.SECP384R1()), p384)
    with pytest.raises(ConfigError, match="P-256"):
        signers.FileKeySigner(p384)


def test_device_signer_reads_a_key_file(tmp_path: Path) -> None:
    """A path in paths.device_key is a PEM file; a pkcs11: URI goes to the token (tests/unit/test_pkcs11.py)."""
    key = _jwk_private(RFC7515_A3_D, RFC7515_A3_X, RFC7515_A3_Y)
    path = tmp_path / "device.key"
    signers.write_private_key(key, path)
    signer = signers.device_signer(path)
    assert isinstance(signer, signers.FileKeySigner)
    assert signer.kid == _thumbprint_by_hand(RFC7515_A3_X, RFC7515_A3_Y)


def _certificate_for(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "T1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_daemon_checks_the_key_against_the_certificate(signer: signers.KeySigner, tmp_path: Path) -> None:
    """The office verifies results with the certificate's key: a key it does not certify is refused at start."""
    other = ec.generate_private_key(ec.SECP256R1())
    signers.check_certified_key(signers.KeySigner(other), _certificate_for(other, tmp_path / "mine.crt"))
    with pytest.raises(ConfigError, match=r"paths\.device_key: .*other\.crt is not for the key") as info:
        signers.check_certified_key(signer, _certificate_for(other, tmp_path / "other.crt"))
    assert "device install" in info.value.hint
    bare_key = tmp_path / "bare.pem"  # the key alone, no certificate: the office could not find it through its CA
    bare_key.write_bytes(other.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ConfigError, match=r"paths\.device_cert: .*bare\.pem is not a PEM certificate"):
        signers.check_certified_key(signers.KeySigner(other), bare_key)
    signer.close()  # a key in memory: nothing to release, and the signer still works
    assert len(signer.sign(b"x")) == 64


def test_result_token_signed_and_optionally_encrypted(signer: signers.KeySigner) -> None:
    ward = ec.generate_private_key(ec.SECP256R1())
    plain = jose.result_token(signer, terminal_id="T1", seq=3, document={"v": 1}, now=NOW, lifetime=60)
    claims = jose.verify_jws(plain, {signer.kid: signer.public_key}, NOW, typ=jose.RESULT_TYP).claims
    assert (claims["seq"], claims["result"]) == (3, {"v": 1})
    sealed = jose.result_token(signer, terminal_id="T1", seq=4, document={"v": 1}, now=NOW, lifetime=60,
                               encrypt_to=ward.public_key())
    assert jose.is_jwe(sealed)
    inner = jose.decrypt_jwe(sealed, ward)
    assert jose.verify_jws(inner, {signer.kid: signer.public_key}, NOW).claims["seq"] == 4
