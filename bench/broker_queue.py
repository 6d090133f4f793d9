"""The ward broker's queue at its limit: a day's outage of the gateway, on the kit's own mosquitto.conf.

``python -m provisioning broker-kit`` sizes ``max_queued_messages`` for the gateway's session (10 terminals x 120
reads/h x 24 h x 10 messages per read = 288,000). This fills that queue through mutual TLS the way terminals would
(per read: one ~2.6 KB result, eight ~260 B retained status updates, one ~120 B event; QoS 1), plus a few beyond
the limit, then prints what it costs: broker memory, the persistence file, a restart with the full queue, and how
many messages the gateway gets when it comes back (the ones beyond the limit are dropped silently: the count
shows it). Run: ``.venv/bin/python bench/broker_queue.py [--scale 0.1]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.sim.broker import MosquittoBroker, free_port
from provisioning import broker_kit, device, gateway, ward_ca
from provisioning.files import write_atomic
from provisioning.pki import GatewayIdentity, TerminalIdentity

WARD = "26734"
PREFIX = f"cccd-edge/v1/{WARD}"
RESULT, STATUS, EVENT = b"r" * 2600, b"s" * 260, b"e" * 120
BEYOND = 100  # messages published past the limit


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _client(client_id: str, ca: Path, cert: Path, key: Path, port: int, session: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key))
    client.max_inflight_messages_set(500)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = session
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", port, clean_start=session == 0, properties=properties)
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit("no CONNACK")
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default ward (10 terminals)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="broker-queue-") as tmp:
        root = Path(tmp)
        ca, _ = ward_ca.init_ward_ca(root / "ward-ca", WARD, days=2)
        made = device.init_device(root / "t", TerminalIdentity("T-A", WARD))
        cert = ward_ca.sign_csr(ca, ward_ca.load_csr(made.csr), days=1)
        write_atomic(root / "t" / "device.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
        gw = gateway.init_gateway(root / "gw", GatewayIdentity("office-1", WARD))
        gw_cert = ward_ca.sign_csr(ca, ward_ca.load_csr(gw.csr), days=1, role="gateway")
        write_atomic(root / "gw" / "gateway.crt", gw_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        sizing = broker_kit.QueueSizing(terminals=max(1, round(10 * args.scale)))
        port = free_port()
        (root / "db").mkdir()
        options = broker_kit.KitOptions(hosts=("127.0.0.1",), port=port, bind="127.0.0.1", install_dir=root / "kit",
                                        persistence_dir=root / "db", sizing=sizing,
                                        user="root" if os.geteuid() == 0 else None)
        broker_kit.build_kit(root / "ward-ca", root / "kit", options)
        broker = MosquittoBroker(root / "run", config_text=(root / "kit" / broker_kit.CONF).read_text(), port=port)
        broker.start()
        try:
            limit = sizing.max_queued_messages
            ca_file = root / "kit" / broker_kit.CA
            office = _client("gateway", ca_file, root / "gw" / "gateway.crt", gw.key, port, 7 * 86400)
            office.subscribe([(f"{PREFIX}/+/{leaf}", 1) for leaf in broker_kit.TERMINAL_WRITES])
            time.sleep(0.5)
            office.disconnect()
            office.loop_stop()
            assert broker.pid is not None
            idle = _rss_mb(broker.pid)

            terminal = _client("T-A", ca_file, root / "t" / "device.crt", root / "t" / device.KEY, port, 0)
            started = time.monotonic()
            sent = 0
            last: mqtt.MQTTMessageInfo | None = None
            plan = [("result", RESULT, False), *[("status", STATUS, True)] * 8, ("event", EVENT, False)]
            while sent < limit + BEYOND:
                leaf, payload, retain = plan[sent % len(plan)]
                last = terminal.publish(f"{PREFIX}/T-A/{leaf}", payload, qos=1, retain=retain)
                sent += 1
                if sent % 500 == 0:
                    last.wait_for_publish(60)
            assert last is not None
            last.wait_for_publish(60)
            fill_s = time.monotonic() - started
            terminal.disconnect()
            terminal.loop_stop()
            full = _rss_mb(broker.pid)

            started = time.monotonic()
            broker.stop()
            save_s = time.monotonic() - started
            db_mb = (root / "db" / "mosquitto.db").stat().st_size / 1e6
            started = time.monotonic()
            broker.start()
            load_s = time.monotonic() - started
            loaded = _rss_mb(broker.pid)

            received = 0
            done = threading.Condition()

            def count(*_: object) -> None:
                nonlocal received
                with done:
                    received += 1
                    done.notify_all()

            started = time.monotonic()
            back = _client("gateway", ca_file, root / "gw" / "gateway.crt", gw.key, port, 7 * 86400)
            back.on_message = count
            with done:
                while done.wait(2.0):  # until two quiet seconds
                    pass
            drain_s = time.monotonic() - started
            back.disconnect()
            back.loop_stop()
        finally:
            broker.stop()
    print(f"queue limit {limit:,} ({'; '.join(sizing.explain()[:2])})")
    print(f"published {sent:,} QoS 1 messages ({limit:,} + {BEYOND}) in {fill_s:.1f} s "
          f"({sent / fill_s:,.0f} msg/s, mutual TLS, one connection)")
    print(f"mosquitto RSS: {idle:.1f} MB idle, {full:.1f} MB with the full queue, {loaded:.1f} MB after reloading it")
    print(f"persistence: mosquitto.db {db_mb:.1f} MB, saved on stop in {save_s:.2f} s, loaded on start in "
          f"{load_s:.2f} s")
    print(f"the gateway got {received:,} messages back after the restart in {drain_s - 2:.1f} s; "
          f"{sent - received:,} dropped beyond the limit")


if __name__ == "__main__":
    main()
