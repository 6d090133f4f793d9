"""Retry pacing of the terminal: the wait between two MQTT connection attempts, on :class:`~edge.backoff.Backoff`
(exponential with jitter, shared with the office side).

Why jitter: a ward's terminals lose the broker together (a broker restart, a switch) and would otherwise retry in
lockstep, every terminal at the same second; a random share of each delay spreads them out. Why a cap of a few
seconds: after an outage the officer must see the terminal online again within seconds, not after a minute.

Why a :class:`RetryClock`: time and randomness are passed in, so tests run hours of outage in fake time and count
attempts instead of measuring wall-clock time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from edge.backoff import Backoff

__all__ = ["PROBE_EVERY", "PROBE_SPREAD", "Backoff", "ReconnectWait", "RetryClock"]

#: Seconds between reachability probes while the broker is unreachable (each probe is one TCP connect).
PROBE_EVERY = 1.0
#: After a probe finds the broker back, connect within a random share of this many seconds: a whole fleet sees it
#: back at the same moment, and their TLS handshakes should not all land on the broker in the same second.
PROBE_SPREAD = 2.0


class RetryClock:
    """Monotonic time and interruptible waits; a test passes a fake that advances on :meth:`wait`."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait until ``event`` is set or ``seconds`` have passed; True when it was set."""
        return event.wait(seconds)


class ReconnectWait:
    """The wait before the next connection attempt: a :class:`Backoff` delay, cut short when a probe sees the broker
    come back (the link was down, now a TCP connect succeeds), so a terminal is online again within seconds of the
    network's return whatever the backoff had grown to.

    A probe that already succeeds when the wait begins means the last attempt failed beyond TCP (TLS refused, a
    broker still starting): then the full delay is waited, so a broker that refuses us is not hammered.
    """

    def __init__(
        self,
        backoff: Backoff,
        probe: Callable[[], bool],
        stop: threading.Event,
        *,
        clock: RetryClock | None = None,
        rng: random.Random | None = None,
        probe_every: float = PROBE_EVERY,
        spread: float = PROBE_SPREAD,
    ) -> None:
        self.backoff = backoff
        self._probe = probe
        self._stop = stop
        self._clock = clock if clock is not None else RetryClock()
        self._rng = rng if rng is not None else random.Random()
        self._probe_every = probe_every
        self._spread = spread
        #: Waits so far (one per failed attempt) and how many a probe ended early: for status and tests.
        self.waits = 0
        self.cut_short = 0

    def __call__(self) -> None:
        self.waits += 1
        deadline = self._clock.now() + self.backoff.next_delay()
        watching = not self._probe()
        while (remaining := deadline - self._clock.now()) > 0:
            step = min(remaining, self._probe_every * self._rng.uniform(0.5, 1.5))
            if self._clock.wait(self._stop, step):
                return
            if watching and self._probe():
                watching = False
                self.cut_short += 1
                deadline = min(deadline, self._clock.now() + self._rng.uniform(0.0, self._spread))
