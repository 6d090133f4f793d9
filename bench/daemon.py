"""The daemon as systemd runs it: ``cccd-edge run`` in a subprocess against a private pcscd and mosquitto.

Figures: spawn -> ``READY=1`` on $NOTIFY_SOCKET (goal <= 2 s), resident memory after READY and after one full
QR -> chip read -> verify -> sign -> PUBACK cycle (goal <= 80 MB, VmHWM is the peak), and SIGTERM -> exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import segno
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge import signers
from edge.protocol.cccd_qr import CccdQr, encode_cccd_qr
from edge.sim.broker import MosquittoBroker
from edge.sim.builder import build_card
from edge.sim.chip_security import SimChipSecurity
from edge.sim.pki import csca_certificate_path
from edge.sim.profile import load_profile
from edge.sim.runner import SimulatedCard
from edge.sim.stack import READER_NAMES, PcscStack

RUNS = 5
REPO = Path(__file__).resolve().parents[1]


def _qr_png(path: Path, text: str) -> Path:
    modules = np.pad(np.array(segno.make(text, error="m", micro=False, encoding="utf-8").matrix, dtype=bool), 4)
    qr = Image.fromarray(np.where(modules, 20, 230).astype(np.uint8))
    canvas = Image.new("L", (640, 480), 110)
    canvas.paste(qr.resize((qr.width * 4, qr.height * 4), Image.Resampling.NEAREST), (160, 40))
    canvas.save(path)
    return path


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) in MB from /proc (bench/soak.py reads it too)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def _config(directory: Path, broker: MosquittoBroker, qr_image: Path) -> Path:
    key_path = directory / "device.key"
    signers.write_private_key(ec.generate_private_key(ec.SECP256R1()), key_path)
    trust = directory / "trust"
    trust.mkdir()
    (trust / "csca.pem").write_bytes(csca_certificate_path().read_bytes())
    config = directory / "config.toml"
    config.write_text(
        f'terminal_id = "T-01"\nward_code = "26734"\nreader_name = "{READER_NAMES[0]}"\n'
        f'[paths]\nstate_dir = "{directory / "state"}"\ndevice_key = "{key_path}"\ntrust_store = "{trust}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\ntls = false\n'
        f'[camera]\nsource = "replay"\nreplay_path = "{qr_image}"\nfps = 10\n'
        "[timeouts]\nshow_result = 0.5\n",
        encoding="utf-8",
    )
    return config


class ResultWatcher:
    def __init__(self, broker: MosquittoBroker) -> None:
        self.arrived = threading.Event()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe("cccd-edge/v1/26734/T-01/result", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda *_: self.arrived.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def one_run(directory: Path, config: Path, stack: PcscStack, broker: MosquittoBroker, card: SimulatedCard,
            watcher: ResultWatcher) -> dict[str, float]:  # fmt: skip
    notify_path = directory / f"notify-{time.monotonic_ns()}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "GPIOZERO_PIN_FACTORY": "mock",
           "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}  # fmt: skip
    watcher.arrived.clear()
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], cwd=REPO,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        while not notify.recv(4096).startswith(b"READY=1"):
            pass
        figures = {"ready_s": time.monotonic() - started}
        figures |= {f"idle_{k}": v for k, v in memory(process.pid).items()}
        card.insert()
        if not watcher.arrived.wait(30):
            raise RuntimeError("no result arrived")
        figures["result_s"] = time.monotonic() - started
        figures |= {f"read_{k}": v for k, v in memory(process.pid).items()}
        card.remove()
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        figures["stop_s"] = time.monotonic() - stopping
        if process.returncode != 0:
            raise RuntimeError(f"daemon exited {process.returncode}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()
    return figures


def main() -> None:
    profile = load_profile("default")
    person = profile.person
    spec = build_card(profile)
    qr = CccdQr(id_number=person.id_number, old_id_number=person.old_id_number, full_name=person.full_name,
                date_of_birth=person.date_of_birth, sex=person.sex, place_of_residence=person.place_of_residence,
                date_of_issue=person.date_of_issue)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cccd-bench-daemon-") as tmp, PcscStack() as stack:
        directory = Path(tmp)
        broker = MosquittoBroker(directory / "broker")
        broker.start()
        watcher = ResultWatcher(broker)
        try:
            config = _config(directory, broker, _qr_png(directory / "qr.png", encode_cccd_qr(qr)))
            card = SimulatedCard(spec, stack.reader_port(0), security=SimChipSecurity(spec.secrets, spec.quirks))
            runs = [one_run(directory, config, stack, broker, card, watcher) for _ in range(RUNS)]
        finally:
            watcher.close()
            broker.stop()
    print(f"cccd-edge run, {RUNS} runs (private pcscd + mosquitto, replay camera, mock GPIO)")
    for name, unit, goal in (("ready_s", "s", "<= 2 s"), ("idle_VmRSS", "MB", "<= 80 MB"),
                             ("read_VmRSS", "MB", "<= 80 MB"), ("read_VmHWM", "MB", "<= 80 MB"),
                             ("result_s", "s", ""), ("stop_s", "s", "")):  # fmt: skip
        values = [run[name] for run in runs]
        print(f"  {name:<11} median {statistics.median(values):7.2f} {unit:<2}  max {max(values):7.2f} {unit:<2}"
              f"  {('goal ' + goal) if goal else ''}")
    print(json.dumps({name: round(statistics.median(run[name] for run in runs), 3) for name in runs[0]}))


if __name__ == "__main__":
    main()
