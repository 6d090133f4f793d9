"""Certificates no honest issuer makes, built without the cost of making them honestly (no huge key generated)."""

from __future__ import annotations

from asn1crypto import algos as asn1_algos
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509


def with_rsa_modulus_of(cert_der: bytes, bits: int) -> bytes:
    """``cert_der`` with its key replaced by an RSA modulus of ``bits`` bits (any odd number of that size loads)
    and claiming sha256WithRSAEncryption; the signature is zeros of the key's length, so it can only be refused."""
    cert = asn1_x509.Certificate.load(cert_der)
    tbs = cert["tbs_certificate"]
    tbs["subject_public_key_info"] = asn1_keys.PublicKeyInfo({
        "algorithm": {"algorithm": "rsa"},
        "public_key": {"modulus": (1 << (bits - 1)) | 1, "public_exponent": 65537},
    })  # fmt: skip
    tbs["signature"] = asn1_algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"})
    cert["signature_algorithm"] = asn1_algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"})
    cert["signature_value"] = bytes((bits + 7) // 8)
    return bytes(cert.dump(force=True))
