"""Machine-readable zone: 7-3-1 check digits, TD1/TD3 parsing and TD1 encoding (ICAO 9303-3/4/5).

The CCCD carries a TD1 MRZ on its back and in DG1; foreign passports (DG12 cross-checks, test vectors) are TD3.
Parsing is strict about check digits because the MRZ is also the BAC/PACE password source: a wrong digit there
means a wrong key, and the error must say which field is wrong.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Literal

from edge.errors import MrzError

_WEIGHTS = (7, 3, 1)
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<")
TD1_LINE = 30
TD3_LINE = 44
#: Date of expiry printed on cards that never expire (cccd-card.md).
NO_EXPIRY = "991231"

MrzFormat = Literal["TD1", "TD3"]


def _ascii_digits(text: str) -> bool:
    """``str.isdigit`` alone takes any Unicode digit ('１', '٣'), which no MRZ or chip key can hold."""
    return text.isascii() and text.isdigit()


def char_value(ch: str) -> int:
    """ICAO value of one MRZ character: digits as themselves, A=10 ... Z=35, '<' = 0."""
    if ch.isdigit() and ch.isascii():
        return ord(ch) - ord("0")
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    if ch == "<":
        return 0
    raise MrzError(f"character {ch!r} is not allowed in an MRZ", what="MRZ")


def check_digit(field: str) -> str:
    """The 7-3-1 check digit of ``field`` as one character."""
    return str(sum(char_value(c) * _WEIGHTS[i % 3] for i, c in enumerate(field)) % 10)


@dataclass(frozen=True, slots=True)
class Mrz:
    """A parsed MRZ. Fillers are stripped from the right of each field; names have '<' turned into spaces.

    ``document_number`` is the full number, including the overflow of the TD1 long-number form; ``text`` keeps
    the lines exactly as read (joined without newlines) so DG1 can be re-encoded byte-for-byte.
    """

    format: MrzFormat
    document_code: str
    issuing_state: str
    document_number: str
    optional_data1: str
    date_of_birth: str  # YYMMDD
    sex: str  # M, F or '<'
    date_of_expiry: str  # YYMMDD
    nationality: str
    optional_data2: str
    primary_identifier: str
    secondary_identifier: str
    text: str

    @property
    def lines(self) -> tuple[str, ...]:
        size = TD1_LINE if self.format == "TD1" else TD3_LINE
        return tuple(self.text[i : i + size] for i in range(0, len(self.text), size))

    def mrz_information(self) -> str:
        """The BAC/PACE-MRZ password source of this document."""
        return mrz_information(self.document_number, self.date_of_birth, self.date_of_expiry)


def mrz_information(document_number: str, date_of_birth: str, date_of_expiry: str) -> str:
    """Document number + cd + DOB + cd + DOE + cd (ICAO 9303-11 4.3.2), the key seed of BAC and PACE-MRZ.

    Numbers shorter than 9 characters are padded with '<'; longer ones (TD1 long form) are used in full.
    """
    number = document_number.ljust(9, "<")
    for name, value in (("date of birth", date_of_birth), ("date of expiry", date_of_expiry)):
        if len(value) != 6 or not _ascii_digits(value):
            raise MrzError(f"{name} must be YYMMDD", what="MRZ")
    return (
        number
        + check_digit(number)
        + date_of_birth
        + check_digit(date_of_birth)
        + date_of_expiry
        + check_digit(date_of_expiry)
    )


def yymmdd(date: dt.date | None) -> str:
    """MRZ date; ``None`` (a card that never expires) becomes 991231."""
    return NO_EXPIRY if date is None else date.strftime("%y%m%d")


def _normalise_text(text: str) -> str:
    stripped = "".join(text.split())
    for pos, ch in enumerate(stripped):
        if ch not in _ALPHABET:
            raise MrzError(f"character {ch!r} is not allowed in an MRZ", what="MRZ", offset=pos)
    return stripped


def _verify(field_name: str, value: str, digit: str, offset: int, *, filler_ok: bool = False) -> None:
    if filler_ok and digit == "<" and set(value) <= {"<"}:
        return
    if digit != check_digit(value):
        raise MrzError(f"check digit of the {field_name} does not match", what="MRZ", offset=offset)


def _date(field_name: str, value: str, offset: int) -> str:
    if not _ascii_digits(value):
        raise MrzError(f"{field_name} is not YYMMDD", what="MRZ", offset=offset)
    return value


def _names(line: str) -> tuple[str, str]:
    primary, _, secondary = line.partition("<<")
    return primary.replace("<", " ").strip(), secondary.replace("<", " ").strip()


def parse_mrz(text: str) -> Mrz:
    """Parse a TD1 (3x30) or TD3 (2x44) MRZ; whitespace and line breaks are ignored.

    Raises :class:`MrzError` naming the field whose check digit fails, so the desk knows what to retype.
    """
    flat = _normalise_text(text)
    if len(flat) == 3 * TD1_LINE:
        return _parse_td1(flat)
    if len(flat) == 2 * TD3_LINE:
        return _parse_td3(flat)
    raise MrzError(f"{len(flat)} characters is neither TD1 (90) nor TD3 (88)", what="MRZ")


def _parse_td1(flat: str) -> Mrz:
    l1, l2, l3 = flat[0:30], flat[30:60], flat[60:90]
    number, number_cd, optional1 = l1[5:14], l1[14], l1[15:30]
    if number_cd == "<" and optional1.rstrip("<"):
        # Long form: the overflow and the real check digit continue in the optional data (9303-5 4.2.4).
        head = optional1.split("<", 1)[0]
        if len(head) < 2:
            raise MrzError("long document number has no check digit", what="MRZ", offset=15)
        number, number_cd = number + head[:-1], head[-1]
        optional1 = optional1[len(head) :]
    _verify("document number", number, number_cd, 14)
    dob, doe = _date("date of birth", l2[0:6], 30), _date("date of expiry", l2[8:14], 38)
    _verify("date of birth", dob, l2[6], 36)
    _verify("date of expiry", doe, l2[14], 44)
    _verify("composite", l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29], l2[29], 59)
    primary, secondary = _names(l3)
    return Mrz(
        format="TD1",
        document_code=l1[0:2].rstrip("<"),
        issuing_state=l1[2:5].rstrip("<"),
        document_number=number.rstrip("<"),
        optional_data1=optional1.rstrip("<"),
        date_of_birth=dob,
        sex=l2[7],
        date_of_expiry=doe,
        nationality=l2[15:18].rstrip("<"),
        optional_data2=l2[18:29].rstrip("<"),
        primary_identifier=primary,
        secondary_identifier=secondary,
        text=flat,
    )


def _parse_td3(flat: str) -> Mrz:
    l1, l2 = flat[0:44], flat[44:88]
    number = l2[0:9]
    _verify("document number", number, l2[9], 53)
    dob, doe = _date("date of birth", l2[13:19], 57), _date("date of expiry", l2[21:27], 65)
    _verify("date of birth", dob, l2[19], 63)
    _verify("date of expiry", doe, l2[27], 71)
    _verify("personal number", l2[28:42], l2[42], 86, filler_ok=True)
    _verify("composite", l2[0:10] + l2[13:20] + l2[21:43], l2[43], 87)
    primary, secondary = _names(l1[5:44])
    return Mrz(
        format="TD3",
        document_code=l1[0:2].rstrip("<"),
        issuing_state=l1[2:5].rstrip("<"),
        document_number=number.rstrip("<"),
        optional_data1=l2[28:42].rstrip("<"),
        date_of_birth=dob,
        sex=l2[20],
        date_of_expiry=doe,
        nationality=l2[10:13].rstrip("<"),
        optional_data2="",
        primary_identifier=primary,
        secondary_identifier=secondary,
        text=flat,
    )


def _field(value: str, size: int, name: str) -> str:
    value = value.upper().replace(" ", "<")
    if len(value) > size:
        raise MrzError(f"{name} longer than {size} characters", what="MRZ")
    for ch in value:
        char_value(ch)
    return value.ljust(size, "<")


def name_field(primary: str, secondary: str, size: int) -> str:
    """``PRIMARY<<SECONDARY<NAMES`` padded or truncated to ``size`` (simple truncation, 9303-3 4.6)."""
    primary_part = "<".join(primary.upper().split())
    secondary_part = "<".join(secondary.upper().split())
    joined = primary_part + ("<<" + secondary_part if secondary_part else "")
    return _field(joined[:size], size, "name")


def encode_td1(
    *,
    document_number: str,
    date_of_birth: str,
    sex: str,
    date_of_expiry: str,
    primary_identifier: str,
    secondary_identifier: str,
    document_code: str = "ID",
    issuing_state: str = "VNM",
    nationality: str = "VNM",
    optional_data1: str = "",
    optional_data2: str = "",
) -> str:
    """Three 30-character lines joined by newlines; numbers over 9 characters use the long form."""
    if len(document_number) > 9:
        overflow = document_number[9:] + check_digit(document_number)
        number_part = document_number[:9] + "<" + _field(overflow + "<" + optional_data1, 15, "optional data")
    else:
        number = _field(document_number, 9, "document number")
        number_part = number + check_digit(number) + _field(optional_data1, 15, "optional data")
    line1 = _field(document_code, 2, "document code") + _field(issuing_state, 3, "issuing state") + number_part
    for name, value in (("date of birth", date_of_birth), ("date of expiry", date_of_expiry)):
        if len(value) != 6 or not _ascii_digits(value):
            raise MrzError(f"{name} must be YYMMDD", what="MRZ")
    if sex not in ("M", "F", "<"):
        raise MrzError("sex must be M, F or <", what="MRZ")
    head = (
        date_of_birth
        + check_digit(date_of_birth)
        + sex
        + date_of_expiry
        + check_digit(date_of_expiry)
        + _field(nationality, 3, "nationality")
        + _field(optional_data2, 11, "optional data 2")
    )
    composite = check_digit(line1[5:30] + head[0:7] + head[8:15] + head[18:29])
    line3 = name_field(primary_identifier, secondary_identifier, TD1_LINE)
    return "\n".join((line1, head + composite, line3))


def cccd_td1(
    id_number: str, *, full_name: str, date_of_birth: dt.date, sex: str, date_of_expiry: dt.date | None
) -> str:
    """The CCCD back-side MRZ (cccd-card.md): number = ID[3:12], optional data = the 12-digit ID, '<' fill,
    and its check digit in the last position; ``sex`` is "Nam"/"Nữ" or "M"/"F"; no expiry -> 991231."""
    if len(id_number) != 12 or not _ascii_digits(id_number):
        raise MrzError("the personal ID number must have 12 digits", what="MRZ")
    mrz_sex = {"Nam": "M", "Nữ": "F"}.get(sex, sex)
    primary, secondary = split_name(transliterate(full_name))
    return encode_td1(
        document_number=id_number[3:],
        optional_data1=id_number.ljust(14, "<") + check_digit(id_number),
        date_of_birth=yymmdd(date_of_birth),
        sex=mrz_sex,
        date_of_expiry=yymmdd(date_of_expiry),
        primary_identifier=primary,
        secondary_identifier=secondary,
    )


def split_name(mrz_name: str) -> tuple[str, str]:
    """Split ``SURNAME<<GIVEN<NAMES`` into its two identifiers (spaces between given names)."""
    return _names(mrz_name)


def transliterate(name: str) -> str:
    """Vietnamese name -> MRZ name: no diacritics, Đ -> D, surname first: 'Nguyễn Văn An' -> 'NGUYEN<<VAN<AN'.

    Vietnamese names are written family name first, so the first word is the primary identifier.
    """
    plain = name.replace("Đ", "D").replace("đ", "d")
    decomposed = unicodedata.normalize("NFD", plain)
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).upper()
    cleaned = "".join(ch if "A" <= ch <= "Z" else " " for ch in ascii_only.replace("'", ""))
    words = cleaned.split()
    if not words:
        return ""
    return words[0] + ("<<" + "<".join(words[1:]) if len(words) > 1 else "")
