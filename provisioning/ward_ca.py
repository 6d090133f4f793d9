"""Ward side: the ward's certificate authority, which signs the certificates of its own terminals only.

The CA key stays on the ward's offline provisioning machine (0600). A CSR naming another ward is refused, so a
compromised ward CA cannot mint terminals for a neighbour whose broker trusts only its own CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.errors import ProvisioningError
from edge.files import private_key_pem
from provisioning.files import PRIVATE, PRIVATE_DIR, PUBLIC, ensure_dir, read_file, write_atomic
from provisioning.pki import (
    GATEWAY_PREFIX,
    ORGANIZATION,
    GatewayIdentity,
    TerminalIdentity,
    load_certificate,
    load_private_key,
    new_private_key,
    same_public_key,
    utcnow,
)

CA_KEY = "ward-ca.key"
CA_CERT = "ward-ca.crt"
COMMAND_KEY = "ward-command.key"
COMMAND_PUB = "ward-command.pub"
#: What a certificate from this CA lets its holder do at the broker (see sign_csr).
Role = Literal["terminal", "gateway"]
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\Z")
#: Backdating absorbs a terminal whose clock runs a few minutes slow (before NTP sync) at first connect.
CLOCK_SKEW = dt.timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class WardCa:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    ward_code: str


def _ca_name(ward_code: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ward_code),
            x509.NameAttribute(NameOID.COMMON_NAME, f"cccd-edge ward CA {ward_code}"),
        ]
    )


def load_ward_ca(directory: Path) -> WardCa:
    key = load_private_key(directory / CA_KEY)
    cert = load_certificate(directory / CA_CERT, "ward CA certificate")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not same_public_key(public, key.public_key()):
        raise ProvisioningError("ward CA key and certificate do not match", path=str(directory))
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(ous) != 1:
        raise ProvisioningError("ward CA certificate must name its ward in OU", path=str(directory / CA_CERT))
    ward = ous[0].value
    return WardCa(key, cert, ward if isinstance(ward, str) else ward.decode())


def init_ward_ca(
    directory: Path, ward_code: str | None, *, days: int = 3650, now: dt.datetime | None = None
) -> tuple[WardCa, bool]:
    """Load the CA in ``directory`` or create it; returns (ca, created). Never overwrites half of an existing CA."""
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    if key_path.exists() or cert_path.exists():
        if not (key_path.exists() and cert_path.exists()):
            raise ProvisioningError(
                f"only one of {CA_KEY} / {CA_CERT} exists; refusing to replace a CA half-way", path=str(directory)
            )
        ca = load_ward_ca(directory)
        if ward_code is not None and ward_code != ca.ward_code:
            raise ProvisioningError(f"this directory holds the CA of ward {ca.ward_code}, not {ward_code}",
                                    path=str(directory))
        return ca, False
    if ward_code is None:
        raise ProvisioningError("no ward CA here yet: give --ward to create one", path=str(directory))
    TerminalIdentity("ca", ward_code)  # validates the ward code with the terminals' rule
    now = now or utcnow()
    key = new_private_key()
    name = _ca_name(ward_code)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    ensure_dir(directory, PRIVATE_DIR)
    write_atomic(key_path, private_key_pem(key), PRIVATE)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), PUBLIC)
    return WardCa(key, cert, ward_code), True


def init_command_key(directory: Path) -> tuple[Path, bool]:
    """The ward's command-signing key pair (P-256) in ``directory``: created once, then kept; returns (pub, created).

    The office system signs ``read_request`` commands with ``ward-command.key``; every terminal of the ward gets
    ``ward-command.pub`` (``device install --ward-command-key``). It is a key of its own, not the CA key: the office
    uses it online, the CA key stays offline. A public half without its private key is refused rather than
    replaced, since terminals already trust it.
    """
    key_path, pub_path = directory / COMMAND_KEY, directory / COMMAND_PUB
    created = not key_path.exists()
    if created:
        if pub_path.exists():
            raise ProvisioningError(f"{COMMAND_PUB} exists without {COMMAND_KEY}; refusing to replace a key "
                                    "the terminals trust", path=str(directory))
        key = new_private_key()
        ensure_dir(directory, PRIVATE_DIR)
        write_atomic(key_path, private_key_pem(key), PRIVATE)
    else:
        key = load_private_key(key_path)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    if not pub_path.exists() or pub_path.read_bytes() != public:
        write_atomic(pub_path, public, PUBLIC)
    return pub_path, created


def load_csr(path: Path) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(read_file(path, "CSR"))
    except ValueError as exc:
        raise ProvisioningError(f"not a PEM CSR ({exc})", path=str(path)) from None
    if not csr.is_signature_valid:
        raise ProvisioningError("CSR signature does not verify (corrupted or edited)", path=str(path))
    return csr


def sign_csr(
    ca: WardCa, csr: x509.CertificateSigningRequest, *, days: int = 365, now: dt.datetime | None = None,
    role: Role = "terminal",
) -> x509.Certificate:
    """Issue a client certificate for the terminal (or, with ``role="gateway"``, the office gateway instance) named
    in ``csr``; it never outlives the CA.

    The role is asked for, not guessed from the CSR: a gateway may read every terminal's results, so minting one
    takes a deliberate ``--role gateway``, and a terminal CSR cannot become a gateway (its CN alphabet has no ':').
    """
    if days < 1:
        raise ProvisioningError("--days must be at least 1")
    identity: TerminalIdentity | GatewayIdentity
    if role == "gateway":
        identity = GatewayIdentity.from_name(csr.subject, "the CSR")
        subject = identity.name_attributes()
    else:
        if any(str(attr.value).startswith(GATEWAY_PREFIX)
               for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)):
            raise ProvisioningError("this CSR is a gateway's: sign it with --role gateway if that is intended")
        identity = TerminalIdentity.from_name(csr.subject, "the CSR")
        subject = identity.name()
    if identity.ward_code != ca.ward_code:
        raise ProvisioningError(f"CSR is for ward {identity.ward_code}; this CA signs ward {ca.ward_code} only")
    public = _p256(csr.public_key(), "CSR key")
    return _issue(ca, subject, public, days=days, now=now, usage=ExtendedKeyUsageOID.CLIENT_AUTH)


def issue_server_certificate(
    ca: WardCa, public: ec.EllipticCurvePublicKey, hosts: Sequence[str], *, days: int = 365,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """The ward broker's TLS server certificate (``serverAuth``, each host a DNS or IP subjectAltName).

    Issued by the ward CA, so a terminal needs one CA file for both directions (``device install --broker-ca``
    takes ``ward-ca.crt``); terminal certificates carry ``clientAuth`` only and cannot pose as the broker.
    """
    if days < 1:
        raise ProvisioningError("--days must be at least 1")
    names = server_alt_names(hosts)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ca.ward_code),
        x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64]),
    ])
    return _issue(ca, subject, _p256(public, "broker key"), days=days, now=now,
                  usage=ExtendedKeyUsageOID.SERVER_AUTH, alt_names=names)


def server_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """Each host as an IP address or DNS subjectAltName (what a terminal's ``mqtt.host`` is checked against)."""
    if not hosts:
        raise ProvisioningError("the broker certificate needs at least one host name or address (--host)")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not _HOSTNAME.match(host):
                raise ProvisioningError(f"{host!r} is neither an IP address nor a DNS name") from None
            names.append(x509.DNSName(host.lower()))
    return names


def _p256(public: object, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise ProvisioningError(f"{what} must be EC P-256")
    return public


def _issue(
    ca: WardCa, subject: x509.Name, public: ec.EllipticCurvePublicKey, *, days: int, now: dt.datetime | None,
    usage: x509.ObjectIdentifier, alt_names: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    now = now or utcnow()
    not_after = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    if not_after <= now:
        raise ProvisioningError("the ward CA certificate has expired; renew it before signing")
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(alt_names)), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


CRL = "ward-ca.crl"
#: How long a CRL is good for: the gateway warns once it is past ``next_update`` (it still uses it: an old list of
#: revoked certificates is better than none). ``ward-ca revoke`` without a certificate re-signs it unchanged.
CRL_DAYS = 30


def load_crl(directory: Path) -> x509.CertificateRevocationList | None:
    """The ward's CRL in ``directory`` (``ward-ca.crl``), or None when nothing was ever revoked."""
    path = directory / CRL
    if not path.exists():
        return None
    try:
        return x509.load_pem_x509_crl(read_file(path, "CRL"))
    except ValueError as exc:
        raise ProvisioningError(f"not a PEM CRL ({exc})", path=str(path)) from None


def revoke(ca: WardCa, directory: Path, serials: Sequence[int] = (), *, days: int = CRL_DAYS,
           now: dt.datetime | None = None) -> tuple[Path, x509.CertificateRevocationList]:  # fmt: skip
    """Add ``serials`` to the ward's CRL (kept ones stay, with their dates) and sign it again, valid ``days``.

    With no serial it only re-signs (a fresh ``next_update``). The CRL is public: copy it to every gateway
    (``crl`` in gateway.toml); a certificate on it no longer vouches for a terminal's results.
    """
    if days < 1:
        raise ProvisioningError("--days must be at least 1")
    for serial in serials:
        if not 0 < serial < 1 << 159:  # RFC 5280: positive, at most 20 octets
            raise ProvisioningError(f"serial {serial} is not a certificate serial number (1 to 2^159 - 1)")
    now = now or utcnow()
    old = load_crl(directory)
    if old is not None and not old.is_signature_valid(ca.key.public_key()):
        raise ProvisioningError("the CRL here is not signed by this ward CA", path=str(directory / CRL))
    entries = {entry.serial_number: entry for entry in old} if old is not None else {}
    for serial in serials:
        if serial not in entries:
            entries[serial] = (x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
                               .build())
    number = 1
    if old is not None:
        try:
            number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        except x509.ExtensionNotFound:
            number = 1
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject).last_update(now)
               .next_update(now + dt.timedelta(days=days)).add_extension(x509.CRLNumber(number), critical=False))
    for entry in sorted(entries.values(), key=lambda e: e.serial_number):
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca.key, hashes.SHA256())
    path = directory / CRL
    write_atomic(path, crl.public_bytes(serialization.Encoding.PEM), PUBLIC)
    return path, crl
