"""End-to-end receipts with real processes: the terminal's outbox (SQLite) and publisher, a real mosquitto, the real
office gateway (edge/office/gateway.py) storing in SQLite and signing receipts; the daemon itself (``cccd-edge run``)
killed with SIGKILL between PUBACK and receipt.

What each test shows would have been lost (or silently taken) before receipts: a result the broker had
acknowledged was deleted at once, so a broker restart without persistence, or a gateway that never got it, lost it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from edge import signers
from edge.daemon.mqtt import MqttSettings, ResultPublisher, Topics, close_loop_sockets
from edge.daemon.office_commands import ReplayGuard
from edge.daemon.outbox import Outbox
from edge.daemon.receipts import ReceiptChecker, trusted_now
from edge.office.gateway_config import GatewayConfig
from edge.office.store import ResultStore
from edge.protocol import jose
from edge.protocol.receipt import receipt_claims, sign_receipt
from tests.fixtures.clockshift import shifted_env
from tests.fixtures.mqtt import MosquittoBroker
from tests.support.gateway import gateway_config, start_gateway
from tests.support.terminal_daemon import TERMINAL, write_terminal_daemon
from tests.support.waiting import wait_until
from tests.support.ward import NOW, WARD, Ward

pytestmark = pytest.mark.stack

PREFIX = "cccd-edge/v1"
TOPICS = Topics(PREFIX, WARD, TERMINAL)
WAIT = 30.0


class Watcher:
    """The terminal's ``/event`` and ``/status`` as the office sees them; also publishes on its receipt topic (a
    test client at a broker without ACL: the hostile or misconfigured gateway)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.events: list[dict[str, Any]] = []
        self.status: dict[str, Any] = {}
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{uuid.uuid4().hex[:8]}",
                                   protocol=mqtt.MQTTv5)
        self._client.on_message = self._received
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.on_connect = lambda client, *_args: client.subscribe(
            [(TOPICS.event, 1), (TOPICS.status, 1)])
        self._client.reconnect_delay_set(1, 1)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert subscribed.wait(10)

    def _received(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            if message.topic == TOPICS.event:
                self.events.append(json.loads(message.payload))
            elif message.payload:
                self.status = json.loads(message.payload)

    def refusals(self) -> list[str]:
        with self._lock:
            return [event["reason"] for event in self.events if event.get("event") == "receipt_refused"]

    def send_receipt(self, token: bytes) -> None:
        self._client.publish(TOPICS.receipt, token, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        close_loop_sockets(self._client)


@pytest.fixture
def receipt_key(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    """The key the gateway signs receipts with (a ward's command key), as a 0600 PEM file for its config."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ward-command.key"
    signers.write_private_key(key, path)
    return key, path


def _gateway_config(broker: MosquittoBroker, storage: Path, *, receipt_key: Path | None, ward: Ward | None = None,
                    terminal_cert: Path | None = None) -> GatewayConfig:  # fmt: skip
    trust: dict[str, Any] = {"ward_ca": str(ward.ca_path)} if ward is not None else {}
    if terminal_cert is not None:
        trust["terminal_certs"] = [str(terminal_cert)]
    return gateway_config(broker, storage, trust=trust, receipt_key=receipt_key)


def _stored(storage: Path) -> list[tuple[int, str]]:
    """(seq, jti) of every result the office holds for the terminal (its key (iss, jti) keeps each once)."""
    store = ResultStore(storage, {})
    try:
        return store.stored(TERMINAL)
    finally:
        store.close()


@dataclass
class TerminalSide:
    """The terminal's delivery as the daemon composes it with receipts: outbox, checker, publisher."""

    outbox: Outbox
    publisher: ResultPublisher
    replay: ReplayGuard

    def stop(self) -> None:
        self.publisher.stop()
        self.outbox.close()
        self.replay.close()


@pytest.fixture
def terminal_side(tmp_path: Path) -> Iterator[Callable[..., TerminalSide]]:
    made: list[TerminalSide] = []

    def make(broker: MosquittoBroker, key: ec.EllipticCurvePublicKey, *, receipt_timeout: float = 1.0,
             now: int = NOW) -> TerminalSide:  # fmt: skip
        state = tmp_path / "state"
        outbox = Outbox(state / "outbox.db", max_count=100, max_bytes=10_000_000)
        replay = ReplayGuard(state / "receipts.db")
        checker = ReceiptChecker({jose.key_id(key): key}, terminal_id=TERMINAL, ward_code=WARD, replay=replay,
                                 time=lambda: trusted_now(now))  # fmt: skip
        settings = MqttSettings(host=broker.host, port=broker.port, topics=TOPICS, client_id=TERMINAL,
                                reconnect_min_delay=0.5, reconnect_max_delay=1.0, inflight_window=5,
                                receipt_timeout=receipt_timeout, republish_max_delay=2 * receipt_timeout,
                                message_expiry=3600)  # fmt: skip
        publisher = ResultPublisher(settings, outbox, receipts=checker)
        publisher.start()
        assert publisher.commands_subscribed.wait(10)
        side = TerminalSide(outbox, publisher, replay)
        made.append(side)
        return side

    yield make
    for side in made:
        side.stop()


# --- through the publisher -----------------------------------------------------------------------------------------


def test_a_result_lost_by_a_broker_restart_without_persistence_after_its_puback_is_stored_once(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], ward: Ward,
    receipt_key: tuple[ec.EllipticCurvePrivateKey, Path], terminal_side: Callable[..., TerminalSide],
) -> None:  # fmt: skip
    """The gateway is away (its session at the broker holds what arrives), the terminal gets PUBACKs for five
    results, the broker restarts without persistence (session and results gone): the terminal publishes them again,
    the gateway stores each once and receipts it, and the outbox empties. Before receipts the five were gone."""
    broker = mqtt_broker_factory(persistence=False)
    storage = tmp_path / "office" / "results.db"
    config = _gateway_config(broker, storage, receipt_key=receipt_key[1], ward=ward)
    start_gateway(config, lambda: float(NOW)).stop()  # its session now waits at the broker, collecting results
    t1 = ward.terminal(TERMINAL)
    side = terminal_side(broker, receipt_key[0].public_key())
    for _ in range(5):
        side.outbox.enqueue(t1.token)
    side.publisher.notify()
    assert side.publisher.wait_published(WAIT)
    assert (side.outbox.stats().count, side.outbox.stats().awaiting) == (5, 5)  # PUBACKed, kept

    broker.stop()
    broker.start()  # no persistence: the gateway's session and the results queued in it are gone
    gateway = start_gateway(config, lambda: float(NOW))
    try:
        assert side.publisher.wait_drained(WAIT), f"outbox still holds {side.outbox.stats()}"
        assert [seq for seq, _ in _stored(storage)] == [1, 2, 3, 4, 5]
        assert side.publisher.republished >= 5
        # A receipt deletes its results, then the publisher counts them: the outbox can be empty a moment earlier.
        wait_until(lambda: side.publisher.delivered == 5, "the five receipted results counted delivered")
        assert gateway.stats.stored == 5
        assert not side.publisher.receipts_refused
    finally:
        gateway.stop()


def test_forged_foreign_expired_replayed_and_unsigned_receipts_are_refused_reported_and_the_result_stays(
    mqtt_broker_factory: Callable[..., MosquittoBroker], ward: Ward,
    receipt_key: tuple[ec.EllipticCurvePrivateKey, Path], terminal_side: Callable[..., TerminalSide],
    mqtt_contract_exempt: Callable[..., None],
) -> None:  # fmt: skip
    """Receipts the terminal must not believe, each naming its result: every one refused with its reason on
    ``/event`` and the result kept; then a good receipt takes it, and that receipt replayed is refused too."""
    broker = mqtt_broker_factory()
    watcher = Watcher(broker)
    key = receipt_key[0]
    side = terminal_side(broker, key.public_key(), receipt_timeout=600.0)  # no republish during the test
    t1 = ward.terminal(TERMINAL)
    side.outbox.enqueue(t1.token)
    side.outbox.enqueue(t1.token)
    side.publisher.notify()
    assert side.publisher.wait_published(WAIT)
    link = side.publisher._client.socket()
    assert isinstance(link, socket.socket)
    # Nagle off: the PUBACK owed for a receipt no longer holds the next result for the broker's delayed ACK (40 ms)
    assert link.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    (first, second) = side.outbox.entries([entry_id for entry_id, _ in side.outbox.awaiting()])
    names = [(first.seq, str(first.jti))]

    def receipt(*, signer: ec.EllipticCurvePrivateKey = key, terminal: str = TERMINAL, ward_code: str = WARD,
                now: int = NOW, lifetime: int = 3600) -> bytes:  # fmt: skip
        claims = receipt_claims(gateway="gateway:office-1", terminal_id=terminal, ward_code=ward_code, results=names,
                                now=now, jti=str(uuid.uuid4()), lifetime=lifetime)  # fmt: skip
        return sign_receipt(claims, signer)

    body = receipt_claims(gateway="gateway:office-1", terminal_id=TERMINAL, ward_code=WARD, results=names, now=NOW,
                          jti=str(uuid.uuid4())).model_dump(mode="json")  # fmt: skip
    header = {"kid": jose.key_id(key.public_key()), "typ": "cccd-receipt+jwt"}
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = jose.sign_compact({**header, "alg": "ES256"}, body, lambda data: jose.es256_signature(forger, data))
    unsigned = jose.sign_compact({**header, "alg": "none"}, body, lambda data: b"")
    mqtt_contract_exempt(forged.encode(), unsigned.encode())
    refused = [
        (receipt(signer=forger), "unknown_key"),  # a gateway this terminal was never told to trust
        (forged.encode(), "bad_signature"),  # the trusted key's id, someone else's signature
        (unsigned.encode(), "malformed"),
        (receipt(terminal="T-02"), "wrong_terminal"),
        (receipt(ward_code="99999"), "wrong_terminal"),
        (receipt(now=NOW - 7200, lifetime=600), "expired"),
    ]
    for token, _reason in refused:
        watcher.send_receipt(token)
    wait_until(lambda: len(watcher.refusals()) == len(refused), "the refusals on /event")
    assert watcher.refusals() == [reason for _token, reason in refused]
    assert side.outbox.stats().awaiting == 2, "a refused receipt takes nothing"

    good = receipt()
    watcher.send_receipt(good)
    wait_until(lambda: side.outbox.stats().count == 1, "the good receipt taking its result")
    watcher.send_receipt(good)
    wait_until(lambda: len(watcher.refusals()) == len(refused) + 1, "the replay refused")
    assert watcher.refusals()[-1] == "replayed"
    assert [entry.seq for entry in side.outbox.entries([second.id])] == [second.seq]
    assert side.publisher.receipts_accepted == 1
    assert sum(side.publisher.receipts_refused.values()) == len(refused) + 1
    watcher.close()


def test_puback_only_delivery_deletes_on_puback_as_before(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], ward: Ward,
) -> None:  # fmt: skip
    """A ward whose consumer sends no receipts: the PUBACK ends delivery (from then on the broker holds the result,
    a week by default)."""
    broker = mqtt_broker_factory(persistence=True)
    storage = tmp_path / "office" / "results.db"
    gateway = start_gateway(_gateway_config(broker, storage, receipt_key=None, ward=ward), lambda: float(NOW))
    outbox = Outbox(tmp_path / "state" / "outbox.db", max_count=100, max_bytes=10_000_000)
    settings = MqttSettings(host=broker.host, port=broker.port, topics=TOPICS, client_id=TERMINAL)
    publisher = ResultPublisher(settings, outbox)
    publisher.start()
    try:
        t1 = ward.terminal(TERMINAL)
        for _ in range(3):
            outbox.enqueue(t1.token)
        publisher.notify()
        assert publisher.wait_drained(WAIT)
        assert outbox.stats().count == 0
        assert (publisher.delivered, publisher.republished) == (3, 0)
        wait_until(lambda: len(_stored(storage)) == 3, "the office storing them")
        assert gateway.stats.receipts == 0
    finally:
        publisher.stop()
        outbox.close()
        gateway.stop()


# --- the daemon ----------------------------------------------------------------------------------------------------


def _public(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def _end(process: subprocess.Popen[bytes]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return (out + err).decode(errors="replace")


def test_kill_9_between_puback_and_receipt_republishes_after_restart_and_stores_once(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker],
    receipt_key: tuple[ec.EllipticCurvePrivateKey, Path], pcsc_stack: object, clock_shim: Path,
) -> None:  # fmt: skip
    """``cccd-edge run`` publishes five results and gets their PUBACKs while the gateway is away; it is killed
    (SIGKILL) before any receipt, and the broker restarts without persistence, so the results are nowhere but in the
    dead terminal's outbox. The restarted daemon publishes them again; the gateway stores each once, receipts them
    (the office's key is the ward command key the terminal was provisioned with) and the outbox empties. The
    restarted daemon's clock is not NTP-synchronised: the receipts' signed time gives it the office's."""
    broker = mqtt_broker_factory(persistence=False)
    daemon = write_terminal_daemon(tmp_path, broker, _public(receipt_key[0], tmp_path / "ward-command.pub"),
                                   mode="receipt")
    storage = tmp_path / "office" / "results.db"
    config = _gateway_config(broker, storage, receipt_key=receipt_key[1], terminal_cert=daemon.device_pub)
    start_gateway(config).stop()  # away: its session at the broker collects the results
    daemon.prefill(5)
    first = daemon.spawn(output=subprocess.PIPE)
    try:
        wait_until(lambda: daemon.outbox_stats() == (5, 5), "five PUBACKs")
    finally:
        first.kill()  # SIGKILL: no goodbye
        first.communicate()
    broker.stop()
    broker.start()
    gateway = start_gateway(config)
    watcher = Watcher(broker)
    second = daemon.spawn(shifted_env(clock_shim, None, ntp="unsync"), output=subprocess.PIPE)
    log = ""
    try:
        wait_until(lambda: daemon.outbox_stats() == (0, 0), "the receipts emptying the outbox")
        assert [seq for seq, _ in _stored(storage)] == [1, 2, 3, 4, 5]
        assert gateway.stats.stored == 5
        assert gateway.stats.receipts >= 1
        wait_until(lambda: watcher.status.get("clock") == {"synchronised": True, "source": "office"},
                   "the office's time from a receipt")
    finally:
        log = _end(second)
        gateway.stop()
        watcher.close()
    assert "receipt refused" not in log
    assert "clock: office time" in log


def test_the_daemon_shows_both_queues_and_offline_queued_while_the_office_sends_no_receipts(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker],
    receipt_key: tuple[ec.EllipticCurvePrivateKey, Path], pcsc_stack: object,
) -> None:  # fmt: skip
    """Receipts expected, but the office's gateway sends none (no receipt key): the results are stored at the office
    and kept at the terminal; its status says ``queued`` 0 and ``awaiting_receipt`` 3, and after a few
    republishes, with the broker reachable all along, the indicator is ``offline_queued``. Then a PUBACK-only
    terminal (the ward's right setting for that office) empties its outbox on the PUBACKs."""
    broker = mqtt_broker_factory()
    watcher = Watcher(broker)
    daemon = write_terminal_daemon(tmp_path, broker, _public(receipt_key[0], tmp_path / "ward-command.pub"),
                                   mode="receipt")
    storage = tmp_path / "office" / "results.db"
    gateway = start_gateway(_gateway_config(broker, storage, receipt_key=None, terminal_cert=daemon.device_pub))
    daemon.prefill(3)
    process = daemon.spawn(output=subprocess.PIPE)
    try:
        wait_until(lambda: watcher.status.get("indicator") == "offline_queued", "offline_queued with the broker up")
        assert (watcher.status["queued"], watcher.status["awaiting_receipt"]) == (0, 3)
        assert watcher.status["state"] == "online"
        assert [seq for seq, _ in _stored(storage)] == [1, 2, 3]  # stored once, however often published
        assert gateway.stats.duplicates >= 3
    finally:
        _end(process)
    daemon.config.write_text(daemon.config.read_text(encoding="utf-8").replace('mode = "receipt"', 'mode = "puback"'),
                             encoding="utf-8")
    process = daemon.spawn(output=subprocess.PIPE)
    try:
        wait_until(lambda: daemon.outbox_stats() == (0, 0), "PUBACK-only: the outbox emptied on the PUBACKs")
        wait_until(lambda: (watcher.status.get("queued"), watcher.status.get("awaiting_receipt")) == (0, 0)
                   and watcher.status.get("indicator") not in (None, "offline_queued"), "both queues empty, no warning")
    finally:
        _end(process)
        gateway.stop()
        watcher.close()
