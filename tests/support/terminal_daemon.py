"""``cccd-edge run`` as the delivery stack tests start it, as a process of its own: what it needs on disk (trust
store, device key, a blank replay camera, its config), its outbox prefilled as a day without network leaves it, and
that outbox read beside it as ``doctor`` does."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from edge import signers
from edge.daemon.outbox import Outbox
from edge.protocol import jose
from edge.protocol.result import ProcedureProfile
from edge.sim.broker import MosquittoBroker
from edge.sim.pki import load_or_create_pki
from edge.sim.stack import READER_NAMES
from tests.support.paths import REPO
from tests.support.results import sample_result
from tests.support.ward import WARD

TERMINAL = "T-01"
#: gpiozero without a Raspberry Pi: the daemon's LED and buzzer on mock pins.
MOCK_GPIO = {"GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}


@dataclass(frozen=True)
class TerminalDaemon:
    """One terminal (:data:`TERMINAL` of :data:`tests.support.ward.WARD`) on disk; ``certificate`` (DER), when it
    has one from the ward CA, goes into each prefilled result's ``x5c``."""

    config: Path
    state_dir: Path
    signer: signers.KeySigner
    device_pub: Path  # PEM: the gateway's trust in this terminal, when not through the ward CA
    certificate: bytes | None = None

    def spawn(self, env: Mapping[str, str] | None = None, *, output: int = subprocess.DEVNULL,
              ) -> subprocess.Popen[bytes]:  # fmt: skip
        """``cccd-edge run`` in ``env`` (else this one's), its stdout and stderr to ``output``."""
        return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(self.config)], cwd=REPO,
                                env={**(env or os.environ), **MOCK_GPIO}, stdout=output, stderr=output)  # fmt: skip

    def prefill(self, count: int) -> list[str]:
        """``count`` results in the outbox, signed, never published (what a day without network leaves); their
        jtis, in seq order."""
        outbox = Outbox(self.state_dir / "outbox.db", max_count=100, max_bytes=10_000_000)
        now = int(time.time())
        document = json.loads(sample_result(ProcedureProfile.RESIDENCE, terminal_id=TERMINAL, ward_code=WARD,
                                            completed_at=dt.datetime.fromtimestamp(now, dt.UTC)).to_json())
        jtis: list[str] = []

        def token(seq: int) -> bytes:
            signed = jose.result_token(self.signer, terminal_id=TERMINAL, seq=seq, document=document, now=now,
                                       certificate=self.certificate)  # fmt: skip
            jtis.append(str(jose.json_object(jose.b64url_decode(signed.split(b".")[1].decode()), "claims")["jti"]))
            return signed

        try:
            for _ in range(count):
                outbox.enqueue(token)
        finally:
            outbox.close()
        return jtis

    def outbox_stats(self) -> tuple[int, int]:
        """(results held, of which awaiting a receipt), read-only beside the running daemon, as ``doctor`` reads."""
        outbox = Outbox(self.state_dir / "outbox.db", max_count=100, max_bytes=10_000_000, read_only=True)
        try:
            stats = outbox.stats()
            return stats.count, stats.awaiting
        finally:
            outbox.close()


def write_terminal_daemon(directory: Path, broker: MosquittoBroker, ward_command_key: Path, *,
                          key: ec.EllipticCurvePrivateKey | None = None, certificate: bytes | None = None,
                          mode: str = "receipt") -> TerminalDaemon:  # fmt: skip
    """The files of a terminal in ``directory``: the simulator's CSCA as its trust store, ``key`` as its device key,
    ``ward_command_key`` (PEM public key) as the key it checks receipts and commands with, the broker without TLS,
    delivery ``mode`` ("receipt" or "puback") with a short receipt timeout. ``key``: a new one if not given."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    directory.mkdir(parents=True, exist_ok=True)
    trust = directory / "trust"
    trust.mkdir()
    (trust / "csca.pem").write_bytes(load_or_create_pki(directory / "pki").csca_certificate_path.read_bytes())
    signers.write_private_key(key, directory / "device.key")
    device_pub = directory / "device.pub"
    device_pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    blank = directory / "blank.png"
    Image.new("L", (640, 480), 110).save(blank)
    state_dir = directory / "state"
    config = directory / "config.toml"
    config.write_text(
        f'terminal_id = "{TERMINAL}"\nward_code = "{WARD}"\nreader_name = "{READER_NAMES[0]}"\n'
        f'[paths]\nstate_dir = "{state_dir}"\ndevice_key = "{directory / "device.key"}"\n'
        f'trust_store = "{trust}"\nward_command_key = "{ward_command_key}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\ntls = false\nkeepalive = 5\n'
        "reconnect_min_delay = 0.5\nreconnect_max_delay = 1.0\n"
        f'[camera]\nsource = "replay"\nreplay_path = "{blank}"\nfps = 5\n'
        f'[delivery]\nmode = "{mode}"\nreceipt_timeout = 1.0\nrepublish_max_delay = 2.0\n',
        encoding="utf-8",
    )
    return TerminalDaemon(config, state_dir, signers.KeySigner(key), device_pub, certificate)
