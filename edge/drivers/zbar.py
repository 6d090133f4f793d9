"""QR decoding with zbar (through pyzbar's ctypes bindings), in binary mode.

Without ``ZBAR_CFG_BINARY`` zbar guesses the text encoding and turns some Vietnamese UTF-8 ("Huế",
"Phạm Ngọc Thạch") into Shift-JIS mojibake. pyzbar does not expose that option (its ``ZBarConfig`` stops at
``CFG_ASCII``), so this driver builds its own scanner with pyzbar's ctypes functions and asks libzbar itself, via
``zbar_parse_config("qrcode.binary=1")``, for the option's number rather than hard-coding it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from edge.drivers.base import DecodedSymbol, Frame
from edge.errors import QrDecoderUnavailableError

_Y800 = 0x30303859  # fourcc 'Y800': 8-bit grey


def _load() -> Any:
    try:
        from pyzbar import wrapper
    except (ImportError, OSError) as exc:  # OSError: libzbar0 missing
        raise QrDecoderUnavailableError(f"zbar is not usable: {exc}") from exc
    return wrapper


class ZbarDecoder:
    """zbar restricted to QR codes, returning the raw bytes of each symbol. One instance per thread."""

    name = "zbar"

    def __init__(self) -> None:
        self._scanner: Any = None
        self._zbar = _load()
        symbology, config, value = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        if self._zbar.zbar_parse_config(b"qrcode.binary=1", ctypes.byref(symbology), ctypes.byref(config),
                                        ctypes.byref(value)):
            raise QrDecoderUnavailableError("this libzbar has no binary mode (needs zbar >= 0.23)")
        self._scanner = self._zbar.zbar_image_scanner_create()
        if not self._scanner:
            raise QrDecoderUnavailableError("zbar could not create an image scanner")
        qrcode = self._zbar.ZBarSymbol.QRCODE
        enable = self._zbar.ZBarConfig.CFG_ENABLE
        self._zbar.zbar_image_scanner_set_config(self._scanner, 0, enable, 0)  # 0: every symbology
        self._zbar.zbar_image_scanner_set_config(self._scanner, qrcode, enable, 1)
        if self._zbar.zbar_image_scanner_set_config(self._scanner, qrcode, config.value, 1):
            self.close()
            raise QrDecoderUnavailableError("zbar refused binary mode for QR codes")

    def decode(self, frame: Frame) -> Sequence[DecodedSymbol]:
        zbar = self._zbar
        image = zbar.zbar_image_create()
        if not image:
            raise QrDecoderUnavailableError("zbar could not allocate an image")
        try:
            zbar.zbar_image_set_format(image, _Y800)
            zbar.zbar_image_set_size(image, frame.width, frame.height)
            # zbar only reads the buffer, and frame.pixels outlives the call: no copy needed.
            data = ctypes.cast(ctypes.c_char_p(frame.pixels), ctypes.c_void_p)
            zbar.zbar_image_set_data(image, data, len(frame.pixels), None)
            if zbar.zbar_scan_image(self._scanner, image) <= 0:
                return []
            symbols: list[DecodedSymbol] = []
            symbol = zbar.zbar_image_first_symbol(image)
            while symbol:
                raw = ctypes.string_at(zbar.zbar_symbol_get_data(symbol), zbar.zbar_symbol_get_data_length(symbol))
                symbols.append(DecodedSymbol(raw=raw, decoder=self.name))
                symbol = zbar.zbar_symbol_next(symbol)
            return symbols
        finally:
            zbar.zbar_image_destroy(image)

    def close(self) -> None:
        if self._scanner:
            self._zbar.zbar_image_scanner_destroy(self._scanner)
            self._scanner = None

    def __del__(self) -> None:
        self.close()
