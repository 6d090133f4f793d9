"""Helpers every LDS parser shares: unwrap the file's outer tag and turn low-level faults into :class:`LdsError`.

Parsers run their body inside :func:`lds_errors` so that no IndexError/KeyError/ValueError/UnicodeDecodeError
(nor an asn1crypto failure) escapes: callers only ever see the file name and, where known, the offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

from edge.errors import LdsError, ParseError, TlvError
from edge.protocol import tlv

#: LDS tag of each data group's outer template (ICAO 9303-10 table 34), and back.
DG_TAGS: dict[int, int] = {
    1: 0x61, 2: 0x75, 3: 0x63, 4: 0x76, 5: 0x65, 6: 0x66, 7: 0x67, 8: 0x68,
    9: 0x69, 10: 0x6A, 11: 0x6B, 12: 0x6C, 13: 0x6D, 14: 0x6E, 15: 0x6F, 16: 0x70,
}  # fmt: skip
TAG_TO_DG: dict[int, int] = {tag: number for number, tag in DG_TAGS.items()}
TAG_COM = 0x60
TAG_SOD = 0x77


@contextmanager
def lds_errors(what: str) -> Iterator[None]:
    """Re-raise any parsing fault inside the block as :class:`LdsError` naming ``what``."""
    try:
        yield
    except LdsError:
        raise
    except ParseError as exc:  # TlvError / MrzError from the layers below: keep the offset
        raise LdsError(str(exc), what=what, offset=exc.offset) from exc
    except (IndexError, KeyError, ValueError, TypeError, UnicodeDecodeError, OverflowError, struct.error) as exc:
        raise LdsError(f"malformed content ({type(exc).__name__})", what=what) from exc


def unwrap(data: bytes, tag: int, what: str) -> tlv.Tlv:
    """Decode the single outer TLV of an LDS file and check its tag."""
    with lds_errors(what):
        outer = tlv.decode(bytes(data))
    if outer.tag != tag:
        raise LdsError(f"outer tag {outer.tag:X}, expected {tag:X}", what=what, offset=0)
    return outer


def decode_oid(value: bytes, what: str) -> str:
    """Dotted form of the content octets of an OBJECT IDENTIFIER; a malformed one is an LdsError naming ``what``."""
    try:
        return tlv.decode_oid(value, what)
    except TlvError as exc:
        raise LdsError("malformed OBJECT IDENTIFIER", what=what) from exc


def encode_oid(dotted: str) -> bytes:
    """DER OBJECT IDENTIFIER (full TLV)."""
    return tlv.encode(0x06, tlv.encode_oid(dotted))
