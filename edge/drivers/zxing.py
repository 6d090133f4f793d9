"""QR decoding with zxing-cpp: raw ``.bytes`` of each symbol, never its guessed text.

zxing-cpp decodes the Vietnamese UTF-8 correctly and is about ten times faster than zbar on a 640x480 grey frame
(test-stack.md; ``bench/qr_bench.py`` measures both). Frames go in as a 2-D memoryview, without copying and
without numpy (~13 MB resident the daemon need not carry).

With ``accept`` set, a frame zxing finds nothing in goes up the QR ladder (``edge/drivers/qrladder.py``): crops of
the likely QR region, upscaled, then smoothed, sharpened or binarised; a symbol zxing located but could not decode (its
``return_errors`` results, free with the first pass) tells the ladder where to look first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from edge.drivers.base import DecodedSymbol, Frame
from edge.drivers.qrladder import Box, QrLadder
from edge.errors import QrDecoderUnavailableError


def _load() -> Any:
    try:
        import zxingcpp
    except ImportError as exc:
        raise QrDecoderUnavailableError(f"zxing-cpp is not installed: {exc}") from exc
    return zxingcpp


def _box(position: Any) -> Box:
    """The rectangle around a zxing result's four corners."""
    corners = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    xs, ys = [point.x for point in corners], [point.y for point in corners]
    return Box(min(xs), min(ys), max(xs) + 1, max(ys) + 1)


class ZxingDecoder:
    """zxing-cpp restricted to QR codes.

    ``try_invert`` is off: card QR codes are dark on light, and the inverted pass would double the time of every
    frame without a code. Rotation and downscaling stay on: cards are held at any angle and close to the lens.
    ``accept``: climb the QR ladder on a frame with nothing decoded, keeping only payloads it accepts (None: no
    ladder). Symbols the ladder found name their rung in ``decoder`` (``zxing+denoise``); ``clock`` times the
    ladder's budget.
    """

    name = "zxing"

    def __init__(self, *, try_rotate: bool = True, try_downscale: bool = True,
                 accept: Callable[[bytes], bool] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:  # fmt: skip
        self._zxing = _load()
        self._options: dict[str, Any] = {
            "formats": self._zxing.BarcodeFormat.QRCode,
            "try_rotate": try_rotate,
            "try_downscale": try_downscale,
            "try_invert": False,
            "return_errors": accept is not None,
        }
        self.ladder = QrLadder(self.decode_image, accept, clock=clock) if accept is not None else None

    def decode_image(self, image: Image.Image) -> list[bytes]:
        """Payloads in a ladder rung's image: no downscaled passes (the rung upscaled it on purpose)."""
        options = {**self._options, "try_downscale": False, "return_errors": False}
        return [bytes(result.bytes) for result in self._zxing.read_barcodes(image, **options) if result.valid]

    def decode(self, frame: Frame) -> Sequence[DecodedSymbol]:
        if not frame.width or not frame.height:  # a region of interest outside the frame: nothing to see
            return []
        pixels = memoryview(frame.pixels).cast("B", (frame.height, frame.width))
        results = self._zxing.read_barcodes(pixels, **self._options)
        symbols = [DecodedSymbol(raw=bytes(result.bytes), decoder=self.name) for result in results if result.valid]
        if symbols or self.ladder is None:
            return symbols
        rescue = self.ladder.rescue(frame, [_box(result.position) for result in results])
        return [DecodedSymbol(raw=rescue.raw, decoder=f"{self.name}+{rescue.rung}")] if rescue else []

    def close(self) -> None:
        """Nothing to release; present so both decoders can be closed alike."""
