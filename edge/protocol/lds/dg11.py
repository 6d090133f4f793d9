"""DG11 (tag 6B): additional personal details. Absent on the CCCD (6A82), present on many foreign passports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.protocol.lds.tagged import encode_tagged, no_extra, parse_tagged

TAG_DG11 = 0x6B
TAG_OTHER_NAME = 0x5F0F


@dataclass(frozen=True, slots=True)
class Dg11:
    """Text stays as stored: dates may be partial (YYYYMMDD with zeros), names use MRZ-style '<' separators."""

    full_name: str | None = None  # 5F0E
    other_names: tuple[str, ...] = ()  # A0 { 02 n, 5F0F ... }
    personal_number: str | None = None  # 5F10
    full_date_of_birth: str | None = None  # 5F2B, YYYYMMDD
    place_of_birth: str | None = None  # 5F11
    permanent_address: str | None = None  # 5F42
    telephone: str | None = None  # 5F12
    profession: str | None = None  # 5F13
    title: str | None = None  # 5F14
    personal_summary: str | None = None  # 5F15
    proof_of_citizenship: bytes | None = None  # 5F16, an image
    other_valid_td_numbers: str | None = None  # 5F17
    custody_information: str | None = None  # 5F18
    unknown: Mapping[int, bytes] = field(default_factory=no_extra)


_TAGS = {
    "full_name": 0x5F0E, "personal_number": 0x5F10, "full_date_of_birth": 0x5F2B, "place_of_birth": 0x5F11,
    "permanent_address": 0x5F42, "telephone": 0x5F12, "profession": 0x5F13, "title": 0x5F14,
    "personal_summary": 0x5F15, "proof_of_citizenship": 0x5F16, "other_valid_td_numbers": 0x5F17,
    "custody_information": 0x5F18,
}  # fmt: skip


def parse_dg11(data: bytes) -> Dg11:
    return parse_tagged(data, outer_tag=TAG_DG11, what="DG11", cls=Dg11, tags=_TAGS, other_name_tag=TAG_OTHER_NAME,
                        binary=frozenset({"proof_of_citizenship"}))  # fmt: skip


def encode_dg11(dg11: Dg11) -> bytes:
    return encode_tagged(dg11, outer_tag=TAG_DG11, tags=_TAGS, other_name_tag=TAG_OTHER_NAME)
