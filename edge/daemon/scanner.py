"""Camera frames -> QR decoder -> CCCD parser -> one event per card presentation.

A card held under the camera is decoded in every frame; the officer wants one read, and the LEDs one signal. So an
event fires when a payload appears that is not the one already in view, and the scanner re-arms once that payload
has been absent for ``absent_frames`` consecutive frames or for ``absent_seconds`` (a camera that stalls delivers
no frames to count). A card's QR that stays in view fires again every ``repeat_after`` seconds (``repeat`` set):
the officer who left the card on the stand after a failed read gets another attempt without lifting it.

A QR that is not a CCCD QR gives a ``NOT_ID_CARD`` event, also once per presentation, so the LEDs can tell the
citizen to show the other code. A CCCD QR whose ID number contradicts its own date of birth or sex gives an
``INCONSISTENT_CARD`` event, never ``CARD``: a consumer that derives a chip key only from ``CARD`` events thus never
does so from a QR shown to be inconsistent, and one that knows the kind can show the officer why. Time comes from
an injected clock; the CPU bound from an optional region of interest and subsampling applied before decoding. A
frame zxing alone cannot read climbs the QR ladder inside the decoder (``edge/drivers/qrladder.py``): its symbols
arrive here like any other, named ``zxing+<rung>``, and only ever CCCD QR codes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from edge.drivers.base import DecodedSymbol, Frame, FrameSource, QrDecoder
from edge.errors import QrFormatError
from edge.logsetup import mask_id
from edge.protocol.cccd_qr import CccdQr, parse_cccd_qr

log = logging.getLogger(__name__)


class ScanEventKind(Enum):
    CARD = "card"
    NOT_ID_CARD = "not_id_card"
    INCONSISTENT_CARD = "inconsistent_card"  # a CCCD QR whose ID number contradicts its date of birth or sex


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """One presentation: a parsed CCCD QR, or a QR that is not one or contradicts itself (``reason`` says why,
    without its content). ``repeat``: the same payload never left the view, ``repeat_after`` elapsed.
    """

    kind: ScanEventKind
    timestamp: float
    decoder: str
    qr: CccdQr | None = None
    reason: str = ""
    raw: bytes = field(default=b"", repr=False)  # personal data: never logged
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class Roi:
    """Region of interest in frame pixels: where the card rest puts the QR code."""

    left: int
    top: int
    width: int
    height: int


def prepare(frame: Frame, roi: Roi | None = None, subsample: int = 1) -> Frame:
    """Crop to ``roi`` and keep every ``subsample``-th pixel: fewer pixels, less CPU per frame.

    Plain byte slicing, one slice per kept row: numpy would cost the daemon ~13 MB resident for this alone."""
    if roi is None and subsample == 1:
        return frame
    box = roi or Roi(0, 0, frame.width, frame.height)
    left, top = min(max(box.left, 0), frame.width), min(max(box.top, 0), frame.height)
    right, bottom = min(left + box.width, frame.width), min(top + box.height, frame.height)
    rows = [frame.pixels[row * frame.width + left : row * frame.width + right : subsample]
            for row in range(top, bottom, subsample)]  # fmt: skip
    kept_width = len(rows[0]) if rows else 0
    return Frame(width=kept_width, height=len(rows), pixels=b"".join(rows), timestamp=frame.timestamp)


def _classify(symbols: list[DecodedSymbol]) -> tuple[DecodedSymbol, CccdQr | None, str] | None:
    """The symbol to report: the first CCCD QR if any (a frame may also show a payment code), else the first QR."""
    first_failure: tuple[DecodedSymbol, CccdQr | None, str] | None = None
    for symbol in symbols:
        try:
            return symbol, parse_cccd_qr(symbol.raw), ""
        except QrFormatError as exc:
            first_failure = first_failure or (symbol, None, str(exc))
    return first_failure


def _event(symbol: DecodedSymbol, qr: CccdQr | None, reason: str, now: float, *, repeat: bool) -> ScanEvent:
    if qr is None:
        log.info("a QR code that is not an ID card QR (%d bytes)", len(symbol.raw))
        return ScanEvent(ScanEventKind.NOT_ID_CARD, now, symbol.decoder, reason=reason, raw=symbol.raw)
    if not qr.consistent:
        codes = ", ".join(qr.contradictions)
        log.warning("card QR %s contradicts itself (%s) via %s", mask_id(qr.id_number), codes, symbol.decoder)
        return ScanEvent(ScanEventKind.INCONSISTENT_CARD, now, symbol.decoder, qr=qr, raw=symbol.raw,
                         reason=f"the ID number contradicts the QR's date of birth or sex: {codes}")
    log.info("card QR %s (%s layout) via %s", mask_id(qr.id_number), qr.format, symbol.decoder)
    return ScanEvent(ScanEventKind.CARD, now, symbol.decoder, qr=qr, raw=symbol.raw, repeat=repeat)


class QrScanner:
    """Turns frames into :class:`ScanEvent` s, one per presentation. Not thread-safe: one loop owns it."""

    def __init__(
        self,
        source: FrameSource,
        decoder: QrDecoder,
        *,
        absent_frames: int = 5,
        absent_seconds: float = 2.0,
        repeat_after: float | None = 30.0,
        roi: Roi | None = None,
        subsample: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``repeat_after`` None: a payload fires once until it leaves the view. The 30 s default outlasts a whole
        attempt (the daemon's ``reading`` 20 s + ``show_result`` 5 s timeouts), so a repeat finds the terminal
        ready again rather than busy with the attempt the first event started."""
        self._source = source
        self._decoder = decoder
        self._absent_frames = absent_frames
        self._absent_seconds = absent_seconds
        self._repeat_after = repeat_after
        self._roi = roi
        self._subsample = subsample
        self._clock = clock
        self._in_view: bytes | None = None
        self._last_seen = 0.0
        self._fired_at = 0.0
        self._misses = 0

    def feed(self, frame: Frame) -> ScanEvent | None:
        """Decode one frame; the event if it starts a new presentation or repeats one still in view."""
        now = self._clock()
        self._expire(now)
        found = _classify(list(self._decoder.decode(prepare(frame, self._roi, self._subsample))))
        if found is None:
            self._misses += 1
            self._expire(now)
            return None
        symbol, qr, reason = found
        still_in_view = symbol.raw == self._in_view
        self._in_view, self._last_seen, self._misses = symbol.raw, now, 0
        # Only a card's QR repeats (a retry of its read); anything else is shown once per presentation.
        if still_in_view and not (self._repeat_due(now) and qr is not None and qr.consistent):
            return None
        self._fired_at = now
        return _event(symbol, qr, reason, now, repeat=still_in_view)

    def idle(self) -> None:
        """No frame arrived: only the clock can re-arm the scanner."""
        self._expire(self._clock())

    def _repeat_due(self, now: float) -> bool:
        return self._repeat_after is not None and now - self._fired_at >= self._repeat_after

    def _expire(self, now: float) -> None:
        if self._in_view is not None and (
            self._misses >= self._absent_frames or now - self._last_seen >= self._absent_seconds
        ):
            self._in_view = None

    def events(self, *, timeout: float = 0.5, until: Callable[[], bool] = lambda: False) -> Iterator[ScanEvent]:
        """Read frames until ``until()`` is true, yielding each new presentation."""
        while not until():
            frame = self._source.read(timeout)
            if frame is None:
                self.idle()
                continue
            event = self.feed(frame)
            if event is not None:
                yield event
