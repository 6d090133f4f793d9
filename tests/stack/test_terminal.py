"""The whole terminal end to end: replayed QR frames + a virtual CCCD in the real pcscd (vpcd) -> read, verify, sign,
outbox -> a real mosquitto -> the reference office receiver, which must verify what arrives."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from gpiozero.pins.mock import MockFactory, MockPWMPin
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from PIL import Image

from edge import signers
from edge.config import Config, parse_config
from edge.daemon.outbox import Outbox
from edge.daemon.state import Indicator, State
from edge.daemon.terminal import Terminal
from edge.drivers.base import Frame
from edge.drivers.leds import PATTERNS
from edge.drivers.reader_leds import acs_led_command
from edge.drivers.replay import ReplaySource
from edge.errors import CameraError, StorageFullError
from edge.office.receiver import Outcome, Receiver, ResultStore
from edge.office.verify import check_active_auth
from edge.protocol import jose
from edge.protocol.lds.sod import parse_sod
from edge.protocol.mrz import transliterate
from edge.protocol.result import QrUsage, ReadTiming, ResultDocument
from edge.protocol.verify.checks import CheckStatus
from edge.protocol.verify.passive import passive_authentication
from edge.protocol.verify.trust import KNOWN_SIGNER_PREFIX, TrustStore
from edge.sim.builder import build_card
from edge.sim.card_qr import FRAME_SIZE, card_qr_text, write_qr_frame
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import FID_COM, FID_SOD, SimCardSpec, dg_fid
from edge.sim.pki import load_or_create_pki
from edge.sim.profile import load_profile
from edge.sim.reader import ReaderModel
from edge.sim.runner import SimulatedCard
from edge.sim.stack import READER_NAMES, PcscStack
from tests.fixtures.mqtt import MosquittoBroker
from tests.fixtures.pcsc import InsertCard
from tests.fixtures.storage import SmallDisk
from tests.support.poison_messages import poison_messages
from tests.support.results import sample_result

pytestmark = pytest.mark.stack

WARD = "26734"
TERMINAL = "T-01"
REPO = Path(__file__).resolve().parents[2]


# --- fixtures ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    spec: SimCardSpec
    trust_dir: Path
    qr_image: Path
    blank_image: Path
    device_key: ec.EllipticCurvePrivateKey
    device_key_path: Path
    ward_key: signers.KeySigner
    ward_pub_path: Path


def _blank_image(path: Path) -> Path:
    Image.new("L", FRAME_SIZE, 110).save(path)
    return path


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    root = tmp_path_factory.mktemp("terminal")
    profile = load_profile("default")
    spec = build_card(profile, pki_dir=root / "pki")
    trust_dir = root / "trust"
    trust_dir.mkdir()
    (trust_dir / "csca.pem").write_bytes(load_or_create_pki(root / "pki").csca_certificate_path.read_bytes())
    device_key = ec.generate_private_key(ec.SECP256R1())
    device_key_path = root / "device.key"
    signers.write_private_key(device_key, device_key_path)
    ward_key = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    ward_pub_path = root / "ward.pub"
    ward_pub_path.write_bytes(ward_key.public_key.public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    qr_image = write_qr_frame(card_qr_text(profile.qr_person), root / "qr.png")
    return Material(spec, trust_dir, qr_image, _blank_image(root / "blank.png"), device_key, device_key_path,
                    ward_key, ward_pub_path)


def config_data(material: Material, broker: MosquittoBroker, state_dir: Path) -> dict[str, Any]:
    return {
        "terminal_id": TERMINAL,
        "ward_code": WARD,
        "reader_name": READER_NAMES[0],
        "paths": {"state_dir": str(state_dir), "device_key": str(material.device_key_path),
                  "ward_command_key": str(material.ward_pub_path), "trust_store": str(material.trust_dir)},
        "mqtt": {"host": broker.host, "port": broker.port, "tls": False, "keepalive": 5,
                 "reconnect_min_delay": 0.5, "reconnect_max_delay": 1.0},
        "camera": {"source": "replay", "replay_path": str(material.blank_image), "fps": 30},
        "timeouts": {"wait_for_card": 10, "wait_for_key": 10, "reading": 15, "verifying": 10, "show_result": 0.2,
                     "hold_still": 0.5},
        "delivery": {"mode": "puback"},  # the reference receiver sends no receipts (tests/stack/test_receipts.py do)
    }  # fmt: skip


class SwitchCamera:
    """The replay driver showing either the card's QR or an empty desk, switched by the test."""

    def __init__(self, material: Material) -> None:
        self._sources = {name: ReplaySource(path, fps=30) for name, path in
                         (("qr", material.qr_image), ("blank", material.blank_image))}  # fmt: skip
        self.showing = "blank"
        self.frames = 0

    def show(self, name: str) -> None:
        self.showing = name

    @property
    def exhausted(self) -> bool:
        return False  # its replays loop: like a camera, it never runs out

    def read(self, timeout: float) -> Frame | None:
        if self.showing == "unplugged":
            raise CameraError("camera unplugged (test)")
        frame = self._sources[self.showing].read(timeout)
        self.frames += frame is not None
        return frame

    def close(self) -> None:
        for source in self._sources.values():
            source.close()


class Office:
    """The reference receiver plus a listener on the terminal's /event topic."""

    def __init__(self, broker: MosquittoBroker, material: Material, db: Path,
                 decrypt_key: ec.EllipticCurvePrivateKey | None = None) -> None:  # fmt: skip
        public = material.device_key.public_key()
        self.store = ResultStore(db, {jose.key_id(public): public}, decrypt_key=decrypt_key)
        self.raw_results: list[bytes] = []  # as the broker (and its operator) sees them
        self.outcomes: list[Outcome] = []
        self.events: list[dict[str, Any]] = []
        self.status: dict[str, Any] = {}
        self._changed = threading.Condition()
        self.receiver = Receiver(self.store, host=broker.host, port=broker.port, ward=WARD,
                                 client_id=f"office-{uuid.uuid4().hex[:8]}", on_outcome=self._outcome)
        self.receiver.start()
        assert self.receiver.subscribed.wait(10)
        self.events_client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ev-{uuid.uuid4().hex[:8]}",
                                         protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.events_client.on_connect = lambda c, *_: c.subscribe(f"cccd-edge/v1/{WARD}/{TERMINAL}/+", qos=1)
        self.events_client.on_subscribe = lambda *_: subscribed.set()
        self.events_client.on_message = self._event
        self.events_client.reconnect_delay_set(1, 1)
        # A persistent session (as an office integrator would keep): the broker holds the subscription and queues
        # the terminal's events while this listener reconnects after a broker restart.
        session = Properties(PacketTypes.CONNECT)
        session.SessionExpiryInterval = 3600
        self.events_client.connect(broker.host, broker.port, clean_start=False, properties=session)
        self.events_client.loop_start()
        assert subscribed.wait(10)

    def _outcome(self, outcome: Outcome) -> None:
        with self._changed:
            self.outcomes.append(outcome)
            self._changed.notify_all()

    def _event(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            if message.topic.endswith("/event"):
                self.events.append(json.loads(message.payload))
            elif message.topic.endswith("/status"):
                self.status = json.loads(message.payload)
            elif message.topic.endswith("/result"):
                self.raw_results.append(message.payload)
            self._changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"timed out; outcomes {self.outcomes}, events {self.events}"
                self._changed.wait(min(remaining, 0.1))

    def command(self, broker: MosquittoBroker, payload: bytes) -> None:
        self.events_client.publish(f"cccd-edge/v1/{WARD}/{TERMINAL}/cmd", payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.receiver.stop()
        self.events_client.disconnect()
        self.events_client.loop_stop()
        self.store.close()


def command(material: Material, cmd: str, *, iat: int | None = None, **fields: Any) -> tuple[str, bytes]:
    now = int(time.time()) if iat is None else iat
    jti = str(uuid.uuid4())
    claims = {"iss": f"ward-{WARD}", "aud": TERMINAL, "jti": jti, "iat": now, "exp": now + 60, "cmd": cmd, **fields}
    return jti, jose.sign_jws(material.ward_key, claims, typ=jose.COMMAND_TYP).encode()


def wait_until(predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@dataclass
class Rig:
    terminal: Terminal
    camera: SwitchCamera
    office: Office
    broker: MosquittoBroker
    pins: MockFactory


@pytest.fixture
def rig_factory(material: Material, mqtt_broker_factory: Callable[..., MosquittoBroker], pcsc_stack: object,
                tmp_path: Path) -> Iterator[Callable[..., Rig]]:  # fmt: skip
    rigs: list[Rig] = []

    def make(decrypt_key: ec.EllipticCurvePrivateKey | None = None, **overrides: Any) -> Rig:
        broker = mqtt_broker_factory(persistence=True)
        data = config_data(material, broker, tmp_path / "state")
        for section, values in overrides.items():
            data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
        config: Config = parse_config(data)
        camera = SwitchCamera(material)
        pins = MockFactory(pin_class=MockPWMPin)
        office = Office(broker, material, tmp_path / "office.db", decrypt_key)
        # The kernel's NTP answer is faked as synchronised so these tests do not depend on the host's NTP state;
        # tests/stack/test_clock.py runs the daemon with a clock that is not.
        terminal = Terminal(config, camera=camera, pin_factory=pins, ntp=lambda: True)
        rig = Rig(terminal, camera, office, broker, pins)
        rigs.append(rig)
        terminal.start()
        assert terminal.wait_ready(10)
        publisher = terminal.publisher
        assert publisher is not None
        assert publisher.commands_subscribed.wait(10), "the terminal never subscribed to /cmd"
        return rig

    yield make
    for rig in rigs:
        rig.terminal.stop()
        rig.office.close()
        rig.camera.close()
        rig.pins.close()
    rigs.clear()


def present_qr_once(rig: Rig, *, results: int) -> None:
    """Hold the QR up until the terminal has ``results`` results, then take it away long enough to re-arm."""
    rig.camera.show("qr")
    wait_until(lambda: rig.terminal.stats.get("results_enqueued", 0) == results, what=f"result {results}")
    rig.camera.show("blank")
    frames = rig.camera.frames
    wait_until(lambda: rig.camera.frames >= frames + 8 and rig.terminal.state is State.READY, what="re-armed")


def loop_caught_up(rig: Rig, material: Material) -> None:
    """A ping answered: the loop thread has finished every item posted before it, including the actions (LEDs,
    events) of a state change that tests saw in the snapshot, which the loop sets before carrying them out."""
    jti, ping = command(material, "ping")
    rig.office.command(rig.broker, ping)
    rig.office.wait(lambda: any(e.get("event") == "pong" and e.get("jti") == jti for e in rig.office.events))


def secure(spec: SimCardSpec) -> SimChipSecurity:
    return SimChipSecurity(spec.secrets, spec.quirks)


# --- tests -------------------------------------------------------------------------------------------------------


def test_qr_then_card_delivers_a_verified_signed_result(material: Material, rig_factory: Callable[..., Rig],
                                                         insert_card: InsertCard) -> None:  # fmt: skip
    rig = rig_factory()
    rig.camera.show("qr")
    wait_until(lambda: rig.terminal.state is State.WAIT_CARD, what="the QR's key")
    assert rig.terminal.stats.get("qr_scans") == 1
    insert_card(material.spec, security=secure(material.spec))
    rig.office.wait(lambda: len(rig.office.outcomes) >= 1)
    outcome = rig.office.outcomes[0]
    assert (outcome.status, outcome.iss, outcome.seq, outcome.verdict) == ("stored", TERMINAL, 1, "verified")
    document = json.loads(dict(rig.office.store._db.execute("SELECT seq, document FROM results"))[1])
    assert document["qr"] == {"used": True, "format": "cccd2021"}
    checks = {check["name"]: check["status"] for check in document["checks"]}
    assert checks["qr_vs_dg13"] == "passed"
    assert checks["ds_chain"] == "passed"
    assert set(document["citizen"]) <= {"id_number", "full_name", "date_of_birth", "sex", "nationality",
                                        "date_of_issue", "date_of_expiry", "old_id_number", "place_of_residence"}
    assert document["citizen"]["place_of_residence"]  # the residence profile, the configured default
    assert document["timing"]["apdu_count"] > 0
    wait_until(lambda: rig.terminal.stats.get("verdict_verified") == 1, what="stats")
    assert rig.terminal.outbox is not None
    wait_until(lambda: rig.terminal.outbox.stats().count == 0, what="outbox drained")  # type: ignore[union-attr]


def test_a_card_left_with_its_qr_in_view_gets_one_result_then_a_fresh_presentation_another(
    material: Material, rig_factory: Callable[..., Rig], insert_card: InsertCard
) -> None:
    rig = rig_factory(camera={"qr_repeat_after": 0.3})
    rig.camera.show("qr")
    card = insert_card(material.spec, security=secure(material.spec))
    rig.office.wait(lambda: len(rig.office.outcomes) == 1)
    wait_until(lambda: rig.terminal.stats.get("qr_repeats_ignored", 0) >= 2, what="the QR firing again")
    assert rig.terminal.stats.get("verdict_verified") == 1  # the card on the stand was not read twice
    card.remove()
    wait_until(lambda: not rig.terminal.snapshot.card_present, what="card lifted")
    card.insert()  # the citizen taps again: the QR still in view opens it, no second showing needed
    rig.office.wait(lambda: len(rig.office.outcomes) == 2)
    assert [o.verdict for o in rig.office.outcomes] == ["verified", "verified"]


def test_encrypted_results_carry_nothing_personal_across_the_broker(
    material: Material, rig_factory: Callable[..., Rig], insert_card: InsertCard, tmp_path: Path
) -> None:
    ward_private = ec.generate_private_key(ec.SECP256R1())
    ward_public_path = tmp_path / "ward-encryption.pub"
    ward_public_path.write_bytes(ward_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    rig = rig_factory(decrypt_key=ward_private, paths={"ward_encryption_key": str(ward_public_path)})
    rig.camera.show("qr")
    insert_card(material.spec, security=secure(material.spec))
    rig.office.wait(lambda: len(rig.office.outcomes) >= 1 and len(rig.office.raw_results) >= 1)
    assert rig.office.outcomes[0].verdict == "verified"  # the office opened and verified it
    wire = rig.office.raw_results[0]
    assert jose.is_jwe(wire)
    person = load_profile("default").person
    for secret in (person.id_number, person.id_number[-6:], person.full_name, person.place_of_residence):
        assert secret.encode() not in wire
    stored = json.loads(rig.office.store._db.execute("SELECT document FROM results").fetchone()[0])
    assert stored["citizen"]["id_number"] == person.id_number


def test_office_read_request_without_a_qr(material: Material, rig_factory: Callable[..., Rig],
                                          insert_card: InsertCard) -> None:  # fmt: skip
    rig = rig_factory()
    insert_card(material.spec, security=secure(material.spec))
    wait_until(lambda: rig.terminal.state is State.WAIT_KEY, what="card seen")
    challenge = bytes.fromhex("c0ffee0011223344")
    jti, payload = command(material, "read_request", key={"can": material.spec.secrets.can}, profile="identity",
                           challenge=challenge.hex())  # fmt: skip
    rig.office.command(rig.broker, payload)
    rig.office.wait(lambda: len(rig.office.outcomes) >= 1)
    assert rig.office.outcomes[0].verdict == "verified"
    document = json.loads(rig.office.store._db.execute("SELECT document FROM results").fetchone()[0])
    assert document["request_id"] == jti
    assert check_active_auth(ResultDocument.model_validate(document), challenge).passed  # the office's own check
    assert document["qr"] == {"used": False}
    assert "place_of_residence" not in document["citizen"]  # the identity profile the office asked for
    assert {c["name"]: c["status"] for c in document["checks"]}["qr_vs_dg13"] == "not_performed"
    rig.office.wait(lambda: any(e.get("event") == "command_accepted" and e.get("jti") == jti
                                for e in rig.office.events))


def test_card_removed_mid_read_publishes_nothing(material: Material, rig_factory: Callable[..., Rig],
                                                 insert_card: InsertCard) -> None:  # fmt: skip
    spec = replace(material.spec, quirks=replace(material.spec.quirks, remove_after_apdus=12))
    rig = rig_factory()
    insert_card(spec, security=secure(spec))
    rig.camera.show("qr")
    rig.office.wait(lambda: any(e.get("event") == "read_failed" for e in rig.office.events))
    failed = [e for e in rig.office.events if e.get("event") == "read_failed"]
    assert failed[0]["detail"] == "card_removed"
    wait_until(lambda: rig.terminal.state is State.READY, what="back to ready")
    assert rig.terminal.outbox is not None
    assert rig.terminal.outbox.stats().last_seq == 0  # nothing was ever committed, so nothing can be published
    assert rig.office.outcomes == []
    assert rig.terminal.stats.get("reads_failed") == 1


def test_a_chip_that_never_answers_fails_at_the_read_deadline_and_the_next_card_is_verified(
    material: Material, rig_factory: Callable[..., Rig], insert_card: InsertCard
) -> None:
    """A chip that stops answering mid-read (silent, or asking the reader for more time without end) holds
    SCardTransmit until it leaves the reader: the worker gives the read up at its deadline all the same, and is back
    while the silent card still lies there (before, only the card's removal or the watchdog freed it)."""
    stalling = replace(material.spec, quirks=replace(material.spec.quirks, stall_after_apdus=6, stall_seconds=600.0))
    rig = rig_factory(timeouts={"reading": 6})  # room for the 6 answered APDUs (PACE) on a loaded machine
    silent = insert_card(stalling, security=secure(stalling))
    rig.camera.show("qr")
    rig.office.wait(lambda: any(e.get("event") == "read_failed" for e in rig.office.events))
    rig.camera.show("blank")
    wait_until(lambda: rig.terminal.stats.get("reads_failed") == 1, what="the worker back from the silent chip")
    wait_until(lambda: rig.terminal.state is State.READY, what="back to ready")
    assert silent.inserted
    assert silent.counters.apdus == 7  # the seventh reached the chip, which stays silent
    answered = silent.counters.bytes_out
    silent.remove()
    assert silent.wait_removed(5.0)
    assert silent.counters.bytes_out == answered  # its answer never came
    insert_card(material.spec, security=secure(material.spec))
    frames = rig.camera.frames
    wait_until(lambda: rig.camera.frames >= frames + 8 and rig.terminal.state is State.READY, what="re-armed")
    rig.camera.show("qr")
    rig.office.wait(lambda: len(rig.office.outcomes) >= 1)
    assert [outcome.verdict for outcome in rig.office.outcomes] == ["verified"]
    # The worker's typed reason (the state machine's backstop, reading_timeout, comes READ_REPORT_GRACE later).
    assert [e["detail"] for e in rig.office.events if e.get("event") == "read_failed"] == ["ReadDeadlineError"]
    assert rig.terminal.stats.get("reads_failed") == 1


def test_broker_outage_delivers_every_result_once_in_order(material: Material, rig_factory: Callable[..., Rig],
                                                           insert_card: InsertCard) -> None:  # fmt: skip
    rig = rig_factory()
    insert_card(material.spec, security=secure(material.spec))
    rig.broker.stop()
    publisher = rig.terminal.publisher
    assert publisher is not None
    wait_until(lambda: not publisher.connected, what="link down")
    for count in (1, 2, 3):
        present_qr_once(rig, results=count)
    assert rig.terminal.snapshot.queued == 3
    assert rig.office.outcomes == []
    rig.broker.start()
    rig.office.wait(lambda: len({o.seq for o in rig.office.outcomes if o.status == "stored"}) == 3, timeout=45)
    stored = [o.seq for o in rig.office.outcomes if o.status == "stored"]
    assert stored == [1, 2, 3]
    assert all(o.verdict == "verified" and not o.missing for o in rig.office.outcomes if o.status == "stored")
    assert [seq for seq, _ in rig.office.store.stored(TERMINAL)] == [1, 2, 3]


def test_forged_expired_and_replayed_commands_are_refused_and_reported(
    material: Material, rig_factory: Callable[..., Rig]
) -> None:
    rig = rig_factory()
    _, good = command(material, "ping")
    head, body, sig = good.decode().split(".")
    claims = json.loads(jose.b64url_decode(body))
    forged = f"{head}.{jose.b64url(json.dumps({**claims, 'cmd': 'cancel'}).encode())}.{sig}".encode()
    _, expired = command(material, "ping", iat=int(time.time()) - 3600)
    _, foreign = command(material, "ping")
    other = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    foreign = jose.sign_jws(other, json.loads(jose.b64url_decode(foreign.decode().split(".")[1])),
                            typ=jose.COMMAND_TYP).encode()  # fmt: skip
    for payload in (good, forged, expired, good, foreign):
        rig.office.command(rig.broker, payload)
    rig.office.wait(lambda: len([e for e in rig.office.events if e.get("event") in ("pong", "command_rejected")]) == 5)
    reasons = [e.get("reason", e["event"]) for e in rig.office.events if e.get("event") in ("pong", "command_rejected")]
    assert reasons == ["pong", "bad_signature", "expired", "replayed", "unknown_key"]
    assert rig.terminal.stats.get("commands_rejected") == 4
    assert rig.terminal.state is State.READY


def test_poison_commands_end_in_rejection_events_and_the_terminal_answers_the_next(
    material: Material, rig_factory: Callable[..., Rig], mqtt_contract_exempt: Callable[..., None]
) -> None:
    """Deep JSON (unsigned header or signed body), non-ASCII bytes and a CAN of full-width digits: each is a
    ``command_rejected`` event on /event, not an exception in the loop; a ping after them is answered."""
    rig = rig_factory()
    poisons = poison_messages(material.ward_key, jose.COMMAND_TYP)
    _, full_width_can = command(material, "read_request", key={"can": "\uff11\uff12\uff13\uff14\uff15\uff16"})
    _, ping = command(material, "ping")
    mqtt_contract_exempt(*poisons.values(), full_width_can)  # broken on purpose
    for payload in (*poisons.values(), full_width_can, ping):
        rig.office.command(rig.broker, payload)
    answered = ("pong", "command_rejected")
    rig.office.wait(lambda: len([e for e in rig.office.events if e.get("event") in answered]) == len(poisons) + 2)
    reasons = [e.get("reason", e["event"]) for e in rig.office.events if e.get("event") in answered]
    assert reasons == ["malformed"] * (len(poisons) + 1) + ["pong"]
    assert rig.terminal.stats.get("loop_errors", 0) == 0
    assert rig.terminal.state is State.READY


def test_office_cancel_ends_a_waiting_request(material: Material, rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    jti, request = command(material, "read_request", key={"can": material.spec.secrets.can})
    rig.office.command(rig.broker, request)
    wait_until(lambda: rig.terminal.state is State.WAIT_CARD, what="waiting for the card")
    rig.office.command(rig.broker, command(material, "cancel")[1])
    rig.office.wait(lambda: any(e.get("event") == "cancelled" and e.get("request_id") == jti
                                for e in rig.office.events))  # fmt: skip
    assert rig.terminal.state is State.READY


def test_outbox_full_refuses_reads_visibly_until_delivery_makes_room(
    material: Material, rig_factory: Callable[..., Rig], insert_card: InsertCard
) -> None:
    rig = rig_factory(outbox={"max_count": 1})
    insert_card(material.spec, security=secure(material.spec))
    rig.broker.stop()
    present_qr_once(rig, results=1)
    assert rig.terminal.snapshot.indicator is Indicator.FAULT  # READY with a full outbox: call support
    rig.camera.show("qr")
    wait_until(lambda: rig.terminal.stats.get("report_read_refused", 0) >= 1, what="refusal")
    assert rig.terminal.stats.get("reads_started") == 1
    rig.broker.start()
    rig.office.wait(lambda: any(e.get("event") == "read_refused" and e.get("detail") == "outbox_full"
                                for e in rig.office.events))  # fmt: skip
    rig.office.wait(lambda: len(rig.office.outcomes) == 1)
    wait_until(lambda: rig.terminal.snapshot.indicator is Indicator.READY, what="room again")
    rig.office.wait(lambda: rig.office.status.get("outbox_full") is False and rig.office.status.get("queued") == 0)


def test_missing_reader_is_a_fault_in_status_and_leds(material: Material, rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(reader_name="No Such Reader 00 00")
    wait_until(lambda: rig.terminal.state is State.FAULT, what="fault")
    rig.office.wait(lambda: rig.office.status.get("reader") == "missing")
    assert rig.office.status["terminal_state"] == "fault"
    assert rig.office.status["camera"] == "ok"
    assert rig.terminal.snapshot.indicator is Indicator.FAULT
    red, green = rig.pins.pin(22), rig.pins.pin(17)
    red.clear_states()
    wait_until(lambda: len(red.states) >= 3, what="red LED blinking")
    assert {float(change.state) for change in red.states[1:]} == {0.0, 1.0}
    assert float(green.state) == 0.0


def test_camera_lost_and_back_is_a_fault_then_scanning_resumes(material: Material, rig_factory: Callable[..., Rig],
                                                                insert_card: InsertCard) -> None:  # fmt: skip
    rig = rig_factory()
    rig.camera.show("unplugged")
    wait_until(lambda: rig.terminal.state is State.FAULT, what="fault")
    rig.office.wait(lambda: rig.office.status.get("camera") == "missing")
    assert rig.terminal.snapshot.indicator is Indicator.FAULT
    rig.camera.show("qr")  # plugged back in, with a card's QR in view
    wait_until(lambda: rig.terminal.state is State.WAIT_CARD, what="scanning again")
    insert_card(material.spec, security=secure(material.spec))
    rig.office.wait(lambda: len(rig.office.outcomes) >= 1)
    assert rig.office.outcomes[0].verdict == "verified"


def test_pcscd_gone_and_back_is_a_fault_then_reads_resume(
    material: Material, rig_factory: Callable[..., Rig], insert_card: InsertCard, pcsc_stack: PcscStack
) -> None:
    if not pcsc_stack.private:
        pytest.skip("the system pcscd is not ours to restart")
    rig = rig_factory()
    pcsc_stack.kill_daemon()
    wait_until(lambda: rig.terminal.state is State.FAULT, what="reader lost")
    rig.office.wait(lambda: any(e.get("event") == "device_lost" and e.get("detail") == "reader"
                                for e in rig.office.events))  # fmt: skip
    pcsc_stack.start_daemon()
    wait_until(lambda: rig.terminal.state is State.READY, what="reader back")
    insert_card(material.spec, security=secure(material.spec))
    rig.camera.show("qr")
    rig.office.wait(lambda: len(rig.office.outcomes) == 1)
    assert rig.office.outcomes[0].verdict == "verified"


def test_run_with_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('terminal_id = "T-01"\nward_code = "26734"\n[mqtt]\nport = 70000\n', encoding="utf-8")
    missing_key = tmp_path / "nokey.toml"
    missing_key.write_text(f'terminal_id = "T-01"\nward_code = "26734"\n[paths]\nstate_dir = "{tmp_path}"\n'
                           f'device_key = "{tmp_path / "absent.key"}"\n', encoding="utf-8")  # fmt: skip
    for path, key in ((bad, "mqtt.port"), (missing_key, "paths.device_key")):
        done = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(path)], cwd=REPO,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert key in done.stderr


def _daemon_config(tmp_path: Path, material: Material, broker: MosquittoBroker, camera_image: Path,
                   state_dir: Path | None = None) -> Path:
    """The TOML file an installed terminal would have, for ``cccd-edge run``."""
    config = tmp_path / "config.toml"
    data = config_data(material, broker, state_dir or tmp_path / "state")
    data["camera"]["replay_path"] = str(camera_image)
    lines = [f'terminal_id = "{TERMINAL}"', f'ward_code = "{WARD}"', f'reader_name = "{READER_NAMES[0]}"']
    for section in ("paths", "mqtt", "camera", "timeouts", "delivery"):
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in data[section].items()]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def _spawn_daemon(config: Path, *cli_options: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, **(env or {}), "GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}
    return subprocess.Popen([sys.executable, "-m", "edge.cli", *cli_options, "run", "--config", str(config)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def test_run_notifies_systemd_and_stops_cleanly_on_sigterm(
    tmp_path: Path, material: Material, mqtt_broker: MosquittoBroker, pcsc_stack: object
) -> None:
    config = _daemon_config(tmp_path, material, mqtt_broker, material.blank_image)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    process = _spawn_daemon(config, env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"})
    try:
        messages = [notify.recv(4096).decode()]
        assert messages[0].startswith("READY=1")
        while "WATCHDOG=1" not in messages[-1]:
            messages.append(notify.recv(4096).decode())
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        while "STOPPING=1" not in messages[-1]:
            messages.append(notify.recv(4096).decode())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()
    assert process.returncode == 0, err.decode()
    assert b"ready" in out  # logs go to stdout


def test_the_daemons_debug_log_of_a_whole_read_holds_no_name_id_number_or_address(
    tmp_path: Path, material: Material, mqtt_broker: MosquittoBroker, insert_card: InsertCard
) -> None:
    office = Office(mqtt_broker, material, tmp_path / "office.db")
    config = _daemon_config(tmp_path, material, mqtt_broker, material.qr_image)  # the QR stays in view
    process = _spawn_daemon(config, "-v")
    try:
        insert_card(material.spec, security=secure(material.spec))
        office.wait(lambda: len(office.outcomes) == 1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        office.close()
    assert office.outcomes[0].verdict == "verified"
    log = (out + err).decode()
    assert "DEBUG" in log  # the most talkative level...
    assert "verified" in log  # ...did describe the read
    person = load_profile("default").person
    secrets = [person.id_number, person.full_name, person.place_of_residence, person.place_of_origin,
               transliterate(person.full_name)]  # fmt: skip
    for secret in filter(None, secrets):
        assert secret not in log, f"personal data in the daemon's log: {len(secret)} characters"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_of_the_daemon_at_a_random_point_of_delivery_loses_nothing(
    seed: int, tmp_path: Path, material: Material, mqtt_broker_factory: Callable[..., MosquittoBroker],
    pcsc_stack: object,
) -> None:  # fmt: skip
    """A backlog (as after a day of outreach without network) drains; the daemon is killed at a seeded random point
    of the drain, restarted, and the office ends with every result exactly once, in seq order."""
    backlog = 1500
    broker = mqtt_broker_factory(persistence=True)
    config = _daemon_config(tmp_path, material, broker, material.blank_image)
    signer = signers.KeySigner(material.device_key)
    document = json.loads(sample_result(ward_code=WARD, qr=QrUsage(used=False),
                                        timing=ReadTiming(apdu_count=15, read_ms=100)).to_json())  # fmt: skip
    outbox = Outbox(tmp_path / "state" / "outbox.db", max_count=10_000, max_bytes=10**8)
    for _ in range(backlog):
        outbox.enqueue(lambda seq: jose.result_token(signer, terminal_id=TERMINAL, seq=seq, document=document,
                                                     now=int(time.time()), lifetime=3600))  # fmt: skip
    outbox.close()
    office = Office(broker, material, tmp_path / "office.db")
    kill_at = random.Random(seed).randrange(1, backlog - 100)
    try:
        first = _spawn_daemon(config)
        try:
            office.wait(lambda: len(office.outcomes) >= kill_at, timeout=60)
        finally:
            first.kill()  # SIGKILL: no goodbye, PUBACKs in flight are lost with the process
            first.communicate()
        delivered_before = len(office.store.stored(TERMINAL))
        second = _spawn_daemon(config)
        try:
            office.wait(lambda: len(office.store.stored(TERMINAL)) == backlog, timeout=120)
        finally:
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=30)
        assert [seq for seq, _ in office.store.stored(TERMINAL)] == list(range(1, backlog + 1))
        assert delivered_before < backlog  # the kill did land during the drain
    finally:
        office.close()


def test_a_qr_that_is_not_a_cards_is_shown_to_the_officer_and_reported(
    material: Material, rig_factory: Callable[..., Rig], tmp_path: Path
) -> None:
    rig = rig_factory()
    rig.camera._sources["payment"] = ReplaySource(write_qr_frame("00020101021238570010A000000727", tmp_path / "p.png"),
                                                  fps=30)  # fmt: skip
    rig.camera.show("payment")
    rig.office.wait(lambda: any(e.get("event") == "qr_rejected" for e in rig.office.events))
    assert {"event": "qr_rejected", "detail": "not_id_card", "request_id": None} in rig.office.events
    assert rig.terminal.stats.get("not_id_card") == 1
    assert rig.terminal.stats.get("reads_started") is None
    rig.camera.show("blank")
    wait_until(lambda: rig.terminal.state is State.READY, what="back to ready after the failure pattern")


def _known_signer_dir(material: Material, tmp_path: Path) -> Path:
    """A trust directory with no CSCA, only the simulator's Document Signer pinned (``ds-*``)."""
    directory = tmp_path / "trust-known-ds"
    directory.mkdir()
    pki = load_or_create_pki(material.trust_dir.parent / "pki")
    (directory / f"{KNOWN_SIGNER_PREFIX}test-ds.der").write_bytes(pki.ds.certificate.public_bytes(Encoding.DER))
    return directory


@pytest.mark.parametrize(("profile", "store", "verdict", "state", "indicator", "lamps"), [
    pytest.param("untrusted-issuer", "CSCA", "intact_origin_unproven", State.RESULT_UNPROVEN, Indicator.UNPROVEN,
                 (1, 1, 0), id="issuer not proven"),
    pytest.param("default", "CSCA", "verified", State.RESULT_OK, Indicator.SUCCESS, (1, 0, 0), id="CSCA"),
    pytest.param("default", "known DS", "verified_known_signer", State.RESULT_OK, Indicator.SUCCESS, (1, 0, 0),
                 id="known signer"),
])  # fmt: skip
def test_only_a_card_whose_issuer_is_proven_shows_success(
    profile: str, store: str, verdict: str, state: State, indicator: Indicator, lamps: tuple[int, int, int],
    material: Material, rig_factory: Callable[..., Rig], insert_card: InsertCard, tmp_path: Path,
) -> None:  # fmt: skip
    """A card signed under a CSCA the terminal does not hold is stored for the office, but the officer sees the
    ``unproven`` pattern (green and amber steady), never success; a genuine card under the installed test CSCA, or
    signed by a pinned Document Signer, shows success (green alone). Read on the LED pins while the result shows."""
    trust = material.trust_dir if store == "CSCA" else _known_signer_dir(material, tmp_path)
    rig = rig_factory(timeouts={"show_result": 60}, paths={"trust_store": str(trust)})
    spec = build_card(load_profile(profile), pki_dir=material.trust_dir.parent / "pki")
    rig.camera.show("qr")
    wait_until(lambda: rig.terminal.state is State.WAIT_CARD, what="the QR's key")
    insert_card(spec, security=secure(spec))
    rig.office.wait(lambda: len(rig.office.outcomes) >= 1)
    outcome = rig.office.outcomes[0]
    assert (outcome.status, outcome.verdict, outcome.rung) == ("stored", verdict, verdict)
    wait_until(lambda: rig.terminal.state is state, what=state.value)
    assert rig.terminal.snapshot.indicator is indicator
    loop_caught_up(rig, material)  # the loop sets the snapshot first, then drives the LEDs
    assert tuple(int(rig.pins.pin(pin).state) for pin in (17, 27, 22)) == lamps  # green, amber, red
    rig.office.wait(lambda: any(e.get("event") == "result" for e in rig.office.events))
    results = [e["detail"] for e in rig.office.events if e.get("event") == "result"]
    assert results == [state.value]
    assert rig.terminal.stats.get(f"verdict_{verdict}") == 1


def test_a_read_past_its_deadline_frees_the_worker(material: Material, rig_factory: Callable[..., Rig],
                                                  insert_card: InsertCard) -> None:  # fmt: skip
    """A chip that answers slowly (or without end) is given up at timeouts.reading: the worker sends nothing more
    (far fewer APDUs than the 15 of a read), counts the read failed and is free for the next card. Before, the
    worker read on to the end (or for ever) while the terminal showed the timeout."""
    rig = rig_factory(timeouts={"reading": 1.0})
    slow = replace(material.spec, quirks=replace(material.spec.quirks, answer_delay_ms=250.0))
    rig.camera.show("qr")
    wait_until(lambda: rig.terminal.state is State.WAIT_CARD, what="the QR's key")
    card = insert_card(slow, security=secure(slow))
    wait_until(lambda: rig.terminal.stats.get("reads_failed", 0) == 1, what="the read given up")
    assert rig.terminal.stats.get("reads_ok", 0) == 0
    assert 0 < card.counters.apdus < 15


# --- a full disk is a fault, never a failed card (issue 13) ------------------------------------------------------


def _never_red(rig: Rig) -> None:
    """Nothing the officer or the office saw said the card failed."""
    assert not any(e.get("event") == "read_failed" for e in rig.office.events)
    assert not any(e.get("event") == "result" and e.get("detail") == State.RESULT_FAILED.value
                   for e in rig.office.events)  # fmt: skip
    assert "verdict_failed" not in rig.terminal.stats
    assert rig.terminal.stats.get("report_read_failed") is None


def test_a_command_whose_jti_cannot_be_remembered_is_rejected_for_storage_and_the_next_is_answered(
    material: Material, rig_factory: Callable[..., Rig], small_disk: SmallDisk
) -> None:
    """A full disk under commands.db: a command cannot be accepted (its replay could not be refused later), and the
    office hears why (``command_rejected``, reason ``storage``) instead of nothing; with room again, a ping is
    answered."""
    rig = rig_factory(paths={"state_dir": str(small_disk.path)})
    loop_caught_up(rig, material)
    guard = rig.terminal._replay
    assert guard is not None
    small_disk.fill()
    for _ in range(10_000):  # the WAL's last free pages, until the guard is refused
        try:
            guard.remember(str(uuid.uuid4()) * 3, int(time.time()) + 3600, int(time.time()))
        except StorageFullError:
            break
    else:
        raise AssertionError("commands.db never ran out of room")
    _, ping = command(material, "ping")
    rig.office.command(rig.broker, ping)
    rig.office.wait(lambda: any(e.get("event") == "command_rejected" and e.get("reason") == "storage"
                                for e in rig.office.events))  # fmt: skip
    small_disk.make_room()
    loop_caught_up(rig, material)


def test_a_full_disk_refuses_reads_with_fault_then_reads_resume_when_space_returns(
    material: Material, rig_factory: Callable[..., Rig], insert_card: InsertCard, small_disk: SmallDisk
) -> None:
    rig = rig_factory(paths={"state_dir": str(small_disk.path)}, outbox={"min_free_bytes": 256 * 1024})
    insert_card(material.spec, security=secure(material.spec))
    small_disk.fill()
    wait_until(lambda: rig.terminal.snapshot.indicator is Indicator.FAULT, what="FAULT while idle")
    rig.office.wait(lambda: rig.office.status.get("storage_full") is True)
    rig.camera.show("qr")
    rig.office.wait(lambda: any(e.get("event") == "read_refused" and e.get("detail") == "storage_full"
                                for e in rig.office.events))  # fmt: skip
    assert rig.terminal.stats.get("reads_started") is None  # refused before the card was touched
    assert rig.terminal.snapshot.indicator is Indicator.FAULT
    rig.camera.show("blank")
    small_disk.make_room()
    wait_until(lambda: rig.terminal.snapshot.indicator is Indicator.READY, what="READY when space returns")
    present_qr_once(rig, results=1)
    rig.office.wait(lambda: len(rig.office.outcomes) == 1)
    assert rig.office.outcomes[0].verdict == "verified"
    _never_red(rig)
    assert [seq for seq, _ in rig.office.store.stored(TERMINAL)] == [1]


def test_a_disk_that_fills_during_a_read_holds_the_result_and_delivers_it_once_when_space_returns(
    material: Material, rig_factory: Callable[..., Rig], insert_card: InsertCard, small_disk: SmallDisk
) -> None:
    slow = replace(material.spec, quirks=replace(material.spec.quirks, answer_delay_ms=15))  # a read of a second
    rig = rig_factory(paths={"state_dir": str(small_disk.path)}, outbox={"min_free_bytes": 64 * 1024})
    insert_card(slow, security=secure(slow))
    rig.camera.show("qr")
    wait_until(lambda: rig.terminal.state is State.READING, what="reading")
    small_disk.fill()  # after the free-space check, before the commit
    rig.office.wait(lambda: any(e.get("event") == "storage_fault" and e.get("detail") == "result_held"
                                for e in rig.office.events))  # fmt: skip
    assert rig.terminal.snapshot.indicator is Indicator.FAULT
    assert any(e.get("event") == "result_held" and e.get("reason") == "storage_full" for e in rig.office.events)
    assert rig.terminal.stats.get("results_enqueued") is None
    rig.camera.show("blank")
    time.sleep(1.0)  # a few storage checks and held retries against the full disk
    assert rig.office.outcomes == []
    small_disk.make_room()
    rig.office.wait(lambda: len(rig.office.outcomes) == 1)
    assert (rig.office.outcomes[0].seq, rig.office.outcomes[0].verdict) == (1, "verified")
    rig.office.wait(lambda: any(e.get("event") == "result_stored" and e.get("late") for e in rig.office.events))
    wait_until(lambda: rig.terminal.snapshot.indicator is Indicator.READY, what="READY again")
    _never_red(rig)
    time.sleep(1.0)  # anything sent twice would arrive now
    assert len(rig.office.raw_results) == 1
    assert [seq for seq, _ in rig.office.store.stored(TERMINAL)] == [1]


def test_a_result_that_cannot_even_be_held_tells_the_office_to_repeat_the_read(
    material: Material, rig_factory: Callable[..., Rig], insert_card: InsertCard, small_disk: SmallDisk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edge.daemon import result_store

    monkeypatch.setattr(result_store, "HELD_RESULTS_MAX", 0)  # memory for held results used up
    slow = replace(material.spec, quirks=replace(material.spec.quirks, answer_delay_ms=15))
    rig = rig_factory(paths={"state_dir": str(small_disk.path)}, outbox={"min_free_bytes": 64 * 1024})
    insert_card(slow, security=secure(slow))
    rig.camera.show("qr")
    wait_until(lambda: rig.terminal.state is State.READING, what="reading")
    small_disk.fill()
    rig.office.wait(lambda: any(e.get("event") == "result_not_stored" and e.get("action") == "repeat_read"
                                for e in rig.office.events))  # fmt: skip
    rig.office.wait(lambda: any(e.get("event") == "storage_fault" and e.get("detail") == "repeat_read"
                                for e in rig.office.events))  # fmt: skip
    assert rig.terminal.snapshot.indicator is Indicator.FAULT
    _never_red(rig)
    assert rig.terminal.stats.get("results_lost") == 1


def test_starting_on_a_full_disk_shows_fault_and_starts_once_there_is_room(
    tmp_path: Path, material: Material, mqtt_broker: MosquittoBroker, small_disk: SmallDisk, pcsc_stack: object
) -> None:
    """The terminal's trouble, not a reason to leave: on a disk too full to open the outbox it tells systemd (READY
    with a FAULT status that says "storage full", never "damaged"), keeps the watchdog fed and its FAULT light on,
    and starts by itself once the disk has room; SIGTERM still ends it cleanly."""
    Outbox(small_disk.path / "outbox.db", max_count=10, max_bytes=10**6).close()  # a terminal that ran before
    small_disk.fill()
    config = _daemon_config(tmp_path, material, mqtt_broker, material.blank_image, state_dir=small_disk.path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(60)
    process = _spawn_daemon(config, env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"})
    try:
        messages = [notify.recv(4096).decode()]
        assert messages[0].startswith("READY=1\nSTATUS=FAULT:"), messages
        assert "storage full" in messages[0]
        assert "damaged" not in messages[0]
        while "WATCHDOG=1" not in messages[-1]:  # fed while it waits
            messages.append(notify.recv(4096).decode())
        assert process.poll() is None  # still there, showing FAULT
        small_disk.make_room()
        while not (messages[-1].startswith("READY=1") and "ready" in messages[-1]):
            messages.append(notify.recv(4096).decode())
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        notify.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    log = out.decode()
    assert "showing FAULT until the disk has room" in log
    assert "the disk has room again: starting" in log
    assert "damaged" not in log


def _ward_encryption(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    private = ec.generate_private_key(ec.SECP256R1())
    public_path = tmp_path / "ward-encryption.pub"
    public_path.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public_path


def arrived(rig: Rig, count: int) -> Callable[[], bool]:
    """Whether the office has ``count`` results, opened and as they crossed the broker."""
    return lambda: len(rig.office.outcomes) >= count and len(rig.office.raw_results) >= count


def test_an_online_check_request_yields_an_encrypted_result_with_the_chips_files(
    material: Material, rig_factory: Callable[..., Rig], insert_card: InsertCard, tmp_path: Path
) -> None:
    """Issue 17 part 3: an office read_request under online_check with a consent reference: the result travels as a
    JWE the office opens, carries COM, DG1, DG13, DG14, DG15 and EF.SOD exactly as the chip holds them (each DG
    hashes to the SOD's value), DG2 only when the request asked for the photo, the AA answer to the office's
    challenge, and the profile's purpose, legal basis and the consent reference."""
    ward_private, ward_public = _ward_encryption(tmp_path)
    rig = rig_factory(decrypt_key=ward_private, paths={"ward_encryption_key": str(ward_public)})
    insert_card(material.spec, security=secure(material.spec))
    wait_until(lambda: rig.terminal.state is State.WAIT_KEY, what="card seen")
    trust = TrustStore.from_der([load_or_create_pki(material.trust_dir.parent / "pki").csca.certificate
                                 .public_bytes(Encoding.DER)])  # fmt: skip
    card_files = material.spec.image.applet_files
    for number, photo in enumerate((False, True), start=1):
        challenge = bytes([number]) * 8
        jti, payload = command(material, "read_request", key={"can": material.spec.secrets.can},
                               profile="online_check", include_photo=photo, consent_ref=f"HS-2026-00012{number}",
                               challenge=challenge.hex())  # fmt: skip
        rig.office.command(rig.broker, payload)
        rig.office.wait(arrived(rig, number))
        assert rig.office.outcomes[-1].verdict == "verified"
        wire = rig.office.raw_results[-1]
        assert jose.is_jwe(wire)
        person = load_profile("default").person
        for secret in (person.id_number, person.full_name, person.place_of_residence):
            assert secret.encode() not in wire
        row = rig.office.store._db.execute("SELECT document FROM results WHERE jti=?",
                                           (rig.office.outcomes[-1].jti,)).fetchone()  # fmt: skip
        document = ResultDocument.model_validate(json.loads(row[0]))
        assert (document.request_id, document.procedure_profile.value) == (jti, "online_check")
        assert document.processing is not None
        assert document.processing.consent_ref == f"HS-2026-00012{number}"
        assert check_active_auth(document, challenge).passed
        assert document.chip_files is not None
        files = document.chip_files.by_name()
        assert set(files) == {"COM", "DG1", "DG13", "DG14", "DG15", "SOD"} | ({"DG2"} if photo else set())
        assert files["COM"] == card_files[FID_COM]
        assert files["SOD"] == card_files[FID_SOD]
        groups = {int(name[2:]): content for name, content in files.items() if name.startswith("DG")}
        assert all(content == card_files[dg_fid(n)] for n, content in groups.items())
        checks = {c.name: c for c in passive_authentication(parse_sod(files["SOD"]), groups, trust,
                                                           datetime.now(UTC))}  # fmt: skip
        assert checks["sod_signature"].status is CheckStatus.PASSED
        assert checks["dg_hashes"].status is CheckStatus.PASSED, checks["dg_hashes"].reason
        assert document.citizen is not None
        assert document.citizen.photo_jpeg_b64 is None  # the face travels once, as DG2
        wait_until(lambda: rig.terminal.state is State.READY, what="ready for the next request")
    assert rig.office.store.record_online_answer(rig.office.outcomes[-1].jti or "", b'{"status":"valid"}',
                                                 time.time()).iss == TERMINAL  # fmt: skip


def test_online_check_is_refused_without_a_ward_encryption_key(material: Material,
                                                               rig_factory: Callable[..., Rig]) -> None:  # fmt: skip
    rig = rig_factory()  # results only signed
    jti, payload = command(material, "read_request", key={"can": material.spec.secrets.can}, profile="online_check")
    _, photo = command(material, "read_request", key={"can": material.spec.secrets.can}, include_photo=True)
    rig.office.command(rig.broker, payload)
    rig.office.command(rig.broker, photo)
    rig.office.wait(lambda: len([e for e in rig.office.events if e.get("event") == "command_rejected"]) == 2)
    refusals = [(e["reason"], e["jti"]) for e in rig.office.events if e.get("event") == "command_rejected"]
    assert refusals[0] == ("encryption_required", jti)
    assert refusals[1][0] == "photo_not_needed"  # the terminal's residence profile never reads the face
    assert rig.terminal.state is State.READY
    assert rig.terminal.stats.get("reads_started", 0) == 0


# --- the reader's own LEDs (issue 18 part 5) ---------------------------------------------------------------------

#: A vpcd reader with an ACR122U's LED and buzzer (edge/sim/reader.py), carrying everything a read needs.
LED_READER = ReaderModel("acr122u-leds", escape="acs-pseudo-apdu")


def reader_shown(card: SimulatedCard) -> list[str]:
    """The patterns the simulated reader was asked to show, in order, a re-send of the same one counted once."""
    assert card.virtual_reader is not None
    names = {acs_led_command(pattern).apdu()[3:]: name for name, pattern in PATTERNS.items()}
    with card.virtual_reader.log.lock:
        commands = list(card.virtual_reader.log.indicators)
    shown = [names[bytes((c.led_control, 4, c.t1, c.t2, c.repetitions, c.buzzer))] for c in commands]
    return [name for i, name in enumerate(shown) if i == 0 or shown[i - 1] != name]


@pytest.mark.parametrize(("profile", "verdict", "final"), [
    pytest.param("default", "verified", "success", id="genuine"),
    pytest.param("forged-dg13", "failed", "failure", id="forged DG13"),
])  # fmt: skip
def test_a_terminal_without_gpio_shows_its_states_on_the_readers_leds(
    profile: str, verdict: str, final: str, material: Material, rig_factory: Callable[..., Rig],
    insert_card: InsertCard,
) -> None:  # fmt: skip
    """``gpio = false`` and the reader's LEDs (its profile forced: vpcd's own has none): the real composition sends
    each state the loop switches to through the reader watcher's PC/SC context, the scanning one before the read
    and the result after it (queued while the worker holds the context). The card lies there from the start, as the
    test stack models the transmit path only (vpcd carries no SCardControl for a reader without a card)."""
    spec = build_card(load_profile(profile), pki_dir=material.trust_dir.parent / "pki")
    card = insert_card(spec, security=secure(spec), model=LED_READER)
    rig = rig_factory(indicators={"gpio": False, "reader_leds": "acr122u"}, timeouts={"show_result": 60})
    wait_until(lambda: reader_shown(card) == ["ready", "scanning"], what="ready, then scanning for the card")
    rig.camera.show("qr")
    rig.office.wait(lambda: len(rig.office.outcomes) >= 1)
    assert rig.office.outcomes[0].verdict == verdict
    wait_until(lambda: reader_shown(card)[-1] == final, what=final)
    assert reader_shown(card) == ["ready", "scanning", final]
    assert rig.terminal.snapshot.indicator.value == final
    assert rig.pins.pins == {}  # no GPIO pin was opened
