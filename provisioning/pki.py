"""X.509 pieces shared by the ward and device sides: P-256 keys, terminal names, loading with typed errors."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.errors import ProvisioningError
from provisioning.files import check_private_mode, read_file

# Same alphabet as edge.config (terminal_id and ward_code become MQTT topic segments and JWS issuers).
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
ORGANIZATION = "cccd-edge"


@dataclass(frozen=True, slots=True)
class TerminalIdentity:
    """Who a device certificate speaks for: the terminal (CN) and the ward that owns it (OU)."""

    terminal_id: str
    ward_code: str

    def __post_init__(self) -> None:
        for label, value, limit in (("terminal id", self.terminal_id, 64), ("ward code", self.ward_code, 16)):
            if not _SEGMENT.match(value) or len(value) > limit:
                raise ProvisioningError(
                    f"{label} {value!r} must be 1-{limit} letters, digits, '_', '.' or '-'",
                    hint="the same rule as terminal_id / ward_code in config.toml",
                )

    def name(self) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.ward_code),
                x509.NameAttribute(NameOID.COMMON_NAME, self.terminal_id),
            ]
        )

    @classmethod
    def from_name(cls, name: x509.Name, what: str) -> TerminalIdentity:
        def single(oid: x509.ObjectIdentifier, label: str) -> str:
            values = name.get_attributes_for_oid(oid)
            if len(values) != 1:
                raise ProvisioningError(f"{what} must carry exactly one {label}, found {len(values)}")
            value = values[0].value
            return value if isinstance(value, str) else value.decode("utf-8", "replace")

        return cls(single(NameOID.COMMON_NAME, "CN (terminal id)"), single(NameOID.ORGANIZATIONAL_UNIT_NAME, "OU"))


#: A gateway's CN is ``gateway:<name>``: the colon is outside the terminal id alphabet, so no terminal certificate
#: can ever carry a gateway's MQTT user name (the broker takes the CN as user name and grants by it).
GATEWAY_PREFIX = "gateway:"


@dataclass(frozen=True, slots=True)
class GatewayIdentity:
    """An office gateway instance of a ward: reads every terminal's results, writes commands and receipts.

    One certificate per instance (``name``): the broker forces the MQTT client id to the user name, so two
    instances sharing one certificate would keep disconnecting each other.
    """

    name: str
    ward_code: str

    def __post_init__(self) -> None:
        TerminalIdentity(self.name, self.ward_code)  # the same alphabet for the name part and the ward
        if len(self.common_name) > 64:
            raise ProvisioningError(f"gateway name {self.name!r} is too long (CN at most 64 characters)")

    @property
    def common_name(self) -> str:
        """The MQTT user name the broker derives from the certificate (``use_identity_as_username``)."""
        return f"{GATEWAY_PREFIX}{self.name}"

    def name_attributes(self) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.ward_code),
                x509.NameAttribute(NameOID.COMMON_NAME, self.common_name),
            ]
        )

    @classmethod
    def from_name(cls, name: x509.Name, what: str) -> GatewayIdentity:
        cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        ous = name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        if len(cns) != 1 or len(ous) != 1:
            raise ProvisioningError(f"{what} must carry exactly one CN and one OU")
        cn, ou = (v.value if isinstance(v.value, str) else v.value.decode("utf-8", "replace") for v in (cns[0], ous[0]))
        if not cn.startswith(GATEWAY_PREFIX):
            raise ProvisioningError(f"{what} is not a gateway's: its CN must be {GATEWAY_PREFIX}<name>, not {cn!r}",
                                    hint="make it with: python -m provisioning gateway init")
        return cls(cn[len(GATEWAY_PREFIX):], ou)


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """P-256: what the results are signed with (ES256) and what every MQTT broker accepts for client TLS."""
    return ec.generate_private_key(ec.SECP256R1())


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    check_private_mode(path)
    try:
        key = serialization.load_pem_private_key(read_file(path, "private key"), password=None)
    except (ValueError, TypeError) as exc:
        raise ProvisioningError(f"not an unencrypted PEM private key ({exc})", path=str(path)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ProvisioningError("expected an EC P-256 private key", path=str(path))
    return key


def load_certificate(path: Path, what: str = "certificate") -> x509.Certificate:
    data = read_file(path, what)
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ProvisioningError(f"not a {what} in PEM or DER ({exc})", path=str(path)) from None


def load_public_key(path: Path, what: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(read_file(path, what))
    except ValueError as exc:
        raise ProvisioningError(f"not a PEM {what} ({exc})", path=str(path)) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ProvisioningError(f"{what} must be an EC P-256 public key", path=str(path))
    return key


def same_public_key(a: ec.EllipticCurvePublicKey, b: ec.EllipticCurvePublicKey) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(serialization.Encoding.DER, fmt) == b.public_bytes(serialization.Encoding.DER, fmt)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
