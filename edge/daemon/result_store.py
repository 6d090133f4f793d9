"""Stage 5 of a tap (:mod:`edge.daemon.tap`): seal a result (sign it once, encrypt it to the ward when it has a key)
and store it: committed to the outbox (durable before publish), then the publisher is woken (stage 6, delivery).

A disk that refuses the result (full, or failing) is the terminal's fault, never the card's: the sealed result is
held in memory and stored when space returns, oldest first, so seq follows the order of the reads. Reads are
refused meanwhile, so only those already under way when the disk filled arrive here; beyond
:data:`HELD_RESULTS_MAX` the officer is told to repeat the read.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from edge.daemon.backoff import Backoff
from edge.daemon.mqtt import ResultPublisher
from edge.daemon.outbox import Outbox, Payload
from edge.daemon.receipts import OVERDUE_ATTEMPTS
from edge.daemon.state import DeliveryChanged
from edge.daemon.threads import Shared
from edge.errors import EdgeError, OutboxFullError, StorageError, StorageFullError
from edge.logsetup import mask_id
from edge.protocol.jose import Signer, result_token
from edge.protocol.result import ResultDocument
from edge.protocol.verify.checks import Verdict

log = logging.getLogger(__name__)

#: A photo-less result is ~4 KB; a read is refused when the outbox has no room for one this size.
EXPECTED_RESULT_BYTES = 16 * 1024
#: Signed results kept in memory while the disk refuses them (module docstring).
HELD_RESULTS_MAX = 8


@dataclass(frozen=True, slots=True)
class SealedResult:
    """A signed result waiting for its seq: ``token(seq)`` is what the outbox stores (with the result's ``jti``, which
    receipts name) and MQTT carries."""

    token: Callable[[int], Payload]
    verdict: Verdict
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Sealer:
    """What seals a result: the device key, the ward's encryption key if any, and the device certificate (DER, sent
    as ``x5c`` so the office finds the key through the ward CA)."""

    signer: Signer
    terminal_id: str
    encrypt_to: ec.EllipticCurvePublicKey | None = None
    certificate: bytes | None = None

    def seal(self, document: ResultDocument) -> SealedResult:
        """The document's token for a seq, signed once: a result the disk refused keeps the token signed at the read
        (its ``iat`` the read's time), and is signed again only if its seq went to another result meanwhile."""
        body = document.model_dump(mode="json", exclude_none=True)
        # iat: the read's time as the clock state gave it (completed_at), never a time it knows to be wrong
        now = int(document.completed_at.timestamp())
        signed: dict[int, Payload] = {}

        def token(seq: int) -> Payload:
            if seq not in signed:
                signed.clear()
                jti = str(uuid.uuid4())  # kept beside the token: a JWE's claims are sealed to the ward
                signed[seq] = Payload(result_token(self.signer, terminal_id=self.terminal_id, seq=seq, document=body,
                                                   now=now, encrypt_to=self.encrypt_to, certificate=self.certificate,
                                                   jti=jti), jti)  # fmt: skip
            return signed[seq]

        return SealedResult(token, document.verdict, document.request_id)


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of a result: its ``seq``, or None with the storage fault the officer is shown (``result_held``,
    ``repeat_read``), or None with neither when it was refused (a signer that failed)."""

    seq: int | None
    storage_fault: str | None = None


class ResultStore:
    """Seals and stores results (the worker's thread), and says what the machine needs to know about delivery."""

    def __init__(self, shared: Shared, sealer: Sealer, outbox: Outbox, publisher: ResultPublisher) -> None:
        self._shared = shared
        self._sealer = sealer
        self._outbox = outbox
        self._publisher = publisher
        self._held: deque[SealedResult] = deque()  # the worker's; others only read its length
        self._held_backoff = Backoff(1.0, 8.0)  # retries of held results: soon, then every few seconds
        self._held_retry_at = 0.0

    @property
    def held(self) -> int:
        """Results waiting in memory for room on the disk."""
        return len(self._held)

    def keep(self, document: ResultDocument) -> Stored:
        """Seal and store ``document`` after any result still held; never raises an :class:`EdgeError`."""
        sealed = self._sealer.seal(document)
        try:
            seq = self._store(sealed)
        except (StorageError, OutboxFullError) as exc:  # the disk's fault, not the card's: kept, stored later
            return Stored(None, self._hold(sealed, exc))
        except EdgeError as exc:
            self._shared.count("results_refused")
            self._shared.last_error = type(exc).__name__
            log.error("result not stored: %s", exc)
            self._shared.event({"event": "result_not_stored", "reason": type(exc).__name__,
                                "request_id": document.request_id})  # fmt: skip
            return Stored(None)
        log.info("result seq %d: %s (%s)", seq, document.verdict.value,
                 mask_id(document.citizen.id_number) if document.citizen else "no citizen data")
        return Stored(seq)

    def retry_held(self) -> bool:
        """When the worker is idle: try the held results again after a jittered backoff. True once the last one is
        in (READY may return). Any refusal keeps them held for the next try: raised here, it would end the worker's
        thread and lose them with the restart (a failing SD card turns from I/O errors to a damaged database)."""
        if not self._held or self._shared.monotonic() < self._held_retry_at:
            return False
        try:
            self._store_held()
        except EdgeError as exc:
            self._held_retry_at = self._shared.monotonic() + self._held_backoff.next_delay()
            log.warning("%d held result(s) still not stored: %s", len(self._held), type(exc).__name__)
            return False
        self._held_backoff.reset()
        return True

    def storage_full(self) -> bool:
        """A result waits in memory for room, or the disk lacks its reserve for one more: no read may start."""
        return bool(self._held) or not self._outbox.disk_has_room(EXPECTED_RESULT_BYTES)

    def delivery_facts(self, now: float) -> DeliveryChanged:
        """Link, outbox and storage facts for the machine (the loop's thread): both queues, and whether the office
        has left a result without its receipt for several republishes."""
        stats = self._outbox.stats()
        full = not self._outbox.within_limits(EXPECTED_RESULT_BYTES, stats=stats)
        return DeliveryChanged(now, link_up=self._publisher.connected, queued=stats.unpublished, outbox_full=full,
                               storage_full=self.storage_full(), awaiting_receipt=stats.awaiting,
                               receipt_overdue=stats.most_attempts >= OVERDUE_ATTEMPTS)  # fmt: skip

    def _store(self, result: SealedResult) -> int:
        self._store_held()
        seq = self._commit(result)
        self._held_backoff.reset()
        return seq

    def _commit(self, result: SealedResult) -> int:
        _entry_id, seq = self._outbox.enqueue(result.token)
        self._publisher.notify()  # 6. deliver: the publisher sends it and deletes it on PUBACK
        self._shared.count("results_enqueued")
        self._shared.count(f"verdict_{result.verdict.value}")
        return seq

    def _hold(self, result: SealedResult, exc: StorageError | OutboxFullError) -> str:
        """Keep a result the disk refused; returns the storage fault the officer is shown."""
        reason = "storage_error"
        if isinstance(exc, OutboxFullError | StorageFullError):
            reason = "outbox_full" if isinstance(exc, OutboxFullError) else "storage_full"
        self._shared.last_error = reason
        self._held_retry_at = self._shared.monotonic() + self._held_backoff.next_delay()
        if len(self._held) >= HELD_RESULTS_MAX:
            self._shared.count("results_lost")
            log.error("result not stored (%s) and no room left to hold it: the read must be repeated", exc)
            self._shared.event({"event": "result_not_stored", "reason": reason, "request_id": result.request_id,
                                "action": "repeat_read"})  # fmt: skip
            return "repeat_read"
        self._held.append(result)
        self._shared.count("results_held")
        log.error("result held in memory until the disk has room (%s)", exc)
        self._shared.event({"event": "result_held", "reason": reason, "request_id": result.request_id,
                            "held": len(self._held)})  # fmt: skip
        return "result_held"

    def _store_held(self) -> None:
        """Commit held results, oldest first; raises on the first refused."""
        while self._held:
            seq = self._commit(self._held[0])
            result = self._held.popleft()
            log.info("held result stored late as seq %d", seq)
            self._shared.event({"event": "result_stored", "seq": seq, "request_id": result.request_id, "late": True})
