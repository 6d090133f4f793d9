"""Delivery through a real mosquitto: nothing lost across a broker outage, exactly once after de-dup, in seq order,
mutual TLS, retained status, commands in."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.daemon import signing
from edge.daemon.mqtt import MqttSettings, ResultPublisher, Topics
from edge.daemon.outbox import Outbox
from tests.fixtures.mqtt import MosquittoBroker

pytestmark = pytest.mark.stack

TOPICS = Topics("cccd-edge/v1", "26734", "T-01")
NOW = 1_800_000_000


class Collector:
    """The office's side of the wire, minimal: a persistent-session subscriber that records every message."""

    def __init__(self, broker: MosquittoBroker, topic: str = "cccd-edge/v1/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="office-collector", protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        if broker.pki is not None:
            self.client.tls_set(ca_certs=str(broker.pki.ca_cert), certfile=str(broker.pki.client_cert),
                                keyfile=str(broker.pki.client_key))
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=session)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[str, bytes, bool]]], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"timed out; got {len(self.messages)} messages"
                self._changed.wait(remaining)

    def results(self) -> list[dict[str, object]]:
        return [json.loads(signing.b64url_decode(payload.decode().split(".")[1]))
                for topic, payload, _ in self.messages if topic == TOPICS.result]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _settings(broker: MosquittoBroker, **overrides: object) -> MqttSettings:
    base: dict[str, object] = {"host": broker.host, "port": broker.port, "topics": TOPICS, "client_id": "T-01",
                               "reconnect_min_delay": 1, "reconnect_max_delay": 2, "inflight_window": 5}
    if broker.pki is not None:
        base |= {"tls": True, "ca_file": broker.pki.ca_cert, "cert_file": broker.pki.client_cert,
                 "key_file": broker.pki.client_key}
    return MqttSettings(**(base | overrides))  # type: ignore[arg-type]


@pytest.fixture
def signer() -> signing.KeySigner:
    return signing.KeySigner(ec.generate_private_key(ec.SECP256R1()))


def _produce(outbox: Outbox, signer: signing.KeySigner, count: int) -> None:
    for _ in range(count):
        outbox.enqueue(lambda seq: signing.sign_jws(signer, signing.result_claims(
            terminal_id="T-01", kid=signer.kid, seq=seq, document={"verdict": "verified"}, now=NOW,
            lifetime=3600), typ=signing.RESULT_TYP).encode())


def _outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "state" / "outbox.db", max_count=1000, max_bytes=10_000_000)


def _first_arrivals(results: list[dict[str, object]]) -> list[int]:
    seen: set[object] = set()
    order: list[int] = []
    for claims in results:
        key = (claims["iss"], claims["jti"])
        if key not in seen:
            seen.add(key)
            order.append(int(str(claims["seq"])))
    return order


def test_outage_loses_nothing_and_keeps_order(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], signer: signing.KeySigner
) -> None:
    broker = mqtt_broker_factory(persistence=True)
    collector = Collector(broker)
    outbox = _outbox(tmp_path)
    links: list[bool] = []
    publisher = ResultPublisher(_settings(broker), outbox, on_link_change=links.append)
    publisher.start()
    try:
        _produce(outbox, signer, 10)
        publisher.notify()
        assert publisher.wait_drained(20)

        broker.stop()
        for _ in range(50):  # produced one by one while the broker is down
            _produce(outbox, signer, 1)
            publisher.notify()
        assert outbox.stats().count + publisher.delivered >= 60 - 5  # at most the window was in flight
        assert outbox.stats().count >= 45

        broker.start()
        assert publisher.wait_drained(30)
        collector.wait_for(lambda msgs: len(_first_arrivals(
            [json.loads(signing.b64url_decode(p.decode().split(".")[1])) for t, p, _ in msgs if t == TOPICS.result]
        )) >= 60)
        assert _first_arrivals(collector.results()) == list(range(1, 61))
        assert outbox.stats().count == 0
        assert links[:2] == [True, False]
        assert links[-1] is True
    finally:
        publisher.stop()
        collector.close()
        outbox.close()


def test_restart_of_the_terminal_resumes_from_the_outbox(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], signer: signing.KeySigner
) -> None:
    broker = mqtt_broker_factory()
    outbox = _outbox(tmp_path)
    broker.stop()
    first = ResultPublisher(_settings(broker), outbox)
    first.start()
    _produce(outbox, signer, 7)
    first.notify()
    first.stop()  # the daemon stops (or dies) with everything undelivered
    outbox.close()

    broker.start()
    collector = Collector(broker)
    outbox = _outbox(tmp_path)
    second = ResultPublisher(_settings(broker), outbox)
    second.start()
    try:
        assert second.wait_drained(20)
        collector.wait_for(lambda msgs: sum(t == TOPICS.result for t, _, _ in msgs) >= 7)
        assert _first_arrivals(collector.results()) == list(range(1, 8))
    finally:
        second.stop()
        collector.close()
        outbox.close()


def test_mutual_tls_delivers_and_refuses_clients_without_certificate(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], signer: signing.KeySigner
) -> None:
    broker = mqtt_broker_factory(tls=True)
    assert broker.pki is not None
    collector = Collector(broker)
    outbox = _outbox(tmp_path)
    publisher = ResultPublisher(_settings(broker), outbox)
    publisher.start()
    try:
        _produce(outbox, signer, 3)
        publisher.notify()
        assert publisher.wait_drained(20)
        collector.wait_for(lambda msgs: sum(t == TOPICS.result for t, _, _ in msgs) >= 3)
    finally:
        publisher.stop()
        collector.close()
        outbox.close()

    accepted: list[bool] = []
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    anonymous.on_connect = lambda _c, _u, _f, reason, _p: accepted.append(not reason.is_failure)
    anonymous.tls_set(ca_certs=str(broker.pki.ca_cert))
    try:  # TLS 1.3 reports the missing client certificate after the handshake: as a reset, never a CONNACK
        anonymous.connect(broker.host, broker.port)
        for _ in range(20):
            if anonymous.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                break
    except OSError:
        pass
    assert True not in accepted


def test_status_events_and_commands(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    collector = Collector(mqtt_broker)
    outbox = _outbox(tmp_path)
    commands: list[bytes] = []
    got_command = threading.Event()

    def on_command(payload: bytes) -> None:
        commands.append(payload)
        got_command.set()

    publisher = ResultPublisher(_settings(mqtt_broker, client_id="T-01-status"), outbox, on_command=on_command)
    publisher.start()
    try:
        publisher.set_status(state="ready", queued=0)
        publisher.publish_event({"event": "command_rejected", "reason": "replayed"})
        collector.wait_for(lambda msgs: any(t == TOPICS.event for t, _, _ in msgs)
                           and any(t == TOPICS.status and b"ready" in p for t, p, _ in msgs))
        deadline = time.monotonic() + 10
        while not publisher.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        collector.client.publish(TOPICS.cmd, b"header.claims.signature", qos=1).wait_for_publish(5)
        assert got_command.wait(10)
        assert commands == [b"header.claims.signature"]
    finally:
        publisher.stop()
        collector.wait_for(lambda msgs: any(t == TOPICS.status and b"offline" in p for t, p, _ in msgs))
        collector.close()
        outbox.close()
