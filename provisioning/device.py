"""Device side: make the terminal's key on the terminal, write a CSR, install what the ward sends back.

Layout (defaults match ``systemd/cccd-edge.service``)::

    /var/lib/cccd-edge/   0700 cccd-edge      device.key (0600), device.csr, device.key.next during a rotation;
                                          device.key.pkcs11 (0600, the key's URI) instead when the key is on a token
    /etc/cccd-edge/       0750 root:cccd-edge config.toml, device.crt, broker-ca.crt, ward-command.pub,
                                          trust/ (CSCA store: csca-<sha256>.der, as `cccd-edge trust import`),
                                          token.pin (0640, the PIN of a token key: written by the operator)

Rotation keeps the terminal working: ``rotate`` parks a new key as ``device.key.next`` and writes its CSR; the old key
keeps serving until ``install`` receives a certificate for the new key, and only then replaces it. A key on a PKCS#11
token rotates the same way, as a second key pair labelled ``<object>.next`` on the token.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.errors import ProvisioningError, TrustStoreError
from edge.files import private_key_pem
from edge.protocol.crypto import plain_ecdsa_to_der
from edge.protocol.jose import Signer
from edge.protocol.pkcs11_uri import Pkcs11Uri
from edge.protocol.verify.trust import TrustStore
from edge.signers import KeySigner
from edge.signers.pkcs11 import Pkcs11Signer
from provisioning import token
from provisioning.files import (
    PRIVATE,
    PRIVATE_DIR,
    PUBLIC,
    SHARED_DIR,
    dump_toml,
    ensure_dir,
    read_file,
    write_atomic,
)
from provisioning.pki import (
    TerminalIdentity,
    load_certificate,
    load_private_key,
    load_public_key,
    new_private_key,
    same_public_key,
    utcnow,
)
from provisioning.ward_ca import load_csr

KEY = "device.key"
NEXT_KEY = "device.key.next"
KEY_URI = "device.key.pkcs11"  # the URI of a key that lives on a PKCS#11 token (then there is no device.key)
CSR = "device.csr"
CERT = "device.crt"
PIN_FILE = "/etc/cccd-edge/token.pin"
BROKER_CA = "broker-ca.crt"
WARD_COMMAND_KEY = "ward-command.pub"
TRUST_DIR = "trust"
CONFIG = "config.toml"


@dataclass(frozen=True, slots=True)
class InitResult:
    key: Path | Pkcs11Uri  # the key the CSR is for
    csr: Path
    created: bool  # False: an existing key was kept (idempotent re-run)


@dataclass(frozen=True, slots=True)
class InstallResult:
    config: Path
    cert: Path
    rotated: bool  # True: the certificate was for the pending key, which now replaced the old one
    trust_added: int = 0  # new entries in the trust store (0 on a re-run with the same files)
    client_tls: bool = True  # False: the key is on a token, so the broker link is server-authenticated TLS only


def _csr_for(signer: Signer, public_key: ec.EllipticCurvePublicKey, identity: TerminalIdentity) -> bytes:
    """PKCS#10 built here rather than by ``cryptography``, whose builder signs only with a key object in memory: the
    token signs the DER of the CertificationRequestInfo (ecdsa-with-SHA256, the same r || s as ES256)."""
    info = asn1_csr.CertificationRequestInfo({
        "version": "v1",
        "subject": asn1_x509.Name.load(identity.name().public_bytes()),
        "subject_pk_info": asn1_keys.PublicKeyInfo.load(
            public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
        "attributes": [],
    })
    signature = plain_ecdsa_to_der(signer.sign(info.dump()))
    request = asn1_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": "sha256_ecdsa"},
        "signature": signature,
    })
    csr = x509.load_der_x509_csr(request.dump())
    if not csr.is_signature_valid:
        raise ProvisioningError("the CSR signature does not verify with the key's public half",
                                hint="the token signed with another key than the one it reports; check --pkcs11-uri")
    return csr.public_bytes(serialization.Encoding.PEM)


def _stored_uri(state_dir: Path) -> Pkcs11Uri | None:
    """The token key's URI when ``device init --pkcs11-uri`` put the key on a token, else None (a key file)."""
    path = state_dir / KEY_URI
    if not path.exists():
        return None
    return token.parse_uri(read_file(path, "token key URI").decode("utf-8").strip())


def _init_token_key(state_dir: Path, uri: Pkcs11Uri, identity: TerminalIdentity, *, owner: tuple[int, int] | None,
                    rotate: bool) -> InitResult:
    """The key pair generated on the token (kept if present); only the CSR and the URI are written here."""
    with token.token_session(uri) as session:
        _public, created = token.ensure_key_pair(session, uri.object)
        waiting = token.pending(uri)
        if rotate and not created:
            token.destroy_key_pair(session, waiting.object)  # a re-run of rotate makes a fresh pending key
            token.ensure_key_pair(session, waiting.object)
            created = True
        # The CSR is always for the newest key: the pending one during a rotation.
        csr_key = waiting if token.has_key_pair(session, waiting.object) else uri
        signer = Pkcs11Signer(session, csr_key, config_key="--pkcs11-uri")
        csr = _csr_for(signer, signer.public_key, identity)
    write_atomic(state_dir / KEY_URI, uri.text().encode("utf-8"), PRIVATE, owner)
    csr_path = state_dir / CSR
    write_atomic(csr_path, csr, PUBLIC, owner)
    return InitResult(csr_key, csr_path, created)


def init_device(
    state_dir: Path,
    identity: TerminalIdentity,
    *,
    owner: tuple[int, int] | None = None,
    rotate: bool = False,
    pkcs11_uri: str | None = None,
) -> InitResult:
    """Create the device key (or keep the existing one) and write a CSR for it.

    ``rotate`` makes a new key beside the active one (see module docstring). ``pkcs11_uri`` puts the key on a token
    (secure element, TPM): generated there, never a file; later runs find the token from ``device.key.pkcs11``.
    """
    uri = token.parse_uri(pkcs11_uri) if pkcs11_uri is not None else _stored_uri(state_dir)
    ensure_dir(state_dir, PRIVATE_DIR, owner)
    if uri is not None:
        return _init_token_key(state_dir, uri, identity, owner=owner, rotate=rotate)
    active, pending = state_dir / KEY, state_dir / NEXT_KEY
    created = False
    if not active.exists():
        write_atomic(active, private_key_pem(new_private_key()), PRIVATE, owner)
        created = True
    elif rotate:
        write_atomic(pending, private_key_pem(new_private_key()), PRIVATE, owner)
        created = True
    # The CSR is always for the newest key: the pending one during a rotation.
    key_path = pending if pending.exists() else active
    key = load_private_key(key_path)
    csr_path = state_dir / CSR
    write_atomic(csr_path, _csr_for(KeySigner(key), key.public_key(), identity), PUBLIC, owner)
    return InitResult(key_path, csr_path, created)


def rotate_device(state_dir: Path, *, owner: tuple[int, int] | None = None) -> InitResult:
    """New key + CSR for the identity of the current CSR; the active key serves until the new certificate arrives."""
    csr_path = state_dir / CSR
    has_key = (state_dir / KEY).exists() or (state_dir / KEY_URI).exists()
    if not has_key or not csr_path.exists():
        raise ProvisioningError("nothing to rotate: run 'device init' first", path=str(state_dir))
    identity = TerminalIdentity.from_name(load_csr(csr_path).subject, "the current CSR")
    return init_device(state_dir, identity, owner=owner, rotate=True)


def _check_device_cert(cert: x509.Certificate, path: Path, now: dt.datetime) -> TerminalIdentity:
    if now < cert.not_valid_before_utc or now >= cert.not_valid_after_utc:
        raise ProvisioningError(
            f"certificate is valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}, "
            f"not now ({now:%Y-%m-%d})",
            path=str(path),
            hint="check the terminal's clock (timedatectl) or ask the ward for a fresh certificate",
        )
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise ProvisioningError("certificate lacks the clientAuth extended key usage", path=str(path))
    return TerminalIdentity.from_name(cert.subject, "the device certificate")


def _device_public_keys(
    state_dir: Path, uri: Pkcs11Uri | None
) -> tuple[ec.EllipticCurvePublicKey, ec.EllipticCurvePublicKey | None]:
    """The active key's public half, and the pending key's during a rotation."""
    if uri is not None:
        return token.public_keys(uri)
    pending = state_dir / NEXT_KEY
    return (load_private_key(state_dir / KEY).public_key(),
            load_private_key(pending).public_key() if pending.exists() else None)


def _matching_key(state_dir: Path, uri: Pkcs11Uri | None, cert: x509.Certificate, cert_path: Path) -> bool:
    """Which key the certificate is for; returns True when it is the pending one (rotation completes)."""
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ProvisioningError("certificate key is not EC P-256", path=str(cert_path))
    active, pending = _device_public_keys(state_dir, uri)
    if same_public_key(public, active):
        return False
    if pending is not None and same_public_key(public, pending):
        return True
    raise ProvisioningError(
        "certificate is not for this terminal's key",
        path=str(cert_path),
        hint="send the ward the CSR from this terminal (device.csr in the state dir) and install its answer",
    )


def _import_trust(store_dir: Path, files: list[Path], now: dt.datetime) -> int:
    """Import CSCA certificates / master lists / CRLs with the daemon's own trust-store rules; returns how many
    entries were added. The same call on a scratch directory is the dry run that checks them before any write."""
    store = TrustStore.load(store_dir)
    added = 0
    for path in files:
        try:
            added += len(store.import_file(path, at=now).added)
        except TrustStoreError as exc:
            reason = str(exc.args[0]).removeprefix(f"{path}: ")  # the trust store names the file already
            raise ProvisioningError(f"refused as trust anchor: {reason}", path=str(path), hint=exc.hint) from None
        store = TrustStore.load(store_dir)  # a master list may anchor on a CSCA imported just before
    return added


def _merge_config(path: Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Keep what an operator set by hand (indicators, camera, timeouts); overwrite only provisioning's keys."""
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = tomllib.loads(read_file(path, "config").decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ProvisioningError(f"existing config is not valid TOML ({exc})", path=str(path)) from None
    for key, value in updates.items():
        if isinstance(value, dict):
            section = current.setdefault(key, {})
            if not isinstance(section, dict):
                raise ProvisioningError(f"existing config has '{key}' as a value, expected a table", path=str(path))
            section.update(value)
        else:
            current[key] = value
    return current


def install_device(
    state_dir: Path,
    config_dir: Path,
    *,
    cert: Path,
    broker_ca: Path,
    ward_command_key: Path,
    trust: list[Path],
    mqtt_host: str | None = None,
    mqtt_port: int | None = None,
    delivery: Literal["receipt", "puback"] | None = None,
    owner: tuple[int, int] | None = None,
    now: dt.datetime | None = None,
) -> InstallResult:
    """Check everything first, then install; a refused step leaves the terminal as it was. ``delivery``: when a
    result may leave the terminal (``delivery.mode``; None keeps what the config says, by default receipts, which
    the ward's gateway signs with the ward command key installed here)."""
    now = now or utcnow()
    device_cert = load_certificate(cert, "device certificate")
    identity = _check_device_cert(device_cert, cert, now)
    uri = _stored_uri(state_dir)
    if uri is not None and uri.pin_value is not None:
        raise ProvisioningError(
            "the token URI holds its PIN (pin-value=), which would sit in config.toml, readable by group cccd-edge",
            path=str(state_dir / KEY_URI),
            hint=f"put the PIN in {PIN_FILE} (0640 root:cccd-edge) and re-run 'device init --pkcs11-uri' with "
                 f"pin-source={PIN_FILE} instead of pin-value= (the key on the token is kept)")
    rotated = _matching_key(state_dir, uri, device_cert, cert)
    load_certificate(broker_ca, "broker CA certificate")
    load_public_key(ward_command_key, "ward command key")
    trust_dir = config_dir / TRUST_DIR
    with tempfile.TemporaryDirectory(prefix="cccd-edge-trust-check-") as scratch:
        _import_trust(Path(scratch), trust, now)
    if not trust and not TrustStore.load(trust_dir).anchors:
        raise ProvisioningError("no CSCA trust anchors given (--trust) and none installed", path=str(trust_dir))
    config_path = config_dir / CONFIG
    updates: dict[str, Any] = {
        "terminal_id": identity.terminal_id,
        "ward_code": identity.ward_code,
        "paths": {
            "state_dir": str(state_dir),
            "device_key": uri.text() if uri is not None else str(state_dir / KEY),
            "device_cert": str(config_dir / CERT),  # the daemon and doctor check the key against it
            "broker_ca": str(config_dir / BROKER_CA),
            "ward_command_key": str(config_dir / WARD_COMMAND_KEY),
            "trust_store": str(trust_dir),
        },
        # Python's ssl loads a client key only from a file (see edge.config): a token key gets server-authenticated
        # TLS; set either way, so a re-install that moves the key between file and token leaves no stale choice.
        "mqtt": {"tls": True, "client_certificate": uri is None},
    }
    if mqtt_host is not None:
        updates["mqtt"]["host"] = mqtt_host
    if mqtt_port is not None:
        updates["mqtt"]["port"] = mqtt_port
    if delivery is not None:
        updates["delivery"] = {"mode": delivery}
    merged = _merge_config(config_path, updates)
    if "host" not in merged["mqtt"]:
        raise ProvisioningError("first install needs --mqtt-host (the ward broker's name)")
    config_text = dump_toml(merged).encode("utf-8")

    # Config files are root's (ProtectSystem=strict makes them read-only to the service anyway); the group reads.
    ensure_dir(config_dir, SHARED_DIR, owner, group_only=True)
    ensure_dir(trust_dir, SHARED_DIR, owner, group_only=True)
    added = _import_trust(trust_dir, trust, now)  # CSCA certificates are public: the store writes them 0644
    write_atomic(config_dir / BROKER_CA, read_file(broker_ca, "broker CA"), PUBLIC, owner, group_only=True)
    write_atomic(config_dir / WARD_COMMAND_KEY, read_file(ward_command_key, "ward command key"), PUBLIC, owner,
                 group_only=True)
    if rotated and uri is not None:
        token.promote_pending(uri)
    elif rotated:
        os.replace(state_dir / NEXT_KEY, state_dir / KEY)
    # Only now: until the new key is active, the old certificate must stay the one the daemon checks its key with.
    write_atomic(config_dir / CERT, device_cert.public_bytes(serialization.Encoding.PEM), PUBLIC, owner,
                 group_only=True)
    write_atomic(config_path, config_text, PUBLIC, owner, group_only=True)
    return InstallResult(config_path, config_dir / CERT, rotated, added, client_tls=uri is None)
