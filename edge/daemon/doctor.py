"""``cccd-edge doctor``: small, independent checks of what a terminal needs, each with a fix hint for the desk.

Each check is a function returning :class:`DoctorResult`\\s, so tests run them on temporary directories and a
support script can run a subset. No check prints personal data: of the outbox only counts, sizes and the age of the
oldest result are shown, and of a QR in view only that it decoded. The camera and LEDs are opened through the
daemon's own code paths, so a green line means the daemon will open them the same way.

A warning (``[warn]``) is worth a look but does not fail the exit code: a full outbox fails, an 80 % full one warns.
An outbox whose oldest result has waited more than a day (``RESULT_LATE_AFTER``) warns too: nothing is lost (a
result does not expire; the office stores it whatever its age), but the office flags it ``late``, and the citizen's
procedure waits for it, so the officer should bring the terminal back onto the ward network. The outbox line counts
both queues (unpublished, and published but awaiting the office's receipt) and warns when a result has been
published several times without a receipt: the ward's gateway is not answering.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import ssl
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.daemon.clock import CLOCK_FILE
from edge.daemon.outbox import OUTBOX_FILE, Outbox, key_path, read_only_uri
from edge.daemon.receipts import OVERDUE_ATTEMPTS
from edge.daemon.storage import free_bytes, is_disk_error, storage_error
from edge.drivers.base import CardPresence, Frame, FrameSource, ReaderState
from edge.errors import ConfigError, EdgeError, JsonError, StorageError
from edge.protocol.clock import BUILD_FLOOR, floor_from, parse_trusted_time
from edge.protocol.jose import RESULT_LATE_AFTER, Signer
from edge.protocol.verify.trust import TrustStore
from edge.signers import KeySigner, check_certified_key
from edge.signers.pkcs11 import Pkcs11Signer

if TYPE_CHECKING:
    from edge.config import Config, IndicatorConfig, OutboxConfig
    from edge.protocol.pkcs11_uri import Pkcs11Uri

#: pcsc-lite's client socket; tests and private stacks point PCSCLITE_CSOCK_NAME elsewhere.
PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
#: Before this the clock is surely unset (no RTC on a Pi): certificates would look "not yet valid".
MIN_YEAR = 2025
#: Warn this long before the device certificate expires: the ward needs time to sign a new one.
RENEW_BEFORE = dt.timedelta(days=30)
DATABASE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
#: systemd's answer to "is the clock NTP-synchronised?" ("yes"/"no"); chrony and timesyncd both set it.
TIMEDATECTL = ("timedatectl", "show", "-p", "NTPSynchronized", "--value")
#: systemd-timesyncd touches this file at its first synchronisation (the answer without timedatectl).
TIMESYNC_MARKER = Path("/run/systemd/timesync/synchronized")
NO_RTC_HINT = ("the Pi has no RTC: the time comes from NTP at boot; check the network, timedatectl and "
               "systemctl status systemd-timesyncd (the ward firewall must let NTP, UDP 123, out)")
#: Warn when the outbox is this full: at 100 % the terminal refuses new reads.
OUTBOX_WARN_FILL = 0.8
#: Warn when the disk has less than this many times the daemon's reserve (``outbox.min_free_bytes``) left.
STORAGE_WARN_FACTOR = 4
FREE_SPACE_HINT = ("free space on that disk (journalctl --vacuum-size=50M, apt clean); queued results are kept and "
                   "the terminal reads again by itself once there is room")
#: Frames grabbed by the camera check, and how long it may wait for them in all.
CAMERA_FRAMES = 3
CAMERA_TIMEOUT = 5.0
#: Grey levels between the darkest and the brightest sampled pixel below which a frame shows nothing.
FLAT_CONTRAST = 24
#: Sharpness (see :func:`sharpness`) below which the camera check calls the picture blurred. Synthetic card QR photos
#: (edge/sim/qr_frames.py, 720 of them, sharp to 3 px of Gaussian blur): below 800, fewer than 1 frame in 3 decoded
#: (below 300, 1 in 5); sharp ones measure 2,000-90,000. The figure needs detail in view: hold a card's QR up.
BLURRED_BELOW = 800
#: Side in pixels (of the halved frame) of the tiles the sharpness is measured in; the most detailed one counts.
SHARPNESS_TILE = 40
#: Each light is blinked this many times, this long on and off: long enough for the officer to see it.
LED_BLINKS = 2
LED_BLINK_SECONDS = 0.3


@dataclass(frozen=True, slots=True)
class DoctorResult:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    warning: bool = False  # ok for the exit code, but printed with its hint: the terminal works, for now

    def line(self) -> str:
        status = "FAIL" if not self.ok else "warn" if self.warning else "ok  "
        fix = f"  -> {self.hint}" if self.hint and (self.warning or not self.ok) else ""
        return f"[{status}] {self.name:<12} {self.detail}{fix}"


def _ok(name: str, detail: str) -> DoctorResult:
    return DoctorResult(name, True, detail)


def _fail(name: str, detail: str, hint: str) -> DoctorResult:
    return DoctorResult(name, False, detail, hint)


def _warn(name: str, detail: str, hint: str) -> DoctorResult:
    return DoctorResult(name, True, detail, hint, warning=True)


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

    def close(self) -> None: ...


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
        driver.close()
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
    results.extend(_reader_profile(s.name) for s in states)
    return results


def _reader_profile(name: str) -> DoctorResult:
    """The reader's profile and what it implies; a reader that cannot read the CCCD's chip fails."""
    from edge.protocol.readers import profile_for

    profile = profile_for(name)
    detail = f"{name}: {profile.model} ({profile.key}): " + "; ".join(profile.implications())
    if profile.contactless is False:
        return _fail("reader profile", detail, "use a contactless (NFC) reader: see the README's reader table")
    if profile.key == "generic-ccid":
        return _warn("reader profile", detail, "an unknown reader: reads work, extended length is probed")
    return _ok("reader profile", detail)


# --- clock, key, certificate -----------------------------------------------------------------------------------


def ntp_synchronized(command: Sequence[str] = TIMEDATECTL, marker: Path = TIMESYNC_MARKER) -> bool | None:
    """Whether systemd sees the clock NTP-synchronised; None when it cannot tell (no timedatectl, no systemd)."""
    try:
        answer = subprocess.run(list(command), capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        answer = None
    if answer is not None and answer.returncode == 0 and answer.stdout.strip() in {"yes", "no"}:
        return answer.stdout.strip() == "yes"
    return True if marker.exists() else None


def check_clock(now: dt.datetime, synchronized: bool | None = None, device_cert: Path | None = None) -> DoctorResult:
    """A clock that is surely wrong fails (it also makes every certificate look not yet valid); not knowing whether
    NTP has synchronised it only warns: the clock may still be right, restored from the last shutdown."""
    sync = {True: "NTP synchronised", False: "NTP not synchronised", None: "NTP state unknown"}[synchronized]
    shown = f"{now:%Y-%m-%d %H:%M} UTC, {sync}"
    if now.year < MIN_YEAR:
        return _fail("clock", f"system time is {shown}", NO_RTC_HINT)
    cert = _load_certificate(device_cert) if device_cert is not None else None
    if isinstance(cert, x509.Certificate) and now < cert.not_valid_before_utc:
        return _fail("clock", f"{shown}: before the device certificate's start "
                     f"({cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC)", NO_RTC_HINT)
    if synchronized is None:
        return _warn("clock", shown, "cannot ask systemd (no timedatectl?): make sure chrony or systemd-timesyncd "
                     "runs, or certificate checks fail after a power cut")
    if not synchronized:
        return _warn("clock", shown, NO_RTC_HINT)
    return _ok("clock", shown)


def check_trusted_time(state_dir: Path, now: dt.datetime) -> DoctorResult:
    """The last time the daemon trusted (NTP, or a time the office signed), kept in ``clock.json``: a system time
    before it is wrong for certain, whatever NTP says, and the daemon's results then say their clock is not
    synchronised (the office judges them by when it received them)."""
    path = state_dir / CLOCK_FILE
    try:
        saved = parse_trusted_time(path.read_bytes(), what=str(path))
    except FileNotFoundError:
        return _ok("trusted time", f"none saved yet: the floor is the software's date, {BUILD_FLOOR:%Y-%m-%d}")
    except OSError as exc:
        return _warn("trusted time", f"{path}: {exc.strerror or type(exc).__name__}",
                     "the service user must own the state directory")
    except JsonError as exc:
        return _warn("trusted time", str(exc), "the daemon rewrites it at its next trusted time; meanwhile the floor "
                     "is the software's date")  # fmt: skip
    shown = f"last trusted {saved.at:%Y-%m-%d %H:%M} UTC ({saved.source})"
    if now < floor_from(saved):
        return _fail("trusted time", f"system time {now:%Y-%m-%d %H:%M} UTC is before the {shown}", NO_RTC_HINT)
    return _ok("trusted time", shown)


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


def _load_certificate(path: Path) -> x509.Certificate | str:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return f"cannot load {path}: {exc}"


def _open_device_key(key: Path | Pkcs11Uri) -> Signer | DoctorResult:
    """The device key as the daemon finds it (a token through its module, PIN and label), or the failed line. A key
    file is read without the daemon's mode check: the "device key" line reports that. A token is opened read-only:
    a rotation stopped half-way is reported, not finished (that destroys a key), and no PIN is risked."""
    if isinstance(key, Path):
        loaded = _load_key(key)
        if isinstance(loaded, str):
            return _fail("certificate", loaded, "python -m provisioning device init (keeps a good key)")
        return KeySigner(loaded)
    try:
        return Pkcs11Signer.open(key, read_only=True)
    except ConfigError as exc:
        return _fail("certificate", str(exc.args[0]), exc.hint)


def check_certificate(cert_path: Path | None, key: Path | Pkcs11Uri, now: dt.datetime) -> DoctorResult:
    """The device certificate is current, not about to expire, and certifies the device key, with the daemon's own
    start-up check (:func:`~edge.signers.check_certified_key`); ``cert_path`` is ``paths.device_cert``."""
    if cert_path is None:
        return _skipped("certificate", "no paths.device_cert configured")
    cert = _load_certificate(cert_path)
    if isinstance(cert, str):
        return _fail("certificate", cert, "reinstall it: python -m provisioning device install")
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return _fail("certificate", f"not valid before {start:%Y-%m-%d}", "see the clock line: the Pi has no RTC")
    if now >= end:
        return _fail("certificate", f"expired {end:%Y-%m-%d}", "python -m provisioning device rotate, then have "
                     "the ward sign the new CSR")
    signer = _open_device_key(key)
    if isinstance(signer, DoctorResult):
        return signer
    try:
        check_certified_key(signer, cert_path)
    except ConfigError as exc:
        return _fail("certificate", str(exc.args[0]), exc.hint)
    finally:
        signer.close()
    subject = cert.subject.rfc4514_string()
    if end - now < RENEW_BEFORE:
        return _fail("certificate", f"{subject} expires {end:%Y-%m-%d}", "rotate now: python -m provisioning "
                     "device rotate")
    where = "the key" if isinstance(key, Path) else "the key on the token"
    return _ok("certificate", f"{subject}, valid to {end:%Y-%m-%d}, matches {where}")


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


def _size(count: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def check_storage(state_dir: Path, reserve: int) -> DoctorResult:
    """Free space on the state directory's disk against the daemon's reserve (``outbox.min_free_bytes``): below it
    the terminal shows FAULT and refuses reads ("storage full"), as a result it could not store would be lost."""
    if not state_dir.is_dir():
        return _skipped("storage", f"{state_dir} is missing")
    free = free_bytes(state_dir)
    shown = f"{_size(free)} free for {state_dir} (reserve {_size(reserve)})"
    if free < reserve:
        return _fail("storage", f"storage full: {shown}, new reads are refused", FREE_SPACE_HINT)
    if free < STORAGE_WARN_FACTOR * reserve:
        return _warn("storage", f"{shown}: nearly full", FREE_SPACE_HINT)
    return _ok("storage", shown)


def check_databases(state_dir: Path) -> list[DoctorResult]:
    """``PRAGMA integrity_check`` on each SQLite file (outbox, replay guard), opened read-only: nothing is changed."""
    files = sorted(p for p in state_dir.glob("*") if p.suffix in DATABASE_SUFFIXES) if state_dir.is_dir() else []
    if not files:
        return [_ok("outbox", "no database yet (created at the first read)")]
    results = []
    for path in files:
        try:
            with sqlite3.connect(read_only_uri(path), uri=True, timeout=5) as db:
                answer = db.execute("PRAGMA integrity_check").fetchall()
            db.close()
        except sqlite3.Error as exc:
            if is_disk_error(exc):  # the disk's trouble, not the file's: moving it aside would lose it for nothing
                error = storage_error(exc, path)
                results.append(_fail(path.stem, f"{path.name}: {error.args[0]}", error.hint))
                continue
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


def check_outbox(state_dir: Path, limits: OutboxConfig, now: dt.datetime, *, receipts: bool = True) -> DoctorResult:
    """Room left, both queues and the age of the oldest undelivered result, through the daemon's own
    :class:`Outbox`, opened read-only (nothing created or changed, even as root). ``receipts``: the terminal keeps
    results until the office's receipt (``delivery.mode``), else until the broker's PUBACK.

    The age is by the terminal's clock at queueing and now: one queued while the clock was surely unset (before
    :data:`MIN_YEAR`) or ahead of now has no age to report. Old results are not lost (module docstring); the
    broker's ``mqtt.message_expiry`` counts from when the broker took a result, not from when it was queued.

    Opening the oldest entry also proves that ``outbox.key`` still belongs to the database; its payload is dropped
    unread. A missing key is reported, never created: a new key would make every queued result undecryptable.
    """
    path = state_dir / OUTBOX_FILE
    if not path.exists():
        return _ok("outbox queue", "empty (no database yet)")
    lost_hint = ("stop the service, move outbox.db aside, restart (its results are lost: tell the ward which "
                 "seq range)")
    if not key_path(path).exists():
        return _fail("outbox queue", f"{key_path(path)} is missing: queued results cannot be decrypted",
                     f"restore outbox.key from a backup, or {lost_hint}")
    try:
        outbox = Outbox(path, max_count=limits.max_count, max_bytes=limits.max_bytes, read_only=True)
    except StorageError as exc:  # the disk, not the outbox: nothing to move aside
        return _fail("outbox queue", str(exc.args[0]), exc.hint)
    except (EdgeError, sqlite3.Error) as exc:
        return _fail("outbox queue", str(exc), lost_hint)
    try:
        stats = outbox.stats()
        oldest = outbox.pending(limit=1)  # an entry that does not decrypt is skipped: the daemon moves it aside
    except StorageError as exc:
        return _fail("outbox queue", str(exc.args[0]), exc.hint)
    except (EdgeError, sqlite3.Error) as exc:
        return _fail("outbox queue", str(exc), f"is outbox.key this database's? else {lost_hint}")
    finally:
        outbox.close()
    fill = max(stats.count / limits.max_count, stats.bytes / limits.max_bytes)
    shown = (f"{stats.count}/{limits.max_count} results ({stats.unpublished} unpublished, {stats.awaiting} awaiting "
             f"receipt), {stats.bytes}/{limits.max_bytes} bytes ({fill:.0%}), last seq {stats.last_seq}")
    queued = oldest[0].created if oldest else now.timestamp()
    age = now.timestamp() - queued
    if queued < dt.datetime(MIN_YEAR, 1, 1, tzinfo=dt.UTC).timestamp() or age < 0:
        shown += ", oldest queued while the clock was wrong (age unknown)"
        age = 0.0
    elif oldest:
        shown += f", oldest waiting {dt.timedelta(seconds=int(age))}"
    if stats.quarantined:
        shown += f", {stats.quarantined} quarantined"
    link_hint = ("results leave only when the office's receipt names them: see the broker and receipts lines"
                 if receipts else "results leave only when the broker acknowledges them: see the broker line")
    if fill >= 1:
        return _fail("outbox queue", f"full, new reads are refused: {shown}", link_hint)
    concerns = []
    if stats.quarantined:
        concerns.append("quarantined entries did not decrypt (kept aside in outbox.db, their seq reported to the "
                        "office)")
        link_hint += "; support may open them with a backup of outbox.key"
    if age > RESULT_LATE_AFTER:
        concerns.append(f"waiting over {dt.timedelta(seconds=RESULT_LATE_AFTER)}: the office will store them "
                        "flagged late (nothing expires)")
        link_hint += "; bring the terminal onto the ward network, and tell the ward these results are late"
    if stats.most_attempts >= OVERDUE_ATTEMPTS:
        concerns.append(f"a result was published {stats.most_attempts} times without a receipt: the office's gateway "
                        "is not answering (nothing is lost: they are published again until it does)")
        link_hint += "; ask the ward whether its gateway runs and signs receipts (cccd-edge gateway run)"
    if fill >= OUTBOX_WARN_FILL:
        concerns.append("filling up")
    if concerns:
        return _warn("outbox queue", f"{shown}: {', '.join(concerns)}", link_hint)
    return _ok("outbox queue", shown)


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


def check_delivery(config: Config) -> DoctorResult:
    """How a result leaves the terminal: with receipts, the keys they are believed under must be there (without
    one the daemon does not start); PUBACK-only says what it gives up."""
    if config.delivery.mode == "puback":
        return _ok("receipts", "PUBACK-only delivery: a result leaves at the broker's acknowledgement (a ward whose "
                   "office sends no receipts)")
    paths = config.receipt_keys()
    if not paths:
        return _fail("receipts", "delivery.mode is receipt but no key to verify receipts is configured: the daemon "
                     "does not start", "set paths.ward_command_key (python -m provisioning device install), or "
                     'delivery.mode = "puback" for a ward whose office sends no receipts')  # fmt: skip
    for path in paths:
        loaded = check_public_key("receipts", path)
        if not loaded.ok:
            return loaded
    return _ok("receipts", f"kept until the office's receipt, believed under {len(paths)} key(s); published again "
               f"after {config.delivery.receipt_timeout:g} s without one (at most every "
               f"{config.delivery.republish_max_delay:g} s)")


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


# --- camera and LEDs -------------------------------------------------------------------------------------------

CAMERA_HINTS = {
    "picam": "check the ribbon cable (power off first), run libcamera-hello --list-cameras; the service user needs "
             "group video; stop the service first (it holds the camera)",
    "v4l2": "check the USB cable and ls -l /dev/video*; the service user needs group video; stop the service first",
    "replay": "camera.replay_path must name image files the service user can read",
}


def _open_daemon_camera(config: Config) -> FrameSource:
    """The camera exactly as the daemon opens it from ``[camera]``; the import is deferred with the drivers."""
    from edge.drivers.cameras import open_configured_camera

    return open_configured_camera(config.camera)


def sharpness(frame: Frame) -> float:
    """Focus figure of a grey frame: the variance of the Laplacian, on the frame halved (2x2 means: sensor noise
    averaged away), in its most detailed SHARPNESS_TILE-pixel tile (the card, wherever it is; a whole-frame figure
    would fall with the card's share of the frame). Blur spreads edges, so the variance falls: BLURRED_BELOW.
    numpy is imported here only: doctor's other checks, and the daemon importing this module, do without it."""
    import numpy as np

    height, width = frame.height // 2 * 2, frame.width // 2 * 2
    if height < 6 or width < 6:
        return 0.0
    grey = np.frombuffer(frame.pixels, dtype=np.uint8, count=frame.width * frame.height)
    grey = grey.reshape(frame.height, frame.width)[:height, :width].astype(np.float32)
    half = grey.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
    laplacian = (4 * half[1:-1, 1:-1] - half[:-2, 1:-1] - half[2:, 1:-1] - half[1:-1, :-2] - half[1:-1, 2:])
    tile = min(SHARPNESS_TILE, *laplacian.shape)
    rows, cols = laplacian.shape[0] // tile, laplacian.shape[1] // tile
    tiles = laplacian[: rows * tile, : cols * tile].reshape(rows, tile, cols, tile)
    return float(tiles.var(axis=(1, 3)).max())


def _flat(pixels: bytes) -> bool:
    """Hardly any contrast across the frame: a lens cap, no light, or a dead sensor (sensor noise stays below)."""
    sample = pixels[::97]
    return max(sample) - min(sample) < FLAT_CONTRAST


def check_camera(config: Config, *, frames: int = CAMERA_FRAMES, timeout: float = CAMERA_TIMEOUT) -> list[DoctorResult]:
    """Grab a few frames from the configured source within ``timeout`` seconds, then check the QR decoder on the
    last one (the decoder is checked without a frame too: the daemon needs it either way)."""
    camera, last = _grab_frames(config, frames, timeout)
    return [camera, check_qr_decoder(last)]


def _grab_frames(config: Config, frames: int, timeout: float) -> tuple[DoctorResult, Frame | None]:
    source_name = config.camera.source
    hint = CAMERA_HINTS[source_name]
    try:
        source = _open_daemon_camera(config)
    except (EdgeError, ImportError) as exc:
        return _fail("camera", f"{source_name}: {exc}", hint), None
    received: list[Frame] = []
    deadline = time.monotonic() + timeout
    try:
        while len(received) < frames and (left := deadline - time.monotonic()) > 0:
            frame = source.read(left)
            if frame is not None:
                received.append(frame)
    except EdgeError as exc:
        return _fail("camera", f"{source_name}: {exc}", hint), None
    finally:
        source.close()
    if not received:
        return _fail("camera", f"{source_name}: no frame within {timeout:g} s", hint), None
    last = received[-1]
    shown = f"{source_name}: {len(received)} frames, {last.width}x{last.height}"
    if len(received) < frames:
        return _warn("camera", f"{shown}: {frames} expected within {timeout:g} s", f"{hint}; is the CPU overloaded "
                     "(top)?"), last
    if _flat(last.pixels):
        return _warn("camera", f"{shown}, the picture is flat", "take the lens cap off; is the counter lit?"), last
    focus = max(sharpness(frame) for frame in received)  # the best frame: autofocus may still be moving
    if focus < BLURRED_BELOW:
        return _warn("camera", f"{shown}, blurred: sharpness {focus:.0f} (below {BLURRED_BELOW})",
                     "hold a card's QR where citizens hold it and run doctor again; if it stays blurred, clean the "
                     "lens and set [camera] af_mode = 'manual' with lens_position (Pi camera) or v4l2_focus (USB "
                     "camera)"), last  # fmt: skip
    return _ok("camera", f"{shown}, sharpness {focus:.0f}"), last


def check_qr_decoder(frame: Frame | None) -> DoctorResult:
    """The daemon's default decoder loads (zxing-cpp is a compiled wheel) and runs on a real frame. Only the number
    of QR codes found is shown: a card's QR is personal data."""
    from edge.drivers.qrdecoders import DEFAULT_DECODER, make_decoder

    try:
        decoder = make_decoder()
    except ImportError as exc:
        return _fail("qr decoder", f"{DEFAULT_DECODER} not available ({exc})",
                     "reinstall: /opt/cccd-edge/bin/pip install cccd-edge (it brings zxing-cpp)")
    try:
        in_view = f"{len(decoder.decode(frame))} QR code(s) in view" if frame is not None else "no frame to try"
    finally:
        decoder.close()
    return _ok("qr decoder", f"{decoder.name} ready, {in_view}")


def check_leds(config: IndicatorConfig, *, pin_factory: Any = None,
               blink_seconds: float = LED_BLINK_SECONDS) -> DoctorResult:
    """Blink each light (and beep once) through the daemon's own indicator driver, so the officer at the counter
    sees which work. ``pin_factory`` is a gpiozero pin factory (typed Any: only drivers import gpiozero); None is
    gpiozero's own choice, as in the daemon (``GPIOZERO_PIN_FACTORY``, else the board's)."""
    from edge.drivers.leds import AMBER, GREEN, RED, Indicators

    if not config.gpio:
        return _skipped("leds", "no GPIO indicators (indicators.gpio = false)")
    try:
        indicators = Indicators(config, pin_factory=pin_factory)
    except EdgeError as exc:
        return _fail("leds", str(exc), "stop the service first (it holds the pins); check [indicators] pins in "
                     "config.toml; the service user needs group gpio")
    timing = {"on_time": blink_seconds, "off_time": blink_seconds, "background": False}
    try:
        if indicators.rgb is not None:
            for colour in (GREEN, AMBER, RED):
                indicators.rgb.blink(on_color=colour, n=LED_BLINKS, **timing)
            lights = [f"rgb {'/'.join(map(str, config.rgb or ()))}"]
            factory = indicators.rgb.pin_factory
        else:
            for led in indicators.leds.values():
                led.blink(n=LED_BLINKS, **timing)
            lights = [f"{name} {led.pin}" for name, led in indicators.leds.items()]
            factory = indicators.leds["green"].pin_factory
        if indicators.buzzer is not None:
            indicators.buzzer.beep(n=1, **timing)
            lights.append(f"buzzer {indicators.buzzer.pin}")
    finally:
        indicators.close()
    polarity = "active high" if config.active_high else "active low"
    return _ok("leds", f"blinked {', '.join(lights)} ({polarity}, {type(factory).__name__}): did each light?")


# --- composition -----------------------------------------------------------------------------------------------


def run_checks(
    config: Config | None,
    *,
    now: dt.datetime | None = None,
    driver_factory: Callable[[], ReaderLister] = default_reader_driver,
    broker_timeout: float = 5.0,
    pcscd_socket: str | None = None,
    devices: bool = True,
    pin_factory: Any = None,
    led_blink_seconds: float = LED_BLINK_SECONDS,
) -> list[DoctorResult]:
    """All checks; those that need the configuration are left out when it could not be loaded.

    ``devices`` False leaves the camera and LEDs alone: a running daemon holds them, and opening them would fail.
    """
    now = now or dt.datetime.now(dt.UTC)
    device_cert = config.paths.device_cert if config else None
    results = [check_clock(now, ntp_synchronized(), device_cert),
               check_pcscd(pcscd_socket)]
    results.extend(check_readers(driver_factory, config.reader_name if config else None))
    if config is None:
        return results
    paths, mqtt = config.paths, config.mqtt
    key_file = paths.device_key if isinstance(paths.device_key, Path) else None  # None: on a PKCS#11 token
    client_cert, client_key = config.tls_client_identity() or (None, None)
    checks: list[tuple[str, Callable[[], DoctorResult | list[DoctorResult]]]] = [
        ("state dir", lambda: check_state_dir(paths.state_dir)),
        ("trusted time", lambda: check_trusted_time(paths.state_dir, now)),
        ("storage", lambda: check_storage(paths.state_dir, config.outbox.min_free_bytes)),
        ("device key", lambda: check_private_file("device key", key_file) if key_file
         else _ok("device key", f"on a PKCS#11 token: {paths.device_key}")),
        ("certificate", lambda: check_certificate(device_cert, paths.device_key, now)),
        ("command key", lambda: check_public_key("command key", paths.ward_command_key)),
        ("trust store", lambda: check_trust_store(paths.trust_store)),
        ("outbox", lambda: check_databases(paths.state_dir)),
        ("outbox queue", lambda: check_outbox(paths.state_dir, config.outbox, now,
                                              receipts=config.delivery.mode == "receipt")),
        ("receipts", lambda: check_delivery(config)),
        ("broker", lambda: check_broker(mqtt.host, mqtt.port, tls=mqtt.tls, ca=paths.broker_ca,
                                        cert=client_cert, key=client_key,
                                        timeout=broker_timeout)),
    ]
    if devices:
        checks += [
            ("camera", lambda: check_camera(config)),
            ("leds", lambda: check_leds(config.indicators, pin_factory=pin_factory, blink_seconds=led_blink_seconds)),
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
    if not devices:
        results += [_skipped("camera", "--no-devices"), _skipped("leds", "--no-devices")]
    return results
