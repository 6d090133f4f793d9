"""A terminal with a wrong clock, as a real process: ``cccd-edge run`` under an LD_PRELOAD shim that shifts its wall
clock (to 1970, to 2020, a year ahead) and makes the kernel say the clock is not NTP-synchronised, against a real
pcscd with a virtual card and a real mosquitto. The test process and the office keep the real time.

The finding (issue 13): at 1970 a genuine card's verdict was ``failed`` (DS "not valid yet") and nothing said the
clock was wrong. Now the read works and says so; a signed ping from the office gives the terminal its time (the
next read checks dates again), and the trusted time survives a restart as the floor.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from edge import signers
from edge.protocol import jose
from edge.protocol.clock import BUILD_FLOOR, parse_trusted_time
from edge.protocol.result import ResultDocument
from edge.protocol.verify.checks import CLOCK_NOT_SYNCHRONISED
from edge.sim.builder import build_card
from edge.sim.card_qr import card_qr_text, write_qr_frame
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import SimCardSpec
from edge.sim.pki import load_or_create_pki
from edge.sim.profile import load_profile
from edge.sim.runner import SimulatedCard
from edge.sim.stack import READER_NAMES
from tests.fixtures.clockshift import EPOCH_1970, IN_2020, shifted_env
from tests.fixtures.mqtt import MosquittoBroker
from tests.fixtures.pcsc import InsertCard

pytestmark = pytest.mark.stack

WARD, TERMINAL = "26734", "T-01"
REPO = Path(__file__).resolve().parents[2]
TOPICS = f"cccd-edge/v1/{WARD}/{TERMINAL}"


@dataclass(frozen=True)
class Material:
    spec: SimCardSpec
    config: Path
    state_dir: Path
    device_key: ec.EllipticCurvePrivateKey
    ward_key: signers.KeySigner


@pytest.fixture
def material(tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker]) -> Material:
    broker = mqtt_broker_factory()
    profile = load_profile("default")
    spec = build_card(profile, pki_dir=tmp_path / "pki")
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "csca.pem").write_bytes(load_or_create_pki(tmp_path / "pki").csca_certificate_path.read_bytes())
    device_key = ec.generate_private_key(ec.SECP256R1())
    signers.write_private_key(device_key, tmp_path / "device.key")
    ward_key = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    (tmp_path / "ward.pub").write_bytes(ward_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    qr = write_qr_frame(card_qr_text(profile.qr_person), tmp_path / "qr.png")
    state_dir = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(
        f'terminal_id = "{TERMINAL}"\nward_code = "{WARD}"\nreader_name = "{READER_NAMES[0]}"\n'
        f'[paths]\nstate_dir = "{state_dir}"\ndevice_key = "{tmp_path / "device.key"}"\n'
        f'trust_store = "{trust}"\nward_command_key = "{tmp_path / "ward.pub"}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\ntls = false\nkeepalive = 5\n'
        f'[camera]\nsource = "replay"\nreplay_path = "{qr}"\nfps = 10\nqr_repeat_after = 0.3\n'
        "[timeouts]\nshow_result = 0.3\nwait_for_card = 60\n",
        encoding="utf-8",
    )
    return Material(spec, config, state_dir, device_key, ward_key)


class Office:
    """Listens to the terminal's topics (status, events, results) and sends it signed commands, in real time."""

    def __init__(self, broker_host: str, broker_port: int, ward_key: signers.KeySigner) -> None:
        self.ward_key = ward_key
        self.status: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.results: list[bytes] = []
        self._changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"office-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)  # fmt: skip
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(f"{TOPICS}/+", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._message
        self.client.connect(broker_host, broker_port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            leaf = message.topic.rsplit("/", 1)[-1]
            if leaf == "status":
                self.status = json.loads(message.payload)
            elif leaf == "event":
                self.events.append(json.loads(message.payload))
            elif leaf == "result":
                self.results.append(message.payload)
            self._changed.notify_all()

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"timed out waiting for {what}; status {self.status}, events {self.events}"
                self._changed.wait(min(remaining, 0.1))

    def ping(self) -> int:
        """A signed ping with the office's (real) time; returns its iat."""
        iat = int(time.time())
        claims = {"iss": f"ward-{WARD}", "aud": TERMINAL, "jti": str(uuid.uuid4()), "iat": iat, "exp": iat + 60,
                  "cmd": "ping"}  # fmt: skip
        token = jose.sign_jws(self.ward_key, claims, typ=jose.COMMAND_TYP).encode()
        self.client.publish(f"{TOPICS}/cmd", token, qos=1).wait_for_publish(5)
        return iat

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def office(material: Material) -> Iterator[Office]:
    host, port = _broker_address(material.config)
    listener = Office(host, port, material.ward_key)
    yield listener
    listener.close()


def _broker_address(config: Path) -> tuple[str, int]:
    text = config.read_text(encoding="utf-8")
    host = text.split('host = "', 1)[1].split('"', 1)[0]
    port = int(text.split("port = ", 1)[1].split("\n", 1)[0])
    return host, port


class Daemon:
    """``cccd-edge run`` with its clock shifted to ``target`` (the kernel saying it is not NTP-synchronised)."""

    def __init__(self, material: Material, shim: Path, target: datetime, log: Path) -> None:
        env = shifted_env(shim, target)
        env |= {"GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}
        self._log = log.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(material.config)],
                                        cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)  # fmt: skip

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def _document(token: bytes, key: ec.EllipticCurvePrivateKey) -> tuple[dict[str, Any], ResultDocument]:
    """The signed claims and the result they carry (the signature checked; iat/exp are the office's business)."""
    _header, payload = jose.verify_es256(token, key.public_key())
    claims = json.loads(payload)
    return claims, ResultDocument.model_validate(claims["result"])


def _checks(document: ResultDocument) -> dict[str, tuple[str, str]]:
    return {check.name: (check.status.value, check.reason) for check in document.checks}


def _present(office: Office, card: SimulatedCard, *, take_away: bool = True) -> None:
    """Present the card once more: take it away, let the QR in view give the key, put it back; wait for the result."""
    before = len(office.results)
    if take_away:
        card.remove()
    office.wait(lambda: office.status.get("terminal_state") == "wait_card", "the QR's key, no card on the reader")
    card.insert()
    office.wait(lambda: len(office.results) > before, "a result")


@pytest.mark.parametrize(
    "target",
    [pytest.param(EPOCH_1970, id="1970"), pytest.param(IN_2020, id="2020"),
     pytest.param(datetime.now(UTC) + timedelta(days=365), id="a-year-ahead")],
)  # fmt: skip
def test_a_terminal_with_a_wrong_clock_reads_a_genuine_card_says_so_and_takes_the_office_time(
    target: datetime, material: Material, office: Office, daemons: list[Daemon], clock_shim: Path,
    insert_card: InsertCard, tmp_path: Path,
) -> None:
    log = tmp_path / "daemon.log"
    daemons.append(Daemon(material, clock_shim, target, log))

    # 1. It starts, says the clock is not synchronised (status and event), and a genuine card is not failed.
    office.wait(lambda: office.status.get("clock") == {"synchronised": False, "source": "none"}, "status clock")
    assert any(e.get("event") == "clock_not_synchronised" for e in office.events)
    office.wait(lambda: office.status.get("terminal_state") == "wait_card", "the QR's key")
    card = insert_card(material.spec, security=SimChipSecurity(material.spec.secrets, material.spec.quirks))
    office.wait(lambda: len(office.results) == 1, "the first result")
    claims, document = _document(office.results[-1], material.device_key)
    assert document.verdict.value == "verified", _checks(document)
    assert _checks(document)["ds_validity"] == ("not_performed", CLOCK_NOT_SYNCHRONISED)
    assert "CSCA validity not performed" in _checks(document)["ds_chain"][1]
    assert document.clock is not None
    assert (document.clock.synchronised, document.clock.source, document.clock.evidence_time) == (False, "none", None)
    assert document.clock.floor == BUILD_FLOOR  # a fresh terminal knows only the software's date
    expected = max(target, BUILD_FLOOR)  # the system's word, never before the floor
    assert abs(document.completed_at - expected) < timedelta(hours=1)
    assert claims["iat"] == int(document.completed_at.timestamp())

    # 2. A signed ping from the office: the terminal takes the office's time, says so, and checks dates again.
    iat = office.ping()
    office.wait(lambda: office.status.get("clock") == {"synchronised": True, "source": "office"}, "office time")
    assert any(e.get("event") == "clock_synchronised" and e.get("source") == "office" for e in office.events)
    _present(office, card)
    claims, document = _document(office.results[-1], material.device_key)
    assert document.verdict.value == "verified"
    assert _checks(document)["ds_validity"][0] == "passed"
    assert document.clock is not None
    assert (document.clock.synchronised, document.clock.source) == (True, "office")
    assert document.clock.evidence_time == document.completed_at
    assert document.completed_at >= datetime.fromtimestamp(iat, UTC)  # the office's time carried forward
    assert claims["iat"] >= iat

    # 3. Stopped and started again with the wrong clock: not synchronised, but the floor is the saved trusted time.
    card.remove()
    daemons[-1].stop()
    saved = material.state_dir / "clock.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    trusted = parse_trusted_time(saved.read_bytes())
    assert (trusted.source, trusted.at >= datetime.fromtimestamp(iat, UTC)) == ("office", True)
    daemons.append(Daemon(material, clock_shim, target, log))
    office.wait(lambda: office.status.get("clock") == {"synchronised": False, "source": "none"}, "restart")
    _present(office, card, take_away=False)
    _claims, document = _document(office.results[-1], material.device_key)
    assert document.verdict.value == "verified"
    assert document.clock is not None
    assert document.clock.floor == trusted.at
    assert document.completed_at >= trusted.at  # never before a time the terminal knows has passed
