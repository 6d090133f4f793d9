"""Ward or province side: sign a list of known Document Signers for the terminals (``ds-list sign``).

A ward pins a DS once a card it signed has been proven genuine another way (the national authentication service);
``cccd-edge read --export-ds FILE`` writes that card's DS certificate. The list is signed with the ward's command
key (the one that signs office commands), or a province key the terminals list in ``trust.ds_list_keys``. Each new
list replaces the one the same key signed before, so it names every DS still vouched for and a higher version.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from edge.errors import DsListRefusedError, ProvisioningError, PublicKeyFormatError
from edge.protocol.ds_list import PROVINCE, ds_list_claims, sign_ds_list
from edge.protocol.verify.certs import parse_certificate
from edge.signers import KeySigner
from provisioning.files import write_atomic
from provisioning.pki import load_certificate, load_private_key

#: The list is public (certificates every card of those signers carries): world-readable.
LIST_MODE = 0o644


@dataclass(frozen=True, slots=True)
class SignedList:
    token: str
    kid: str
    fingerprints: tuple[str, ...]


def load_ds_certificate(path: Path) -> bytes:
    """The DER of a Document Signer certificate (PEM or DER); CA certificates are refused here already."""
    der = load_certificate(path, "Document Signer certificate").public_bytes(Encoding.DER)
    try:
        info = parse_certificate(der)
    except PublicKeyFormatError as exc:
        raise ProvisioningError(f"not a usable certificate: {exc}", path=str(path)) from None
    if info.is_ca:
        raise ProvisioningError(f"'{info.subject}' is a CA certificate, not a Document Signer", path=str(path))
    if info.public_key is None:
        raise ProvisioningError(f"its key is not supported ({info.key_description})", path=str(path))
    return der


def sign_list(key_path: Path, certificates: Sequence[Path], *, version: int, ward_code: str | None,
              iss: str | None = None, notes: Mapping[Path, str] | None = None, lifetime_days: int | None = None,
              now: int | None = None) -> SignedList:  # fmt: skip
    """Sign the DS certificates in ``certificates`` as list ``version`` for ``ward_code`` (None: the province)."""
    signer = KeySigner(load_private_key(key_path))
    ders = [load_ds_certificate(path) for path in certificates]
    by_der = {der: (notes or {}).get(path) for der, path in zip(ders, certificates, strict=True)}
    scope = ward_code if ward_code is not None else PROVINCE
    try:
        claims = ds_list_claims(
            iss=iss or (f"ward-{ward_code}" if ward_code is not None else PROVINCE), ward_code=scope,
            version=version, certificates=list(dict.fromkeys(ders)),
            notes={der: note for der, note in by_der.items() if note}, now=int(time.time()) if now is None else now,
            lifetime=lifetime_days * 86400 if lifetime_days is not None else None,
        )  # fmt: skip
    except DsListRefusedError as exc:
        raise ProvisioningError(f"the terminals would refuse this list: {exc.detail}") from None
    fingerprints = tuple(parse_certificate(der).fingerprint for der in dict.fromkeys(ders))
    return SignedList(sign_ds_list(signer, claims), signer.kid, fingerprints)


def write_list(path: Path, signed: SignedList) -> None:
    write_atomic(path, signed.token.encode("ascii") + b"\n", LIST_MODE)
