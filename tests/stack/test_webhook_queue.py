"""The webhook queue's contract, one suite on both backends (SQLite file, PostgreSQL in a private cluster), and the
sender against a real HTTP receiver on a loopback port: queued once per result and endpoint, taken under a lease,
retried with capped jittered backoff, dead letters after N attempts (or at once on 410), listed per ward and sent
again; a jti that cannot be a webhook-id, or that another terminal used, is never sent under it."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from edge.office import webhooks
from edge.office.database import Database
from edge.office.store import ResultStore
from edge.office.verify import TerminalKeys
from edge.office.ward_trust import WardTrust
from edge.office.webhooks import (
    DEAD,
    DELIVERED,
    PENDING,
    Delivery,
    Endpoint,
    Offered,
    WebhookQueue,
    WebhookSender,
    parse_secret,
    verify_webhook,
)
from edge.protocol.result import ProcedureProfile
from tests.support.results import citizen_of
from tests.support.waiting import wait_until
from tests.support.ward import NOW, WARD, Ward
from tests.support.webhook_receiver import WebhookReceiver, spec_signature_holds

pytestmark = pytest.mark.stack
SECRET_TEXT = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkw"


@pytest.fixture
def queues(office_db: str | Path) -> Iterator[Callable[[Sequence[Endpoint]], WebhookQueue]]:
    """Queues on the test's database, each its own connection (a gateway instance, a sender), closed after."""
    made: list[WebhookQueue] = []

    def make(endpoints: Sequence[Endpoint]) -> WebhookQueue:
        made.append(WebhookQueue(Database(office_db), endpoints))
        return made[-1]

    yield make
    for queue in made:
        queue.close()


Queues = Callable[[Sequence[Endpoint]], WebhookQueue]


def _endpoint(name: str = "procedure", *, url: str = "http://127.0.0.1:9/none", wards: tuple[str, ...] = (WARD,),
              **pacing: float) -> Endpoint:  # fmt: skip
    return Endpoint(name, url, parse_secret(SECRET_TEXT), frozenset(wards), **pacing)  # type: ignore[arg-type]


def _stored(office_db: str | Path, ward: Ward, tokens: list[bytes]) -> list[tuple[str, str, str]]:
    store = ResultStore(office_db, TerminalKeys({}, WardTrust.load(ward.ca_path)))
    try:
        outcomes = store.ingest_many([(token, "t") for token in tokens], float(NOW))
    finally:
        store.close()
    assert all(outcome.status == "stored" for outcome in outcomes), outcomes
    return [(o.iss or "", o.jti or "", o.ward or "") for o in outcomes]


def _state(queue: WebhookQueue) -> dict[str, int]:
    return queue.counts()


def test_queued_once_per_result_and_endpoint_leased_retried_and_dead_lettered(office_db: str | Path, ward: Ward,
                                                                                queues: Queues) -> None:
    t1 = ward.terminal("T-01")
    results = _stored(office_db, ward, [t1.token(seq) for seq in (1, 2, 3)])
    endpoints = [_endpoint("a", max_attempts=3, retry_first=10.0, retry_cap=25.0),
                 _endpoint("b"), _endpoint("elsewhere", wards=("99999",))]  # fmt: skip
    queue = queues(endpoints)
    assert queue.enqueue(results, NOW) == 6, "two endpoints take the ward, the third does not"
    assert queue.enqueue(results, NOW + 1) == 0, "a result that arrived again is not queued again"
    other = queues(endpoints)  # a second gateway instance on the same database
    taken = queue.claim("office-1", NOW, limit=4, lease=30)
    assert len(taken) == 4
    rest = other.claim("office-2", NOW, limit=10, lease=30)
    assert len(rest) == 2, "leased rows are not taken twice"
    assert {d.id for d in taken}.isdisjoint({d.id for d in rest})
    assert other.claim("office-2", NOW + 29, limit=10) == [], "the lease holds"
    rng = random.Random(7)
    first = next(d for d in taken if d.endpoint == "a")
    assert queue.failed(first, NOW, status=500, error="HTTP 500", retry_after=None, rng=rng) == PENDING
    (next_attempt,) = queue._db.execute("SELECT next_attempt FROM webhook_deliveries WHERE id=?",
                                        (first.id,)).fetchone()
    assert NOW + 5 <= next_attempt <= NOW + 10, "the first retry in [first/2, first]"
    again = [d for d in queue.claim("office-1", NOW + 11, limit=10) if d.id == first.id]
    assert again
    assert again[0].attempts == 1
    assert queue.failed(again[0], NOW + 11, status=None, error="ConnectionRefusedError", retry_after=1e6,
                        rng=rng) == PENDING  # fmt: skip
    (next_attempt,) = queue._db.execute("SELECT next_attempt FROM webhook_deliveries WHERE id=?",
                                        (first.id,)).fetchone()
    assert next_attempt == pytest.approx(NOW + 11 + 25), "a Retry-After honoured up to the cap"
    third = [d for d in queue.claim("office-1", NOW + 40, limit=10) if d.id == first.id]
    assert queue.failed(third[0], NOW + 40, status=503, error="HTTP 503", retry_after=None, rng=rng) == DEAD
    gone = next(d for d in taken if d.endpoint == "b")
    assert queue.failed(gone, NOW, status=410, error="HTTP 410", retry_after=None, rng=rng, gone=True) == DEAD
    delivered = next(d for d in rest)
    queue.delivered([(delivered, 204)], NOW)
    assert _state(queue) == {PENDING: 3, DEAD: 2, DELIVERED: 1}
    letters = queue.dead_letters(frozenset({WARD}))
    assert [(d.endpoint, d.attempts, d.last_status) for d in letters] == [("a", 3, 503), ("b", 1, 410)]
    assert queue.dead_letters(frozenset({"99999"})) == [], "another ward's client sees none"
    assert queue.dead_letters(frozenset({WARD}), endpoint="b")[0].terminal == "T-01"
    assert not queue.retry(letters[0].id, frozenset({"99999"}), NOW + 50), "not its ward"
    assert queue.retry(letters[0].id, frozenset({WARD}), NOW + 50)
    assert not queue.retry(letters[0].id, frozenset({WARD}), NOW + 50), "no longer dead"
    retried = [d for d in queue.claim("office-1", NOW + 50, limit=10) if d.id == letters[0].id]
    assert retried[0].attempts == 0, "sent again from a first attempt"


def test_a_jti_that_cannot_be_a_webhook_id_is_a_dead_letter_not_a_lie(queues: Queues) -> None:
    queue = queues([_endpoint()])
    queue.enqueue([("T-01", "same-jti", WARD), ("T-02", "same-jti", WARD), ("T-03", "has.dot", WARD)], NOW)
    rows = {row[0]: (row[1], row[2]) for row in queue._db.execute(
        "SELECT iss, state, last_error FROM webhook_deliveries ORDER BY iss")}  # fmt: skip
    assert rows["T-01"] == (PENDING, None)
    assert rows["T-02"][0] == DEAD
    assert "another terminal" in rows["T-02"][1]
    assert rows["T-03"][0] == DEAD
    assert "not usable as webhook-id" in rows["T-03"][1]
    dead = queue.dead_letters(None)
    assert [d.terminal for d in dead] == ["T-02", "T-03"]
    assert not any(queue.retry(d.id, None, NOW) for d in dead), "sending it again would still hide a result"


def test_a_dead_letter_of_an_endpoint_removed_from_the_configuration_stays_dead(queues: Queues) -> None:
    """No sender claims the rows of an endpoint no longer configured: set pending again, a dead letter would leave
    the list and never be sent."""
    old = queues([_endpoint("old")])
    old.enqueue([("T-01", "a-jti", WARD)], NOW)
    (delivery,) = old.claim("office-1", NOW)
    assert old.failed(delivery, NOW, status=410, error="HTTP 410", retry_after=None, rng=random.Random(1),
                      gone=True) == DEAD  # fmt: skip
    now = queues([_endpoint("new")])
    assert not now.retry(delivery.id, None, NOW + 1)
    assert [d.id for d in now.dead_letters(None)] == [delivery.id], "still listed, still dead"


def test_the_sender_delivers_each_result_once_by_id_through_failures(office_db: str | Path, ward: Ward,
                                                                     queues: Queues) -> None:
    """A receiver that fails the first two deliveries: every result arrives, each webhook-id accepted once, every
    attempt signed as the spec says, the body the stored result, all on one connection."""
    t1 = ward.terminal("T-01")
    results = _stored(office_db, ward, [t1.token(seq) for seq in (1, 2)])
    receiver = WebhookReceiver(answers=[500, 503], keep_alive=True)
    endpoints = [_endpoint(url=receiver.url, retry_first=0.05, retry_cap=0.2)]
    queue = queues(endpoints)
    sender = WebhookSender(queues(endpoints), "office-1", poll=0.05)
    sender.start()
    try:
        queue.enqueue(results, time.time())
        wait_until(lambda: len(receiver.accepted()) == 2, "both results accepted")
    finally:
        sender.stop()
        receiver.close()
    assert len(receiver.deliveries) == 4, "2 failed attempts + 2 deliveries"
    assert receiver.connections == 1, "every attempt on one kept-alive connection"
    assert sender.stats.attempts == 4
    assert sender.stats.delivered == 2
    assert {d.webhook_id for d in receiver.accepted()} == {jti for _, jti, _ in results}
    for delivery in receiver.deliveries:
        assert spec_signature_holds(SECRET_TEXT, delivery.headers, delivery.body)
        verify_webhook(parse_secret(SECRET_TEXT), delivery.headers, delivery.body, now=int(time.time()))
        event = delivery.json()
        assert event["type"] == "result.stored"
        assert event["data"]["jti"] == delivery.webhook_id
        assert event["data"]["terminal"] == "T-01"
        assert event["data"]["document"]["ward_code"] == WARD
    failed = [d for d in receiver.deliveries if d.status != 200]
    retried = [d for d in receiver.deliveries if d.status == 200 and d.webhook_id == failed[0].webhook_id]
    assert retried[0].body == failed[0].body, "a retry sends the same body"
    assert queue.counts() == {DELIVERED: 2}


def test_a_stored_results_record_is_the_row_as_read_back(office_db: str | Path, ward: Ward, queues: Queues) -> None:
    """The gateway hands its sender the record it built from what it inserted: it must be what any instance reads
    back from the database (the body of a first attempt and of a retry are the same)."""
    t1 = ward.terminal("T-01")
    store = ResultStore(office_db, TerminalKeys({}, WardTrust.load(ward.ca_path)), instance="office-1")
    try:  # a fresh result, one signed long ago (flagged late) and one from a clock in the future (flagged)
        outcomes = store.ingest_many([(t1.token(1), "t"), (t1.token(2, now=NOW - 90 * 86400), "t"),
                                      (t1.token(3, now=NOW + 7200), "t")], float(NOW))
    finally:
        store.close()
    queue = queues([_endpoint()])
    assert [outcome.status for outcome in outcomes] == ["stored"] * 3
    assert any(outcome.flags for outcome in outcomes)
    for outcome in outcomes:
        assert outcome.record is not None
        assert outcome.record == queue.record(outcome.iss or "", outcome.jti or "")


def test_rows_handed_over_are_leased_to_their_sender_and_sent_without_a_claim(office_db: str | Path, ward: Ward,
                                                                               queues: Queues) -> None:
    """A gateway's queue hands the rows it adds to its own sender, leased to it: another instance's sender does not
    take them while the lease runs, and takes any the first one never sent once it has run out."""
    t1 = ward.terminal("T-01")
    store = ResultStore(office_db, TerminalKeys({}, WardTrust.load(ward.ca_path)), instance="office-1")
    try:
        outcomes = store.ingest_many([(t1.token(seq), "t") for seq in (1, 2, 3)], float(NOW))
    finally:
        store.close()
    receiver = WebhookReceiver(keep_alive=True)
    endpoints = [_endpoint(url=receiver.url)]
    gateway_queue, sender_queue, other_queue = queues(endpoints), queues(endpoints), queues(endpoints)
    sender = WebhookSender(sender_queue, "office-1", clock=lambda: float(NOW))
    handed: list[Offered] = []
    gateway_queue.hand_over("office-1", sender.lease, handed.extend)
    records = {(o.iss or "", o.jti or ""): o.record for o in outcomes if o.record is not None}
    keys = [(o.iss or "", o.jti or "", o.ward or "") for o in outcomes]
    assert gateway_queue.enqueue(keys[:2], float(NOW), records=records) == 2
    assert gateway_queue.enqueue(keys[2:], float(NOW)) == 1, "no record given: queued for any sender to claim"
    assert [offered.delivery.jti for offered in handed] == [jti for _, jti, _ in sorted(keys[:2])]
    assert [d.jti for d in other_queue.claim("office-2", float(NOW), limit=10)] == [keys[2][1]], \
        "the handed-over rows are leased to office-1"
    try:
        sender.offer(handed)
        assert sender.round()
        assert not sender.round(), "nothing else due for office-1: the third row is leased to office-2"
    finally:
        receiver.close()
        sender.stop()
    assert sorted(d.webhook_id for d in receiver.deliveries) == sorted(jti for _, jti, _ in keys[:2])
    first = next(d for d in receiver.deliveries if d.webhook_id == keys[0][1])
    record = records[keys[0][:2]]
    assert record is not None
    assert first.json()["data"] == json.loads(record.with_addresses().model_dump_json()), \
        "the record handed over, its addresses mapped when sent"
    stale = Offered(handed[0].delivery, handed[0].record, float(NOW) + 1)  # its lease nearly over
    sender.offer([stale])
    assert not sender.round(), "an offer whose lease is nearly over is left to a claim after it has run out"


def test_a_sender_holds_its_bound_of_offered_records_and_sends_every_offer(
        office_db: str | Path, ward: Ward, queues: Queues, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Behind a slow receiver the gateway offers faster than the sender sends: the sender holds MAX_OFFERED records
    (each a citizen's) in memory; the offers beyond keep their place and are sent in turn, their records read back
    from the database (none waits out its lease)."""
    monkeypatch.setattr(webhooks, "MAX_OFFERED", 10)
    store = ResultStore(office_db, TerminalKeys({}, WardTrust.load(ward.ca_path)), instance="office-1")
    try:
        outcomes = store.ingest_many([(ward.terminal("T-01").token(seq), "t") for seq in range(1, 16)], float(NOW))
    finally:
        store.close()
    receiver = WebhookReceiver(keep_alive=True)
    sender = WebhookSender(queues([_endpoint(url=receiver.url)]), "office-1", clock=lambda: float(NOW))
    offers = [Offered(Delivery(n, "procedure", "result.stored", o.iss or "", o.jti or "", WARD, 0), o.record,
                      float(NOW) + sender.lease) for n, o in enumerate(outcomes) if o.record is not None]
    try:
        sender.offer(offers)
        while sender.round():
            pass
    finally:
        receiver.close()
        sender.stop()
    assert [d.webhook_id for d in receiver.deliveries] == [offer.delivery.jti for offer in offers]
    assert sender.stats.read_back == 5


def test_a_delivered_result_carries_todays_units_of_its_addresses(office_db: str | Path, ward: Ward,
                                                                     queues: Queues) -> None:
    """Issue 17 part 1 for the procedure software: the webhook's body maps each address of the document to today's
    units when it is sent (exact: one commune; split: every candidate), with the data's version, both for the
    record handed over by the storing instance and for one claimed from the database; a result without an address
    carries none, and one reduced by retention before its delivery is never sent (its citizen is gone)."""
    t1 = ward.terminal("T-01")
    store = ResultStore(office_db, TerminalKeys({}, WardTrust.load(ward.ca_path)), instance="office-1")
    try:
        outcomes = store.ingest_many([(t1.token(1, citizen=citizen_of("default")), "t"),
                                      (t1.token(2, citizen=citizen_of("young")), "t"),
                                      (t1.token(3, profile=ProcedureProfile.IDENTITY), "t"),
                                      (t1.token(4, citizen=citizen_of("young")), "t")], float(NOW))  # fmt: skip
        assert [outcome.status for outcome in outcomes] == ["stored"] * 4
        store.reduce([("T-01", outcomes[3].jti or "")], float(NOW) + 1)
    finally:
        store.close()
    receiver = WebhookReceiver(keep_alive=True)
    endpoints = [_endpoint(url=receiver.url)]
    queue, sender_queue = queues(endpoints), queues(endpoints)
    sender = WebhookSender(sender_queue, "office-1", clock=lambda: float(NOW))
    handed: list[Offered] = []
    queue.hand_over("office-1", sender.lease, handed.extend)
    keys = [(o.iss or "", o.jti or "", o.ward or "") for o in outcomes]
    records = {(o.iss or "", o.jti or ""): o.record for o in outcomes[:1] if o.record is not None}
    assert queue.enqueue(keys[:1], float(NOW), records=records) == 1, "handed over with the stored record"
    assert queue.enqueue(keys[1:], float(NOW)) == 3, "claimed from the database"
    try:
        sender.offer(handed)
        while sender.round():
            pass
    finally:
        receiver.close()
        sender.stop()
    bodies = {delivery.webhook_id: delivery.json()["data"] for delivery in receiver.deliveries}
    assert set(bodies) == {jti for _, jti, _ in keys[:3]}, "the reduced result is not sent"
    exact = bodies[keys[0][1]]["addresses"]
    assert set(exact) == {"place_of_residence"}
    assert exact["place_of_residence"]["confidence"] == "exact"
    assert exact["place_of_residence"]["commune"] == {"name": "Phường Sài Gòn", "code": "26740"}
    assert exact["place_of_residence"]["data_version"].startswith("vietnamadminunits ")
    split = bodies[keys[1][1]]["addresses"]["place_of_residence"]
    assert split["confidence"] == "split"
    assert split["commune"] is None
    assert sorted(unit["code"] for unit in split["candidates"]) == ["00352", "00364"]
    assert bodies[keys[2][1]]["addresses"] == {}
    assert queue.counts() == {DELIVERED: 3, DEAD: 1}


def _indexes(db: Database) -> set[str]:
    if db.dialect == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='webhook_deliveries'"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE tablename='webhook_deliveries'"
    return {str(name) for (name,) in db.execute(query)}


def test_a_queue_made_by_an_older_gateway_gets_the_pending_index_and_keeps_working(office_db: str | Path,
                                                                                   ward: Ward) -> None:  # fmt: skip
    """The table as the first gateways made it (unique endpoint-iss-jti, an index on every row's state): opened by
    this version it gains the index of the rows still to send, loses the old one, and queues and sends as before."""
    db = Database(office_db)
    t = db.types
    db.execute(f"""CREATE TABLE webhook_deliveries (
        id {t['id']}, endpoint TEXT NOT NULL, event TEXT NOT NULL, iss TEXT NOT NULL, jti TEXT NOT NULL,
        ward TEXT NOT NULL, state TEXT NOT NULL, attempts {t['int']} NOT NULL DEFAULT 0,
        next_attempt {t['real']} NOT NULL, lease_until {t['real']}, leased_by TEXT, last_status {t['int']},
        last_error TEXT, created {t['real']} NOT NULL, last_attempt {t['real']}, delivered {t['real']},
        UNIQUE (endpoint, iss, jti))""")
    db.execute("CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt)")
    db.execute("CREATE INDEX webhook_deliveries_by_jti ON webhook_deliveries (endpoint, jti)")
    db.close()
    results = _stored(office_db, ward, [ward.terminal("T-01").token(seq) for seq in (1, 2)])
    queue = WebhookQueue(Database(office_db), [_endpoint()])
    try:
        indexes = _indexes(queue._db)
        assert "webhook_deliveries_pending" in indexes
        assert "webhook_deliveries_due" not in indexes
        assert "webhook_deliveries_by_jti" in indexes  # the old unique key does not serve a lookup by jti
        assert queue.enqueue(results, NOW) == 2
        assert queue.enqueue(results, NOW) == 0, "queued once"
        taken = queue.claim("office-1", NOW)
        queue.delivered([(delivery, 200) for delivery in taken], NOW)
        assert queue.counts() == {DELIVERED: 2}
    finally:
        queue.close()


def test_a_new_queue_has_one_index_for_the_rows_to_send(queues: Queues) -> None:
    queue = queues([_endpoint()])
    indexes = _indexes(queue._db)
    assert "webhook_deliveries_pending" in indexes
    assert not {"webhook_deliveries_due", "webhook_deliveries_by_jti"} & indexes
