"""Pick a QR decoder by name. zxing-cpp is the default: it won ``bench/qr_bench.py`` (figures in the README)."""

from __future__ import annotations

from edge.drivers.base import QrDecoder
from edge.errors import ConfigError, QrFormatError
from edge.protocol.cccd_qr import parse_cccd_qr

DEFAULT_DECODER = "zxing"
DECODERS = ("zxing", "zbar")


def is_cccd_qr(raw: bytes) -> bool:
    """Whether ``raw`` parses as a CCCD QR: the QR ladder's gate, so its extra attempts can never add a misread."""
    try:
        parse_cccd_qr(raw)
    except QrFormatError:
        return False
    return True


def make_decoder(name: str = DEFAULT_DECODER, *, ladder: bool = True) -> QrDecoder:
    """A new decoder instance (each holds native state: use one per thread). ``ladder``: zxing climbs the QR
    ladder on frames it found nothing in, for CCCD QR codes only (``edge/drivers/qrladder.py``)."""
    if name == "zxing":
        from edge.drivers.zxing import ZxingDecoder

        return ZxingDecoder(accept=is_cccd_qr if ladder else None)
    if name == "zbar":
        from edge.drivers.zbar import ZbarDecoder

        return ZbarDecoder()
    raise ConfigError(f"unknown QR decoder {name!r}; choose one of {', '.join(DECODERS)}", key="qr.decoder")
