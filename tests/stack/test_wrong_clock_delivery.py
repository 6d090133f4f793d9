"""A terminal with a wrong clock delivers every result, and the office stores every one: real processes only.

The terminal's side is a child process under the clock shim (``tests/fixtures/clockshift.py``) that signs results
with its own ``time.time()`` and delivers them through the daemon's outbox and publisher, which delete a result once
the broker has it; the office is ``cccd-edge receive`` as a process, on the real time. As measured in issue 13: a
clock in 2020 and one a year ahead deliver at once; at 1970 the broker cannot be reached (TLS would fail), results
queue, and the terminal delivers them once its clock is corrected. Before, the office refused all of them ("token
expired", "issued in the future") after the terminal had deleted them. Now all are stored, flagged, kept across a
restart of the receiver, and the gap report is empty.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from tests.fixtures.clockshift import EPOCH_1970, IN_2020, shifted_env
from tests.fixtures.mqtt import MosquittoBroker, free_port

pytestmark = pytest.mark.stack

WARD, TERMINAL = "26734", "T-01"
REPO = Path(__file__).resolve().parents[2]
SUBSCRIBED = f"subscribed to cccd-edge/v1/{WARD}/+/result"

#: The terminal's delivery, as the daemon does it: sign with the device key at time.time(), queue, publish, delete on
#: PUBACK. argv: device key, outbox, broker port, results to produce, "drain" to wait until the broker has them all.
_TERMINAL = """
import json, sys, time
from datetime import UTC, datetime
from pathlib import Path
from edge import signers
from edge.daemon.mqtt import MqttSettings, ResultPublisher, Topics
from edge.daemon.outbox import Outbox
from edge.protocol import jose
from tests.support.results import sample_result

key, db, port, count, drain = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
signer = signers.FileKeySigner(key)
outbox = Outbox(db, max_count=100, max_bytes=10**7)
for _ in range(count):
    document = json.loads(sample_result(terminal_id="T-01", completed_at=datetime.now(UTC)).to_json())
    outbox.enqueue(lambda seq: jose.result_token(signer, terminal_id="T-01", seq=seq, document=document,
                                                 now=int(time.time())))
if drain == "drain":
    publisher = ResultPublisher(MqttSettings("127.0.0.1", port, Topics("cccd-edge/v1", "26734", "T-01"), "T-01",
                                             reconnect_min_delay=0.2, reconnect_max_delay=1), outbox)
    publisher.start()
    publisher.notify()
    drained = publisher.wait_drained(60)
    publisher.stop()
    print("drained" if drained else "stuck", flush=True)
print("queued", outbox.stats().count, flush=True)
outbox.close()
"""


class Receive:
    """``cccd-edge receive`` as a process (real time), its JSON lines and its log."""

    def __init__(self, tmp_path: Path, broker: MosquittoBroker, key_pem: Path, client_id: str, *extra: str) -> None:
        self.db = tmp_path / "office" / "results.db"
        argv = [sys.executable, "-m", "edge.cli", "receive", "--host", broker.host, "--port", str(broker.port),
                "--ward", WARD, "--db", str(self.db), "--cert", str(key_pem), "--client-id", client_id, *extra]
        self.log: list[str] = []
        self._subscribed = threading.Event()
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                        env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        assert self._subscribed.wait(20), "\n".join(self.log)

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))
            if SUBSCRIBED in line:
                self._subscribed.set()

    def finish(self, timeout: float = 90) -> list[dict[str, object]]:
        """Wait for the exit (0: the count was stored) and return the lines it printed."""
        out, _ = self.process.communicate(timeout=timeout)
        self._reader.join(5)
        assert self.process.returncode == 0, "\n".join(self.log)
        return [json.loads(line) for line in out.splitlines()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.communicate(timeout=20)
        self._reader.join(5)


@pytest.fixture
def receivers() -> Iterator[list[Receive]]:
    started: list[Receive] = []
    yield started
    for receive in started:
        receive.stop()


def test_a_terminal_with_a_wrong_clock_delivers_every_result_and_the_office_stores_every_one(
    tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], clock_shim: Path,
    receivers: list[Receive],
) -> None:
    broker = mqtt_broker_factory(persistence=True)
    key = ec.generate_private_key(ec.SECP256R1())
    signers.write_private_key(key, tmp_path / "device.key")
    key_pem = tmp_path / "device.pub"
    key_pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    outbox = tmp_path / "state" / "outbox.db"
    outbox.parent.mkdir()
    client_id = f"office-{uuid.uuid4().hex[:8]}"
    receivers.append(Receive(tmp_path, broker, key_pem, client_id, "--count", "8", "--timeout", "60"))

    def terminal(clock: datetime | None, count: int, *, port: int = broker.port) -> str:
        """One run of the terminal's delivery under ``clock`` (None: corrected); what it printed."""
        env = shifted_env(clock_shim, clock, base={**os.environ, "PYTHONPATH": str(REPO)})
        drain = "drain" if port == broker.port else "queue"
        done = subprocess.run([sys.executable, "-c", _TERMINAL, str(tmp_path / "device.key"), str(outbox),
                               str(port), str(count), drain], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=90)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "drained" in terminal(IN_2020, 2)
    assert "drained" in terminal(datetime.now(UTC) + timedelta(days=365), 2)
    assert "queued 2" in terminal(EPOCH_1970, 2, port=free_port())  # the broker out of reach: results wait
    assert terminal(None, 2).splitlines() == ["drained", "queued 0"]  # the clock corrected: all leave, then deleted

    lines = receivers[0].finish()
    assert [line["status"] for line in lines] == ["stored"] * 8, lines
    assert sorted((int(str(line["seq"])), line.get("flags", [])) for line in lines) == [
        (1, ["clock_skew"]), (2, ["clock_skew"]),  # 2020
        (3, ["future", "clock_skew"]), (4, ["future", "clock_skew"]),  # a year ahead
        (5, ["clock_skew"]), (6, ["clock_skew"]),  # 1970, delivered after the correction
        (7, []), (8, []),  # on time
    ]  # fmt: skip
    assert any('"flags": {"clock_skew": 6, "future": 2}' in line for line in receivers[0].log), receivers[0].log

    # A restart of the office keeps everything, and finds nothing missing or refused.
    gaps = subprocess.run([sys.executable, "-m", "edge.cli", "receive", "--ward", WARD, "--db",
                           str(receivers[0].db), "--gaps"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert gaps.returncode == 0, gaps.stderr
    assert [json.loads(line) for line in gaps.stdout.splitlines()] == [
        {"counts": {"results": 8, "quarantined": 0, "flags": {"clock_skew": 6, "future": 2}}}]
    with sqlite3.connect(f"file:{receivers[0].db}?mode=ro", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM results WHERE iat < ?",
                          (int(datetime(2021, 1, 1, tzinfo=UTC).timestamp()),)).fetchone() == (4,)
