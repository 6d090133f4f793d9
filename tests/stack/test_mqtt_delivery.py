"""Delivery through a real mosquitto: nothing lost across a broker outage, exactly once after de-dup, in seq order,
mutual TLS, retained status, commands in."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge import __version__, signers
from edge.config import parse_config
from edge.daemon.backoff import RetryClock
from edge.daemon.health import Liveness
from edge.daemon.mqtt import PUBLISHER_THREAD, MqttSettings, ResultPublisher, Topics
from edge.daemon.outbox import Outbox
from edge.office.receiver import Outcome, Receiver, ResultStore
from edge.protocol import jose
from edge.protocol.result import QrUsage, ReadTiming
from tests.fixtures.mqtt import MosquittoBroker
from tests.fixtures.storage import SmallDisk
from tests.support.results import sample_result
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack

TOPICS = Topics("cccd-edge/v1", "26734", "T-01")
NOW = 1_800_000_000


class Collector:
    """The office's side of the wire, minimal: a persistent-session subscriber that records every message."""

    def __init__(self, broker: MosquittoBroker, topic: str = "cccd-edge/v1/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.expiry: dict[str, list[int | None]] = {}  # topic -> each message's remaining Message Expiry Interval
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
        expiry = getattr(message.properties, "MessageExpiryInterval", None)
        with self._changed:
            self.expiry.setdefault(message.topic, []).append(expiry)
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
        return [json.loads(jose.b64url_decode(payload.decode().split(".")[1]))
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
def signer() -> signers.KeySigner:
    return signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))


def _produce(outbox: Outbox, signer: signers.KeySigner, count: int) -> None:
    for _ in range(count):
        outbox.enqueue(lambda seq: jose.sign_jws(signer, jose.result_claims(
            terminal_id="T-01", kid=signer.kid, seq=seq, document=_document(), now=NOW,
            lifetime=3600), typ=jose.RESULT_TYP).encode())


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
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], signer: signers.KeySigner
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
            [json.loads(jose.b64url_decode(p.decode().split(".")[1])) for t, p, _ in msgs if t == TOPICS.result]
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
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], signer: signers.KeySigner
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
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], signer: signers.KeySigner
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
    tmp_path: Path, mqtt_broker: MosquittoBroker, mqtt_contract_exempt: Callable[..., None]
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
        publisher.set_status(terminal_state="ready", queued=0)
        publisher.publish_event({"event": "command_rejected", "reason": "replayed"})
        collector.wait_for(lambda msgs: any(t == TOPICS.event for t, _, _ in msgs)
                           and any(t == TOPICS.status and b"ready" in p for t, p, _ in msgs))
        deadline = time.monotonic() + 10
        while not publisher.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        mqtt_contract_exempt(b"header.claims.signature")  # not a command: only the callback's plumbing is tested
        collector.client.publish(TOPICS.cmd, b"header.claims.signature", qos=1).wait_for_publish(5)
        assert got_command.wait(10)
        assert commands == [b"header.claims.signature"]
        assert all(expiry for expiry in collector.expiry[TOPICS.event])  # an event nobody fetched is dropped
        assert set(collector.expiry[TOPICS.status]) == {None}  # the retained status never expires
    finally:
        publisher.stop()
        collector.wait_for(lambda msgs: any(t == TOPICS.status and b"offline" in p for t, p, _ in msgs))
        collector.close()
        outbox.close()


def test_end_to_end_to_the_office_receiver_encrypted(
    tmp_path: Path, mqtt_broker: MosquittoBroker, signer: signers.KeySigner
) -> None:
    ward = ec.generate_private_key(ec.SECP256R1())
    store = ResultStore(tmp_path / "office" / "results.db", {signer.kid: signer.public_key}, decrypt_key=ward)
    outcomes: list[Outcome] = []
    done = threading.Event()

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if sum(o.status == "stored" for o in outcomes) == 20:
            done.set()

    receiver = Receiver(store, host=mqtt_broker.host, port=mqtt_broker.port, ward=TOPICS.ward,
                        client_id="office-e2e", on_outcome=record, clock=lambda: NOW)
    receiver.start()
    assert receiver.subscribed.wait(10)
    outbox = _outbox(tmp_path)
    publisher = ResultPublisher(_settings(mqtt_broker, client_id="T-01-e2e"), outbox)
    publisher.start()
    try:
        for _ in range(20):
            outbox.enqueue(lambda seq: jose.encrypt_jwe(jose.sign_jws(signer, jose.result_claims(
                terminal_id="T-01", kid=signer.kid, seq=seq, document=_document(), now=NOW, lifetime=3600),
                typ=jose.RESULT_TYP).encode(), ward.public_key()).encode())
            publisher.notify()
        assert done.wait(20)
        assert [seq for seq, _ in store.stored("T-01")] == list(range(1, 21))
        assert all(o.status == "stored" and not o.missing for o in outcomes)
    finally:
        publisher.stop()
        receiver.stop()
        store.close()
        outbox.close()


def _document() -> dict[str, object]:
    document = sample_result(ward_code=TOPICS.ward, qr=QrUsage(used=False), timing=ReadTiming(apdu_count=1, read_ms=1),
                             completed_at=datetime.now(UTC))
    return dict(json.loads(document.to_json()))


_TERMINAL_PROCESS = """
import sys, time
from pathlib import Path
from edge import signers
from edge.daemon.mqtt import MqttSettings, ResultPublisher, Topics
from edge.daemon.outbox import Outbox
from edge.protocol import jose

key, db, port, produce = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
terminal = sys.argv[5] if len(sys.argv) > 5 else "T-01"
signer = signers.FileKeySigner(key)
outbox = Outbox(db, max_count=10000, max_bytes=10**8)
publisher = ResultPublisher(
    MqttSettings("127.0.0.1", port, Topics("cccd-edge/v1", "26734", terminal), terminal, inflight_window=5),
    outbox, on_delivered=lambda seqs: print("D", *seqs, flush=True))
publisher.start()
for _ in range(produce):
    _, seq = outbox.enqueue(lambda s: jose.result_token(signer, terminal_id=terminal, seq=s, document=DOC,
                                                        now=int(time.time()), lifetime=3600))
    publisher.notify()
    print("E", seq, flush=True)
    time.sleep(0.002)
print("PRODUCED", flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("kill_after", [1, 8, 30])  # delivered results before the kill: early, in the window, late
def test_kill_9_of_the_terminal_mid_delivery_loses_nothing(
    tmp_path: Path, mqtt_broker: MosquittoBroker, kill_after: int
) -> None:
    import os
    import signal
    import subprocess
    import sys

    terminal_key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "device.key"
    signers.write_private_key(terminal_key, key_file)
    signer = signers.KeySigner(terminal_key)
    store = ResultStore(tmp_path / "office" / "results.db", {signer.kid: signer.public_key})
    receiver = Receiver(store, host=mqtt_broker.host, port=mqtt_broker.port, ward=TOPICS.ward,
                        client_id="office-kill9")
    receiver.start()
    assert receiver.subscribed.wait(10)
    db = tmp_path / "state" / "outbox.db"
    script = f"DOC = {_document()!r}\n" + _TERMINAL_PROCESS
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def spawn(produce: int) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", script, str(key_file), str(db), str(mqtt_broker.port),
                                 str(produce)], stdout=subprocess.PIPE, text=True, env=env)

    try:
        first = spawn(60)
        assert first.stdout is not None
        delivered = 0
        while delivered < kill_after:  # kill while results are still being produced and in flight
            line = first.stdout.readline()
            if line.startswith("D"):
                delivered += len(line.split()) - 1
            assert line, "the terminal process ended before the kill point"
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        first.stdout.close()
        committed = Outbox(db, max_count=1, max_bytes=1024)
        last_seq = committed.stats().last_seq
        committed.close()
        assert kill_after <= last_seq <= 60

        second = spawn(0)
        try:
            deadline = time.monotonic() + 30
            while len(store.stored("T-01")) < last_seq and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            second.kill()
            second.wait()
            assert second.stdout is not None
            second.stdout.close()
        assert [seq for seq, _ in store.stored("T-01")] == list(range(1, last_seq + 1))
    finally:
        receiver.stop()
        store.close()


def test_refused_by_the_broker_is_kept_reported_and_retried(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], signer: signers.KeySigner
) -> None:
    deny = "topic read cccd-edge/v1/#\ntopic write cccd-edge/v1/+/+/event\ntopic write cccd-edge/v1/+/+/status\n"
    broker = mqtt_broker_factory(acl=deny)
    collector = Collector(broker)
    outbox = _outbox(tmp_path)
    publisher = ResultPublisher(_settings(broker, reconnect_max_delay=1), outbox)
    publisher.start()
    try:
        _produce(outbox, signer, 3)
        publisher.notify()
        collector.wait_for(lambda msgs: any(t == TOPICS.event and b"publish_refused" in p for t, p, _ in msgs))
        assert outbox.stats().count == 3  # refused results are never dropped
        broker.reload(deny + "topic write cccd-edge/v1/+/+/result\n")
        assert publisher.wait_drained(20)
        collector.wait_for(lambda msgs: sum(t == TOPICS.result for t, _, _ in msgs) >= 3)
        assert _first_arrivals(collector.results()) == [1, 2, 3]
    finally:
        publisher.stop()
        collector.close()
        outbox.close()


def _retained(broker: MosquittoBroker, topic: str) -> bytes:
    """What a subscriber arriving now is told first on ``topic``: the retained message (a fresh, clean session)."""
    got: list[bytes] = []
    arrived = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        got.append(bytes(message.payload))
        arrived.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dashboard-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert arrived.wait(10), f"nothing retained on {topic}"
        return got[0]
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_terminal_killed_without_goodbye_is_shown_offline_by_its_will(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    import os
    import signal
    import subprocess
    import sys

    topics = Topics("cccd-edge/v1", "26734", "T-WILL")
    collector = Collector(mqtt_broker, topic=f"cccd-edge/v1/26734/{topics.terminal}/#")
    key_file = tmp_path / "device.key"
    signers.write_private_key(ec.generate_private_key(ec.SECP256R1()), key_file)
    script = f"DOC = {_document()!r}\n" + _TERMINAL_PROCESS
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    terminal = subprocess.Popen([sys.executable, "-c", script, str(key_file), str(tmp_path / "outbox.db"),
                                 str(mqtt_broker.port), "2", topics.terminal], stdout=subprocess.PIPE, text=True,
                                env=env)  # fmt: skip
    try:
        assert terminal.stdout is not None
        delivered: list[str] = []
        while len(delivered) < 2:
            line = terminal.stdout.readline()
            assert line, "the terminal process ended early"
            if line.startswith("D"):
                delivered += line.split()[1:]
        assert json.loads(_retained(mqtt_broker, topics.status)) == {"state": "online", "version": __version__}
        collector.wait_for(lambda msgs: sum(t == topics.result for t, _, _ in msgs) >= 2)
        assert all(expiry for expiry in collector.expiry[topics.result])  # results expire at the broker

        os.kill(terminal.pid, signal.SIGKILL)  # no DISCONNECT: the broker publishes the will
        terminal.wait()
        # The will names the software too: the fleet view shows the version of a terminal that went dark.
        offline = {"state": "offline", "version": __version__}
        collector.wait_for(lambda msgs: any(t == topics.status and json.loads(p) == offline for t, p, _ in msgs))
        assert json.loads(_retained(mqtt_broker, topics.status)) == offline
    finally:
        if terminal.poll() is None:
            terminal.kill()
            terminal.wait()
        if terminal.stdout is not None:
            terminal.stdout.close()
        collector.close()


def test_the_publisher_thread_reports_progress_to_the_watchdog(
    tmp_path: Path, mqtt_broker: MosquittoBroker, signer: signers.KeySigner
) -> None:
    liveness = Liveness()
    outbox = _outbox(tmp_path)
    publisher = ResultPublisher(_settings(mqtt_broker, client_id="T-01-liveness"), outbox, liveness=liveness)
    publisher.start()
    try:
        _produce(outbox, signer, 3)
        publisher.notify()
        assert publisher.wait_drained(20)
        assert PUBLISHER_THREAD in liveness.names
        assert liveness.stale(60.0) == []
    finally:
        publisher.stop()
        outbox.close()
    assert PUBLISHER_THREAD not in liveness.names  # ended on purpose: no longer holds the watchdog back


# --- faults wait, nothing twice, back quickly (issue 13) --------------------------------------------------------


def _damage(db: Path, seq: int) -> None:
    """Flip a byte of one entry's sealed payload behind the outbox's back (a bad SD card sector)."""
    import sqlite3

    with sqlite3.connect(db) as raw:
        sealed = bytearray(raw.execute("SELECT sealed FROM outbox WHERE seq=?", (seq,)).fetchone()[0])
        sealed[3] ^= 0x01
        raw.execute("UPDATE outbox SET sealed=? WHERE seq=?", (bytes(sealed), seq))
    raw.close()


def _events(collector: Collector, name: str) -> list[dict[str, object]]:
    return [event for event in (json.loads(p) for t, p, _ in list(collector.messages) if t == TOPICS.event)
            if event.get("event") == name]


def test_an_undecryptable_entry_is_quarantined_once_and_later_results_still_go_out(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], signer: signers.KeySigner
) -> None:
    mqtt_broker = mqtt_broker_factory()  # a fresh one: the collector's persistent session must start empty
    collector = Collector(mqtt_broker)
    outbox = _outbox(tmp_path)
    _produce(outbox, signer, 5)
    _damage(tmp_path / "state" / "outbox.db", 2)
    publisher = ResultPublisher(_settings(mqtt_broker, client_id="T-01-quarantine"), outbox)
    publisher.start()
    try:
        _produce(outbox, signer, 3)  # results after the bad one still leave
        publisher.notify()
        assert publisher.wait_drained(20)
        collector.wait_for(lambda msgs: len(_first_arrivals(collector.results())) >= 7
                           and len(_events(collector, "result_quarantined")) >= 1)
        assert _first_arrivals(collector.results()) == [1, 3, 4, 5, 6, 7, 8]
        assert outbox.stats().quarantined == 1
        deadline = time.monotonic() + 10
        while outbox.unreported_quarantine and time.monotonic() < deadline:  # marked on the event's PUBACK
            time.sleep(0.01)
        assert outbox.unreported_quarantine == 0
        assert publisher.fault_cycles == 0  # moved aside, not a fault that repeats
    finally:
        publisher.stop()
        outbox.close()
    outbox = _outbox(tmp_path)
    again = ResultPublisher(_settings(mqtt_broker, client_id="T-01-quarantine"), outbox)
    again.start()  # a restart reports nothing twice
    try:
        _produce(outbox, signer, 1)
        again.notify()
        assert again.wait_drained(20)
        collector.wait_for(lambda msgs: 9 in _first_arrivals(collector.results()))
    finally:
        again.stop()
        outbox.close()
        collector.close()
    assert [e["seq"] for e in _events(collector, "result_quarantined")] == [2]
    assert _events(collector, "result_quarantined")[0]["reason"] == "undecryptable"


def test_a_persistent_fault_waits_instead_of_spinning(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], signer: signers.KeySigner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The outbox key replaced (every entry fails, nothing may be moved aside): each failed cycle is followed by a
    backoff that the daemon's steady stream of events and new results does not cut short."""
    import os

    outbox = _outbox(tmp_path)
    _produce(outbox, signer, 3)
    outbox.close()
    (tmp_path / "state" / "outbox.key").write_bytes(os.urandom(32))
    outbox = _outbox(tmp_path)
    mqtt_broker = mqtt_broker_factory()
    collector = Collector(mqtt_broker)
    publisher = ResultPublisher(_settings(mqtt_broker, client_id="T-01-fault"), outbox)
    caplog.set_level("WARNING", logger="edge.daemon.mqtt")
    publisher.start()
    try:
        collector.wait_for(lambda msgs: len(_events(collector, "delivery_fault")) >= 1)
        window_end = time.monotonic() + 2.5
        sent = 0
        while time.monotonic() < window_end or sent < 100:  # what the terminal does meanwhile: status, events...
            publisher.publish_event({"event": "pong", "jti": "heartbeat", "state": "ready"})
            publisher.notify()
            sent += 1
            time.sleep(0.005)
        collector.wait_for(lambda msgs: len(_events(collector, "pong")) >= 100)

        def failing() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == "edge.daemon.mqtt" and "delivery" in r.getMessage()
                    and ("failed" in r.getMessage() or "failing" in r.getMessage())]

        # A cycle is counted before its line is logged: they agree once the latest cycle has logged.
        wait_until(lambda: publisher.fault_cycles == len(failing()), "each failed cycle logged once")
        assert 1 <= len(failing()) <= 5  # 2.5 s at 0.5-1, 1-2, 2-4 s: a handful, never thousands
        assert len(_events(collector, "delivery_fault")) == 1  # reported once per kind of fault
        assert outbox.stats().count == 3  # and nothing was dropped
        assert not any(t == TOPICS.result for t, _, _ in collector.messages)
    finally:
        publisher.stop()
        collector.close()
        outbox.close()


def test_a_full_disk_never_publishes_a_result_twice_and_books_it_when_space_returns(
    mqtt_broker_factory: Callable[..., MosquittoBroker], signer: signers.KeySigner, small_disk: SmallDisk
) -> None:
    """PUBACKs arrive but the DELETE cannot commit: the results stay in the outbox (nothing lost), are not sent
    again meanwhile (nothing duplicated), and leave the outbox when space returns."""
    outbox = Outbox(small_disk.path / "outbox.db", max_count=1000, max_bytes=10**7)
    _produce(outbox, signer, 20)
    small_disk.fill()
    mqtt_broker = mqtt_broker_factory()
    collector = Collector(mqtt_broker)
    publisher = ResultPublisher(_settings(mqtt_broker, client_id="T-01-full"), outbox)
    publisher.start()
    try:
        collector.wait_for(lambda msgs: sum(t == TOPICS.result for t, _, _ in msgs) >= 20
                           and len(_events(collector, "delivery_fault")) >= 1)
        wait_until(lambda: publisher.fault_cycles >= 2, "a second failed booking")
        # A barrier: events go out at the start of a cycle, on the results' connection, so whatever the failed
        # cycles published has reached the collector before this event does.
        publisher.publish_event({"event": "pong", "jti": "barrier", "state": "ready"})
        collector.wait_for(lambda msgs: len(_events(collector, "pong")) >= 1)
        assert sum(t == TOPICS.result for t, _, _ in collector.messages) == 20  # none sent twice meanwhile
        assert outbox.stats().count == 20  # acknowledged, but not deletable: kept
        assert "StorageFullError" in (publisher.fault or "")
        small_disk.make_room()
        assert publisher.wait_drained(30)
        assert outbox.stats().count == 0
        assert publisher.delivered == 20
        collector.wait_for(lambda msgs: len(_events(collector, "delivery_recovered")) >= 1)
    finally:
        publisher.stop()
        collector.close()
        outbox.close()
    results = collector.results()
    assert sorted(int(str(claims["seq"])) for claims in results) == list(range(1, 21))  # each exactly once


class FastClock(RetryClock):
    """Fake time for the publisher's waits: each wait advances it at once (yielding a moment of real time), so an
    outage of minutes passes in a second and the test counts fake seconds, not wall-clock time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._lock:
            self.t += seconds
        return event.wait(0.002)


def test_after_a_long_outage_the_broker_is_reconnected_to_within_ten_seconds(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker]
) -> None:
    broker = mqtt_broker_factory()
    config = parse_config({"terminal_id": "T-01", "ward_code": TOPICS.ward,
                           "mqtt": {"host": broker.host, "port": broker.port, "tls": False}})  # the defaults
    clock = FastClock()
    links: list[tuple[bool, float]] = []
    outbox = _outbox(tmp_path)
    publisher = ResultPublisher(MqttSettings.from_config(config), outbox, clock=clock, rng=random.Random(13),
                                on_link_change=lambda up: links.append((up, clock.t)))  # fmt: skip
    publisher.start()
    try:
        deadline = time.monotonic() + 10
        while not publisher.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert publisher.connected
        broker.stop()
        outage_start = clock.t
        while clock.t - outage_start < 30 * 60 and time.monotonic() < deadline + 60:  # half an hour, in fake time
            time.sleep(0.01)
        attempts = publisher.reconnect.waits
        assert clock.t - outage_start >= 30 * 60
        assert 30 * 60 / 8 - 5 <= attempts <= 30 * 60 / 4 + 5  # capped at 8 s, jittered down to no less than 4 s
        broker.start()
        back = clock.t
        deadline = time.monotonic() + 20
        while not publisher.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert publisher.connected
        # paho's thread marks the link up, then reports it: wait for the report, not only the flag.
        wait_until(lambda: bool(links) and links[-1][0], "the link reported up", timeout=20)
        reconnected_at = links[-1][1]
        assert links[-1][0] is True
        assert reconnected_at - back <= 10.0
        assert publisher.reconnect.cut_short >= 1  # the probe saw it back before the backoff ran out
    finally:
        publisher.stop()
        outbox.close()
