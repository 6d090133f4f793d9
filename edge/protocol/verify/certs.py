"""X.509 certificates, certificate paths and CRLs of the CSCA hierarchy.

* Certificates are parsed with asn1crypto (lenient about real-world oddities such as explicit EC parameters) and
  their keys loaded with :mod:`edge.protocol.keys`.
* Paths: a certificate chains when a store certificate with its issuer's name (and, when both are present, the
  subject key identifier equal to its authority key identifier) signed it. Self-signed CSCAs are the anchors; a
  link certificate (new CSCA key signed by the old one) is followed upwards until a self-signed CSCA is reached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from asn1crypto import core as asn1_core
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from edge.errors import PublicKeyFormatError, SignatureError, TrustStoreError
from edge.protocol.keys import PublicKey, load_public_key
from edge.protocol.verify.signatures import ASN1_ERRORS, verify_signature

# --- certificates ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """The facts about one X.509 certificate that verification and listing need; ``der`` is kept byte-exact."""

    der: bytes
    tbs_der: bytes
    subject: str  # human-readable, for reports (certificates hold no personal data)
    issuer: str
    subject_key: str  # RFC 5280 normalised name, for matching
    issuer_key: str
    serial: int
    not_before: datetime
    not_after: datetime
    subject_key_id: bytes | None
    authority_key_id: bytes | None
    signature_algorithm_oid: str
    signature_parameters_der: bytes | None
    signature: bytes
    public_key: PublicKey | None
    key_description: str
    is_ca: bool
    may_sign_certificates: bool
    extended_key_usage: tuple[str, ...] | None
    fingerprint: str  # SHA-256 of the DER, upper-case hex

    @property
    def self_issued(self) -> bool:
        return self.subject_key == self.issuer_key

    def valid_at(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after


def _describe_key(key: PublicKey | None, explicit: bool) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name} ({key.curve.key_size} bits{', explicit parameters' if explicit else ''})"
    return "unsupported key"


def parse_certificate(der: bytes) -> CertificateInfo:
    """Parse a DER certificate; raises :class:`PublicKeyFormatError` for anything that is not one."""
    try:
        cert = asn1_x509.Certificate.load(bytes(der), strict=True)
        tbs = cert["tbs_certificate"]
        validity = tbs["validity"]
        spki = tbs["subject_public_key_info"]
        explicit = spki["algorithm"]["algorithm"].native == "ec" and spki["algorithm"]["parameters"].name == "specified"
        try:
            key: PublicKey | None = load_public_key(spki.dump())
        except PublicKeyFormatError:
            key = None
        basic = cert.basic_constraints_value
        usage = cert.key_usage_value
        eku = cert.extended_key_usage_value
        sig_alg = cert["signature_algorithm"]
        params = sig_alg["parameters"]
        info = CertificateInfo(
            der=bytes(der),
            tbs_der=tbs.dump(),
            subject=cert.subject.human_friendly,
            issuer=cert.issuer.human_friendly,
            subject_key=cert.subject.hashable,
            issuer_key=cert.issuer.hashable,
            serial=int(tbs["serial_number"].native),
            not_before=validity["not_before"].native,
            not_after=validity["not_after"].native,
            subject_key_id=cert.key_identifier,
            authority_key_id=cert.authority_key_identifier,
            signature_algorithm_oid=sig_alg["algorithm"].dotted,
            signature_parameters_der=None if isinstance(params, asn1_core.Void) else params.dump(),
            signature=bytes(cert["signature_value"].native),
            public_key=key,
            key_description=_describe_key(key, explicit),
            is_ca=bool(basic is not None and basic["ca"].native),
            may_sign_certificates=usage is None or "key_cert_sign" in usage.native,
            extended_key_usage=None if eku is None else tuple(item.dotted for item in eku),
            fingerprint=hashlib.sha256(der).hexdigest().upper(),
        )
    except ASN1_ERRORS as exc:
        message = f"not a readable X.509 certificate ({type(exc).__name__})"
        raise PublicKeyFormatError(message, what="certificate") from exc
    return info


def verify_issued_by(subject: CertificateInfo, issuer: CertificateInfo) -> None:
    """Raise :class:`SignatureError` unless ``issuer``'s key signed ``subject``."""
    if issuer.public_key is None:
        raise SignatureError("the issuing certificate's key type is not supported")
    verify_signature(
        issuer.public_key,
        subject.signature_algorithm_oid,
        subject.signature_parameters_der,
        subject.signature,
        subject.tbs_der,
    )


def is_self_signed(cert: CertificateInfo) -> bool:
    """Self-issued and signed by its own key (a link certificate is self-issued but signed by the old key)."""
    if not cert.self_issued:
        return False
    if cert.subject_key_id and cert.authority_key_id and cert.subject_key_id != cert.authority_key_id:
        return False
    try:
        verify_issued_by(cert, cert)
    except SignatureError:
        return False
    return True


# --- certificate paths -----------------------------------------------------------------------------------------

ChainStatus = Literal["trusted", "untrusted", "broken"]
MAX_PATH_LENGTH = 5


@dataclass(frozen=True, slots=True)
class ChainResult:
    """``trusted``: path to a self-signed store CSCA (``path`` = issuer first, anchor last); ``untrusted``: no
    store certificate vouches for it; ``broken``: one that should (named by key identifier, or signed it) fails."""

    status: ChainStatus
    reason: str
    path: tuple[CertificateInfo, ...] = ()


def build_chain(
    cert: CertificateInfo,
    authorities: Sequence[CertificateInfo],
    anchors: frozenset[str],
    at: datetime,
    *,
    _depth: int = 0,
    _seen: frozenset[str] = frozenset(),
) -> ChainResult:
    """Find a path from ``cert`` up to a certificate whose fingerprint is in ``anchors``.

    ``authorities`` are the certificates that may appear on the path (CSCAs and link certificates).
    """
    if _depth >= MAX_PATH_LENGTH:
        return ChainResult("untrusted", "the certificate path is longer than any CSCA hierarchy")
    candidates = [
        c for c in authorities
        if c.subject_key == cert.issuer_key and c.fingerprint not in _seen and c.fingerprint != cert.fingerprint
    ]
    if cert.authority_key_id:
        candidates = [c for c in candidates if c.subject_key_id in (None, cert.authority_key_id)]
    if not candidates:
        return ChainResult("untrusted", f"no CSCA named '{cert.issuer}' is in the trust store")
    problems: list[str] = []
    untrusted_above: list[str] = []
    for candidate in candidates:
        named = bool(cert.authority_key_id and candidate.subject_key_id == cert.authority_key_id)
        try:
            verify_issued_by(cert, candidate)
        except SignatureError:
            if named:
                problems.append("the CSCA it names by key identifier did not sign it")
            continue
        if not (candidate.is_ca and candidate.may_sign_certificates):
            problems.append("its issuer in the store is not a CA allowed to sign certificates")
            continue
        if not candidate.valid_at(at):
            problems.append(f"the CSCA that signed it is valid only from {candidate.not_before:%Y-%m-%d} "
                            f"to {candidate.not_after:%Y-%m-%d}")
            continue
        if candidate.fingerprint in anchors:
            return ChainResult("trusted", f"chains to CSCA '{candidate.subject}'", (candidate,))
        above = build_chain(
            candidate, authorities, anchors, at, _depth=_depth + 1, _seen=_seen | {cert.fingerprint}
        )
        if above.status == "trusted":
            return ChainResult("trusted", above.reason + " through a link certificate", (candidate, *above.path))
        (problems if above.status == "broken" else untrusted_above).append(above.reason)
    if problems:
        return ChainResult("broken", problems[0])
    if untrusted_above:
        return ChainResult("untrusted", untrusted_above[0])
    return ChainResult("untrusted", f"no CSCA in the trust store signed it (issuer '{cert.issuer}')")


def authorities_of(certificates: Iterable[CertificateInfo]) -> tuple[tuple[CertificateInfo, ...], frozenset[str]]:
    """(certificates without duplicates in a stable order, fingerprints of the self-signed ones): what
    :func:`build_chain` takes as its authorities and anchors."""
    unique: dict[str, CertificateInfo] = {}
    for cert in certificates:
        unique.setdefault(cert.fingerprint, cert)
    ordered = tuple(sorted(unique.values(), key=lambda c: (c.subject, c.not_before)))
    return ordered, frozenset(c.fingerprint for c in ordered if is_self_signed(c))


# --- CRLs ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrlInfo:
    der: bytes
    tbs_der: bytes
    issuer: str
    issuer_key: str
    authority_key_id: bytes | None
    this_update: datetime
    next_update: datetime | None
    revoked_serials: frozenset[int]
    signature_algorithm_oid: str
    signature_parameters_der: bytes | None
    signature: bytes
    fingerprint: str


def parse_crl(der: bytes) -> CrlInfo:
    try:
        crl = asn1_crl.CertificateList.load(bytes(der), strict=True)
        tbs = crl["tbs_cert_list"]
        revoked = tbs["revoked_certificates"]
        sig_alg = crl["signature_algorithm"]
        params = sig_alg["parameters"]
        next_update = tbs["next_update"]
        return CrlInfo(
            der=bytes(der),
            tbs_der=tbs.dump(),
            issuer=crl.issuer.human_friendly,
            issuer_key=crl.issuer.hashable,
            authority_key_id=crl.authority_key_identifier,
            this_update=tbs["this_update"].native,
            next_update=None if isinstance(next_update, asn1_core.Void) else next_update.native,
            revoked_serials=frozenset(int(entry["user_certificate"].native) for entry in revoked),
            signature_algorithm_oid=sig_alg["algorithm"].dotted,
            signature_parameters_der=None if isinstance(params, asn1_core.Void) else params.dump(),
            signature=bytes(crl["signature"].native),
            fingerprint=hashlib.sha256(der).hexdigest().upper(),
        )
    except ASN1_ERRORS as exc:
        raise TrustStoreError(f"not a readable CRL ({type(exc).__name__})") from exc


def verify_crl(crl: CrlInfo, issuer: CertificateInfo) -> None:
    if issuer.public_key is None or crl.issuer_key != issuer.subject_key:
        raise SignatureError("the CRL was not issued by this CSCA")
    verify_signature(
        issuer.public_key, crl.signature_algorithm_oid, crl.signature_parameters_der, crl.signature, crl.tbs_der
    )
