"""The counter terminal, composed: keys, trust, clock, outbox, devices and MQTT, and the threads that run a tap.

A tap, top-down (:mod:`edge.daemon.tap` has the stages): the reader watcher (:mod:`edge.daemon.presence`) sees the
card and the camera (:mod:`edge.daemon.qr_camera`) its QR; the loop (:mod:`edge.daemon.loop`), the only thread that
steps the state machine (:mod:`edge.daemon.state`), pairs key and card; the worker (:mod:`edge.daemon.worker`) reads,
verifies, builds the document, seals and stores it (:mod:`edge.daemon.result_store`); the publisher
(:class:`~edge.daemon.mqtt.ResultPublisher`, paho's network thread and its own) delivers it and deletes it on the
office gateway's receipt (:mod:`edge.daemon.receipts`; PUBACK-only delivery: on PUBACK). Office commands arrive
through the publisher and are verified on the loop (:mod:`edge.daemon.office_commands`).
The threads share one queue of typed items and their counters (:mod:`edge.daemon.threads`).

This module only builds those parts and starts and stops them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from edge.config import Config
from edge.daemon.clock import CLOCK_FILE, ClockState, NtpState, kernel_ntp_synchronised
from edge.daemon.ds_list import list_keys
from edge.daemon.health import Liveness
from edge.daemon.loop import TerminalLoop
from edge.daemon.mqtt import PUBLISHER_THREAD, MqttSettings, ResultPublisher
from edge.daemon.office_commands import CommandVerifier, ReplayGuard
from edge.daemon.outbox import OUTBOX_FILE, Outbox
from edge.daemon.presence import ReaderWatcher
from edge.daemon.qr_camera import QrCamera
from edge.daemon.receipts import RECEIPTS_FILE, ReceiptChecker
from edge.daemon.result_store import ResultStore, Sealer
from edge.daemon.state import Machine, Snapshot, State
from edge.daemon.storage import sqlite_errors_typed
from edge.daemon.threads import CommandArrived, DeliveryNews, Shared
from edge.daemon.trust import TerminalTrust
from edge.daemon.worker import Worker
from edge.drivers.base import CardReaderDriver, FrameSource, QrDecoder
from edge.drivers.leds import Indicators
from edge.drivers.reader_leds import CombinedIndicators, IndicatorBackend, ReaderIndicators
from edge.errors import ConfigError
from edge.protocol.jose import Signer, key_id
from edge.protocol.receipt import ReceiptClaims
from edge.signers import check_certified_key, device_signer, load_public_key

#: Loop threads whose liveness gates the systemd watchdog.
THREADS = ("loop", "reader", "camera", "worker", PUBLISHER_THREAD)


class Terminal:
    """The daemon's composition. ``None`` drivers are built from ``config`` (the real ones on a Pi).

    ``start()`` opens the outbox, keys and devices and starts the threads (a :class:`~edge.errors.ConfigError`
    names the key when a configured file is unusable); ``stop()`` is idempotent. ``state``/``stats`` are for
    tests and status only. ``clock`` is the monotonic clock every part reads; ``ntp`` answers whether the kernel's
    clock is NTP-synchronised (:mod:`edge.daemon.clock`: tests replace the source, the rest runs as in production).
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
        self._shared = Shared(clock, self.liveness)
        self._camera_source = camera
        self._decoder = decoder
        self._reader = reader_driver
        self._owns_reader = reader_driver is None
        self._pin_factory = pin_factory
        self._ntp = ntp
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False
        # Opened by start():
        self._time: ClockState | None = None
        self._signer: Signer | None = None
        self._outbox: Outbox | None = None
        self._publisher: ResultPublisher | None = None
        self._indicators: IndicatorBackend | None = None
        self._replay: ReplayGuard | None = None
        self._receipt_replay: ReplayGuard | None = None
        self._watcher: ReaderWatcher | None = None
        self._camera: QrCamera | None = None
        self._loop: TerminalLoop | None = None

    # --- public API ----------------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.snapshot.state

    @property
    def snapshot(self) -> Snapshot:
        return self._loop.snapshot if self._loop is not None else Snapshot()

    @property
    def stats(self) -> dict[str, int]:
        """Counters (reads, results, verdicts, commands, frames...): a copy."""
        return self._shared.stats()

    @property
    def publisher(self) -> ResultPublisher | None:
        return self._publisher

    @property
    def outbox(self) -> Outbox | None:
        return self._outbox

    @property
    def clock_state(self) -> ClockState:
        """The wall time and how far to trust it (after start())."""
        assert self._time is not None
        return self._time

    def start(self) -> Terminal:
        if self._started:
            return self
        self._started = True
        try:
            parts = self._open()
        except BaseException:
            self.stop()
            raise
        for name, target in parts:
            thread = threading.Thread(target=self._shared.guarded(name, target), name=f"terminal-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        assert self._publisher is not None
        self._publisher.start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        """True once every thread has run and the reader and camera have been looked at once."""
        return self._shared.wait_ready(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._shared.stopping.set()
        if self._watcher is not None:
            self._watcher.cancel_wait()
        for thread in self._threads:
            thread.join(timeout)
        for name in THREADS:
            self.liveness.forget(name)
        if self._publisher is not None:
            self._publisher.stop()
        if self._time is not None:
            self._time.close()  # the last trusted time: the floor after a reboot
        for closer in (self._indicators, self._outbox, self._replay, self._receipt_replay, self._signer,
                       self._camera):  # fmt: skip
            if closer is not None:  # the signer: a token logs out; the camera: what it opened
                closer.close()
        if self._owns_reader and self._reader is not None:
            self._reader.close()

    def __enter__(self) -> Terminal:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- start-up ------------------------------------------------------------------------------------------------

    def _open(self) -> list[tuple[str, Callable[[], None]]]:
        """Open keys, trust, clock, outbox and devices and build the parts; returns the thread bodies by name."""
        config, paths, shared = self.config, self.config.paths, self._shared
        self._signer = signer = device_signer(paths.device_key)
        certificate = None
        if paths.device_cert is not None:
            # else the office would reject every result; the gateway checks it against the ward CA (x5c)
            certificate = check_certified_key(signer, paths.device_cert)
        encrypt_to = None
        if paths.ward_encryption_key is not None:
            encrypt_to = load_public_key(paths.ward_encryption_key, config_key="paths.ward_encryption_key")
        ward_key = None
        if paths.ward_command_key is not None:
            ward_key = load_public_key(paths.ward_command_key, config_key="paths.ward_command_key")
        province = [load_public_key(path, config_key="trust.ds_list_keys") for path in config.trust.ds_list_keys]
        trust = TerminalTrust(shared, paths.trust_store, paths.state_dir, ward_code=config.ward_code,
                              list_keys=list_keys(ward=ward_key, province=province))  # fmt: skip
        trust.current()
        if config.indicators.gpio:  # opened first: pins held by another process fail the start at once
            self._indicators = Indicators(config.indicators, pin_factory=self._pin_factory)
        self._time = clock = ClockState(paths.state_dir / CLOCK_FILE, ntp=self._ntp, monotonic=shared.monotonic)
        self._outbox = outbox = Outbox(paths.state_dir / OUTBOX_FILE, max_count=config.outbox.max_count,
                                       max_bytes=config.outbox.max_bytes,
                                       min_free_bytes=config.outbox.min_free_bytes)  # fmt: skip
        commands = None
        if ward_key is not None:
            with sqlite_errors_typed(paths.state_dir / "commands.db"):  # a full disk says so, not "OperationalError"
                self._replay = ReplayGuard(paths.state_dir / "commands.db")
            commands = CommandVerifier(ward_key, config.terminal_id, self._replay,
                                       default_profile=config.procedure_profile, encrypted=encrypt_to is not None)
        receipts = self._receipt_checker(clock, ward_key) if config.delivery.mode == "receipt" else None
        if self._reader is None:
            from edge.drivers.pcsc import PcscReaderDriver

            self._reader = PcscReaderDriver()
        self._publisher = publisher = ResultPublisher(
            MqttSettings.from_config(config), outbox, on_command=self._command_arrived,
            on_link_change=self._delivery_changed, on_delivered=self._delivery_changed, receipts=receipts,
            on_receipt=self._receipt_believed, liveness=self.liveness,
        )  # fmt: skip
        shared.events_to(publisher.publish_event)
        shared.post(DeliveryNews())
        results = ResultStore(shared, Sealer(signer, config.terminal_id, encrypt_to, certificate), outbox, publisher)
        reader_leds = config.indicators.reader_leds if config.indicators.reader_leds != "off" else None
        self._watcher = watcher = ReaderWatcher(shared, self._reader, config.reader_name, reader_leds=reader_leds)
        self._indicators = indicators = self._indicators_with_reader(watcher if reader_leds is not None else None)
        indicators.show(Snapshot().indicator.value)
        self._camera = camera = QrCamera(shared, config.camera, camera=self._camera_source, decoder=self._decoder,
                                         result_stored_for_card=watcher.result_stored_for_card)  # fmt: skip
        worker = Worker(shared, reader=self._reader, watcher=watcher, reader_name=config.reader_name,
                        read_timeout=config.timeouts.reading, trust=trust, clock=clock, results=results,
                        terminal_id=config.terminal_id, ward_code=config.ward_code,
                        default_profile=config.procedure_profile)  # fmt: skip
        self._loop = loop = TerminalLoop(shared, Machine(config.timeouts), worker=worker, results=results,
                                         publisher=publisher, indicators=indicators, clock=clock, trust=trust,
                                         commands=commands)  # fmt: skip
        return [("loop", loop.run), ("reader", watcher.run), ("camera", camera.run), ("worker", worker.run)]

    def _indicators_with_reader(self, watcher: ReaderWatcher | None) -> IndicatorBackend:
        """Every state on the GPIO LEDs (when wired) and on the reader's own (``watcher``: when enabled; the watcher
        holds the PC/SC context they need, and skips a reader whose profile has no LEDs the terminal drives)."""
        parts: list[IndicatorBackend] = [self._indicators] if self._indicators is not None else []
        if watcher is not None:
            parts.append(ReaderIndicators(watcher.send_to_reader))
        return parts[0] if len(parts) == 1 else CombinedIndicators(*parts)

    def _receipt_checker(self, clock: ClockState, ward_key: ec.EllipticCurvePublicKey | None) -> ReceiptChecker:
        """What believes the office's receipts (``delivery.mode = "receipt"``): under ``ward_key`` (the ward command
        key, as loaded for the commands) and ``trust.receipt_keys`` (``Config.receipt_keys`` names the same files).
        Without a key to verify them no result could ever leave the outbox, so the terminal does not start."""
        keys = [] if ward_key is None else [ward_key]
        keys += [load_public_key(path, config_key="trust.receipt_keys") for path in self.config.trust.receipt_keys]
        if not keys:
            raise ConfigError('receipts need a key to verify them: set paths.ward_command_key (the gateway signs '
                              'receipts with the ward command key) or trust.receipt_keys; a ward whose office sends '
                              'no receipts sets delivery.mode = "puback"', key="delivery.mode")  # fmt: skip
        database = self.config.paths.state_dir / RECEIPTS_FILE
        with sqlite_errors_typed(database):
            self._receipt_replay = ReplayGuard(database)
        return ReceiptChecker({key_id(key): key for key in keys}, terminal_id=self.config.terminal_id,
                              ward_code=self.config.ward_code, replay=self._receipt_replay,
                              time=clock.evidence)  # fmt: skip

    # --- paho's thread and the publisher's -----------------------------------------------------------------------

    def _receipt_believed(self, claims: ReceiptClaims) -> None:
        """A receipt is the office's signed time too: its ``iat`` is a lower bound of the time now (the publisher
        thread's monotonic time is later than its arrival, so the projection stays a lower bound)."""
        assert self._time is not None
        self._time.observe_office_time(claims.iat, self._shared.monotonic())

    def _command_arrived(self, payload: bytes) -> None:
        # when the office's signed time reached us, for the clock's projection
        self._shared.post(CommandArrived(payload, self._shared.monotonic()))

    def _delivery_changed(self, _news: object) -> None:
        self._shared.post(DeliveryNews())
