"""CSCA trust: certificates, signatures, certificate paths, CMS signers, and the trust store on disk.

Everything that decides "does this key vouch for that data" lives here, so passive authentication (EF.SOD) and
master-list import share one implementation: one place to audit, one list of algorithms.

* Certificates are parsed with asn1crypto (lenient about real-world oddities such as explicit EC parameters) and
  their keys loaded with :mod:`edge.protocol.keys`.
* Paths: a certificate chains when a store certificate with its issuer's name (and, when both are present, the
  subject key identifier equal to its authority key identifier) signed it. Self-signed CSCAs are the anchors; a
  link certificate (new CSCA key signed by the old one) is followed upwards until a self-signed CSCA is reached.
* CSCA master lists (ICAO 9303-12, CMS with content type id-icao-cscaMasterList) are accepted only when their own
  signature verifies and the master-list signer chains to a CSCA, either one already installed or one carried in
  the list itself. The second case proves integrity, not origin: it is exactly as strong as installing a bare CSCA
  certificate received through the same channel, so the import report names the anchor and its fingerprint for
  an out-of-band comparison.

The only file I/O is :meth:`TrustStore.load` and :meth:`TrustStore.import_file`, which take the directory or file
explicitly. Time is always a parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import crl as asn1_crl
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from asn1crypto.algos import RSASSAPSSParams
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from edge.errors import PublicKeyFormatError, SignatureError, TrustStoreError
from edge.protocol.keys import PublicKey, load_public_key

# --- algorithms ------------------------------------------------------------------------------------------------

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_HASH_OIDS = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_RSA_PKCS1 = {
    "1.2.840.113549.1.1.5": "sha1",
    "1.2.840.113549.1.1.14": "sha224",
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
}
_ECDSA_DER = {
    "1.2.840.10045.4.1": "sha1",
    "1.2.840.10045.4.3.1": "sha224",
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}
#: BSI TR-03111 ecdsa-plain-SHA*: r || s instead of DER (used by some eMRTD signers).
_ECDSA_PLAIN = {
    "0.4.0.127.0.7.1.1.4.1.1": "sha1",
    "0.4.0.127.0.7.1.1.4.1.2": "sha224",
    "0.4.0.127.0.7.1.1.4.1.3": "sha256",
    "0.4.0.127.0.7.1.1.4.1.4": "sha384",
    "0.4.0.127.0.7.1.1.4.1.5": "sha512",
}
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"  # some signers name the key type and rely on the digest algorithm
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
RSASSA_PSS = "1.2.840.113549.1.1.10"
MGF1 = "1.2.840.113549.1.1.8"

ID_CSCA_MASTER_LIST = "2.23.136.1.1.2"
ID_MASTER_LIST_SIGNING_KEY = "2.23.136.1.1.3"

#: Larger RSA keys are no real signer's and only make verification slow on purpose.
MAX_RSA_BITS = 8192
#: No trust-store file (a whole national master list is about 1 MB) comes near this.
MAX_IMPORT_BYTES = 16 << 20
MAX_PATH_LENGTH = 5
_NULL = b"\x05\x00"
_ASN1_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


def ecdsa_hash_for(algorithm_oid: str) -> str | None:
    """hashlib name an ECDSA signature algorithm OID (DER or BSI plain) implies, or None when it is not one."""
    return _ECDSA_DER.get(algorithm_oid) or _ECDSA_PLAIN.get(algorithm_oid)


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    """The cryptography hash for a hashlib name; unknown or weak-beyond-ICAO names raise SignatureError."""
    factory = HASHES.get(name.lower().replace("-", ""))
    if factory is None:
        raise SignatureError(f"unsupported hash algorithm {name!r}")
    return factory()


def digest(name: str, data: bytes) -> bytes:
    hash_algorithm(name)  # same vocabulary and error as the signature side
    return hashlib.new(name.lower().replace("-", ""), data).digest()


def _pss_padding(parameters_der: bytes | None) -> tuple[padding.PSS, str]:
    if not parameters_der:
        raise SignatureError("RSASSA-PSS signature without its parameters")
    try:
        params = RSASSAPSSParams.load(parameters_der, strict=True)
        hash_name = _HASH_OIDS.get(params["hash_algorithm"]["algorithm"].dotted)
        mgf = params["mask_gen_algorithm"]
        mgf_hash = _HASH_OIDS.get(mgf["parameters"]["algorithm"].dotted)
        salt = int(params["salt_length"].native)
        trailer = int(params["trailer_field"].native == "trailer_field_bc" or params["trailer_field"].native == 1)
        mgf_oid = mgf["algorithm"].dotted
    except _ASN1_ERRORS as exc:
        raise SignatureError("malformed RSASSA-PSS parameters") from exc
    if hash_name is None or mgf_hash is None:
        raise SignatureError("RSASSA-PSS with an unsupported hash algorithm")
    if mgf_oid != MGF1:
        raise SignatureError("RSASSA-PSS with a mask generation function other than MGF1")
    if not trailer:
        raise SignatureError("RSASSA-PSS with a trailer field other than 0xBC")
    if not 0 <= salt <= 512:
        raise SignatureError("RSASSA-PSS with an absurd salt length")
    return padding.PSS(mgf=padding.MGF1(hash_algorithm(mgf_hash)), salt_length=salt), hash_name


def verify_signature(
    key: PublicKey,
    algorithm_oid: str,
    parameters_der: bytes | None,
    signature: bytes,
    message: bytes,
    *,
    digest_algorithm: str | None = None,
) -> str:
    """Verify ``signature`` over ``message``; return a short algorithm label for reports.

    Raises :class:`SignatureError` with a plain-words reason when the signature does not hold, the algorithm is
    unsupported, or it does not fit the key (RSA algorithm with an EC key, wrong signature length).
    """
    params = parameters_der if parameters_der and parameters_der != _NULL else None
    try:
        if algorithm_oid in _RSA_PKCS1 or algorithm_oid in (RSA_ENCRYPTION, RSASSA_PSS):
            if not isinstance(key, rsa.RSAPublicKey):
                raise SignatureError("an RSA signature algorithm with a non-RSA key")
            if key.key_size > MAX_RSA_BITS:
                raise SignatureError(f"RSA key of {key.key_size} bits is beyond any real signer")
            if len(signature) != (key.key_size + 7) // 8:
                raise SignatureError(f"RSA signature of {len(signature)} bytes for a {key.key_size}-bit key")
            if algorithm_oid == RSASSA_PSS:
                pss, pss_hash = _pss_padding(params)
                key.verify(signature, message, pss, hash_algorithm(pss_hash))
                return f"RSASSA-PSS/{pss_hash}"
            hash_name = _RSA_PKCS1.get(algorithm_oid) or digest_algorithm
            if hash_name is None:
                raise SignatureError("rsaEncryption signature without a digest algorithm")
            key.verify(signature, message, padding.PKCS1v15(), hash_algorithm(hash_name))
            return f"RSA-PKCS1v1.5/{hash_name}"
        if algorithm_oid in _ECDSA_DER or algorithm_oid in _ECDSA_PLAIN or algorithm_oid == EC_PUBLIC_KEY:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise SignatureError("an ECDSA signature algorithm with a non-EC key")
            size = (key.curve.key_size + 7) // 8
            if algorithm_oid in _ECDSA_PLAIN:
                if len(signature) != 2 * size:
                    raise SignatureError(f"plain ECDSA signature of {len(signature)} bytes, expected {2 * size}")
                der = encode_dss_signature(
                    int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
                )
                hash_name = _ECDSA_PLAIN[algorithm_oid]
            else:
                if len(signature) > 2 * size + 12:
                    raise SignatureError(f"ECDSA signature of {len(signature)} bytes is too long for the curve")
                der = signature
                hash_name = _ECDSA_DER.get(algorithm_oid) or digest_algorithm or ""
                if not hash_name:
                    raise SignatureError("id-ecPublicKey signature without a digest algorithm")
            key.verify(der, message, ec.ECDSA(hash_algorithm(hash_name)))
            return f"ECDSA/{key.curve.name}/{hash_name}"
    except InvalidSignature as exc:
        raise SignatureError("the signature does not verify") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm, OverflowError) as exc:
        raise SignatureError(f"the signature cannot be checked ({type(exc).__name__})") from exc
    raise SignatureError(f"unsupported signature algorithm {algorithm_oid}")


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
    except _ASN1_ERRORS as exc:
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


# --- CMS signers -----------------------------------------------------------------------------------------------


class SignedContent(Protocol):
    """What a CMS SignedData signer check reads; EF.SOD's ``SodFile`` and :class:`SignedData` both fit."""

    @property
    def encap_content(self) -> bytes: ...
    @property
    def signed_attrs_der(self) -> bytes | None: ...
    @property
    def message_digest(self) -> bytes | None: ...
    @property
    def digest_algorithm(self) -> str: ...
    @property
    def signature_algorithm_oid(self) -> str: ...
    @property
    def signature_parameters_der(self) -> bytes | None: ...
    @property
    def signature(self) -> bytes: ...
    @property
    def certificates(self) -> tuple[bytes, ...]: ...
    @property
    def signer_issuer_der(self) -> bytes | None: ...
    @property
    def signer_serial(self) -> int | None: ...
    @property
    def signer_key_id(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class SignedData:
    """A CMS SignedData with one signer, reduced to what verification needs (same field names as ``SodFile``)."""

    content_type: str
    encap_content: bytes
    signed_attrs_der: bytes | None
    message_digest: bytes | None
    digest_algorithm: str
    signature_algorithm_oid: str
    signature_parameters_der: bytes | None
    signature: bytes
    certificates: tuple[bytes, ...]
    signer_issuer_der: bytes | None
    signer_serial: int | None
    signer_key_id: bytes | None


def parse_signed_data(der: bytes, *, what: str = "CMS") -> SignedData:
    """Parse a ContentInfo(SignedData) with exactly one signer; raises :class:`TrustStoreError` on anything else."""
    try:
        info = asn1_cms.ContentInfo.load(bytes(der), strict=True)
        if info["content_type"].native != "signed_data":
            raise TrustStoreError(f"{what} is not CMS SignedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        signers = signed["signer_infos"]
        if len(signers) != 1:
            raise TrustStoreError(f"{what} has {len(signers)} signers, expected exactly one")
        signer = signers[0]
        attrs = signer["signed_attrs"]
        signed_attrs_der: bytes | None = None
        message_digest: bytes | None = None
        if not isinstance(attrs, asn1_core.Void) and len(attrs):
            raw = attrs.dump()
            signed_attrs_der = b"\x31" + raw[1:]  # [0] IMPLICIT -> SET OF: what the signature covers
            for attr in attrs:
                if attr["type"].native == "message_digest":
                    values = attr["values"]
                    if len(values) != 1:
                        raise TrustStoreError(f"{what} messageDigest attribute has {len(values)} values")
                    message_digest = bytes(values[0].native)
        sid = signer["sid"]
        issuer_der = serial = key_id = None
        if sid.name == "issuer_and_serial_number":
            issuer_der = sid.chosen["issuer"].dump()
            serial = int(sid.chosen["serial_number"].native)
        else:
            key_id = bytes(sid.chosen.native)
        certificates = tuple(
            choice.chosen.dump() for choice in signed["certificates"] if choice.name == "certificate"
        ) if not isinstance(signed["certificates"], asn1_core.Void) else ()
        sig_alg = signer["signature_algorithm"]
        params = sig_alg["parameters"]
        content = encap["content"]
        return SignedData(
            content_type=encap["content_type"].dotted,
            encap_content=b"" if isinstance(content, asn1_core.Void) else bytes(content.contents or b""),
            signed_attrs_der=signed_attrs_der,
            message_digest=message_digest,
            digest_algorithm=str(signer["digest_algorithm"]["algorithm"].native),
            signature_algorithm_oid=sig_alg["algorithm"].dotted,
            signature_parameters_der=None if isinstance(params, asn1_core.Void) else params.dump(),
            signature=bytes(signer["signature"].native),
            certificates=certificates,
            signer_issuer_der=issuer_der,
            signer_serial=serial,
            signer_key_id=key_id,
        )
    except TrustStoreError:
        raise
    except _ASN1_ERRORS as exc:
        raise TrustStoreError(f"{what} is not readable CMS ({type(exc).__name__})") from exc


def _name_key(name_der: bytes) -> str | None:
    try:
        return str(asn1_x509.Name.load(name_der).hashable)
    except _ASN1_ERRORS:
        return None


def find_signer_certificate(signed: SignedContent) -> CertificateInfo:
    """The certificate among ``signed.certificates`` that the signer identifier names (raises SignatureError)."""
    if not signed.certificates:
        raise SignatureError("it carries no signer certificate")
    issuer_key = _name_key(signed.signer_issuer_der) if signed.signer_issuer_der else None
    unreadable = 0
    for der in signed.certificates:
        try:
            cert = parse_certificate(der)
        except PublicKeyFormatError:
            unreadable += 1
            continue
        if signed.signer_key_id is not None and cert.subject_key_id == signed.signer_key_id:
            return cert
        if issuer_key is not None and cert.issuer_key == issuer_key and cert.serial == signed.signer_serial:
            return cert
    if unreadable:
        raise SignatureError("its signer certificate is not a readable X.509 certificate")
    raise SignatureError("none of its certificates is the one the signer information names")


def verify_signer(signed: SignedContent, signer: CertificateInfo) -> str:
    """Check messageDigest = hash(content) and the signature over the signed attributes; return the algorithm."""
    if signed.signed_attrs_der is None:
        raise SignatureError("it has no signed attributes (ICAO 9303 requires them)")
    if signed.message_digest is None:
        raise SignatureError("its signed attributes lack the messageDigest")
    if not hmac.compare_digest(digest(signed.digest_algorithm, signed.encap_content), signed.message_digest):
        raise SignatureError("the signed message digest does not match the content: the content was changed")
    if signer.public_key is None:
        raise SignatureError(f"the signer's key is not supported ({signer.key_description})")
    return verify_signature(
        signer.public_key,
        signed.signature_algorithm_oid,
        signed.signature_parameters_der,
        signed.signature,
        signed.signed_attrs_der,
        digest_algorithm=signed.digest_algorithm,
    )


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
    except _ASN1_ERRORS as exc:
        raise TrustStoreError(f"not a readable CRL ({type(exc).__name__})") from exc


def verify_crl(crl: CrlInfo, issuer: CertificateInfo) -> None:
    if issuer.public_key is None or crl.issuer_key != issuer.subject_key:
        raise SignatureError("the CRL was not issued by this CSCA")
    verify_signature(
        issuer.public_key, crl.signature_algorithm_oid, crl.signature_parameters_der, crl.signature, crl.tbs_der
    )


# --- the store -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustEntry:
    """One line of ``cccd-edge trust list``."""

    subject: str
    key: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    kind: Literal["CSCA", "link"]


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import added. ``anchor_fingerprint`` names the CSCA a master list's signer chained to."""

    kind: Literal["certificate", "master list", "CRL"]
    added: tuple[TrustEntry, ...]
    already_present: int = 0
    skipped: tuple[str, ...] = ()
    anchored_in: Literal["store", "list"] | None = None
    anchor_fingerprint: str | None = None
    notes: tuple[str, ...] = ()


class _CertificateSet(asn1_core.SetOf):  # type: ignore[misc]
    _child_spec = asn1_x509.Certificate


class _CscaMasterList(asn1_core.Sequence):  # type: ignore[misc]
    """ICAO 9303-12: CscaMasterList ::= SEQUENCE { version CscaMasterListVersion, certList SET OF Certificate }."""

    _fields = [("version", asn1_core.Integer), ("cert_list", _CertificateSet)]  # noqa: RUF012


_CERT_SUFFIXES = (".der", ".cer", ".crt", ".pem")


def _der_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """(PEM type or '', DER) for every object in a PEM or DER file."""
    if asn1_pem.detect(data):
        try:
            return [(kind, der) for kind, _, der in asn1_pem.unarmor(data, multiple=True)]
        except _ASN1_ERRORS as exc:
            raise TrustStoreError(f"malformed PEM ({type(exc).__name__})") from exc
    return [("", data)]


@dataclass(frozen=True, slots=True)
class TrustStore:
    """A snapshot of the CSCA certificates (self-signed anchors and link certificates) and CRLs in a directory.

    ``problems`` lists store files that could not be used, so that ``trust list`` shows them instead of hiding
    them. The object never changes: after :meth:`import_file`, load the store again.
    """

    certificates: tuple[CertificateInfo, ...] = ()
    crls: tuple[CrlInfo, ...] = ()
    directory: Path | None = None
    problems: tuple[str, ...] = ()
    anchors: frozenset[str] = field(default=frozenset())

    @classmethod
    def from_der(
        cls, certificates: Iterable[bytes], crls: Iterable[bytes] = (), *, directory: Path | None = None
    ) -> TrustStore:
        """Build a store in memory (tests, and :meth:`load`). Unusable items end in ``problems``."""
        certs: dict[str, CertificateInfo] = {}
        problems: list[str] = []
        for der in certificates:
            try:
                cert = parse_certificate(der)
            except PublicKeyFormatError as exc:
                problems.append(str(exc))
                continue
            certs.setdefault(cert.fingerprint, cert)
        parsed_crls: list[CrlInfo] = []
        for der in crls:
            try:
                parsed_crls.append(parse_crl(der))
            except TrustStoreError as exc:
                problems.append(str(exc))
        ordered = tuple(sorted(certs.values(), key=lambda c: (c.subject, c.not_before)))
        anchors = frozenset(c.fingerprint for c in ordered if is_self_signed(c))
        return cls(ordered, tuple(parsed_crls), directory, tuple(problems), anchors)

    @classmethod
    def load(cls, directory: Path) -> TrustStore:
        """Read every certificate (.der/.cer/.crt/.pem) and CRL (.crl) in ``directory``; a missing one is empty."""
        certs: list[bytes] = []
        crls: list[bytes] = []
        problems: list[str] = []
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                suffix = path.suffix.lower()
                if suffix not in (*_CERT_SUFFIXES, ".crl") or not path.is_file():
                    continue
                try:
                    blocks = _der_blocks(path.read_bytes())
                except (OSError, TrustStoreError) as exc:
                    problems.append(f"{path.name}: {exc}")
                    continue
                (crls if suffix == ".crl" else certs).extend(der for _, der in blocks)
        store = cls.from_der(certs, crls, directory=directory)
        return TrustStore(store.certificates, store.crls, directory, (*problems, *store.problems), store.anchors)

    def entries(self) -> tuple[TrustEntry, ...]:
        return tuple(
            TrustEntry(
                subject=c.subject,
                key=c.key_description,
                not_before=c.not_before,
                not_after=c.not_after,
                fingerprint=c.fingerprint,
                kind="CSCA" if c.fingerprint in self.anchors else "link",
            )
            for c in self.certificates
        )

    def chain(self, cert: CertificateInfo, at: datetime) -> ChainResult:
        """Path from ``cert`` (a Document Signer, or a master-list signer) to a self-signed CSCA in the store."""
        return build_chain(cert, self.certificates, self.anchors, at)

    def crls_for(self, issuer: CertificateInfo) -> tuple[CrlInfo, ...]:
        return tuple(crl for crl in self.crls if crl.issuer_key == issuer.subject_key)

    # --- import ------------------------------------------------------------------------------------------------

    def import_file(self, path: Path, *, at: datetime) -> ImportReport:
        """Verify ``path`` (CSCA certificate, CSCA master list or CRL; PEM or DER) and copy what it vouches for
        into the store directory as DER named by SHA-256 fingerprint. Raises :class:`TrustStoreError`."""
        if self.directory is None:
            raise TrustStoreError("this trust store has no directory to import into")
        try:
            if path.stat().st_size > MAX_IMPORT_BYTES:
                raise TrustStoreError(f"{path.name} is larger than any trust-store file ({MAX_IMPORT_BYTES} bytes)")
            data = path.read_bytes()
        except OSError as exc:
            raise TrustStoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
        blocks = _der_blocks(data)
        kind, der = blocks[0]
        if kind == "X509 CRL" or path.suffix.lower() == ".crl":
            return self._import_crls([d for _, d in blocks])
        if kind in ("", "CMS", "PKCS7") and len(blocks) == 1 and _looks_like_cms(der):
            return self._import_master_list(der, at)
        return self._import_certificates([d for _, d in blocks])

    def _accept_certificate(self, cert: CertificateInfo, known: Sequence[CertificateInfo]) -> str | None:
        """None when ``cert`` may enter the store as a CSCA; otherwise the plain-words reason it may not."""
        if cert.public_key is None:
            return f"'{cert.subject}': its key is not supported ({cert.key_description})"
        if not cert.is_ca or not cert.may_sign_certificates:
            return f"'{cert.subject}' is not a CA certificate (a Document Signer certificate cannot be a trust anchor)"
        if is_self_signed(cert):
            return None
        if not cert.self_issued and not any(c.subject_key == cert.issuer_key for c in known):
            return None  # a link certificate whose issuer is not installed yet: harmless, used once it is
        issuers = [c for c in known if c.subject_key == cert.issuer_key and c.fingerprint != cert.fingerprint]
        for issuer in issuers:
            try:
                verify_issued_by(cert, issuer)
            except SignatureError:
                continue
            return None
        if not issuers:
            return None
        return f"'{cert.subject}': the CSCA that should have signed this link certificate did not"

    def _write(self, name: str, der: bytes) -> bool:
        """Write atomically; False when the file is already there (idempotent import)."""
        assert self.directory is not None
        target = self.directory / name
        if target.exists():
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".import-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(der)
            os.chmod(tmp, 0o644)  # public data: CSCA certificates are published by their issuers
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise TrustStoreError(f"cannot write to the trust store {self.directory}: {exc.strerror or exc}") from exc
        return True

    def _store_certificates(self, certs: Sequence[CertificateInfo]) -> tuple[tuple[TrustEntry, ...], int]:
        added: list[CertificateInfo] = []
        present = 0
        for cert in certs:
            if self._write(f"csca-{cert.fingerprint.lower()}.der", cert.der):
                added.append(cert)
            else:
                present += 1
        view = TrustStore.from_der([c.der for c in (*self.certificates, *added)])
        entries = {e.fingerprint: e for e in view.entries()}
        return tuple(entries[c.fingerprint] for c in added), present

    def _import_certificates(self, ders: Sequence[bytes]) -> ImportReport:
        parsed: list[CertificateInfo] = []
        for der in ders:
            try:
                parsed.append(parse_certificate(der))
            except PublicKeyFormatError as exc:
                raise TrustStoreError("the file is not a certificate, CSCA master list or CRL") from exc
        known = [*self.certificates, *parsed]
        for cert in parsed:
            refusal = self._accept_certificate(cert, known)
            if refusal:
                raise TrustStoreError(refusal)
        added, present = self._store_certificates(parsed)
        notes = tuple(
            f"'{c.subject}' is a link certificate: it is used once the CSCA that signed it is installed"
            for c in parsed
            if not is_self_signed(c) and not any(k.subject_key == c.issuer_key and k is not c for k in known)
        )
        return ImportReport("certificate", added, present, notes=notes)

    def _import_crls(self, ders: Sequence[bytes]) -> ImportReport:
        for der in ders:
            crl = parse_crl(der)
            issuers = [c for c in self.certificates if c.subject_key == crl.issuer_key]
            for issuer in issuers:
                try:
                    verify_crl(crl, issuer)
                except SignatureError:
                    continue
                break
            else:
                raise TrustStoreError(f"no installed CSCA signed this CRL (issuer '{crl.issuer}'); install it first")
            self._write(f"crl-{crl.fingerprint.lower()}.crl", der)
        return ImportReport("CRL", ())

    def _import_master_list(self, der: bytes, at: datetime) -> ImportReport:
        listed, signer, anchor, anchored_in = verify_master_list(der, self, at)
        accepted: list[CertificateInfo] = []
        skipped: list[str] = []
        known = [*self.certificates, *listed]
        for cert in listed:
            refusal = self._accept_certificate(cert, known)
            if refusal:
                skipped.append(refusal)
            else:
                accepted.append(cert)
        added, present = self._store_certificates(accepted)
        notes: tuple[str, ...] = (f"master list signed by '{signer.subject}'",)
        if anchored_in == "list":
            notes += (
                "the list vouches for itself: compare the fingerprint of its anchor CSCA with the one the "
                f"issuing authority publishes: {anchor.fingerprint}",
            )
        return ImportReport("master list", added, present, tuple(skipped), anchored_in, anchor.fingerprint, notes)


def _looks_like_cms(der: bytes) -> bool:
    try:
        return bool(asn1_cms.ContentInfo.load(der, strict=True)["content_type"].native == "signed_data")
    except _ASN1_ERRORS:
        return False


def verify_master_list(
    der: bytes, store: TrustStore, at: datetime
) -> tuple[list[CertificateInfo], CertificateInfo, CertificateInfo, Literal["store", "list"]]:
    """Verify a CSCA master list: (listed certificates, signer, anchor CSCA, where the anchor came from).

    Strict, per ICAO 9303-12: content type id-icao-cscaMasterList, one signer whose signature and messageDigest
    hold, signer certificate valid at ``at`` and (when it declares extended key usages) a master-list signer, and
    a path from the signer to a self-signed CSCA, preferably one already installed. Raises TrustStoreError.
    """
    signed = parse_signed_data(der, what="the master list")
    if signed.content_type != ID_CSCA_MASTER_LIST:
        raise TrustStoreError(f"CMS content type {signed.content_type} is not a CSCA master list")
    try:
        signer = find_signer_certificate(signed)
        verify_signer(signed, signer)
    except SignatureError as exc:
        raise TrustStoreError(f"the master list's signature does not hold: {exc}") from exc
    if not signer.valid_at(at):
        raise TrustStoreError(
            f"the master list signer certificate is valid only from {signer.not_before:%Y-%m-%d} "
            f"to {signer.not_after:%Y-%m-%d}"
        )
    if signer.extended_key_usage is not None and ID_MASTER_LIST_SIGNING_KEY not in signer.extended_key_usage:
        raise TrustStoreError("the master list signer certificate is not allowed to sign master lists")
    try:
        content = _CscaMasterList.load(signed.encap_content, strict=True)
        listed_der = [item.dump() for item in content["cert_list"]]
    except _ASN1_ERRORS as exc:
        raise TrustStoreError(f"the master list content is not a CscaMasterList ({type(exc).__name__})") from exc
    listed: list[CertificateInfo] = []
    for item in listed_der:
        try:
            listed.append(parse_certificate(item))
        except PublicKeyFormatError:
            continue
    chained = store.chain(signer, at)
    if chained.status == "trusted":
        return listed, signer, chained.path[-1], "store"
    own = TrustStore.from_der([c.der for c in (*store.certificates, *listed)])
    chained = own.chain(signer, at)
    if chained.status != "trusted":
        raise TrustStoreError(f"the master list signer does not chain to a CSCA: {chained.reason}")
    anchor = chained.path[-1]
    return listed, signer, anchor, "store" if anchor.fingerprint in store.anchors else "list"
