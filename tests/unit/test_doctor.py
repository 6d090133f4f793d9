"""`cccd-edge doctor` checks on temporary terminals: real keys, real TLS handshakes, real SQLite files, a replay
camera through the daemon's camera factory, gpiozero's mock pins, and real scripts standing in for timedatectl."""

from __future__ import annotations

import datetime as dt
import os
import random
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from gpiozero import LED
from gpiozero.pins.mock import MockFactory, MockPWMPin
from PIL import Image, ImageFilter

from edge.commands.doctor import report
from edge.config import Config, IndicatorConfig, OutboxConfig, load_config, parse_config
from edge.daemon import doctor
from edge.daemon.clock import CLOCK_FILE
from edge.daemon.doctor import DoctorResult, ReaderLister
from edge.daemon.outbox import Outbox
from edge.drivers.base import CardPresence, Frame, ReaderState
from edge.errors import NoReaderError
from edge.protocol.cccd_qr import encode_cccd_qr
from edge.protocol.clock import TrustedTime
from edge.sim.card_qr import write_qr_frame
from edge.sim.qr_frames import HEIGHT, WIDTH, make_person, render
from provisioning import device, ward_ca
from provisioning.pki import TerminalIdentity, new_private_key
from tests.fixtures.mqtt import BrokerPki, MosquittoBroker, free_port, make_pki

NOW = dt.datetime.now(dt.UTC)
StartServer = Callable[[Path], int]


class ListedReaders:
    """A reader driver that reports fixed states: what pcscd would say, without pcscd."""

    def __init__(self, states: Sequence[ReaderState] | Exception) -> None:
        self.states = states
        self.closed = False

    def readers(self) -> Sequence[ReaderState]:
        if isinstance(self.states, Exception):
            raise self.states
        return self.states

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def terminal(tmp_path: Path) -> tuple[Path, Path]:
    """A provisioned terminal's key and certificate (through the real provisioning code)."""
    ca, _ = ward_ca.init_ward_ca(tmp_path / "ca", "26734")
    init = device.init_device(tmp_path / "state", TerminalIdentity("t-01", "26734"))
    cert = ward_ca.sign_csr(ca, ward_ca.load_csr(init.csr), days=90)
    cert_path = tmp_path / "device.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return init.key, cert_path


def by_name(results: Sequence[DoctorResult]) -> dict[str, DoctorResult]:
    return {r.name: r for r in results}


def test_clock_before_2025_fails() -> None:
    result = doctor.check_clock(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), synchronized=False)
    assert not result.ok
    assert "no RTC" in result.hint
    assert "NTP not synchronised" in result.detail
    good = doctor.check_clock(NOW, synchronized=True)
    assert good.ok
    assert not good.warning
    assert good.detail.endswith("UTC, NTP synchronised")


def test_clock_before_the_certificate_start_fails(terminal: tuple[Path, Path]) -> None:
    """A Pi that booted without network may sit in a plausible year but before its certificate was issued."""
    _, cert = terminal
    result = doctor.check_clock(NOW - dt.timedelta(days=2), synchronized=True, device_cert=cert)
    assert not result.ok
    assert "device certificate's start" in result.detail
    assert "no RTC" in result.hint
    assert doctor.check_clock(NOW, synchronized=True, device_cert=cert).ok
    assert doctor.check_clock(NOW, synchronized=True, device_cert=cert.with_name("missing.crt")).ok  # its own line


def test_clock_and_key_lines_read_the_configured_device_cert(terminal: tuple[Path, Path], tmp_path: Path) -> None:
    """paths.device_cert is the certificate for the key, file or token alike: both lines judge by it."""
    key, cert = terminal
    config = parse_config({
        "terminal_id": "T-01",
        "ward_code": "26734",
        "paths": {"state_dir": str(tmp_path / "state"), "device_key": str(key), "device_cert": str(cert)},
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "tls": False},
    })
    named = by_name(doctor.run_checks(config, now=NOW - dt.timedelta(days=2), driver_factory=lambda: ListedReaders([]),
                                      devices=False))
    assert "device certificate's start" in named["clock"].detail
    assert "not valid before" in named["certificate"].detail


def test_unsynchronised_or_unknown_clock_warns() -> None:
    unknown, unsynced = doctor.check_clock(NOW, None), doctor.check_clock(NOW, False)
    assert unknown.ok
    assert unknown.warning
    assert "timedatectl" in unknown.hint
    assert unsynced.ok
    assert unsynced.warning
    assert "NTP not synchronised" in unsynced.detail
    assert unsynced.line().startswith("[warn] clock")
    assert unsynced.line().endswith(unsynced.hint)


def test_a_system_time_before_the_last_trusted_time_fails(tmp_path: Path) -> None:
    """The daemon saves the last time it trusted; a clock behind it is wrong for certain, whatever NTP says."""
    fresh = doctor.check_trusted_time(tmp_path, NOW)
    assert (fresh.ok, fresh.warning) == (True, False)
    assert "none saved yet" in fresh.detail
    saved = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
    (tmp_path / CLOCK_FILE).write_bytes(TrustedTime(saved, "office").to_json())
    behind = doctor.check_trusted_time(tmp_path, saved - dt.timedelta(days=1))
    assert not behind.ok
    assert "before the last trusted 2027-03-01 12:00 UTC (office)" in behind.detail
    assert "no RTC" in behind.hint
    assert doctor.check_trusted_time(tmp_path, saved + dt.timedelta(minutes=1)).ok
    (tmp_path / CLOCK_FILE).write_bytes(b"{not json")
    damaged = doctor.check_trusted_time(tmp_path, NOW)
    assert (damaged.ok, damaged.warning) == (True, True)


def _script(path: Path, body: str) -> list[str]:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return [str(path)]


def test_ntp_state_from_timedatectl_or_timesyncd_marker(tmp_path: Path) -> None:
    marker = tmp_path / "synchronized"
    assert doctor.ntp_synchronized(_script(tmp_path / "yes", "echo yes"), marker) is True
    assert doctor.ntp_synchronized(_script(tmp_path / "no", "echo no"), marker) is False
    no_systemd = _script(tmp_path / "down", "echo 'System has not been booted with systemd' >&2; exit 1")
    assert doctor.ntp_synchronized(no_systemd, marker) is None
    assert doctor.ntp_synchronized([str(tmp_path / "no-timedatectl")], marker) is None
    marker.touch()  # timesyncd's flag file answers when timedatectl cannot
    assert doctor.ntp_synchronized(no_systemd, marker) is True


def test_private_file_must_be_0600(tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert not doctor.check_private_file("device key", key).ok
    key.write_bytes(b"x")
    key.chmod(0o640)
    result = doctor.check_private_file("device key", key)
    assert not result.ok
    assert "0640" in result.detail
    assert "chmod 600" in result.hint
    key.chmod(0o600)
    assert doctor.check_private_file("device key", key).ok


def test_certificate_matches_key_and_dates(terminal: tuple[Path, Path], tmp_path: Path) -> None:
    key, cert = terminal
    assert doctor.check_certificate(cert, key, NOW).ok
    assert "expires" in doctor.check_certificate(cert, key, NOW + dt.timedelta(days=70)).detail
    assert "expired" in doctor.check_certificate(cert, key, NOW + dt.timedelta(days=91)).detail
    other = tmp_path / "other.key"
    other.write_bytes(new_private_key().private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    mismatch = doctor.check_certificate(cert, other, NOW)
    assert not mismatch.ok
    assert "not for the key" in mismatch.detail
    assert doctor.check_certificate(None, key, NOW).detail.startswith("skipped")


@pytest.fixture
def pki(tmp_path: Path) -> BrokerPki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_server(pki: BrokerPki) -> Iterator[Callable[[Path], int]]:
    """Start TLS listeners that, like the ward broker, require a client certificate from ``client_ca``."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(client_ca: Path) -> int:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        listener = socket.create_server(("127.0.0.1", 0))

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return  # listener closed: the test is over
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)  # wait for the client to hang up, as a broker waits for CONNECT
                except (OSError, ssl.SSLError):
                    conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        listeners.append(listener)
        threads.append(thread)
        port: int = listener.getsockname()[1]
        return port

    yield start
    for listener in listeners:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
    for thread in threads:
        thread.join(timeout=5)


def test_broker_tls_handshake_with_client_certificate(tls_server: StartServer, pki: BrokerPki) -> None:
    port = tls_server(pki.ca_cert)
    result = doctor.check_broker("127.0.0.1", port, tls=True, ca=pki.ca_cert, cert=pki.client_cert,
                                 key=pki.client_key)
    assert result.ok, result
    assert "TLS" in result.detail


def test_broker_line_presents_the_client_certificate_only_when_the_daemon_would(
    tls_server: StartServer, pki: BrokerPki, tmp_path: Path
) -> None:
    """mqtt.client_certificate = false (a token key's setting) keeps device_cert for the key check only: doctor then
    shakes hands without it, as the daemon does, and a broker that demands one refuses."""
    port = tls_server(pki.ca_cert)

    def broker_line(client_certificate: bool) -> DoctorResult:
        config = parse_config({
            "terminal_id": "T-01",
            "ward_code": "26734",
            "paths": {"state_dir": str(tmp_path), "device_key": str(pki.client_key),
                      "device_cert": str(pki.client_cert), "broker_ca": str(pki.ca_cert)},
            "mqtt": {"host": "127.0.0.1", "port": port, "client_certificate": client_certificate},
        })
        return by_name(doctor.run_checks(config, driver_factory=lambda: ListedReaders([]), devices=False))["broker"]

    mutual = broker_line(True)
    assert mutual.ok, mutual
    server_authenticated = broker_line(False)
    assert not server_authenticated.ok
    assert "cannot load TLS files" not in server_authenticated.detail  # no certificate without its key


def test_broker_with_wrong_ca_is_refused(tls_server: StartServer, pki: BrokerPki) -> None:
    port = tls_server(pki.ca_cert)
    result = doctor.check_broker("127.0.0.1", port, tls=True, ca=pki.other_ca_cert, cert=pki.client_cert,
                                 key=pki.client_key)
    assert not result.ok
    assert "broker_ca" in result.hint


def test_broker_refusing_our_certificate_is_reported(
    tls_server: StartServer, pki: BrokerPki, terminal: tuple[Path, Path]
) -> None:
    port = tls_server(pki.ca_cert)
    key, cert = terminal  # signed by another ward's CA: the broker must refuse it
    result = doctor.check_broker("127.0.0.1", port, tls=True, ca=pki.ca_cert, cert=cert, key=key)
    assert not result.ok
    assert "refused" in result.detail or "handshake failed" in result.detail


def test_unreachable_broker() -> None:
    result = doctor.check_broker("127.0.0.1", free_port(), tls=True, timeout=2)
    assert not result.ok
    assert "cannot reach" in result.detail


def test_databases_integrity(tmp_path: Path) -> None:
    import sqlite3

    assert doctor.check_databases(tmp_path)[0].ok
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    (tmp_path / "replay.sqlite").write_bytes(b"this is not a database" * 100)
    results = by_name(doctor.check_databases(tmp_path))
    assert results["outbox"].ok
    assert not results["replay"].ok


def test_outbox_key_mode_is_checked(tmp_path: Path) -> None:
    (tmp_path / "outbox.sqlite").touch()
    key = tmp_path / "outbox.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    assert not by_name(doctor.check_databases(tmp_path))["outbox key"].ok


LIMITS = OutboxConfig(max_count=10, max_bytes=4096)
DAY = 24 * 3600


def _queue(state: Path, count: int, *, age: float = 60.0, size: int = 19, limits: OutboxConfig = LIMITS) -> None:
    """Results waiting in the daemon's own outbox, enqueued ``age`` seconds before NOW."""
    outbox = Outbox(state / doctor.OUTBOX_FILE, max_count=limits.max_count, max_bytes=limits.max_bytes)
    try:
        for _ in range(count):
            outbox.enqueue(b"r" * size, now=NOW.timestamp() - age)
    finally:
        outbox.close()


def test_outbox_queue_depth_against_its_limits(tmp_path: Path) -> None:
    assert doctor.check_outbox(tmp_path, LIMITS, NOW).detail.startswith("empty")
    assert not list(tmp_path.iterdir()), "doctor must not create the outbox (nor a key for it)"
    _queue(tmp_path, 7)
    calm = doctor.check_outbox(tmp_path, LIMITS, NOW)
    assert calm.ok, calm
    assert not calm.warning, calm
    assert "7/10 results" in calm.detail
    assert "last seq 7" in calm.detail
    assert "oldest waiting 0:01:00" in calm.detail
    _queue(tmp_path, 1)
    filling = doctor.check_outbox(tmp_path, LIMITS, NOW)
    assert filling.warning
    assert "80%" in filling.detail
    assert "broker" in filling.hint
    _queue(tmp_path, 2)
    full = doctor.check_outbox(tmp_path, LIMITS, NOW)
    assert not full.ok
    assert "new reads are refused" in full.detail


def test_outbox_bytes_count_too(tmp_path: Path) -> None:
    limits = OutboxConfig(max_count=10_000, max_bytes=1024)
    _queue(tmp_path, 1, size=900, limits=limits)
    result = doctor.check_outbox(tmp_path, limits, NOW)
    assert result.warning
    assert "900/1024 bytes (88%)" in result.detail


@pytest.mark.parametrize(("age", "warned"), [(12 * 3600, False), (2 * DAY, True), (8 * DAY, True), (61 * DAY, True),
                                             (400 * DAY, True)])  # fmt: skip
def test_an_old_outbox_result_warns_that_it_will_be_late_never_that_it_is_lost(tmp_path: Path, age: int,
                                                                               warned: bool) -> None:  # fmt: skip
    """The rule: a result never expires (the office stores it flagged late), so age is a warning for the officer
    from a day on. Before, the warning came at 7 days and said the office would drop the result, which it did not
    at 8 days, while at 60 the token's exp did drop it."""
    _queue(tmp_path, 1, age=age)
    result = doctor.check_outbox(tmp_path, LIMITS, NOW)
    assert result.ok
    assert result.warning is warned
    assert f"oldest waiting {dt.timedelta(seconds=age)}" in result.detail
    if warned:
        assert "flagged late (nothing expires)" in result.detail
        assert "ward network" in result.hint
    assert "drop" not in result.detail


@pytest.mark.parametrize("queued", [dt.datetime(1970, 1, 1, 1, tzinfo=dt.UTC), NOW + dt.timedelta(days=365)])
def test_a_result_queued_while_the_clock_was_wrong_has_no_age(tmp_path: Path, queued: dt.datetime) -> None:
    _queue(tmp_path, 1, age=(NOW - queued).total_seconds())
    result = doctor.check_outbox(tmp_path, LIMITS, NOW)
    assert (result.ok, result.warning) == (True, False)
    assert "queued while the clock was wrong (age unknown)" in result.detail


def test_outbox_without_its_key_fails(tmp_path: Path) -> None:
    _queue(tmp_path, 1)
    key = tmp_path / "outbox.key"
    key.write_bytes(os.urandom(32))  # another key: the queued result no longer decrypts
    wrong = doctor.check_outbox(tmp_path, LIMITS, NOW)
    assert not wrong.ok
    assert "does not decrypt" in wrong.detail
    assert "outbox.key" in wrong.hint
    key.unlink()
    missing = doctor.check_outbox(tmp_path, LIMITS, NOW)
    assert not missing.ok
    assert "missing" in missing.detail
    assert not key.exists(), "doctor must not make a new key: it would orphan every queued result"


def test_free_space_against_the_daemons_reserve(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    assert doctor.check_storage(tmp_path, 0).ok
    assert "free for" in doctor.check_storage(tmp_path, 0).detail
    nearly = doctor.check_storage(tmp_path, free // 2)
    assert nearly.warning
    assert "nearly full" in nearly.detail
    full = doctor.check_storage(tmp_path, free * 2)
    assert not full.ok
    assert "storage full" in full.detail
    assert "journalctl" in full.hint


def test_quarantined_entries_are_shown_and_a_bad_oldest_entry_does_not_blame_the_key(tmp_path: Path) -> None:
    import sqlite3

    _queue(tmp_path, 3)
    with sqlite3.connect(tmp_path / doctor.OUTBOX_FILE) as raw:  # the oldest entry damaged on disk
        raw.execute("UPDATE outbox SET sealed = zeroblob(length(sealed)) WHERE seq = 1")
    raw.close()
    before = doctor.check_outbox(tmp_path, LIMITS, NOW)
    assert before.ok, before  # the key is this database's: the daemon will move the entry aside
    outbox = Outbox(tmp_path / doctor.OUTBOX_FILE, max_count=LIMITS.max_count, max_bytes=LIMITS.max_bytes)
    assert [entry.seq for entry in outbox.pending()] == [2, 3]
    outbox.close()
    after = doctor.check_outbox(tmp_path, LIMITS, NOW)
    assert after.warning
    assert "2/10 results" in after.detail
    assert "1 quarantined" in after.detail
    assert "backup of outbox.key" in after.hint


def _config(**sections: object) -> Config:
    return parse_config({"terminal_id": "T-01", "ward_code": "26734", **sections})


def _replay(folder: Path) -> Config:
    return _config(camera={"source": "replay", "replay_path": str(folder), "fps": 120})


def test_camera_frames_through_the_daemons_factory(tmp_path: Path) -> None:
    write_qr_frame("cccd-edge doctor", tmp_path / "frames" / "qr.png")
    camera, decoder = doctor.check_camera(_replay(tmp_path / "frames"))
    assert camera.ok, camera
    assert not camera.warning, camera
    assert camera.detail.startswith(f"replay: {doctor.CAMERA_FRAMES} frames, 640x480, sharpness ")
    assert decoder == DoctorResult("qr decoder", True, "zxing ready, 1 QR code(s) in view")


def _card_photo(path: Path, blur: float = 0.0) -> Path:
    """A synthetic photograph of a card's QR held at an angle, optionally out of focus (Gaussian blur, px)."""
    rng = random.Random(7)
    pixels, _ = render(encode_cccd_qr(make_person(rng, 7)), rng, ("perspective", "rotation"))
    image = Image.frombytes("L", (WIDTH, HEIGHT), pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    (image.filter(ImageFilter.GaussianBlur(blur)) if blur else image).save(path)
    return path


def test_sharpness_tells_a_focused_card_from_a_blurred_one(tmp_path: Path) -> None:
    sharp, blurred = _card_photo(tmp_path / "sharp" / "card.png"), _card_photo(tmp_path / "blurred" / "card.png", 3)
    figures = [doctor.sharpness(Frame(WIDTH, HEIGHT, Image.open(path).tobytes(), 0.0)) for path in (sharp, blurred)]
    assert figures[0] > 5 * doctor.BLURRED_BELOW > 5 * figures[1]
    camera, _ = doctor.check_camera(_replay(sharp.parent))
    assert (camera.ok, camera.warning) == (True, False)
    assert camera.detail.endswith(f"sharpness {figures[0]:.0f}")
    camera, _ = doctor.check_camera(_replay(blurred.parent))
    assert (camera.ok, camera.warning) == (True, True)
    assert f"blurred: sharpness {figures[1]:.0f} (below {doctor.BLURRED_BELOW})" in camera.detail
    assert "lens_position" in camera.hint
    assert "v4l2_focus" in camera.hint


def test_sharpness_of_frames_too_small_or_without_detail() -> None:
    assert doctor.sharpness(Frame(4, 4, bytes(16), 0.0)) == 0.0
    assert doctor.sharpness(Frame(640, 480, bytes([128]) * 640 * 480, 0.0)) == 0.0
    small = Frame(30, 20, bytes((x * 37 + y * 11) % 256 for y in range(20) for x in range(30)), 0.0)
    assert doctor.sharpness(small) > 0


def test_flat_camera_picture_warns(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    Image.new("L", (640, 480), 3).save(tmp_path / "frames" / "cap-on.png")
    camera, decoder = doctor.check_camera(_replay(tmp_path / "frames"))
    assert camera.warning
    assert "flat" in camera.detail
    assert "lens cap" in camera.hint
    assert decoder.detail.endswith("0 QR code(s) in view")


def test_camera_that_cannot_open_fails_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    camera, decoder = doctor.check_camera(_replay(tmp_path / "frames"))
    assert not camera.ok
    assert "no image files" in camera.detail
    assert camera.hint == doctor.CAMERA_HINTS["replay"]
    assert decoder.ok
    assert decoder.detail.endswith("no frame to try")
    (tmp_path / "frames" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n torn off")
    assert "cannot read image torn.png" in doctor.check_camera(_replay(tmp_path / "frames"))[0].detail
    picam = doctor.check_camera(_config())[0]  # no Pi camera (nor picamera2) on a build machine
    assert not picam.ok
    assert "libcamera-hello" in picam.hint
    assert "group video" in picam.hint


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.reset()
    factory.close()


def _times_lit(factory: MockFactory, pin: int) -> int:
    return sum(1 for change in factory.pin(pin).states if change.state)


def test_leds_blink_each_light_and_beep_once(pins: MockFactory) -> None:
    config = IndicatorConfig(green=17, amber=27, red=22, buzzer=18)
    result = doctor.check_leds(config, pin_factory=pins, blink_seconds=0.001)
    assert result.ok, result
    assert "green GPIO17, amber GPIO27, red GPIO22, buzzer GPIO18 (active high, MockFactory)" in result.detail
    assert [_times_lit(pins, pin) for pin in (17, 27, 22, 18)] == [doctor.LED_BLINKS] * 3 + [1]
    assert not any(pins.pin(pin).state for pin in (17, 27, 22, 18)), "every light is left off"


def test_rgb_led_shows_each_colour(pins: MockFactory) -> None:
    result = doctor.check_leds(IndicatorConfig(rgb=(5, 6, 13)), pin_factory=pins, blink_seconds=0.001)
    assert result.ok
    assert "rgb 5/6/13" in result.detail
    # green, amber (red + half green) and red, each blinked: blue never lights
    assert [_times_lit(pins, pin) for pin in (5, 6, 13)] == [2 * doctor.LED_BLINKS, 2 * doctor.LED_BLINKS, 0]


def test_leds_on_pins_held_elsewhere_fail(pins: MockFactory) -> None:
    held = LED(27, pin_factory=pins)  # as the running daemon holds them
    try:
        result = doctor.check_leds(IndicatorConfig(), pin_factory=pins, blink_seconds=0.001)
    finally:
        held.close()
    assert not result.ok
    assert "cannot open indicator pins" in result.detail
    assert "stop the service first" in result.hint
    assert _times_lit(pins, 17) == 0, "nothing blinks when a pin is missing"


def test_exit_code_fails_only_on_a_failed_check(capsys: pytest.CaptureFixture[str]) -> None:
    fine = DoctorResult("clock", True, "2026-01-01 UTC, NTP synchronised")
    late = DoctorResult("outbox queue", True, "oldest waiting 8 days", "see the broker line", warning=True)
    broken = DoctorResult("camera", False, "picam: no camera", "check the ribbon cable")
    assert report([fine]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "all 1 checks ok"
    assert report([fine, late]) == 0
    assert capsys.readouterr().out.splitlines() == [fine.line(), late.line(), "1 ok, 1 warned, 0 failed"]
    assert report([fine, late, broken]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "1 ok, 1 warned, 1 failed"


def test_trust_store(tmp_path: Path, terminal: tuple[Path, Path]) -> None:
    store = tmp_path / "trust"
    assert not doctor.check_trust_store(store).ok
    store.mkdir()
    assert "no CSCA" in doctor.check_trust_store(store).detail
    (store / "terminal.pem").write_bytes(terminal[1].read_bytes())  # a certificate, but no CSCA
    assert "no CSCA" in doctor.check_trust_store(store).detail
    csca, _ = ward_ca.init_ward_ca(tmp_path / "csca", "VN")
    (store / "csca.pem").write_bytes(csca.cert.public_bytes(serialization.Encoding.PEM))
    assert doctor.check_trust_store(store).ok
    (store / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n")
    assert "broken.pem" in doctor.check_trust_store(store).detail


def test_pcscd_socket(tmp_path: Path) -> None:
    path = tmp_path / "pcscd.comm"
    assert not doctor.check_pcscd(str(path)).ok
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        assert doctor.check_pcscd(str(path)).ok


def test_readers_and_card_atr() -> None:
    atr = bytes.fromhex("3B8880010000000000000000")
    driver = ListedReaders([ReaderState("ACS ACR1252 00 00", CardPresence.PRESENT, atr),
                            ReaderState("ACS ACR1252 00 01", CardPresence.ABSENT)])
    results = doctor.check_readers(lambda: driver)
    assert results[0].ok
    assert "2:" in results[0].detail
    assert "3B 88 80 01" in results[1].detail
    assert driver.closed
    assert not doctor.check_readers(lambda: ListedReaders([]))[0].ok
    assert not doctor.check_readers(lambda: ListedReaders(NoReaderError("pcscd gone")))[0].ok
    missing = by_name(doctor.check_readers(lambda: driver, reader_name="Identiv"))
    assert not missing["reader"].ok
    profiles = [r for r in results if r.name == "reader profile"]
    assert len(profiles) == 2
    assert "no extended length: DG2 (15 KB) takes 68 APDUs" in profiles[0].detail  # ACS ACR1252U
    assert profiles[0].ok


def test_a_contact_only_reader_fails_and_an_unknown_one_warns() -> None:
    driver = ListedReaders([ReaderState("Feitian bR301 00 00", CardPresence.ABSENT),
                            ReaderState("Some Reader 00 00", CardPresence.ABSENT)])  # fmt: skip
    contact, unknown = [r for r in doctor.check_readers(lambda: driver) if r.name == "reader profile"]
    assert not contact.ok
    assert "contact slot only" in contact.detail
    assert unknown.ok
    assert unknown.warning


def test_missing_driver_is_a_failed_check_not_a_crash() -> None:
    def factory() -> ReaderLister:
        raise ImportError("No module named 'smartcard'")

    result = doctor.check_readers(factory)[0]
    assert not result.ok
    assert "smartcard" in result.detail


def test_result_line_carries_the_hint() -> None:
    line = DoctorResult("clock", False, "1970", "set the time").line()
    assert line.startswith("[FAIL] clock")
    assert line.endswith("-> set the time")


def test_provisioned_terminal_passes_every_configured_check(
    tmp_path: Path, tls_server: StartServer, pki: BrokerPki, pins: MockFactory
) -> None:
    """End to end: provisioning's output is exactly what doctor (and the daemon's config loader) accept."""
    ward, _ = ward_ca.init_ward_ca(tmp_path / "ward", "26734")
    port = tls_server(tmp_path / "ward" / "ward-ca.crt")  # the broker trusts the ward CA for its terminals
    state, etc = tmp_path / "state", tmp_path / "etc"
    init = device.init_device(state, TerminalIdentity("T-01", "26734"))
    signed = tmp_path / "t.crt"
    signed.write_bytes(ward_ca.sign_csr(ward, ward_ca.load_csr(init.csr)).public_bytes(serialization.Encoding.PEM))
    command = tmp_path / "command.pub"
    command.write_bytes(new_private_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    frames = write_qr_frame("cccd-edge doctor", tmp_path / "frames" / "qr.png").parent
    etc.mkdir()  # the operator's [camera] section, which provisioning keeps
    (etc / "config.toml").write_text(f'[camera]\nsource = "replay"\nreplay_path = "{frames}"\nfps = 120\n')
    device.install_device(state, etc, cert=signed, broker_ca=pki.ca_cert, ward_command_key=command,
                          trust=[pki.other_ca_cert], mqtt_host="127.0.0.1", mqtt_port=port)
    config = load_config(etc / "config.toml")
    _queue(state, 1, limits=config.outbox)
    pcscd = tmp_path / "pcscd.comm"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(pcscd))
        listener.listen()
        results = doctor.run_checks(config, pcscd_socket=str(pcscd), pin_factory=pins, led_blink_seconds=0.001,
                                    driver_factory=lambda: ListedReaders(
                                        [ReaderState("Virtual PCD 00 00", CardPresence.ABSENT)]))
    failed = [r.line() for r in results if not r.ok]
    assert not failed, failed
    named = by_name(results)
    assert {"device key", "certificate", "broker", "trust store", "outbox queue", "camera", "qr decoder",
            "leds"} <= set(named)
    assert not any(named[name].detail.startswith("skipped") for name in ("camera", "leds"))
    assert "1/10000 results" in named["outbox queue"].detail
    assert report(results) == 0


def test_an_unreadable_path_is_a_failed_check_not_a_crash(tmp_path: Path) -> None:
    config = parse_config({
        "terminal_id": "T-01",
        "ward_code": "26734",
        "paths": {"state_dir": str(tmp_path), "device_key": "/k" * 3000, "trust_store": str(tmp_path / "trust")},
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "tls": False},
    })
    results = doctor.run_checks(config, driver_factory=lambda: ListedReaders([]), devices=False)
    named = by_name(results)
    assert not named["device key"].ok  # ENAMETOOLONG from stat(), reported instead of raised
    assert not named["broker"].ok
    assert named["camera"].detail.startswith("skipped")
    assert report(results) == 1


def test_command_prints_one_line_per_check_and_fails_without_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from edge.commands import doctor as command

    # PCSCLITE_CSOCK_NAME stays the session's: libpcsclite fixes its socket path at the first PC/SC context of the
    # process, so pointing it elsewhere here would cut every later stack test off from the private pcscd.
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["doctor", "--config", str(tmp_path / "missing.toml")])
    assert args.func(args) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[FAIL] config")
    assert "device install" in lines[0]
    assert lines[-1].endswith("failed")


@pytest.mark.stack
def test_doctor_against_a_real_mutual_tls_mosquitto(
    mqtt_broker_factory: Callable[..., MosquittoBroker], terminal: tuple[Path, Path]
) -> None:
    """mosquitto with require_certificate: our handshake passes with the ward's client certificate and is reported
    as refused with a certificate from another CA (TLS 1.3 tells the client only after its handshake)."""
    broker = mqtt_broker_factory(tls=True)
    pki = broker.pki
    assert pki is not None
    accepted = doctor.check_broker("127.0.0.1", broker.port, tls=True, ca=pki.ca_cert, cert=pki.client_cert,
                                   key=pki.client_key)
    assert accepted.ok, accepted
    key, cert = terminal
    refused = doctor.check_broker("127.0.0.1", broker.port, tls=True, ca=pki.ca_cert, cert=cert, key=key)
    assert not refused.ok, refused


def test_outbox_checks_create_and_change_nothing(tmp_path: Path) -> None:
    """Run as root, a created ``-shm``/``-wal`` would be root's and lock the service user out of its outbox."""
    _queue(tmp_path, 3)  # closed cleanly: the WAL is checkpointed away
    before = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    assert doctor.check_outbox(tmp_path, LIMITS, NOW).ok
    assert all(result.ok for result in doctor.check_databases(tmp_path))
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == before
