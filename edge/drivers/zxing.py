"""QR decoding with zxing-cpp: raw ``.bytes`` of each symbol, never its guessed text.

zxing-cpp decodes the Vietnamese UTF-8 correctly and is about ten times faster than zbar on a 640x480 grey frame
(test-stack.md; ``bench/qr_bench.py`` measures both). Frames go in as a 2-D memoryview, without copying and
without numpy (~13 MB resident the daemon need not carry).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge.drivers.base import DecodedSymbol, Frame
from edge.errors import QrDecoderUnavailableError


def _load() -> Any:
    try:
        import zxingcpp
    except ImportError as exc:
        raise QrDecoderUnavailableError(f"zxing-cpp is not installed: {exc}") from exc
    return zxingcpp


class ZxingDecoder:
    """zxing-cpp restricted to QR codes.

    ``try_invert`` is off: card QR codes are dark on light, and the inverted pass would double the time of every
    frame without a code. Rotation and downscaling stay on: cards are held at any angle and close to the lens.
    """

    name = "zxing"

    def __init__(self, *, try_rotate: bool = True, try_downscale: bool = True) -> None:
        self._zxing = _load()
        self._options: dict[str, Any] = {
            "formats": self._zxing.BarcodeFormat.QRCode,
            "try_rotate": try_rotate,
            "try_downscale": try_downscale,
            "try_invert": False,
        }

    def decode(self, frame: Frame) -> Sequence[DecodedSymbol]:
        if not frame.width or not frame.height:  # a region of interest outside the frame: nothing to see
            return []
        pixels = memoryview(frame.pixels).cast("B", (frame.height, frame.width))
        results = self._zxing.read_barcodes(pixels, **self._options)
        return [DecodedSymbol(raw=bytes(result.bytes), decoder=self.name) for result in results if result.valid]

    def close(self) -> None:
        """Nothing to release; present so both decoders can be closed alike."""
