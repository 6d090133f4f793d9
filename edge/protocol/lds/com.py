"""EF.COM (tag 60): LDS and Unicode versions and the list of data groups present (tag list 5C).

EF.COM is not covered by the SOD, so readers use it only as a hint of what to read, never as evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge.errors import LdsError
from edge.protocol import tlv
from edge.protocol.lds.common import DG_TAGS, TAG_COM, TAG_TO_DG, lds_errors, unwrap

TAG_LDS_VERSION = 0x5F01
TAG_UNICODE_VERSION = 0x5F36
TAG_TAG_LIST = 0x5C


@dataclass(frozen=True, slots=True)
class ComFile:
    lds_version: str  # "0107" = LDS 1.7
    unicode_version: str  # "040000" = Unicode 4.0.0
    data_groups: tuple[int, ...]  # DG numbers in the order listed
    unknown_tags: tuple[int, ...] = ()  # listed tags that are not data groups


def parse_com(data: bytes) -> ComFile:
    outer = unwrap(data, TAG_COM, "EF.COM")
    with lds_errors("EF.COM"):
        lds = outer.require(TAG_LDS_VERSION).value.decode("ascii")
        unicode_obj = outer.find(TAG_UNICODE_VERSION)
        unicode_version = unicode_obj.value.decode("ascii") if unicode_obj else ""
        tag_list = outer.require(TAG_TAG_LIST)
        groups: list[int] = []
        unknown: list[int] = []
        pos = 0
        while pos < len(tag_list.value):  # the tag list holds bare tags (usually one byte each)
            tag, pos = tlv.read_tag(tag_list.value, pos)
            if tag in TAG_TO_DG:
                groups.append(TAG_TO_DG[tag])
            else:
                unknown.append(tag)
        if not (lds.isascii() and lds.isdigit() and len(lds) == 4):
            raise LdsError("LDS version is not 4 digits", what="EF.COM", offset=outer.offset)
        return ComFile(lds, unicode_version, tuple(groups), tuple(unknown))


def encode_com(data_groups: Iterable[int], *, lds_version: str = "0107", unicode_version: str = "040000") -> bytes:
    tags = b"".join(tlv.encode_tag(DG_TAGS[number]) for number in data_groups)
    return tlv.encode_constructed(
        TAG_COM,
        tlv.encode(TAG_LDS_VERSION, lds_version.encode("ascii")),
        tlv.encode(TAG_UNICODE_VERSION, unicode_version.encode("ascii")),
        tlv.encode(TAG_TAG_LIST, tags),
    )
