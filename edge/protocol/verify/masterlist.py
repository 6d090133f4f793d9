"""CSCA master lists (ICAO 9303-12): CMS SignedData with content type id-icao-cscaMasterList.

A list is accepted only when its own signature verifies and the master-list signer chains to a CSCA already
installed (possibly through link certificates the list carries). A signer that chains only to a CSCA carried in the
list itself proves integrity, not origin: anyone can build such a list. It is accepted only when the caller says so
explicitly (the operator compared the anchor's fingerprint with the one the issuing authority publishes), and never
when an installed CSCA contradicts it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from edge.errors import PublicKeyFormatError, SignatureError, TrustStoreError
from edge.protocol.verify.certs import (
    CertificateInfo,
    build_chain,
    parse_certificate,
    self_signed_fingerprints,
    unique_certificates,
)
from edge.protocol.verify.cms import find_signer_certificate, parse_signed_data, verify_signer
from edge.protocol.verify.signatures import ASN1_ERRORS

ID_CSCA_MASTER_LIST = "2.23.136.1.1.2"
ID_MASTER_LIST_SIGNING_KEY = "2.23.136.1.1.3"


class _CertificateSet(asn1_core.SetOf):  # type: ignore[misc]
    _child_spec = asn1_x509.Certificate


class _CscaMasterList(asn1_core.Sequence):  # type: ignore[misc]
    """ICAO 9303-12: CscaMasterList ::= SEQUENCE { version CscaMasterListVersion, certList SET OF Certificate }."""

    _fields = [("version", asn1_core.Integer), ("cert_list", _CertificateSet)]  # noqa: RUF012


def encode_master_list(
    signer_key: ec.EllipticCurvePrivateKey,
    signer_certificate_der: bytes,
    listed_der: Sequence[bytes],
    *,
    content_type: str = ID_CSCA_MASTER_LIST,
) -> bytes:
    """A CSCA master list as ICAO 9303-12 describes it (CMS SignedData over CscaMasterList, ECDSA-SHA256), for the
    simulator's PKI, tests and benchmarks: the encoder lives beside the verifier so both read the same structure."""
    content = _CscaMasterList({"version": 0,
                               "cert_list": [asn1_x509.Certificate.load(der) for der in listed_der]}).dump()
    signed_attrs = asn1_cms.CMSAttributes([
        {"type": "content_type", "values": [content_type]},
        {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
    ])  # fmt: skip
    signature = signer_key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
    signer = asn1_x509.Certificate.load(signer_certificate_der)
    signed_data = asn1_cms.SignedData({
        "version": "v3",
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": content_type, "content": asn1_core.ParsableOctetString(content)},
        "certificates": [signer],
        "signer_infos": [{
            "version": "v1",
            "sid": asn1_cms.SignerIdentifier("issuer_and_serial_number",
                                             {"issuer": signer.issuer, "serial_number": signer.serial_number}),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": signature,
        }],
    })  # fmt: skip
    return bytes(asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


def verify_master_list(
    der: bytes,
    installed: Sequence[CertificateInfo],
    anchors: frozenset[str],
    at: datetime,
    *,
    accept_self_anchored: bool = False,
) -> tuple[list[CertificateInfo], CertificateInfo, CertificateInfo, Literal["store", "list"]]:
    """Verify a CSCA master list: (listed certificates, signer, anchor CSCA, where the anchor came from).

    ``installed`` and ``anchors`` are the trust store's certificates and self-signed CSCAs. Strict, per ICAO
    9303-12: content type id-icao-cscaMasterList, one signer whose signature and messageDigest hold, signer
    certificate valid at ``at`` and (when it declares extended key usages) a master-list signer, and a path from
    the signer to an installed CSCA; to one carried in the list only with ``accept_self_anchored``. Raises
    TrustStoreError.
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
    except ASN1_ERRORS as exc:
        raise TrustStoreError(f"the master list content is not a CscaMasterList ({type(exc).__name__})") from exc
    listed: list[CertificateInfo] = []
    for item in listed_der:
        try:
            listed.append(parse_certificate(item))
        except PublicKeyFormatError:
            continue
    authorities = unique_certificates((*installed, *listed))
    installed_fingerprints = frozenset(c.fingerprint for c in installed)
    # Listed link certificates may bridge to the store; a listed CSCA may not stand in for an installed namesake.
    to_store = build_chain(signer, authorities, anchors, at, installed=installed_fingerprints)
    if to_store.status == "trusted":
        return listed, signer, to_store.path[-1], "store"
    if to_store.status == "broken":
        raise TrustStoreError(f"the master list signer's path to an installed CSCA is broken: {to_store.reason}")
    anchors_with_listed = anchors | self_signed_fingerprints(listed)  # checked only when the store did not suffice
    to_list = build_chain(signer, authorities, anchors_with_listed, at, installed=installed_fingerprints)
    if to_list.status != "trusted":
        raise TrustStoreError(f"the master list signer does not chain to a CSCA: {to_list.reason}")
    anchor = to_list.path[-1]
    if not accept_self_anchored:
        raise TrustStoreError(
            f"the master list signer chains only to a CSCA the list carries itself ('{anchor.subject}', SHA-256 "
            f"{anchor.fingerprint}), not to one in the trust store: anyone can build such a list",
            hint="install that CSCA from the issuing authority first, or compare its fingerprint with the one the "
            "authority publishes and import the list as self-anchored (cccd-edge trust import --accept-self-anchored)",
        )
    return listed, signer, anchor, "list"
