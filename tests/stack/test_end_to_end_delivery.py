"""A result survives any single failure and arrives exactly once, end to end, with real processes only: the terminal
daemon (``cccd-edge run``, its outbox prefilled as a day without network leaves it), a real mosquitto, the office
gateway (``cccd-edge gateway run``) storing in PostgreSQL and sending its signed receipts and its webhooks, and a
webhook receiver on a loopback port. One test per failure: the terminal killed -9, the broker restarted without and
with persistence, the gateway killed -9, the database restarted.

Each asserts the same end: every result in the gateway's database exactly once (its ``(iss, jti)`` key), at the
webhook receiver exactly once by ``webhook-id`` (the Standard Webhooks idempotency key: the result's ``jti``), with a
signature that holds, and the terminal's outbox empty (it let each result go only on a receipt that names it).

To make each failure bite deterministically, the gateway is held (SIGSTOP: a gateway busy in a long transaction, no
failure in itself) while the terminal's results get their PUBACKs, so they sit at the broker or in the gateway's
socket when the failure strikes. Under the old PUBACK-only delivery the broker restart without persistence lost
every one of them, and the terminal kill -9 left them to the broker alone.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.office.database import Database
from edge.office.webhooks import write_secret
from edge.sim.postgres import PostgresCluster
from provisioning.pki import TerminalIdentity
from provisioning.ward_ca import sign_csr
from tests.fixtures.mqtt import MosquittoBroker
from tests.support.terminal_daemon import TERMINAL, TerminalDaemon, write_terminal_daemon
from tests.support.waiting import wait_until
from tests.support.ward import WARD, Ward, make_ward
from tests.support.webhook_receiver import WebhookReceiver, spec_signature_holds

pytestmark = [pytest.mark.stack, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RESULTS = 12
#: The gateway takes at most this many unacknowledged results: the rest wait at the broker (what a restart loses).
RECEIVE_MAXIMUM = 3
WAIT = 45.0


#: Real processes and a PostgreSQL restart: longer than the stack tests' usual wait.
_wait = functools.partial(wait_until, timeout=WAIT)


# --- the terminal: cccd-edge run -----------------------------------------------------------------------------------


def _daemon(directory: Path, ward: Ward, broker: MosquittoBroker, receipt_public: Path) -> TerminalDaemon:
    """A terminal provisioned by the ward: its key, its certificate from the ward CA (carried in each result's
    ``x5c``: the gateway knows it only through the ward CA), and the ward command key the gateway signs receipts with
    as the key it believes them under."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(TerminalIdentity(TERMINAL, WARD).name()) \
        .sign(key, hashes.SHA256())  # fmt: skip
    certificate = sign_csr(ward.ca, csr, days=2).public_bytes(serialization.Encoding.DER)
    return write_terminal_daemon(directory, broker, receipt_public, key=key, certificate=certificate, mode="receipt")


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the office: cccd-edge gateway run ------------------------------------------------------------------------------


class GatewayProcess:
    """``cccd-edge gateway run`` as a process of its own: it can be held (SIGSTOP), let go, killed -9, restarted."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        before = self.subscriptions()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "edge.cli", "gateway", "run", "--config",
                                             str(self.config)], cwd=REPO, stdout=out, stderr=out)  # fmt: skip
        _wait(lambda: self.subscriptions() > before, "the gateway's subscription")

    def subscriptions(self) -> int:
        return self.log.read_text(errors="replace").count("subscribed to") if self.log.exists() else 0

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)  # a held process would not see the SIGTERM
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Chain:
    """Everything between the terminal and the procedure software, for one test."""

    daemon: TerminalDaemon
    gateway: GatewayProcess
    broker: MosquittoBroker
    receiver: WebhookReceiver
    secret: str
    url: str

    def stored(self) -> list[str]:
        """The jtis of the terminal's rows in the gateway's database (a row per stored result)."""
        database = Database(self.url)
        try:
            return [str(jti) for (jti,) in database.execute("SELECT jti FROM results WHERE iss=? ORDER BY seq",
                                                             (TERMINAL,))]  # fmt: skip
        finally:
            database.close()

    def assert_exactly_once(self, jtis: list[str], *, no_webhook_resends: bool) -> None:
        """Every result once in the database and once at the receiver by webhook-id; the terminal let them go."""
        _wait(lambda: self.daemon.outbox_stats() == (0, 0), "the terminal's outbox emptied by receipts")
        assert sorted(self.stored()) == sorted(jtis), "each result exactly once in the gateway's database"
        _wait(lambda: {d.webhook_id for d in self.receiver.accepted()} >= set(jtis), "a webhook for every result")
        accepted = self.receiver.accepted()
        assert sorted(d.webhook_id for d in accepted) == sorted(jtis), "exactly once at the receiver by webhook-id"
        assert all(spec_signature_holds(self.secret, d.headers, d.body) for d in accepted)
        assert {d.json()["data"]["jti"] for d in accepted} == set(jtis)
        if no_webhook_resends:  # the fault never touched the gateway's queue: not even a resend by id
            assert len(self.receiver.deliveries) == len(jtis)


@pytest.fixture
def chain(tmp_path: Path, mqtt_broker_factory: Callable[..., MosquittoBroker], pcsc_stack: object,
          request: pytest.FixtureRequest) -> Iterator[Callable[..., Chain]]:  # fmt: skip
    """Make the chain (``persistence``: the broker's; ``url``: the gateway's database, else the session's cluster);
    everything is stopped after the test."""
    made: list[Chain] = []

    def make(*, persistence: bool = False, url: str | None = None) -> Chain:
        broker = mqtt_broker_factory(persistence=persistence)
        ward = make_ward(tmp_path / "ward-ca")
        receipt_key = ec.generate_private_key(ec.SECP256R1())
        signers.write_private_key(receipt_key, tmp_path / "ward-command.key")
        receipt_public = tmp_path / "ward-command.pub"
        receipt_public.write_bytes(receipt_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        receiver = WebhookReceiver()
        secret = write_secret(tmp_path / "webhook.secret")
        database = url or str(request.getfixturevalue("postgres_url"))
        config = tmp_path / "gateway.toml"
        config.write_text(
            f'instance = "office-1"\nward = "{WARD}"\n'
            f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\nreceive_maximum = {RECEIVE_MAXIMUM}\n'
            f'[storage]\nurl = "{database}"\n[trust]\nward_ca = "{ward.ca_path}"\n'
            f'[receipts]\nkey = "{tmp_path / "ward-command.key"}"\n'
            f'[[webhooks]]\nname = "procedure"\nurl = "{receiver.url}"\nsecret_file = "{tmp_path / "webhook.secret"}"\n'
            f'wards = ["{WARD}"]\nretry_first = 0.2\nretry_cap = 1.0\ntimeout = 1.0\n',
            encoding="utf-8",
        )
        made.append(Chain(_daemon(tmp_path / "terminal", ward, broker, receipt_public),
                          GatewayProcess(config, tmp_path / "gateway.log"), broker, receiver, secret, database))
        return made[-1]

    yield make
    for built in made:
        built.gateway.stop()
        built.receiver.close()


def _published_while_the_gateway_is_held(chain: Chain) -> tuple[list[str], subprocess.Popen[bytes]]:
    """The gateway subscribed, then held; the terminal publishes its results and gets every PUBACK: each result now
    waits at the broker (or in the held gateway's socket) and in the terminal's outbox, awaiting its receipt."""
    chain.gateway.start()
    chain.gateway.signal(signal.SIGSTOP)
    jtis = chain.daemon.prefill(RESULTS)
    terminal = chain.daemon.spawn()
    _wait(lambda: chain.daemon.outbox_stats() == (RESULTS, RESULTS), "every PUBACK (results awaiting their receipt)")
    assert chain.stored() == []
    return jtis, terminal


# --- one single failure per test -----------------------------------------------------------------------------------


def test_terminal_kill_9_between_puback_and_receipt(chain: Callable[..., Chain]) -> None:
    """The daemon is killed -9 after its PUBACKs, before any receipt; the gateway stores the results and receipts
    them to nobody (the terminal's session is a clean one). The restarted daemon publishes them again; the gateway
    stores none twice, receipts them again, and the webhooks went out once."""
    built = chain()
    jtis, terminal = _published_while_the_gateway_is_held(built)
    terminal.kill()
    terminal.wait()
    built.gateway.signal(signal.SIGCONT)
    _wait(lambda: len(built.stored()) == RESULTS, "the gateway storing what the broker kept for it")
    assert built.daemon.outbox_stats() == (RESULTS, RESULTS), "no receipt reached the dead terminal"
    restarted = built.daemon.spawn()
    try:
        built.assert_exactly_once(jtis, no_webhook_resends=True)
    finally:
        _end(restarted)


@pytest.mark.parametrize("persistence", [False, True], ids=["without-persistence", "with-persistence"])
def test_broker_restart(chain: Callable[..., Chain], persistence: bool) -> None:
    """The broker restarts while it holds the terminal's acknowledged results for the (held) gateway: without
    persistence it comes back empty and the terminal publishes them again after its receipt timeout; with
    persistence (a clean stop saves the gateway's session) it hands them over. Either way each is stored once."""
    built = chain(persistence=persistence)
    jtis, terminal = _published_while_the_gateway_is_held(built)
    try:
        if persistence:
            built.broker.stop()  # SIGTERM: mosquitto saves its sessions and queues
        else:
            assert built.broker.pid is not None
            os.kill(built.broker.pid, signal.SIGKILL)
            built.broker.stop()
        built.broker.start()
        subscribed = built.gateway.subscriptions()
        built.gateway.signal(signal.SIGCONT)
        _wait(lambda: built.gateway.subscriptions() > subscribed, "the gateway back at the restarted broker")
        built.assert_exactly_once(jtis, no_webhook_resends=True)
    finally:
        _end(terminal)


def test_gateway_kill_9_with_results_unacknowledged(chain: Callable[..., Chain]) -> None:
    """The gateway is killed -9 while the broker has handed it results it never acknowledged (and queues the rest
    in its session); the restarted gateway (systemd's Restart=always) gets them again and stores each once."""
    built = chain()
    jtis, terminal = _published_while_the_gateway_is_held(built)
    try:
        built.gateway.kill()
        built.gateway.start()
        built.assert_exactly_once(jtis, no_webhook_resends=False)
    finally:
        _end(terminal)


def test_database_restart_under_the_running_gateway(chain: Callable[..., Chain]) -> None:
    """PostgreSQL goes down under the running gateway while the terminal publishes: the gateway keeps the results
    unacknowledged (retrying with backoff), the terminal keeps them awaiting a receipt, the webhook sender waits;
    once the database is back each result is stored once, receipted and delivered once."""
    cluster = PostgresCluster()  # its own: the session's cluster must not go down under other tests
    cluster.start()
    try:
        built = chain(url=cluster.create_database())
        built.gateway.start()
        jtis = built.daemon.prefill(RESULTS)
        cluster.stop("immediate")
        terminal = built.daemon.spawn()
        try:
            _wait(lambda: "database not writable" in built.gateway.log.read_text(errors="replace"),
                  "the gateway finding the database gone")
            assert built.daemon.outbox_stats()[0] == RESULTS, "no receipt while nothing could be stored"
            cluster.start()
            built.assert_exactly_once(jtis, no_webhook_resends=False)
        finally:
            _end(terminal)
            built.gateway.stop()
    finally:
        cluster.destroy()
