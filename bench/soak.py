"""Memory over many reads: ``cccd-edge run`` in a subprocess, ``--reads`` results (default 10,000) through it.

The daemon runs as ``bench/daemon.py`` runs it (private pcscd + vpcd with a virtual card, a private mosquitto, here
with mutual TLS as in the field, the replay camera showing the card's QR, mock GPIO). Reads are driven two ways,
so both paths stay in the measurement: an office ``read_request`` on ``/cmd`` with the card on the reader (most
reads: ~0.3 s each), and every ``--card-every``-th read the counter's way, the card lifted and put back under the
QR in view (the scanner's repeat opens it). Each read must deliver a result on ``/result``; a ``busy`` answer is
resent.

Figures: VmRSS at READY, after ``--warmup`` reads, then every ``--every`` reads to the end; the spread of those
samples (goal: flat within 1 MB) and the least-squares slope per 1,000 reads. gpiozero's mock pins record every
state change in a list that grows by itself (heartbeat blinks, every pattern change); no real pin does, so the
daemon runs with that test history capped (``_BOOT`` below) and the figures are the daemon's own memory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.daemon import memory
from edge import signers
from edge.protocol import jose
from edge.sim.broker import BrokerPki, MosquittoBroker, make_pki
from edge.sim.builder import build_card
from edge.sim.card_qr import card_qr_text, write_qr_frame
from edge.sim.chip_security import SimChipSecurity
from edge.sim.pki import csca_certificate_path
from edge.sim.profile import load_profile
from edge.sim.runner import SimulatedCard
from edge.sim.stack import READER_NAMES, PcscStack

REPO = Path(__file__).resolve().parents[1]
WARD, TERMINAL = "26734", "T-01"
TOPICS = f"cccd-edge/v1/{WARD}/{TERMINAL}"
#: Runs ``cccd-edge run`` with gpiozero's mock-pin history capped (a real pin keeps none; see the docstring).
_BOOT = """
import collections, sys
from gpiozero.pins import mock
_clear_states = mock.MockPin.clear_states
def clear_states(self):
    _clear_states(self)
    self.states = collections.deque(self.states, maxlen=8)
mock.MockPin.clear_states = clear_states
from edge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def write_config(directory: Path, broker: MosquittoBroker, pki: BrokerPki, qr_image: Path, ward_public: Path,
                 card_every: int) -> Path:  # fmt: skip
    trust = directory / "trust"
    trust.mkdir()
    (trust / "csca.pem").write_bytes(csca_certificate_path().read_bytes())
    config = directory / "config.toml"
    config.write_text(
        f'terminal_id = "{TERMINAL}"\nward_code = "{WARD}"\nreader_name = "{READER_NAMES[0]}"\n'
        f'[paths]\nstate_dir = "{directory / "state"}"\ndevice_key = "{pki.client_key}"\n'
        f'device_cert = "{pki.client_cert}"\nbroker_ca = "{pki.ca_cert}"\ntrust_store = "{trust}"\n'
        f'ward_command_key = "{ward_public}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\ntls = true\n'
        f'[camera]\nsource = "replay"\nreplay_path = "{qr_image}"\nfps = 10\n'
        f"qr_repeat_after = {0.5 if card_every else 0}\n"
        "[timeouts]\nshow_result = 0.05\n"
        '[delivery]\nmode = "puback"\n',  # the soak's office counts results and sends no receipts
        encoding="utf-8",
    )
    return config


class Office:
    """Sends signed ``read_request`` commands and watches ``/result``, ``/status`` and ``/event``.

    Every message gets an arrival number; a read is over once a result arrived and the last status, newer than
    any other state seen since the command, says ``ready`` (the next command would otherwise be ``busy``)."""

    def __init__(self, broker: MosquittoBroker, pki: BrokerPki, ward: signers.KeySigner, can: str) -> None:
        self._ward, self._can = ward, can
        self._changed = threading.Condition()
        self.arrivals = 0
        self.results = 0
        self.state = ""
        self.ready_at = 0  # arrival number of the latest "ready" status
        self.busy_at = 0  # arrival number of the latest other state
        self.events: Counter[str] = Counter()
        self.busy_jtis: set[str] = set()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-office-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)  # fmt: skip
        self.client.tls_set(ca_certs=str(pki.ca_cert), certfile=str(pki.client_cert), keyfile=str(pki.client_key),
                            cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)  # fmt: skip
        self.client.on_connect = lambda c, *_: c.subscribe(f"{TOPICS}/+", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the office client never subscribed")

    def _message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        leaf = message.topic.rsplit("/", 1)[-1]
        with self._changed:
            self.arrivals += 1
            if leaf == "result":
                self.results += 1
            elif leaf == "status":
                self.state = json.loads(message.payload).get("terminal_state", "")
                if self.state == "ready":
                    self.ready_at = self.arrivals
                else:
                    self.busy_at = self.arrivals
            elif leaf == "event":
                event = json.loads(message.payload)
                self.events[event.get("event", "?")] += 1
                if event.get("event") == "busy" and event.get("request_id"):
                    self.busy_jtis.add(event["request_id"])
            self._changed.notify_all()

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"timed out waiting for {what} (state {self.state!r}, {self.results} results)")
                self._changed.wait(min(remaining, 0.5))

    def read_request(self) -> str:
        now = int(time.time())
        jti = str(uuid.uuid4())
        claims = {"iss": f"ward-{WARD}", "aud": TERMINAL, "jti": jti, "iat": now, "exp": now + 60,
                  "cmd": "read_request", "key": {"can": self._can}}  # fmt: skip
        token = jose.sign_jws(self._ward, claims, typ=jose.COMMAND_TYP).encode()
        self.client.publish(f"{TOPICS}/cmd", token, qos=1).wait_for_publish(10)
        return jti

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Soak:
    def __init__(self, office: Office, card: SimulatedCard) -> None:
        self.office, self.card = office, card
        self.resent = 0

    def until_ready(self, since: int, results: int) -> None:
        o = self.office
        o.wait(lambda: o.results >= results, 30, f"result {results}")
        o.wait(lambda: o.state == "ready" and o.ready_at > o.busy_at > since, 30, f"ready after result {results}")

    def by_command(self, results: int) -> None:
        """The office asks; the card is already on the reader."""
        o = self.office
        for _ in range(20):
            since = o.arrivals
            jti = o.read_request()
            try:
                o.wait(lambda jti=jti: o.results >= results or jti in o.busy_jtis, 30, f"result {results}")
            finally:
                o.busy_jtis.discard(jti)
            if o.results >= results:
                self.until_ready(since, results)
                return
            self.resent += 1  # busy: a QR repeat or a late status raced the command
            o.wait(lambda: o.state == "ready", 30, "ready before resending")
        raise RuntimeError(f"read {results}: the terminal stayed busy")

    def by_card(self, results: int) -> None:
        """The counter's way: the card lifted and put back; the QR still in view opens it again."""
        o = self.office
        since = o.arrivals
        self.card.remove()
        o.wait(lambda: o.state == "wait_card" and o.busy_at > since, 30, "the QR's repeat after the card left")
        self.card.insert()
        self.until_ready(since, results)


def spawn(directory: Path, config: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``cccd-edge run`` and return it with the seconds to ``READY=1``."""
    notify_path = directory / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "GPIOZERO_PIN_FACTORY": "mock",
           "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}  # fmt: skip
    started = time.monotonic()
    log = (directory / "daemon.log").open("wb")
    process = subprocess.Popen([sys.executable, "-c", _BOOT, "run", "--config", str(config)], cwd=REPO, env=env,
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        while not notify.recv(4096).startswith(b"READY=1"):
            pass
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        notify.close()
        log.close()
    return process, time.monotonic() - started


def slope_per_1000(samples: list[tuple[int, float]]) -> float:
    """Least-squares MB per 1,000 reads."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    var = sum((x - mean_x) ** 2 for x, _ in samples)
    return 1000 * sum((x - mean_x) * (y - mean_y) for x, y in samples) / var if var else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    profile = load_profile("default")
    spec = build_card(profile)
    ward = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    with tempfile.TemporaryDirectory(prefix="cccd-bench-soak-") as tmp, PcscStack() as stack:
        directory = Path(tmp)
        pki = make_pki(directory / "pki", client_cn=TERMINAL)
        broker = MosquittoBroker(directory / "broker", pki=pki)
        broker.start()
        ward_public = directory / "ward.pub"
        ward_public.write_bytes(ward.public_key.public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
        qr_image = write_qr_frame(card_qr_text(profile.qr_person), directory / "qr.png")
        config = write_config(directory, broker, pki, qr_image, ward_public, args.card_every)
        card = SimulatedCard(spec, stack.reader_port(0), security=SimChipSecurity(spec.secrets, spec.quirks))
        office = Office(broker, pki, ward, spec.secrets.can)
        process: subprocess.Popen[bytes] | None = None
        try:
            process, ready_s = spawn(directory, config)
            figures: dict[str, Any] = {"ready_s": round(ready_s, 2), "ready_rss": memory(process.pid)["VmRSS"]}
            soak = Soak(office, card)
            office.wait(lambda: office.state == "wait_card", 30, "the QR's key before the first card")
            card.insert()
            soak.until_ready(0, 1)
            samples: list[tuple[int, float]] = []
            started = time.monotonic()
            for done in range(2, args.reads + 1):
                if args.card_every and done % args.card_every == 0:
                    soak.by_card(done)
                else:
                    soak.by_command(done)
                if done >= args.warmup and (done - args.warmup) % args.every == 0:
                    rss = memory(process.pid)["VmRSS"]
                    samples.append((done, rss))
                    print(f"  {done:6d} reads  VmRSS {rss:7.2f} MB  ({(time.monotonic() - started) / done:.3f} s/read)",
                          flush=True)  # fmt: skip
            end = memory(process.pid)
            after = [rss for _, rss in samples]
            figures |= {
                "reads": args.reads, "by_card": args.reads // args.card_every if args.card_every else 0,
                "warmup_rss": after[0] if after else None, "end_rss": end["VmRSS"], "peak_rss": end["VmHWM"],
                "spread_after_warmup": round(max(after) - min(after), 2) if after else None,
                "slope_per_1000": round(slope_per_1000(samples), 3),
                "s_per_read": round((time.monotonic() - started) / args.reads, 3), "resent_busy": soak.resent,
                "events": dict(office.events),
            }  # fmt: skip
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            figures["exit"] = process.returncode
            return figures
        finally:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
            office.close()
            card.remove()
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1_000, help="reads before the first sample")
    parser.add_argument("--every", type=int, default=500, help="reads between samples")
    parser.add_argument("--card-every", type=int, default=20, help="every Nth read lifts the card (0: never)")
    args = parser.parse_args()
    print(f"cccd-edge run: {args.reads} reads (mutual-TLS mosquitto, private pcscd, virtual card, replay camera, "
          f"mock GPIO); VmRSS sampled every {args.every} after {args.warmup}", flush=True)  # fmt: skip
    figures = run(args)
    flat = figures["spread_after_warmup"] is not None and figures["spread_after_warmup"] <= 1.0
    print(f"  RSS at READY       {figures['ready_rss']:7.2f} MB   goal < 80 MB")
    if figures["warmup_rss"] is not None:
        print(f"  RSS after warm-up  {figures['warmup_rss']:7.2f} MB   ({args.warmup} reads)")
    print(f"  RSS at the end     {figures['end_rss']:7.2f} MB   peak {figures['peak_rss']:.2f} MB")
    print(f"  spread after warm-up {figures['spread_after_warmup']} MB ({'flat' if flat else 'NOT flat'}: goal <= 1 MB)"
          f", slope {figures['slope_per_1000']:+.3f} MB per 1,000 reads")  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
