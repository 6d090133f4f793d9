"""The device key's signers: a 0600 PEM file (:class:`FileKeySigner`) or a key that never leaves its PKCS#11 token
(:mod:`edge.signers.pkcs11`, with the token's key rotation), and the PEM key files around them.

They implement :class:`edge.protocol.jose.Signer`; the tokens they sign are :mod:`edge.protocol.jose`'s. Neither
the daemon, the office side nor provisioning owns them: each imports them from here (the daemon's signer, the
office's public keys, provisioning's ward and device keys). A signer that fails while signing raises
:class:`~edge.errors.SignerError`; a key that cannot be opened as configured, :class:`~edge.errors.ConfigError`.
"""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import load_pem_x509_certificate

from edge.errors import ConfigError
from edge.files import private_key_pem, write_private
from edge.protocol.jose import ES256, Signer, es256_signature, key_id
from edge.protocol.pkcs11_uri import Pkcs11Uri
from edge.signers.pkcs11 import Pkcs11Signer

# --- key files ---------------------------------------------------------------------------------------------------


def load_public_key(path: Path, *, config_key: str = "") -> ec.EllipticCurvePublicKey:
    """A P-256 public key from a PEM public key or certificate (the office gets the terminal's certificate)."""
    config_key = config_key or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key=config_key) from None
    try:
        key: object
        if b"BEGIN CERTIFICATE" in data:
            key = load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"not a PEM public key or certificate: {exc}", key=config_key) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("the key must be EC P-256", key=config_key)
    return key


def load_private_key(path: Path, *, config_key: str = "paths.device_key") -> ec.EllipticCurvePrivateKey:
    """An unencrypted P-256 PEM private key, refused when group or others may read it (it signs evidence)."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path} is accessible by group/others (mode {stat.S_IMODE(mode):04o}); chmod 600 it",
                              key=config_key)
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key=config_key) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not an unencrypted PEM private key: {exc}", key=config_key) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("the key must be EC P-256", key=config_key)
    return key


def write_private_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    """Write ``key`` as PEM, created 0600 (provisioning and tests)."""
    write_private(path, private_key_pem(key))


# --- signers -----------------------------------------------------------------------------------------------------


class KeySigner:
    """ES256 with an in-memory P-256 private key (the ward's keys in provisioning, tests)."""

    alg = ES256

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self._kid = key_id(key.public_key())

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        return es256_signature(self._key, data)

    def close(self) -> None:
        """Nothing to release: the key is only memory."""


class FileKeySigner(KeySigner):
    """The terminal's device key from a 0600 PEM file (``paths.device_key``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(load_private_key(path))


def device_signer(key: Path | Pkcs11Uri) -> Signer:
    """The signer for ``paths.device_key``: a 0600 PEM file, or a key that never leaves its PKCS#11 token."""
    if isinstance(key, Path):
        return FileKeySigner(key)
    return Pkcs11Signer.open(key)


def check_certified_key(signer: Signer, cert_path: Path) -> bytes:
    """Refuse a device key that ``cert_path`` does not certify: the office would reject every result it signs (a
    rotation stopped half-way, a certificate copied from another terminal). Returns the certificate's DER, which
    result tokens carry (``x5c``)."""
    if key_id(load_public_key(cert_path)) != signer.kid:
        raise ConfigError(f"{cert_path} is not for the key", key="paths.device_key",
                          hint="install the certificate the ward signed for this terminal's CSR: "
                          "python -m provisioning device install")
    try:  # the key matched, but load_public_key takes a bare public key too: the office needs the certificate
        return load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    except ValueError as exc:
        raise ConfigError(f"{cert_path} is not a PEM certificate: {exc}", key="paths.device_cert") from None
