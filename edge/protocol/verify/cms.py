"""CMS SignedData with one signer (ICAO 9303: EF.SOD and CSCA master lists): parse it, find the signer's
certificate among those it carries, and verify the signature over the signed attributes."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509

from edge.errors import PublicKeyFormatError, SignatureError, TrustStoreError
from edge.protocol.verify.certs import CertificateInfo, name_key, parse_certificate
from edge.protocol.verify.signatures import ASN1_ERRORS, digest, verify_signature


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
    except ASN1_ERRORS as exc:
        raise TrustStoreError(f"{what} is not readable CMS ({type(exc).__name__})") from exc


def _name_key(name_der: bytes) -> str | None:
    try:
        return name_key(asn1_x509.Name.load(name_der))
    except ASN1_ERRORS:
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


def looks_like_signed_data(der: bytes) -> bool:
    """Whether ``der`` is a CMS ContentInfo holding SignedData (how an import tells a master list apart)."""
    try:
        return bool(asn1_cms.ContentInfo.load(der, strict=True)["content_type"].native == "signed_data")
    except ASN1_ERRORS:
        return False
