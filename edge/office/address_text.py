"""The administrative part of a card's free-text address: which segments name a commune, a district, a province.

DG13 writes an address as the registry printed it: ``"12 Đường Số 3, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh"``,
street first and province last, with abbreviations (``TP.``, ``TX.``, ``TT.``), a province with or without
``Tỉnh``/``Thành phố``, and sometimes no province at all. This module only splits and normalises; which segment is
which is decided against the list of units (:mod:`edge.office.admin_units`), because ``Thành phố`` names a province
or a district, and ``Phường 15`` means nothing without its district. The street part is never changed or parsed:
street names did not change with the 2025 rearrangement, and the address as read stays the record.

Nothing here raises on any text: odd input gives segments that match no unit.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: Unit types as they appear folded (longest first: "thanh pho" before "thanh"). Level: c commune, d district,
#: p province, ``"dp"`` either (``Thành phố`` is a province or a district).
UNIT_TYPES: tuple[tuple[str, str], ...] = (
    ("thanh pho", "dp"), ("thi tran", "c"), ("thi xa", "d"), ("dac khu", "c"), ("phuong", "c"), ("quan", "d"),
    ("huyen", "d"), ("tinh", "p"), ("xa", "c"),
)  # fmt: skip

#: Abbreviations a registry clerk writes before a unit's name, folded, with the type they stand for.
_ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("tp.", "thanh pho"), ("tp ", "thanh pho"), ("tx.", "thi xa"), ("tx ", "thi xa"), ("tt.", "thi tran"),
    ("tt ", "thi tran"), ("p.", "phuong"), ("q.", "quan"), ("h.", "huyen"), ("x.", "xa"), ("t.", "tinh"),
)  # fmt: skip

_BRACKETS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_LEADING_ZEROS = re.compile(r"\b0+(?=\d)")
_COUNTRY = frozenset({"viet nam", "vietnam", "vn"})
#: DG13 holds at most a few hundred characters; of a longer text only the end (where the units are) is parsed.
MAX_ADDRESS_CHARS = 1000


def fold(text: str) -> str:
    """Lowercase, without diacritics (``đ`` is ``d``), punctuation as spaces, numbers without leading zeros:
    ``"TP. Hồ Chí Minh"`` and ``"tp ho chi minh"`` fold alike; ``"Phường 05"`` folds as ``"phuong 5"``."""
    decomposed = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    bare = "".join(char for char in decomposed if not unicodedata.combining(char)).lower()
    return _LEADING_ZEROS.sub("", " ".join(_NOT_WORD.sub(" ", bare).split()))


@dataclass(frozen=True, slots=True)
class UnitName:
    """One segment read as a unit: its type as written (folded; ``None`` when the card wrote none) and its name."""

    text: str  # the segment as written on the card
    kind: str | None  # folded type ("phuong", "quan", "thanh pho", ...) or None
    name: str  # folded name without the type ("ben nghe", "1", "ho chi minh")

    @property
    def level(self) -> str:
        """Which levels the written type allows: ``c``, ``d``, ``p``, ``dp``, or ``cdp`` for no type."""
        return next((level for kind, level in UNIT_TYPES if kind == self.kind), "cdp")


def unit_name(segment: str) -> UnitName:
    """A segment as a unit name: the type separated from the name, abbreviations expanded."""
    lowered = " ".join(segment.lower().split())
    for short, kind in _ABBREVIATIONS:
        if lowered.startswith(short):
            lowered = f"{kind} {lowered[len(short):]}"
            break
    folded = fold(lowered)
    for kind, _ in UNIT_TYPES:
        if folded.startswith(kind + " ") and len(folded) > len(kind) + 1:
            return UnitName(segment, kind, folded[len(kind) + 1:])
    return UnitName(segment, None, folded)


def segments(address: str) -> tuple[str, ...]:
    """The comma-separated parts of an address, right to left is how units are read: bracketed remarks (a long
    address may carry "(nơi thường trú trước đây: ...)") and a trailing country are left out, blanks dropped."""
    text = address[-MAX_ADDRESS_CHARS:]
    for _ in range(3):  # nested brackets, bounded
        text = _BRACKETS.sub(" ", text)
    parts = [" ".join(part.split()) for part in re.split(r"[,;\n]", text)]
    parts = [part for part in parts if part and fold(part)]
    while parts and fold(parts[-1]) in _COUNTRY:
        parts.pop()
    return tuple(parts)
