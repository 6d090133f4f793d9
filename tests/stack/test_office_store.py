"""The office store's contract, one suite run against both backends (SQLite file, PostgreSQL in a private cluster):
de-duplication by (iss, jti), seq gaps, flags, quarantine and retry, the AA challenge registry, the fleet view, and
two stores (two gateway instances) writing the same results at once."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.cli import main
from edge.commands.demo import _stored_token
from edge.errors import DemoError, OnlineAnswerError
from edge.office.database import Database
from edge.office.store import MAX_ONLINE_ANSWER_BYTES, ResultStore
from edge.office.verify import TerminalKeys
from edge.office.ward_trust import WardTrust
from edge.protocol import jose
from edge.protocol.b64url import b64url_encode
from edge.protocol.keys import explicit_spki
from edge.protocol.result import ActiveAuthEvidence, ProcedureProfile, QrUsage, ReadTiming, make_result
from edge.protocol.verify.checks import Verdict
from edge.sim.active_auth_card import sign_active_auth
from tests.support.results import CHECKS, CITIZEN, sample_result
from tests.support.ward import NOW, WARD, Terminal, Ward, make_ward

pytestmark = pytest.mark.stack
DAY = 24 * 3600


def _store(office_db: str | Path, ward: Ward, **options: object) -> ResultStore:
    return ResultStore(office_db, TerminalKeys({}, WardTrust.load(ward.ca_path)), **options)  # type: ignore[arg-type]


def test_stored_once_gaps_flags_and_quarantine(office_db: str | Path, ward: Ward) -> None:
    t1 = ward.terminal("T-01")
    store = _store(office_db, ward)
    try:
        tokens = {seq: t1.token(seq) for seq in (1, 2, 5)}
        assert [store.ingest(tokens[seq], NOW).status for seq in (1, 2, 5)] == ["stored"] * 3
        again = store.ingest(tokens[2], NOW)
        assert (again.status, again.seq) == ("duplicate", 2)
        assert store.gaps("T-01")[0].missing == (3, 4)
        late = store.ingest(t1.token(3, now=NOW - 3 * DAY), NOW)
        assert (late.status, late.flags) == ("stored", ("late",))
        poison = store.ingest(b"eyJ9.eyJpc3MiOiJULTAxIiwic2VxIjo0fQ.AAAA", NOW, topic="cccd-edge/v1/26734/T-01/result")
        assert (poison.status, poison.iss, poison.seq) == ("quarantined", "T-01", 4)
        gaps = store.gaps("T-01")[0]
        assert (gaps.missing, [r.seq for r in gaps.refused]) == ((), [4])
        assert store.counts() == {"results": 4, "quarantined": 1, "flags": {"late": 1}}
        assert [(seq, flags) for seq, flags in store.flags("T-01")] == [(1, ()), (2, ()), (3, ("late",)), (5, ())]
        assert store.quarantined()[0]["reason"]
    finally:
        store.close()


def test_one_result_read_back_as_it_was_stored(office_db: str | Path, ward: Ward) -> None:
    """:meth:`ResultStore.result`, the one query the API's one-result route and the demo share (the demo reads the
    token there when the REST API is not installed)."""
    store = _store(office_db, ward, instance="office-1")
    try:
        outcome = store.ingest(ward.terminal("T-01").token(1), NOW)
        assert outcome.jti is not None
        assert outcome.record is not None
        assert store.result("T-01", outcome.jti) == outcome.record
        assert store.result("T-02", outcome.jti) is None, "the key is (terminal, jti)"
        assert store.result("T-01", "no-such-jti") is None
        assert _stored_token(store, None, "T-01", outcome.jti) == (outcome.record.token, None)
        with pytest.raises(DemoError, match="does not hold it"):
            _stored_token(store, None, "T-01", "no-such-jti")
    finally:
        store.close()


def test_retry_quarantined_takes_in_what_a_new_trust_accepts(office_db: str | Path, ward: Ward,
                                                            tmp_path: Path) -> None:
    """A terminal of a ward CA the office did not trust yet: quarantined, then stored by the retry with it."""
    other = make_ward(tmp_path / "other-ca", "26735")
    stranger = other.terminal("T-07")
    first = _store(office_db, ward)
    try:
        assert first.ingest(stranger.token(1, ward="26735"), NOW).status == "quarantined"
    finally:
        first.close()
    both = tmp_path / "both.crt"
    both.write_bytes(ward.ca_path.read_bytes() + other.ca_path.read_bytes())
    second = ResultStore(office_db, TerminalKeys({}, WardTrust.load(both)))
    try:
        assert [outcome.status for outcome in second.retry_quarantined()] == ["stored"]
        assert second.counts()["quarantined"] == 0
    finally:
        second.close()


def test_active_authentication_against_a_registered_challenge(office_db: str | Path, ward: Ward) -> None:
    """The challenge an instance sent is in the database: whichever instance gets the answer checks it."""
    t1 = ward.terminal("T-01")
    chip = ec.generate_private_key(ec.BrainpoolP256R1())
    challenge = bytes.fromhex("0102030405060708")
    evidence = ActiveAuthEvidence(challenge=challenge, signature=sign_active_auth(chip, challenge),
                                  public_key_spki=explicit_spki(chip.public_key()))
    document = json.loads(sample_result(ProcedureProfile.RESIDENCE, ward_code=ward.ca.ward_code,
                                        completed_at=datetime.fromtimestamp(NOW, UTC)).to_json())
    document |= {"request_id": "req-1", "active_auth": json.loads(evidence.model_dump_json())}
    token = jose.result_token(t1.signer, terminal_id="T-01", seq=1, document=document, now=NOW,
                              certificate=t1.certificate)
    sender, receiver = _store(office_db, ward), _store(office_db, ward)
    try:
        sender.register_read_request("req-1", challenge, NOW)
        outcome = receiver.ingest(token, NOW)
        assert outcome.active_auth is not None
        assert outcome.active_auth.status == "passed"
        (stored,) = receiver._db.execute("SELECT active_auth FROM results").fetchone()
        assert json.loads(stored)["status"] == "passed"
    finally:
        sender.close()
        receiver.close()


def test_the_fleet_view_keeps_the_latest_status(office_db: str | Path, ward: Ward) -> None:
    store = _store(office_db, ward)
    try:
        assert store.keep_status("26734", "T-01", b'{"state":"online","queued":2}', NOW) is None
        store.keep_status("26734", "T-01", b'{"state":"offline"}', NOW - 5)  # an older copy, via another instance
        store.keep_status("26734", "T-02", b'{"state":"online"}', NOW)
        store.keep_status("26735", "T-01", b'{"state":"online"}', NOW)
        assert [(row.ward, row.iss, row.state) for row in store.fleet()] == [
            ("26734", "T-01", "online"), ("26734", "T-02", "online"), ("26735", "T-01", "online")]
        assert store.fleet("26734")[0].status == {"state": "online", "queued": 2}
        bad = store.keep_status("26734", "T-02", b"[" * 100, NOW + 1, topic="cccd-edge/v1/26734/T-02/status")
        assert bad is not None
        assert (bad.status, bad.iss) == ("quarantined", "T-02")
        store.keep_status("26734", "T-02", b"", NOW + 2)  # retained status cleared: the terminal is retired
        assert [row.iss for row in store.fleet("26734")] == ["T-01"]
        assert store.retry_quarantined() == [], "a status is never taken for a result"
    finally:
        store.close()


def test_two_instances_writing_the_same_results_at_once_store_each_once(office_db: str | Path, ward: Ward) -> None:
    fleet = [ward.terminal(f"T-{n}") for n in range(3)]
    tokens = [t.token(seq) for t in fleet for seq in range(1, 31)]
    stores = [_store(office_db, ward, instance=f"office-{n}") for n in (1, 2)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def feed(store: ResultStore, order: list[bytes]) -> None:
        for token in order:
            status = store.ingest(token, NOW).status
            with lock:
                outcomes.append(status)

    try:
        threads = [threading.Thread(target=feed, args=(stores[0], tokens)),
                   threading.Thread(target=feed, args=(stores[1], list(reversed(tokens))))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert outcomes.count("stored") == len(tokens)
        assert outcomes.count("duplicate") == len(tokens)
        assert stores[0].counts()["results"] == len(tokens)
        assert stores[0].gaps() == []
        for terminal in fleet:
            assert [seq for seq, _ in stores[1].stored(terminal.terminal_id)] == list(range(1, 31))
    finally:
        for store in stores:
            store.close()


def test_a_receiver_database_from_before_the_gateway_is_taken_over(tmp_path: Path, ward: Ward) -> None:
    """SQLite only: a reference receiver's file (first results table, no ward/kid/active_auth/stored_by) opens and
    keeps its rows; its results' ward is their document's (every result document names its ward)."""
    path = tmp_path / "results.db"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE results (iss TEXT NOT NULL, jti TEXT NOT NULL, seq INTEGER NOT NULL, received REAL NOT NULL,
                verdict TEXT NOT NULL, document TEXT NOT NULL, token TEXT NOT NULL, PRIMARY KEY (iss, jti));
            CREATE TABLE terminals (iss TEXT PRIMARY KEY, max_seq INTEGER NOT NULL);
            INSERT INTO results VALUES ('T-01', 'j-1', 1, 1.0, 'verified', '{"ward_code": "26734"}', 'x');
            INSERT INTO terminals VALUES ('T-01', 1);
        """)
    store = _store(path, ward)
    try:
        assert store.ingest(ward.terminal("T-01").token(2), NOW).status == "stored"
        assert [seq for seq, _ in store.stored("T-01")] == [1, 2]
        assert store.gaps() == []
        assert store.counts()["results"] == 2
    finally:
        store.close()


def test_a_batch_is_stored_as_if_its_results_came_one_by_one(office_db: str | Path, ward: Ward,
                                                              tmp_path: Path) -> None:
    """ingest_many (the gateway's batches, one transaction) gives the outcomes and the gap bookkeeping that ingest
    gives message by message: gaps opened and filled inside the batch, a copy inside the batch, a poison message."""
    t1, t2 = ward.terminal("T-01"), ward.terminal("T-02")
    third = t1.token(3)
    tokens = [third, t2.token(1), t1.token(1), third, b"garbage", t1.token(6), t1.token(5)]
    one_by_one = _store(tmp_path / "sequential.db", ward)
    batched = _store(office_db, ward)
    try:
        expected = [one_by_one.ingest(token, NOW) for token in tokens]
        got = batched.ingest_many([(token, "t") for token in tokens], NOW)
        assert [(o.status, o.iss, o.seq, o.new_gaps) for o in got] == [
            (o.status, o.iss, o.seq, o.new_gaps) for o in expected]
        assert [o.status for o in got] == ["stored", "stored", "stored", "duplicate", "quarantined", "stored",
                                           "stored"]
        assert got[0].new_gaps == (1, 2)
        assert got[5].new_gaps == (4, 5)
        assert [gap.as_dict() for gap in batched.gaps()] == [gap.as_dict() for gap in one_by_one.gaps()] == [
            {"ward": WARD, "iss": "T-01", "missing": [2, 4], "refused": []}]
    finally:
        one_by_one.close()
        batched.close()

OTHER_WARD = "26735"


def _two_wards(tmp_path: Path, ward: Ward) -> tuple[Ward, Path]:
    """A second ward, and a CA file trusting both: one office for two wards (a province's)."""
    other = make_ward(tmp_path / "other-ward", OTHER_WARD)
    both = tmp_path / "both-wards.crt"
    both.write_bytes(ward.ca_path.read_bytes() + other.ca_path.read_bytes())
    return other, both


def _claim(iss: str, seq: int, ward_code: str) -> bytes:
    """A message that only claims a terminal, ward and seq (no valid signature): it ends in quarantine."""
    claims = json.dumps({"iss": iss, "seq": seq, "result": {"ward_code": ward_code}}).encode()
    return b"eyJ9." + b64url_encode(claims).encode() + b".AAAA"


def test_two_wards_terminals_of_one_id_keep_their_own_seqs(office_db: str | Path, ward: Ward,
                                                          tmp_path: Path) -> None:
    """Terminal ids are chosen per ward: ward A's "T-01" (seqs 1 2 3 6: 4 and 5 never came) and ward B's (1 4 5: 2
    and 3 never came), interleaved into one store. Each ward's gaps are its own: none opened or hidden by the other
    (counted as one terminal, B's 4 opened 2..3 for A too, A's 2 and 3 filled B's real gaps, and A's 4..5 were
    hidden by B's 4 and 5). A refused claim counts for its ward's terminal only."""
    other, both = _two_wards(tmp_path, ward)
    a, b = ward.terminal("T-01"), other.terminal("T-01")
    store = ResultStore(office_db, TerminalKeys({}, WardTrust.load(both)))
    try:
        order = [(a, WARD, 1), (b, OTHER_WARD, 1), (b, OTHER_WARD, 4), (a, WARD, 2), (a, WARD, 3),
                 (b, OTHER_WARD, 5), (a, WARD, 6)]  # fmt: skip
        got = [store.ingest(terminal.token(seq, ward=code), NOW) for terminal, code, seq in order]
        assert [(o.status, o.ward, o.seq, o.new_gaps, o.missing) for o in got] == [
            ("stored", WARD, 1, (), ()), ("stored", OTHER_WARD, 1, (), ()),
            ("stored", OTHER_WARD, 4, (2, 3), (2, 3)), ("stored", WARD, 2, (), ()), ("stored", WARD, 3, (), ()),
            ("stored", OTHER_WARD, 5, (), (2, 3)), ("stored", WARD, 6, (4, 5), (4, 5))]
        assert [gap.as_dict() for gap in store.gaps()] == [
            {"ward": WARD, "iss": "T-01", "missing": [4, 5], "refused": []},
            {"ward": OTHER_WARD, "iss": "T-01", "missing": [2, 3], "refused": []}]
        claimed = store.ingest(_claim("T-01", 2, OTHER_WARD), NOW, topic=f"cccd-edge/v1/{OTHER_WARD}/T-01/result")
        assert (claimed.status, claimed.ward, claimed.missing, claimed.refused) == (
            "quarantined", OTHER_WARD, (3,), (2,))
        (theirs,) = store.gaps("T-01", ward=OTHER_WARD)
        assert (theirs.missing, [r.seq for r in theirs.refused]) == ((3,), [2])
        assert [gap.as_dict() for gap in store.gaps("T-01", ward=WARD)] == [
            {"ward": WARD, "iss": "T-01", "missing": [4, 5], "refused": []}]
        assert store.gaps(ward="26736") == []
    finally:
        store.close()


def test_a_database_keyed_by_terminal_id_alone_is_moved_to_ward_and_terminal(office_db: str | Path, ward: Ward,
                                                                             tmp_path: Path) -> None:
    """A database of the old schema (``terminals`` and ``missing`` by terminal id, ``quarantine`` without a ward)
    opens keyed by (ward, terminal), its gaps kept: T-01 (ward A alone; seq 1 stored before results had a ward)
    keeps missing 3 and refused 4; T-09 (no result left: ward unknown) keeps missing 1 under ward ""; T-02, which
    wards A (1 2 4) and B (1 3) both have and the old count mixed into no gap at all, gets each ward's own gap.
    Then arrivals book per ward, and a second opening changes nothing."""
    other, both = _two_wards(tmp_path, ward)
    db = Database(office_db)
    t = db.types
    try:
        for statement in (
            f"""CREATE TABLE results (iss TEXT NOT NULL, jti TEXT NOT NULL, seq {t['int']} NOT NULL,
                received {t['real']} NOT NULL, verdict TEXT NOT NULL, document TEXT NOT NULL, token TEXT NOT NULL,
                ward TEXT, PRIMARY KEY (iss, jti))""",
            f"CREATE TABLE missing (iss TEXT NOT NULL, seq {t['int']} NOT NULL, PRIMARY KEY (iss, seq))",
            f"CREATE TABLE terminals (iss TEXT PRIMARY KEY, max_seq {t['int']} NOT NULL)",
            f"""CREATE TABLE quarantine (id {t['id']}, received {t['real']} NOT NULL, topic TEXT NOT NULL,
                reason TEXT NOT NULL, iss TEXT, seq {t['int']}, size {t['int']} NOT NULL,
                payload {t['blob']} NOT NULL)""",
        ):  # fmt: skip
            db.execute(statement)
        stored = [("T-01", 1, None), ("T-01", 2, WARD), ("T-01", 5, WARD), ("T-02", 1, WARD), ("T-02", 2, WARD),
                  ("T-02", 4, WARD), ("T-02", 1, OTHER_WARD), ("T-02", 3, OTHER_WARD)]  # fmt: skip
        for n, (iss, seq, code) in enumerate(stored):
            document = json.dumps({"ward_code": code or WARD})
            db.execute("INSERT INTO results VALUES (?, ?, ?, ?, 'verified', ?, 'x', ?)",
                       (iss, f"j-{n}", seq, NOW, document, code))
        db.executemany("INSERT INTO terminals VALUES (?, ?)", [("T-01", 5), ("T-02", 4), ("T-09", 2)])
        db.executemany("INSERT INTO missing VALUES (?, ?)", [("T-01", 3), ("T-01", 4), ("T-09", 1)])
        (refused_id,) = db.execute("INSERT INTO quarantine (received, topic, reason, iss, seq, size, payload) "
                                   "VALUES (?, 't', 'bad signature', 'T-01', 4, 1, ?) RETURNING id",
                                   (NOW, b"x")).fetchone()  # fmt: skip
    finally:
        db.close()
    old_report = [
        {"ward": "", "iss": "T-09", "missing": [1], "refused": []},
        {"ward": WARD, "iss": "T-01", "missing": [3],
         "refused": [{"seq": 4, "quarantine_id": refused_id, "reason": "bad signature"}]},
        {"ward": WARD, "iss": "T-02", "missing": [3], "refused": []},
        {"ward": OTHER_WARD, "iss": "T-02", "missing": [2], "refused": []}]
    store = ResultStore(office_db, TerminalKeys({}, WardTrust.load(both)))
    try:
        assert [gap.as_dict() for gap in store.gaps()] == old_report
        arrived = store.ingest(ward.terminal("T-01").token(3), NOW)
        assert (arrived.status, arrived.new_gaps, arrived.missing, arrived.refused) == ("stored", (), (), (4,))
        later = store.ingest(other.terminal("T-02").token(6, ward=OTHER_WARD), NOW)
        assert (later.new_gaps, later.missing) == ((4, 5), (2, 4, 5))
    finally:
        store.close()
    reopened = ResultStore(office_db, TerminalKeys({}, WardTrust.load(both)))
    try:
        assert [gap.as_dict() for gap in reopened.gaps(ward=OTHER_WARD)] == [
            {"ward": OTHER_WARD, "iss": "T-02", "missing": [2, 4, 5], "refused": []}]
        assert len(reopened.gaps()) == 4
    finally:
        reopened.close()



def _online_check_token(terminal: Terminal, seq: int, encrypt_to: ec.EllipticCurvePublicKey | None) -> bytes:
    """An online_check result carrying (small stand-ins for) the chip's files, plain or encrypted to the ward."""
    document = make_result(
        terminal_id=terminal.terminal_id, ward_code=WARD, profile=ProcedureProfile.ONLINE_CHECK,
        verdict=Verdict.VERIFIED, checks=CHECKS, citizen=CITIZEN, qr=QrUsage(used=False),
        timing=ReadTiming(apdu_count=20, read_ms=900), completed_at=datetime.fromtimestamp(NOW, UTC),
        consent_ref="HS-2026-000123", files={"COM": b"\x60\x00", "DG1": b"\x61\x00", "SOD": b"\x77\x00"},
    )  # fmt: skip
    assert document.chip_files is not None
    return jose.result_token(terminal.signer, terminal_id=terminal.terminal_id, seq=seq,
                             document=json.loads(document.to_json()), now=NOW, encrypt_to=encrypt_to,
                             certificate=terminal.certificate)  # fmt: skip


def test_online_check_results_only_encrypted_and_their_online_answers(office_db: str | Path, ward: Ward) -> None:
    """The chip's files travel only as JWE (a plain one is quarantined, saying why); the national service's answers
    are recorded against the result, every one kept in order, and refused for anything but an online_check result."""
    t1 = ward.terminal("T-01")
    ward_key = ec.generate_private_key(ec.SECP256R1())
    store = _store(office_db, ward, decrypt_key=ward_key, instance="office-1")
    try:
        plain = store.ingest(_online_check_token(t1, 1, None), NOW)
        assert plain.status == "quarantined"
        assert "must arrive encrypted to the ward (JWE)" in plain.reason
        sealed = store.ingest(_online_check_token(t1, 2, ward_key.public_key()), NOW)
        assert (sealed.status, sealed.seq) == ("stored", 2)
        assert sealed.jti is not None
        first = store.record_online_answer(sealed.jti, b'{"status":"valid","transaction":"C06-1"}', NOW + 60)
        second = store.record_online_answer(sealed.jti, b'{"status":"revoked"}', NOW + 120, iss="T-01")
        assert [answer.answer for answer in store.online_answers(sealed.jti)] == [
            {"status": "valid", "transaction": "C06-1"}, {"status": "revoked"}]
        assert (first.iss, first.recorded_by, second.answer_id > first.answer_id) == ("T-01", "office-1", True)
        assert first.summary() == {"answer_id": first.answer_id, "iss": "T-01", "jti": sealed.jti,
                                   "received": NOW + 60, "keys": ["status", "transaction"],
                                   "recorded_by": "office-1"}  # fmt: skip
        residence = store.ingest(t1.token(3), NOW)
        assert residence.jti is not None
        for jti, answer, iss, reason in (
                (residence.jti, b'{"status":"valid"}', None, "profile 'residence'"),
                ("no-such-result", b'{"status":"valid"}', None, "no stored result"),
                (sealed.jti, b'{"status":"valid"}', "T-02", "no stored result"),
                (sealed.jti, b'["valid"]', None, "not a JSON object"),
                (sealed.jti, b'{"status":', None, "not JSON"),
                (sealed.jti, b'{"a":"' + b"x" * MAX_ONLINE_ANSWER_BYTES + b'"}', None, "more than"),
                (sealed.jti, b"[" * 5000, None, "nested deeper"),
                (sealed.jti, b'{"\\ud800":1}', None, "lone UTF-16 surrogate")):  # fmt: skip
            with pytest.raises(OnlineAnswerError, match=reason):
                store.record_online_answer(jti, answer, NOW, iss=iss)
        assert len(store.online_answers(sealed.jti)) == 2  # nothing refused was recorded
    finally:
        store.close()


def test_online_answer_from_the_command_line(tmp_path: Path, ward: Ward, capsys: pytest.CaptureFixture[str]) -> None:
    """``cccd-edge gateway online-answer RESULT_JTI --file answer.json``: recorded, printed without its values; a
    refusal is an error naming why, exit 1."""
    ward_key = ec.generate_private_key(ec.SECP256R1())
    key_path = tmp_path / "ward-decrypt.key"
    signers.write_private_key(ward_key, key_path)
    database = tmp_path / "results.db"
    toml = tmp_path / "gateway.toml"
    toml.write_text(f'instance = "office-1"\nward = "{WARD}"\n[storage]\nurl = "sqlite:///{database}"\n'
                    f'[trust]\nward_ca = "{ward.ca_path}"\ndecrypt_key = "{key_path}"\n', encoding="utf-8")
    store = _store(database, ward, decrypt_key=ward_key)
    try:
        stored = store.ingest(_online_check_token(ward.terminal("T-01"), 1, ward_key.public_key()), NOW)
    finally:
        store.close()
    assert stored.jti is not None
    answer = tmp_path / "answer.json"
    answer.write_text('{"status": "valid", "holder": "Nguyễn Văn An"}', encoding="utf-8")
    assert main(["gateway", "online-answer", stored.jti, "--file", str(answer), "--config", str(toml)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["jti"], printed["iss"], printed["keys"]) == (stored.jti, "T-01", ["holder", "status"])
    assert "Nguyễn" not in json.dumps(printed, ensure_ascii=False)  # the answer's values stay in the database
    assert main(["gateway", "online-answer", "no-such-jti", "--file", str(answer), "--config", str(toml)]) == 1
    assert "no stored result has jti" in capsys.readouterr().err
    assert main(["gateway", "online-answer", stored.jti, "--file", str(tmp_path / "absent.json"),
                 "--config", str(toml)]) == 1  # fmt: skip
    assert "cannot read" in capsys.readouterr().err
