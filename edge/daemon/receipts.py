"""The terminal's side of end-to-end receipts (:mod:`edge.protocol.receipt`): which receipts it believes, and when a
result that has its PUBACK but no receipt is published again.

A receipt is believed when it verifies under a key the terminal was provisioned to trust (the ward command key the
gateway signs with, and any in ``trust.receipt_keys``), names this terminal of this ward, is not expired and its
``jti`` was never seen. Seen ``jti`` values are kept in SQLite (``receipts.db``, the office commands'
:class:`~edge.daemon.office_commands.ReplayGuard`) until they expire, so a replay is refused across restarts too. A
replay is harmless (the results it names are gone already) but it is refused and reported like every other refusal:
only a gateway may write the receipt topic, so any refusal means a misconfigured gateway or an attack.

With the clock not synchronised, expiry is judged against the floor (a time that has passed for certain), as for
commands: a receipt that expired before the floor is refused.

Republishing (:class:`RepublishSchedule`): a result whose receipt has not come ``receipt_timeout`` after its PUBACK
is published again (the same token: same ``jti``, the gateway stores it once and sends the receipt again), then
after twice that, and so on up to ``republish_max_delay``, each wait jittered so that the results of a ward whose
gateway went away do not come back in lockstep. The schedule is kept in memory on the monotonic clock; after a
restart each result awaiting a receipt waits its backoff again from the start (its attempts are in the outbox), so a
restart republishes nothing at once and a receipt lost while the terminal was down is made up for a timeout later.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec

from edge.backoff import jittered_delay
from edge.daemon.office_commands import ReplayGuard
from edge.errors import ReceiptRefusedError
from edge.protocol.clock import TimeEvidence
from edge.protocol.receipt import RECEIPT_LEEWAY, ReceiptClaims, verify_receipt

log = logging.getLogger(__name__)

#: The replay guard's database in the state directory.
RECEIPTS_FILE = "receipts.db"
#: A result published this many times without a receipt means the office is not answering (the first PUBACK and two
#: republishes: a few receipt timeouts): the terminal shows ``offline_queued`` although the broker is reachable.
OVERDUE_ATTEMPTS = 3


class ReceiptChecker:
    """Turns a receipt payload into its claims, or a :class:`ReceiptRefusedError` saying why not."""

    def __init__(self, keys: Mapping[str, ec.EllipticCurvePublicKey], *, terminal_id: str, ward_code: str,
                 replay: ReplayGuard, time: Callable[[], TimeEvidence]) -> None:  # fmt: skip
        """``keys``: the trusted receipt keys by kid; ``time``: the terminal's time evidence (``ClockState.evidence``,
        or a trusted time in a bench)."""
        self._keys = dict(keys)
        self._terminal_id = terminal_id
        self._ward_code = ward_code
        self._replay = replay
        self._time = time

    def check(self, payload: bytes) -> ReceiptClaims:
        evidence = self._time()
        trusted_now = int(evidence.now.timestamp()) if evidence.synchronised else None
        floor = int(evidence.floor.timestamp()) if evidence.floor is not None else 0
        claims = verify_receipt(payload, self._keys, terminal_id=self._terminal_id, ward_code=self._ward_code,
                                now=trusted_now).claims  # fmt: skip
        if trusted_now is None and claims.exp + RECEIPT_LEEWAY < floor:
            raise ReceiptRefusedError("expired", "expired before a time this terminal knows has passed (its clock is "
                                      "not synchronised)")  # fmt: skip
        if not self._replay.remember(claims.jti, claims.exp, trusted_now if trusted_now is not None else floor):
            raise ReceiptRefusedError("replayed", f"receipt {claims.jti} was seen before")
        return claims


def names_result(claims: ReceiptClaims) -> Callable[[int, str | None], bool]:
    """The receipt's rule for an outbox entry: :meth:`ReceiptClaims.covers` when the entry's ``jti`` is known, else
    its ``seq`` in the receipt's ranges (an entry stored before the outbox kept jtis, sealed as a JWE)."""

    def names(seq: int, jti: str | None) -> bool:
        if jti is not None:
            return claims.covers(seq, jti)
        return any(first <= seq <= last for first, last in claims.seqs)

    return names


def trusted_now(seconds: float) -> TimeEvidence:
    """A trusted time (a bench's or a test's terminal without a :class:`~edge.daemon.clock.ClockState`)."""
    return TimeEvidence.trusted(datetime.fromtimestamp(seconds, UTC))


class RepublishSchedule:
    """When each result awaiting a receipt is published again (module docstring). Owned by the publisher thread."""

    def __init__(self, first: float, cap: float, *, rng: random.Random | None = None) -> None:
        self.first = first
        self.cap = max(first, cap)
        self._rng = rng if rng is not None else random.Random()
        self._due: dict[int, float] = {}  # entry id -> monotonic time it is published again
        self._heap: list[tuple[float, int]] = []  # (due, id), with stale pairs skipped when they surface

    def __len__(self) -> int:
        return len(self._due)

    def published(self, entry_id: int, attempts: int, now: float) -> None:
        """The entry had its ``attempts``-th PUBACK at ``now`` (or was found awaiting a receipt at start)."""
        due = now + jittered_delay(attempts - 1, self.first, self.cap, self._rng)
        self._due[entry_id] = due
        heapq.heappush(self._heap, (due, entry_id))

    def forget(self, entry_id: int) -> None:
        """Receipted, or being published again: not due any more."""
        self._due.pop(entry_id, None)

    def take_due(self, now: float, limit: int) -> list[int]:
        """Up to ``limit`` entries due by ``now``, earliest first; they leave the schedule until their next PUBACK."""
        taken: list[int] = []
        while self._heap and len(taken) < limit and self._heap[0][0] <= now:
            due, entry_id = heapq.heappop(self._heap)
            if self._due.get(entry_id) == due:
                del self._due[entry_id]
                taken.append(entry_id)
        if len(self._heap) > 4 * len(self._due) + 64:  # forgotten pairs: rebuild rather than let them pile up
            self._heap = [(due, entry_id) for entry_id, due in self._due.items()]
            heapq.heapify(self._heap)
        return taken
