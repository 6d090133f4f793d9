"""Throw-away PKI for verification tests: keys, X.509 names, CSCA / Document Signer certificates, EF.SOD files
signed by them, and CRLs. Real signatures throughout (cryptography), no mocks. Certificates are built by the
simulator's :func:`edge.sim.pki.make_certificate` (bench/verify.py uses it directly), under names of their own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from edge.protocol.lds.sod import SodFile, encode_sod, parse_sod
from edge.protocol.verify.checks import Check
from edge.protocol.verify.trust import TrustStore
from edge.sim.pki import PrivateKey, SignatureHash, make_certificate, x509_name

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
VALID_FROM = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
VALID_TO = dt.datetime(2034, 1, 1, tzinfo=dt.UTC)

DATA_GROUPS = {1: b"\x61\x05\x5f\x1f\x02AB", 13: b"\x6d\x03\x30\x01\x00", 14: bytes(range(200)) * 3}


@cache
def key(kind: str, slot: int = 0) -> PrivateKey:
    """Throw-away keys, cached so a test run generates each RSA key once."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]) if kind[3:] else 2048)
    curves: dict[str, type[ec.EllipticCurve]] = {
        "brainpoolP256r1": ec.BrainpoolP256R1, "brainpoolP384r1": ec.BrainpoolP384R1,
        "brainpoolP512r1": ec.BrainpoolP512R1, "secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1,
        "secp521r1": ec.SECP521R1,
    }  # fmt: skip
    return ec.generate_private_key(curves[kind]())


def name(common_name: str, country: str = "VN") -> x509.Name:
    return x509_name(common_name, country=country, organization="cccd-edge tests")


def make_cert(
    subject: x509.Name,
    subject_key: PrivateKey,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    *,
    ca: bool,
    serial: int = 1,
    not_before: dt.datetime = VALID_FROM,
    not_after: dt.datetime = VALID_TO,
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] = (),
    signature_hash: SignatureHash | None = None,
) -> x509.Certificate:
    return make_certificate(subject, subject_key.public_key(), issuer, issuer_key, ca=ca, serial=serial,
                            valid_from=not_before, valid_to=not_after, extended_key_usage=extended_key_usage,
                            signature_hash=signature_hash or hashes.SHA256())  # fmt: skip


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@dataclass(frozen=True)
class Pki:
    csca_key: PrivateKey
    csca: x509.Certificate
    ds_key: PrivateKey
    ds: x509.Certificate

    @classmethod
    def create(cls, csca_kind: str = "brainpoolP384r1", ds_kind: str = "brainpoolP256r1", *,
               ds_not_after: dt.datetime = VALID_TO, slot: int = 0) -> Pki:  # fmt: skip
        csca_key, ds_key = key(csca_kind, slot), key(ds_kind, slot + 1)
        csca_name = name(f"CSCA TEST {slot}")
        csca = make_cert(csca_name, csca_key, csca_name, csca_key, ca=True)
        ds = make_cert(name(f"DS TEST {slot}"), ds_key, csca_name, csca_key, ca=False, serial=7,
                       not_after=ds_not_after)  # fmt: skip
        return cls(csca_key, csca, ds_key, ds)

    def store(self) -> TrustStore:
        return TrustStore.from_der([der(self.csca)])

    def sod_file(self, data_groups: dict[int, bytes] = DATA_GROUPS, hash_algorithm: str = "sha256",
                 *, rsa_pss: bool = False) -> bytes:  # fmt: skip
        return encode_sod(data_groups, hash_algorithm=hash_algorithm, signer_key=self.ds_key, signer_cert=self.ds,
                          rsa_pss=rsa_pss)  # fmt: skip

    def sod(self, data_groups: dict[int, bytes] = DATA_GROUPS, hash_algorithm: str = "sha256",
            *, rsa_pss: bool = False) -> SodFile:  # fmt: skip
        return parse_sod(self.sod_file(data_groups, hash_algorithm, rsa_pss=rsa_pss))


@cache
def default_pki() -> Pki:
    return Pki.create()


def by_name(checks: tuple[Check, ...]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def make_crl(pki: Pki, revoked: tuple[int, ...], *, next_update: dt.datetime = VALID_TO,
             signer: PrivateKey | None = None) -> bytes:  # fmt: skip
    builder = (
        x509.CertificateRevocationListBuilder().issuer_name(pki.csca.subject)
        .last_update(VALID_FROM).next_update(next_update)
    )  # fmt: skip
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(VALID_FROM).build()
        )
    return builder.sign(signer or pki.csca_key, hashes.SHA256()).public_bytes(Encoding.DER)
