"""The QR code printed on a CCCD: ``|``-separated UTF-8 text, unsigned.

The QR only tells the terminal *which* chip key to try and what to cross-check against the chip; it proves nothing
(anyone can print one). So the parser is strict about the seven fields it needs and lenient about everything else.

The 2024 thẻ căn cước (Circular 16/2024/TT-BCA) prints the same seven fields first and adds, when the holder has
them, the cancelled personal ID number and (for children under 14) the parents' names. Their order is unconfirmed,
so the extra fields are kept raw (``extra_fields``) and read by what they look like, never by position: a field of
12-digit numbers is a cancelled ID (``cancelled_id_numbers``), a field of words is a parent's name
(``parent_names``), anything else stays raw and uncompared (``unrecognised_extra_fields``). None of them is ever a
reason to reject, and a QR without them parses the same.

An ID number that contradicts the QR's own date of birth or sex (``CccdQr.id_findings``) is *not* a reason to
reject either: the QR is still recognisably a CCCD QR, and the chip, not the QR, is the authority. Rejecting it as
"not an ID card" would tell the citizen to show another code and would make a genuinely mis-issued card (its signed
DG13 carrying the same contradiction) unreadable by camera. Instead the parsed QR carries the findings and
``consistent`` is False; whoever derives a chip key from it (the daemon's scanner) must not do so silently.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Literal

from edge.errors import QrFormatError
from edge.logsetup import mask_id, mask_name
from edge.protocol.card_generation import NEW_CARD_LAW_START, Generation, generation_of
from edge.protocol.id_number import IdFinding, check_id_number

NOT_ID_CARD = "not an ID card QR code"

_WHAT = "CCCD QR"
_FIELD_COUNT = 7
#: What separates several numbers in one extra field, should a card print more than one cancelled ID.
_NUMBER_SEPARATORS = re.compile(r"[,;\s]+")
#: Besides letters and combining marks, what a Vietnamese name may contain.
_NAME_PUNCTUATION = frozenset(" '’-.")
_SEXES: dict[str, Literal["Nam", "Nữ"]] = {"Nam": "Nam", "Nữ": "Nữ"}

Sex = Literal["Nam", "Nữ"]
QrLayout = Literal["2021", "2024"]


@dataclass(frozen=True, slots=True)
class CccdQr:
    """Fields 0–6 of a CCCD QR, typed; later fields raw, read by what they look like (the properties below).

    ``repr`` masks personal data so that an accidental log line or traceback does not leak it.
    """

    id_number: str
    old_id_number: str | None
    full_name: str
    date_of_birth: date
    sex: Sex
    place_of_residence: str
    date_of_issue: date
    extra_fields: tuple[str, ...] = ()
    format: QrLayout = "2021"

    def __repr__(self) -> str:
        return (
            f"CccdQr(id_number={mask_id(self.id_number)!r}, full_name={mask_name(self.full_name)!r}, "
            f"format={self.format!r}, extra_fields={len(self.extra_fields)})"
        )

    @property
    def id_findings(self) -> tuple[IdFinding, ...]:
        """How the ID number's structure agrees with this QR's date of birth and sex (empty: fully).

        Derived from the fields rather than stored, so a QR built or ``replace``-d in code can never carry stale
        findings.
        """
        return tuple(check_id_number(self.id_number, self.date_of_birth, self.sex))

    @property
    def contradictions(self) -> tuple[str, ...]:
        """Codes of the ``error`` findings: what this QR's ID number contradicts (no personal data)."""
        return tuple(finding.code for finding in self.id_findings if finding.severity == "error")

    @property
    def consistent(self) -> bool:
        """No ``error`` finding: an unknown province (a warning) still counts as consistent."""
        return not self.contradictions

    @property
    def generation(self) -> Generation:
        """The card this QR claims to be printed on, by its date of issue (``edge.protocol.card_generation``)."""
        return generation_of(self.date_of_issue)

    @property
    def cancelled_id_numbers(self) -> tuple[str, ...]:
        """The cancelled personal ID numbers a 2024 card prints: every 12-digit number in an extra field other than
        the card's own (a QR repeating its own number is not one that was cancelled)."""
        return tuple(number for text in self.extra_fields for number in self._earlier_ids(text))

    @property
    def parent_names(self) -> tuple[str, ...]:
        """The parents' names a 2024 card prints for a child (father first, by the Circular; the order is not
        relied on): every extra field that is only words, NFC-normalised."""
        return tuple(_name(text) for text in self.extra_fields if _is_name(text))

    @property
    def unrecognised_extra_fields(self) -> tuple[int, ...]:
        """Positions (0-based, in the whole QR) of non-empty extra fields that are neither: kept raw, never compared."""
        return tuple(_FIELD_COUNT + index for index, text in enumerate(self.extra_fields)
                     if text.strip() and not self._earlier_ids(text) and not _is_name(text))  # fmt: skip

    def _earlier_ids(self, text: str) -> tuple[str, ...]:
        return tuple(number for number in _id_numbers(text) if number != self.id_number)


def _id_numbers(text: str) -> tuple[str, ...]:
    """The 12-digit numbers ``text`` consists of (empty when it holds anything else)."""
    numbers = tuple(part for part in _NUMBER_SEPARATORS.split(text.strip()) if part)
    return numbers if numbers and all(_is_ascii_digits(part, (12,)) for part in numbers) else ()


def _name(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def _is_name(text: str) -> bool:
    """Letters (any script, with their marks), spaces and the punctuation of names, with at least one letter: a
    labelled field ("Cha: ...") or one with digits is not recognisably a name and stays raw."""
    name = _name(text)
    categories = [unicodedata.category(char)[0] for char in name]
    return "L" in categories and all(
        category in ("L", "M") or char in _NAME_PUNCTUATION for char, category in zip(name, categories, strict=True)
    )


def _is_ascii_digits(text: str, lengths: tuple[int, ...]) -> bool:
    return len(text) in lengths and text.isascii() and text.isdigit()


def _parse_date(text: str, field: int, offset: int) -> date:
    if not _is_ascii_digits(text, (8,)):
        raise QrFormatError(f"{NOT_ID_CARD}: field {field} is not a ddMMyyyy date", what=_WHAT, offset=offset)
    try:
        return date(int(text[4:]), int(text[2:4]), int(text[:2]))
    except ValueError:
        raise QrFormatError(f"{NOT_ID_CARD}: field {field} is not a valid date", what=_WHAT, offset=offset) from None


def _decode(payload: bytes | str) -> str:
    if isinstance(payload, str):
        return payload
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QrFormatError(f"{NOT_ID_CARD}: not valid UTF-8", what=_WHAT, offset=exc.start) from None


def parse_cccd_qr(payload: bytes | str) -> CccdQr:
    """Parse a CCCD QR from its raw bytes (decoded as UTF-8, never guessed) or its text.

    Raises :class:`QrFormatError` ("not an ID card QR code: ...") for anything else: payment codes, URLs, text.
    The message names the field, never its content. An ID number contradicting the date of birth or sex is parsed,
    with ``consistent`` False (see the module docstring).
    """
    text = _decode(payload).removeprefix("\ufeff").rstrip("\r\n")
    fields = text.split("|")
    if len(fields) < _FIELD_COUNT:
        raise QrFormatError(NOT_ID_CARD, what=_WHAT)
    offsets = [0]
    for field in fields[:-1]:
        offsets.append(offsets[-1] + len(field) + 1)

    id_number, old_id, full_name, dob_text, sex_text, residence, issue_text = fields[:_FIELD_COUNT]
    if not _is_ascii_digits(id_number, (12,)):
        raise QrFormatError(f"{NOT_ID_CARD}: field 0 is not a 12-digit ID number", what=_WHAT, offset=0)
    if old_id and not _is_ascii_digits(old_id, (9, 12)):
        raise QrFormatError(f"{NOT_ID_CARD}: field 1 is not a 9- or 12-digit number", what=_WHAT, offset=offsets[1])
    full_name = unicodedata.normalize("NFC", full_name.strip())
    if not full_name:
        raise QrFormatError(f"{NOT_ID_CARD}: field 2 (name) is empty", what=_WHAT, offset=offsets[2])
    date_of_birth = _parse_date(dob_text, 3, offsets[3])
    sex = _SEXES.get(unicodedata.normalize("NFC", sex_text.strip()))
    if sex is None:
        raise QrFormatError(f"{NOT_ID_CARD}: field 4 is not Nam or Nữ", what=_WHAT, offset=offsets[4])
    date_of_issue = _parse_date(issue_text, 6, offsets[6])
    if date_of_issue < date_of_birth:
        raise QrFormatError(f"{NOT_ID_CARD}: issued before birth", what=_WHAT, offset=offsets[6])

    extra = tuple(fields[_FIELD_COUNT:])
    # A 2024 card without extra fields is told apart only by its issue date.
    layout: QrLayout = "2024" if extra or date_of_issue >= NEW_CARD_LAW_START else "2021"
    return CccdQr(
        id_number=id_number,
        old_id_number=old_id or None,
        full_name=full_name,
        date_of_birth=date_of_birth,
        sex=sex,
        place_of_residence=unicodedata.normalize("NFC", residence.strip()),
        date_of_issue=date_of_issue,
        extra_fields=extra,
        format=layout,
    )


def _format_date(day: date) -> str:
    return f"{day.day:02d}{day.month:02d}{day.year:04d}"


def encode_cccd_qr(qr: CccdQr) -> str:
    """The QR text a card would carry for ``qr`` (the simulator, tests and benchmarks print it)."""
    fields = [
        qr.id_number,
        qr.old_id_number or "",
        qr.full_name,
        _format_date(qr.date_of_birth),
        qr.sex,
        qr.place_of_residence,
        _format_date(qr.date_of_issue),
        *qr.extra_fields,
    ]
    return "|".join(fields)
