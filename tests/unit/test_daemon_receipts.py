"""The terminal's side of receipts (edge.daemon.receipts): which receipts it believes, the republish schedule, the
outbox's two queues on a real SQLite file, and what the LEDs show while results await their receipt."""

from __future__ import annotations

import random
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.config import OutboxConfig, TimeoutConfig, parse_config
from edge.daemon import doctor
from edge.daemon.mqtt import MqttSettings
from edge.daemon.office_commands import ReplayGuard
from edge.daemon.outbox import OUTBOX_FILE, Outbox, Payload
from edge.daemon.receipts import OVERDUE_ATTEMPTS, ReceiptChecker, RepublishSchedule, names_result, trusted_now
from edge.daemon.state import DeliveryChanged, Indicator, Machine, Snapshot, indicator_for
from edge.errors import ReceiptRefusedError
from edge.protocol import jose
from edge.protocol.clock import TimeEvidence
from edge.protocol.receipt import receipt_claims, sign_receipt

NOW = 1_800_000_000
KEY = ec.generate_private_key(ec.SECP256R1())
KEYS = {jose.key_id(KEY.public_key()): KEY.public_key()}


def _receipt(results: list[tuple[int, str]], *, now: int = NOW, lifetime: int = 3600, terminal: str = "T-01",
             ward: str = "W1", key: ec.EllipticCurvePrivateKey = KEY, jti: str | None = None) -> bytes:
    claims = receipt_claims(gateway="gateway:office-1", terminal_id=terminal, ward_code=ward, results=results,
                            now=now, jti=jti or str(uuid.uuid4()), lifetime=lifetime)
    return sign_receipt(claims, key)


def _checker(tmp_path: Path, time: TimeEvidence | None = None) -> ReceiptChecker:
    evidence = time or trusted_now(NOW)
    return ReceiptChecker(KEYS, terminal_id="T-01", ward_code="W1", replay=ReplayGuard(tmp_path / "receipts.db"),
                          time=lambda: evidence)


# --- believing a receipt -------------------------------------------------------------------------------------------


def test_a_good_receipt_is_believed_once_and_its_replay_refused(tmp_path: Path) -> None:
    checker = _checker(tmp_path)
    token = _receipt([(1, "j-1"), (2, "j-2")], jti="r-1")
    assert checker.check(token).jtis == ("j-1", "j-2")
    with pytest.raises(ReceiptRefusedError) as caught:
        checker.check(token)
    assert caught.value.reason == "replayed"
    # ... and across a restart of the terminal (the guard is in SQLite)
    with pytest.raises(ReceiptRefusedError, match="replayed"):
        _checker(tmp_path).check(token)


@pytest.mark.parametrize(("token", "reason"), [
    (_receipt([(1, "j-1")], key=ec.generate_private_key(ec.SECP256R1())), "unknown_key"),
    (_receipt([(1, "j-1")], terminal="T-02"), "wrong_terminal"),
    (_receipt([(1, "j-1")], ward="W2"), "wrong_terminal"),
    (_receipt([(1, "j-1")], now=NOW - 7200, lifetime=600), "expired"),
    (_receipt([(1, "j-1")], now=NOW + 3600), "expired"),  # signed in the future
])  # fmt: skip
def test_refused_receipts_say_why(tmp_path: Path, token: bytes, reason: str) -> None:
    with pytest.raises(ReceiptRefusedError) as caught:
        _checker(tmp_path).check(token)
    assert caught.value.reason == reason


def test_a_forged_signature_under_a_trusted_kid_and_an_unsigned_receipt_are_refused(tmp_path: Path) -> None:
    claims = receipt_claims(gateway="g", terminal_id="T-01", ward_code="W1", results=[(1, "j-1")], now=NOW,
                            jti="r-9").model_dump(mode="json")
    trusted_kid = jose.key_id(KEY.public_key())
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = jose.sign_compact({"alg": "ES256", "kid": trusted_kid, "typ": "cccd-receipt+jwt"}, claims,
                               lambda data: jose.es256_signature(forger, data)).encode()
    unsigned = jose.sign_compact({"alg": "none", "kid": trusted_kid, "typ": "cccd-receipt+jwt"}, claims,
                                 lambda data: b"").encode()
    checker = _checker(tmp_path)
    reasons = []
    for token in (forged, unsigned):
        with pytest.raises(ReceiptRefusedError) as caught:
            checker.check(token)
        reasons.append(caught.value.reason)
    assert reasons == ["bad_signature", "malformed"]


def test_without_a_trusted_clock_expiry_is_judged_by_the_floor(tmp_path: Path) -> None:
    floor = datetime.fromtimestamp(NOW, UTC)
    unsynchronised = TimeEvidence.unsynchronised(datetime(1970, 1, 2, tzinfo=UTC), floor)
    checker = _checker(tmp_path, unsynchronised)
    assert checker.check(_receipt([(1, "j-1")], now=NOW - 600, lifetime=3600)).sub == "T-01"
    with pytest.raises(ReceiptRefusedError, match="expired"):  # expired before a time known to have passed
        checker.check(_receipt([(1, "j-1")], now=NOW - 7200, lifetime=600))
    # a receipt from a year ahead is not refused: without a trusted time the terminal cannot call it future
    assert checker.check(_receipt([(1, "j-1")], now=NOW + 365 * 86400)).iat == NOW + 365 * 86400


def test_an_entry_whose_jti_is_unknown_is_named_by_its_seq() -> None:
    claims = receipt_claims(gateway="g", terminal_id="T-01", ward_code="W1", results=[(3, "j-3"), (4, "j-4")],
                            now=NOW, jti="r")
    names = names_result(claims)
    assert names(3, "j-3")
    assert names(4, None)
    assert not names(3, "j-other"), "a known jti decides, whatever the seq"
    assert not names(5, None)


# --- republish schedule --------------------------------------------------------------------------------------------


def test_republish_waits_double_up_to_the_cap_with_jitter() -> None:
    schedule = RepublishSchedule(60.0, 3600.0, rng=random.Random(7))
    for attempts in range(1, 10):  # the attempts-th PUBACK without a receipt
        ceiling = min(3600.0, 60.0 * 2 ** (attempts - 1))
        schedule.published(1, attempts, 0.0)
        assert schedule.take_due(ceiling / 2 - 0.001, 10) == []
        assert schedule.take_due(ceiling, 10) == [1]


def test_republish_takes_what_is_due_up_to_the_room_and_never_a_receipted_one() -> None:
    schedule = RepublishSchedule(10.0, 10.0, rng=random.Random(1))
    for entry_id in range(1, 8):
        schedule.published(entry_id, 1, float(entry_id))
    schedule.forget(3)
    assert len(schedule) == 6
    assert schedule.take_due(0.0, 10) == []
    first, second = schedule.take_due(100.0, 4), schedule.take_due(100.0, 4)
    assert (len(first), sorted(first + second)) == (4, [1, 2, 4, 5, 6, 7])
    assert len(schedule) == 0
    assert schedule.take_due(1000.0, 10) == []


# --- the outbox's two queues --------------------------------------------------------------------------------------


def _token(seq: int, jti: str) -> bytes:
    signer = signers.KeySigner(KEY)
    return jose.result_token(signer, terminal_id="T-01", seq=seq, document={"verdict": "verified"}, now=NOW, jti=jti)


def test_outbox_keeps_published_results_until_a_receipt_names_them(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_count=3, max_bytes=1_000_000)
    box.enqueue(lambda seq: _token(seq, f"j-{seq}"))  # the jti read from the JWS
    box.enqueue(lambda seq: Payload(b"sealed to the ward (a JWE)", f"j-{seq}"))  # the jti given beside it
    box.enqueue(b"an entry from before receipts")  # jti unknown
    first, second, third = box.pending()
    assert [e.jti for e in (first, second, third)] == ["j-1", "j-2", None]
    assert box.mark_published([first.id, second.id, third.id], now=NOW) == {first.id: 1, second.id: 1, third.id: 1}
    assert box.pending() == []
    assert box.mark_published([second.id], now=NOW + 60) == {second.id: 2}
    stats = box.stats()
    assert (stats.count, stats.awaiting, stats.unpublished, stats.most_attempts) == (3, 3, 0, 2)
    assert stats.oldest_published == NOW
    assert not box.has_room(), "results awaiting their receipt count against the limits"
    claims = receipt_claims(gateway="g", terminal_id="T-01", ward_code="W1",
                            results=[(1, "j-1"), (2, "j-other"), (3, "j-3")], now=NOW, jti="r")
    deleted = box.delete_named(claims.jtis, claims.seqs, names_result(claims))
    assert [seq for _, seq in deleted] == [1, 3]  # seq 2 holds another result than the one named
    assert box.awaiting() == [(second.id, 2)]
    assert box.mark_published([first.id]) == {}  # a PUBACK after the receipt books nothing
    assert [e.payload for e in box.entries([first.id, second.id])] == [b"sealed to the ward (a JWE)"]
    box.close()


def test_an_outbox_from_before_receipts_is_upgraded_and_read_only_readers_cope(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, max_count=10, max_bytes=10_000)
    box.enqueue(_token(1, "j-1"))
    box.close()
    with sqlite3.connect(path) as db:  # the table as the previous version left it: no receipt columns
        db.executescript("""
            DROP INDEX outbox_unpublished; DROP INDEX outbox_jti;
            CREATE TABLE old (id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL UNIQUE,
                              created REAL NOT NULL, size INTEGER NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL);
            INSERT INTO old SELECT id, seq, created, size, nonce, sealed FROM outbox;
            DROP TABLE outbox; ALTER TABLE old RENAME TO outbox;""")
    db.close()
    old = Outbox(path, max_count=10, max_bytes=10_000, read_only=True)  # e.g. doctor before the daemon ran
    assert (old.stats().awaiting, old.awaiting(), [e.seq for e in old.pending()]) == (0, [], [1])
    old.close()
    box = Outbox(path, max_count=10, max_bytes=10_000)
    (entry,) = box.pending()
    assert (entry.seq, entry.attempts, entry.jti) == (1, 0, None)  # unpublished as before; its jti unknown
    assert box.mark_published([entry.id]) == {entry.id: 1}
    box.close()
    reader = Outbox(path, max_count=10, max_bytes=10_000, read_only=True)
    assert reader.stats().awaiting == 1
    reader.close()


# --- config, settings, LEDs ----------------------------------------------------------------------------------------


def test_delivery_mode_decides_the_results_expiry_at_the_broker() -> None:
    base = {"terminal_id": "T-01", "ward_code": "W1"}
    receipt = MqttSettings.from_config(parse_config(base))
    assert (receipt.message_expiry, receipt.receipt_timeout) == (7200, 60.0)  # twice the republish cap
    puback = MqttSettings.from_config(parse_config({**base, "delivery": {"mode": "puback"}}))
    assert puback.message_expiry == 7 * 24 * 3600  # the broker is then the result's only keeper
    explicit = MqttSettings.from_config(parse_config({**base, "mqtt": {"message_expiry": 600}}))
    assert explicit.message_expiry == 600


def test_leds_show_offline_queued_for_either_queue_and_for_an_office_that_sends_no_receipt() -> None:
    machine = Machine(TimeoutConfig())
    snap, _ = machine.step(Snapshot(), DeliveryChanged(0.0, link_up=False, queued=0, outbox_full=False,
                                                       awaiting_receipt=2))  # fmt: skip
    assert indicator_for(snap) is Indicator.OFFLINE_QUEUED
    snap, _ = machine.step(snap, DeliveryChanged(1.0, link_up=True, queued=0, outbox_full=False, awaiting_receipt=2))
    assert indicator_for(snap) is Indicator.READY, "awaiting a receipt with the office answering: nothing to show"
    snap, _ = machine.step(snap, DeliveryChanged(2.0, link_up=True, queued=0, outbox_full=False, awaiting_receipt=2,
                                                 receipt_overdue=True))  # fmt: skip
    assert indicator_for(snap) is Indicator.OFFLINE_QUEUED


# --- doctor ----------------------------------------------------------------------------------------------------------


def test_doctor_shows_both_queues_and_warns_when_the_office_answers_no_publish(tmp_path: Path) -> None:
    limits = OutboxConfig(max_count=10, max_bytes=100_000)
    box = Outbox(tmp_path / OUTBOX_FILE, max_count=10, max_bytes=100_000)
    ids = [box.enqueue(_token(seq, f"j-{seq}"), now=NOW - 60)[0] for seq in (1, 2, 3)]
    box.mark_published(ids[:2])
    box.close()
    now = datetime.fromtimestamp(NOW, UTC)
    calm = doctor.check_outbox(tmp_path, limits, now)
    assert (calm.ok, calm.warning) == (True, False), calm
    assert "3/10 results (1 unpublished, 2 awaiting receipt)" in calm.detail
    box = Outbox(tmp_path / OUTBOX_FILE, max_count=10, max_bytes=100_000)
    for _ in range(OVERDUE_ATTEMPTS - 1):  # published again, still no receipt
        box.mark_published(ids[:1])
    box.close()
    overdue = doctor.check_outbox(tmp_path, limits, now)
    assert overdue.warning, overdue
    assert "without a receipt" in overdue.detail
    assert "gateway" in overdue.hint


def test_doctor_names_the_delivery_mode_and_a_receipt_mode_without_a_key(tmp_path: Path) -> None:
    base: dict[str, object] = {"terminal_id": "T-01", "ward_code": "W1"}
    assert not doctor.check_delivery(parse_config(base)).ok  # the daemon would not start
    assert doctor.check_delivery(parse_config({**base, "delivery": {"mode": "puback"}})).ok
    ward_pub = tmp_path / "ward-command.pub"
    ward_pub.write_bytes(KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    good = doctor.check_delivery(parse_config({**base, "paths": {"ward_command_key": str(ward_pub)}}))
    assert good.ok, good
    assert "1 key(s)" in good.detail
    broken = doctor.check_delivery(parse_config({**base, "trust": {"receipt_keys": [str(tmp_path / "missing.pub")]}}))
    assert not broken.ok
