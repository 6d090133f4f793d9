"""The office's receiver as the delivery stack tests run it, on a real broker and real SQLite, and the small signed
result they publish to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from edge.office.receiver import Outcome, Receiver, ResultStore
from edge.protocol import jose
from edge.protocol.result import QrUsage, ReadTiming
from edge.sim.broker import MosquittoBroker
from tests.support.results import sample_result


def minimal_result_token(signer: jose.Signer, *, ward: str, seq: int, iat: int, lifetime: int | None,
                         terminal_id: str = "T-01", document_terminal_id: str | None = None) -> bytes:  # fmt: skip
    """A result ``terminal_id`` signed at ``iat`` (no QR, one APDU); ``document_terminal_id`` puts another terminal
    in the document, which the office refuses."""
    document = sample_result(terminal_id=document_terminal_id or terminal_id, ward_code=ward, qr=QrUsage(used=False),
                             timing=ReadTiming(apdu_count=1, read_ms=1), completed_at=datetime.fromtimestamp(iat, UTC))
    return jose.result_token(signer, terminal_id=terminal_id, seq=seq, document=json.loads(document.to_json()),
                             now=iat, lifetime=lifetime)


class RecordingOffice:
    """A started :class:`Receiver` over its store, recording each outcome for the test to wait on. ``client_id`` is
    the test's, so that a restart resumes the broker's session (what was not acknowledged is delivered again)."""

    def __init__(self, broker: MosquittoBroker, db: Path, keys: dict[str, ec.EllipticCurvePublicKey], ward: str,
                 client_id: str, *, clock: Callable[[], float] | None = None) -> None:  # fmt: skip
        self.store = ResultStore(db, keys)
        self.outcomes: list[Outcome] = []
        self._changed = threading.Condition()
        self.receiver = Receiver(self.store, host=broker.host, port=broker.port, ward=ward, client_id=client_id,
                                 on_outcome=self._record, clock=clock)
        self.receiver.start()
        assert self.receiver.subscribed.wait(10)

    def _record(self, outcome: Outcome) -> None:
        with self._changed:
            self.outcomes.append(outcome)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 30) -> list[Outcome]:
        """The outcomes once there are ``count`` of them (fails the test after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.outcomes) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{len(self.outcomes)} of {count} messages handled: {self.outcomes}"
                self._changed.wait(remaining)
            return list(self.outcomes)

    def stop(self) -> None:
        self.receiver.stop()
        self.store.close()
