"""``cccd-edge demo --serve``: the demo's world kept running, with the officer's counter page in a browser.

Inside a :class:`~edge.demo_env.DemoEnvironment` (private pcscd, mutual-TLS broker with the ward's ACL, ward CA,
provisioned terminal): the terminal daemon runs as its own process (``cccd-edge run``, as on the Pi; when it dies it
is started again after :data:`RESTART_DELAY` seconds, as systemd would), and this process runs the office gateway
with its pages (``edge.office.web``): the gateway verifies, stores and receipts, the pages show each result as it
arrives. Three virtual cards can be put on the reader, by the page's demo panel (keys 1, 2, 3) or by typing
``1``/``2``/``3`` here: the genuine card, a forged one (DG13 edited, re-signed by a rogue Document Signer: the
``rogue-ds`` profile) and a self-made one (signed under a CSCA nobody trusts: ``untrusted-issuer``). All three carry
the person of the QR the replay camera shows, so each tap is read with that key. Accounts: an officer working at the
demo counter and an auditor, each with a fresh random password printed once. Beside the pages, the REST API for the
procedure software (``[api]`` on a free loopback port) with an API key for the ward, printed once too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge.demo_env import TERMINAL_ID, WARD_CODE, DemoEnvironment
from edge.errors import DemoError
from edge.files import create_private
from edge.office.gateway_config import GatewayConfig
from edge.office.store import Outcome
from edge.office.web.officers import Role
from edge.office.web.pages import DemoControls
from edge.office.web.server import Office, open_office
from edge.sim.broker import free_port
from edge.sim.builder import build_card
from edge.sim.chip_security import SimChipSecurity
from edge.sim.profile import load_profile
from edge.sim.runner import SimulatedCard

if TYPE_CHECKING:
    from edge.office.api_server import ProcedureSide

log = logging.getLogger(__name__)

#: The page's demo cards and the profiles they are made from.
CARDS = {"genuine": "default", "forged": "rogue-ds", "unproven": "untrusted-issuer"}
RESTART_DELAY = 3.0
#: Between lifting one card and placing the next: the reader watcher must see the reader empty (a hand takes
#: longer), else the next card passes for the one whose result is already out.
LIFT_PAUSE = 1.0
READY_TIMEOUT = 60.0
DEFAULT_PORT = 8080


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    password: str
    role: Role


class DemoCounter:
    """The served demo (inside an entered :class:`DemoEnvironment`): :meth:`start`, :meth:`tap`, :meth:`stop`."""

    def __init__(self, env: DemoEnvironment, *, port: int = DEFAULT_PORT,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:  # fmt: skip
        if env.broker is None or env.pcsc is None:
            raise DemoError("the demo environment was not entered")
        self.env = env
        self.port = port if port and _port_free(port) else free_port()
        self._on_outcome = on_outcome
        self._cards: dict[str, SimulatedCard] = {}
        self._on_reader: SimulatedCard | None = None
        self._tap_lock = threading.Lock()
        self._daemon: subprocess.Popen[bytes] | None = None
        self._daemon_lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="demo-daemon-supervisor", daemon=True)
        self.daemon_starts = 0
        self.accounts: list[Account] = []
        self.office: Office | None = None
        self.procedure: ProcedureSide | None = None
        self.api_key: str | None = None

    # --- life cycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        env = self.env
        assert env.broker is not None
        assert env.pcsc is not None
        for name, profile in CARDS.items():
            spec = env.spec if profile == env.profile_name else build_card(load_profile(profile),
                                                                            pki_dir=env.sim_pki_dir)
            self._cards[name] = SimulatedCard(spec, env.pcsc.reader_port(0),
                                              security=SimChipSecurity(spec.secrets, spec.quirks))
        config = env.gateway_config(web_port=self.port, keepalive=5)
        can = env.spec.secrets.can or ""
        self.office = open_office(config, on_outcome=self._on_outcome,
                                  demo=DemoControls(self.tap, tuple(CARDS), can))
        officers = self.office.web.officers
        for username, role, counters in (("canbo", Role.OFFICER, (TERMINAL_ID,)), ("kiemtra", Role.AUDITOR, ())):
            password = secrets.token_urlsafe(9)
            officers.add(username, role, password=password, counters=counters,
                         display_name="Cán bộ một cửa" if role is Role.OFFICER else "Kiểm tra", replace=True)
            self.accounts.append(Account(username, password, role))
        self.office.start()
        self._start_api(config)
        self._start_daemon()
        self._supervisor.start()
        self.wait_online(READY_TIMEOUT)

    def stop(self) -> None:
        self._stopping.set()
        self._stop_daemon()
        if self._supervisor.is_alive():
            self._supervisor.join(5)
        for card in self._cards.values():
            with contextlib.suppress(Exception):
                card.remove()
        if self.procedure is not None:
            self.procedure.stop()
        if self.office is not None:
            self.office.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def api_url(self) -> str | None:
        """The REST API for the procedure software, None without FastAPI and uvicorn (the ``gateway`` extra)."""
        return self.procedure.api.url if self.procedure is not None and self.procedure.api is not None else None

    def _start_api(self, config: GatewayConfig) -> None:
        """The REST API beside the gateway (``gateway run`` serves it with ``[api]``), with a key for the ward."""
        assert self.office is not None
        try:
            from edge.office.api_server import open_procedure_side
        except ImportError:
            return
        from edge.office.api_clients import ApiClients

        self.procedure = open_procedure_side(config, self.office.gateway)
        self.procedure.start()
        self.api_key = ApiClients(self.office.gateway.store.database).add("demo", [WARD_CODE], time.time())

    def wait_online(self, timeout: float) -> None:
        """Until the terminal's retained status says online (its daemon connected to the broker)."""
        assert self.office is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(row.iss == TERMINAL_ID and row.state == "online" for row in self.office.gateway.store.fleet()):
                return
            if self._stopping.wait(0.1):
                return
        raise DemoError(f"the terminal daemon did not come online within {timeout:.0f} s; see {self.daemon_log}")

    # --- the cards -----------------------------------------------------------------------------------------------

    def tap(self, card: str) -> None:
        """Lift whatever card lies on the reader and put ``card`` there (a tap at the counter)."""
        chosen = self._cards.get(card)
        if chosen is None:
            raise DemoError(f"no demo card {card!r}: {', '.join(self._cards)}")
        with self._tap_lock:
            if self._on_reader is not None and self._on_reader.inserted:
                self._on_reader.remove()
                self._on_reader.wait_removed(5.0)
                time.sleep(LIFT_PAUSE)  # the terminal sees the card leave before the next one comes
            chosen.insert()
            self._on_reader = chosen

    # --- the terminal daemon, its own process --------------------------------------------------------------------

    @property
    def daemon_log(self) -> Path:
        return self.env.workdir / "device" / "daemon.log"

    @property
    def daemon_pid(self) -> int | None:
        with self._daemon_lock:
            return self._daemon.pid if self._daemon is not None and self._daemon.poll() is None else None

    def _start_daemon(self) -> None:
        environment = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}
        create_private(self.daemon_log)  # the daemon masks personal data, yet its log stays private
        with self._daemon_lock, self.daemon_log.open("ab") as output:
            self._daemon = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(self.env.config_path)],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment)
            self.daemon_starts += 1

    def _stop_daemon(self) -> None:
        with self._daemon_lock:
            daemon = self._daemon
        if daemon is None or daemon.poll() is not None:
            return
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)

    def _supervise(self) -> None:
        """Start the daemon again when it dies (``Restart=always``), after :data:`RESTART_DELAY`."""
        while not self._stopping.wait(0.2):
            with self._daemon_lock:
                daemon = self._daemon
            if daemon is None or daemon.poll() is None:
                continue
            log.warning("terminal daemon exited (%s); starting it again in %.0f s", daemon.returncode, RESTART_DELAY)
            if self._stopping.wait(RESTART_DELAY):
                return
            self._start_daemon()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
