"""Everything `cccd-edge demo` needs around the daemon, built from nothing in one temporary directory.

A fresh machine has no broker, no pcscd, no keys and no card. This module makes them the way a ward would: a
private pcscd with a vpcd reader, a broker CA and a mutual-TLS mosquitto, a ward CA, a device key whose CSR the ward
CA signs and ``provisioning.device.install_device`` installs (the real provisioning path, writing the daemon's
config.toml), a ward command-signing key, the simulator's CSCA as the only trust anchor, the virtual card of a
profile and a camera image of that card's QR code. :class:`DemoEnvironment` is a context manager that undoes all of
it in reverse order, also on Ctrl-C or an error half-way; ``keep=True`` leaves the directory for inspection.

Layout of the directory::

    pcscd/    the private pcscd (socket, reader.conf.d, log)
    broker/   mosquitto.conf, acl (the ward's, from provisioning.broker_kit), its log, pki/ (broker CA, server
              and office certificates)
    ward/     ward-ca.key/.crt, device.crt (what the ward sends back), ward-command.key/.pub
    device/   state/ (device.key, device.csr, outbox) and etc/ (config.toml, device.crt, trust/)
    sim-pki/  the simulator's CSCA and Document Signers (the card is signed by them)
    office/   results.db of the office gateway (0600: personal data)
    camera/   qr.png, the frame the replay camera shows
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives import serialization

from edge.config import Config, load_config
from edge.errors import DemoError
from edge.files import private_key_pem
from edge.office.gateway_config import GatewayConfig, parse_gateway_config
from edge.sim.broker import BrokerPki, MosquittoBroker, make_pki
from edge.sim.builder import build_card
from edge.sim.card_qr import card_qr_text, write_qr_frame
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import SimCardSpec
from edge.sim.pki import load_or_create_pki
from edge.sim.profile import CardProfile, load_profile
from edge.sim.runner import SimulatedCard
from edge.sim.stack import PcscStack
from provisioning.broker_kit import render_acl
from provisioning.device import init_device, install_device
from provisioning.files import PRIVATE, PUBLIC, dump_toml, write_atomic
from provisioning.pki import TerminalIdentity, new_private_key
from provisioning.ward_ca import init_ward_ca, load_csr, sign_csr

TERMINAL_ID = "DEMO-01"
WARD_CODE = "26734"  # a ward code shaped like Vietnam's (5 digits); any topic-safe text works
OFFICE_CN = "office"
STRAY_STOP_TIMEOUT = 5.0


def _children_mentioning(marker: str) -> list[int]:
    """Pids of this process's children whose command line contains ``marker`` (Linux /proc)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not (entry.name.isascii() and entry.name.isdigit()):
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the parenthesised command name
        if parent == me and marker in cmdline:
            found.append(int(entry.name))
    return found


@dataclass(frozen=True, slots=True)
class OfficeTls:
    """What the office gateway needs to reach the mutual-TLS broker (its certificate's CN is the ACL's gateway user)."""

    ca: Path
    cert: Path
    key: Path

    def as_dict(self) -> dict[str, str]:
        return {"ca": str(self.ca), "cert": str(self.cert), "key": str(self.key)}


class DemoEnvironment:
    """Build (``__enter__``) and tear down (``__exit__``) the demo's world; attributes are valid inside the block."""

    def __init__(self, profile: str = "default", *, keep: bool = False, fps: float = 10.0,
                 broker_acl: bool = True, qr_repeat_after: float | None = None,
                 show_result: float | None = None) -> None:
        self.profile_name = profile
        self.keep = keep
        self.fps = fps
        #: ``camera.qr_repeat_after`` for the daemon (None: its default); the served demo's QR stays in view while
        #: cards come and go, so it offers the key again soon after each tap.
        self.qr_repeat_after = qr_repeat_after
        #: ``timeouts.show_result`` (None: its default): the served demo's cards come one after another.
        self.show_result = show_result
        #: Run the broker as a ward's (provisioning broker-kit): the certificate's CN is user name and client id,
        #: and the ward's ACL confines the terminal to its own topics; the office's certificate is its gateway.
        self.broker_acl = broker_acl
        self.workdir = Path(tempfile.mkdtemp(prefix="cccd-edge-demo-"))
        self._exit = contextlib.ExitStack()
        self.pcsc: PcscStack | None = None
        self.broker: MosquittoBroker | None = None
        self.card: SimulatedCard | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> DemoEnvironment:
        self._exit.callback(self._remove_workdir)
        self._exit.callback(self._stop_strays)
        try:
            self._build()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit.close()

    def _remove_workdir(self) -> None:
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_strays(self) -> None:
        """Stop our own children that still run from the work directory.

        A Ctrl-C that lands inside ``subprocess.Popen`` after the exec leaves a broker or pcscd that no object
        holds. They are found by parent pid (this process) and the work directory in their command line, so only
        processes this demo started are touched.
        """
        for pid in _children_mentioning(str(self.workdir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STRAY_STOP_TIMEOUT
            with contextlib.suppress(ChildProcessError):  # already reaped
                while os.waitpid(pid, os.WNOHANG) == (0, 0):
                    if time.monotonic() > deadline:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        break
                    time.sleep(0.01)

    def _build(self) -> None:
        self.profile: CardProfile = load_profile(self.profile_name)  # a typo fails before anything starts
        # pcscd first: libpcsclite reads PCSCLITE_CSOCK_NAME once, at the process's first PC/SC context.
        # Each stop is registered before its start: an interrupt during a start still stops what was spawned.
        self.pcsc = PcscStack(self.workdir / "pcscd")
        self._exit.callback(self.pcsc.stop)
        self.pcsc.start()

        sim_pki = load_or_create_pki(self.workdir / "sim-pki")
        self.sim_pki_dir = sim_pki.directory
        self.spec: SimCardSpec = build_card(self.profile, pki_dir=sim_pki.directory)

        ward_dir = self.workdir / "ward"
        ward_ca, _ = init_ward_ca(ward_dir, WARD_CODE, days=400)  # a fresh one per run, but dated as a ward's
        self.ward_ca_cert = ward_dir / "ward-ca.crt"
        command_key = new_private_key()
        self.ward_command_private = ward_dir / "ward-command.key"  # the office signs commands and receipts with it
        write_atomic(self.ward_command_private, private_key_pem(command_key), PRIVATE)
        self.ward_command_key = ward_dir / "ward-command.pub"
        write_atomic(self.ward_command_key, command_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), PUBLIC)

        broker_dir = self.workdir / "broker"
        self.broker_pki: BrokerPki = make_pki(broker_dir / "pki", client_cn=OFFICE_CN)
        acl = render_acl(WARD_CODE, [OFFICE_CN]) if self.broker_acl else None
        self.broker = MosquittoBroker(broker_dir, pki=self.broker_pki, client_cas=[ward_dir / "ward-ca.crt"],
                                      acl=acl, identity_as_username=self.broker_acl)
        self._exit.callback(self.broker.stop)
        self.broker.start()
        self.office_tls = OfficeTls(self.broker_pki.ca_cert, self.broker_pki.client_cert, self.broker_pki.client_key)

        state_dir, config_dir = self.workdir / "device" / "state", self.workdir / "device" / "etc"
        device = init_device(state_dir, TerminalIdentity(TERMINAL_ID, WARD_CODE))
        self.device_cert = ward_dir / "device.crt"
        signed = sign_csr(ward_ca, load_csr(device.csr), days=365)  # under 30 days the fleet flags it expiring
        write_atomic(self.device_cert, signed.public_bytes(serialization.Encoding.PEM), PUBLIC)
        installed = install_device(
            state_dir, config_dir, cert=self.device_cert, broker_ca=self.broker_pki.ca_cert,
            ward_command_key=self.ward_command_key, trust=[sim_pki.csca_certificate_path],
            mqtt_host=self.broker.host, mqtt_port=self.broker.port,
        )

        self.qr_text = card_qr_text(self.profile.qr_person)
        self.qr_image = write_qr_frame(self.qr_text, self.workdir / "camera" / "qr.png")
        self.config_path = installed.config
        self.config: Config = self._complete_config(installed.config)
        self.results_db = self.workdir / "office" / "results.db"

        self.card = SimulatedCard(self.spec, self.pcsc.reader_port(0),
                                  security=SimChipSecurity(self.spec.secrets, self.spec.quirks))
        self._exit.callback(self.card.remove)

    def _complete_config(self, path: Path) -> Config:
        """Add what provisioning leaves to the operator (the camera) to the installed config.toml, then load it."""
        table = tomllib.loads(path.read_text(encoding="utf-8"))
        table["camera"] = {"source": "replay", "replay_path": str(self.qr_image), "fps": self.fps}
        if self.qr_repeat_after is not None:
            table["camera"]["qr_repeat_after"] = self.qr_repeat_after
        if self.show_result is not None:
            table["timeouts"] = {**table.get("timeouts", {}), "show_result": self.show_result}
        write_atomic(path, dump_toml(table).encode("utf-8"), PUBLIC)
        return load_config(path)

    def gateway_config(self, *, web_port: int | None = None, keepalive: int | None = None) -> GatewayConfig:
        """The ward's office gateway as the demo runs it: the office certificate (the broker's ACL lets that user read
        the results and write the receipts), SQLite in ``office/``, the ward CA (the terminal's certificate travels in
        its results' x5c), receipts signed with the ward command key (which the terminal was provisioned to trust),
        and the REST API on a free loopback port; with ``web_port`` the officers' pages (``demo --serve``)."""
        if self.broker is None:
            raise DemoError("the demo environment was not entered")
        broker = {"host": self.broker.host, "port": self.broker.port, "ca": str(self.office_tls.ca),
                  "cert": str(self.office_tls.cert), "key": str(self.office_tls.key), "client_id": OFFICE_CN}
        if keepalive is not None:
            broker["keepalive"] = keepalive
        table: dict[str, object] = {
            "instance": "demo", "ward": WARD_CODE, "broker": broker,
            "storage": {"url": f"sqlite:///{self.results_db}"},
            "trust": {"ward_ca": str(self.ward_ca_cert)},
            "receipts": {"key": str(self.ward_command_private)},
            "api": {"listen": "127.0.0.1", "port": 0},
        }  # fmt: skip
        if web_port is not None:
            table["web"] = {"listen": "127.0.0.1", "port": web_port}
        return parse_gateway_config(table)

    # --- what the demo reports -----------------------------------------------------------------------------------

    @property
    def pcscd_kind(self) -> str:
        return "private" if self.pcsc is not None and self.pcsc.private else "system"
