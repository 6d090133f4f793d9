"""The worker thread: carries out the machine's ``StartRead`` and ``StartVerify`` (stages 2 to 5 of a tap,
:mod:`edge.daemon.tap`): seconds of blocking I/O and cryptography that must not stall the loop.

Each job posts its outcome back as a typed event (``ReadSucceeded`` with the read, ``ReadFailed``, ``VerifyDone``).
A job whose attempt was aborted (card pulled, cancel, timeout) is skipped, and a verification aborted meanwhile
stores nothing; anything unexpected ends the attempt as failed, never as a result.
"""

from __future__ import annotations

import logging
import queue
import threading

from edge.daemon import tap
from edge.daemon.clock import ClockState
from edge.daemon.presence import ReaderWatcher
from edge.daemon.result_store import ResultStore
from edge.daemon.state import ReadFailed, StartRead, StartVerify, VerifyDone
from edge.daemon.threads import TICK_SECONDS, DeliveryNews, Shared
from edge.daemon.trust import TerminalTrust
from edge.drivers.base import CardReaderDriver
from edge.errors import CardRemovedError, EdgeError, NoCardError
from edge.logsetup import log_unexpected
from edge.protocol.result import ProcedureProfile
from edge.protocol.verify.card import verify_chip
from edge.protocol.verify.checks import Verdict

log = logging.getLogger(__name__)

#: Seconds the worker may stay silent beyond the read timeout before the watchdog calls it stuck.
BUSY_MARGIN = 5.0


class AbortMarks:
    """Attempts aborted (by the loop) whose jobs may still be ahead of the worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._aborted: set[int] = set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._aborted)

    def mark(self, attempt: int) -> None:
        with self._lock:
            self._aborted.add(attempt)

    def skip(self, attempt: int) -> bool:
        """Whether ``attempt`` was aborted. Jobs reach the worker in attempt order, so the marks of older attempts
        are dropped here: the set holds the aborts still ahead of the worker, not one per aborted read ever."""
        with self._lock:
            self._aborted = {aborted for aborted in self._aborted if aborted >= attempt}
            return attempt in self._aborted


class Worker:
    """Jobs arrive through :meth:`submit` in attempt order (the loop's); :meth:`abort` marks an attempt to skip."""

    def __init__(self, shared: Shared, *, reader: CardReaderDriver, watcher: ReaderWatcher, reader_name: str | None,
                 read_timeout: float, trust: TerminalTrust, clock: ClockState, results: ResultStore,
                 terminal_id: str, ward_code: str, default_profile: ProcedureProfile) -> None:  # fmt: skip
        self._shared = shared
        self._reader = reader
        self._watcher = watcher
        self._reader_name = reader_name
        self._read_timeout = read_timeout
        self._trust = trust
        self._clock = clock
        self._results = results
        self._terminal_id, self._ward_code, self._default_profile = terminal_id, ward_code, default_profile
        self._jobs: queue.Queue[StartRead | StartVerify] = queue.Queue()
        self.aborted = AbortMarks()

    def submit(self, job: StartRead | StartVerify) -> None:
        self._jobs.put(job)

    def abort(self, attempt: int) -> None:
        self.aborted.mark(attempt)

    def run(self) -> None:
        """The thread body; when idle it retries the results the disk refused."""
        while not self._shared.stopping.is_set():
            self._shared.liveness.beat("worker")
            self._shared.mark_ready("worker")
            try:
                job = self._jobs.get(timeout=TICK_SECONDS)
            except queue.Empty:
                if self._results.retry_held():
                    self._shared.post(DeliveryNews())  # READY once the held results are in
                continue
            if self.aborted.skip(job.attempt):
                continue
            try:
                if isinstance(job, StartRead):
                    self._read(job)
                else:
                    self._verify(job)
            except Exception as exc:  # noqa: BLE001  # anything unexpected ends this attempt as failed, never as a result
                log_unexpected(log, "attempt %d failed unexpectedly", exc, job.attempt)
                self._shared.last_error = "internal_error"
                now = self._shared.monotonic()
                self._shared.post(ReadFailed(now, job.attempt, "internal_error") if isinstance(job, StartRead)
                                  else VerifyDone(now, job.attempt, ok=False, proven=False))  # fmt: skip

    def _read(self, job: StartRead) -> None:
        """2. read: the chip, with the PC/SC context taken from the reader watcher for the time of the read."""
        self._shared.count("reads_started")
        self._shared.liveness.busy("worker", self._read_timeout + BUSY_MARGIN)
        started = self._shared.monotonic()  # the read's deadline and time count from here
        try:
            with self._watcher.card_context() as holding:
                try:
                    done = tap.read_card(self._reader, holding or self._reader_name, job,
                                         profile=job.profile or self._default_profile, started=started,
                                         timeout=self._read_timeout, monotonic=self._shared.monotonic)  # fmt: skip
                except (CardRemovedError, NoCardError) as exc:
                    # Said while the watcher still stands aside: the removal reaches the loop before the failure.
                    self._shared.count("reads_failed")
                    log.info("attempt %d: card left the reader (%s)", job.attempt, type(exc).__name__)
                    self._watcher.card_left()
                    self._shared.post(ReadFailed(self._shared.monotonic(), job.attempt, "card_removed"))
                    return
        except EdgeError as exc:
            self._shared.count("reads_failed")
            log.info("attempt %d: read failed: %s", job.attempt, type(exc).__name__)
            self._shared.post(ReadFailed(self._shared.monotonic(), job.attempt, type(exc).__name__))
            return
        finally:
            self._shared.liveness.beat("worker")
        self._shared.count("reads_ok")
        log.info("attempt %d: chip read, %d APDUs", job.attempt, done.read.stats.apdus)
        self._shared.post(done)

    def _verify(self, job: StartVerify) -> None:
        """3. verify, 4. document, 5. seal and store (which wakes 6, the publisher)."""
        started = self._shared.monotonic()
        # One time evidence for the checks, completed_at and the clock object: they must agree.
        report = verify_chip(job.read, self._trust.current(), now=self._clock.evidence(), qr=job.key.qr)
        verify_ms = int((self._shared.monotonic() - started) * 1000)
        document = tap.result_document(job, report, terminal_id=self._terminal_id, ward_code=self._ward_code,
                                       default_profile=self._default_profile, verify_ms=verify_ms)  # fmt: skip
        if self.aborted.skip(job.attempt):  # cancelled or card pulled while verifying: nothing leaves
            return
        stored = self._results.keep(document)
        if stored.seq is not None:
            self._watcher.result_stored()
        ok = document.verdict is not Verdict.FAILED and (stored.seq is not None or stored.storage_fault is not None)
        proven = document.verdict.proves_origin  # only a CSCA or a known Document Signer shows success
        self._shared.post(VerifyDone(self._shared.monotonic(), job.attempt, ok, proven, stored.storage_fault))
        self._shared.post(DeliveryNews())
