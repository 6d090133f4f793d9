"""Exponential backoff with jitter, for every retry path (the terminal's deliveries, the gateway's webhooks).

Why jitter: many clients that failed together (a ward's terminals losing the broker, a gateway's webhooks to a
receiver that was down) would otherwise retry in lockstep; a random share of each delay spreads them out. Why a
cap: past it, waiting longer only delays the recovery. Randomness is passed in, so tests count attempts in fake
time instead of measuring wall-clock time. Importable from anywhere (neither the daemon nor the office owns it).
"""

from __future__ import annotations

import random


def jittered_delay(failures: int, first: float, cap: float, rng: random.Random) -> float:
    """The wait after ``failures`` failures in a row (0: the first retry): a random time in ``[d/2, d]`` with
    ``d = min(cap, first * 2**failures)``."""
    ceiling = min(max(first, cap), first * 2 ** min(max(failures, 0), 32))
    return rng.uniform(ceiling / 2, ceiling)


class Backoff:
    """Delays for one retry path: after the n-th failure in a row :func:`jittered_delay` of n. :meth:`reset` after
    a success starts again at ``first``."""

    def __init__(self, first: float, cap: float, *, rng: random.Random | None = None) -> None:
        self.first = first
        self.cap = max(first, cap)
        self.failures = 0
        self._rng = rng if rng is not None else random.Random()

    def next_delay(self) -> float:
        delay = jittered_delay(self.failures, self.first, self.cap, self._rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
