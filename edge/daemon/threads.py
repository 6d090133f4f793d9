"""What the terminal's threads share: the loop's queue and what may be posted to it, counters, readiness, the last
error, ``/event``, and the guard every thread body runs under.

Only typed items go to the loop: the state machine's events, an office command as it arrived, and news that the
delivery facts (link, outbox, disk) may have changed. The loop alone acts on them (:mod:`edge.daemon.loop`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.daemon.health import Liveness
from edge.daemon.state import Event
from edge.logsetup import log_unexpected

log = logging.getLogger(__name__)

#: How long a thread waits for work before it looks around (the loop then steps a Tick so deadlines fire).
TICK_SECONDS = 0.25
#: The threads that must each have run once before the terminal says it is ready.
READY_PARTS = frozenset({"loop", "reader", "camera", "worker"})


@dataclass(frozen=True, slots=True)
class CommandArrived:
    """A ``/cmd`` payload from paho's thread and the monotonic time it arrived (the clock projects a signed time
    from it)."""

    payload: bytes
    arrived: float


@dataclass(frozen=True, slots=True)
class DeliveryNews:
    """The link, the outbox or the disk may have changed: the loop reads the facts and hands them to the machine."""


LoopItem = Event | CommandArrived | DeliveryNews


class Shared:
    """The terminal's shared parts (thread-safe): ``monotonic`` is the injected clock every thread reads."""

    def __init__(self, monotonic: Callable[[], float], liveness: Liveness) -> None:
        self.monotonic = monotonic
        self.liveness = liveness
        self.stopping = threading.Event()
        self.loop_items: queue.Queue[LoopItem] = queue.Queue()
        #: The last fault worth showing in the status (``read_failed: ...``, ``storage_full``, ...).
        self.last_error = ""
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._ready = threading.Event()
        self._ready_parts: set[str] = set()
        self._publish_event: Callable[[dict[str, Any]], None] | None = None

    def post(self, item: LoopItem) -> None:
        self.loop_items.put(item)

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._stats[name] += amount

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def mark_ready(self, part: str) -> None:
        with self._lock:
            self._ready_parts.add(part)
            if self._ready_parts >= READY_PARTS:
                self._ready.set()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def events_to(self, publish: Callable[[dict[str, Any]], None]) -> None:
        """Where :meth:`event` sends (the publisher's ``/event``); nothing is sent before it is set."""
        self._publish_event = publish

    def event(self, payload: dict[str, Any]) -> None:
        """An event for the office: never personal data."""
        if self._publish_event is not None:
            self._publish_event(payload)

    def guarded(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        """A thread body that logs an unexpected death; the watchdog then notices the silence."""

        def run() -> None:
            try:
                target()
            except Exception as exc:  # noqa: BLE001  # any bug: logged, and the silent thread withholds the watchdog
                log_unexpected(log, "terminal thread %s died", exc, name)
                self.count("thread_deaths")

        return run
