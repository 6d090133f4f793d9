"""`cccd-edge receive --count N --timeout S --since T` as a process against a real mosquitto: scripts wait for it
instead of polling the office database."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from edge import signers
from edge.cli import main as cli_main
from edge.protocol import jose
from edge.protocol.result import QrUsage, ReadTiming
from edge.protocol.verify.checks import VERDICT_WORDS, Verdict
from tests.fixtures.mqtt import MosquittoBroker
from tests.support.poison_messages import poison_messages
from tests.support.results import sample_result

pytestmark = pytest.mark.stack

WARD = "26734"
TERMINAL = "T-01"
RESULT_TOPIC = f"cccd-edge/v1/{WARD}/{TERMINAL}/result"
SUBSCRIBED = f"subscribed to cccd-edge/v1/{WARD}/+/result"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def signer() -> signers.KeySigner:
    return signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))


def _document() -> dict[str, object]:
    document = sample_result(terminal_id=TERMINAL, ward_code=WARD, qr=QrUsage(used=False),
                             timing=ReadTiming(apdu_count=1, read_ms=1), completed_at=datetime.now(UTC))
    return dict(json.loads(document.to_json()))


def _token(signer: jose.Signer, seq: int, *, issued: int | None = None) -> bytes:
    return jose.result_token(signer, terminal_id=TERMINAL, seq=seq, document=_document(),
                             now=issued if issued is not None else int(time.time()), lifetime=3600)


class ReceiveProcess:
    """`cccd-edge receive` in a child process: JSON lines to a file, log lines collected from stderr."""

    def __init__(self, tmp_path: Path, broker: MosquittoBroker, signer: signers.KeySigner, *extra: str) -> None:
        key_file = tmp_path / "terminal.pub"
        key_file.write_bytes(signer.public_key.public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))
        self.db = tmp_path / "office" / "results.db"
        self.out = tmp_path / "receive.jsonl"
        tls: list[str] = []
        if broker.pki is not None:
            tls = ["--ca", str(broker.pki.ca_cert), "--client-cert", str(broker.pki.client_cert),
                   "--client-key", str(broker.pki.client_key)]
        argv = [sys.executable, "-m", "edge.cli", "receive", "--host", broker.host, "--port", str(broker.port),
                "--ward", WARD, "--db", str(self.db), "--cert", str(key_file),
                "--client-id", f"office-{uuid.uuid4().hex[:8]}", *tls, *extra]
        self.log: list[str] = []
        self._subscribed = threading.Event()
        with self.out.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                            env={**os.environ, "PYTHONPATH": str(REPO)})
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))
            if SUBSCRIBED in line:
                self._subscribed.set()

    def wait_subscribed(self) -> None:
        assert self._subscribed.wait(20), "\n".join(self.log)

    def wait_exit(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def outcomes(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out.read_text().splitlines()]

    def stored_rows(self) -> list[tuple[str, int]]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            return list(db.execute("SELECT iss, seq FROM results ORDER BY seq"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def receive(tmp_path: Path, signer: signers.KeySigner) -> Iterator[Callable[..., ReceiveProcess]]:
    started: list[ReceiveProcess] = []

    def start(broker: MosquittoBroker, *extra: str) -> ReceiveProcess:
        process = ReceiveProcess(tmp_path, broker, signer, *extra)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


class Terminal:
    """The terminal's side of the wire, minimal: QoS 1 publishes to its result topic, one at a time."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"terminal-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        if broker.pki is not None:
            self.client.tls_set(ca_certs=str(broker.pki.ca_cert), certfile=str(broker.pki.client_cert),
                                keyfile=str(broker.pki.client_key))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, payload: bytes) -> None:
        self.client.publish(RESULT_TOPIC, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def terminal_factory() -> Iterator[Callable[[MosquittoBroker], Terminal]]:
    terminals: list[Terminal] = []

    def make(broker: MosquittoBroker) -> Terminal:
        terminals.append(Terminal(broker))
        return terminals[-1]

    yield make
    for terminal in terminals:
        terminal.close()


def test_count_exits_once_that_many_new_results_are_stored(
    mqtt_broker: MosquittoBroker, receive: Callable[..., ReceiveProcess],
    terminal_factory: Callable[[MosquittoBroker], Terminal], signer: signers.KeySigner,
    mqtt_contract_exempt: Callable[..., None],
) -> None:
    office = receive(mqtt_broker, "--count", "2", "--timeout", "60")
    office.wait_subscribed()
    assert sum(SUBSCRIBED in line for line in office.log) == 1
    terminal = terminal_factory(mqtt_broker)
    first = _token(signer, 1)
    intruder = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    poison = poison_messages(signer)["deep_signed_body"]
    mqtt_contract_exempt(poison)
    for payload in (first, first, _token(intruder, 2), poison, _token(signer, 2)):  # resend, forgery, poison: 0
        terminal.publish(payload)
    assert office.wait_exit() == 0, "\n".join(office.log)
    assert [o["status"] for o in office.outcomes()] == ["stored", "duplicate", "quarantined", "quarantined", "stored"]
    assert "deeper than" in str(office.outcomes()[3]["reason"])
    counts = 'store {"results": 2, "quarantined": 2, "flags": {}}'
    assert any(counts in line for line in office.log), "\n".join(office.log)
    assert office.stored_rows() == [(TERMINAL, 1), (TERMINAL, 2)]
    stored = office.outcomes()[-1]
    assert (stored["verdict"], stored["rung"]) == ("verified", "verified")
    assert stored["verdict_words"] == asdict(VERDICT_WORDS[Verdict.VERIFIED])
    assert VERDICT_WORDS[Verdict.VERIFIED].vi in office.out.read_text(encoding="utf-8")  # readable, not \u-escaped
    assert isinstance(stored["jti"], str)  # with iss, the stored row's key
    assert isinstance(stored["iat"], int)  # when the terminal signed it


def test_since_does_not_count_a_result_left_from_before(
    mqtt_broker: MosquittoBroker, receive: Callable[..., ReceiveProcess],
    terminal_factory: Callable[[MosquittoBroker], Terminal], signer: signers.KeySigner,
) -> None:
    tapped = int(time.time())
    office = receive(mqtt_broker, "--count", "1", "--timeout", "60", "--since", str(tapped))
    office.wait_subscribed()
    terminal = terminal_factory(mqtt_broker)
    terminal.publish(_token(signer, 7, issued=tapped - 600))  # signed before the tap, delivered only now
    terminal.publish(_token(signer, 8, issued=tapped))
    assert office.wait_exit() == 0, "\n".join(office.log)
    outcomes = office.outcomes()
    assert [(o["status"], o["seq"]) for o in outcomes] == [("stored", 7), ("stored", 8)]
    assert int(str(outcomes[0]["iat"])) < tapped <= int(str(outcomes[1]["iat"]))
    assert office.stored_rows() == [(TERMINAL, 7), (TERMINAL, 8)]  # the old one is kept, only not counted


def test_timeout_exits_non_zero_when_too_few_arrive(
    mqtt_broker: MosquittoBroker, receive: Callable[..., ReceiveProcess],
    terminal_factory: Callable[[MosquittoBroker], Terminal], signer: signers.KeySigner,
) -> None:
    office = receive(mqtt_broker, "--count", "2", "--timeout", "3")
    office.wait_subscribed()
    terminal_factory(mqtt_broker).publish(_token(signer, 1))
    assert office.wait_exit() == 1
    assert any("1 of 2 results stored within 3 s" in line for line in office.log), "\n".join(office.log)
    assert office.stored_rows() == [(TERMINAL, 1)]


def test_mutual_tls(
    mqtt_broker_factory: Callable[..., MosquittoBroker], receive: Callable[..., ReceiveProcess],
    terminal_factory: Callable[[MosquittoBroker], Terminal], signer: signers.KeySigner,
) -> None:
    broker = mqtt_broker_factory(tls=True)
    office = receive(broker, "--count", "1", "--timeout", "60")
    office.wait_subscribed()
    terminal_factory(broker).publish(_token(signer, 1))
    assert office.wait_exit() == 0, "\n".join(office.log)
    assert office.stored_rows() == [(TERMINAL, 1)]


@pytest.mark.parametrize("option", [["--timeout", "5"], ["--since", "0"]])
def test_timeout_and_since_need_count(tmp_path: Path, option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["receive", "--ward", WARD, "--db", str(tmp_path / "r.db"), *option]) == 2
    assert "need --count" in capsys.readouterr().err
    assert not (tmp_path / "r.db").exists()
