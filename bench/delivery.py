"""Delivery figures against a private mosquitto on loopback: verdict -> PUBACK latency, and backlog drain rate.

Latency covers what happens after the verdict: build the claims, sign (ES256), commit to the outbox (fsync), publish
QoS 1, PUBACK, delete from the outbox (fsync). Drain: 10,000 signed results queued while offline, then delivered.
Run: ``.venv/bin/python bench/delivery.py``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge import signers
from edge.daemon.mqtt import MqttSettings, ResultPublisher, Topics
from edge.daemon.outbox import Outbox
from edge.protocol import jose
from edge.sim.broker import MosquittoBroker

DOCUMENT = {"schema_version": 1, "verdict": "verified", "citizen": {"id_number": "0" * 12, "full_name": "x" * 30,
            "place_of_residence": "y" * 80}, "checks": [{"name": f"check_{i}", "status": "passed"} for i in range(8)]}


def _producer(outbox: Outbox, signer: signers.KeySigner) -> None:
    outbox.enqueue(lambda seq: jose.sign_jws(signer, jose.result_claims(
        terminal_id="T-01", kid=signer.kid, seq=seq, document=DOCUMENT, now=int(time.time()), lifetime=3600),
        typ=jose.RESULT_TYP).encode())


def latency(broker: MosquittoBroker, directory: Path, signer: signers.KeySigner, count: int = 200) -> list[float]:
    outbox = Outbox(directory / "latency.db", max_count=100_000, max_bytes=10**9)
    delivered = threading.Event()
    publisher = ResultPublisher(
        MqttSettings(broker.host, broker.port, Topics("cccd-edge/v1", "W", "T-01"), "bench-latency"), outbox,
        on_delivered=lambda seqs: delivered.set())
    publisher.start()
    while not publisher.connected:
        time.sleep(0.01)
    samples = []
    for _ in range(count):
        delivered.clear()
        start = time.perf_counter()
        _producer(outbox, signer)
        publisher.notify()
        delivered.wait(10)
        samples.append((time.perf_counter() - start) * 1000)
    publisher.stop()
    outbox.close()
    return samples


def drain(broker: MosquittoBroker, directory: Path, signer: signers.KeySigner, count: int, window: int) -> float:
    outbox = Outbox(directory / f"drain{window}.db", max_count=100_000, max_bytes=10**9)
    for _ in range(count):
        _producer(outbox, signer)
    publisher = ResultPublisher(
        MqttSettings(broker.host, broker.port, Topics("cccd-edge/v1", "W", "T-01"), f"bench-drain-{window}",
                     inflight_window=window), outbox)
    start = time.perf_counter()
    publisher.start()
    if not publisher.wait_drained(600):
        raise SystemExit("drain did not finish")
    elapsed = time.perf_counter() - start
    publisher.stop()
    outbox.close()
    return count / elapsed


def main() -> None:
    signer = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        broker = MosquittoBroker(directory / "broker")
        broker.start()
        try:
            samples = latency(broker, directory, signer)
            print(f"verdict -> PUBACK (sign + outbox commit + QoS 1 + ack commit), n={len(samples)}: "
                  f"median {statistics.median(samples):.2f} ms, p95 {statistics.quantiles(samples, n=20)[-1]:.2f} ms")
            for window in (20, 100):
                rate = drain(broker, directory, signer, 10_000, window)
                print(f"backlog drain of 10,000 results, in-flight window {window}: {rate:,.0f} results/s")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
