"""The officers' pages over HTTP, served by uvicorn beside a real gateway (mosquitto, SQLite or PostgreSQL):
login, sessions, CSRF, security headers, roles, the proxy's identity header, server push of a stored result (masked),
reveals and desk reads written to an append-only audit log first, progress events filtered, the fleet problems
first. The browser's view of the same is tests/stack/test_officer_screen.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from edge import __version__, signers
from edge.cli import main
from edge.daemon.mqtt import close_loop_sockets
from edge.daemon.office_commands import CommandVerifier, ReplayGuard
from edge.errors import OfficerAccessError, StorageError
from edge.office.asgi import MAX_REQUEST_BYTES
from edge.office.database import Database
from edge.office.gateway_config import parse_gateway_config
from edge.office.store import ResultStore
from edge.office.verify import TerminalKeys
from edge.office.ward_trust import WardTrust
from edge.office.web import officers as officers_module
from edge.office.web.audit import AuditLog
from edge.office.web.feed import Feed, Subscription
from edge.office.web.officers import Officer, Role
from edge.office.web.pages import LOGIN_CHECKS
from edge.office.web.server import Office, open_office
from edge.protocol.commands import ReadCommand
from edge.sim.broker import MosquittoBroker
from tests.support.ward import NOW, WARD, Ward, make_ward

pytestmark = pytest.mark.stack
PREFIX = "cccd-edge/v1"
PASSWORD = "correct horse battery"
#: sample_result's citizen in clear (tests/support/results.py).
NAME, ID_NUMBER = "Nguyễn Văn An", "079203012345"


class Clock:
    """The office's clock, moved by the test (sessions time out without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Peer:
    """Terminals at the broker: publish results, statuses and events, and read their /cmd."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="terminals", protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self._client.on_message = lambda _c, _u, m: self.commands.put((m.topic, bytes(m.payload)))
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._client.subscribe(f"{PREFIX}/+/+/cmd", qos=1)
        assert subscribed.wait(10)

    def publish(self, terminal: str, leaf: str, payload: bytes, *, retain: bool = False) -> None:
        self._client.publish(f"{PREFIX}/{WARD}/{terminal}/{leaf}", payload, qos=1,
                             retain=retain).wait_for_publish(10)  # fmt: skip

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        close_loop_sockets(self._client)


@dataclass
class Setup:
    office: Office
    peer: Peer
    ward: Ward
    clock: Clock
    command_key: ec.EllipticCurvePrivateKey
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.office.url.rstrip("/")

    def client(self) -> httpx.Client:
        """A browser-like client (its cookies), closed with the office."""
        client = httpx.Client(base_url=self.url, timeout=10)
        self.clients.append(client)
        return client


@pytest.fixture
def office_factory(mqtt_broker_factory: Callable[..., MosquittoBroker], tmp_path: Path
                   ) -> Iterator[Callable[..., Setup]]:  # fmt: skip
    made: list[Setup] = []

    def make(storage: str | Path | None = None, *, served: str = WARD, **web: Any) -> Setup:
        """An office serving ward ``served`` ("+": every ward, a province's) with ``web`` settings."""
        broker = mqtt_broker_factory()
        ward = make_ward(tmp_path / f"ward{len(made)}")
        key = ec.generate_private_key(ec.SECP256R1())
        key_path = tmp_path / f"command{len(made)}.key"
        signers.write_private_key(key, key_path)
        storage = storage if storage is not None else tmp_path / f"office{len(made)}.db"
        config = parse_gateway_config({
            "instance": "office-1", "ward": served, "broker": {"host": broker.host, "port": broker.port},
            "storage": {"url": storage if isinstance(storage, str) else f"sqlite:///{storage}"},
            "trust": {"ward_ca": str(ward.ca_path)}, "receipts": {"key": str(key_path)},
            "web": {"port": 0, **web}})  # fmt: skip
        clock = Clock()
        office = open_office(config, clock=clock)
        officers = office.web.officers
        officers.add("lan", Role.OFFICER, password=PASSWORD, counters=["T-01"])
        officers.add("minh", Role.SUPERVISOR, password=PASSWORD)
        officers.add("thu", Role.AUDITOR, password=PASSWORD)
        office.start()
        assert office.gateway.subscribed.wait(10)
        setup = Setup(office, Peer(broker), ward, clock, key)
        made.append(setup)
        return setup

    yield make
    for setup in made:
        for client in setup.clients:
            client.close()
        setup.peer.close()
        setup.office.stop()


def _login(setup: Setup, username: str) -> httpx.Client:
    client = setup.client()
    form = client.get("/login")
    token = form.cookies["cccd_login"]
    answer = client.post("/login", data={"csrf": token, "username": username, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return client


def _csrf(client: httpx.Client, page: str) -> str:
    html = client.get(page, headers={"accept": "text/html"}).text
    return html.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


class Stream:
    """An SSE stream read in a thread: ``next(kind)`` gives the next event of that kind."""

    def __init__(self, client: httpx.Client, path: str) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(client, path), daemon=True)
        self._thread.start()
        assert self._open.wait(10)

    def _read(self, client: httpx.Client, path: str) -> None:
        try:
            with client.stream("GET", path, timeout=None) as response:
                self.status = response.status_code
                self.headers = response.headers
                self._open.set()
                kind = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        self.events.put((kind, json.loads(line[6:])))
        except httpx.HTTPError:  # the client closed under the stream at the end of the test
            pass

    def next(self, kind: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            got_kind, data = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if got_kind == kind:
                return data


def test_login_session_timeout_csrf_and_security_headers(office_factory: Callable[..., Setup]) -> None:
    setup = office_factory(session_idle=60)
    anonymous = setup.client()
    assert anonymous.get("/counter/T-01", headers={"accept": "text/html"}).headers["location"] == "/login"
    assert anonymous.get("/counter/T-01/latest").status_code == 401
    login = anonymous.get("/login")
    for name, value in {"content-security-policy": "default-src 'self'", "x-frame-options": "DENY",
                        "referrer-policy": "no-referrer", "cache-control": "no-store"}.items():
        assert value in login.headers[name]
    assert "script-src 'self';" in login.headers["content-security-policy"]  # no 'unsafe-inline'
    assert "<script>" not in login.text  # no inline script at all (the words are a JSON data block)
    token = login.cookies["cccd_login"]
    refused = anonymous.post("/login", data={"csrf": "forged", "username": "lan", "password": PASSWORD})
    assert refused.status_code == 403
    wrong = anonymous.post("/login", data={"csrf": token, "username": "lan", "password": "not the password"})
    assert wrong.status_code == 401
    flood = anonymous.post("/login", data={"csrf": token, "username": "lan", "password": "x" * MAX_REQUEST_BYTES})
    assert flood.status_code == 413  # refused before the form is parsed
    assert "cccd_session" not in wrong.cookies
    good = anonymous.post("/login", data={"csrf": token, "username": "lan", "password": PASSWORD})
    assert good.status_code == 303
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert anonymous.get("/counter/T-01/latest").status_code == 200
    assert anonymous.post("/counter/T-01/reveal", json={}).status_code == 403  # no CSRF header
    assert anonymous.post("/counter/T-01/reveal", json={}, headers={"x-csrf-token": "guess"}).status_code == 403
    setup.clock.offset += 61  # idle longer than web.session_idle
    assert anonymous.get("/counter/T-01/latest").status_code == 401


def test_a_flood_of_logins_checks_two_passwords_at_a_time(office_factory: Callable[..., Setup]) -> None:
    """argon2id takes 64 MiB a check: logins from anyone on the LAN (no account needed) were checked one per pool
    thread, 40 at once (2.5 GiB). Each check here waits (bounded) for a third to start beside it: none does."""
    setup = office_factory()
    officers = setup.office.web.officers
    real = officers.authenticate
    lock, crowded = threading.Lock(), threading.Event()
    active, peak = 0, 0

    def counted(username: str, password: str) -> Officer:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active > LOGIN_CHECKS:
                crowded.set()
        try:
            crowded.wait(0.5)  # room for another check to start now, if the server lets it
            return real(username, password)
        finally:
            with lock:
                active -= 1

    officers.authenticate = counted  # type: ignore[method-assign]
    clients = [setup.client() for _ in range(6)]
    tokens = [client.get("/login").cookies["cccd_login"] for client in clients]
    answers: list[int] = []

    def log_in(client: httpx.Client, token: str, name: str) -> None:
        answers.append(client.post("/login", data={"csrf": token, "username": name, "password": "wrong"}).status_code)

    threads = [threading.Thread(target=log_in, args=(client, token, f"nobody{i}"))
               for i, (client, token) in enumerate(zip(clients, tokens, strict=True))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [401] * 6
    assert peak == LOGIN_CHECKS


def test_wrong_passwords_lock_a_name_and_names_tried_once_are_not_kept_forever(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten wrong passwords lock the name for the window, the right one included. Each wrong password is remembered
    by name for that; a spray of names, each tried once, grew that memory without end (and with names of any
    length, and every name asked about at all)."""
    monkeypatch.setattr(officers_module, "MAX_TRACKED", 3)
    db = Database(f"sqlite:///{tmp_path}/office.db")
    clock = Clock()
    try:
        officers = officers_module.Officers(db, clock=clock)
        officers.add("lan", Role.OFFICER, password=PASSWORD, counters=["T-01"])
        for _ in range(officers_module.LOCK_AFTER):
            with pytest.raises(OfficerAccessError, match="wrong password"):
                officers.authenticate("lan", "wrong password")
        with pytest.raises(OfficerAccessError, match="too many") as locked:
            officers.authenticate("lan", PASSWORD)
        assert locked.value.reason == "locked"
        clock.offset += officers_module.LOCK_WINDOW + 1
        assert officers.authenticate("lan", PASSWORD).username == "lan"
        assert officers._failures == {}
        for name in ("a1", "a2", "a3", "a4", "x" * 5000):
            with pytest.raises(OfficerAccessError):
                officers.authenticate(name, "wrong password")
        assert set(officers._failures) == {"a1", "a2", "a3", "a4"}  # none stale yet; never the impossible name
        clock.offset += officers_module.LOCK_WINDOW + 1
        with pytest.raises(OfficerAccessError):
            officers.authenticate("b1", "wrong password")
        assert set(officers._failures) == {"b1"}
        officers.authenticate("lan", PASSWORD)
        assert set(officers._failures) == {"b1"}  # a name asked about is not kept for that alone
    finally:
        db.close()


def test_roles_keep_each_officer_to_their_own(office_factory: Callable[..., Setup]) -> None:
    setup = office_factory()
    lan, minh, thu = _login(setup, "lan"), _login(setup, "minh"), _login(setup, "thu")
    assert lan.get("/counter/T-01/latest").status_code == 200
    assert lan.get("/counter/T-02/latest").status_code == 403  # not her counter
    assert minh.get("/counter/T-02/latest").status_code == 200  # a supervisor sees every counter
    assert thu.get("/counter/T-01/latest").status_code == 403  # an auditor sees no citizen
    assert thu.get("/fleet/data").status_code == 403
    assert thu.get("/audit").status_code == 200
    assert lan.get("/audit").status_code == 403


def test_a_stored_result_is_pushed_masked_and_a_reveal_is_audited_first(
        office_factory: Callable[..., Setup], caplog: pytest.LogCaptureFixture, office_db: str | Path) -> None:
    """On both databases: the accounts, sessions and audit log live beside the results."""
    caplog.set_level(logging.DEBUG)
    setup = office_factory(office_db)
    lan = _login(setup, "lan")
    stream = Stream(lan, "/counter/T-01/stream")
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    terminal = setup.ward.terminal("T-01", issued=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    setup.peer.publish("T-01", "result", terminal.token(1, now=int(time.time())))
    view = stream.next("result")
    assert view["key"]["iss"] == "T-01"
    assert view["banner"]["style"] == "ok"
    assert view["banner"]["title"] == "Thẻ thật, đã xác minh nguồn phát hành"
    assert NAME not in json.dumps(view, ensure_ascii=False)
    assert ID_NUMBER not in json.dumps(view)
    csrf = _csrf(lan, "/counter/T-01")
    key = view["key"]
    assert lan.post("/counter/T-01/reveal", json={**key, "reason": ""}, headers={"x-csrf-token": csrf}
                    ).status_code == 400  # no reason, no reveal
    assert AuditLog(setup.office.web.db).entries() == []
    revealed = lan.post("/counter/T-01/reveal", json={**key, "reason": "Đăng ký thường trú"},
                        headers={"x-csrf-token": csrf})
    assert revealed.status_code == 200
    assert revealed.headers["cache-control"] == "no-store"
    fields = {field["name"]: field["value"] for field in revealed.json()["fields"]}
    assert fields["full_name"] == NAME
    assert fields["id_number"] == ID_NUMBER
    assert "place_of_residence" in revealed.json()["addresses"]
    (entry,) = AuditLog(setup.office.web.db).entries()
    assert (entry.officer, entry.action, entry.terminal, entry.result_iss, entry.result_jti, entry.reason) == (
        "lan", "reveal", "T-01", key["iss"], key["jti"], "Đăng ký thường trú")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert NAME not in logged
    assert ID_NUMBER not in logged


def test_a_result_another_instance_stored_reaches_the_page_too(office_factory: Callable[..., Setup],
                                                                tmp_path: Path) -> None:
    """Several gateway instances share the results: the page's feed reads the store by cursor, so a result stored
    by another instance (here: another store on the same database, as a second process would) is pushed as well."""
    storage = tmp_path / "shared.db"
    setup = office_factory(storage)
    lan = _login(setup, "lan")
    stream = Stream(lan, "/counter/T-01/stream")
    other = ResultStore(storage, TerminalKeys({}, WardTrust.load(setup.ward.ca_path, None)), instance="office-2")
    try:
        terminal = setup.ward.terminal("T-01", issued=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        outcome = other.ingest(terminal.token(7, now=int(time.time())), time.time())
        assert outcome.status == "stored"
        view = stream.next("result")
        assert (view["key"]["jti"], view["seq"]) == (outcome.jti, 7)
    finally:
        other.close()


def test_a_desk_read_is_audited_signed_with_a_registered_challenge_and_its_progress_filtered(
        office_factory: Callable[..., Setup], tmp_path: Path) -> None:
    setup = office_factory()
    setup.peer.publish("T-01", "status", json.dumps({"state": "online", "terminal_state": "ready"}).encode(),
                       retain=True)
    lan = _login(setup, "lan")
    stream = Stream(lan, "/counter/T-01/stream")
    csrf = _csrf(lan, "/counter/T-01")
    assert lan.post("/counter/T-01/read", json={"can": "12345"}, headers={"x-csrf-token": csrf}).status_code == 400
    answer = lan.post("/counter/T-01/read", json={"can": "012345", "profile": "identity"},
                      headers={"x-csrf-token": csrf})
    assert answer.status_code == 200, answer.text
    request_id = answer.json()["request_id"]
    topic, token = setup.peer.commands.get(timeout=10)
    assert topic == f"{PREFIX}/{WARD}/T-01/cmd"
    verifier = CommandVerifier(setup.command_key.public_key(), "T-01", ReplayGuard(tmp_path / "seen.db"))
    command = verifier.verify(token, int(time.time()))
    assert isinstance(command, ReadCommand)
    assert command.jti == request_id
    (challenge,) = setup.office.web.db.execute("SELECT challenge FROM read_requests WHERE jti=?",
                                                (request_id,)).fetchone()
    assert bytes(challenge) == command.challenge_bytes  # the result's AA answer is checked against it
    (entry,) = AuditLog(setup.office.web.db).entries()
    assert (entry.action, entry.request_id, entry.officer) == ("desk_read", request_id, "lan")
    setup.peer.publish("T-01", "event", json.dumps({"event": "command_accepted", "cmd": "read_request",
                                                    "jti": request_id}).encode())
    progress = stream.next("progress")
    assert progress == {"terminal": "T-01", "event": "command_accepted", "cmd": "read_request", "jti": request_id}
    # An event carrying more than the contract allows (a broken or hostile terminal): only the known fields pass.
    setup.office.web.feed.publish_event(WARD, "T-01", json.dumps({"event": "read_failed", "detail": "x",
                                                                   "full_name": NAME}).encode())
    assert stream.next("progress") == {"terminal": "T-01", "event": "read_failed", "detail": "x"}
    setup.peer.publish("T-01", "status", json.dumps({"state": "online", "terminal_state": "reading"}).encode(),
                       retain=True)
    assert stream.next("status")["terminal_state"] == "reading"


def test_a_post_nested_too_deep_is_a_clean_refusal(office_factory: Callable[..., Setup]) -> None:
    """A JSON body of a few kilobytes of ``[[[`` made json.loads raise RecursionError: a 500, not the 400 of any
    other body that is not a JSON object."""
    setup = office_factory()
    lan = _login(setup, "lan")
    headers = {"x-csrf-token": _csrf(lan, "/counter/T-01"), "content-type": "application/json"}
    for path in ("/counter/T-01/reveal", "/counter/T-01/read", "/counter/T-01/cancel"):
        refused = lan.post(path, content=b"[" * 5000, headers=headers)
        assert (refused.status_code, refused.json()) == (400, {"error": "input"}), path
    assert AuditLog(setup.office.web.db).entries() == []
    assert setup.peer.commands.empty()


def test_the_fleet_lists_problems_first(office_factory: Callable[..., Setup],
                                        mqtt_contract_exempt: Callable[..., None]) -> None:
    """Problems first, each terminal's software version when its status names a plain one (an older terminal's
    status has none; a hostile one's is no version): unknown, never the terminal's text."""
    setup = office_factory()
    hostile = "<img src=x onerror=alert(1)>"
    statuses = {"T-01": {"state": "online", "version": __version__, "terminal_state": "ready", "indicator": "ready",
                         "reader": "ok", "camera": "ok", "queued": 0, "awaiting_receipt": 2},
                "T-02": {"state": "offline"},
                "T-03": {"state": "online", "version": hostile, "terminal_state": "fault", "reader": "missing",
                         "camera": "ok"},
                "T-04": {"state": "online", "version": "1" * 33, "terminal_state": "ready", "reader": "ok",
                         "camera": "ok", "queued": 3}}  # fmt: skip
    payloads = {terminal: json.dumps(status).encode() for terminal, status in statuses.items()}
    mqtt_contract_exempt(payloads["T-03"], payloads["T-04"])
    for terminal, payload in payloads.items():
        setup.peer.publish(terminal, "status", payload, retain=True)
    minh = _login(setup, "minh")
    deadline = time.monotonic() + 15
    rows: list[dict[str, Any]] = []
    while len(rows) < 4 and time.monotonic() < deadline:
        rows = minh.get("/fleet/data").json()["terminals"]
        time.sleep(0.05)
    assert [row["terminal"] for row in rows] == ["T-02", "T-03", "T-04", "T-01"]
    assert rows[0]["problems"][0] == "offline"
    assert rows[-1]["problems"] == []
    assert (rows[-1]["indicator"], rows[-1]["queued"], rows[-1]["awaiting_receipt"]) == ("ready", 0, 2)
    assert {row["terminal"]: row["version"] for row in rows} == {"T-01": __version__, "T-02": None, "T-03": None,
                                                                   "T-04": None}
    assert [row.version for row in setup.office.gateway.store.fleet()] == [__version__, None, None, None]
    assert hostile not in minh.get("/fleet/data").text
    lan = _login(setup, "lan")
    assert [row["terminal"] for row in lan.get("/fleet/data").json()["terminals"]] == ["T-01"]  # her own only


def test_the_proxys_identity_header_counts_only_from_the_configured_proxy(
        office_factory: Callable[..., Setup]) -> None:
    elsewhere = office_factory(identity_header="X-Remote-User", trusted_proxies=["192.0.2.10"])
    client = elsewhere.client()
    assert client.get("/counter/T-01/latest", headers={"x-remote-user": "lan"}).status_code == 401
    local = office_factory(identity_header="X-Remote-User", trusted_proxies=["127.0.0.0/8"])
    client = local.client()
    assert client.get("/counter/T-01/latest", headers={"x-remote-user": "lan"}).status_code == 200
    assert client.get("/counter/T-02/latest", headers={"x-remote-user": "lan"}).status_code == 403
    assert client.get("/counter/T-01/latest", headers={"x-remote-user": "nobody"}).status_code == 401


def test_the_audit_log_refuses_update_and_delete(office_db: str | Path) -> None:
    db = Database(office_db if isinstance(office_db, str) else f"sqlite:///{office_db}")
    try:
        audit = AuditLog(db)
        audit.append(Officer("lan", Role.OFFICER, ("T-01",)), "reveal", reason="test", terminal="T-01",
                     result=("T-01", "jti-1"))
        for statement in ("UPDATE audit_log SET reason='edited'", "DELETE FROM audit_log",
                          *(["TRUNCATE audit_log"] if db.dialect == "postgresql" else [])):
            with pytest.raises(Exception, match="append-only") as refused:
                db.execute(statement)
            assert not isinstance(refused.value, StorageError)  # refused, not a database outage
        (entry,) = audit.entries()
        assert entry.reason == "test"
    finally:
        db.close()


def test_no_code_path_changes_the_audit_log() -> None:
    sources = "\n".join(path.read_text(encoding="utf-8") for path in
                        (Path(__file__).resolve().parents[2] / "edge").rglob("*.py"))  # fmt: skip
    assert "UPDATE audit_log" not in sources
    assert "DELETE FROM audit_log" not in sources


def test_the_demo_panel_exists_only_in_the_demo(office_factory: Callable[..., Setup]) -> None:
    setup = office_factory()
    lan = _login(setup, "lan")
    csrf = _csrf(lan, "/counter/T-01")
    assert 'id="demo"' not in lan.get("/counter/T-01", headers={"accept": "text/html"}).text
    assert lan.post("/demo/tap", json={"card": "genuine"}, headers={"x-csrf-token": csrf}).status_code == 404


def test_officer_accounts_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ward = make_ward(tmp_path / "ward")
    config = tmp_path / "gateway.toml"
    config.write_text(f'instance = "office-1"\nward = "{WARD}"\n[storage]\nurl = "sqlite:///{tmp_path}/office.db"\n'
                      f'[trust]\nward_ca = "{ward.ca_path}"\n[web]\nport = 0\n', encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["gateway", "officer", "add", "lan", "--role", "officer", "--counter", "T-01", "--password-stdin",
                 "--config", str(config)]) == 0
    assert PASSWORD not in capsys.readouterr().out
    assert main(["gateway", "officer", "list", "--config", str(config)]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed == {"username": "lan", "role": "officer", "counters": ["T-01"], "display_name": "",
                      "disabled": False}
    db = Database(f"sqlite:///{tmp_path}/office.db")
    try:
        (stored,) = db.execute("SELECT password_hash FROM officers").fetchone()
        assert stored.startswith("$argon2id$")
    finally:
        db.close()
    assert main(["gateway", "officer", "disable", "lan", "--config", str(config)]) == 0
    assert main(["gateway", "audit", "--config", str(config)]) == 0
    # A province's server: terminal ids repeat across wards, so a counter is ward/terminal.
    config.write_text(config.read_text(encoding="utf-8").replace(f'ward = "{WARD}"', 'ward = "+"'), encoding="utf-8")
    capsys.readouterr()
    assert main(["gateway", "officer", "add", "hoa", "--role", "officer", "--counter", "T-01", "--no-password",
                 "--config", str(config)]) == 1
    assert "ward/terminal" in capsys.readouterr().err
    assert main(["gateway", "officer", "add", "hoa", "--role", "officer", "--counter", f"{WARD}/T-01",
                 "--no-password", "--config", str(config)]) == 0


def test_a_result_retention_reduced_leaves_the_counter_and_the_fleet_still_lists_its_terminal(
        office_factory: Callable[..., Setup]) -> None:
    setup = office_factory()
    setup.peer.publish("T-01", "status", json.dumps({"state": "online", "terminal_state": "ready"}).encode(),
                       retain=True)
    terminal = setup.ward.terminal("T-01", issued=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    setup.peer.publish("T-01", "result", terminal.token(1, now=int(time.time())))
    lan = _login(setup, "lan")
    deadline = time.monotonic() + 15
    while lan.get("/counter/T-01/latest").json() is None:
        assert time.monotonic() < deadline, "the result never arrived"
        time.sleep(0.05)
    key = lan.get("/counter/T-01/latest").json()["key"]
    setup.office.gateway.store.reduce([(key["iss"], key["jti"])], time.time())
    assert lan.get("/counter/T-01/latest").json() is None  # nothing personal left to show
    csrf = _csrf(lan, "/counter/T-01")
    assert lan.post("/counter/T-01/reveal", json={**key, "reason": "Đăng ký thường trú"},
                    headers={"x-csrf-token": csrf}).status_code == 404
    (row,) = lan.get("/fleet/data").json()["terminals"]  # its last result keeps no token: no certificate to read
    assert (row["terminal"], row["cert_expiry"]) == ("T-01", None)
    assert row["last_result"] is not None


OTHER_WARD = "26735"


def _feed_pushes(subscriptions: list[Subscription]) -> list[list[tuple[str, str, str]]]:
    """What each subscription has been handed so far, as ``(kind, ward, terminal)``."""
    got: list[list[tuple[str, str, str]]] = []
    for subscription in subscriptions:
        pushes: list[tuple[str, str, str]] = []
        while not subscription.queue.empty():
            push = subscription.queue.get_nowait()
            pushes.append((push.kind, push.ward, push.terminal))
        got.append(pushes)
    return got


def test_the_feed_keys_its_pushes_by_ward_and_terminal(tmp_path: Path) -> None:
    """Terminal ids are chosen per ward: two wards' "T-01" store into one database (a province's), and a page of
    one ward's server gets its own ward's pushes only, whether it watches one terminal or every one; a page of every
    ward (a province's server) gets both. Results, statuses and progress alike."""
    storage = tmp_path / "shared.db"
    ward_a, ward_b = make_ward(tmp_path / "a"), make_ward(tmp_path / "b", OTHER_WARD)
    stores = [ResultStore(storage, TerminalKeys({}, WardTrust.load(ward.ca_path)), instance=f"office-{n}")
              for n, ward in enumerate((ward_a, ward_b))]  # fmt: skip
    feed = Feed(Database(storage), clock=lambda: NOW - 60)

    async def run() -> list[list[tuple[str, str, str]]]:
        subscriptions = [feed.subscribe(frozenset({(WARD, "T-01")}), wards=None),  # the counter of ward A's T-01
                         feed.subscribe(None, wards=frozenset({WARD})),  # ward A's supervisor
                         feed.subscribe(None, wards=None),  # a province's supervisor
                         # a province's officer of A's T-01 and B's T-02: B's T-01 is neither
                         feed.subscribe(frozenset({(WARD, "T-01"), (OTHER_WARD, "T-02")}), wards=None)]
        for store, ward, code in ((stores[1], ward_b, OTHER_WARD), (stores[0], ward_a, WARD)):
            assert store.ingest(ward.terminal("T-01").token(1, ward=code), NOW).status == "stored"
            assert store.keep_status(code, "T-01", b'{"state": "online"}', NOW) is None
        assert feed.poll() == 2
        for code in (OTHER_WARD, WARD):
            feed.notify_status(code, "T-01")
            feed.publish_event(code, "T-01", b'{"event": "card_present"}')
        await asyncio.sleep(0)  # the pushes were handed over with call_soon_threadsafe
        return _feed_pushes(subscriptions)

    try:
        counter, supervisor, province, officer = asyncio.run(run())
    finally:
        feed.stop()
        for store in stores:
            store.close()
    mine = [("result", WARD, "T-01"), ("status", WARD, "T-01"), ("progress", WARD, "T-01")]
    assert counter == mine
    assert supervisor == mine
    assert sorted(province) == sorted([*mine, *[(kind, OTHER_WARD, terminal) for kind, _, terminal in mine]])
    assert officer == mine


def test_a_page_shows_and_reveals_only_its_own_wards_results(office_factory: Callable[..., Setup],
                                                              tmp_path: Path) -> None:
    """Another ward's gateway stores its own "T-01" in the same database: the counter of this ward's T-01 is pushed
    neither its result (which it would show masked, and could then reveal), nor its status nor its progress, and
    neither ``latest`` nor a reveal hands it out."""
    storage = tmp_path / "shared.db"
    setup = office_factory(storage)
    other = make_ward(tmp_path / "other-ward", OTHER_WARD)
    theirs = ResultStore(storage, TerminalKeys({}, WardTrust.load(other.ca_path)), instance="office-other")
    try:
        lan = _login(setup, "lan")
        stream = Stream(lan, "/counter/T-01/stream")
        now = int(time.time())
        their_terminal = other.terminal("T-01", issued=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        their_first = theirs.ingest(their_terminal.token(1, now=now, ward=OTHER_WARD), time.time())
        assert their_first.status == "stored"
        assert theirs.keep_status(OTHER_WARD, "T-01", b'{"state": "online", "terminal_state": "fault"}',
                                  time.time()) is None  # fmt: skip
        setup.office.web.feed.notify_status(OTHER_WARD, "T-01")
        setup.office.web.feed.publish_event(OTHER_WARD, "T-01", b'{"event": "read_failed", "detail": "theirs"}')
        # Then this ward's own: each is the first of its kind the page gets.
        terminal = setup.ward.terminal("T-01", issued=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        setup.peer.publish("T-01", "result", terminal.token(1, now=now))
        view = stream.next("result")
        assert view["key"]["jti"] != their_first.jti
        setup.office.web.feed.publish_event(WARD, "T-01", b'{"event": "read_failed", "detail": "ours"}')
        assert stream.next("progress")["detail"] == "ours"
        setup.peer.publish("T-01", "status", json.dumps({"state": "online", "terminal_state": "ready"}).encode(),
                           retain=True)
        assert stream.next("status")["terminal_state"] == "ready"
        their_last = theirs.ingest(their_terminal.token(2, now=now, ward=OTHER_WARD), time.time() + 1)
        assert their_last.status == "stored"
        assert lan.get("/counter/T-01/latest").json()["key"] == view["key"]  # not theirs, though it came later
        csrf = _csrf(lan, "/counter/T-01")
        for jti in (their_first.jti, their_last.jti):
            assert lan.post("/counter/T-01/reveal", json={"iss": "T-01", "jti": jti, "reason": "Đăng ký thường trú"},
                            headers={"x-csrf-token": csrf}).status_code == 404
        assert AuditLog(setup.office.web.db).entries() == []
    finally:
        theirs.close()


@pytest.mark.parametrize("served", [WARD, "+"])
def test_the_fleet_and_the_home_list_are_per_ward_and_terminal(office_factory: Callable[..., Setup], tmp_path: Path,
                                                               served: str) -> None:
    """Another ward's "T-01" (its result stored later, its certificate expiring within the month) and "T-05" share
    the database: a ward's server lists its own T-01 alone, with its own last result and certificate (no
    "cert_expiring" of the other's), and the supervisor's home lists only its ward's terminals; a province's server
    ("+") lists each (ward, terminal), each with its own result and certificate, the home naming their wards."""
    storage = tmp_path / "shared.db"
    setup = office_factory(storage, served=served)
    other = make_ward(tmp_path / "other-ward", OTHER_WARD)
    theirs = ResultStore(storage, TerminalKeys({}, WardTrust.load(other.ca_path)), instance="office-other")
    ours = setup.office.gateway.store
    now = time.time()
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    mine, their_t01 = setup.ward.terminal("T-01", issued=issued), other.terminal("T-01", issued=issued, days=10)
    try:
        assert ours.ingest(mine.token(1, now=int(now)), now).status == "stored"
        assert theirs.ingest(their_t01.token(1, now=int(now), ward=OTHER_WARD), now + 1).status == "stored"
        their_t05 = other.terminal("T-05", issued=issued)
        assert theirs.ingest(their_t05.token(1, now=int(now), ward=OTHER_WARD), now).status == "stored"
        for store, code in ((ours, WARD), (theirs, OTHER_WARD)):
            assert store.keep_status(code, "T-01", b'{"state": "online", "terminal_state": "ready"}', now) is None
        minh = _login(setup, "minh")
        rows = {(row["ward"], row["terminal"]): row for row in minh.get("/fleet/data").json()["terminals"]}
        own = rows.pop((WARD, "T-01"))
        expiry = x509.load_der_x509_certificate(mine.certificate).not_valid_after_utc.timestamp()
        assert (own["last_result"], own["cert_expiry"], own["problems"]) == (now, expiry, [])
        if served == "+":
            other_row = rows.pop((OTHER_WARD, "T-01"))
            assert (other_row["last_result"], other_row["problems"]) == (now + 1, ["cert_expiring"])
        assert rows == {}
        home = minh.get("/", headers={"accept": "text/html"}).text
        listed = re.findall(r'href="/counter/([^"]+)">([^<]*)</a>', home)
        if served == "+":  # a province's counter names its ward
            assert listed == [(f"{WARD}/T-01", f"Quầy T-01 · {WARD}"),
                              (f"{OTHER_WARD}/T-01", f"Quầy T-01 · {OTHER_WARD}"),
                              (f"{OTHER_WARD}/T-05", f"Quầy T-05 · {OTHER_WARD}")]  # fmt: skip
            assert own["counter"] == f"/counter/{WARD}/T-01"
            assert other_row["counter"] == f"/counter/{OTHER_WARD}/T-01"
        else:
            assert listed == [("T-01", "Quầy T-01")]
            assert own["counter"] == "/counter/T-01"  # a ward's server keeps its URLs
    finally:
        theirs.close()


def test_a_provinces_counter_is_its_wards_terminal(office_factory: Callable[..., Setup], tmp_path: Path) -> None:
    """A province's server ("+") serves two wards' "T-01": each counter is named by its ward (``/counter/W/T``), and
    its latest result, its pushes, a desk read and the audit entry are that ward's T-01's, never the other's; it
    once sent a desk read to the T-01 that last reported a status, whichever ward's that was."""
    storage = tmp_path / "shared.db"
    setup = office_factory(storage, served="+")
    other = make_ward(tmp_path / "other-ward", OTHER_WARD)
    theirs = ResultStore(storage, TerminalKeys({}, WardTrust.load(other.ca_path)), instance="office-other")
    ours, feed = setup.office.gateway.store, setup.office.web.feed
    now = time.time()
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    try:
        mine = ours.ingest(setup.ward.terminal("T-01", issued=issued).token(1, now=int(now)), now)
        their = theirs.ingest(other.terminal("T-01", issued=issued).token(1, now=int(now), ward=OTHER_WARD), now + 1)
        assert (mine.status, their.status) == ("stored", "stored")
        assert theirs.keep_status(OTHER_WARD, "T-01", b'{"state": "online", "terminal_state": "ready"}', now) is None
        assert ours.keep_status(WARD, "T-01", b'{"state": "online", "terminal_state": "fault"}', now + 1) is None
        minh = _login(setup, "minh")
        base = f"/counter/{OTHER_WARD}/T-01"
        assert minh.get(f"{base}/latest").json()["key"]["jti"] == their.jti
        assert minh.get(f"/counter/{WARD}/T-01/latest").json()["key"]["jti"] == mine.jti
        stream = Stream(minh, f"{base}/stream")
        feed.notify_status(WARD, "T-01")  # ward A's, reported last: not this counter's
        feed.notify_status(OTHER_WARD, "T-01")
        assert stream.next("status")["terminal_state"] == "ready"
        page = minh.get(base, headers={"accept": "text/html"}).text
        data = json.loads(page.split('<script type="application/json" id="page">', 1)[1].split("</script>", 1)[0])
        assert (data["ward"], data["terminal"], data["base"]) == (OTHER_WARD, "T-01", base)  # the script's URLs
        csrf = _csrf(minh, base)
        answer = minh.post(f"{base}/read", json={"can": "012345"}, headers={"x-csrf-token": csrf})
        assert answer.status_code == 200, answer.text
        topic, token = setup.peer.commands.get(timeout=10)
        assert topic == f"{PREFIX}/{OTHER_WARD}/T-01/cmd"
        command = CommandVerifier(setup.command_key.public_key(), "T-01", ReplayGuard(tmp_path / "seen.db")
                                  ).verify(token, int(time.time()))  # fmt: skip
        assert (command.iss, command.jti) == (f"ward-{OTHER_WARD}", answer.json()["request_id"])
        assert minh.post(f"{base}/cancel", json={}, headers={"x-csrf-token": csrf}).status_code == 200
        assert setup.peer.commands.get(timeout=10)[0] == f"{PREFIX}/{OTHER_WARD}/T-01/cmd"
        assert [entry.terminal for entry in AuditLog(setup.office.web.db).entries()] == [f"{OTHER_WARD}/T-01"] * 2
    finally:
        theirs.close()


def test_an_officer_of_one_wards_t01_opens_no_other_wards_t01(office_factory: Callable[..., Setup],
                                                              tmp_path: Path) -> None:
    """On a province's server an account names its counters ward/terminal (a bare id is refused there, and one
    written for a ward's server opens nothing): ward A's T-01 opens, ward B's T-01 is not hers (403), nor does
    the fleet list it."""
    setup = office_factory(tmp_path / "shared.db", served="+")
    officers, store = setup.office.web.officers, setup.office.gateway.store
    with pytest.raises(OfficerAccessError, match="ward/terminal"):
        officers.add("hoa", Role.OFFICER, password=PASSWORD, counters=["T-01"], province=True)
    officers.add("hoa", Role.OFFICER, password=PASSWORD, counters=[f"{WARD}/T-01"], province=True)
    for code in (WARD, OTHER_WARD):
        assert store.keep_status(code, "T-01", b'{"state": "online", "terminal_state": "ready"}', time.time()) is None
    hoa = _login(setup, "hoa")
    assert hoa.get("/", follow_redirects=False).headers["location"] == f"/counter/{WARD}/T-01"
    assert hoa.get(f"/counter/{WARD}/T-01/latest").status_code == 200
    assert hoa.get(f"/counter/{OTHER_WARD}/T-01/latest").status_code == 403
    csrf = _csrf(hoa, f"/counter/{WARD}/T-01")
    refused = hoa.post(f"/counter/{OTHER_WARD}/T-01/read", json={"can": "012345"}, headers={"x-csrf-token": csrf})
    assert refused.status_code == 403
    assert setup.peer.commands.empty()
    assert [(row["ward"], row["terminal"]) for row in hoa.get("/fleet/data").json()["terminals"]] == [(WARD, "T-01")]
    lan = _login(setup, "lan")  # her account says "T-01" alone: on a province's server, no counter
    for code in (WARD, OTHER_WARD):
        assert lan.get(f"/counter/{code}/T-01/latest").status_code == 403
