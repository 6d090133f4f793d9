"""The office never dies on input: every message ends stored or quarantined with its reason, as a typed error.

Real SQLite, real signatures; the receiver's thread and acknowledgements against a real broker are in
``tests/stack/test_office_poison.py``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import signers
from edge.cli import main
from edge.errors import TokenError
from edge.office.receiver import MAX_RESULT_BYTES, OVERSIZE_KEEP_BYTES, ResultStore
from edge.office.verify import verify_result
from edge.protocol import jose
from edge.protocol.result import ProcedureProfile, ReadTiming
from tests.support.poison_messages import poison_messages
from tests.support.results import sample_result

NOW = 1_800_000_000
TERMINAL = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
WARD = ec.generate_private_key(ec.SECP256R1())
KEYS = {TERMINAL.kid: TERMINAL.public_key}
POISON = poison_messages(TERMINAL)


def token(seq: int, *, signer: signers.KeySigner = TERMINAL, iat: int = NOW) -> bytes:
    document = sample_result(ProcedureProfile.RESIDENCE, timing=ReadTiming(apdu_count=40, read_ms=900),
                             completed_at=datetime.fromtimestamp(iat, UTC))
    claims = jose.result_claims(terminal_id="T-01", kid=signer.kid, seq=seq,
                                document=json.loads(document.to_json()), now=iat, lifetime=3600)
    return jose.sign_jws(signer, claims, typ=jose.RESULT_TYP).encode()


@pytest.mark.parametrize("name", sorted(POISON))
def test_each_poison_is_a_token_error(name: str) -> None:
    with pytest.raises(TokenError):
        verify_result(POISON[name], KEYS, NOW, decrypt_key=WARD)


def test_a_non_ascii_text_token_is_a_token_error() -> None:
    with pytest.raises(TokenError, match="not ASCII"):
        verify_result(POISON["non_ascii_utf8"].decode(), KEYS, NOW)


def test_poison_is_quarantined_with_its_reason_and_the_good_one_stored(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "office" / "results.db", KEYS, decrypt_key=WARD)
    try:
        outcomes = {name: store.ingest(payload, NOW, topic="cccd-edge/v1/26734/T-01/result")
                    for name, payload in POISON.items()}
        assert {o.status for o in outcomes.values()} == {"quarantined"}
        assert "deeper than 32 levels" in outcomes["deep_header"].reason
        assert "not ASCII" in outcomes["non_ascii_body"].reason
        assert store.ingest(token(1), NOW).status == "stored"
        assert store.counts() == {"results": 1, "quarantined": len(POISON), "flags": {}}
        rows = store.quarantined()
        assert [row["quarantine_id"] for row in rows] == [o.quarantine_id for o in outcomes.values()]
        assert {row["topic"] for row in rows} == {"cccd-edge/v1/26734/T-01/result"}
        assert all(row["reason"] and "payload" not in row for row in rows)
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "office" / "results.db") as db:
        kept = [payload for (payload,) in db.execute("SELECT payload FROM quarantine ORDER BY id")]
    assert kept == list(POISON.values())  # within the size limit, a message is kept whole


def test_a_refused_token_says_which_terminal_it_claims_to_be_from(tmp_path: Path) -> None:
    """A token from a terminal whose key is not installed yet: quarantined whole, with its (unverified) origin."""
    newcomer = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    store = ResultStore(tmp_path / "results.db", KEYS, decrypt_key=WARD)
    try:
        unknown = store.ingest(token(7, signer=newcomer), NOW)
        assert (unknown.status, unknown.iss, unknown.seq) == ("quarantined", "T-01", 7)
        assert "unknown key id" in unknown.reason
        sealed = jose.encrypt_jwe(token(8, signer=newcomer), WARD.public_key()).encode()
        assert (store.ingest(sealed, NOW).iss, store.ingest(sealed, NOW).seq) == ("T-01", 8)
        past_its_exp = store.ingest(token(9), NOW + 7200)  # a result does not expire (test_result_times.py)
        assert (past_its_exp.status, past_its_exp.seq) == ("stored", 9)
        assert store.ingest(POISON["deep_signed_body"], NOW).iss is None
    finally:
        store.close()


def test_an_oversize_message_is_refused_unparsed_and_kept_short(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.db", KEYS)
    huge = b"[" * (MAX_RESULT_BYTES + 1)
    try:
        outcome = store.ingest(huge, NOW)
        assert outcome.status == "quarantined"
        assert "more than the" in outcome.reason
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert db.execute("SELECT size, length(payload) FROM quarantine").fetchone() == (len(huge),
                                                                                          OVERSIZE_KEEP_BYTES)


def test_receive_lists_the_quarantine_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ResultStore(tmp_path / "results.db", KEYS)
    try:
        store.ingest(POISON["deep_header"], NOW, topic="t/result")
        store.ingest(token(1), NOW)
    finally:
        store.close()
    assert main(["receive", "--ward", "26734", "--db", str(tmp_path / "results.db"), "--quarantined"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["topic"] == "t/result"
    assert "deeper" in lines[0]["reason"]
    assert lines[-1] == {"counts": {"results": 1, "quarantined": 1, "flags": {}}}


# --- fuzzing: whatever arrives ends as a row in one of the two tables, never as an exception --------------------

_GOOD = token(1)
_SEALED = jose.encrypt_jwe(token(2), WARD.public_key()).encode()


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResultStore]:
    store = ResultStore(tmp_path_factory.mktemp("fuzz") / "results.db", KEYS, decrypt_key=WARD)
    yield store
    store.close()


def _mutate(data: bytes, position: int, replacement: bytes) -> bytes:
    at = position % (len(data) + 1)
    return data[:at] + replacement + data[at + len(replacement):]


@settings(max_examples=200, deadline=None)
@given(payload=st.one_of(
    st.binary(max_size=400),
    st.builds(_mutate, st.sampled_from([_GOOD, _SEALED]), st.integers(min_value=0), st.binary(min_size=1, max_size=8)),
    st.builds(lambda head, body: f"{head}.{body}.{jose.b64url(bytes(64))}".encode(),
              st.sampled_from([_GOOD.decode().split(".")[0], jose.b64url(b"[" * 5000)]),
              st.text(alphabet="eyJ0123[{\"}]\u00e9\uff11", max_size=40)),
))  # fmt: skip
def test_any_payload_ends_stored_or_quarantined(fuzz_store: ResultStore, payload: bytes) -> None:
    before = fuzz_store.counts()
    outcome = fuzz_store.ingest(payload, NOW)
    after = fuzz_store.counts()
    if outcome.status == "quarantined":
        assert after == before | {"quarantined": before["quarantined"] + 1}
    else:
        assert outcome.status in ("stored", "duplicate")
        assert after["quarantined"] == before["quarantined"]


@pytest.mark.parametrize("header", [b'{"alg":"\\ud800"}', b'{"alg":"ES256","kid":"\\udfff"}'])
def test_a_lone_surrogate_in_a_sealed_header_is_quarantined_not_an_exception(tmp_path: Path, header: bytes) -> None:
    """Found by bench/fuzz.py: JSON may spell a lone surrogate, which no UTF-8 column takes; the reason that quotes
    it used to fail the quarantine insert itself (UnicodeEncodeError), leaving the message unacknowledged."""
    store = ResultStore(tmp_path / "results.db", KEYS, decrypt_key=WARD)
    try:
        sealed = f"{jose.b64url(header)}.AA.AA.AA.AA".encode()
        assert store.ingest(sealed, NOW).status == "quarantined"
        assert store.counts()["quarantined"] == 1
    finally:
        store.close()
