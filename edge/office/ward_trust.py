"""Terminal keys found through the ward CA: the device certificate a result carries (``x5c``) is checked, not listed.

A terminal provisioned by the ward (``python -m provisioning device init/install``) holds a certificate from the
ward CA and sends it in each result's header, so a new terminal needs no office configuration. The chain is
verified with ``cryptography.x509.verification`` (the Rust WebPKI verifier: signatures, validity, basic constraints,
path length, the CA's key usage), as a client certificate, with one change to its WebPKI defaults: a device
certificate names its terminal in the subject (CN terminal id, OU ward), not in a subjectAltName, so a SAN is
allowed, not required. Then, explicitly: ``clientAuth`` (the verifier's client policy), ``digitalSignature``, a
subject in the ward CA's ward, not a gateway's identity (CN ``gateway:...``), and not on the ward's CRL
(``python -m provisioning ward-ca revoke``; its signature is checked against the ward CA, it is re-read when the
file changes, and a damaged new file keeps the last good one).

When is the certificate judged? Results never expire (a result is evidence of a read), but certificates do. A
certificate valid when the office receives the result is accepted; one that has expired since is accepted when the
result says it was signed inside its validity (``iat``: signed by the key, and only believed once the signature
holds). Revocation has no such grace: a revoked certificate vouches for nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from edge.errors import ConfigError, DeviceCertificateError
from edge.protocol.jose import key_id

log = logging.getLogger(__name__)

GATEWAY_CN_PREFIX = "gateway:"  # provisioning.pki.GATEWAY_PREFIX: a gateway's certificate signs no results
#: Verified chains kept (by the DER of the chain): a ward has tens of terminals, a province thousands.
CACHE_SIZE = 8192


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Who a verified device certificate speaks for."""

    terminal_id: str
    ward_code: str
    serial: int
    issuer: bytes  # DER name: with the serial, what a CRL entry names
    key: ec.EllipticCurvePublicKey
    not_before: dt.datetime
    not_after: dt.datetime
    kid: str  # the key's JWK thumbprint, the ``kid`` its tokens carry (computed once, with the chain)


class WardTrust:
    """The ward CA(s) a gateway trusts for device certificates, and their CRL(s). Thread-safe."""

    def __init__(self, ca_certificates: Sequence[x509.Certificate], *, crl_path: Path | None = None) -> None:
        if not ca_certificates:
            raise ConfigError("no ward CA certificate", key="ward_ca")
        self._cas = tuple(ca_certificates)
        self._store = verification.Store(list(self._cas))
        try:
            self._wards = {_single(ca.subject, NameOID.ORGANIZATIONAL_UNIT_NAME) for ca in self._cas}
        except DeviceCertificateError as exc:
            raise ConfigError(f"not a ward CA (its OU names the ward): {exc}", key="ward_ca") from None
        self._crl_path = crl_path
        self._crl_stamp: tuple[int, int] | None = None
        self._revoked: frozenset[tuple[bytes, int]] = frozenset()  # (issuer DER, serial)
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, DeviceIdentity] = OrderedDict()
        if crl_path is not None:
            self._reload_crl(initial=True)

    @classmethod
    def load(cls, ca_path: Path, crl_path: Path | None = None) -> WardTrust:
        """The ward CA certificate(s) from a PEM file (a province gateway: several wards' CAs in one file)."""
        try:
            certificates = x509.load_pem_x509_certificates(ca_path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read {ca_path}: {exc.strerror}", key="ward_ca") from None
        except ValueError as exc:
            raise ConfigError(f"{ca_path}: not PEM certificates ({exc})", key="ward_ca") from None
        return cls(certificates, crl_path=crl_path)

    @property
    def wards(self) -> frozenset[str]:
        return frozenset(self._wards)

    def device(self, chain: Sequence[bytes], *, now: int,
               signed_at: Callable[[], int | None] = lambda: None) -> DeviceIdentity:  # fmt: skip
        """The identity and key of the device certificate ``chain`` (DER, leaf first); raises
        :class:`DeviceCertificateError`. ``signed_at`` gives the token's ``iat``, asked only for a certificate that
        has expired since (module docstring)."""
        if not chain:
            raise DeviceCertificateError("the token carries no device certificate (x5c)")
        self._reload_crl()
        cache_key = hashlib.sha256(b"".join(len(der).to_bytes(4, "big") + der for der in chain)).digest()
        with self._lock:
            identity = self._cache.get(cache_key)
            if identity is not None:
                self._cache.move_to_end(cache_key)
        if identity is None:
            identity = self._verify(chain, now=now, signed_at=signed_at)
            with self._lock:
                self._cache[cache_key] = identity
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        else:
            _check_time(identity.not_before, identity.not_after, now=now, signed_at=signed_at)
        if (identity.issuer, identity.serial) in self._revoked:
            raise DeviceCertificateError(f"the device certificate of {identity.terminal_id} (serial "
                                         f"{identity.serial:x}) is revoked by the ward CA")
        return identity

    def _verify(self, chain: Sequence[bytes], *, now: int, signed_at: Callable[[], int | None]) -> DeviceIdentity:
        try:
            certificates = [x509.load_der_x509_certificate(der) for der in chain]
        except ValueError as exc:
            raise DeviceCertificateError(f"x5c holds something that is not a DER certificate ({exc})") from None
        leaf = certificates[0]
        at = _check_time(leaf.not_valid_before_utc, leaf.not_valid_after_utc, now=now, signed_at=signed_at)
        ee_policy = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
            x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None)
        verifier = (verification.PolicyBuilder().store(self._store).time(at)
                    .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                        ee_policy=ee_policy)
                    .build_client_verifier())
        try:
            verifier.verify(leaf, certificates[1:])
        except verification.VerificationError as exc:
            raise DeviceCertificateError(f"the device certificate does not chain to the ward CA: {exc}") from None
        try:
            usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            raise DeviceCertificateError("the device certificate has no key usage") from None
        if not usage.digital_signature:
            raise DeviceCertificateError("the device certificate does not allow digital signatures")
        terminal_id = _single(leaf.subject, NameOID.COMMON_NAME)
        ward_code = _single(leaf.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        if terminal_id.startswith(GATEWAY_CN_PREFIX):
            raise DeviceCertificateError("a gateway's certificate does not vouch for terminal results")
        if ward_code not in self._wards:
            raise DeviceCertificateError(f"the device certificate is for ward {ward_code!r}, not one of this CA")
        key = leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise DeviceCertificateError("the device key is not EC P-256")
        return DeviceIdentity(terminal_id, ward_code, leaf.serial_number, leaf.issuer.public_bytes(), key,
                              leaf.not_valid_before_utc, leaf.not_valid_after_utc, key_id(key))

    def _reload_crl(self, *, initial: bool = False) -> None:
        """Read the CRL again when its file changed; a refused new file keeps the last good list."""
        if self._crl_path is None:
            return
        try:
            status = self._crl_path.stat()
            stamp = (status.st_mtime_ns, status.st_size)
            if stamp == self._crl_stamp:
                return
            data = self._crl_path.read_bytes()
        except OSError as exc:
            if initial:
                raise ConfigError(f"cannot read {self._crl_path}: {exc.strerror}", key="crl") from None
            return  # keep the last good list (a file being replaced)
        try:
            revoked = self._parse_crl(data)
        except DeviceCertificateError as exc:
            if initial:
                raise ConfigError(f"{self._crl_path}: {exc}", key="crl") from None
            log.error("CRL %s refused, the last good one stays in force: %s", self._crl_path, exc)
            self._crl_stamp = stamp
            return
        with self._lock:
            self._revoked, self._crl_stamp = revoked, stamp
        log.info("CRL %s: %d revoked certificates", self._crl_path, len(revoked))

    def _parse_crl(self, data: bytes) -> frozenset[tuple[bytes, int]]:
        try:
            crls = [x509.load_pem_x509_crl(data)] if b"-----BEGIN" in data else [x509.load_der_x509_crl(data)]
        except ValueError as exc:
            raise DeviceCertificateError(f"not a CRL ({exc})") from None
        revoked: set[tuple[bytes, int]] = set()
        for crl in crls:
            ca = next((ca for ca in self._cas if ca.subject == crl.issuer), None)
            public = ca.public_key() if ca is not None else None
            if not isinstance(public, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(public):
                raise DeviceCertificateError("the CRL is not signed by the ward CA")
            next_update = crl.next_update_utc
            if next_update is not None and next_update < dt.datetime.now(dt.UTC):
                log.warning("CRL of %s is past its next update (%s): re-sign it (python -m provisioning ward-ca "
                            "revoke)", crl.issuer.rfc4514_string(), f"{next_update:%Y-%m-%d}")
            issuer = crl.issuer.public_bytes()
            revoked |= {(issuer, entry.serial_number) for entry in crl}
        return frozenset(revoked)


def _check_time(not_before: dt.datetime, not_after: dt.datetime, *, now: int,
                signed_at: Callable[[], int | None]) -> dt.datetime:  # fmt: skip
    """The time to judge the certificate at: now when it is valid now, else the signing time if that lies within
    its validity (an old result held in an outbox); raises :class:`DeviceCertificateError` otherwise."""
    for candidate in (lambda: now, signed_at):
        seconds = candidate()
        if seconds is None:
            continue
        try:
            at = dt.datetime.fromtimestamp(seconds, dt.UTC)
        except (OverflowError, OSError, ValueError):
            continue
        if not_before <= at <= not_after:
            return at
    raise DeviceCertificateError(f"the device certificate is valid from {not_before:%Y-%m-%d} to "
                                 f"{not_after:%Y-%m-%d}, neither now nor when the result says it was signed")


def _single(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1:
        raise DeviceCertificateError(f"the certificate must carry exactly one {oid._name}")
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
