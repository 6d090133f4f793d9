"""Server push for the pages: a result, a terminal's status or its progress, to every page watching that terminal.

A terminal is named by its ward and its id, never by its id alone: ids are chosen per ward ("T-01" in many wards)
and one database may hold several wards' results (a province's PostgreSQL behind many wards' gateways), so every
push carries its ward and a page's subscription names the wards its server serves as well as its terminals.

Why this shape: a result must reach the officer's screen within a second of arriving, whichever gateway instance
stored it. One thread reads the store by cursor (``results.received``, indexed) and hands what is new to the pages'
subscriptions (one asyncio queue each, filled from the thread with ``call_soon_threadsafe``). It reads when this
process's gateway says it stored something (:meth:`Feed.notify_result`: the push takes milliseconds) and otherwise
every :data:`POLL_INTERVAL` seconds, which picks up results another instance stored (several instances share the
results round-robin) at the cost of one indexed query per half second, on SQLite and PostgreSQL alike. PostgreSQL's
LISTEN/NOTIFY would save that query but needs a connection of its own per instance and a second code path for
SQLite; an in-process pub/sub alone would miss the other instances' results. The cursor reads back
:data:`OVERLAP` seconds (and skips what it has seen), so a result whose transaction committed after a later one's is
not missed.

Statuses and events need no cursor: every instance subscribes to all of them (not shared), so each pushes them to
its own pages as they come. A terminal event is pushed only as the whitelisted fields below: events carry no
personal data by design, and this keeps it so whatever a terminal sends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.errors import EdgeError
from edge.logsetup import log_unexpected
from edge.office.database import Database
from edge.office.web.records import arrived_since
from edge.protocol.bounded_json import loads_bounded

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5
OVERLAP = 5.0
QUEUE_LIMIT = 256
#: Event fields a page may see (names, reasons and ids, never data read from a card).
EVENT_FIELDS = ("event", "detail", "request_id", "jti", "reason", "cmd", "state")
_MAX_EVENT_BYTES = 4096

Kind = Literal["result", "status", "progress", "resync", "closing"]


@dataclass(frozen=True, slots=True)
class Push:
    """About terminal ``terminal`` of ward ``ward``; both empty: about no terminal (every page takes it). A result
    stored before ``results`` had its ward column has ward "" and reaches only the pages of every ward."""

    kind: Kind
    ward: str
    terminal: str
    data: dict[str, Any] = field(default_factory=dict)


class Subscription:
    """What one page receives, in its own event loop: pushes about ``counters`` (exact ``(ward, terminal)`` pairs), or
    with ``counters`` None about every terminal of ``wards`` (None: every ward)."""

    def __init__(self, feed: Feed, loop: asyncio.AbstractEventLoop, counters: frozenset[tuple[str, str]] | None,
                 wards: frozenset[str] | None) -> None:  # fmt: skip
        self.counters = counters
        self.wards = wards
        self.queue: asyncio.Queue[Push] = asyncio.Queue(QUEUE_LIMIT)
        self._loop = loop
        self._feed = feed

    def wants(self, push: Push) -> bool:
        if not push.ward and not push.terminal:
            return True
        if self.counters is not None:
            return (push.ward, push.terminal) in self.counters
        return self.wards is None or push.ward in self.wards

    def offer(self, push: Push) -> bool:
        """Hand ``push`` over from any thread; False once the page's loop is gone."""
        try:
            self._loop.call_soon_threadsafe(self._put, push)
        except RuntimeError:  # the loop closed: the page went away
            return False
        return True

    def _put(self, push: Push) -> None:
        try:
            self.queue.put_nowait(push)
        except asyncio.QueueFull:  # a page that stopped reading: it reloads everything once it reads again
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(Push("resync", push.ward, push.terminal))

    def close(self) -> None:
        self._feed.unsubscribe(self)


class Feed:
    def __init__(self, db: Database, *, poll_interval: float = POLL_INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._db = db
        self._poll_interval = poll_interval
        self._clock = clock
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._cursor = clock()
        self._seen: dict[tuple[str, str], float] = {}
        self._thread = threading.Thread(target=self._run, name="pages-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop reading, and end every page's stream (the pages reconnect to whichever server comes back)."""
        self._halt.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.offer(Push("closing", "", ""))

    # --- subscriptions -------------------------------------------------------------------------------------------

    def subscribe(self, counters: frozenset[tuple[str, str]] | None, *, wards: frozenset[str] | None) -> Subscription:
        """A subscription in the calling coroutine's loop: ``counters`` (``(ward, terminal)``: ids are unique only
        within a ward), or with None every terminal of ``wards`` (None: every ward)."""
        subscription = Subscription(self, asyncio.get_running_loop(), counters, wards)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    def _push(self, push: Push) -> None:
        with self._lock:
            targets = [s for s in self._subscriptions if s.wants(push)]
        gone = [s for s in targets if not s.offer(push)]
        for subscription in gone:
            self.unsubscribe(subscription)

    # --- what the gateway reports (its threads) ------------------------------------------------------------------

    def notify_result(self) -> None:
        """This process stored a result: read the store now rather than at the next poll."""
        self._wake.set()

    def notify_status(self, ward: str, terminal: str) -> None:
        """A terminal's retained status was kept: push its state (the fleet and the counter's progress)."""
        row = self._db.execute("SELECT state, status FROM terminal_status WHERE ward=? AND iss=?",
                               (ward, terminal)).fetchone()  # fmt: skip
        if row is None:
            return
        status = json.loads(row[1])
        self._push(Push("status", ward, terminal, {"state": row[0], "terminal_state": status.get("terminal_state"),
                                             "indicator": status.get("indicator")}))

    def publish_event(self, ward: str, terminal: str, payload: bytes) -> None:
        """A terminal's ``/event``: its whitelisted fields to the pages watching it."""
        try:
            event = loads_bounded(payload, what="event", max_bytes=_MAX_EVENT_BYTES)
        except EdgeError:
            return
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            return
        data = {name: str(event[name])[:200] for name in EVENT_FIELDS if event.get(name) is not None}
        self._push(Push("progress", ward, terminal, data))

    # --- the cursor over stored results --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._halt.is_set():
            self._wake.wait(self._poll_interval)
            self._wake.clear()
            if self._halt.is_set():
                return
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001  # a database away for a moment: the next poll catches up
                log_unexpected(log, "reading new results for the pages failed", exc)

    def poll(self) -> int:
        """Push every result stored since the last poll (by any instance); returns how many."""
        pushed = 0
        for ward, iss, jti, received in arrived_since(self._db, self._cursor - OVERLAP):
            if (iss, jti) in self._seen:  # the results' key: a jti is never stored twice for one terminal id
                continue
            self._seen[(iss, jti)] = received
            self._cursor = max(self._cursor, received)
            self._push(Push("result", ward, iss, {"iss": iss, "jti": jti, "received": received}))
            pushed += 1
        horizon = self._cursor - 2 * OVERLAP
        for key in [key for key, at in self._seen.items() if at < horizon]:
            del self._seen[key]
        return pushed
