"""Pick a QR decoder by name. zxing-cpp is the default: it won ``bench/qr_bench.py`` (figures in the README)."""

from __future__ import annotations

from edge.drivers.base import QrDecoder
from edge.errors import ConfigError

DEFAULT_DECODER = "zxing"
DECODERS = ("zxing", "zbar")


def make_decoder(name: str = DEFAULT_DECODER) -> QrDecoder:
    """A new decoder instance (each holds native state: use one per thread)."""
    if name == "zxing":
        from edge.drivers.zxing import ZxingDecoder

        return ZxingDecoder()
    if name == "zbar":
        from edge.drivers.zbar import ZbarDecoder

        return ZbarDecoder()
    raise ConfigError(f"unknown QR decoder {name!r}; choose one of {', '.join(DECODERS)}", key="qr.decoder")
