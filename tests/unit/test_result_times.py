"""A result's times flag it, never refuse it: the office stores a validly signed result whatever its clock said.

Before, a result signed by a terminal whose clock said 2020, 1970 or next year, or one that waited more than its
60-day ``exp`` in an outbox, was refused as "token expired" / "issued in the future" after the terminal had
deleted it; and a refused token left its seq in the ``missing`` list for ever. Real signatures, real SQLite; the
same over a real mosquitto in ``tests/stack/test_result_times_stack.py``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.cli import main
from edge.errors import TokenError, TokenExpiredError
from edge.office.receiver import ResultStore
from edge.office.verify import ResultFlag, verify_result
from edge.protocol import jose
from edge.protocol.result import ProcedureProfile, ReadTiming, ResultDocument
from tests.support.results import sample_result

NOW = 1_820_000_000  # the office's clock (September 2027: a result 90 days old was read after the software existed)
DAY = 86_400
OLD_LIFETIME = 60 * DAY  # what terminals signed as exp - iat before results stopped expiring
TERMINAL = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
KEYS = {TERMINAL.kid: TERMINAL.public_key}

#: The clocks of the finding (issue 13), as the iat a terminal signed with them.
IN_2020 = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
A_YEAR_AHEAD = NOW + 365 * DAY
IN_1970 = 3_600  # a Pi without RTC, an hour after boot
NINETY_DAYS_OLD = NOW - 90 * DAY


def document(*, terminal_id: str = "T-01", clock: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.loads(sample_result(ProcedureProfile.RESIDENCE, terminal_id=terminal_id,
                                    timing=ReadTiming(apdu_count=40, read_ms=900)).to_json())
    if clock is not None:
        data["clock"] = clock
    return dict(json.loads(ResultDocument.model_validate(data).to_json()))  # validated as a terminal sends it


def token(seq: int, issued: int, *, lifetime: int | None = OLD_LIFETIME, signer: signers.KeySigner = TERMINAL,
          body: dict[str, Any] | None = None, **claims: Any) -> bytes:  # fmt: skip
    """A result token; by default as a terminal before this change signed it (exp = iat + 60 days)."""
    signed = jose.result_claims(terminal_id="T-01", kid=signer.kid, seq=seq, document=body or document(),
                                now=issued, lifetime=lifetime) | claims
    return jose.sign_jws(signer, signed, typ=jose.RESULT_TYP).encode()


# --- verification: no expiry for results, strict expiry for commands ---------------------------------------------


@pytest.mark.parametrize(("iat", "flags"), [
    (IN_2020, (ResultFlag.CLOCK_SKEW,)),
    (A_YEAR_AHEAD, (ResultFlag.FUTURE, ResultFlag.CLOCK_SKEW)),
    (IN_1970, (ResultFlag.CLOCK_SKEW,)),
    (NINETY_DAYS_OLD, (ResultFlag.LATE,)),
    (NOW - 2 * DAY, (ResultFlag.LATE,)),
    (NOW - 3_600, ()),
    (NOW + jose.DEFAULT_LEEWAY, ()),  # within the leeway: two clocks a little apart
], ids=["2020", "year-ahead", "1970", "90-days-old", "2-days-old", "an-hour-old", "leeway"])  # fmt: skip
def test_a_result_is_valid_whatever_its_clock_said_and_flagged(iat: int, flags: tuple[ResultFlag, ...]) -> None:
    for lifetime in (OLD_LIFETIME, None):  # an old terminal's token with exp, and a new one's without
        result = verify_result(token(1, iat, lifetime=lifetime), KEYS, NOW)
        assert (result.iat, result.flags) == (iat, flags)
        assert result.summary()["flags"] == [flag.value for flag in flags]


def test_new_results_carry_no_exp_and_commands_keep_their_strict_expiry() -> None:
    claims = jose.result_claims(terminal_id="T-01", kid=TERMINAL.kid, seq=1, document={}, now=NOW)
    assert "exp" not in claims
    old = token(1, NINETY_DAYS_OLD)
    assert verify_result(old, KEYS, NOW).exp == NINETY_DAYS_OLD + OLD_LIFETIME  # shown, not enforced
    with pytest.raises(TokenExpiredError, match="expired"):  # the command path is unchanged
        jose.verify_jws(old, KEYS, NOW)
    with pytest.raises(TokenExpiredError, match="future"):
        jose.verify_jws(token(2, A_YEAR_AHEAD), KEYS, NOW)


def test_a_result_without_a_usable_iat_or_seq_is_still_refused() -> None:
    with pytest.raises(TokenError, match="integer iat"):
        verify_result(token(1, NOW, iat="yesterday"), KEYS, NOW)
    with pytest.raises(TokenError, match="outside any clock"):
        verify_result(token(1, NOW, iat=1 << 70), KEYS, NOW)
    with pytest.raises(TokenError, match="seq"):
        verify_result(token(-1, NOW), KEYS, NOW)
    with pytest.raises(TokenError, match="seq"):
        verify_result(token(1 << 64, NOW), KEYS, NOW)


def test_the_clock_object_decides_which_time_the_office_goes_by() -> None:
    unsynchronised = document(clock={"synchronised": False, "source": "none", "floor": "2026-11-01T00:00:00Z"})
    # The system clock's word only: iat says nothing about the read's age, so it is not called late...
    assert verify_result(token(1, NINETY_DAYS_OLD, body=unsynchronised), KEYS, NOW).flags == (
        ResultFlag.CLOCK_UNSYNCHRONISED,)
    # ...but a clock in 1970 is still wrong for certain, and so is one behind the floor the terminal knew.
    assert verify_result(token(2, IN_1970, body=unsynchronised), KEYS, NOW).flags == (
        ResultFlag.CLOCK_SKEW, ResultFlag.CLOCK_UNSYNCHRONISED)
    knew_better = document(clock={"synchronised": False, "source": "none",
                                  "floor": datetime.fromtimestamp(NOW - DAY, UTC).isoformat()})
    assert verify_result(token(3, NINETY_DAYS_OLD, body=knew_better), KEYS, NOW).flags == (
        ResultFlag.CLOCK_SKEW, ResultFlag.CLOCK_UNSYNCHRONISED)
    read_long_ago = document(clock={"synchronised": True, "source": "office",
                                    "evidence_time": datetime.fromtimestamp(NINETY_DAYS_OLD, UTC).isoformat()})
    assert verify_result(token(4, NOW, body=read_long_ago), KEYS, NOW).flags == (ResultFlag.LATE,)
    read_ahead = document(clock={"synchronised": True, "source": "ntp",
                                 "evidence_time": datetime.fromtimestamp(A_YEAR_AHEAD, UTC).isoformat()})
    assert verify_result(token(5, NOW, body=read_ahead), KEYS, NOW).flags == (
        ResultFlag.FUTURE, ResultFlag.CLOCK_SKEW)


# --- the store: flags kept, counted, and a gap report that tells refused from missing ---------------------------


def test_every_wrong_clock_is_stored_flagged_counted_and_kept_across_a_reopen(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    store = ResultStore(db, KEYS)
    try:
        outcomes = [store.ingest(token(seq, iat), NOW) for seq, iat in
                    enumerate((IN_2020, A_YEAR_AHEAD, IN_1970, NINETY_DAYS_OLD, NOW), start=1)]
        assert [o.status for o in outcomes] == ["stored"] * 5
        assert [o.flags for o in outcomes] == [("clock_skew",), ("future", "clock_skew"), ("clock_skew",),
                                               ("late",), ()]  # fmt: skip
        assert outcomes[1].as_dict()["flags"] == ["future", "clock_skew"]
        assert store.ingest(token(2, A_YEAR_AHEAD), NOW).status == "stored"  # another jti: a second read
    finally:
        store.close()
    reopened = ResultStore(db, KEYS)
    try:
        assert reopened.counts() == {"results": 6, "quarantined": 0,
                                     "flags": {"clock_skew": 4, "future": 2, "late": 1}}  # fmt: skip
        assert [flags for _, flags in reopened.flags("T-01")][:3] == [("clock_skew",), ("future", "clock_skew"),
                                                                       ("future", "clock_skew")]  # fmt: skip
        assert reopened.gaps() == []
    finally:
        reopened.close()
    with sqlite3.connect(db) as raw:  # a column the procedure software can query
        assert raw.execute("SELECT iat FROM results WHERE seq = 3").fetchone() == (IN_1970,)


def test_the_gap_report_tells_refused_from_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stranger = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    db = tmp_path / "results.db"
    store = ResultStore(db, KEYS)
    try:
        assert store.ingest(token(1, NOW), NOW).status == "stored"
        bad_document = store.ingest(token(2, NOW, body=document(terminal_id="T-99")), NOW)
        unknown_key = store.ingest(token(4, NOW, signer=stranger), NOW)
        assert (bad_document.status, unknown_key.status) == ("quarantined", "quarantined")
        assert unknown_key.refused == (2, 4)  # the quarantined line already says so
        # seq 3 never arrives; seq 5 does, and opens the gap 2..4
        arrival = store.ingest(token(5, NOW), NOW)
        assert (arrival.new_gaps, arrival.missing, arrival.refused) == ((2, 3, 4), (3,), (2, 4))
        refused_last = store.ingest(token(7, NOW, signer=stranger), NOW)  # above the highest verified seq
        (report,) = store.gaps()
        assert report.iss == "T-01"
        assert report.missing == (3,)  # an unverified claim of 7 opens no gap at 6
        assert [(r.seq, r.quarantine_id) for r in report.refused] == [
            (2, bad_document.quarantine_id), (4, unknown_key.quarantine_id), (7, refused_last.quarantine_id)]
        assert "differs from issuer" in report.refused[0].reason
        assert "unknown key id" in report.refused[1].reason
        store.ingest(b"not a token at all", NOW)  # unattributable: counted, in no terminal's report
        assert len(store.gaps()) == 1
    finally:
        store.close()
    assert main(["receive", "--ward", "26734", "--db", str(db), "--gaps"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["iss"] == "T-01"
    assert lines[0]["missing"] == [3]
    assert [(r["seq"], "unknown key id" in r["reason"]) for r in lines[0]["refused"]] == [
        (2, False), (4, True), (7, True)]
    assert lines[-1]["counts"]["quarantined"] == 4

    # The stranger's key is installed: what it signed is taken in, and leaves the refused list.
    assert main(["receive", "--ward", "26734", "--db", str(db), "--retry-quarantined",
                 "--cert", _pem(tmp_path, TERMINAL), "--cert", _pem(tmp_path, stranger)]) == 0
    retried = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line.get("status"), line.get("seq")) for line in retried[:-1]] == [("stored", 4), ("stored", 7)]
    assert retried[-1]["counts"] == {"results": 4, "quarantined": 2, "flags": {}}
    reopened = ResultStore(db, KEYS)
    try:
        (report,) = reopened.gaps("T-01")
        assert (report.missing, [r.seq for r in report.refused]) == ((3, 6), [2])  # 7 verified: 6 is missing
    finally:
        reopened.close()


def test_what_an_older_office_refused_for_its_times_is_taken_in(tmp_path: Path) -> None:
    """An office from before this change quarantined results as "token expired": a retry stores them, flagged by
    when they first arrived, and their gaps close."""
    db = tmp_path / "results.db"
    old_schema = """
        CREATE TABLE results (iss TEXT NOT NULL, jti TEXT NOT NULL, seq INTEGER NOT NULL, received REAL NOT NULL,
            verdict TEXT NOT NULL, document TEXT NOT NULL, token TEXT NOT NULL, PRIMARY KEY (iss, jti));
        CREATE TABLE missing (iss TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (iss, seq));
        CREATE TABLE terminals (iss TEXT PRIMARY KEY, max_seq INTEGER NOT NULL);
        CREATE TABLE quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT, received REAL NOT NULL, topic TEXT NOT NULL,
            reason TEXT NOT NULL, iss TEXT, seq INTEGER, size INTEGER NOT NULL, payload BLOB NOT NULL);
    """
    refused = {1: token(1, IN_2020), 2: token(2, NOW - 70 * DAY)}
    with sqlite3.connect(db) as raw:
        raw.executescript(old_schema)
        # a stored document always names its ward: the office keys a terminal's seqs by (ward, terminal)
        raw.execute("INSERT INTO results VALUES ('T-01', 'j3', 3, ?, 'verified', ?, 't')",
                    (NOW, '{"ward_code": "26734"}'))
        raw.executemany("INSERT INTO missing VALUES ('T-01', ?)", [(1,), (2,)])
        raw.execute("INSERT INTO terminals VALUES ('T-01', 3)")
        raw.executemany("INSERT INTO quarantine (received, topic, reason, iss, seq, size, payload) "
                        "VALUES (?, 't', ?, 'T-01', ?, ?, ?)",
                        [(NOW - DAY, "token expired 184896000 s ago", 1, len(refused[1]), refused[1]),
                         (NOW - DAY, "token expired 864000 s ago", 2, len(refused[2]), refused[2])])
    store = ResultStore(db, KEYS)
    try:
        assert store.counts() == {"results": 1, "quarantined": 2, "flags": {}}  # the old row: no flags
        assert [[r.seq for r in gap.refused] for gap in store.gaps()] == [[1, 2]]
        outcomes = store.retry_quarantined()
        assert [(o.status, o.seq, o.flags) for o in outcomes] == [("stored", 1, ("clock_skew",)),
                                                                  ("stored", 2, ("late",))]  # fmt: skip
        assert store.retry_quarantined() == []
        assert store.counts() == {"results": 3, "quarantined": 0, "flags": {"clock_skew": 1, "late": 1}}
        assert store.gaps() == []
    finally:
        store.close()


def _pem(tmp_path: Path, signer: signers.KeySigner) -> str:
    path = tmp_path / f"{signer.kid[:8]}.pem"
    path.write_bytes(signer.public_key.public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(path)
