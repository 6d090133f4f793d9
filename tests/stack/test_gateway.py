"""The office gateway with the real mosquitto and real databases (SQLite, and PostgreSQL in a private cluster):
verified through the ward CA, stored once, gaps tracked, poison quarantined and acknowledged, statuses kept for the
fleet view, receipts the terminal can verify; two instances sharing one subscription, one killed mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from edge import __version__, signers
from edge.cli import main
from edge.daemon.mqtt import close_loop_sockets
from edge.errors import ReceiptRefusedError
from edge.office.gateway import Gateway
from edge.office.gateway_config import GatewayConfig
from edge.office.store import ResultStore
from edge.protocol import jose
from edge.protocol.receipt import verify_receipt
from edge.sim.broker import MosquittoBroker
from edge.sim.postgres import PostgresCluster
from tests.support.gateway import gateway_config, start_gateway
from tests.support.waiting import wait_until
from tests.support.ward import NOW, WARD, Ward, make_ward

pytestmark = pytest.mark.stack
PREFIX = "cccd-edge/v1"


class Terminals:
    """Terminals at the broker, as far as the gateway can tell: they publish results and statuses and collect the
    receipts on their receipt topics."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.receipts: list[bytes] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="terminals", protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self._client.on_message = self._received
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._client.subscribe(f"{PREFIX}/+/+/receipt", qos=1)
        assert subscribed.wait(10)

    def _received(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.receipts.append(bytes(message.payload))

    def publish(self, terminal: str, payload: bytes, *, leaf: str = "result", retain: bool = False,
                ward: str = WARD) -> None:  # fmt: skip
        self._client.publish(f"{PREFIX}/{ward}/{terminal}/{leaf}", payload, qos=1, retain=retain).wait_for_publish(10)

    def receipted(self, key: ec.EllipticCurvePublicKey, terminal: str) -> set[str]:
        """The result jtis of ``terminal`` named by receipts that verify as that terminal would verify them."""
        keys = {jose.key_id(key): key}
        with self._lock:
            tokens = list(self.receipts)
        named: set[str] = set()
        for token in tokens:
            try:
                claims = verify_receipt(token, keys, terminal_id=terminal, ward_code=WARD, now=None).claims
            except ReceiptRefusedError as exc:
                if exc.reason == "wrong_terminal":
                    continue
                raise
            named |= set(claims.jtis)
        return named

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        close_loop_sockets(self._client)


@pytest.fixture
def receipt_key(tmp_path: Path) -> Path:
    path = tmp_path / "receipt.key"
    signers.write_private_key(ec.generate_private_key(ec.SECP256R1()), path)
    return path


@pytest.fixture
def terminals(mqtt_broker_factory: Callable[..., MosquittoBroker]) -> Iterator[tuple[MosquittoBroker, Terminals]]:
    broker = mqtt_broker_factory()
    peers = Terminals(broker)
    yield broker, peers
    peers.close()


def _config(broker: MosquittoBroker, ward: Ward, storage: str | Path, receipt_key: Path | None, *,
            instance: str = "office-1", **trust: Any) -> GatewayConfig:  # fmt: skip
    return gateway_config(broker, storage, trust={"ward_ca": str(ward.ca_path), **trust}, receipt_key=receipt_key,
                          instance=instance)


def _start(config: GatewayConfig) -> Gateway:
    return start_gateway(config, lambda: float(NOW))


def test_one_instance_verifies_stores_once_tracks_gaps_quarantines_and_receipts(
        terminals: tuple[MosquittoBroker, Terminals], ward: Ward, receipt_key: Path, office_db: str | Path,
        mqtt_contract_exempt: Callable[..., None]) -> None:
    """A terminal the gateway was never told about (its certificate from the ward CA in x5c), a duplicate, a gap, a
    poison message, a foreign terminal, a retained status published before the gateway ever ran: each where it
    belongs, every accepted result receipted, and the poison not delivered again after a restart."""
    broker, peers = terminals
    config = _config(broker, ward, office_db, receipt_key)
    t1, stranger = ward.terminal("T-01"), make_ward(ward.directory.parent / "other").terminal("T-09")
    peers.publish("T-01", b'{"state":"online","terminal_state":"ready","queued":0}', leaf="status", retain=True)
    gateway = _start(config)
    try:
        tokens = {seq: t1.token(seq) for seq in (1, 2, 4)}
        for seq in (1, 2, 4):
            peers.publish("T-01", tokens[seq])
        peers.publish("T-01", tokens[2])  # a resend: the receipt was lost
        mqtt_contract_exempt(b"\xff not a token")
        peers.publish("T-01", b"\xff not a token")
        peers.publish("T-09", stranger.token(1))
        wait_until(lambda: gateway.stats.stored + gateway.stats.duplicates + gateway.stats.quarantined >= 6,
                   "6 messages")
        wait_until(lambda: gateway.stats.statuses >= 1, "the retained status")
        assert (gateway.stats.stored, gateway.stats.duplicates, gateway.stats.quarantined) == (3, 1, 2)
        store = gateway.store
        assert [seq for seq, _ in store.stored("T-01")] == [1, 2, 4]
        assert [gap.as_dict() for gap in store.gaps("T-01")] == [
            {"ward": WARD, "iss": "T-01", "missing": [3], "refused": []}]
        reasons = [row["reason"] for row in store.quarantined()]
        assert any("does not chain to the ward CA" in reason for reason in reasons)
        assert any("token" in reason or "ASCII" in reason for reason in reasons)
        assert [(row.iss, row.state, row.status["terminal_state"]) for row in store.fleet()] == [
            ("T-01", "online", "ready")]
        public = signers.load_private_key(receipt_key).public_key()
        jtis = {str(jose.json_object(jose.b64url_decode(token.split(b".")[1].decode()), "claims")["jti"])
                for token in tokens.values()}
        wait_until(lambda: peers.receipted(public, "T-01") == jtis, "receipts naming every stored result")
        with pytest.raises(ReceiptRefusedError):  # signed by the gateway's key, not one the terminal trusts
            verify_receipt(peers.receipts[0], {}, terminal_id="T-01", ward_code=WARD, now=NOW)
    finally:
        gateway.stop()
        gateway.store.close()
    again = _start(config)  # same identity, same session: nothing unacknowledged is left for it
    try:
        peers.publish("T-01", t1.token(3))
        wait_until(lambda: again.stats.stored == 1, "seq 3")
        assert again.stats.quarantined == 0, "the poison message was acknowledged, not delivered again"
        assert again.store.gaps("T-01") == []
        assert again.store.counts()["quarantined"] == 2
    finally:
        again.stop()
        again.store.close()


def test_fleet_and_gaps_from_the_command_line(terminals: tuple[MosquittoBroker, Terminals], ward: Ward,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broker, peers = terminals
    config = _config(broker, ward, tmp_path / "results.db", None)
    toml = tmp_path / "gateway.toml"
    toml.write_text(f'instance = "office-1"\nward = "{WARD}"\n[broker]\nhost = "{broker.host}"\nport = {broker.port}\n'
                    f'[storage]\nurl = "{config.storage.url}"\n[trust]\nward_ca = "{ward.ca_path}"\n', encoding="utf-8")
    gateway = _start(config)
    try:
        peers.publish("T-02", b'{"state":"offline","version":"%s"}' % __version__.encode(), leaf="status",
                      retain=True)  # fmt: skip
        peers.publish("T-02", ward.terminal("T-02").token(2))
        wait_until(lambda: gateway.stats.statuses == 1 and gateway.stats.stored == 1, "a status and a result")
        assert gateway.stats.receipts == 0, "no receipt key: a PUBACK-only ward"
    finally:
        gateway.stop()
        gateway.store.close()
    assert main(["gateway", "fleet", "--config", str(toml)]) == 0
    assert f'"terminal": "T-02", "state": "offline", "version": "{__version__}"' in capsys.readouterr().out
    assert main(["gateway", "gaps", "--config", str(toml)]) == 0
    assert f'"ward": "{WARD}", "iss": "T-02", "missing": [1]' in capsys.readouterr().out
    assert main(["gateway", "gaps", "--config", str(toml), "--ward", "26735"]) == 0
    assert capsys.readouterr().out == "", "only ward 26735's terminals: none"


class GatewayProcess:
    """``cccd-edge gateway run`` as a process of its own, which a test can kill -9."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "edge.cli", "gateway", "run", "--config",
                                             str(config)], stdout=out, stderr=out, start_new_session=True)

    def wait_subscribed(self) -> None:
        wait_until(lambda: self.log.read_text(errors="replace").count("subscribed to") >= self._starts, "subscription")

    _starts = 1

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def _write_config(path: Path, broker: MosquittoBroker, ward: Ward, url: str, receipt_key: Path, instance: str) -> Path:
    path.write_text(f'instance = "{instance}"\nward = "{WARD}"\n'
                    f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\nreceive_maximum = 10\n'
                    f'[storage]\nurl = "{url}"\n[trust]\nward_ca = "{ward.ca_path}"\n'
                    f'[receipts]\nkey = "{receipt_key}"\n', encoding="utf-8")
    return path


@pytest.mark.slow
def test_two_instances_share_the_results_and_a_kill_9_loses_nothing(
        terminals: tuple[MosquittoBroker, Terminals], ward: Ward, receipt_key: Path, postgres_url: str,
        tmp_path: Path) -> None:
    """Two ``gateway run`` processes on one PostgreSQL database share a subscription. One is killed -9 in the middle
    of a stream and started again (systemd would): every result is stored exactly once, both instances stored some,
    the survivor went on storing while the other was down, and every result has a receipt. Some results are
    published twice (a terminal that got no receipt): stored once, whichever instance got each copy."""
    broker, peers = terminals
    processes = {name: GatewayProcess(_write_config(tmp_path / f"{name}.toml", broker, ward, postgres_url,
                                                    receipt_key, name), tmp_path / f"{name}.log")
                 for name in ("office-1", "office-2")}  # fmt: skip
    fleet = [ward.terminal(f"T-{n:02d}") for n in range(1, 9)]
    per_terminal = 40
    tokens: dict[tuple[str, int], bytes] = {(t.terminal_id, seq): t.token(seq) for t in fleet
                                            for seq in range(1, per_terminal + 1)}  # fmt: skip
    store = ResultStore(postgres_url, {})
    try:
        for process in processes.values():
            process.wait_subscribed()
        ordered = sorted(tokens.items(), key=lambda item: (item[0][1], item[0][0]))
        half = len(ordered) // 2
        for (terminal, _seq), token in ordered[:half]:
            peers.publish(terminal, token)
        wait_until(lambda: _stored(store) >= half // 3, "a third of the first half")
        processes["office-1"].kill()
        before = _stored_by(store).get("office-2", 0)
        for (terminal, seq), token in ordered[half:]:
            peers.publish(terminal, token)
            if seq % 10 == 0:
                peers.publish(terminal, token)  # again: a resend
        wait_until(lambda: _stored_by(store).get("office-2", 0) > before + 10, "the survivor storing on its own")
        restarted = GatewayProcess(tmp_path / "office-1.toml", tmp_path / "office-1.log")
        restarted._starts = 2
        processes["office-1"] = restarted
        wait_until(lambda: _stored(store) == len(tokens), f"all {len(tokens)} results", timeout=60)
        time.sleep(0.5)  # a late duplicate would show now
        (rows,) = store._db.execute("SELECT COUNT(*) FROM results").fetchone()
        (distinct,) = store._db.execute("SELECT COUNT(DISTINCT token) FROM results").fetchone()
        assert rows == distinct == len(tokens), "each result exactly once"
        assert set(_stored_by(store)) == {"office-1", "office-2"}, _stored_by(store)
        assert store.gaps() == []
        public = signers.load_private_key(receipt_key).public_key()
        for terminal in fleet:
            jtis = {jti for seq, jti in store.stored(terminal.terminal_id)}
            wait_until(lambda t=terminal, j=jtis: peers.receipted(public, t.terminal_id) >= j,  # type: ignore[misc]
                       f"receipts for {terminal.terminal_id}")
    finally:
        for process in processes.values():
            process.stop()
        store.close()


def _stored(store: ResultStore) -> int:
    (count,) = store._db.execute("SELECT COUNT(*) FROM results").fetchone()
    return int(count)


def _stored_by(store: ResultStore) -> dict[str, int]:
    return {name: count for name, count in
            store._db.execute("SELECT stored_by, COUNT(*) FROM results GROUP BY stored_by")}


@pytest.mark.slow
def test_a_database_restart_loses_nothing(terminals: tuple[MosquittoBroker, Terminals], ward: Ward,
                                          tmp_path: Path) -> None:
    """PostgreSQL stops under a running gateway: results wait unacknowledged (retried with backoff, the thread
    alive) and are all stored once it is back."""
    pytest.importorskip("psycopg")
    broker, peers = terminals
    cluster = PostgresCluster()  # its own directory: the postgres user cannot enter tmp_path
    cluster.start()
    try:
        url = cluster.create_database()
        gateway = _start(_config(broker, ward, url, None))
        try:
            t1 = ward.terminal("T-01")
            peers.publish("T-01", t1.token(1))
            wait_until(lambda: gateway.stats.stored == 1, "seq 1")
            cluster.stop("immediate")
            for seq in range(2, 12):
                peers.publish("T-01", t1.token(seq))
            wait_until(lambda: gateway.stats.storage_retries >= 2, "the gateway finding the database gone")
            cluster.start()
            wait_until(lambda: gateway.stats.stored == 11, "all 11 after the restart")
            assert [seq for seq, _ in gateway.store.stored("T-01")] == list(range(1, 12))
            assert gateway.stats.quarantined == 0
        finally:
            gateway.stop()
            gateway.store.close()
    finally:
        cluster.destroy()
