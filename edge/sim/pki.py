"""The simulator's test PKI: a CSCA like Vietnam's (EC brainpool) and Document Signers chained to it.

Generated once per state directory and reused, so test anchors stay stable across runs and pytest sessions.
Besides the good DS it keeps the material forgery profiles need: an expired DS under the real test CSCA, a rogue
DS that claims the test CSCA's name but is signed by another key, and an untrusted CSCA with its own DS.
Certificate dates are fixed (no clock), far enough apart that "valid now" holds for years.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from edge.files import private_key_pem, write_private

CSCA_CURVE = ec.BrainpoolP384R1
DS_CURVE = ec.BrainpoolP256R1
VALID_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
CSCA_VALID_TO = dt.datetime(2045, 1, 1, tzinfo=dt.UTC)
DS_VALID_TO = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
EXPIRED_DS_VALID_TO = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)


def default_pki_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cccd-edge" / "sim-pki"


@dataclass(frozen=True, slots=True)
class Signer:
    """A private key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


@dataclass(frozen=True, slots=True)
class SimPki:
    directory: Path
    csca: Signer
    ds: Signer
    expired_ds: Signer  # issued by ``csca``, validity over before 2021
    rogue_ds: Signer  # names ``csca`` as issuer but is signed by another key
    untrusted_csca: Signer  # a CSCA that no trust store holds
    untrusted_ds: Signer  # issued by ``untrusted_csca``

    @property
    def csca_certificate_path(self) -> Path:
        return self.directory / "csca.pem"


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
SignatureHash = hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512
SIM_ORGANIZATION = "cccd-edge simulator (TEST ONLY)"


def x509_name(common_name: str, *, country: str = "VN", organization: str = SIM_ORGANIZATION) -> x509.Name:
    """C, O, CN: the shape of a CSCA's and a Document Signer's names."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_certificate(
    subject: x509.Name,
    public_key: PublicKey,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    *,
    ca: bool,
    serial: int,
    valid_from: dt.datetime,
    valid_to: dt.datetime,
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] = (),
    signature_hash: SignatureHash | None = None,
) -> x509.Certificate:
    """A CSCA (``ca``) or Document Signer certificate as ICAO 9303-12 profiles them: critical key usage, subject
    and authority key identifiers, basic constraints on a CA. EC or RSA, so the simulator, the tests and the
    benchmarks build their throw-away PKIs alike; ``signature_hash`` defaults to SHA-384 under an EC issuer key of
    384 bits or more, else SHA-256."""
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(usage, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    if extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
    if signature_hash is None:
        large = isinstance(issuer_key, ec.EllipticCurvePrivateKey) and issuer_key.curve.key_size >= 384
        return builder.sign(issuer_key, hashes.SHA384() if large else hashes.SHA256())
    return builder.sign(issuer_key, signature_hash)


def create_csca(common_name: str, curve: ec.EllipticCurve | None = None) -> Signer:
    """A fresh self-signed CSCA (brainpoolP384r1 by default), valid 2020-2045."""
    key = ec.generate_private_key(curve or CSCA_CURVE())
    name = x509_name(common_name)
    cert = make_certificate(
        name, key.public_key(), name, key, ca=True, serial=1, valid_from=VALID_FROM, valid_to=CSCA_VALID_TO
    )
    return Signer(key, cert)


def issue_document_signer(
    issuer: Signer,
    common_name: str,
    *,
    serial: int,
    valid_from: dt.datetime = VALID_FROM,
    valid_to: dt.datetime = DS_VALID_TO,
    signing_key: ec.EllipticCurvePrivateKey | None = None,
) -> Signer:
    """A DS certificate naming ``issuer``; ``signing_key`` other than the issuer's makes a rogue DS."""
    key = ec.generate_private_key(DS_CURVE())
    cert = make_certificate(
        x509_name(common_name),
        key.public_key(),
        issuer.certificate.subject,
        signing_key or issuer.key,
        ca=False,
        serial=serial,
        valid_from=valid_from,
        valid_to=valid_to,
    )
    return Signer(key, cert)


def _generate() -> dict[str, Signer]:
    csca = create_csca("CSCA TEST Viet Nam")
    untrusted = create_csca("CSCA UNTRUSTED")
    return {
        "csca": csca,
        "ds": issue_document_signer(csca, "Document Signer TEST 1", serial=2),
        "expired-ds": issue_document_signer(
            csca, "Document Signer TEST expired", serial=3, valid_to=EXPIRED_DS_VALID_TO
        ),
        "rogue-ds": issue_document_signer(csca, "Document Signer TEST 1", serial=2, signing_key=untrusted.key),
        "untrusted-csca": untrusted,
        "untrusted-ds": issue_document_signer(untrusted, "Document Signer UNTRUSTED", serial=2),
    }


def _save(directory: Path, signers: dict[str, Signer]) -> None:
    for name, signer in signers.items():
        write_private(directory / f"{name}.key", private_key_pem(signer.key))
        write_private(directory / f"{name}.pem", signer.certificate.public_bytes(serialization.Encoding.PEM))


def _load(directory: Path, name: str) -> Signer:
    key = serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{directory / name}.key is not an EC key")
    return Signer(key, x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes()))


def load_or_create_pki(directory: Path | None = None) -> SimPki:
    """The PKI stored in ``directory`` (default ~/.cache/cccd-edge/sim-pki), generated on first use.

    A file lock makes concurrent test sessions agree on one PKI; all files are 0600.
    """
    root = directory if directory is not None else default_pki_dir()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with os.fdopen(os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600), "r+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "untrusted-ds.pem").exists():  # written last
            _save(root, _generate())
        signers = {
            name: _load(root, name)
            for name in ("csca", "ds", "expired-ds", "rogue-ds", "untrusted-csca", "untrusted-ds")
        }
    return SimPki(
        directory=root,
        csca=signers["csca"],
        ds=signers["ds"],
        expired_ds=signers["expired-ds"],
        rogue_ds=signers["rogue-ds"],
        untrusted_csca=signers["untrusted-csca"],
        untrusted_ds=signers["untrusted-ds"],
    )


def csca_certificate_path(directory: Path | None = None) -> Path:
    """PEM of the test CSCA, the trust anchor tests install; the PKI is created if needed."""
    return load_or_create_pki(directory).csca_certificate_path
