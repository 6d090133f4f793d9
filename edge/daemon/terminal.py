"""The counter terminal: drivers, the pure state machine, verification, signing, the outbox and MQTT, composed.

Threads, and why each exists:

* ``loop``: the ONLY thread that steps :class:`~edge.daemon.state.Machine`. Every other thread posts events to
  one queue; a quiet queue yields a :class:`Tick` so deadlines fire. One owner means no lock around the snapshot
  and the order of events is the order the machine sees.
* ``reader``: waits for PC/SC card and reader changes -> ``CardInserted``/``CardRemoved``/``DeviceChanged``.
  PC/SC serialises calls on one context, so the watcher steps aside (``SCardCancel``) while the worker talks to
  the card; the read itself reports a removal it runs into.
* ``camera``: frames -> :class:`~edge.daemon.scanner.QrScanner` -> ``KeyOffered`` (the QR only yields the CAN
  and claims to cross-check; it proves nothing).
* ``worker``: carries out ``StartRead`` (minutes of blocking I/O must not stall the loop) and ``StartVerify``:
  verify, build the profile-filtered document, sign, commit to the outbox, wake the publisher.
* paho's network thread and the publisher thread live in :class:`~edge.daemon.mqtt.ResultPublisher`; office
  commands arriving there are posted to the loop and verified by :class:`~edge.daemon.office_commands.CommandVerifier`.

The verdict in a result comes from :func:`~edge.protocol.verify.card.verify_chip` alone; a read that failed or was
aborted (card pulled, cancel, timeout) publishes nothing, and a document that cannot carry the citizen's data is
sent as ``failed``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from edge.config import Config
from edge.daemon import office_commands as office
from edge.daemon.backoff import Backoff
from edge.daemon.clock import CLOCK_FILE, ClockState, NtpState, kernel_ntp_synchronised
from edge.daemon.ds_list import ListKey, apply_ds_list, known_signers_dir, list_keys, verify_ds_list
from edge.daemon.health import Liveness
from edge.daemon.mqtt import PUBLISHER_THREAD, MqttSettings, ResultPublisher
from edge.daemon.outbox import OUTBOX_FILE, Outbox
from edge.daemon.scanner import QrScanner, ScanEventKind
from edge.daemon.state import (
    AbortRead,
    Action,
    Cancel,
    CardInserted,
    CardRemoved,
    ClockChanged,
    DeliveryChanged,
    DeviceChanged,
    Event,
    KeyOffered,
    Machine,
    QrRejected,
    ReadFailed,
    ReadSucceeded,
    Report,
    ShowIndicator,
    Snapshot,
    StartRead,
    StartVerify,
    State,
    Tick,
    VerifyDone,
)
from edge.daemon.storage import sqlite_errors_typed
from edge.drivers.base import CardPresence, CardReaderDriver, FrameSource, QrDecoder, ReaderState
from edge.drivers.cameras import open_configured_camera
from edge.drivers.leds import Indicators
from edge.errors import (
    CameraError,
    CardRemovedError,
    CommandRejectedError,
    DsListRefusedError,
    EdgeError,
    NoCardError,
    OutboxFullError,
    StorageError,
    StorageFullError,
)
from edge.logsetup import log_unexpected, mask_id
from edge.protocol.access.policy import AccessKey, CanKey
from edge.protocol.cccd_qr import CccdQr
from edge.protocol.chip import ChipRead, ReadRequest, read_chip
from edge.protocol.id_number import can_from_id
from edge.protocol.jose import Signer, result_token
from edge.protocol.result import (
    ActiveAuthEvidence,
    Check,
    CitizenData,
    ClockEvidence,
    ProcedureProfile,
    QrUsage,
    ReadTiming,
    ResultDocument,
    citizen_from,
    make_result,
)
from edge.protocol.verify.card import verify_chip
from edge.protocol.verify.checks import CheckStatus, Verdict
from edge.protocol.verify.trust import TrustStore
from edge.signers import check_certified_key, device_signer, load_public_key

log = logging.getLogger(__name__)

#: How long the loop waits for an event before it steps a Tick (deadlines are checked on every event too).
TICK_SECONDS = 0.25
#: Longest single PC/SC wait of the reader watcher: bounds how long the worker may wait for the context.
WATCH_SLICE = 0.25
#: A photo-less result is ~4 KB; a read is refused when the outbox has no room for one this size.
EXPECTED_RESULT_BYTES = 16 * 1024
#: Signed results kept in memory while the disk refuses them: reads are refused meanwhile, so only the reads already
#: under way when the disk filled can arrive here; beyond this the officer is told to repeat the read.
HELD_RESULTS_MAX = 8
#: How often the loop looks at the free space while idle (and always just before a read starts).
STORAGE_CHECK_SECONDS = 1.0
#: How often the loop asks whether the time is trusted (one adjtimex call; a change shows on READY and /event).
CLOCK_CHECK_SECONDS = 1.0
#: Loop threads whose liveness gates the systemd watchdog.
THREADS = ("loop", "reader", "camera", "worker", PUBLISHER_THREAD)


_QR_FORMATS: dict[str, Literal["cccd2021", "cccd2024"]] = {"2021": "cccd2021", "2024": "cccd2024"}


@dataclass(frozen=True, slots=True)
class KeySource:
    """A chip key and where it came from. ``qr`` is kept for the QR-vs-DG13 cross-check (None: office request)."""

    access: AccessKey
    qr: CccdQr | None = None
    include_photo: bool = False


@dataclass(frozen=True, slots=True)
class _PendingVerify:
    read: ChipRead
    key: KeySource
    profile: ProcedureProfile | None
    request_id: str | None
    read_ms: int
    office_challenge: bytes | None  # the AA challenge of the office's read_request, if it sent one


@dataclass(frozen=True, slots=True)
class _HeldResult:
    """A signed result the disk refused, stored when space returns (the same token, its seq was not consumed)."""

    token: Callable[[int], bytes]
    verdict: Verdict
    request_id: str | None


class Terminal:
    """The daemon's composition. ``None`` drivers are built from ``config`` (the real ones on a Pi).

    ``start()`` opens the outbox, keys and devices and starts the threads (a :class:`~edge.errors.ConfigError`
    names the key when a configured file is unusable); ``stop()`` is idempotent. ``state``/``stats`` are for
    tests and status only. ``clock`` is the monotonic clock; ``ntp`` answers whether the kernel's clock is
    NTP-synchronised (:mod:`edge.daemon.clock`: tests replace the source, the rest runs as in production).
    """

    def __init__(
        self,
        config: Config,
        *,
        camera: FrameSource | None = None,
        reader_driver: CardReaderDriver | None = None,
        pin_factory: Any = None,
        decoder: QrDecoder | None = None,
        liveness: Liveness | None = None,
        clock: Callable[[], float] = time.monotonic,
        ntp: NtpState = kernel_ntp_synchronised,
    ) -> None:
        self.config = config
        self.liveness = liveness if liveness is not None else Liveness()
        self._camera = camera
        self._owns_camera = camera is None
        self._reader = reader_driver
        self._owns_reader = reader_driver is None
        self._pin_factory = pin_factory
        self._decoder = decoder
        self._owns_decoder = decoder is None
        self._clock = clock
        self._ntp = ntp
        self._time: ClockState | None = None  # opened by start(): the wall time and how far to trust it
        self._clock_facts: tuple[bool, str] | None = None  # (synchronised, source) as last shown
        self._clock_checked = float("-inf")
        self._machine = Machine(config.timeouts)
        self._snap = Snapshot()
        self._events: queue.Queue[Event | Callable[[], None]] = queue.Queue()
        self._work: queue.Queue[StartRead | StartVerify] = queue.Queue()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._ready_parts: set[str] = set()
        self._lock = threading.Lock()  # stats, presence, aborted attempts, ready parts
        self._stats: Counter[str] = Counter()
        self._aborted: set[int] = set()
        self._pending: dict[int, _PendingVerify] = {}
        self._held: deque[_HeldResult] = deque()  # the worker's; others only read its length
        self._held_backoff = Backoff(1.0, 8.0)  # retries of held results: soon, then every few seconds
        self._held_retry_at = 0.0
        self._storage_checked = float("-inf")
        self._present = False
        self._present_reader: str | None = None
        self._reader_available = True
        self._camera_available = True
        #: Set once a result for the card now on the reader is stored, cleared when that card leaves: a QR left in
        #: view fires again after ``camera.qr_repeat_after`` (a retry without lifting the card after a failed read),
        #: but a card whose result is already out must not produce a second one every 30 s.
        self._result_for_card_on_reader = threading.Event()
        self._reading = threading.Event()
        self._pcsc_lock = threading.Lock()
        self._last_error = ""
        self._last_status: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []
        self._trust: TrustStore | None = None
        self._trust_stamp: tuple[int | None, int | None, int] | None = None
        self._trust_generation = 0  # bumped by a trust_update: a directory's mtime may not tick between two writes
        self._ds_list_keys: dict[str, ListKey] = {}
        self._started = False
        self._closed = False
        # Opened by start():
        self._outbox: Outbox | None = None
        self._publisher: ResultPublisher | None = None
        self._indicators: Indicators | None = None
        self._replay: office.ReplayGuard | None = None
        self._verifier: office.CommandVerifier | None = None
        self._signer: Signer | None = None
        self._encrypt_to: ec.EllipticCurvePublicKey | None = None
        self._certificate: bytes | None = None  # the device certificate (DER), sent as x5c with each result

    # --- public API ----------------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._snap.state

    @property
    def snapshot(self) -> Snapshot:
        return self._snap

    @property
    def stats(self) -> dict[str, int]:
        """Counters (reads, results, verdicts, commands, frames...): a copy."""
        with self._lock:
            return dict(self._stats)

    @property
    def publisher(self) -> ResultPublisher | None:
        return self._publisher

    @property
    def outbox(self) -> Outbox | None:
        return self._outbox

    def start(self) -> Terminal:
        if self._started:
            return self
        self._started = True
        try:
            self._open()
        except BaseException:
            self.stop()
            raise
        for name, target in (("loop", self._loop), ("reader", self._watch_reader), ("camera", self._run_camera),
                             ("worker", self._run_worker)):  # fmt: skip
            thread = threading.Thread(target=self._guarded(name, target), name=f"terminal-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        assert self._publisher is not None
        self._publisher.start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        """True once every thread has run and the reader and camera have been looked at once."""
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._cancel_reader_wait()
        for thread in self._threads:
            thread.join(timeout)
        for name in THREADS:
            self.liveness.forget(name)
        if self._publisher is not None:
            self._publisher.stop()
        if self._time is not None:
            self._time.close()  # the last trusted time: the floor after a reboot
        for closer in (self._indicators, self._outbox, self._replay, self._signer):  # the signer: a token logs out
            if closer is not None:
                closer.close()
        if self._owns_camera and self._camera is not None:
            self._camera.close()
        if self._owns_decoder and self._decoder is not None:
            self._decoder.close()
        if self._owns_reader and self._reader is not None:
            self._reader.close()

    def __enter__(self) -> Terminal:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- start-up ------------------------------------------------------------------------------------------------

    def _open(self) -> None:
        config, paths = self.config, self.config.paths
        self._signer = device_signer(paths.device_key)
        if paths.device_cert is not None:
            # else the office would reject every result; the gateway checks it against the ward CA (x5c)
            self._certificate = check_certified_key(self._signer, paths.device_cert)
        if paths.ward_encryption_key is not None:
            self._encrypt_to = load_public_key(paths.ward_encryption_key, config_key="paths.ward_encryption_key")
        ward_key = None
        if paths.ward_command_key is not None:
            ward_key = load_public_key(paths.ward_command_key, config_key="paths.ward_command_key")
        province = [load_public_key(path, config_key="trust.ds_list_keys") for path in config.trust.ds_list_keys]
        self._ds_list_keys = list_keys(ward=ward_key, province=province)
        self._reload_trust()
        self._indicators = Indicators(config.indicators, pin_factory=self._pin_factory)
        self._indicators.show(self._snap.indicator.value)
        self._time = ClockState(paths.state_dir / CLOCK_FILE, ntp=self._ntp, monotonic=self._clock)
        self._post(self._watch_clock)
        self._outbox = Outbox(paths.state_dir / OUTBOX_FILE, max_count=config.outbox.max_count,
                              max_bytes=config.outbox.max_bytes,
                              min_free_bytes=config.outbox.min_free_bytes)  # fmt: skip
        if ward_key is not None:
            with sqlite_errors_typed(paths.state_dir / "commands.db"):  # a full disk says so, not "OperationalError"
                self._replay = office.ReplayGuard(paths.state_dir / "commands.db")
            self._verifier = office.CommandVerifier(ward_key, config.terminal_id, self._replay)
        if self._reader is None:
            from edge.drivers.pcsc import PcscReaderDriver

            self._reader = PcscReaderDriver()
        self._publisher = ResultPublisher(
            MqttSettings.from_config(config), self._outbox, on_command=self._command_arrived,
            on_link_change=lambda _up: self._post(self._delivery_facts),
            on_delivered=lambda _seqs: self._post(self._delivery_facts), liveness=self.liveness,
        )  # fmt: skip
        self._post(self._delivery_facts)

    def _reload_trust(self) -> TrustStore:
        """The CSCA store and the pinned Document Signers, re-read when either directory changed (``cccd-edge
        trust import`` needs no restart) or a ``trust_update`` was applied."""
        directory = self.config.paths.trust_store
        signers = known_signers_dir(self.config.paths.state_dir)

        def mtime(path: Path) -> int | None:
            try:
                return path.stat().st_mtime_ns
            except OSError:
                return None

        stamp = (mtime(directory), mtime(signers), self._trust_generation)
        trust = self._trust
        if trust is None or stamp != self._trust_stamp:
            trust = TrustStore.load(directory, signers_dir=signers)
            self._trust, self._trust_stamp = trust, stamp
            log.info("trust store: %d certificate(s), %d known Document Signer(s)", len(trust.certificates),
                     len(trust.known_signers))
        return trust

    # --- plumbing ------------------------------------------------------------------------------------------------

    def _guarded(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        """A thread body that logs an unexpected death; the watchdog then notices the silence."""

        def run() -> None:
            try:
                target()
            except Exception as exc:  # noqa: BLE001  # any bug: logged, and the silent thread withholds the watchdog
                log_unexpected(log, "terminal thread %s died", exc, name)
                self._count("thread_deaths")

        return run

    def _post(self, item: Event | Callable[[], None]) -> None:
        self._events.put(item)

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._stats[name] += amount

    def _mark_ready(self, part: str) -> None:
        with self._lock:
            self._ready_parts.add(part)
            if self._ready_parts >= {"loop", "reader", "camera", "worker"}:
                self._ready.set()

    def _event(self, payload: dict[str, Any]) -> None:
        if self._publisher is not None:
            self._publisher.publish_event(payload)

    # --- the loop thread -----------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self.liveness.beat("loop")
            self._mark_ready("loop")
            try:
                item = self._events.get(timeout=TICK_SECONDS)
            except queue.Empty:
                item = Tick(self._clock())
            try:
                self._watch_clock()
                if isinstance(item, Event):
                    self._dispatch(item)
                else:
                    item()
            except Exception as exc:  # noqa: BLE001  # one bad event must not stop the terminal
                log_unexpected(log, "terminal loop failed on %s", exc, type(item).__name__)
                self._count("loop_errors")

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, KeyOffered | CardInserted) or (
                isinstance(event, Tick) and event.now - self._storage_checked >= STORAGE_CHECK_SECONDS):
            self._check_storage(event.now)
        self._snap, actions = self._machine.step(self._snap, event)
        for action in actions:
            self._carry_out(action)
        self._publish_status()

    def _carry_out(self, action: Action) -> None:
        if isinstance(action, StartRead | StartVerify):
            self._work.put(action)
        elif isinstance(action, AbortRead):
            with self._lock:
                self._aborted.add(action.attempt)
        elif isinstance(action, ShowIndicator):
            if self._indicators is not None:
                self._indicators.show(action.indicator.value)
        elif isinstance(action, Report):
            self._count(f"report_{action.name}")
            if action.name in ("read_failed", "read_refused"):
                self._last_error = f"{action.name}: {action.detail}"
            log.info("event %s %s", action.name, action.detail)
            self._event({"event": action.name, "detail": action.detail, "request_id": action.request_id})

    def _delivery_facts(self) -> None:
        """Runs on the loop: link, outbox and storage facts into the machine."""
        if self._outbox is None or self._publisher is None:
            return
        stats = self._outbox.stats()
        full = not self._outbox.within_limits(EXPECTED_RESULT_BYTES, stats=stats)
        self._dispatch(DeliveryChanged(self._clock(), link_up=self._publisher.connected, queued=stats.count,
                                       outbox_full=full, storage_full=self._storage_full()))  # fmt: skip

    def _storage_full(self) -> bool:
        """A result waits in memory for room, or the disk lacks its reserve for one more: no read may start."""
        assert self._outbox is not None
        return bool(self._held) or not self._outbox.disk_has_room(EXPECTED_RESULT_BYTES)

    def _check_storage(self, now: float) -> None:
        """Runs on the loop before a read can start (and every second while idle): a full disk is refused with
        FAULT before the card is read, and READY returns by itself when space does."""
        self._storage_checked = now
        if self._outbox is not None and self._storage_full() != self._snap.storage_full:
            self._delivery_facts()

    @property
    def clock_state(self) -> ClockState:
        """The wall time and how far to trust it (after start())."""
        assert self._time is not None
        return self._time

    def _watch_clock(self) -> None:
        """Runs on the loop, at most every :data:`CLOCK_CHECK_SECONDS`: whether the time is trusted, and from what,
        goes to the machine (READY shows it), to ``/event`` and to the status when it changes."""
        now = self._clock()
        if self._time is None or now - self._clock_checked < CLOCK_CHECK_SECONDS:
            return
        self._clock_checked = now
        evidence = self._time.evidence()
        facts = (evidence.synchronised, evidence.source)
        if facts == self._clock_facts:
            return
        self._clock_facts = facts
        floor = evidence.floor.isoformat() if evidence.floor is not None else None
        if evidence.synchronised:
            log.info("clock synchronised (%s)", evidence.source)
        else:
            log.warning("clock not synchronised: date checks are not performed until NTP or the office gives the "
                        "time (floor %s)", floor)  # fmt: skip
        self._event({"event": "clock_synchronised" if evidence.synchronised else "clock_not_synchronised",
                     "source": evidence.source, "floor": floor})  # fmt: skip
        self._dispatch(ClockChanged(now, evidence.synchronised))

    def _publish_status(self) -> None:
        snap = self._snap
        status: dict[str, Any] = {
            "terminal_state": snap.state.value,
            "indicator": snap.indicator.value,
            "reader": "ok" if snap.reader_ok else "missing",
            "camera": "ok" if snap.camera_ok else "missing",
            "queued": snap.queued,
            "outbox_full": snap.outbox_full,
            "storage_full": snap.storage_full,
            "held": len(self._held),
            "last_error": self._last_error,
        }
        if self._clock_facts is not None:
            status["clock"] = {"synchronised": self._clock_facts[0], "source": self._clock_facts[1]}
        if status != self._last_status and self._publisher is not None:
            self._last_status = status
            self._publisher.set_status(**status)

    # --- office commands (paho thread -> loop) -------------------------------------------------------------------

    def _command_arrived(self, payload: bytes) -> None:
        arrived = self._clock()  # when the office's signed time reached us, for the clock's projection
        self._post(lambda: self._handle_command(payload, arrived))

    def _handle_command(self, payload: bytes, arrived: float) -> None:
        try:
            if self._verifier is None:
                raise CommandRejectedError("unknown_key", "no ward command key is configured")
            command = self._verifier.verify(payload, self.clock_state.evidence())
        except CommandRejectedError as exc:
            self._count("commands_rejected")
            log.warning("office command rejected: %s", exc.reason)
            self._event({"event": "command_rejected", "reason": exc.reason, "jti": exc.jti})
            return
        self._count("commands_accepted")
        if self.clock_state.observe_office_time(command.iat, arrived):
            self._clock_checked = float("-inf")  # show it now, not at the next check
            self._watch_clock()
        now = self._clock()
        if isinstance(command, office.ReadCommand):
            key = KeySource(command.key, None, command.include_photo)
            self._event({"event": "command_accepted", "cmd": command.cmd, "jti": command.jti})
            self._dispatch(KeyOffered(now, key, command.jti, command.profile, command.challenge_bytes))
        elif isinstance(command, office.CancelCommand):
            self._event({"event": "command_accepted", "cmd": command.cmd, "jti": command.jti})
            self._dispatch(Cancel(now))
        elif isinstance(command, office.PingCommand):
            self._event({"event": "pong", "jti": command.jti, "state": self._snap.state.value})
        else:
            self._update_trust(command)

    def _update_trust(self, command: office.TrustUpdateCommand) -> None:
        """Verify the DS list the (already verified) command carries and pin its signers in the writable
        ``known-signers`` directory; ``trust_updated`` or ``trust_update_refused`` on /event either way."""
        now = int(self.clock_state.now().timestamp())
        try:
            verified = verify_ds_list(command.ds_list, self._ds_list_keys, ward_code=self.config.ward_code, now=now)
            report = apply_ds_list(verified, trust=self._reload_trust(), at=datetime.fromtimestamp(now, UTC),
                                   target=known_signers_dir(self.config.paths.state_dir))  # fmt: skip
        except DsListRefusedError as exc:
            self._count("trust_updates_refused")
            log.warning("DS list refused: %s", exc.reason)
            self._event({"event": "trust_update_refused", "jti": command.jti, "reason": exc.reason,
                         "detail": exc.detail[:500]})  # fmt: skip
            return
        self._trust_generation += 1
        self._count("trust_updates")
        log.info("DS list version %d from %s: %d added, %d removed", report.version, report.iss,
                 len(report.added), len(report.removed))
        self._event({"event": "trust_updated", "jti": command.jti, "iss": report.iss, "version": report.version,
                     "listed": report.listed, "added": [entry.fingerprint for entry in report.added],
                     "removed": list(report.removed), "repeated": report.repeated})  # fmt: skip

    # --- the reader watcher --------------------------------------------------------------------------------------

    def _watch_reader(self) -> None:
        assert self._reader is not None
        first = True
        while not self._stopping.is_set():
            self.liveness.beat("reader")
            if self._reading.is_set():  # the worker owns the PC/SC context now
                self._stopping.wait(0.02)
                continue
            try:
                with self._pcsc_lock:
                    states = self._reader.readers() if first else self._reader.wait_for_change(WATCH_SLICE)
            except EdgeError as exc:  # the driver maps pcscd's trouble to NoReaderError itself; this is the rest
                log.warning("reader watch: %s", exc)
                states = []
                self._stopping.wait(1.0)
            first = False
            if not self._stopping.is_set():
                self._apply_reader_states(states)
            self._mark_ready("reader")

    def _apply_reader_states(self, states: Sequence[ReaderState]) -> None:
        wanted = self.config.reader_name
        relevant = [state for state in states if wanted is None or state.name == wanted]
        available = any(state.presence is not CardPresence.NO_READER for state in relevant)
        holding = [state.name for state in relevant if state.presence is CardPresence.PRESENT]
        if available != self._reader_available:
            self._reader_available = available
            log.warning("card reader %s", "back" if available else "lost")
            self._post(DeviceChanged(self._clock(), "reader", available))
        self._present_reader = holding[0] if holding else None
        self._set_presence(bool(holding))

    def _set_presence(self, present: bool) -> None:
        with self._lock:
            if present == self._present:
                return
            self._present = present
            self._result_for_card_on_reader.clear()  # any change: a new card, or none
        self._post(CardInserted(self._clock()) if present else CardRemoved(self._clock()))

    def _cancel_reader_wait(self) -> None:
        if self._reader is not None:
            self._reader.cancel()

    # --- the camera ----------------------------------------------------------------------------------------------

    def _set_camera(self, available: bool) -> None:
        if available != self._camera_available:
            self._camera_available = available
            log.warning("camera %s", "back" if available else "lost")
            self._post(DeviceChanged(self._clock(), "camera", available))

    def _run_camera(self) -> None:
        from edge.drivers.qrdecoders import make_decoder

        if self._decoder is None:
            self._decoder = make_decoder()
        scanner: QrScanner | None = None
        while not self._stopping.is_set():
            self.liveness.beat("camera")
            try:
                if self._camera is None:
                    self._camera = open_configured_camera(self.config.camera)
                if scanner is None:
                    scanner = QrScanner(self._camera, self._decoder,
                                        repeat_after=self.config.camera.qr_repeat_after or None)
                frame = self._camera.read(TICK_SECONDS)
            except CameraError as exc:
                log.warning("camera: %s", exc)
                self._set_camera(False)
                self._mark_ready("camera")
                if self._owns_camera and self._camera is not None:
                    self._camera.close()
                    self._camera, scanner = None, None
                self._stopping.wait(1.0)
                continue
            self._set_camera(True)
            self._mark_ready("camera")
            if frame is None:
                scanner.idle()
                if getattr(self._camera, "exhausted", False):  # a replay that ran out: nothing will come
                    self._stopping.wait(TICK_SECONDS)
                continue
            self._count("frames")
            try:
                event = scanner.feed(frame)
            except EdgeError as exc:  # a decoder failure costs this frame, not the camera thread
                log.warning("QR decoding failed: %s", type(exc).__name__)
                self._count("decode_errors")
                continue
            if event is None:
                continue
            if event.repeat and self._result_for_card_on_reader.is_set():
                self._count("qr_repeats_ignored")  # that card's result is already out: no second one
                continue
            if event.kind is ScanEventKind.CARD and event.qr is not None:
                self._count("qr_scans")
                key = KeySource(CanKey(can_from_id(event.qr.id_number)), event.qr)
                self._post(KeyOffered(self._clock(), key))
            else:  # no key from it; the officer sees the failure pattern, the office the reason on /event
                reason = "not_id_card"
                if event.kind is ScanEventKind.INCONSISTENT_CARD and event.qr is not None:
                    reason = f"qr_inconsistent: {','.join(event.qr.contradictions)}"  # codes only, nothing personal
                self._count(reason.partition(":")[0])
                self._post(QrRejected(self._clock(), reason))

    # --- the worker ----------------------------------------------------------------------------------------------

    def _run_worker(self) -> None:
        while not self._stopping.is_set():
            self.liveness.beat("worker")
            self._mark_ready("worker")
            try:
                job = self._work.get(timeout=TICK_SECONDS)
            except queue.Empty:
                self._retry_held()
                continue
            if self._aborted_attempt(job.attempt):
                continue
            try:
                if isinstance(job, StartRead):
                    self._read(job)
                else:
                    self._verify(job)
            except Exception as exc:  # noqa: BLE001  # anything unexpected ends this attempt as failed, never as a result
                log_unexpected(log, "attempt %d failed unexpectedly", exc, job.attempt)
                self._last_error = "internal_error"
                failure = (ReadFailed(self._clock(), job.attempt, "internal_error") if isinstance(job, StartRead)
                           else VerifyDone(self._clock(), job.attempt, ok=False, proven=False))
                self._post(failure)

    def _aborted_attempt(self, attempt: int) -> bool:
        """Whether ``attempt`` was aborted. Jobs reach the worker in attempt order, so the marks of older attempts
        are dropped here: the set holds the aborts still ahead of the worker, not one per aborted read ever."""
        with self._lock:
            self._aborted = {aborted for aborted in self._aborted if aborted >= attempt}
            return attempt in self._aborted

    def _take_context(self) -> None:
        """Make the reader watcher let go of the PC/SC context (its waits are cancelled until we hold it)."""
        self._reading.set()
        while not self._pcsc_lock.acquire(timeout=0.02):
            self._cancel_reader_wait()

    def _read(self, job: StartRead) -> None:
        assert self._reader is not None
        key = job.key
        assert isinstance(key, KeySource)
        request = ReadRequest(key.access, want_photo=key.include_photo, aa_challenge=job.challenge)
        self._count("reads_started")
        self.liveness.busy("worker", self.config.timeouts.reading + 5.0)
        started = time.monotonic()
        deadline = started + self.config.timeouts.reading  # past it the read ends (ReadDeadlineError): back to READY
        self._take_context()
        try:
            connection = self._reader.connect(self._present_reader or self.config.reader_name)
            try:
                read = read_chip(connection, request, expired=lambda: time.monotonic() >= deadline)
            finally:
                connection.close()
        except (CardRemovedError, NoCardError) as exc:
            self._count("reads_failed")
            log.info("attempt %d: card left the reader (%s)", job.attempt, type(exc).__name__)
            self._set_presence(False)
            self._post(ReadFailed(self._clock(), job.attempt, "card_removed"))
            return
        except EdgeError as exc:
            self._count("reads_failed")
            log.info("attempt %d: read failed: %s", job.attempt, type(exc).__name__)
            self._post(ReadFailed(self._clock(), job.attempt, type(exc).__name__))
            return
        finally:
            self._pcsc_lock.release()
            self._reading.clear()
            self.liveness.beat("worker")
        read_ms = int((time.monotonic() - started) * 1000)
        self._count("reads_ok")
        log.info("attempt %d: chip read, %d APDUs", job.attempt, read.stats.apdus)
        if read.dg13 is not None and (unconfirmed := read.dg13.unconfirmed_field_numbers):
            # Numbers only (no content): what a real 2024 card's DG13 carries beyond the confirmed layout.
            log.info("attempt %d: DG13 (%s card) carries fields %s beyond the confirmed layout (kept raw)",
                     job.attempt, read.dg13.generation or "undated", ", ".join(map(str, unconfirmed)))  # fmt: skip
        with self._lock:  # only the latest attempt can still be verified
            self._pending = {job.attempt: _PendingVerify(read, key, job.profile, job.request_id, read_ms,
                                                         job.challenge)}
        self._post(ReadSucceeded(self._clock(), job.attempt))

    def _verify(self, job: StartVerify) -> None:
        with self._lock:
            pending = self._pending.pop(job.attempt, None)
        if pending is None:
            return
        started = time.monotonic()
        document = self._document(pending, verify_started=started)
        if self._aborted_attempt(job.attempt):  # cancelled or card pulled while verifying: nothing leaves
            return
        ok = document.verdict is not Verdict.FAILED
        proven = document.verdict.proves_origin  # only a CSCA or a known Document Signer shows success
        storage_fault = None
        held = _HeldResult(self._signed(document), document.verdict, pending.request_id)
        try:
            seq = self._store(held)
        except (StorageError, OutboxFullError) as exc:  # the disk's fault, not the card's: kept, stored later
            storage_fault = self._hold(held, exc)
        except EdgeError as exc:
            ok = False
            self._count("results_refused")
            self._last_error = type(exc).__name__
            log.error("result not stored: %s", exc)
            self._event({"event": "result_not_stored", "reason": type(exc).__name__,
                         "request_id": pending.request_id})  # fmt: skip
        else:
            with self._lock:  # with _set_presence's update under the same lock: a card pulled meanwhile clears it
                if self._present:
                    self._result_for_card_on_reader.set()
            log.info("result seq %d: %s (%s)", seq, document.verdict.value,
                     mask_id(document.citizen.id_number) if document.citizen else "no citizen data")
        self._post(VerifyDone(self._clock(), job.attempt, ok, proven, storage_fault))
        self._post(self._delivery_facts)

    def _document(self, pending: _PendingVerify, *, verify_started: float) -> ResultDocument:
        """Verify and build the profile-filtered document; the verdict is verify_chip's, or failed."""
        read, key = pending.read, pending.key
        # One time evidence for the checks, completed_at and the clock object: they must agree.
        report = verify_chip(read, self._reload_trust(), now=self.clock_state.evidence(), qr=key.qr)
        checks = [Check.of(check) for check in report.checks]
        verdict = report.verdict
        try:
            if read.dg13 is None:
                raise ValueError("no DG13")
            photo = read.dg2.image if key.include_photo and read.dg2 is not None else None
            citizen: CitizenData | None = citizen_from(read.dg13, photo_jpeg=photo)
        except ValueError as exc:  # pydantic's ValidationError included
            citizen = None
            verdict = Verdict.FAILED
            reason = f"the card's personal data does not fit the result document ({type(exc).__name__})"
            checks.append(Check(name="citizen_data", status=CheckStatus.FAILED, reason=reason))
        qr_format = _QR_FORMATS[key.qr.format] if key.qr else None
        timing = ReadTiming(apdu_count=read.stats.apdus, read_ms=pending.read_ms,
                            verify_ms=int((time.monotonic() - verify_started) * 1000))  # fmt: skip
        return make_result(
            terminal_id=self.config.terminal_id, ward_code=self.config.ward_code,
            profile=pending.profile or self.config.procedure_profile, verdict=verdict, checks=checks,
            citizen=citizen, qr=QrUsage(used=key.qr is not None, format=qr_format),
            timing=timing, completed_at=report.verified_at, include_photo=key.include_photo,
            request_id=pending.request_id,
            active_auth=ActiveAuthEvidence.for_office(read.active_auth, read.dg15, pending.office_challenge),
            clock=ClockEvidence.of(report.clock),
        )  # fmt: skip

    def _signed(self, document: ResultDocument) -> Callable[[int], bytes]:
        """The document's token for a seq, signed once: a result the disk refused keeps the token signed at the read
        (its ``iat`` the read's time), and is signed again only if its seq went to another result meanwhile."""
        assert self._signer is not None
        body = document.model_dump(mode="json", exclude_none=True)
        # iat: the read's time as the clock state gave it (completed_at), never a time it knows to be wrong
        signer, encrypt_to, now = self._signer, self._encrypt_to, int(document.completed_at.timestamp())
        certificate = self._certificate
        signed: dict[int, bytes] = {}

        def token(seq: int) -> bytes:
            if seq not in signed:
                signed.clear()
                signed[seq] = result_token(signer, terminal_id=self.config.terminal_id, seq=seq, document=body,
                                           now=now, encrypt_to=encrypt_to, certificate=certificate)
            return signed[seq]

        return token

    def _store(self, result: _HeldResult) -> int:
        """Commit (durable before publish) after any result still held, then wake the publisher. Returns the seq."""
        self._store_held()
        seq = self._commit(result)
        self._held_backoff.reset()
        return seq

    def _commit(self, result: _HeldResult) -> int:
        assert self._outbox is not None
        assert self._publisher is not None
        _entry_id, seq = self._outbox.enqueue(result.token)
        self._publisher.notify()
        self._count("results_enqueued")
        self._count(f"verdict_{result.verdict.value}")
        return seq

    def _hold(self, result: _HeldResult, exc: StorageError | OutboxFullError) -> str:
        """Keep a result the disk refused (worker thread); returns the storage fault the officer is shown."""
        reason = "storage_error"
        if isinstance(exc, OutboxFullError | StorageFullError):
            reason = "outbox_full" if isinstance(exc, OutboxFullError) else "storage_full"
        self._last_error = reason
        self._held_retry_at = self._clock() + self._held_backoff.next_delay()
        if len(self._held) >= HELD_RESULTS_MAX:
            self._count("results_lost")
            log.error("result not stored (%s) and no room left to hold it: the read must be repeated", exc)
            self._event({"event": "result_not_stored", "reason": reason, "request_id": result.request_id,
                         "action": "repeat_read"})  # fmt: skip
            return "repeat_read"
        self._held.append(result)
        self._count("results_held")
        log.error("result held in memory until the disk has room (%s)", exc)
        self._event({"event": "result_held", "reason": reason, "request_id": result.request_id,
                     "held": len(self._held)})  # fmt: skip
        return "result_held"

    def _store_held(self) -> None:
        """Commit held results, oldest first (seq follows the order of the reads); raises on the first refused."""
        while self._held:
            seq = self._commit(self._held[0])
            result = self._held.popleft()
            log.info("held result stored late as seq %d", seq)
            self._event({"event": "result_stored", "seq": seq, "request_id": result.request_id, "late": True})

    def _retry_held(self) -> None:
        """Worker thread, when idle: try the held results again after a jittered backoff; READY once they are in."""
        if not self._held or self._clock() < self._held_retry_at:
            return
        try:
            self._store_held()
        except (StorageError, OutboxFullError) as exc:
            self._held_retry_at = self._clock() + self._held_backoff.next_delay()
            log.warning("%d held result(s) still not stored: %s", len(self._held), type(exc).__name__)
            return
        self._held_backoff.reset()
        self._post(self._delivery_facts)

