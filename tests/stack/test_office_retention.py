"""Retention and a citizen's rights on the office side, one suite on both backends (SQLite file, private
PostgreSQL): expired results of each profile reduced to non-personal fields and newer ones left; one citizen's
results exported across terminals (JWE included) and erased, leaving no personal field in the raw database; the
audit entries written and append-only."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge.cli import main
from edge.errors import OnlineAnswerError, StorageError
from edge.office.store import DAY_SECONDS, ResultStore
from edge.office.subjects import SubjectRequest, erase_subject, export_subject, load_subject_key
from edge.office.verify import TerminalKeys
from edge.office.ward_trust import WardTrust
from edge.office.web.audit import AuditLog
from edge.office.web.officers import Officer, Role
from edge.protocol import jose
from edge.protocol.result import ProcedureProfile, QrUsage, ReadTiming, make_result
from edge.protocol.verify.checks import Verdict
from tests.support.results import CHECKS, CITIZEN
from tests.support.ward import NOW, WARD, Terminal, Ward

pytestmark = pytest.mark.stack
OTHER_ID, OTHER_NAME = "001099000777", "Phạm Thị Hoa"
SUPERVISOR = Officer("sup.lan", Role.SUPERVISOR, ())


def _token(terminal: Terminal, seq: int, profile: ProcedureProfile, read_at: float, *,
           id_number: str = CITIZEN.id_number, name: str = CITIZEN.full_name,
           encrypt_to: ec.EllipticCurvePublicKey | None = None) -> bytes:  # fmt: skip
    citizen = CITIZEN if id_number == CITIZEN.id_number else CITIZEN.model_copy(update={
        "id_number": id_number, "full_name": name, "place_of_residence": "5 Lê Lợi, Phường Sài Gòn",
        "father_name": "Phạm Văn Tư", "mother_name": None, "spouse_name": None, "place_of_origin": "Huế",
        "identifying_marks": None})
    document = make_result(
        terminal_id=terminal.terminal_id, ward_code=WARD, profile=profile, verdict=Verdict.VERIFIED, checks=CHECKS,
        citizen=citizen, qr=QrUsage(used=False), timing=ReadTiming(apdu_count=20, read_ms=900),
        completed_at=dt.datetime.fromtimestamp(read_at, dt.UTC),
        files={"COM": b"\x60\x00", "DG1": b"\x61\x00", "SOD": b"\x77\x00"}
        if profile is ProcedureProfile.ONLINE_CHECK else None)  # fmt: skip
    data = json.loads(document.to_json())
    return jose.result_token(terminal.signer, terminal_id=terminal.terminal_id, seq=seq, document=data,
                             now=int(read_at), encrypt_to=encrypt_to, certificate=terminal.certificate)


def _store(office_db: str | Path, ward: Ward, key: bytes, decrypt: ec.EllipticCurvePrivateKey) -> ResultStore:
    return ResultStore(office_db, TerminalKeys({}, WardTrust.load(ward.ca_path)), decrypt_key=decrypt,
                       subject_key=key)


def _dump(office_db: str | Path) -> str:
    """Everything the database holds, as text: the SQLite file's bytes (WAL checkpointed) or pg_dump's output."""
    if isinstance(office_db, Path):
        with sqlite3.connect(office_db) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return "".join(path.read_bytes().decode("utf-8", "replace")
                       for path in office_db.parent.iterdir() if path.name.startswith(office_db.name))
    from edge.sim.postgres import server_bin_dir

    bin_dir = server_bin_dir()
    assert bin_dir is not None
    return subprocess.run([str(bin_dir / "pg_dump"), "--data-only", office_db], check=True,
                          capture_output=True, text=True, timeout=60).stdout


def test_retention_reduces_exactly_the_expired_results_of_each_profile(office_db: str | Path, ward: Ward,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    t1 = ward.terminal("T-01")
    decrypt = ec.generate_private_key(ec.SECP256R1())
    store = _store(office_db, ward, load_subject_key(tmp_path / "state" / "subject.key"), decrypt)
    try:
        cases = [  # (profile, days before NOW it was read, expired at NOW)
            (ProcedureProfile.ONLINE_CHECK, 31, True), (ProcedureProfile.ONLINE_CHECK, 29, False),
            (ProcedureProfile.RESIDENCE, 91, True), (ProcedureProfile.RESIDENCE, 60, False),
            (ProcedureProfile.IDENTITY, 90.01, True), (ProcedureProfile.FULL, 89, False)]
        jtis, tokens = [], []
        for seq, (profile, days, _) in enumerate(cases, start=1):
            sealed = decrypt.public_key() if profile is ProcedureProfile.ONLINE_CHECK else None
            tokens.append(_token(t1, seq, profile, NOW - days * DAY_SECONDS, encrypt_to=sealed))
            outcome = store.ingest(tokens[-1], NOW)
            assert outcome.status == "stored", outcome.reason
            jtis.append(outcome.jti)
        assert jtis[0] is not None
        store.record_online_answer(jtis[0], b'{"status":"valid"}', NOW)
        store.quarantine(b"old refused payload", NOW - 91 * DAY_SECONDS, "t", "why")
        store.quarantine(b"new refused payload", NOW - 1 * DAY_SECONDS, "t", "why")
        dry = store.apply_retention(NOW, dry_run=True)
        assert dry.as_dict() == {"reduced": {"online_check": 1, "residence": 1, "identity": 1},
                                 "quarantine_dropped": 1, "online_answers_dropped": 1, "dry_run": True}
        assert store.counts()["results"] == 6
        assert len(store.online_answers(jtis[0])) == 1
        report = store.apply_retention(NOW)
        assert report.as_dict() == {**dry.as_dict(), "dry_run": False}
        assert store.apply_retention(NOW).reduced == {}  # once only
        rows = {jti: (document, token, reduced, subject) for jti, document, token, reduced, subject in
                store.database.execute("SELECT jti, document, token, reduced, subject FROM results")}
        for jti, (_, _, expired) in zip(jtis, cases, strict=True):
            document, token, reduced, subject = rows[jti]
            kept = json.loads(document)
            assert (store.result("T-01", jti) is None) == expired, "a reduced result is no longer served"
            if expired:
                assert (token, reduced, subject) == ("", NOW, None)
                assert "citizen" not in kept
                assert "chip_files" not in kept
                assert {"verdict", "checks", "terminal_id", "completed_at", "procedure_profile"} <= kept.keys()
            else:
                assert (reduced, kept["citizen"]["id_number"]) == (None, CITIZEN.id_number)
                assert token
                assert subject
        assert store.online_answers(jtis[0]) == []
        with pytest.raises(OnlineAnswerError, match="reduced by retention"):  # nothing about it is kept again
            store.record_online_answer(jtis[0], b'{"status":"valid"}', NOW)
        assert store.online_answers(jtis[0]) == []
        assert [seq for seq, _ in store.stored("T-01")] == [1, 2, 3, 4, 5, 6]  # the gap report stays honest
        assert store.gaps("T-01") == []
        again = store.ingest(tokens[2], NOW)
        assert again.status == "duplicate"  # a resend of a reduced result is not stored again
        payloads = [bytes(p) for (p,) in store.database.execute("SELECT payload FROM quarantine ORDER BY id")]
        assert payloads == [b"", b"new refused payload"]
    finally:
        store.close()


def test_export_and_erase_one_citizen_audited(office_db: str | Path, ward: Ward, tmp_path: Path) -> None:
    t1, t2 = ward.terminal("T-01"), ward.terminal("T-02")
    decrypt = ec.generate_private_key(ec.SECP256R1())
    key = load_subject_key(tmp_path / "state" / "subject.key")
    store = _store(office_db, ward, key, decrypt)
    audit = AuditLog(store.database, clock=lambda: NOW)
    request = SubjectRequest(SUPERVISOR, "citizen's request HS-2027-0042")
    try:
        mine = [store.ingest(_token(t1, 1, ProcedureProfile.RESIDENCE, NOW - DAY_SECONDS), NOW),
                store.ingest(_token(t2, 1, ProcedureProfile.ONLINE_CHECK, NOW - DAY_SECONDS,
                                    encrypt_to=decrypt.public_key()), NOW),
                store.ingest(_token(t2, 2, ProcedureProfile.FULL, NOW), NOW)]
        theirs = store.ingest(_token(t1, 2, ProcedureProfile.FULL, NOW, id_number=OTHER_ID, name=OTHER_NAME), NOW)
        assert all(outcome.status == "stored" for outcome in [*mine, theirs])
        assert mine[1].jti is not None
        store.record_online_answer(mine[1].jti, b'{"status":"valid","holder":"Nguy\\u1ec5n V\\u0103n An"}', NOW)
        exported = export_subject(store, audit, request, CITIZEN.id_number, NOW)
        assert sorted((r["terminal"], r["jti"]) for r in exported["results"]) == sorted(
            (o.iss, o.jti) for o in mine)
        assert {r["document"]["citizen"]["id_number"] for r in exported["results"]} == {CITIZEN.id_number}
        assert [r["online_answers"] for r in exported["results"] if r["jti"] == mine[1].jti] == [
            [{"status": "valid", "holder": CITIZEN.full_name}]]
        assert export_subject(store, audit, request, "079000000000", NOW)["results"] == []
        erased = erase_subject(store, audit, request, CITIZEN.id_number, NOW)
        assert sorted(erased) == sorted((o.iss, o.jti) for o in mine)
        assert store.subject_results(CITIZEN.id_number) == []
        assert [r["jti"] for r in store.subject_results(OTHER_ID)] == [theirs.jti]  # the other citizen's stays
        dump = _dump(office_db)
        for personal in (CITIZEN.id_number, CITIZEN.full_name, CITIZEN.place_of_residence, CITIZEN.father_name,
                         CITIZEN.mother_name):
            assert personal is not None
            assert personal not in dump
        assert OTHER_NAME in dump  # the search would have found it
        entries = [(e.action, e.result_jti, e.reason, e.officer) for e in reversed(audit.entries())]
        assert [a for a, *_ in entries] == ["subject_export"] * 4 + ["subject_erase"] * 3
        assert {jti for a, jti, *_ in entries if a == "subject_erase"} == {o.jti for o in mine}
        assert entries[3][1] is None  # the export that found nothing is audited too
        assert {(reason, officer) for _, _, reason, officer in entries} == {(request.reason, "sup.lan")}
        assert CITIZEN.id_number not in json.dumps([e.as_dict() for e in audit.entries()])
        for statement in ("UPDATE audit_log SET reason='x'", "DELETE FROM audit_log"):
            with pytest.raises(Exception, match="append-only") as refused:
                store.database.execute(statement)
            assert not isinstance(refused.value, StorageError) or "append-only" in str(refused.value)
        assert len(audit.entries()) == 7
    finally:
        store.close()


def test_subjects_backfilled_for_rows_stored_before(office_db: str | Path, ward: Ward, tmp_path: Path) -> None:
    """Rows stored without a subject key (an office from before retention) get their subject and expiry when the
    store opens with one; JWE ones too (their document was stored opened)."""
    t1 = ward.terminal("T-01")
    decrypt = ec.generate_private_key(ec.SECP256R1())
    old = ResultStore(office_db, TerminalKeys({}, WardTrust.load(ward.ca_path)), decrypt_key=decrypt)
    try:
        sealed = old.ingest(_token(t1, 1, ProcedureProfile.ONLINE_CHECK, NOW, encrypt_to=decrypt.public_key()), NOW)
        old.database.execute("UPDATE results SET expires=NULL, subject=NULL")  # as an older schema left them
    finally:
        old.close()
    store = _store(office_db, ward, load_subject_key(tmp_path / "subject.key"), decrypt)
    try:
        assert [r["jti"] for r in store.subject_results(CITIZEN.id_number)] == [sealed.jti]
        (expires,) = store.database.execute("SELECT expires FROM results").fetchone()
        assert expires == NOW + 30 * DAY_SECONDS
    finally:
        store.close()


def test_subject_key_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "subject.key"
    key = load_subject_key(path)
    assert (len(key), path.stat().st_mode & 0o777, load_subject_key(path)) == (32, 0o600, key)
    path.chmod(0o644)
    with pytest.raises(Exception, match="readable by others"):
        load_subject_key(path)


def test_command_line_retention_export_and_erase(tmp_path: Path, ward: Ward,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """``gateway retention --dry-run``, ``subject export -o`` (0600) and ``subject erase``: counts printed, nothing
    personal; the ID number read from a file; an unknown officer refused."""
    from edge.office.web.officers import Officers

    database = tmp_path / "office" / "results.db"
    toml = tmp_path / "gateway.toml"
    toml.write_text(f'instance = "office-1"\nward = "{WARD}"\n[storage]\nurl = "sqlite:///{database}"\n'
                    f'[trust]\nward_ca = "{ward.ca_path}"\n', encoding="utf-8")
    store = ResultStore(database, TerminalKeys({}, WardTrust.load(ward.ca_path)),
                        subject_key=load_subject_key(database.parent / "subject.key"))
    try:
        t1 = ward.terminal("T-01")
        # the command runs on the real clock: one read 100 days before it, one read at NOW (2027, still kept)
        old = store.ingest(_token(t1, 1, ProcedureProfile.RESIDENCE, time.time() - 100 * DAY_SECONDS), NOW)
        assert old.status == "stored", old.reason
        store.ingest(_token(t1, 2, ProcedureProfile.RESIDENCE, NOW), NOW)
        Officers(store.database).add("sup.lan", Role.SUPERVISOR, password=None)
    finally:
        store.close()
    number = tmp_path / "id.txt"
    number.write_text(CITIZEN.id_number + "\n", encoding="ascii")
    assert main(["gateway", "retention", "--dry-run", "--config", str(toml)]) == 0
    assert json.loads(capsys.readouterr().out)["reduced"] == {"residence": 1}
    out = tmp_path / "copy.json"
    base = ["--id-number-file", str(number), "--reason", "HS-1", "--config", str(toml)]
    assert main(["gateway", "subject", "export", *base, "--officer", "sup.lan", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed)["exported"] == 2
    assert CITIZEN.id_number not in printed
    assert out.stat().st_mode & 0o777 == 0o600
    assert CITIZEN.full_name in out.read_text(encoding="utf-8")
    assert main(["gateway", "subject", "erase", *base, "--officer", "nobody"]) == 1
    assert "no officer" in capsys.readouterr().err
    assert main(["gateway", "subject", "erase", *base, "--officer", "sup.lan"]) == 0
    assert json.loads(capsys.readouterr().out) == {"erased": 2}
    assert main(["gateway", "audit", "--config", str(toml)]) == 0
    actions = [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()]
    assert actions == ["subject_erase"] * 2 + ["subject_export"] * 2
