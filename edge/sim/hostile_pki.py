"""Hostile trust material: what an attacker hands the trust store or the chain builder to make it stall.

Link certificates in a loop (each certificate under one name signed by the next one's key, so every certificate
verifies under another and none reaches a self-signed CSCA) made path search exponential before it kept a visited
set; a master list of many honest CSCAs is the matching load for the honest path. Tests and ``bench/trust_paths.py``
both draw from here, so the figure and the proof speak of the same objects. Keys are P-256: generation and
signatures are cheap, so the cost measured is the search's, not the curve's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from edge.protocol.verify.masterlist import ID_MASTER_LIST_SIGNING_KEY, encode_master_list

VALID_FROM = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
VALID_TO = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cccd-edge hostile PKI (TEST ONLY)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def _certificate(subject: x509.Name, public_key: ec.EllipticCurvePublicKey, issuer: x509.Name,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, serial: int,
                 key_id_of: ec.EllipticCurvePublicKey | None = None) -> bytes:  # fmt: skip
    """DER of one certificate; ``key_id_of`` names the key its authority key identifier claims (default: the
    signer's)."""
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
        .serial_number(serial).not_valid_before(VALID_FROM).not_valid_after(VALID_TO)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key_id_of or issuer_key.public_key()),
                       critical=False)
    )  # fmt: skip
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)  # fmt: skip
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(ID_MASTER_LIST_SIGNING_KEY)]),
                                        critical=False)  # fmt: skip
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(Encoding.DER)


@dataclass(frozen=True, slots=True)
class LinkLoop:
    """``links``: certificates under one CSCA name, certificate i signed by key i+1 (mod n), none self-signed;
    ``signer_der``: a master-list signer (or Document Signer) under that name, signed by key 0."""

    name: x509.Name
    links: tuple[bytes, ...]
    signer_key: ec.EllipticCurvePrivateKey
    signer_der: bytes

    def master_list(self) -> bytes:
        """A master list carrying the loop, signed by the signer: it vouches for nothing."""
        return encode_master_list(self.signer_key, self.signer_der, self.links)


def link_loop(count: int, common_name: str = "CSCA LOOP") -> LinkLoop:
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(count)]
    name = _name(common_name)
    links = tuple(_certificate(name, keys[i].public_key(), name, keys[(i + 1) % count], ca=True, serial=i + 1)
                  for i in range(count))  # fmt: skip
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = _certificate(_name(f"{common_name} signer"), signer_key.public_key(), name, keys[0], ca=False,
                          serial=count + 1)  # fmt: skip
    return LinkLoop(name, links, signer_key, signer)


@dataclass(frozen=True, slots=True)
class HonestList:
    """A master list of ``count`` self-signed CSCAs, signed by a signer under the first, which is ``anchor_der``."""

    anchor_der: bytes
    master_list: bytes


def honest_master_list(count: int) -> HonestList:
    cscas: list[bytes] = []
    first_key: ec.EllipticCurvePrivateKey | None = None
    first_name: x509.Name | None = None
    for index in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"CSCA COUNTRY {index:04d}")
        cscas.append(_certificate(name, key.public_key(), name, key, ca=True, serial=1))
        if first_key is None:
            first_key, first_name = key, name
    if first_key is None or first_name is None:
        raise ValueError("a master list needs at least one CSCA")
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = _certificate(_name("Master List Signer"), signer_key.public_key(), first_name, first_key, ca=False,
                          serial=2)  # fmt: skip
    return HonestList(cscas[0], encode_master_list(signer_key, signer, cscas))
