"""The 12-digit personal ID number ``PPP G YY NNNNNN`` and its consistency with date of birth and sex.

The decree that defined this structure expired in July 2024 and provinces merged in 2025 (old numbers keep their
prefix), so an unknown province is only a warning. Sex/century digit and birth year disagreeing with the printed
date of birth and sex is a real inconsistency: a forged QR or a misread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Literal

from edge.errors import IdNumberError

#: Province of birth registration, the 63 legacy codes (cccd-card.md).
PROVINCES: MappingProxyType[str, str] = MappingProxyType({
    "001": "Hà Nội", "002": "Hà Giang", "004": "Cao Bằng", "006": "Bắc Kạn", "008": "Tuyên Quang",
    "010": "Lào Cai", "011": "Điện Biên", "012": "Lai Châu", "014": "Sơn La", "015": "Yên Bái",
    "017": "Hòa Bình", "019": "Thái Nguyên", "020": "Lạng Sơn", "022": "Quảng Ninh", "024": "Bắc Giang",
    "025": "Phú Thọ", "026": "Vĩnh Phúc", "027": "Bắc Ninh", "030": "Hải Dương", "031": "Hải Phòng",
    "033": "Hưng Yên", "034": "Thái Bình", "035": "Hà Nam", "036": "Nam Định", "037": "Ninh Bình",
    "038": "Thanh Hóa", "040": "Nghệ An", "042": "Hà Tĩnh", "044": "Quảng Bình", "045": "Quảng Trị",
    "046": "Thừa Thiên Huế", "048": "Đà Nẵng", "049": "Quảng Nam", "051": "Quảng Ngãi", "052": "Bình Định",
    "054": "Phú Yên", "056": "Khánh Hòa", "058": "Ninh Thuận", "060": "Bình Thuận", "062": "Kon Tum",
    "064": "Gia Lai", "066": "Đắk Lắk", "067": "Đắk Nông", "068": "Lâm Đồng", "070": "Bình Phước",
    "072": "Tây Ninh", "074": "Bình Dương", "075": "Đồng Nai", "077": "Bà Rịa - Vũng Tàu", "079": "Hồ Chí Minh",
    "080": "Long An", "082": "Tiền Giang", "083": "Bến Tre", "084": "Trà Vinh", "086": "Vĩnh Long",
    "087": "Đồng Tháp", "089": "An Giang", "091": "Kiên Giang", "092": "Cần Thơ", "093": "Hậu Giang",
    "094": "Sóc Trăng", "095": "Bạc Liêu", "096": "Cà Mau",
})

Severity = Literal["warning", "error"]


@dataclass(frozen=True, slots=True)
class IdNumber:
    """The fields encoded in a 12-digit ID number."""

    province_code: str
    province: str | None  # None: a prefix outside the legacy table
    sex: Literal["Nam", "Nữ"]
    birth_year: int
    serial: str


@dataclass(frozen=True, slots=True)
class IdFinding:
    """One disagreement; ``code`` is stable for machines, ``message`` never contains the number itself."""

    severity: Severity
    code: str
    message: str


def parse_id_number(id_number: str) -> IdNumber:
    """Split a 12-digit ID number; G = 2 x (century - 19) + (0 male | 1 female)."""
    if not (len(id_number) == 12 and id_number.isascii() and id_number.isdigit()):
        raise IdNumberError("an ID number has exactly 12 digits", what="ID number")
    province_code, g, yy = id_number[:3], int(id_number[3]), int(id_number[4:6])
    return IdNumber(
        province_code=province_code,
        province=PROVINCES.get(province_code),
        sex="Nữ" if g % 2 else "Nam",
        birth_year=1900 + 100 * (g // 2) + yy,
        serial=id_number[6:],
    )


def mrz_document_number(id_number: str) -> str:
    """BAC document number: the last 9 digits of the ID (9 characters, no filler)."""
    parse_id_number(id_number)
    return id_number[3:]


def can_from_id(id_number: str) -> str:
    """PACE card access number: the last 6 digits of the ID."""
    parse_id_number(id_number)
    return id_number[6:]


def check_id_number(id_number: str, date_of_birth: date, sex: str) -> list[IdFinding]:
    """Compare the ID's structure with the date of birth and sex printed next to it (QR, DG13 or MRZ).

    An empty list means consistent. A malformed number is one ``error`` finding, not an exception, so that the
    cross-check report lists it next to the others.
    """
    try:
        parsed = parse_id_number(id_number)
    except IdNumberError:
        return [IdFinding("error", "malformed", "the ID number is not 12 digits")]
    findings: list[IdFinding] = []
    if parsed.province is None:
        findings.append(IdFinding(
            "warning", "unknown_province", f"province prefix {parsed.province_code} is not in the legacy table",
        ))
    if parsed.sex != sex:
        findings.append(IdFinding(
            "error", "sex_mismatch", f"the ID number encodes sex {parsed.sex}, the card says {sex}",
        ))
    if parsed.birth_year // 100 != date_of_birth.year // 100:
        findings.append(IdFinding(
            "error", "century_mismatch",
            f"the ID number encodes birth in the {parsed.birth_year // 100 * 100}s, "
            f"the date of birth is in the {date_of_birth.year // 100 * 100}s",
        ))
    elif parsed.birth_year != date_of_birth.year:
        findings.append(IdFinding(
            "error", "birth_year_mismatch", "the ID number's birth year differs from the date of birth",
        ))
    return findings
