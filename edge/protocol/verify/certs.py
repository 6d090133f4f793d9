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
from edge.protocol.clock import TimeEvidence, Validity
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


def name_key(name: asn1_x509.Name) -> str:
    """The RFC 5280 matching key of a distinguished name: equal for names that compare equal.

    Names of plain printable ASCII (every CSCA and DS name seen) are folded here: case and insignificant spaces,
    which is what RFC 4518 string preparation does to such text, at a fraction of asn1crypto's cost (it dominated
    a master-list import). Anything else takes asn1crypto's full preparation; the prefixes keep the two spellings
    from ever comparing equal by accident.
    """
    parts: list[str] = []
    for rdn in name.chosen:
        values: list[str] = []
        for attribute in rdn:
            value = attribute["value"].native
            if not isinstance(value, str) or not value.isascii() or not value.isprintable():
                return "prep:" + str(name.hashable)
            values.append(f"{attribute['type'].dotted}={' '.join(value.lower().split())}")
        parts.append("+".join(sorted(values)))
    return "ascii:" + "/".join(parts)


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
            subject_key=name_key(cert.subject),
            issuer_key=name_key(cert.issuer),
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
#: No CSCA hierarchy is deeper: a DS, at most a few link certificates (key rollovers), the self-signed CSCA.
MAX_PATH_LENGTH = 5
#: Signature checks one path search may spend. An honest store needs a handful; the cap keeps a hostile store
#: (hundreds of certificates under one name, link certificates in loops) from costing more than about a second.
MAX_SIGNATURE_CHECKS = 256


@dataclass(frozen=True, slots=True)
class ChainResult:
    """``trusted``: path to a self-signed store CSCA (``path`` = issuer first, anchor last); ``untrusted``: the
    store holds nothing under the issuer's name, so nothing here can vouch for it or against it; ``broken``: the
    store holds a certificate under the issuer's name, and no path through it holds (a forger can always claim a
    name, never produce its key's signature)."""

    status: ChainStatus
    reason: str
    path: tuple[CertificateInfo, ...] = ()
    signature_checks: int = 0  # what the search spent: deterministic, so tests bound the work by it


class _PathSearch:
    """One depth-first search from a certificate up to an anchor, linear in the store.

    Each certificate is expanded at most once (a global visited set, so loops of link certificates and diamonds
    cost nothing twice) and each (subject, issuer) signature is checked at most once, within
    :data:`MAX_SIGNATURE_CHECKS`. Key identifiers only order the candidates (the named key first): they are
    unsigned hints a forger chooses, so they never decide which certificates are considered. A CSCA's validity is
    judged by :meth:`TimeEvidence.validity`: with a clock that is not synchronised only one expired before the
    floor is refused (the caller reports the dates as not checked).
    """

    def __init__(self, authorities: Sequence[CertificateInfo], anchors: frozenset[str],
                 at: datetime | TimeEvidence) -> None:
        self._by_subject: dict[str, list[CertificateInfo]] = {}
        for authority in authorities:
            self._by_subject.setdefault(authority.subject_key, []).append(authority)
        self._anchors = anchors
        self._at = TimeEvidence.of(at)
        self._expanded: set[str] = set()
        self.signature_checks = 0
        self.problems: list[str] = []
        self.direct_signers: list[CertificateInfo] = []  # certificates under the issuer's name that signed it

    def result(self, status: ChainStatus, reason: str, path: tuple[CertificateInfo, ...] = ()) -> ChainResult:
        return ChainResult(status, reason, path, self.signature_checks)

    def named(self, cert: CertificateInfo) -> list[CertificateInfo]:
        """Store certificates bearing ``cert``'s issuer name, the one its key identifier names first."""
        same_name = [c for c in self._by_subject.get(cert.issuer_key, ()) if c.fingerprint != cert.fingerprint]
        named_key = cert.authority_key_id
        return sorted(same_name, key=lambda c: not (named_key and c.subject_key_id == named_key))

    def _signed(self, cert: CertificateInfo, issuer: CertificateInfo) -> bool:
        if self.signature_checks >= MAX_SIGNATURE_CHECKS:
            raise _SearchExhausted
        self.signature_checks += 1
        try:
            verify_issued_by(cert, issuer)
        except SignatureError:
            return False
        return True

    def path_from(self, cert: CertificateInfo, depth: int) -> tuple[CertificateInfo, ...] | None:
        """Issuer-first path from ``cert`` to an anchor, or None (reasons collected in ``problems``)."""
        if depth >= MAX_PATH_LENGTH or cert.fingerprint in self._expanded:
            return None
        self._expanded.add(cert.fingerprint)
        for candidate in self.named(cert):
            if candidate.fingerprint in self._expanded or not self._signed(cert, candidate):
                continue
            if depth == 0:
                self.direct_signers.append(candidate)
            if not (candidate.is_ca and candidate.may_sign_certificates):
                self.problems.append(f"its issuer '{candidate.subject}' in the store is not a CA allowed to sign "
                                     "certificates")
                continue
            if self._at.validity(candidate.not_before, candidate.not_after) not in (Validity.WITHIN,
                                                                                   Validity.UNKNOWN):
                self.problems.append(f"the CSCA that signed it is valid only from {candidate.not_before:%Y-%m-%d} "
                                     f"to {candidate.not_after:%Y-%m-%d}")
                continue
            if candidate.fingerprint in self._anchors:
                return (candidate,)
            above = self.path_from(candidate, depth + 1)
            if above is not None:
                return (candidate, *above)
        return None


class _SearchExhausted(Exception):
    """The signature-check budget ran out (internal: becomes a ``broken`` result)."""


def build_chain(
    cert: CertificateInfo,
    authorities: Sequence[CertificateInfo],
    anchors: frozenset[str],
    at: datetime | TimeEvidence,
    *,
    installed: frozenset[str] | None = None,
) -> ChainResult:
    """Find a path from ``cert`` up to a certificate whose fingerprint is in ``anchors``.

    ``authorities`` are the certificates that may appear on the path (CSCAs and link certificates); ``installed``
    (default: all of them) the fingerprints of those the trust store holds, as opposed to ones that merely came
    with the object checked (a master list's own certificates). The rule that cannot be talked round: when an
    installed certificate bears ``cert``'s issuer name and no path to an anchor holds, the result is ``broken``,
    whatever the key identifiers say; ``untrusted`` only when nothing installed bears that name.
    """
    search = _PathSearch(authorities, anchors, at)
    named = search.named(cert)
    if not named:
        return search.result("untrusted", f"no CSCA named '{cert.issuer}' is in the trust store")
    try:
        path = search.path_from(cert, 0)
    except _SearchExhausted:
        return search.result("broken", f"the trust store holds more certificates named '{cert.issuer}' than a path "
                                     f"search may check ({MAX_SIGNATURE_CHECKS} signatures): none led to a CSCA")
    if path is not None:
        reason = f"chains to CSCA '{path[-1].subject}'" + (" through a link certificate" if len(path) > 1 else "")
        return search.result("trusted", reason, path)
    if search.problems:
        return search.result("broken", search.problems[0])

    def is_installed(c: CertificateInfo) -> bool:
        return installed is None or c.fingerprint in installed

    unanchored = f"'{cert.issuer}' signed it, but no path leads from there to an installed CSCA"
    if any(is_installed(c) for c in search.direct_signers):
        return search.result("untrusted", unanchored)
    if any(is_installed(c) for c in named):  # a namesake from elsewhere (a list's own "CSCA") cannot stand in
        return search.result(
            "broken",
            f"the trust store holds a CSCA named '{cert.issuer}' that did not sign this certificate: forged, or "
            "signed by a newer key of that CSCA whose certificate or link certificate is not installed",
        )
    if search.direct_signers:  # e.g. a master list's own CSCA: a genuine signature, not installed yet
        return search.result("untrusted", unanchored)
    return search.result("untrusted", f"no CSCA named '{cert.issuer}' is in the trust store")


def unique_certificates(certificates: Iterable[CertificateInfo]) -> tuple[CertificateInfo, ...]:
    """``certificates`` without duplicates, in a stable order (subject, then start of validity)."""
    unique: dict[str, CertificateInfo] = {}
    for cert in certificates:
        unique.setdefault(cert.fingerprint, cert)
    return tuple(sorted(unique.values(), key=lambda c: (c.subject, c.not_before)))


def self_signed_fingerprints(certificates: Iterable[CertificateInfo]) -> frozenset[str]:
    """The anchors among ``certificates``: one signature check each."""
    return frozenset(c.fingerprint for c in certificates if is_self_signed(c))


def authorities_of(certificates: Iterable[CertificateInfo]) -> tuple[tuple[CertificateInfo, ...], frozenset[str]]:
    """(certificates without duplicates in a stable order, fingerprints of the self-signed ones): what
    :func:`build_chain` takes as its authorities and anchors."""
    ordered = unique_certificates(certificates)
    return ordered, self_signed_fingerprints(ordered)


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
            issuer_key=name_key(crl.issuer),
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
