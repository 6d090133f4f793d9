"""Gateway figures: signed results from many terminals -> a private mosquitto -> gateway instances (processes of
their own, ``cccd-edge gateway run``) -> PostgreSQL in a private cluster (or one instance on SQLite).

Each terminal has its own device certificate from a ward CA (in x5c: the gateway finds every key through the CA).
Tokens are signed before the clock starts; then they are published QoS 1 from a few publisher clients as fast as
the broker takes them. Prints: results/s from the first publish until the last is stored, publish -> receipt
latency (p50, p99; the receipt as the terminal receives it), lost results and duplicate rows.

Run: ``.venv/bin/python bench/gateway.py [--results 4000] [--terminals 100] [--instances 2] [--backend sqlite]
[--rate R]`` (``--rate``: a steady offered load instead of a burst, for latency outside a backlog).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from edge import signers
from edge.office.store import ResultStore
from edge.protocol import jose
from edge.protocol.receipt import ReceiptClaims
from edge.protocol.result import Check, CitizenData, ProcedureProfile, QrUsage, ReadTiming, make_result
from edge.protocol.verify.checks import CheckStatus, Verdict
from edge.sim.broker import MosquittoBroker
from edge.sim.postgres import PostgresCluster
from provisioning.pki import TerminalIdentity
from provisioning.ward_ca import CA_CERT, WardCa, init_ward_ca, sign_csr

PREFIX = "cccd-edge/v1"
WARD = "26734"
CITIZEN = CitizenData(id_number="079203000145", full_name="Nguyễn Văn An", date_of_birth="01/02/2003",
                      place_of_residence="12 Lê Lợi, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh")
CHECKS = (Check(name="sod_signature", status=CheckStatus.PASSED), Check(name="dg_hashes", status=CheckStatus.PASSED))


class BenchTerminal:
    """A terminal with its own key and a certificate from the ward CA, as provisioning makes them."""

    def __init__(self, ca: WardCa, terminal_id: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder().subject_name(TerminalIdentity(terminal_id, WARD).name())
               .sign(key, hashes.SHA256()))
        self.terminal_id = terminal_id
        self.signer = signers.KeySigner(key)
        self.certificate = sign_csr(ca, csr).public_bytes(serialization.Encoding.DER)

    def token(self, seq: int, now: int) -> bytes:
        document = make_result(terminal_id=self.terminal_id, ward_code=WARD, profile=ProcedureProfile.RESIDENCE,
                               verdict=Verdict.VERIFIED, checks=CHECKS, citizen=CITIZEN,
                               qr=QrUsage(used=True, format="cccd2021"), timing=ReadTiming(apdu_count=15, read_ms=900),
                               completed_at=dt.datetime.fromtimestamp(now, dt.UTC))
        return jose.result_token(self.signer, terminal_id=self.terminal_id, seq=seq, now=now,
                                 document=json.loads(document.to_json()), certificate=self.certificate)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=int, default=4000)
    parser.add_argument("--terminals", type=int, default=100)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--rate", type=float, help="publish at this many results/s in all (default: as fast as the "
                        "broker takes them, a burst)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cccd-gw-bench-") as tmp:
        return run(Path(tmp), args)


def run(tmp: Path, args: argparse.Namespace) -> int:
    ca, _ = init_ward_ca(tmp / "ward-ca", WARD)
    ca_path = tmp / "ward-ca" / CA_CERT
    receipt_key = tmp / "receipt.key"
    signers.write_private_key(ec.generate_private_key(ec.SECP256R1()), receipt_key)
    now = int(time.time())
    fleet = [BenchTerminal(ca, f"T-{n:04d}") for n in range(args.terminals)]
    per_terminal = -(-args.results // args.terminals)
    started = time.monotonic()
    tokens = [(t.terminal_id, seq, t.token(seq, now)) for seq in range(1, per_terminal + 1) for t in fleet]
    tokens = tokens[: args.results]
    jti_of = {token: str(jose.json_object(jose.b64url_decode(token.split(b".")[1].decode()), "c")["jti"])
              for _, _, token in tokens}
    print(f"signed {len(tokens)} results of {len(fleet)} terminals in {time.monotonic() - started:.1f} s "
          "(each with its device certificate in x5c)")
    cluster = None
    if args.backend == "postgresql":
        cluster = PostgresCluster()
        cluster.start()
        url = cluster.create_database()
    else:
        url = f"sqlite:///{tmp / 'results.db'}"
        args.instances = 1
    broker = MosquittoBroker(tmp / "broker")
    broker.start()
    processes: list[subprocess.Popen[bytes]] = []
    received: dict[str, float] = {}
    lock = threading.Lock()

    def on_receipt(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        claims = ReceiptClaims.model_validate_json(jose.b64url_decode(message.payload.split(b".")[1].decode()))
        arrived = time.monotonic()
        with lock:
            for jti in claims.jtis:
                received.setdefault(jti, arrived)

    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-receipts", protocol=mqtt.MQTTv5)
    listener.on_message = on_receipt
    listener.connect(broker.host, broker.port)
    listener.subscribe(f"{PREFIX}/+/+/receipt", qos=1)
    listener.loop_start()
    store = ResultStore(url, {})  # creates the schema before the instances race for it
    try:
        for n in range(args.instances):
            config = tmp / f"gateway-{n}.toml"
            config.write_text(f'instance = "bench-{n}"\nward = "{WARD}"\n[broker]\nhost = "{broker.host}"\n'
                              f'port = {broker.port}\n[storage]\nurl = "{url}"\n[trust]\nward_ca = "{ca_path}"\n'
                              f'[receipts]\nkey = "{receipt_key}"\nlifetime = 3600\n', encoding="utf-8")
            log = (tmp / f"gateway-{n}.log").open("wb")
            processes.append(subprocess.Popen([sys.executable, "-m", "edge.cli", "gateway", "run", "--config",
                                               str(config)], stdout=log, stderr=log))
        deadline = time.monotonic() + 30
        while sum((tmp / f"gateway-{n}.log").read_text().count("subscribed to") for n in range(args.instances)) \
                < args.instances:
            if time.monotonic() > deadline:
                raise SystemExit("the gateways did not subscribe")
            time.sleep(0.05)
        published: dict[str, float] = {}
        chunks = [tokens[i::args.publishers] for i in range(args.publishers)]

        def publish(chunk: list[tuple[str, int, bytes]], name: str) -> None:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
            client.max_inflight_messages_set(100)
            client.connect(broker.host, broker.port)
            client.loop_start()
            infos = []
            interval = args.publishers / args.rate if args.rate else 0.0
            start = time.monotonic()
            for n, (terminal, _seq, token) in enumerate(chunk):
                if interval:
                    time.sleep(max(0.0, start + n * interval - time.monotonic()))
                with lock:
                    published[jti_of[token]] = time.monotonic()
                infos.append(client.publish(f"{PREFIX}/{WARD}/{terminal}/result", token, qos=1))
            for info in infos:
                info.wait_for_publish(120)
            client.disconnect()
            client.loop_stop()

        first = time.monotonic()
        threads = [threading.Thread(target=publish, args=(chunk, f"bench-pub-{i}")) for i, chunk in enumerate(chunks)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 300
        while (stored := store._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]) < len(tokens):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        last = time.monotonic()
        time.sleep(1.0)
        (rows,) = store._db.execute("SELECT COUNT(*) FROM results").fetchone()
        (distinct,) = store._db.execute("SELECT COUNT(DISTINCT jti) FROM results").fetchone()
        by = dict(store._db.execute("SELECT stored_by, COUNT(*) FROM results GROUP BY stored_by"))
        with lock:
            latencies = sorted((received[jti] - published[jti]) * 1000 for jti in published if jti in received)
        print(f"backend {args.backend}, {args.instances} instance(s), {args.publishers} publishers, "
              f"{len(fleet)} terminals, {f'{args.rate:,.0f} results/s offered' if args.rate else 'a burst'}")
        print(f"stored {stored} of {len(tokens)} in {last - first:.2f} s: {stored / (last - first):,.0f} results/s "
              f"(first publish to last stored); per instance {by}")
        if latencies:
            p50 = statistics.median(latencies)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(f"publish -> receipt at the terminal: p50 {p50:.0f} ms, p99 {p99:.0f} ms "
                  f"({len(latencies)} receipted)")
        (quarantined,) = store._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()
        print(f"lost {len(tokens) - distinct}, duplicate rows {rows - distinct}, quarantined {quarantined}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(20)
        listener.disconnect()
        listener.loop_stop()
        store.close()
        broker.stop()
        if cluster is not None:
            cluster.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
