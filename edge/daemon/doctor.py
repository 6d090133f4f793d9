"""``cccd-edge doctor``: small, independent checks of what a terminal needs, each with a fix hint for the desk.

Each check is a function returning :class:`DoctorResult`\\s, so tests run them on temporary directories and a
support script can run a subset. No check prints personal data: the outbox is checked for integrity, never read.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import ssl
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.drivers.base import CardPresence, ReaderState
from edge.errors import EdgeError
from edge.protocol.verify.trust import TrustStore

if TYPE_CHECKING:
    from edge.config import Config

#: pcsc-lite's client socket; tests and private stacks point PCSCLITE_CSOCK_NAME elsewhere.
PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
#: Before this the clock is surely unset (no RTC on a Pi): certificates would look "not yet valid".
MIN_YEAR = 2025
#: Warn this long before the device certificate expires: the ward needs time to sign a new one.
RENEW_BEFORE = dt.timedelta(days=30)
DATABASE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


@dataclass(frozen=True, slots=True)
class DoctorResult:
    name: str
    ok: bool
    detail: str
    hint: str = ""

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        fix = f"  -> {self.hint}" if self.hint and not self.ok else ""
        return f"[{status}] {self.name:<12} {self.detail}{fix}"


def _ok(name: str, detail: str) -> DoctorResult:
    return DoctorResult(name, True, detail)


def _fail(name: str, detail: str, hint: str) -> DoctorResult:
    return DoctorResult(name, False, detail, hint)


def _skipped(name: str, why: str = "not configured") -> DoctorResult:
    return DoctorResult(name, True, f"skipped: {why}")


# --- PC/SC -----------------------------------------------------------------------------------------------------


def check_pcscd(socket_path: str | None = None) -> DoctorResult:
    """Connect to pcscd's socket (which also starts a socket-activated pcscd) without touching any card."""
    path = socket_path or os.environ.get("PCSCLITE_CSOCK_NAME", PCSCD_SOCKET)
    hint = "systemctl enable --now pcscd.socket; is the polkit rule 50-cccd-edge-pcscd.rules installed?"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(path)
        except FileNotFoundError:
            return _fail("pcscd", f"no socket at {path}", hint)
        except OSError as exc:
            return _fail("pcscd", f"cannot connect to {path}: {exc.strerror or exc}", hint)
    return _ok("pcscd", f"reachable at {path}")


class ReaderLister(Protocol):
    """The part of :class:`~edge.drivers.base.CardReaderDriver` doctor needs: it never connects to a card."""

    def readers(self) -> Sequence[ReaderState]: ...


def default_reader_driver() -> ReaderLister:
    """The real driver, imported lazily: doctor must still report the other checks when pyscard is missing."""
    from edge.drivers.pcsc import PcscReaderDriver

    return PcscReaderDriver()


def check_readers(
    driver_factory: Callable[[], ReaderLister] = default_reader_driver, reader_name: str | None = None
) -> list[DoctorResult]:
    """Readers attached, and the ATR of a card if one lies on the configured reader (ATRs hold no personal data)."""
    try:
        driver = driver_factory()
    except ImportError as exc:
        return [_fail("readers", f"PC/SC driver not available ({exc})", "reinstall: /opt/cccd-edge/bin/pip "
                      "install cccd-edge (pyscard needs libpcsclite-dev, gcc, swig)")]
    try:
        states: Sequence[ReaderState] = driver.readers()
    except EdgeError as exc:
        return [_fail("readers", str(exc), exc.hint or "systemctl restart pcscd")]
    finally:
        close = getattr(driver, "close", None)  # not part of the protocol; the pcscd driver has one
        if callable(close):
            close()
    states = [s for s in states if s.presence is not CardPresence.NO_READER]
    if not states:
        return [_fail("readers", "no reader found (or pcscd not running)",
                      "plug the reader in (lsusb), then systemctl restart pcscd")]
    names = ", ".join(s.name for s in states)
    results = [_ok("readers", f"{len(states)}: {names}")]
    if reader_name is not None and not any(reader_name in s.name for s in states):
        results.append(_fail("reader", f"configured reader_name {reader_name!r} is not attached",
                             "fix reader_name in config.toml or plug that reader in"))
    cards = [s for s in states if s.presence is CardPresence.PRESENT]
    if cards:
        results.extend(_ok("card", f"on {s.name}: ATR {s.atr.hex(' ').upper()}") for s in cards)
    else:
        results.append(_ok("card", "no card on the reader (place one to see its ATR)"))
    return results


# --- clock, key, certificate -----------------------------------------------------------------------------------


def check_clock(now: dt.datetime) -> DoctorResult:
    if now.year < MIN_YEAR:
        return _fail("clock", f"system time is {now:%Y-%m-%d %H:%M} UTC",
                     "the Pi has no RTC: check network time (timedatectl; systemctl status systemd-timesyncd)")
    return _ok("clock", f"{now:%Y-%m-%d %H:%M} UTC")


def _private_mode_problem(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    return f"mode {mode:04o}, expected 0600" if mode & 0o077 else ""


def check_private_file(name: str, path: Path) -> DoctorResult:
    """A secret (device key, outbox key) exists and only its owner can read it."""
    if not path.exists():
        return _fail(name, f"{path} is missing", "provision the terminal: python -m provisioning device init")
    problem = _private_mode_problem(path)
    if problem:
        return _fail(name, f"{path}: {problem}", f"chmod 600 {path}; rotate the key if others could read it")
    return _ok(name, f"{path} (0600)")


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | str:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return f"cannot load {path}: {exc}"
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return f"{path} is not an EC key"
    return key


def check_certificate(cert_path: Path | None, key_path: Path, now: dt.datetime) -> DoctorResult:
    """The device certificate is current, not about to expire, and belongs to the device key."""
    if cert_path is None:
        return _skipped("certificate", "no device_cert configured (broker without client TLS)")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        return _fail("certificate", f"cannot load {cert_path}: {exc}", "reinstall it: python -m provisioning "
                     "device install")
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return _fail("certificate", f"not valid before {start:%Y-%m-%d}", "check the clock (timedatectl)")
    if now >= end:
        return _fail("certificate", f"expired {end:%Y-%m-%d}", "python -m provisioning device rotate, then have "
                     "the ward sign the new CSR")
    key = _load_key(key_path)
    if isinstance(key, str):
        return _fail("certificate", key, "python -m provisioning device init (keeps a good key)")
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*fmt) != key.public_key().public_bytes(*fmt):
        return _fail("certificate", f"{cert_path} is not for the key {key_path}",
                     "install the certificate the ward signed for this terminal's CSR")
    subject = cert.subject.rfc4514_string()
    if end - now < RENEW_BEFORE:
        return _fail("certificate", f"{subject} expires {end:%Y-%m-%d}", "rotate now: python -m provisioning "
                     "device rotate")
    return _ok("certificate", f"{subject}, valid to {end:%Y-%m-%d}, matches the key")


# --- broker ----------------------------------------------------------------------------------------------------


def check_broker(
    host: str,
    port: int,
    *,
    tls: bool,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    timeout: float = 5.0,
) -> DoctorResult:
    """TCP connect, then the TLS handshake the daemon will do (same CA, same client certificate)."""
    target = f"{host}:{port}"
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return _fail("broker", f"cannot reach {target}: {exc.strerror or exc}",
                     "check the network, mqtt.host / mqtt.port, and the ward firewall")
    with raw:
        if not tls:
            return _ok("broker", f"{target} reachable (plain MQTT: lab only)")
        try:
            context = ssl.create_default_context(cafile=str(ca) if ca else None)
            if cert is not None:
                context.load_cert_chain(str(cert), str(key) if key else None)
        except (OSError, ssl.SSLError) as exc:
            return _fail("broker", f"cannot load TLS files: {exc}", "reinstall them: python -m provisioning "
                         "device install")
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls_sock:
                version = tls_sock.version()
                refused = _refused_after_handshake(tls_sock)
        except ssl.SSLCertVerificationError as exc:
            return _fail("broker", f"{target}: broker certificate refused ({exc.verify_message})",
                         "paths.broker_ca must be the CA that signed the broker; mqtt.host must match its name")
        except (OSError, ssl.SSLError) as exc:
            return _fail("broker", f"{target}: TLS handshake failed ({exc})",
                         "is the port the TLS listener? is this terminal's certificate from the ward CA?")
    if refused:
        return _fail("broker", f"{target}: {refused}", "the broker must trust the ward CA that signed this "
                     "terminal (its cafile); is the certificate revoked?")
    return _ok("broker", f"{target} TLS handshake ok ({version})")


def _refused_after_handshake(tls_sock: ssl.SSLSocket) -> str:
    """In TLS 1.3 the server judges the client certificate after the client's handshake is done: an alert (or a
    close) arrives right away if it refuses us, while an accepting MQTT broker stays silent, waiting for CONNECT."""
    tls_sock.settimeout(0.5)
    try:
        data = tls_sock.recv(1)
    except TimeoutError:
        return ""
    except (OSError, ssl.SSLError) as exc:
        return f"broker refused this terminal's certificate ({exc})"
    return "" if data else "broker closed the connection right after the handshake (certificate refused?)"


# --- state, outbox, trust store --------------------------------------------------------------------------------


def check_state_dir(state_dir: Path) -> DoctorResult:
    if not state_dir.is_dir():
        return _fail("state dir", f"{state_dir} is missing", "systemd-tmpfiles --create; or rerun install.sh")
    mode = stat.S_IMODE(state_dir.stat().st_mode)
    if mode & 0o077:
        return _fail("state dir", f"{state_dir} has mode {mode:04o}, expected 0700", f"chmod 700 {state_dir}")
    return _ok("state dir", f"{state_dir} (0700)")


def check_databases(state_dir: Path) -> list[DoctorResult]:
    """``PRAGMA integrity_check`` on each SQLite file (outbox, replay guard), opened read-only: nothing is changed."""
    files = sorted(p for p in state_dir.glob("*") if p.suffix in DATABASE_SUFFIXES) if state_dir.is_dir() else []
    if not files:
        return [_ok("outbox", "no database yet (created at the first read)")]
    results = []
    for path in files:
        try:
            with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5) as db:
                answer = db.execute("PRAGMA integrity_check").fetchall()
            db.close()
        except sqlite3.Error as exc:
            results.append(_fail(path.stem, f"{path.name}: {exc}", "stop the service, move the file aside, "
                                 "restart (unsent results in it are lost: report to the ward)"))
            continue
        if answer == [("ok",)]:
            results.append(_ok(path.stem, f"{path.name} integrity ok"))
        else:
            results.append(_fail(path.stem, f"{path.name}: {len(answer)} integrity problem(s)",
                                 "stop the service, move the file aside, restart; report to the ward"))
    results.extend(check_private_file("outbox key", key) for key in sorted(state_dir.glob("*.key"))
                   if key.name not in {"device.key", "device.key.next"})
    return results


def check_trust_store(directory: Path) -> DoctorResult:
    """At least one CSCA, read with the verifier's own loader, or no card can pass passive authentication."""
    if not directory.is_dir():
        return _fail("trust store", f"{directory} is missing", "cccd-edge trust import CSCA-FILE... (or "
                     "python -m provisioning device install --trust ...)")
    store = TrustStore.load(directory)
    if store.problems:
        return _fail("trust store", f"{len(store.problems)} unusable file(s): {store.problems[0]}",
                     "cccd-edge trust list; replace them from the ward's CSCA bundle")
    if not store.anchors:
        return _fail("trust store", f"{directory} holds no CSCA certificate", "cccd-edge trust import CSCA-FILE...")
    return _ok("trust store", f"{len(store.anchors)} CSCA(s), {len(store.certificates)} certificate(s), "
               f"{len(store.crls)} CRL(s) in {directory}")


def check_public_key(name: str, path: Path | None) -> DoctorResult:
    if path is None:
        return _skipped(name)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        return _fail(name, f"cannot load {path}: {exc}", "reinstall it from the ward")
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return _fail(name, f"{path} is not an EC public key", "reinstall it from the ward")
    return _ok(name, f"{path} (EC {key.curve.name})")


# --- composition -----------------------------------------------------------------------------------------------


def run_checks(
    config: Config | None,
    *,
    now: dt.datetime | None = None,
    driver_factory: Callable[[], ReaderLister] = default_reader_driver,
    broker_timeout: float = 5.0,
) -> list[DoctorResult]:
    """All checks; those that need the configuration are left out when it could not be loaded."""
    now = now or dt.datetime.now(dt.UTC)
    results = [check_clock(now), check_pcscd()]
    results.extend(check_readers(driver_factory, config.reader_name if config else None))
    if config is None:
        return results
    paths, mqtt = config.paths, config.mqtt
    checks: list[tuple[str, Callable[[], DoctorResult | list[DoctorResult]]]] = [
        ("state dir", lambda: check_state_dir(paths.state_dir)),
        ("device key", lambda: check_private_file("device key", paths.device_key)),
        ("certificate", lambda: check_certificate(paths.device_cert, paths.device_key, now)),
        ("command key", lambda: check_public_key("command key", paths.ward_command_key)),
        ("trust store", lambda: check_trust_store(paths.trust_store)),
        ("outbox", lambda: check_databases(paths.state_dir)),
        ("broker", lambda: check_broker(mqtt.host, mqtt.port, tls=mqtt.tls, ca=paths.broker_ca,
                                        cert=paths.device_cert, key=paths.device_key if paths.device_cert else None,
                                        timeout=broker_timeout)),
    ]
    for name, check in checks:
        try:
            outcome = check()
        except PermissionError as exc:
            # The state dir is 0700 cccd-edge: an admin running doctor unprivileged cannot look inside.
            outcome = _fail(name, f"cannot read {exc.filename}: permission denied",
                            "run it as root or as the service user: sudo cccd-edge doctor")
        except OSError as exc:
            outcome = _fail(name, f"{exc.filename or ''}: {exc.strerror or exc}", "see the detail")
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    # Seams: the camera and LED drivers will bring their own self-tests.
    results.append(_skipped("camera", f"not configured for a self-test (source {config.camera.source})"))
    results.append(_skipped("leds", "not configured for a self-test"))
    return results
