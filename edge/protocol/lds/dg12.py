"""DG12 (tag 6C): additional document details (issuing authority, date of issue, endorsements, images)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.protocol.lds.tagged import encode_tagged, no_extra, parse_tagged

TAG_DG12 = 0x6C
TAG_OTHER_PERSON = 0x5F1A


@dataclass(frozen=True, slots=True)
class Dg12:
    issuing_authority: str | None = None  # 5F19
    date_of_issue: str | None = None  # 5F26, YYYYMMDD
    other_names: tuple[str, ...] = ()  # A0 { 02 n, 5F1A ... }: other persons in the document
    endorsements: str | None = None  # 5F1B
    tax_exit_requirements: str | None = None  # 5F1C
    image_of_front: bytes | None = None  # 5F1D
    image_of_rear: bytes | None = None  # 5F1E
    personalization_time: str | None = None  # 5F55, YYYYMMDDhhmmss
    personalization_device_serial: str | None = None  # 5F56
    unknown: Mapping[int, bytes] = field(default_factory=no_extra)


_TAGS = {
    "issuing_authority": 0x5F19, "date_of_issue": 0x5F26, "endorsements": 0x5F1B, "tax_exit_requirements": 0x5F1C,
    "image_of_front": 0x5F1D, "image_of_rear": 0x5F1E, "personalization_time": 0x5F55,
    "personalization_device_serial": 0x5F56,
}  # fmt: skip


def parse_dg12(data: bytes) -> Dg12:
    return parse_tagged(data, outer_tag=TAG_DG12, what="DG12", cls=Dg12, tags=_TAGS, other_name_tag=TAG_OTHER_PERSON,
                        binary=frozenset({"image_of_front", "image_of_rear"}))  # fmt: skip


def encode_dg12(dg12: Dg12) -> bytes:
    return encode_tagged(dg12, outer_tag=TAG_DG12, tags=_TAGS, other_name_tag=TAG_OTHER_PERSON)
