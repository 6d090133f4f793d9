"""DG1 (tag 61): the MRZ as stored in the chip (5F1F), TD1 for the CCCD, TD3 for passports."""

from __future__ import annotations

from dataclasses import dataclass

from edge.errors import LdsError
from edge.protocol import tlv
from edge.protocol.lds.common import lds_errors, unwrap
from edge.protocol.mrz import Mrz, parse_mrz

TAG_DG1 = 0x61
TAG_MRZ = 0x5F1F


@dataclass(frozen=True, slots=True)
class Dg1:
    """DG1 content: the parsed MRZ (its ``text`` is the exact stored string)."""

    mrz: Mrz


def parse_dg1(data: bytes) -> Dg1:
    """Parse DG1; a check digit failure is an :class:`LdsError` (the chip's MRZ must be consistent)."""
    outer = unwrap(data, TAG_DG1, "DG1")
    with lds_errors("DG1"):
        inner = outer.require(TAG_MRZ)
        text = inner.value.decode("ascii")
        if "\n" in text or "\r" in text or " " in text:
            raise LdsError("MRZ in DG1 must not contain line breaks or spaces", what="DG1", offset=inner.offset)
        return Dg1(parse_mrz(text))


def encode_dg1(mrz_text: str) -> bytes:
    """DG1 holding ``mrz_text`` (line breaks removed); the text is validated by parsing it first."""
    flat = "".join(mrz_text.split())
    parse_mrz(flat)
    return tlv.encode(TAG_DG1, tlv.encode(TAG_MRZ, flat.encode("ascii")))
