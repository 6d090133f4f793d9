"""The whole terminal on the rig: the daemon (``edge/daemon/terminal.py``) with the rig's reader and test card, its
camera looking at the card's QR and its LEDs, delivering to the rig's broker, where the reference office receiver
(``edge/office/receiver.py``) must store the result.

Asserted: the result arrives, its ES256 signature verifies with the terminal's device key, its verdict is the one
the rig file expects of the card, and the LEDs showed that verdict's pattern, read back on the wired input pins:
success only for a verdict that proves the issuer (a CSCA or a known Document Signer in the trust store), the
``unproven`` pattern for ``intact_origin_unproven`` (a real CCCD without its CSCA installed), failure for ``failed``.
The terminal is configured as a deployed one is, from the rig: reader name, camera source, indicator pins, trust
store; its device key is throw-away, or, when the broker wants mutual TLS, the rig's client key (a deployed
terminal's certificate certifies its device key). Waits are bounded and event-driven; nothing asserts a duration.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.config import Config, parse_config
from edge.daemon.state import Indicator, State
from edge.daemon.terminal import Terminal
from edge.drivers.base import CardPresence, FrameSource
from edge.drivers.cameras import open_camera
from edge.drivers.leds import PATTERNS
from edge.drivers.pcsc import PcscReaderDriver
from edge.drivers.qrdecoders import make_decoder
from edge.errors import QrFormatError, TokenError
from edge.files import write_private
from edge.office.receiver import Outcome, Receiver, ResultStore
from edge.protocol import jose
from edge.protocol.cccd_qr import parse_cccd_qr
from edge.protocol.id_number import can_from_id
from edge.protocol.verify.checks import Verdict
from hil_tests.readback import Probe, sense
from hil_tests.rig import BrokerAccess, CameraSpec, Rig, TestCard

pytestmark = pytest.mark.hil

TERMINAL_ID = "hil-terminal"
COLOURS = ("green", "amber", "red")
#: Bounds, not expectations: a full read with PACE/CA/AA on a slow chip plus delivery.
RESULT_TIMEOUT = 60.0
SETTLE_TIMEOUT = 2.0
#: How long a steady light is watched for staying on (the heartbeat would go off after 0.1 s).
STEADY_WATCH = 0.3
#: The state and pattern each rung of the verdict ladder ends in: success only where the issuer is proven.
RESULT_SHOWN = {
    Verdict.VERIFIED: (State.RESULT_OK, Indicator.SUCCESS),
    Verdict.VERIFIED_KNOWN_SIGNER: (State.RESULT_OK, Indicator.SUCCESS),
    Verdict.INTACT_ORIGIN_UNPROVEN: (State.RESULT_UNPROVEN, Indicator.UNPROVEN),
    Verdict.FAILED: (State.RESULT_FAILED, Indicator.FAILURE),
}


# --- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def terminal_rig(reader_rig: Rig) -> Rig:
    """A rig with every part the terminal uses; what is missing is named in the skip."""
    camera = reader_rig.camera
    if camera is None or not camera.qr_in_view:
        pytest.skip(f"rig {reader_rig.name} has no [camera] with a test card's QR in view (qr_in_view = true)")
    if camera.source == "replay" and camera.path is None and not reader_rig.virtual:
        pytest.skip("camera.source = 'replay' needs a path on a hardware rig")
    missing = [colour for colour in COLOURS if colour not in {wire.led for wire in reader_rig.leds}]
    if missing:
        pytest.skip(f"rig {reader_rig.name}: the terminal's LEDs need {missing} wired to inputs ([leds] wires)")
    return reader_rig


@pytest.fixture(scope="module")
def trust_dir(terminal_rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The terminal's CSCA directory: the simulator's test CSCA on a virtual rig, else ``[trust] dir`` (or none)."""
    if not terminal_rig.virtual:
        return terminal_rig.trust_dir or tmp_path_factory.mktemp("no-trust")
    from edge.sim.pki import load_or_create_pki

    directory = tmp_path_factory.mktemp("trust")
    (directory / "csca.pem").write_bytes(load_or_create_pki().csca_certificate_path.read_bytes())
    return directory


def _open_camera(spec: CameraSpec) -> FrameSource:
    return open_camera(spec.source, fps=spec.fps, replay_path=spec.path, device=spec.device, loop=False)


def _can_in_view(spec: CameraSpec) -> str | None:
    """The CAN the printed QR in view opens (last six digits of its ID number), or None if none decodes."""
    camera, decoder = _open_camera(spec), make_decoder()
    try:
        for _ in range(30):
            frame = camera.read(timeout=2.0)
            for symbol in decoder.decode(frame) if frame is not None else ():
                try:
                    return can_from_id(parse_cccd_qr(symbol.raw).id_number)
                except QrFormatError:
                    continue
    finally:
        camera.close()
        decoder.close()
    return None


@pytest.fixture
def qr_source(terminal_rig: Rig, rig_card: TestCard, tmp_path: Path) -> dict[str, Any]:
    """The ``[camera]`` config showing ``rig_card``'s QR: on a virtual rig a replayed photo of it; on hardware the
    camera itself, once the QR in view is seen to be this card's (its CAN is the only key that opens it)."""
    if rig_card.bac:
        pytest.skip("a BAC-only test card: the terminal opens chips with the CAN its QR gives (PACE)")
    spec = terminal_rig.camera
    assert spec is not None
    if terminal_rig.virtual:
        from hil_tests.virtual import qr_photos

        folder = tmp_path / "qr"
        folder.mkdir()
        qr_photos([rig_card.profile], folder)
        return {"source": "replay", "replay_path": str(folder), "fps": spec.fps}
    can = _can_in_view(spec)
    assert can is not None, "no CCCD QR decoded in 30 frames: is the printed QR in view and lit?"
    if can != rig_card.can:
        pytest.skip("the QR in view is another test card's")
    if spec.source == "replay":
        return {"source": "replay", "replay_path": str(spec.path), "fps": spec.fps}
    if spec.source == "v4l2":
        device = spec.device if isinstance(spec.device, str) else f"/dev/video{spec.device}"
        return {"source": "v4l2", "device": device, "fps": spec.fps}
    return {"source": "picam", "fps": spec.fps}


def _reader_holding(rig: Rig, card: TestCard) -> str:
    """The full PC/SC name of the reader the card lies on (the terminal matches reader names exactly)."""
    driver = PcscReaderDriver(reader_filter=card.reader or rig.reader_name or "")
    try:
        present = [s.name for s in driver.readers() if s.presence is CardPresence.PRESENT]
    finally:
        driver.close()
    if card.reader is None and len(rig.cards) > 1:
        pytest.skip("cannot tell which reader holds this card: give the card a `reader` in the rig file")
    assert len(present) == 1, f"expected the test card on one reader matching the rig file, got {present}"
    return present[0]


@pytest.fixture
def device_key(rig_broker: BrokerAccess, tmp_path: Path) -> Path:
    """The terminal's signing key, 0600: the rig's client key under mutual TLS, else a throw-away P-256 key."""
    path = tmp_path / "device.key"
    if rig_broker.key is not None:
        write_private(path, rig_broker.key.read_bytes())  # a copy: the terminal refuses a group-readable key
    else:
        signers.write_private_key(ec.generate_private_key(ec.SECP256R1()), path)
    return path


def _config(rig: Rig, card: TestCard, broker: BrokerAccess, camera: dict[str, Any], key: Path, trust: Path,
            state_dir: Path) -> Config:
    wires = {wire.led: wire.output_pin for wire in rig.leds}
    paths: dict[str, Any] = {"state_dir": str(state_dir), "device_key": str(key), "trust_store": str(trust)}
    if broker.ca is not None:
        paths["broker_ca"] = str(broker.ca)
    if broker.cert is not None:
        paths["device_cert"] = str(broker.cert)
    return parse_config({
        "terminal_id": TERMINAL_ID,
        "ward_code": broker.ward,
        "reader_name": _reader_holding(rig, card),
        "paths": paths,
        "mqtt": {"host": broker.host, "port": broker.port, "tls": broker.tls, "keepalive": 10,
                 "reconnect_min_delay": 0.5, "reconnect_max_delay": 2.0},
        "camera": camera,
        "indicators": {"green": wires["green"], "amber": wires["amber"], "red": wires["red"],
                       "buzzer": wires.get("buzzer"), "active_high": rig.active_high},
        # The result's pattern must outlast the read-back; the test stops the terminal, so nothing waits it out.
        "timeouts": {"show_result": 60},
        "delivery": {"mode": "puback"},  # the rig's office is the reference receiver: it sends no receipts
    })  # fmt: skip


class Office:
    """The reference receiver subscribed at the rig's broker; keeps every payload to check signatures itself."""

    def __init__(self, broker: BrokerAccess, terminal_key: ec.EllipticCurvePublicKey, db: Path) -> None:
        self.payloads: list[bytes] = []
        self.outcomes: list[Outcome] = []
        self._changed = threading.Condition()
        payloads = self.payloads

        class RecordingStore(ResultStore):
            def ingest(self, payload: bytes, now: float, *, topic: str = "") -> Outcome:
                payloads.append(payload)
                return super().ingest(payload, now, topic=topic)

        self.store = RecordingStore(db, {jose.key_id(terminal_key): terminal_key})
        # A stable id: the receiver's session is persistent, so a real broker keeps one session per rig, not one
        # per run. Results an earlier run left queued there are told apart by their iat.
        self.receiver = Receiver(self.store, host=broker.host, port=broker.port, ward=broker.ward,
                                 client_id=f"{TERMINAL_ID}-office", tls=broker.receiver_tls(),
                                 on_outcome=self._arrived)  # fmt: skip
        self.receiver.start()

    def _arrived(self, outcome: Outcome) -> None:
        with self._changed:
            self.outcomes.append(outcome)
            self._changed.notify_all()

    def wait_for(self, accept: Callable[[Outcome], bool], timeout: float) -> Outcome | None:
        with self._changed:
            self._changed.wait_for(lambda: any(accept(o) for o in self.outcomes), timeout)
            return next((o for o in self.outcomes if accept(o)), None)

    def close(self) -> None:
        self.receiver.stop()
        self.store.close()


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def probes(terminal_rig: Rig, pin_factory: Any) -> Iterator[dict[str, Probe]]:
    """A probe on the input wired to each indicator output, attached before the terminal lights anything."""
    wired = {wire.led: Probe(sense(wire, terminal_rig, pin_factory)) for wire in terminal_rig.leds
             if wire.led in (*COLOURS, "buzzer")}  # fmt: skip
    yield wired
    for probe in wired.values():
        probe.device.close()


# --- the test ----------------------------------------------------------------------------------------------------


def test_the_terminal_delivers_a_signed_result_with_the_expected_verdict(
    terminal_rig: Rig, rig_card: TestCard, rig_broker: BrokerAccess, qr_source: dict[str, Any], device_key: Path,
    trust_dir: Path, pin_factory: Any, probes: dict[str, Probe], tmp_path: Path,
) -> None:  # fmt: skip
    config = _config(terminal_rig, rig_card, rig_broker, qr_source, device_key, trust_dir, tmp_path / "state")
    public = signers.load_private_key(device_key).public_key()
    office = Office(rig_broker, public, tmp_path / "office.db")
    terminal = Terminal(config, pin_factory=pin_factory)
    not_before = int(time.time()) - 1  # results signed before this run are an earlier run's
    try:
        assert office.receiver.subscribed.wait(SETTLE_TIMEOUT * 5), "the office could not subscribe at the broker"
        terminal.start()
        assert terminal.wait_ready(SETTLE_TIMEOUT * 5), "the terminal's threads did not come up"

        outcome = office.wait_for(lambda o: o.status == "stored" and o.iss == TERMINAL_ID
                                  and (o.iat or 0) >= not_before, RESULT_TIMEOUT)  # fmt: skip
        assert outcome is not None, (f"no result from the terminal at the office: terminal {terminal.state.value}, "
                                     f"stats {terminal.stats}, office saw {[o.as_dict() for o in office.outcomes]}")

        # The signature, checked here against the device key alone (the store checked it by kid).
        assert any(_signed_by(payload, public, outcome.jti) for payload in office.payloads), \
            "the stored result's token does not verify with the terminal's device key"

        expected = rig_card.verdict
        if expected is not None:
            assert outcome.verdict == expected.value
        else:
            assert outcome.verdict != Verdict.FAILED.value

        indicator = _assert_result_shown(terminal, probes, Verdict(str(outcome.verdict)))
    finally:
        terminal.stop()
        office.close()
    buzzer, beep = probes.get("buzzer"), PATTERNS[indicator.value].beep
    if buzzer is not None and beep is not None:  # ready/scanning are silent: any other beep was another pattern
        assert buzzer.edges_since(0).count(True) == beep.count, f"the buzzer did not beep {beep.count} times"


def _signed_by(payload: bytes, key: ec.EllipticCurvePublicKey, jti: str | None) -> bool:
    """Whether ``payload`` is the result ``jti`` with an ES256 signature that verifies under ``key``."""
    try:
        _, body = jose.verify_es256(payload, key)
    except TokenError:  # another terminal's, or an earlier run's under another key
        return False
    return bool(json.loads(body).get("jti") == jti)


def _assert_result_shown(terminal: Terminal, probes: dict[str, Probe], verdict: Verdict) -> Indicator:
    """The verdict's pattern (steady lights per ``PATTERNS``, its beeps), measured on the inputs while the terminal
    shows it; success only for a verdict that proves the issuer. Returns the indicator shown."""
    state, indicator = RESULT_SHOWN[verdict.rung]
    assert _wait_until(lambda: terminal.state is state, SETTLE_TIMEOUT), \
        f"delivered {verdict.value}, but the terminal is in {terminal.state.value}, not {state.value}"
    pattern, name = PATTERNS[indicator.value], indicator.value
    lit = [colour for colour in COLOURS if getattr(pattern, colour).mode == "on"]
    for colour in COLOURS:
        device = probes[colour].device
        if colour in lit:
            assert device.wait_for_active(SETTLE_TIMEOUT), f"{name}, but the {colour} LED reads off"
        else:
            assert device.wait_for_inactive(SETTLE_TIMEOUT), f"{name}, but the {colour} LED reads on"
    marks = {colour: probes[colour].mark() for colour in lit}
    for colour in lit:
        assert not probes[colour].wait_for(marks[colour], offs=1, timeout=STEADY_WATCH), \
            f"{colour} blinks: that is not the {name} pattern"
    buzzer = probes.get("buzzer")
    if buzzer is not None and pattern.beep is not None:
        assert buzzer.wait_for(0, ons=pattern.beep.count or 1, offs=pattern.beep.count or 1,
                               timeout=SETTLE_TIMEOUT), f"{name}, but the buzzer did not beep"
    assert terminal.state is state, f"the {name} pattern ended while it was read back"
    return indicator
