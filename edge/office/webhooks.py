"""Outbound webhooks to the procedure software, in the Standard Webhooks convention, from a durable queue.

Each stored result is POSTed once per configured endpoint (``[[webhooks]]`` in gateway.toml) whose wards include
the result's ward. The body is a :class:`~edge.office.contract.WebhookEvent` (``type`` ``result.stored``, the
stored :class:`~edge.office.contract.ResultRecord` in ``data``), and three headers sign it:

* ``webhook-id``: the result's ``jti``, the same on every attempt: the receiver's idempotency key;
* ``webhook-timestamp``: the attempt's time, Unix seconds;
* ``webhook-signature``: ``v1,`` + base64(HMAC-SHA256(secret, ``{webhook-id}.{webhook-timestamp}.{body}``)), the
  secret being the bytes behind ``whsec_`` + base64 (24 to 64 random bytes, one per endpoint).

Delivery guarantees: the queue (``webhook_deliveries``, in the gateway's database, SQLite or PostgreSQL) gets its
row before the broker's acknowledgement of the result, in the gateway's worker; a result that arrives again finds
its row (unique ``(endpoint, iss, jti)``) and is not queued twice. A delivery succeeds on a 2xx answer within
``timeout``; anything else (another status, a redirect, a timeout, a refused connection) is retried after a capped
exponential backoff with jitter (:func:`edge.backoff.jittered_delay`; a ``Retry-After`` is honoured up to the
cap), and after ``max_attempts`` tries, or at once on ``410 Gone``, the delivery becomes a dead letter, listed by
the API, which can send it again. Several gateway instances share the queue: each takes due rows under a lease
(``FOR UPDATE SKIP LOCKED`` in PostgreSQL), so one attempt is in flight per delivery; an instance dying mid-attempt
leaves the lease to expire and another tries again. So a receiver may see the same ``webhook-id`` more than once
(an answer lost on the way back; a round of up to 20 deliveries sent by an instance killed before it booked them),
never two ids for one result: de-duplicating by ``webhook-id`` gives each result exactly once.

Cost: one kept-alive connection per endpoint and sender; the instance that stored a result hands its delivery to
its own sender already leased, with the record (:meth:`WebhookQueue.hand_over`), so the common case costs the
queue's INSERT and one UPDATE per round of deliveries.

The ``jti`` must be usable as the id: 1 to 128 of ``[A-Za-z0-9_-]`` (terminals use a UUID; the spec forbids
``.``), and no other terminal's result may have used it for that endpoint, or the receiver would drop one of the
two as a duplicate. Such a result is queued straight as a dead letter saying why (visible in the API), never sent
under an id that could hide another result.

URLs are set by the ward's administrator in gateway.toml, never by an API client (no request forgery through
them); they must be ``https://`` (the body holds citizens' data), or ``http://`` to a loopback address.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import functools
import hashlib
import hmac
import http.client
import ipaddress
import logging
import random
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.backoff import jittered_delay
from edge.errors import ConfigError, EdgeError, SignatureError, StorageError
from edge.files import create_private
from edge.logsetup import log_unexpected
from edge.office.contract import RESULT_COLUMNS, RESULT_STORED, DeadLetter, ResultRecord, WebhookEvent
from edge.office.database import Database

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105  # the spec's marker, not a secret
#: The spec's bounds for a symmetric secret: at least 24 bytes, at most 512 bits.
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
#: Default tolerance of a receiver checking ``webhook-timestamp`` (the spec's example: 5 minutes).
TIMESTAMP_TOLERANCE = 300
WEBHOOK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
#: What a delivery may be: waiting for its next attempt, done, or given up (a dead letter).
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
#: Bytes of a receiver's answer read (and thrown away) before the connection is closed.
_MAX_ANSWER_BYTES = 64 * 1024
_MAX_ERROR_CHARS = 300
#: Rows one multi-row statement carries when a batch is queued.
_ROWS_PER_STATEMENT = 200
#: Deliveries a sender takes at once (its attempts are booked together).
_CLAIM_LIMIT = 20
#: Offers a sender keeps with their records (each a citizen's, photo included): behind a slow receiver the gateway
#: offers faster than they are sent; an offer beyond these keeps its place and lease, and its record is read back
#: from the database when its turn comes.
MAX_OFFERED = 1000
#: The column roles of a queued delivery's row (:meth:`Database.rows_source`).
_DELIVERY_ROW_KINDS = ("text", "text", "text", "text", "text", "text", "real", "text", "real", "real", "text")


# --- the signature -------------------------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh endpoint secret, as it is written to the secret file and given to the receiver."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_secret(text: str, *, key: str = "webhooks.secret_file") -> bytes:
    """The secret bytes of ``whsec_<base64>``; a :class:`ConfigError` for anything else (never quoting it)."""
    text = text.strip()
    if not text.startswith(SECRET_PREFIX):
        raise ConfigError(f"a webhook secret starts with {SECRET_PREFIX!r}", key=key)
    try:
        secret = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("a webhook secret is whsec_ followed by base64", key=key) from None
    if not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
        raise ConfigError(f"a webhook secret holds {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, not {len(secret)}",
                          key=key)
    return secret


def load_secret(path: Path, *, key: str = "webhooks.secret_file") -> bytes:
    try:
        return parse_secret(path.read_text(encoding="ascii"), key=key)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the webhook secret {path}: {type(exc).__name__}", key=key) from None


def write_secret(path: Path) -> str:
    """A new secret in ``path`` (created 0600, never replaced: a receiver already holds the old one)."""
    if path.exists():
        raise ConfigError(f"{path} exists; a receiver may hold that secret", key="--out")
    secret = new_secret()
    create_private(path)
    path.write_text(secret + "\n", encoding="ascii")
    return secret


def signature(secret: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{id}.{timestamp}.{body}`` (the Standard Webhooks symmetric scheme)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode("ascii")


def signed_headers(secret: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, webhook_id, timestamp, body),
            "content-type": "application/json"}  # fmt: skip


def verify_webhook(secret: bytes, headers: Mapping[str, str], body: bytes, *, now: int,
                   tolerance: int = TIMESTAMP_TOLERANCE) -> str:  # fmt: skip
    """What a receiver does: returns the ``webhook-id`` when one of the signatures holds and the timestamp is within
    ``tolerance`` of ``now``; :class:`SignatureError` otherwise. (The receiver then drops an id it has seen.)"""
    lower = {name.lower(): value for name, value in headers.items()}
    webhook_id, stamp, signatures = (lower.get(name, "") for name in ("webhook-id", "webhook-timestamp",
                                                                      "webhook-signature"))
    if not (webhook_id and stamp.isascii() and stamp.isdigit() and signatures):
        raise SignatureError("webhook: missing or malformed webhook-id, webhook-timestamp or webhook-signature")
    if abs(now - int(stamp)) > tolerance:
        raise SignatureError(f"webhook: timestamp {int(stamp) - now:+d} s from now, beyond {tolerance} s")
    expected = signature(secret, webhook_id, int(stamp), body).encode()
    if not any(hmac.compare_digest(expected, given.encode()) for given in signatures.split(" ")):
        raise SignatureError("webhook: no signature matches")
    return webhook_id


# --- endpoints -----------------------------------------------------------------------------------------------------


def check_url(url: str, *, key: str = "webhooks.url") -> str:
    """``url`` if it is https, or http to a loopback address; a :class:`ConfigError` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError("a webhook URL is https://host/path", key=key)
    if parts.scheme == "http":
        host = parts.hostname
        loopback = host == "localhost"
        with contextlib.suppress(ValueError):  # a name, not an address
            loopback = loopback or ipaddress.ip_address(host).is_loopback
        if not loopback:
            raise ConfigError("a webhook carries citizens' data: https:// (http:// only to a loopback address)",
                              key=key)
    return url


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One receiver: where, its secret, the wards whose results it gets (``+``: every ward), and its retry pacing."""

    name: str
    url: str
    secret: bytes
    wards: frozenset[str]
    max_attempts: int = 25
    retry_first: float = 5.0
    retry_cap: float = 7200.0
    timeout: float = 15.0
    ca: Path | None = None  # the receiver's CA for https (default: the system's)

    def takes(self, ward: str) -> bool:
        return "+" in self.wards or ward in self.wards


# --- the queue -----------------------------------------------------------------------------------------------------


def _schema(db: Database) -> list[str]:
    t = db.types
    return [
        f"""CREATE TABLE IF NOT EXISTS webhook_deliveries (
            id {t['id']}, endpoint TEXT NOT NULL, event TEXT NOT NULL, iss TEXT NOT NULL, jti TEXT NOT NULL,
            ward TEXT NOT NULL, state TEXT NOT NULL, attempts {t['int']} NOT NULL DEFAULT 0,
            next_attempt {t['real']} NOT NULL, lease_until {t['real']}, leased_by TEXT, last_status {t['int']},
            last_error TEXT, created {t['real']} NOT NULL, last_attempt {t['real']}, delivered {t['real']},
            UNIQUE (endpoint, jti, iss))""",
        # Only the rows still to send: a delivered row leaves this index, so it stays the size of the backlog while
        # the table grows by every result, and booking a delivery writes two indexes, not four (the unique key,
        # ordered endpoint-jti-iss, also serves the lookup by jti). A database made before keeps its extra index
        # on (endpoint, jti).
        f"CREATE INDEX IF NOT EXISTS webhook_deliveries_pending ON webhook_deliveries (next_attempt) "
        f"WHERE state = '{PENDING}'",
        "DROP INDEX IF EXISTS webhook_deliveries_due",
    ]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One queued delivery, as a sender took it."""

    id: int
    endpoint: str
    event: str
    iss: str
    jti: str
    ward: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Offered:
    """A delivery handed to the sender of the process that queued it, already leased to it until ``lease_until``,
    with the stored result it carries (:meth:`WebhookQueue.hand_over`)."""

    delivery: Delivery
    record: ResultRecord | None  # None: not kept in memory (:data:`MAX_OFFERED`), read back when sent
    lease_until: float


_DEAD_COLUMNS = "id, endpoint, event, iss, jti, ward, attempts, last_status, last_error, created, last_attempt"


class WebhookQueue:
    """The ``webhook_deliveries`` table: what the gateway queues, what a sender takes, tries, finishes or gives up."""

    def __init__(self, db: Database, endpoints: Sequence[Endpoint]) -> None:
        self._db = db
        self.endpoints = {endpoint.name: endpoint for endpoint in endpoints}
        #: Called after :meth:`enqueue` added rows (a sender in this process wakes up: :meth:`WebhookSender.wake`).
        self.on_enqueued: Callable[[], None] | None = None
        self._hand_over: tuple[str, float, Callable[[Sequence[Offered]], None]] | None = None
        db.create_schema(_schema(db), {})

    def hand_over(self, instance: str, lease: float, offer: Callable[[Sequence[Offered]], None]) -> None:
        """From now on, rows :meth:`enqueue` adds for a result whose record it is given are inserted leased to
        ``instance`` for ``lease`` seconds and ``offer``-ed to its sender with that record: the sender POSTs them
        without claiming them or reading the result back (two statements and a parse per delivery saved; the
        gateway has just stored the result). Should the process die first, the lease runs out and any instance's
        sender claims them, as after a crash mid-attempt."""
        self._hand_over = (instance, lease, offer)

    def enqueue(self, results: Iterable[tuple[str, str, str]], now: float, *,
                records: Mapping[tuple[str, str], ResultRecord] | None = None) -> int:  # fmt: skip
        """Queue each stored result ``(iss, jti, ward)`` for every endpoint taking its ward, once (a result that
        arrived again finds its row); returns how many rows are new. ``records``: results just stored, by
        ``(iss, jti)``, handed over with their rows (:meth:`hand_over`)."""
        wanted = [(endpoint, iss, jti, ward) for iss, jti, ward in results
                  for endpoint in self.endpoints.values() if endpoint.takes(ward)]  # fmt: skip
        if not wanted:
            return 0
        added: list[tuple[Any, ...]] = []
        records = records if records is not None and self._hand_over is not None else {}
        holder, lease = (self._hand_over[0], now + self._hand_over[1]) if self._hand_over is not None else (None, None)
        wanted.sort(key=lambda row: (row[0].name, row[1], row[2]))
        with self._db.transaction():
            # A batch in a few statements (the gateway queues before it acknowledges: this is on its hot path): the
            # terminals each jti is queued for already, then the rows, several per INSERT.
            users: dict[tuple[str, str], set[str]] = {}  # (endpoint, jti) -> the terminals whose result has it
            for name in sorted({endpoint.name for endpoint, *_ in wanted}):
                jtis = sorted({jti for endpoint, _, jti, _ in wanted if endpoint.name == name})
                for start in range(0, len(jtis), _ROWS_PER_STATEMENT):
                    among, params = self._db.in_list("jti", jtis[start:start + _ROWS_PER_STATEMENT])
                    for jti, iss in self._db.execute(
                            f"SELECT jti, iss FROM webhook_deliveries WHERE endpoint=? AND {among}",  # noqa: S608
                            (name, *params)):  # placeholders only
                        users.setdefault((name, str(jti)), set()).add(str(iss))
            rows: list[tuple[Any, ...]] = []
            for endpoint, iss, jti, ward in wanted:
                state, error = PENDING, None
                if not WEBHOOK_ID_PATTERN.match(jti):
                    state, error = DEAD, "jti is not usable as webhook-id (1-128 of A-Z a-z 0-9 _ -): not sent"
                elif users.get((endpoint.name, jti), set()) - {iss}:
                    state, error = DEAD, ("another terminal's result used this jti: sent under it as webhook-id, "
                                          "the receiver would drop one of the two; not sent")
                users.setdefault((endpoint.name, jti), set()).add(iss)
                handed = state == PENDING and (iss, jti) in records
                rows.append((endpoint.name, RESULT_STORED, iss, jti, ward, state, now, error, now,
                             lease if handed else None, holder if handed else None))
            for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                source, params = self._db.rows_source(_DELIVERY_ROW_KINDS, rows[start:start + _ROWS_PER_STATEMENT])
                added += self._db.execute(
                    "INSERT INTO webhook_deliveries (endpoint, event, iss, jti, ward, state, next_attempt, "
                    f"last_error, created, lease_until, leased_by) {source} "  # placeholders only
                    "ON CONFLICT (endpoint, iss, jti) DO NOTHING RETURNING id, endpoint, iss, jti, ward, leased_by",
                    params).fetchall()
        offered = [Offered(Delivery(int(row[0]), str(row[1]), RESULT_STORED, str(row[2]), str(row[3]), str(row[4]), 0),
                           records[(str(row[2]), str(row[3]))], float(lease)) for row in added
                   if row[5] is not None and lease is not None]  # fmt: skip
        if offered and self._hand_over is not None:
            self._hand_over[2](offered)
        if added and self.on_enqueued is not None:
            self.on_enqueued()
        return len(added)

    def claim(self, instance: str, now: float, *, limit: int = _CLAIM_LIMIT, lease: float = 60.0) -> list[Delivery]:
        """Take up to ``limit`` due deliveries for ``lease`` seconds (another instance skips them meanwhile)."""
        skip = " SKIP LOCKED" if self._db.dialect == "postgresql" else ""
        names = tuple(self.endpoints)
        if not names:
            return []
        marks = ", ".join("?" for _ in names)
        with self._db.transaction():
            rows = list(self._db.execute(
                "SELECT id, endpoint, event, iss, jti, ward, attempts FROM webhook_deliveries "  # noqa: S608
                f"WHERE state=? AND next_attempt <= ? AND endpoint IN ({marks}) "  # placeholders only
                "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY next_attempt, id "
                f"LIMIT ?{self._db.for_update}{skip}", (PENDING, now, *names, now, limit)))
            if rows:  # one statement for the lot: the database's share of a delivery was most of its cost
                among, params = self._db.in_list("id", [row[0] for row in rows])
                self._db.execute(f"UPDATE webhook_deliveries SET lease_until=?, leased_by=? WHERE {among}",  # noqa: S608
                                 (now + lease, instance, *params))
        return [Delivery(*row) for row in rows]

    def delivered(self, answered: Sequence[tuple[Delivery, int]], now: float) -> None:
        """Book deliveries the receiver answered with a 2xx ``status``: one statement per status."""
        by_status: dict[int, list[int]] = {}
        for delivery, status in answered:
            by_status.setdefault(status, []).append(delivery.id)
        with self._db.transaction():
            for status, ids in sorted(by_status.items()):
                for start in range(0, len(ids), _ROWS_PER_STATEMENT):
                    among, params = self._db.in_list("id", ids[start:start + _ROWS_PER_STATEMENT])
                    self._db.execute(
                        "UPDATE webhook_deliveries SET state=?, attempts=attempts+1, delivered=?, "  # noqa: S608
                        f"last_attempt=?, last_status=?, last_error=NULL, lease_until=NULL WHERE state=? AND {among}",
                        (DELIVERED, now, now, status, PENDING, *params))

    def failed(self, delivery: Delivery, now: float, *, status: int | None, error: str, retry_after: float | None,
               rng: random.Random, gone: bool = False) -> str:  # fmt: skip
        """Book a failed attempt: the next one after the backoff, or a dead letter; returns the new state."""
        endpoint = self.endpoints[delivery.endpoint]
        attempts = delivery.attempts + 1
        dead = gone or attempts >= endpoint.max_attempts
        delay = jittered_delay(attempts - 1, endpoint.retry_first, endpoint.retry_cap, rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, endpoint.retry_cap))
        state = DEAD if dead else PENDING
        self._db.execute("UPDATE webhook_deliveries SET state=?, attempts=?, next_attempt=?, last_attempt=?, "
                         "last_status=?, last_error=?, lease_until=NULL WHERE id=? AND state=?",
                         (state, attempts, now + delay, now, status, error[:_MAX_ERROR_CHARS], delivery.id, PENDING))
        return state

    def dead_letters(self, wards: frozenset[str] | None, *, endpoint: str | None = None, after: int = 0,
                     limit: int = 50) -> list[DeadLetter]:  # fmt: skip
        """Dead letters of ``wards`` (None: every ward), by id, after the id ``after``."""
        clause, params = _ward_clause(wards)
        rows = self._db.execute(
            f"SELECT {_DEAD_COLUMNS} FROM webhook_deliveries WHERE state=? AND id > ? "  # noqa: S608
            f"AND (CAST(? AS TEXT) IS NULL OR endpoint = ?){clause} ORDER BY id LIMIT ?",  # fixed fragments only
            (DEAD, after, endpoint, endpoint, *params, limit))
        return [DeadLetter(id=r[0], endpoint=r[1], event=r[2], terminal=r[3], jti=r[4], ward=r[5], attempts=r[6],
                           last_status=r[7], last_error=r[8], created=r[9], last_attempt=r[10]) for r in rows]

    def retry(self, delivery_id: int, wards: frozenset[str] | None, now: float) -> bool:
        """Send a dead letter of ``wards`` again, from a first attempt now; False when there is none such (or it
        can never be sent: its id is refused, or its endpoint is configured no more, whose rows no sender claims)."""
        clause, params = _ward_clause(wards)
        with self._db.transaction():
            row = self._db.execute(
                f"SELECT jti, iss, endpoint FROM webhook_deliveries WHERE id=? AND state=?{clause}",  # noqa: S608
                (delivery_id, DEAD, *params)).fetchone()
            if row is None or row[2] not in self.endpoints or not WEBHOOK_ID_PATTERN.match(row[0]) or self._db.execute(
                    "SELECT 1 FROM webhook_deliveries WHERE endpoint=? AND jti=? AND iss<>?",
                    (row[2], row[0], row[1])).fetchone() is not None:
                return False
            self._db.execute("UPDATE webhook_deliveries SET state=?, attempts=0, next_attempt=?, lease_until=NULL "
                             "WHERE id=?", (PENDING, now, delivery_id))
        return True

    def close(self) -> None:
        self._db.close()

    def counts(self) -> dict[str, int]:
        return {state: count for state, count in
                self._db.execute("SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state")}

    def record(self, iss: str, jti: str) -> ResultRecord | None:
        return self.records([(iss, jti)]).get((iss, jti))

    def records(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ResultRecord]:
        """The stored results ``(iss, jti)`` (one query for a round's deliveries); a missing one is absent."""
        if not keys:
            return {}
        source, params = self._db.rows_source(("text", "text"), keys)
        rows = self._db.execute(f"SELECT {RESULT_COLUMNS} FROM results WHERE reduced IS NULL AND (iss, jti) IN "  # noqa: S608
                                f"({source})", params)
        found = (ResultRecord.from_row(tuple(row)) for row in rows)
        return {(record.terminal, record.jti): record for record in found}


def _ward_clause(wards: frozenset[str] | None) -> tuple[str, tuple[str, ...]]:
    if wards is None:
        return "", ()
    if not wards:
        return " AND 1=0", ()
    return f" AND ward IN ({', '.join('?' for _ in wards)})", tuple(sorted(wards))


# --- the sender ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    error: str = ""
    retry_after: float | None = None


def _retry_after(value: str | None) -> float | None:
    text = (value or "").strip()
    if not (text.isascii() and text.isdigit()):  # headers arrive latin-1 decoded: '²' is a digit to isdigit, not int
        return None  # an HTTP date is not worth parsing here: the backoff applies
    return float(min(int(text), 10**7))


def _cut_off(endpoint: Endpoint) -> Answer:
    """An attempt the watchdog ended: never a delivery, whatever part of an answer came before."""
    return Answer(None, f"no complete answer within {endpoint.timeout * ATTEMPT_TIMEOUTS:g} s")


@functools.lru_cache(maxsize=64)
def _tls_context(ca: Path | None) -> ssl.SSLContext:
    """One TLS context per receiver CA, made once: loading a CA bundle takes tens of ms, which per attempt capped a
    sender at ~20 deliveries/s (bench/fleet.py)."""
    return ssl.create_default_context(cafile=str(ca) if ca else None)


#: An attempt ends after this many of its endpoint's ``timeout`` in all, however the receiver trickles its answer.
ATTEMPT_TIMEOUTS = 2
_WATCHDOG_EVERY = 0.2
#: Failures of a kept-alive connection that the receiver closed while it was idle: the request never reached it.
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class WebhookClient:
    """POSTs to the endpoints over one kept-alive HTTP/1.1 connection each (a new TCP and TLS handshake per delivery
    cost more than the delivery; bench/fleet.py). Used by one thread. Redirects are not followed: a 3xx is a failed
    delivery (the spec: update the URL instead).

    ``timeout`` bounds each socket operation; a receiver that answers a byte at a time would still hold the sender
    for ever, so a watchdog also ends any attempt after :data:`ATTEMPT_TIMEOUTS` timeouts in all."""

    def __init__(self) -> None:
        self._connections: dict[str, http.client.HTTPConnection] = {}
        self._guard = threading.Lock()
        self._watched: tuple[http.client.HTTPConnection, float] | None = None  # the attempt running, its deadline
        self._overran = False
        self._watchdog: threading.Thread | None = None
        self._closed = threading.Event()

    def post(self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str]) -> Answer:
        """One attempt: POST ``body``; a 2xx :class:`Answer`, or what went wrong (never raises for the network). A
        kept connection the receiver had closed is replaced once (the POST never reached it; a receiver that saw it
        twice would drop the second by ``webhook-id``)."""
        reused = endpoint.name in self._connections
        self._overran = False  # the last attempt's cut-off is not this one's (no attempt is watched now)
        try:
            return self._post(endpoint, body, headers)
        except _STALE_CONNECTION as exc:
            self.close(endpoint.name)
            if self._overran or not reused:
                return self._failure(endpoint, exc)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close(endpoint.name)
            return self._failure(endpoint, exc)
        try:
            return self._post(endpoint, body, headers)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close(endpoint.name)
            return self._failure(endpoint, exc)

    def _failure(self, endpoint: Endpoint, exc: Exception) -> Answer:
        if self._overran:
            return _cut_off(endpoint)
        return Answer(None, f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS])

    def _post(self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str]) -> Answer:
        connection = self._connection(endpoint)
        parts = urlsplit(endpoint.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._watch(connection, endpoint.timeout * ATTEMPT_TIMEOUTS)
        try:
            connection.request("POST", target, body=body, headers={"Content-Type": "application/json", **headers})
            response = connection.getresponse()
            response.read(_MAX_ANSWER_BYTES)
        finally:
            with self._guard:
                self._watched = None
        if self._overran:  # cut off mid-answer: http.client takes the end of the socket for the end of the headers
            self.close(endpoint.name)
            return _cut_off(endpoint)
        if response.will_close or not response.isclosed():  # the receiver closes, or said more than we read
            self.close(endpoint.name)
        if 200 <= response.status < 300:
            return Answer(response.status)
        return Answer(response.status, f"HTTP {response.status}", _retry_after(response.getheader("Retry-After")))

    def _watch(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        with self._guard:
            self._watched, self._overran = (connection, time.monotonic() + seconds), False
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._enforce, name="webhook-deadline", daemon=True)
            self._watchdog.start()

    def _enforce(self) -> None:
        """Shut the socket of an attempt past its deadline: its blocked read or write ends at once."""
        while not self._closed.wait(_WATCHDOG_EVERY):
            with self._guard:
                if self._watched is None or time.monotonic() < self._watched[1]:
                    continue
                connection, self._watched, self._overran = self._watched[0], None, True
                sock = connection.sock  # read once: http.client may close it (None) on the sender's thread
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def _connection(self, endpoint: Endpoint) -> http.client.HTTPConnection:
        connection = self._connections.get(endpoint.name)
        if connection is None:
            parts = urlsplit(endpoint.url)
            host, port = parts.hostname or "", parts.port
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(host, port, timeout=endpoint.timeout,
                                                         context=_tls_context(endpoint.ca))
            else:
                connection = http.client.HTTPConnection(host, port, timeout=endpoint.timeout)
            self._connections[endpoint.name] = connection
        return connection

    def close(self, name: str | None = None) -> None:
        """Close the connection to endpoint ``name`` (None: every connection, and the watchdog ends)."""
        if name is None:
            self._closed.set()
        for key in [name] if name is not None else list(self._connections):
            connection = self._connections.pop(key, None) if key is not None else None
            if connection is not None:
                connection.close()


@dataclass
class SenderStats:
    """What the sender did (its thread writes, tests and the log read)."""

    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    storage_retries: int = 0
    read_back: int = 0  # offered records not kept in memory, read from the database when sent


class WebhookSender:
    """A thread that takes due deliveries, signs and POSTs each, and books the answer. ``wake()`` after queueing
    starts a round at once; otherwise it looks every ``poll`` seconds (other instances queue too)."""

    def __init__(self, queue: WebhookQueue, instance: str, *, poll: float = 1.0,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 send: Callable[[Endpoint, bytes, Mapping[str, str]], Answer] | None = None) -> None:  # fmt: skip
        """``send``: how one attempt goes out (default: a :class:`WebhookClient` of this sender's own)."""
        self.queue = queue
        self.stats = SenderStats()
        self._instance = instance
        self._poll = poll
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._client = WebhookClient()
        self._send = send if send is not None else self._client.post
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"webhooks-{instance}", daemon=True)
        self._offered: collections.deque[Offered] = collections.deque()
        self._offered_lock = threading.Lock()
        self._records_held = 0  # offers in ``_offered`` holding their record
        self._next_claim = 0.0  # when the queue is next asked for due deliveries (:meth:`round`)
        queue.on_enqueued = self.wake

    @property
    def lease(self) -> float:
        """How long a delivery is taken for: two timeouts and a margin (another instance skips it meanwhile)."""
        endpoints = self.queue.endpoints.values()
        return max(endpoint.timeout for endpoint in endpoints) * 2 + 5 if endpoints else 60.0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def offer(self, offered: Sequence[Offered]) -> None:
        """Deliveries another connection of this process queued, leased to this sender (any thread may call)."""
        with self._offered_lock:
            for offer in offered:
                if offer.record is not None and self._records_held >= MAX_OFFERED:
                    offer = replace(offer, record=None)
                self._records_held += offer.record is not None
                self._offered.append(offer)
        self._wake.set()

    def stop(self, timeout: float = 20.0) -> None:
        self._halt.set()
        self._wake.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._client.close()

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                busy = self.round()
            except StorageError as exc:
                self.stats.storage_retries += 1
                log.warning("webhook queue not reachable (%s); retry in %.1f s", exc, self._poll)
                busy = False
            except Exception as exc:  # noqa: BLE001  # the thread boundary: nothing a delivery holds ends it
                log_unexpected(log, "webhook round failed", exc)
                busy = False
            if not busy:
                self._wake.wait(self._poll)
                self._wake.clear()

    def round(self) -> bool:
        """One batch of due deliveries; True when there was any (look again at once)."""
        taken, records = self._take_offered()
        missing = sorted({(d.iss, d.jti) for d in taken} - records.keys())
        if missing:
            records.update(self.queue.records(missing))
            self.stats.read_back += len(missing)
        if not taken:
            now = self._clock()
            if now < self._next_claim:
                return False
            taken = self.queue.claim(self._instance, now, lease=self.lease)
            records = self.queue.records(sorted({(delivery.iss, delivery.jti) for delivery in taken}))
            # The queue is asked again at once only after a full batch (more may be due); else at the next poll:
            # this process's own results come as offers, and asking after each was a transaction per result.
            self._next_claim = now if len(taken) >= _CLAIM_LIMIT else now + self._poll
        delivered: list[tuple[Delivery, int]] = []
        try:
            for delivery in taken:
                if self._halt.is_set():
                    break
                status = self._attempt(delivery, records.get((delivery.iss, delivery.jti)))
                if status is not None:
                    delivered.append((delivery, status))
        finally:  # the round's successes booked together (a commit each was most of the database's share)
            if delivered:
                self.queue.delivered(delivered, self._clock())
                self.stats.delivered += len(delivered)
        return bool(taken)

    def _take_offered(self, limit: int = _CLAIM_LIMIT) -> tuple[list[Delivery], dict[tuple[str, str], ResultRecord]]:
        """Up to ``limit`` offered deliveries whose lease leaves time for an attempt; one whose lease is (nearly)
        over is dropped here, and claimed from the queue like any other (never sent twice on one lease)."""
        taken: list[Delivery] = []
        records: dict[tuple[str, str], ResultRecord] = {}
        now = self._clock()
        margin = self.lease / 2
        with self._offered_lock:
            while self._offered and len(taken) < limit:
                offered = self._offered.popleft()
                self._records_held -= offered.record is not None
                if offered.lease_until - now < margin:
                    continue
                taken.append(offered.delivery)
                if offered.record is not None:
                    records[(offered.delivery.iss, offered.delivery.jti)] = offered.record
        return taken, records

    def _attempt(self, delivery: Delivery, record: ResultRecord | None) -> int | None:
        """One attempt; the 2xx status when it was delivered (booked by the caller), None when booked as failed."""
        endpoint = self.queue.endpoints[delivery.endpoint]
        now = self._clock()
        if record is None:  # the result row is gone (a database restored from an older backup)
            self.queue.failed(delivery, now, status=None, error="the stored result is missing", retry_after=None,
                              rng=self._rng, gone=True)
            self.stats.dead += 1
            return None
        body = WebhookEvent.stored(record).model_dump_json().encode()
        headers = signed_headers(endpoint.secret, delivery.jti, int(now), body)
        self.stats.attempts += 1
        try:
            answer = self._send(endpoint, body, headers)
        except EdgeError as exc:
            answer = Answer(None, str(exc)[:_MAX_ERROR_CHARS])
        now = self._clock()
        if answer.status is not None and 200 <= answer.status < 300:
            return answer.status
        self.stats.failed += 1
        state = self.queue.failed(delivery, now, status=answer.status, error=answer.error or f"HTTP {answer.status}",
                                  retry_after=answer.retry_after, rng=self._rng, gone=answer.status == 410)
        if state == DEAD:
            self.stats.dead += 1
            log.warning("webhook %s to %s: dead letter after %d attempt(s) (%s)", delivery.id, endpoint.name,
                        delivery.attempts + 1, answer.error or answer.status)
        else:
            log.info("webhook %s to %s: attempt %d failed (%s); retried later", delivery.id, endpoint.name,
                     delivery.attempts + 1, answer.error or answer.status)
        return None
