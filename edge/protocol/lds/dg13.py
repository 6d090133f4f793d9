"""DG13 (tag 6D): the Vietnam-specific personal data of the CCCD (cccd-card.md).

Layout: ``6D { 30 { INTEGER version, OID 1.0.10646.1.0.8, SET { 30 { INTEGER n, string } ... } } }``; field 13
nests father and mother, field 14 the spouse. Fields are read by number, never by position, and any may be
absent. Fields 15/16 differ between sources, so the old ID number is taken from whichever is a 9- or 12-digit
number and every flat field also stays available raw.

The 2024 thẻ căn cước: whether its DG13 layout changed is not public. So the parser is strict only about what is
confirmed (fields 1–16 as above) and keeps everything else without failing the read: a text field of another number
stays in ``raw_fields``, a field of another number holding anything but text (a nested SEQUENCE, another ASN.1 type)
and a flat field found nested stay in ``raw_values`` as the TLV the chip sent, and ``field_numbers`` lists what the
card carried so a real card's layout shows up in `cccd-edge read`. The 2024 card prints a place of birth
registration; :data:`PLACE_OF_BIRTH_REGISTRATION` is where this code (and the simulator) expects it, a provisional
number: it is typed only on a card issued from 2024-07-01 and only when it is text, and its text stays raw too.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from edge.errors import LdsError
from edge.protocol import tlv
from edge.protocol.card_generation import Generation, generation_of
from edge.protocol.lds.common import decode_oid, encode_oid, lds_errors, unwrap

TAG_DG13 = 0x6D
#: 1.0.10646.1.0.8: ISO 10646 UTF-8, the character set the card declares.
UTF8_OID = "1.0.10646.1.0.8"
NO_EXPIRY_TEXT = "Không thời hạn"

ID_NUMBER, FULL_NAME, DATE_OF_BIRTH, SEX, NATIONALITY, ETHNICITY, RELIGION = 1, 2, 3, 4, 5, 6, 7
PLACE_OF_ORIGIN, PLACE_OF_RESIDENCE, IDENTIFYING_MARKS, DATE_OF_ISSUE, DATE_OF_EXPIRY = 8, 9, 10, 11, 12
PARENTS, SPOUSE, EXTRA_15, EXTRA_16 = 13, 14, 15, 16
#: Provisional (module docstring): no public 2024 DG13 shows which number carries the place of birth registration.
PLACE_OF_BIRTH_REGISTRATION = 17
#: The field numbers whose meaning and type are confirmed (cccd-card.md): anything else is kept, never refused.
CONFIRMED_FIELDS = frozenset(range(ID_NUMBER, EXTRA_16 + 1))

_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


def _empty_mapping() -> Mapping[int, str]:
    return MappingProxyType({})


def _empty_values() -> Mapping[int, bytes]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Dg13:
    """Typed DG13. ``date_of_expiry`` None means the card never expires (or field 12 is absent: see
    ``raw_fields``). ``raw_fields`` holds every flat field's text, NFC-normalised, by field number; ``raw_values``
    the fields that are not text where no confirmed layout says what they are (DER TLV of the value, as sent);
    ``field_numbers`` every number the card carried, sorted (empty for a DG13 built in code)."""

    id_number: str | None = None
    full_name: str | None = None
    date_of_birth: dt.date | None = None
    sex: str | None = None
    nationality: str | None = None
    ethnicity: str | None = None
    religion: str | None = None
    place_of_origin: str | None = None
    place_of_residence: str | None = None
    identifying_marks: str | None = None
    date_of_issue: dt.date | None = None
    date_of_expiry: dt.date | None = None
    father_name: str | None = None
    mother_name: str | None = None
    spouse_name: str | None = None
    old_id_number: str | None = None
    place_of_birth_registration: str | None = None
    raw_fields: Mapping[int, str] = field(default_factory=_empty_mapping)
    raw_values: Mapping[int, bytes] = field(default_factory=_empty_values)
    field_numbers: tuple[int, ...] = ()
    version: int = 1
    charset_oid: str = UTF8_OID

    @property
    def generation(self) -> Generation | None:
        """The card generation by the date of issue (``edge.protocol.card_generation``); None without one."""
        return None if self.date_of_issue is None else generation_of(self.date_of_issue)

    @property
    def unconfirmed_field_numbers(self) -> tuple[int, ...]:
        """Numbers the card carried beyond the confirmed layout (what a real 2024 card would teach us)."""
        return tuple(number for number in self.field_numbers if number not in CONFIRMED_FIELDS)


# --- parsing ---------------------------------------------------------------------------------------------------


#: Field numbers and the version are small; a longer INTEGER is hostile (printing one of 10,000 digits raises).
_MAX_INTEGER_BYTES = 4


def _integer(obj: tlv.Tlv) -> int:
    if obj.tag != 0x02 or not obj.value:
        raise LdsError("INTEGER expected", what="DG13", offset=obj.offset)
    if len(obj.value) > _MAX_INTEGER_BYTES:
        raise LdsError(f"INTEGER of {len(obj.value)} bytes, more than a field number needs", what="DG13",
                       offset=obj.offset)  # fmt: skip
    return int.from_bytes(obj.value, "big", signed=True)


def _text(obj: tlv.Tlv) -> str:
    encoding = _STRING_TAGS.get(obj.tag)
    if encoding is None:
        raise LdsError(f"tag {obj.tag:X} is not a string type", what="DG13", offset=obj.offset)
    try:
        return unicodedata.normalize("NFC", obj.value.decode(encoding))
    except UnicodeDecodeError as exc:
        raise LdsError(f"string is not valid {encoding}", what="DG13", offset=obj.offset) from exc


def _text_or_none(obj: tlv.Tlv) -> str | None:
    """The text of a field whose type no confirmed layout fixes; None when it is not (valid) text."""
    try:
        return _text(obj)
    except LdsError:
        return None


def parse_date(text: str, *, offset: int | None = None) -> dt.date:
    """dd/mm/yyyy (also accepts '-' or '.' separators and ddmmyyyy, seen in other Vietnamese sources)."""
    cleaned = text.strip().replace("-", "/").replace(".", "/")
    parts = cleaned.split("/") if "/" in cleaned else [cleaned[0:2], cleaned[2:4], cleaned[4:]]
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts) or len(parts[2]) != 4:
        raise LdsError("date is not dd/mm/yyyy", what="DG13", offset=offset)
    try:
        return dt.date(int(parts[2]), int(parts[1]), int(parts[0]))
    except ValueError as exc:
        raise LdsError("date does not exist", what="DG13", offset=offset) from exc


def _is_no_expiry(text: str) -> bool:
    return unicodedata.normalize("NFC", text).strip().casefold() == NO_EXPIRY_TEXT.casefold()


def _is_id_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) in (9, 12)


def parse_dg13(data: bytes) -> Dg13:
    outer = unwrap(data, TAG_DG13, "DG13")
    with lds_errors("DG13"):
        body = outer.children()
        if len(body) != 1 or body[0].tag != 0x30:
            raise LdsError("DG13 must hold one SEQUENCE", what="DG13", offset=outer.offset)
        items = body[0].children()
        if len(items) != 3 or items[1].tag != 0x06 or items[2].tag != 0x31:
            raise LdsError("expected version, OID and a SET of fields", what="DG13", offset=body[0].offset)
        version = _integer(items[0])
        charset = decode_oid(items[1].value, "DG13")
        flat: dict[int, str] = {}
        nested: dict[int, tuple[str, ...]] = {}
        raw: dict[int, bytes] = {}
        offsets: dict[int, int] = {}
        for element in items[2].children():
            parts = element.children() if element.tag == 0x30 else []
            if len(parts) != 2:
                raise LdsError("field is not SEQUENCE { INTEGER, value }", what="DG13", offset=element.offset)
            number, value = _integer(parts[0]), parts[1]
            if number in offsets:
                raise LdsError(f"field {number} appears twice", what="DG13", offset=element.offset)
            offsets[number] = element.offset
            if number in (PARENTS, SPOUSE) and value.tag == 0x30:
                nested[number] = tuple(_text(child) for child in value.children())
            elif number in CONFIRMED_FIELDS and value.tag != 0x30:
                flat[number] = _text(value)
            elif (text := None if value.tag == 0x30 else _text_or_none(value)) is not None:
                flat[number] = text
            else:  # unconfirmed content, or a flat field found nested: kept as sent, never a failed read
                raw[number] = value.to_bytes()
        return _typed(version, charset, _Fields(flat, nested, raw, offsets))


@dataclass(frozen=True, slots=True)
class _Fields:
    """A DG13's fields as decoded, before typing."""

    flat: dict[int, str]
    nested: dict[int, tuple[str, ...]]
    raw: dict[int, bytes]
    offsets: dict[int, int]


def _typed(version: int, charset: str, fields: _Fields) -> Dg13:
    flat, nested, offsets = fields.flat, fields.nested, fields.offsets
    def date_field(number: int) -> dt.date | None:
        text = flat.get(number)
        if text is None or (number == DATE_OF_EXPIRY and (_is_no_expiry(text) or not text.strip())):
            return None
        return parse_date(text, offset=offsets.get(number))

    parents = nested.get(PARENTS, ())
    spouse = nested.get(SPOUSE, ())
    old_id = next((flat[n].strip() for n in (EXTRA_15, EXTRA_16) if _is_id_number(flat.get(n, "").strip())), None)
    issued = date_field(DATE_OF_ISSUE)
    birth_registration = flat.get(PLACE_OF_BIRTH_REGISTRATION)
    if issued is None or generation_of(issued) != "2024":
        birth_registration = None  # the provisional number means nothing on a 2021 card: raw only
    return Dg13(
        id_number=flat.get(ID_NUMBER),
        full_name=flat.get(FULL_NAME),
        date_of_birth=date_field(DATE_OF_BIRTH),
        sex=flat.get(SEX),
        nationality=flat.get(NATIONALITY),
        ethnicity=flat.get(ETHNICITY),
        religion=flat.get(RELIGION),
        place_of_origin=flat.get(PLACE_OF_ORIGIN),
        place_of_residence=flat.get(PLACE_OF_RESIDENCE),
        identifying_marks=flat.get(IDENTIFYING_MARKS),
        date_of_issue=issued,
        date_of_expiry=date_field(DATE_OF_EXPIRY),
        father_name=(parents[0] or None) if len(parents) > 0 else None,
        mother_name=(parents[1] or None) if len(parents) > 1 else None,
        spouse_name=(spouse[0] or None) if spouse else None,
        old_id_number=old_id,
        place_of_birth_registration=birth_registration,
        raw_fields=MappingProxyType(dict(flat)),
        raw_values=MappingProxyType(dict(fields.raw)),
        field_numbers=tuple(sorted(offsets)),
        version=version,
        charset_oid=charset,
    )


# --- encoding --------------------------------------------------------------------------------------------------


def format_date(date: dt.date) -> str:
    return date.strftime("%d/%m/%Y")


def _expiry_text(dg13: Dg13) -> str | None:
    """A date, "Không thời hạn" for no expiry, or None when a parsed DG13 had no field 12 at all."""
    if dg13.date_of_expiry is not None:
        return format_date(dg13.date_of_expiry)
    if dg13.field_numbers and DATE_OF_EXPIRY not in dg13.field_numbers:
        return None
    return dg13.raw_fields.get(DATE_OF_EXPIRY, NO_EXPIRY_TEXT)


def _utf8(text: str) -> bytes:
    return tlv.encode(0x0C, text.encode("utf-8"))


def _field(number: int, value: bytes) -> bytes:
    return tlv.encode_constructed(0x30, tlv.encode(0x02, bytes((number,))), value)


def encode_dg13(dg13: Dg13) -> bytes:
    """Encode as the card does: fields in number order, UTF8String, father+mother and spouse nested.

    ``raw_fields`` entries with numbers above 14 are written as given; the old ID goes to field 15 unless
    ``raw_fields`` already carries it in 15 or 16; the place of birth registration goes to field
    :data:`PLACE_OF_BIRTH_REGISTRATION`; ``raw_values`` are written back as they were read. A ``None`` expiry is
    written as "Không thời hạn", except when ``raw_fields`` (a parsed DG13) shows the card had no field 12.
    """
    texts: dict[int, str] = {}
    for number, value in (
        (ID_NUMBER, dg13.id_number),
        (FULL_NAME, dg13.full_name),
        (DATE_OF_BIRTH, format_date(dg13.date_of_birth) if dg13.date_of_birth else None),
        (SEX, dg13.sex),
        (NATIONALITY, dg13.nationality),
        (ETHNICITY, dg13.ethnicity),
        (RELIGION, dg13.religion),
        (PLACE_OF_ORIGIN, dg13.place_of_origin),
        (PLACE_OF_RESIDENCE, dg13.place_of_residence),
        (IDENTIFYING_MARKS, dg13.identifying_marks),
        (DATE_OF_ISSUE, format_date(dg13.date_of_issue) if dg13.date_of_issue else None),
        (DATE_OF_EXPIRY, _expiry_text(dg13)),
        (PLACE_OF_BIRTH_REGISTRATION, dg13.place_of_birth_registration),
    ):
        if value is not None:
            texts[number] = value
    texts.update({n: t for n, t in dg13.raw_fields.items() if n > SPOUSE})
    if dg13.old_id_number and dg13.old_id_number not in (texts.get(EXTRA_15), texts.get(EXTRA_16)):
        texts[EXTRA_15] = dg13.old_id_number
    for number in (*texts, *dg13.raw_values):  # before any is encoded: a parsed DG13 may carry any INTEGER
        if not 0 < number < 128:
            raise LdsError(f"field number {number} out of range", what="DG13")
    fields: dict[int, bytes] = {number: _field(number, _utf8(text)) for number, text in texts.items()}
    fields.update({number: _field(number, value) for number, value in dg13.raw_values.items()})
    if dg13.father_name is not None or dg13.mother_name is not None:
        fields[PARENTS] = _field(
            PARENTS, tlv.encode_constructed(0x30, _utf8(dg13.father_name or ""), _utf8(dg13.mother_name or ""))
        )
    if dg13.spouse_name is not None:
        fields[SPOUSE] = _field(SPOUSE, tlv.encode_constructed(0x30, _utf8(dg13.spouse_name)))
    if not 0 <= dg13.version < 128:
        raise LdsError("version out of range", what="DG13")
    body = tlv.encode_constructed(
        0x30,
        tlv.encode(0x02, bytes((dg13.version,))),
        encode_oid(dg13.charset_oid),
        tlv.encode_constructed(0x31, *(fields[n] for n in sorted(fields))),
    )
    return tlv.encode(TAG_DG13, body)
