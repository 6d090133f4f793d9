"""EF.SOD (tag 77): the Document Security Object, a CMS SignedData over the LDSSecurityObject (ICAO 9303-10 4.6).

The parser extracts everything passive authentication needs and keeps the exact signed bytes (eContent,
signedAttrs re-tagged as SET) so the verifier hashes what the signer hashed, not a re-encoding. The encoder
builds a real signed CMS for the simulator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from edge.errors import LdsError
from edge.protocol import tlv
from edge.protocol.lds.common import TAG_SOD, lds_errors, unwrap

#: id-icao-mrtd-security-ldsSecurityObject
LDS_SECURITY_OBJECT_OID = "2.23.136.1.1.1"
_WHAT = "EF.SOD"
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class _DataGroupHash(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("data_group_number", core.Integer), ("data_group_hash_value", core.OctetString)]


class _DataGroupHashValues(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _DataGroupHash


class _LdsVersionInfo(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("lds_version", core.PrintableString), ("unicode_version", core.PrintableString)]


class _LdsSecurityObject(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [
        ("version", core.Integer),
        ("hash_algorithm", algos.DigestAlgorithm),
        ("data_group_hash_values", _DataGroupHashValues),
        ("lds_version_info", _LdsVersionInfo, {"optional": True}),
    ]


@dataclass(frozen=True, slots=True)
class SodFile:
    hash_algorithm: str  # hashlib name of the LDSSecurityObject's hashAlgorithm ("sha256", ...)
    dg_hashes: Mapping[int, bytes]  # DG number -> hash
    lds_version: str | None
    encap_content: bytes  # DER of the LDSSecurityObject (eContent octets)
    signed_attrs_der: bytes | None  # DER of signedAttrs re-tagged as SET (0x31), what the signature covers
    message_digest: bytes | None  # the messageDigest signed attribute
    digest_algorithm: str  # SignerInfo digestAlgorithm (hashlib name)
    signature_algorithm_oid: str  # dotted OID of SignerInfo signatureAlgorithm
    signature_parameters_der: bytes | None  # e.g. RSASSA-PSS parameters
    signature: bytes
    certificates: tuple[bytes, ...]  # DER certificates in the SignedData
    signer_issuer_der: bytes | None
    signer_serial: int | None
    signer_key_id: bytes | None


def _hash_name(algorithm: Any) -> str:
    """hashlib name of an AlgorithmIdentifier (asn1crypto names match hashlib's for the SHA family)."""
    name = algorithm["algorithm"].native
    if not isinstance(name, str) or "." in name:
        raise LdsError(f"unknown hash algorithm {name}", what=_WHAT)
    return name


# --- parsing ---------------------------------------------------------------------------------------------------


def parse_sod(data: bytes) -> SodFile:
    outer = unwrap(data, TAG_SOD, _WHAT)
    with lds_errors(_WHAT):
        try:
            return _parse_content_info(outer.value)
        except AttributeError as exc:  # asn1crypto meets an unexpected CHOICE alternative
            raise LdsError("unexpected structure", what=_WHAT) from exc


def _parse_content_info(der: bytes) -> SodFile:
    info = cms.ContentInfo.load(der, strict=True)
    if info["content_type"].native != "signed_data":
        raise LdsError("content is not SignedData", what=_WHAT)
    signed = info["content"]
    encap = signed["encap_content_info"]
    if encap["content_type"].dotted != LDS_SECURITY_OBJECT_OID:
        raise LdsError("eContent is not an LDSSecurityObject", what=_WHAT)
    encap_content = encap["content"].native
    if not isinstance(encap_content, bytes):
        raise LdsError("eContent is missing or not an OCTET STRING", what=_WHAT)
    lso = _LdsSecurityObject.load(encap_content, strict=True)
    dg_hashes: dict[int, bytes] = {}
    for entry in lso["data_group_hash_values"]:
        number = int(entry["data_group_number"].native)
        if number in dg_hashes or not 0 < number <= 16:
            raise LdsError(f"bad or repeated data group number {number}", what=_WHAT)
        dg_hashes[number] = bytes(entry["data_group_hash_value"].native)
    version_info = lso["lds_version_info"]
    lds_version = None if isinstance(version_info, core.Void) else str(version_info["lds_version"].native)

    signer_infos = signed["signer_infos"]
    if len(signer_infos) != 1:
        raise LdsError(f"{len(signer_infos)} SignerInfos, expected 1", what=_WHAT)
    signer = signer_infos[0]
    signed_attrs_der: bytes | None = None
    message_digest: bytes | None = None
    attrs = signer["signed_attrs"]
    if not isinstance(attrs, core.Void):
        signed_attrs_der = tlv.encode(0x31, bytes(attrs.contents))
        for attr in attrs:
            if attr["type"].native == "message_digest":
                message_digest = bytes(attr["values"][0].native)
    sid = signer["sid"]
    issuer_der: bytes | None = None
    serial: int | None = None
    key_id: bytes | None = None
    if sid.name == "issuer_and_serial_number":
        issuer_der = bytes(sid.chosen["issuer"].dump())
        serial = int(sid.chosen["serial_number"].native)
    else:
        key_id = bytes(sid.chosen.native)
    parameters = signer["signature_algorithm"]["parameters"]
    certificates = tuple(
        bytes(choice.chosen.dump()) for choice in signed["certificates"] if choice.name == "certificate"
    )
    return SodFile(
        hash_algorithm=_hash_name(lso["hash_algorithm"]),
        dg_hashes=MappingProxyType(dg_hashes),
        lds_version=lds_version,
        encap_content=encap_content,
        signed_attrs_der=signed_attrs_der,
        message_digest=message_digest,
        digest_algorithm=_hash_name(signer["digest_algorithm"]),
        signature_algorithm_oid=str(signer["signature_algorithm"]["algorithm"].dotted),
        signature_parameters_der=None if isinstance(parameters, core.Void | core.Null) else parameters.dump(),
        signature=bytes(signer["signature"].native),
        certificates=certificates,
        signer_issuer_der=issuer_der,
        signer_serial=serial,
        signer_key_id=key_id,
    )


# --- encoding --------------------------------------------------------------------------------------------------


def encode_lds_security_object(
    dg_contents: Mapping[int, bytes], hash_algorithm: str = "sha256", *, lds_version: str | None = None
) -> bytes:
    """DER of the LDSSecurityObject hashing each DG's full file content (version 1 when an LDS version is set)."""
    if hash_algorithm not in _HASHES:
        raise LdsError(f"unsupported hash algorithm {hash_algorithm}", what=_WHAT)
    fields: dict[str, Any] = {
        "version": 0 if lds_version is None else 1,
        "hash_algorithm": {"algorithm": hash_algorithm},
        "data_group_hash_values": [
            {"data_group_number": number, "data_group_hash_value": hashlib.new(hash_algorithm, content).digest()}
            for number, content in sorted(dg_contents.items())
        ],
    }
    if lds_version is not None:
        fields["lds_version_info"] = {"lds_version": lds_version, "unicode_version": "040000"}
    return bytes(_LdsSecurityObject(fields).dump())


def encode_sod(
    dg_contents: Mapping[int, bytes],
    *,
    hash_algorithm: str = "sha256",
    signer_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    signer_cert: x509.Certificate,
    lds_version: str | None = None,
    rsa_pss: bool = False,
) -> bytes:
    """A real EF.SOD: CMS SignedData (version 3) with contentType and messageDigest signed attributes."""
    encap_content = encode_lds_security_object(dg_contents, hash_algorithm, lds_version=lds_version)
    hash_cls = _HASHES[hash_algorithm]
    signed_attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": [LDS_SECURITY_OBJECT_OID]},
            {"type": "message_digest", "values": [hashlib.new(hash_algorithm, encap_content).digest()]},
        ]
    )
    to_sign = bytes(signed_attrs.dump())
    signature_algorithm: dict[str, Any]
    if isinstance(signer_key, ec.EllipticCurvePrivateKey):
        signature = signer_key.sign(to_sign, ec.ECDSA(hash_cls()))
        signature_algorithm = {"algorithm": f"{hash_algorithm}_ecdsa"}
    elif rsa_pss:
        digest_size = hash_cls().digest_size
        signature = signer_key.sign(to_sign, padding.PSS(padding.MGF1(hash_cls()), digest_size), hash_cls())
        signature_algorithm = {
            "algorithm": "rsassa_pss",
            "parameters": {
                "hash_algorithm": {"algorithm": hash_algorithm},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": hash_algorithm}},
                "salt_length": digest_size,
            },
        }
    else:
        signature = signer_key.sign(to_sign, padding.PKCS1v15(), hash_cls())
        signature_algorithm = {"algorithm": f"{hash_algorithm}_rsa"}
    cert = asn1_x509.Certificate.load(signer_cert.public_bytes(Encoding.DER))
    signer_info = {
        "version": "v1",
        "sid": cms.SignerIdentifier(
            "issuer_and_serial_number", {"issuer": cert.issuer, "serial_number": cert.serial_number}
        ),
        "digest_algorithm": {"algorithm": hash_algorithm},
        "signed_attrs": signed_attrs,
        "signature_algorithm": signature_algorithm,
        "signature": signature,
    }
    signed_data = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [{"algorithm": hash_algorithm}],
            "encap_content_info": {
                "content_type": LDS_SECURITY_OBJECT_OID,
                "content": core.ParsableOctetString(encap_content),
            },
            "certificates": [cert],
            "signer_infos": [signer_info],
        }
    )
    info = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
    return tlv.encode(TAG_SOD, bytes(info.dump()))
