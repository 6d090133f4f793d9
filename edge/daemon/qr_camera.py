"""The camera thread: frames -> :class:`~edge.daemon.scanner.QrScanner` -> a chip key (``KeyOffered``) or the
reason a QR gives none (``QrRejected``). The QR only yields the CAN and claims to cross-check; it proves nothing.

The QR-repeat policy: a QR left in view is offered again after ``camera.qr_repeat_after`` (the officer retries a
failed read without lifting the card), except when the card on the reader already has its result out: that card
must not produce a second result every 30 s (:meth:`~edge.daemon.presence.ReaderWatcher.result_stored_for_card`).
A repeat that reaches the state machine while it still reads or shows that card reports no "busy" either
(``edge.daemon.state``): only another card's QR or an office request is an interruption.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge.config import CameraConfig
from edge.daemon.scanner import QrScanner, ScanEvent, ScanEventKind
from edge.daemon.state import DeviceChanged, KeyOffered, QrRejected
from edge.daemon.tap import key_from_qr
from edge.daemon.threads import TICK_SECONDS, Shared
from edge.drivers.base import FrameSource, QrDecoder
from edge.drivers.cameras import open_configured_camera
from edge.errors import CameraError, EdgeError

log = logging.getLogger(__name__)


class QrCamera:
    """The configured camera (or ``camera``) and decoder (or ``decoder``); the ones it opened it also closes."""

    def __init__(self, shared: Shared, config: CameraConfig, *, camera: FrameSource | None,
                 decoder: QrDecoder | None, result_stored_for_card: Callable[[], bool]) -> None:  # fmt: skip
        self._shared = shared
        self._config = config
        self._camera = camera
        self._owns_camera = camera is None
        self._decoder = decoder
        self._owns_decoder = decoder is None
        self._result_stored_for_card = result_stored_for_card
        self._available = True

    def run(self) -> None:
        """The thread body: reopen a lost camera every second; one frame per turn."""
        from edge.drivers.qrdecoders import make_decoder  # the decoder libraries load with the camera thread

        if self._decoder is None:
            self._decoder = make_decoder()
        scanner: QrScanner | None = None
        while not self._shared.stopping.is_set():
            self._shared.liveness.beat("camera")
            try:
                if self._camera is None:
                    self._camera = open_configured_camera(self._config)
                if scanner is None:
                    scanner = QrScanner(self._camera, self._decoder, repeat_after=self._config.qr_repeat_after or None)
                frame = self._camera.read(TICK_SECONDS)
            except CameraError as exc:
                log.warning("camera: %s", exc)
                self._set_available(False)
                self._shared.mark_ready("camera")
                if self._owns_camera and self._camera is not None:
                    self._camera.close()
                    self._camera, scanner = None, None
                self._shared.stopping.wait(1.0)
                continue
            self._set_available(True)
            self._shared.mark_ready("camera")
            if frame is None:
                scanner.idle()
                if self._camera.exhausted:  # a replay that ran out: nothing will come
                    self._shared.stopping.wait(TICK_SECONDS)
                continue
            self._shared.count("frames")
            try:
                event = scanner.feed(frame)
            except EdgeError as exc:  # a decoder failure costs this frame, not the camera thread
                log.warning("QR decoding failed: %s", type(exc).__name__)
                self._shared.count("decode_errors")
                continue
            if event is not None:
                self._offer(event)

    def close(self) -> None:
        """Close what this object opened (after its thread has ended)."""
        if self._owns_camera and self._camera is not None:
            self._camera.close()
        if self._owns_decoder and self._decoder is not None:
            self._decoder.close()

    def _offer(self, event: ScanEvent) -> None:
        if event.repeat and self._result_stored_for_card():
            self._shared.count("qr_repeats_ignored")  # that card's result is already out: no second one
            return
        now = self._shared.monotonic()
        if event.kind is ScanEventKind.CARD and event.qr is not None:
            self._shared.count("qr_scans")
            self._shared.post(KeyOffered(now, key_from_qr(event.qr)))
            return
        # No key from it; the officer sees the failure pattern, the office the reason on /event.
        reason = "not_id_card"
        if event.kind is ScanEventKind.INCONSISTENT_CARD and event.qr is not None:
            reason = f"qr_inconsistent: {','.join(event.qr.contradictions)}"  # codes only, nothing personal
        self._shared.count(reason.partition(":")[0])
        self._shared.post(QrRejected(now, reason))

    def _set_available(self, available: bool) -> None:
        if available != self._available:
            self._available = available
            log.warning("camera %s", "back" if available else "lost")
            self._shared.post(DeviceChanged(self._shared.monotonic(), "camera", available))
