"""Shared mechanics of DG11 and DG12: a tag list (5C) followed by optional tagged text or image fields.

Both files have the same shape (ICAO 9303-10 4.7.11/4.7.12), so one parser and one encoder serve both; each
file's module only declares its fields and tags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from edge.errors import LdsError
from edge.protocol import tlv
from edge.protocol.lds.common import lds_errors, unwrap

TAG_TAG_LIST = 0x5C
TAG_OTHER_NAMES = 0xA0
TAG_COUNT = 0x02


class TaggedFile(Protocol):
    @property
    def unknown(self) -> Mapping[int, bytes]: ...


_T = TypeVar("_T", bound=TaggedFile)


def no_extra() -> Mapping[int, bytes]:
    return MappingProxyType({})


def parse_tagged(
    data: bytes, *, outer_tag: int, what: str, cls: Callable[..., _T], tags: Mapping[str, int], other_name_tag: int,
    binary: frozenset[str] = frozenset(),
) -> _T:  # fmt: skip
    """Fields by tag into ``cls``; unknown tags are kept raw; other names (A0) must match their count."""
    outer = unwrap(data, outer_tag, what)
    by_tag = {tag: name for name, tag in tags.items()}
    values: dict[str, Any] = {}
    unknown: dict[int, bytes] = {}
    with lds_errors(what):
        for child in outer.children():
            if child.tag == TAG_TAG_LIST:
                continue
            if child.tag == TAG_OTHER_NAMES:
                names = [c for c in child.children() if c.tag == other_name_tag]
                count = child.find(TAG_COUNT)
                if count is not None and int.from_bytes(count.value, "big") != len(names):
                    raise LdsError("count of other names does not match", what=what, offset=child.offset)
                values["other_names"] = tuple(c.value.decode("utf-8") for c in names)
                continue
            name = by_tag.get(child.tag)
            if name is None:
                unknown[child.tag] = child.value
            elif name in values:
                raise LdsError(f"tag {child.tag:X} appears twice", what=what, offset=child.offset)
            else:
                values[name] = child.value if name in binary else child.value.decode("utf-8")
    return cls(**values, unknown=MappingProxyType(unknown))


def encode_tagged(obj: TaggedFile, *, outer_tag: int, tags: Mapping[str, int], other_name_tag: int) -> bytes:
    elements: list[bytes] = []
    listed: list[int] = []
    for item in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, item.name)
        if item.name == "other_names" and value:
            names = [tlv.encode(other_name_tag, n.encode("utf-8")) for n in value]
            count = tlv.encode(TAG_COUNT, len(value).to_bytes(2, "big").lstrip(b"\0") or b"\0")
            elements.append(tlv.encode_constructed(TAG_OTHER_NAMES, count, *names))
            listed.append(TAG_OTHER_NAMES)
        elif item.name in tags and value is not None:
            elements.append(tlv.encode(tags[item.name], value if isinstance(value, bytes) else value.encode("utf-8")))
            listed.append(tags[item.name])
    for tag, raw in obj.unknown.items():
        elements.append(tlv.encode(tag, raw))
        listed.append(tag)
    tag_list = tlv.encode(TAG_TAG_LIST, b"".join(tlv.encode_tag(tag) for tag in listed))
    return tlv.encode_constructed(outer_tag, tag_list, *elements)
