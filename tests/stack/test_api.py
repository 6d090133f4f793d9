"""The REST API's contract, one suite on both backends (SQLite, PostgreSQL in a private cluster), over real HTTP
to uvicorn on a loopback port: every client limited to its wards (ward A's key cannot list, read, ask or retry
ward B's), results by cursor and filter, a read request the terminal's own verifier accepts with its challenge
registered (with its consent_ref), the national service's answers to an online_check result recorded and listed
without their values, the fleet and the webhooks' dead letters; API keys from the command line, stored as digests."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.cli import main
from edge.daemon.office_commands import CommandVerifier, ReadCommand, ReplayGuard
from edge.office.api import ApiContext, create_api
from edge.office.api_clients import ApiClients
from edge.office.api_server import ApiServer
from edge.office.asgi import MAX_REQUEST_BYTES
from edge.office.commands import SignedCommand
from edge.office.gateway_config import ApiSettings
from edge.office.store import MAX_ONLINE_ANSWER_BYTES, ResultStore
from edge.office.verify import TerminalKeys
from edge.office.ward_trust import WardTrust
from edge.office.webhooks import Endpoint, WebhookQueue, parse_secret
from edge.protocol import jose
from edge.protocol.access.policy import CanKey
from edge.protocol.result import Check, ProcedureProfile, QrUsage, ReadTiming, make_result
from edge.protocol.verify.checks import CheckStatus, Verdict
from tests.support.results import CHECKS, CITIZEN, citizen_of
from tests.support.ward import NOW, WARD, make_ward

pytestmark = pytest.mark.stack
WARD_B = "99999"
SECRET = parse_secret("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkw")


class Api:
    """The API on one database with clients for ward A, ward B and every ward, and what it sent to terminals."""

    def __init__(self, office_db: str | Path, directory: Path) -> None:
        self.ward_a, self.ward_b = make_ward(directory / "a"), make_ward(directory / "b", WARD_B)
        bundle = directory / "cas.pem"
        bundle.write_bytes(self.ward_a.ca_path.read_bytes() + self.ward_b.ca_path.read_bytes())
        self.ward_key = ec.generate_private_key(ec.SECP256R1())  # online_check results arrive encrypted to it
        self.store = ResultStore(office_db, TerminalKeys({}, WardTrust.load(bundle)), decrypt_key=self.ward_key)
        self.command_key = ec.generate_private_key(ec.SECP256R1())
        self.sent: list[SignedCommand] = []
        clients = ApiClients(self.store.database)
        self.keys = {name: clients.add(name, wards, NOW) for name, wards in
                     (("a", [WARD]), ("b", [WARD_B]), ("all", ["+"]))}  # fmt: skip
        self.webhooks = WebhookQueue(self.store.database, [Endpoint("proc", "https://p.example/h", SECRET,
                                                                   frozenset({"+"}))])  # fmt: skip
        self.context = ApiContext(store=self.store, clients=clients, webhooks=self.webhooks,
                                  signer=signers.KeySigner(self.command_key), send_command=self.sent.append,
                                  serves_ward=lambda ward: ward in (WARD, WARD_B), clock=lambda: float(NOW))
        self.server = ApiServer(create_api(self.context), ApiSettings(port=0))
        self.server.start()

    def call(self, method: str, url: str, body: object = None, *, key: str | None = None) -> tuple[int, Any]:
        """One real HTTP request (``body``: JSON, or bytes sent as they are); (status, the JSON answer)."""
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
        data = (body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None
                else (b"" if method == "POST" else None))  # fmt: skip
        request = urllib.request.Request(self.server.url.rstrip("/") + url, data=data, headers=headers,  # noqa: S310
                                         method=method)  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # the test's own server
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def get(self, client: str, url: str, **params: object) -> tuple[int, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self.call("GET", url + query, key=self.keys[client])

    def post(self, client: str, url: str, body: object = None) -> tuple[int, Any]:
        return self.call("POST", url, body, key=self.keys[client])

    def close(self) -> None:
        self.server.stop()
        self.store.close()


@pytest.fixture
def api(office_db: str | Path, tmp_path: Path) -> Iterator[Api]:
    made = Api(office_db, tmp_path)
    yield made
    made.close()


def _store(api: Api, received: float) -> None:
    a1, a2, b1 = api.ward_a.terminal("T-A1"), api.ward_a.terminal("T-A2"), api.ward_b.terminal("T-B1", ward=WARD_B)
    tokens = [a1.token(1), a1.token(2), a2.token(1), b1.token(1, ward=WARD_B), a1.token(3)]
    outcomes = [api.store.ingest(token, received + index) for index, token in enumerate(tokens)]
    assert [o.status for o in outcomes] == ["stored"] * 5, outcomes


def test_each_client_sees_its_wards_only(api: Api) -> None:
    _store(api, NOW)
    status, page = api.get("a", "/v1/results")
    assert status == 200
    assert [(r["terminal"], r["seq"]) for r in page["items"]] == [("T-A1", 1), ("T-A1", 2), ("T-A2", 1),
                                                                  ("T-A1", 3)]
    status, page = api.get("b", "/v1/results")
    assert [(r["terminal"], r["ward"]) for r in page["items"]] == [("T-B1", WARD_B)]
    status, refused = api.get("a", "/v1/results", ward="079203012345")
    assert (status, "079203012345" in refused["detail"]) == (403, False), "a 403 quotes no input back"
    assert api.get("a", "/v1/results", ward=WARD_B)[0] == 403, "ward A's key cannot list ward B"
    assert len(api.get("all", "/v1/results")[1]["items"]) == 5
    b_jti = page["items"][0]["jti"]
    assert api.get("a", f"/v1/results/T-B1/{b_jti}")[0] == 404, "another ward's result does not exist for A"
    status, one = api.get("b", f"/v1/results/T-B1/{b_jti}")
    assert status == 200
    assert one["document"]["ward_code"] == WARD_B
    assert one["token"].count(".") == 2
    assert api.post("a", f"/v1/wards/{WARD_B}/terminals/T-B1/read-requests", {"key": {"can": "123456"}})[0] == 403
    assert api.sent == []
    assert api.call("GET", "/v1/results")[0] == 401
    assert api.call("GET", "/v1/results", key="cek_0123456789abcdef_" + "x" * 43)[0] == 401
    assert ApiClients(api.store.database).revoke("b", NOW)
    assert api.get("b", "/v1/results")[0] == 401, "a revoked key"
    (digest,) = api.store.database.execute("SELECT key_hash FROM api_clients WHERE name='a'").fetchone()
    assert api.keys["a"] is not None
    assert digest not in api.keys["a"], "the table holds a digest, not the key"
    assert len(digest) == 64


def test_results_by_cursor_and_filter(api: Api) -> None:
    _store(api, NOW)
    seen: list[tuple[str, int]] = []
    cursor = None
    for _ in range(4):
        params: dict[str, object] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        status, page = api.get("a", "/v1/results", **params)
        assert status == 200
        seen += [(r["terminal"], r["seq"]) for r in page["items"]]
        cursor = page["next_cursor"]
    assert seen == [("T-A1", 1), ("T-A1", 2), ("T-A2", 1), ("T-A1", 3)], "each once, in the order stored"
    assert cursor is not None, "the position to poll from later"
    _store_one = api.ward_a.terminal("T-A1").token(4)
    api.store.ingest(_store_one, NOW + 100)
    _, page = api.get("a", "/v1/results", cursor=cursor)
    assert [(r["terminal"], r["seq"]) for r in page["items"]] == [("T-A1", 4)], "polling gets what came since"
    _, page = api.get("all", "/v1/results", terminal="T-A2")
    assert [(r["terminal"], r["seq"]) for r in page["items"]] == [("T-A2", 1)]
    _, page = api.get("all", "/v1/results", since=NOW + 3)
    assert [(r["terminal"], r["seq"]) for r in page["items"]] == [("T-B1", 1), ("T-A1", 3), ("T-A1", 4)]
    _, page = api.get("all", "/v1/results", verdict="failed")
    assert page["items"] == []
    assert api.get("a", "/v1/results", cursor="not-a-cursor")[0] == 400
    for hostile in (b'[1, "T-A1", "\\ud800"]', b'[1, "T-A1\\u0000", "x"]'):  # no database binds these: were 500s
        assert api.get("a", "/v1/results", cursor=base64.urlsafe_b64encode(hostile).decode())[0] == 400, hostile
    assert api.get("a", "/v1/results", limit=100_000)[0] == 422


def test_a_served_result_carries_todays_units_of_its_addresses(api: Api) -> None:
    """Issue 17 part 1 for the procedure software: the one-result route and the list map each address of the
    document to today's units when they serve it (exact: one commune; split: every candidate, none guessed), with
    the data's version; nothing of it is stored. A result without an address carries none; one reduced by
    retention is no longer served at all (its citizen is gone)."""
    terminal = api.ward_a.terminal("T-A1")
    tokens = [terminal.token(1, citizen=citizen_of("default")), terminal.token(2, citizen=citizen_of("young")),
              terminal.token(3, profile=ProcedureProfile.IDENTITY)]
    outcomes = [api.store.ingest(token, NOW + index) for index, token in enumerate(tokens)]
    assert [o.status for o in outcomes] == ["stored"] * 3, outcomes
    exact, split, identity = (api.get("a", f"/v1/results/T-A1/{o.jti}") for o in outcomes)
    assert exact[0] == split[0] == identity[0] == 200
    assert set(exact[1]["addresses"]) == {"place_of_residence"}, "the residence profile carries one address"
    residence = exact[1]["addresses"]["place_of_residence"]
    assert residence["confidence"] == "exact"
    assert residence["commune"] == {"name": "Phường Sài Gòn", "code": "26740"}
    assert residence["province"] == {"name": "Thành phố Hồ Chí Minh", "code": "79"}
    assert residence["old"]["commune"] == {"name": "Phường Bến Nghé", "code": "26740"}
    assert residence["candidates"] == []
    assert residence["data_version"].startswith("vietnamadminunits ")
    residence = split[1]["addresses"]["place_of_residence"]
    assert residence["confidence"] == "split"
    assert residence["commune"] is None
    assert {(unit["name"], unit["code"]) for unit in residence["candidates"]} == {
        ("Phường Phương Liệt", "00352"), ("Phường Khương Đình", "00364")}
    assert residence["province"]["code"] == "01"
    assert identity[1]["document"]["citizen"].get("place_of_residence") is None
    assert identity[1]["addresses"] == {}, "no address in the document, none mapped"
    _, page = api.get("a", "/v1/results")
    assert [item["addresses"] for item in page["items"]] == [exact[1]["addresses"], split[1]["addresses"], {}]
    rows = api.store.database.execute("SELECT * FROM results").fetchall()
    assert not any("Sài Gòn" in str(value) or "vietnamadminunits" in str(value) for row in rows for value in row), \
        "the mapping is made when served, never stored"
    api.store.reduce([("T-A1", outcomes[0].jti or "")], NOW + 10)
    assert api.get("a", f"/v1/results/T-A1/{outcomes[0].jti}")[0] == 404, "a reduced result is not served"
    _, page = api.get("a", "/v1/results")
    assert [item["seq"] for item in page["items"]] == [2, 3]


def test_since_names_its_utc_offset_or_is_refused(api: Api) -> None:
    """A naive ``since`` would be read in the server's time zone, which the client cannot know: a 422, not a guess;
    the same instant as Unix seconds, with an offset or with Z selects the same results."""
    _store(api, NOW)
    since = datetime.fromtimestamp(NOW + 3, UTC)
    expected = [("T-B1", 1), ("T-A1", 3)]
    for value in (NOW + 3, since.isoformat(), since.astimezone(timezone(timedelta(hours=7))).isoformat(),
                  since.strftime("%Y-%m-%dT%H:%M:%SZ")):
        status, page = api.get("all", "/v1/results", since=value)
        assert status == 200, (value, page)
        assert [(r["terminal"], r["seq"]) for r in page["items"]] == expected, value
    for naive in (since.replace(tzinfo=None).isoformat(), "2027-01-15"):
        status, answer = api.get("all", "/v1/results", since=naive)
        assert status == 422, (naive, answer)
        (error,) = answer["detail"]
        assert error["loc"] == ["query", "since"]
        assert error["msg"] == "since needs a UTC offset, e.g. 2026-12-06T08:00:00+07:00, or Unix seconds"


def test_a_read_request_is_signed_registered_and_sent(api: Api, tmp_path: Path) -> None:
    status, answer = api.post("a", f"/v1/wards/{WARD}/terminals/T-A1/read-requests",
                              {"key": {"can": "123456"}, "profile": "residence"})  # fmt: skip
    assert status == 202, answer
    (command,) = api.sent
    assert (command.ward, command.terminal, command.jti) == (WARD, "T-A1", answer["request_id"])
    verifier = CommandVerifier(self_key := api.command_key.public_key(), "T-A1", ReplayGuard(tmp_path / "seen.db"))
    assert self_key is not None
    accepted = verifier.verify(command.token, NOW)
    assert isinstance(accepted, ReadCommand)
    assert accepted.key == CanKey("123456")
    assert accepted.challenge == answer["challenge"]
    (challenge,) = api.store.database.execute("SELECT challenge FROM read_requests WHERE jti=?",
                                              (answer["request_id"],)).fetchone()  # fmt: skip
    assert bytes(challenge).hex() == answer["challenge"], "any instance checks the answer against it"
    status, refused = api.post("a", f"/v1/wards/{WARD}/terminals/T-A1/read-requests", {"key": {"can": "12345"}})
    assert status == 422
    assert "12345" not in json.dumps(refused), "a refusal never quotes the CAN (six digits of the ID number) back"
    assert api.post("a", f"/v1/wards/{WARD}/terminals/T-A1/read-requests", {"key": {"can": "123456"},
                                                                            "extra": 1})[0] == 422  # fmt: skip
    assert api.post("all", "/v1/wards/77777/terminals/T-X/read-requests", {"key": {"can": "123456"}})[0] == 404
    assert len(api.sent) == 1
    api.context.signer = None
    assert api.post("a", f"/v1/wards/{WARD}/terminals/T-A1/read-requests", {"key": {"can": "123456"}})[0] == 503


def test_a_read_request_carries_its_consent_ref_and_a_malformed_one_never_leaves(api: Api, tmp_path: Path) -> None:
    url = f"/v1/wards/{WARD}/terminals/T-A1/read-requests"
    status, answer = api.post("a", url, {"key": {"can": "123456"}, "consent_ref": "HS-2026-000123"})
    assert status == 202, answer
    (command,) = api.sent
    accepted = CommandVerifier(api.command_key.public_key(), "T-A1", ReplayGuard(tmp_path / "seen.db")).verify(
        command.token, NOW)
    assert isinstance(accepted, ReadCommand)
    assert (accepted.jti, accepted.consent_ref) == (answer["request_id"], "HS-2026-000123"), "signed into the command"
    for bad in ("HS 2026", "x" * 129, "", "Nguyễn-Văn-An", 123):
        status, refused = api.post("a", url, {"key": {"can": "123456"}, "consent_ref": bad})
        assert status == 422, bad
        (error,) = refused["detail"]
        assert error["loc"] == ["body", "consent_ref"], error
        assert error["msg"].startswith(("String should match pattern", "String should have at most 128",
                                        "Input should be a valid string")), error  # fmt: skip
    assert len(api.sent) == 1, "a malformed consent_ref never reaches the terminal"


def _online_check(api: Api, terminal_id: str, seq: int, checks: tuple[Check, ...] = CHECKS) -> str:
    """Store an online_check result of ward A (small stand-ins for the chip's files, encrypted to the ward); its jti."""
    terminal = api.ward_a.terminal(terminal_id)
    document = make_result(
        terminal_id=terminal_id, ward_code=WARD, profile=ProcedureProfile.ONLINE_CHECK, verdict=Verdict.VERIFIED,
        checks=checks, citizen=CITIZEN, qr=QrUsage(used=False), timing=ReadTiming(apdu_count=20, read_ms=900),
        completed_at=datetime.fromtimestamp(NOW, UTC), consent_ref="HS-2026-000123",
        files={"COM": b"\x60\x00", "DG1": b"\x61\x00", "SOD": b"\x77\x00"})  # fmt: skip
    token = jose.result_token(terminal.signer, terminal_id=terminal_id, seq=seq,
                              document=json.loads(document.to_json()), now=NOW,
                              encrypt_to=api.ward_key.public_key(), certificate=terminal.certificate)  # fmt: skip
    outcome = api.store.ingest(token, NOW)
    assert outcome.status == "stored", outcome
    assert outcome.jti is not None
    return outcome.jti


def test_online_answers_recorded_and_listed_without_their_values(api: Api) -> None:
    jti = _online_check(api, "T-A1", 1)
    url = f"/v1/results/T-A1/{jti}/online-answers"
    status, first = api.post("a", url, {"status": "valid", "holder": "Nguyễn Văn An"})
    assert status == 201, first
    assert (first["terminal"], first["jti"], first["keys"], first["received"]) == ("T-A1", jti, ["holder", "status"],
                                                                                   NOW)  # fmt: skip
    assert api.post("all", url, {"status": "revoked"})[0] == 201
    status, page = api.get("a", url)
    assert status == 200
    assert [item["keys"] for item in page["items"]] == [["holder", "status"], ["status"]], "oldest first"
    assert page["next_cursor"] is None
    assert "Nguyễn" not in json.dumps([first, page], ensure_ascii=False), "the answer's values are never echoed"
    assert [answer.answer for answer in api.store.online_answers(jti, iss="T-A1")] == [
        {"status": "valid", "holder": "Nguyễn Văn An"}, {"status": "revoked"}], "kept as received"
    _, one = api.get("a", url, limit=1)
    assert [item["answer_id"] for item in one["items"]] == [first["answer_id"]]
    _, rest = api.get("a", url, cursor=one["next_cursor"], limit=1)
    assert [item["keys"] for item in rest["items"]] == [["status"]]

    assert api.post("b", url, {"status": "valid"})[0] == 404, "another ward's result does not exist for B"
    assert api.get("b", url)[0] == 404
    assert api.call("POST", url, {"status": "valid"})[0] == 401
    for unknown in ("/v1/results/T-A1/no-such-jti/online-answers", f"/v1/results/T-A2/{jti}/online-answers"):
        status, refused = api.post("a", unknown, {"status": "valid"})
        assert (status, refused["detail"]) == (404, "no such result")
    residence = api.ward_a.terminal("T-A2").token(1)
    residence_jti = api.store.ingest(residence, NOW).jti
    status, refused = api.post("a", f"/v1/results/T-A2/{residence_jti}/online-answers", {"status": "valid"})
    assert status == 409
    assert "not read under online_check" in refused["detail"]
    assert api.get("a", f"/v1/results/T-A2/{residence_jti}/online-answers")[1]["items"] == []
    for body, reason in ((b'{"status":', "not JSON"), (b'["valid"]', "not a JSON object"), (b"", "not JSON"),
                         (b"[" * 5000, "nested deeper"), (b"\xff\xfe\xfd", "not JSON"),
                         (b'{"\\ud800":1}', "lone UTF-16 surrogate")):  # fmt: skip
        status, refused = api.post("a", url, body)
        assert status == 400, body
        assert reason in refused["detail"], refused
        assert "hint" not in refused["detail"], "the command line's hint is not the API's"
    status, refused = api.post("a", url, b'{"a":"' + b"x" * MAX_ONLINE_ANSWER_BYTES + b'"}')
    assert (status, refused["detail"]) == (413, f"the online answer is larger than {MAX_ONLINE_ANSWER_BYTES} bytes")
    assert len(api.store.online_answers(jti)) == 2, "nothing refused was recorded"


def test_an_online_check_document_holding_a_nul_takes_its_answers(api: Api) -> None:
    """A signed document may hold U+0000 in a string (stored as the escape \\u0000): the profile is read from it in
    Python, where PostgreSQL's ``document::json ->> 'procedure_profile'`` fails on any such escape in the document."""
    jti = _online_check(api, "T-A1", 1, (*CHECKS, Check(name="dg13_parse", status=CheckStatus.PASSED,
                                                        reason="chip string\x00padded")))  # fmt: skip
    url = f"/v1/results/T-A1/{jti}/online-answers"
    status, recorded = api.post("a", url, {"status": "valid"})
    assert status == 201, recorded
    status, page = api.get("a", url)
    assert status == 200, page
    assert [item["keys"] for item in page["items"]] == [["status"]]


def test_fleet_and_dead_letters_per_ward(api: Api) -> None:
    api.store.keep_status(WARD, "T-A1", b'{"state":"online","terminal_state":"ready","version":"0.1.0"}', NOW)
    api.store.keep_status(WARD_B, "T-B1", b'{"state":"offline","version":"<b>1</b>"}', NOW)
    _, fleet = api.get("a", "/v1/fleet")
    assert [(t["terminal"], t["state"], t["version"]) for t in fleet["terminals"]] == [("T-A1", "online", "0.1.0")]
    assert api.get("a", "/v1/fleet", ward=WARD_B)[0] == 403
    everything = api.get("all", "/v1/fleet")[1]["terminals"]
    assert [t["version"] for t in everything if t["terminal"] == "T-B1"] == [None], "not a version: unknown"
    api.webhooks.enqueue([("T-A1", "bad.jti", WARD), ("T-B1", "also.bad", WARD_B)], NOW)
    _, letters = api.get("a", "/v1/webhooks/dead-letters")
    assert [(d["terminal"], d["ward"]) for d in letters["items"]] == [("T-A1", WARD)]
    b_id = api.get("b", "/v1/webhooks/dead-letters")[1]["items"][0]["id"]
    assert api.post("a", f"/v1/webhooks/dead-letters/{b_id}/retry")[0] == 404, "not ward A's"
    assert api.post("b", f"/v1/webhooks/dead-letters/{b_id}/retry")[0] == 404, "an id that can never be sent"


def test_an_id_beyond_a_database_integer_is_refused_not_a_crash(api: Api) -> None:
    """A cursor or dead letter id past 2**63-1 overflowed SQLite's INTEGER binding: a 500, now the 422 of any id out
    of range."""
    jti = _online_check(api, "T-A1", 1)
    too_large = 1 << 63
    for url in (f"/v1/webhooks/dead-letters?cursor={too_large}",
                f"/v1/results/T-A1/{jti}/online-answers?cursor={too_large}"):
        assert api.call("GET", url, key=api.keys["all"])[0] == 422, url
    assert api.post("all", f"/v1/webhooks/dead-letters/{too_large}/retry")[0] == 422
    assert api.get("all", "/v1/webhooks/dead-letters", cursor=too_large - 1)[0] == 200, "the largest id is taken"


def test_api_keys_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ward = make_ward(tmp_path / "ward")
    config = tmp_path / "gateway.toml"
    config.write_text(f'instance = "office-1"\nward = "{WARD}"\n[storage]\nurl = "sqlite:///{tmp_path / "r.db"}"\n'
                      f'[trust]\nward_ca = "{ward.ca_path}"\n', encoding="utf-8")
    assert main(["gateway", "api-key", "add", "--config", str(config), "--name", "proc", "--ward", WARD]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("cek_")
    assert main(["gateway", "api-key", "add", "--config", str(config), "--name", "proc2", "--ward", WARD,
                 "--tls-cn", "procedure.ward.example"]) == 0  # fmt: skip
    assert "procedure.ward.example" in capsys.readouterr().out
    assert main(["gateway", "api-key", "list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    assert '"name": "proc"' in listed
    assert key.rsplit("_", 1)[1] not in listed, "never the secret"
    assert main(["gateway", "api-key", "revoke", "--config", str(config), "--name", "proc"]) == 0
    assert main(["gateway", "api-key", "revoke", "--config", str(config), "--name", "proc"]) == 1
    assert main(["gateway", "webhook-secret", "--out", str(tmp_path / "hook.secret")]) == 0
    assert (tmp_path / "hook.secret").stat().st_mode & 0o777 == 0o600


def test_a_body_larger_than_any_request_is_refused_unread(api: Api) -> None:
    """By its Content-Length, or as it streams in without one (chunked): a 413, whatever the route (FastAPI would read
    a JSON body whole before validating it)."""
    url = f"/v1/wards/{WARD}/terminals/T-A1/read-requests"
    huge = {"key": {"can": "123456"}, "padding": "x" * (MAX_REQUEST_BYTES + 1)}
    status, refused = api.post("a", url, huge)
    assert (status, refused["detail"]) == (413, f"the request body is larger than {MAX_REQUEST_BYTES} bytes")
    parts = urllib.parse.urlsplit(api.server.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:  # the server answers once the limit is passed and closes: the client may see that as a broken pipe
        connection.request("POST", url, body=iter([b'{"key": {"can": "123456"}, "padding": "'] + [b"x" * 8192] * 20),
                           headers={"Authorization": f"Bearer {api.keys['a']}", "Content-Type": "application/json"},
                           encode_chunked=True)  # fmt: skip
        response = connection.getresponse()
        answer = (response.status, json.loads(response.read())["detail"])
    except ConnectionError:
        answer = (413, "closed while sending")
    finally:
        connection.close()
    assert answer in ((413, f"the request body is larger than {MAX_REQUEST_BYTES} bytes"),
                      (413, "closed while sending"))
    assert api.sent == []
