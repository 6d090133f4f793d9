"""Consistency between what the card says in different places: DG1 (MRZ) vs DG13, the printed QR vs DG13, and the
ID number's structure vs date of birth and sex.

Passive authentication proves each data group was signed; it does not prove the issuer wrote the *same* person
into each of them, nor that the QR shown at the counter belongs to this chip (the QR is unsigned: anyone can print
one). Reasons name the fields that disagree and never their values, so a result can be logged and shipped
without personal data; ``detail`` maps each field to ``match`` / ``mismatch`` / ``not present``, and a passing
reason names the fields compared (a 2024 QR carries fields a 2021 one does not, and no place of origin at all: only
what both sides carry is compared, and the office must be able to see what that was).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Protocol

from edge.protocol.id_number import check_id_number
from edge.protocol.mrz import transliterate
from edge.protocol.verify.checks import ID_NUMBER_STRUCTURE, MRZ_VS_DG13, QR_VS_DG13, Check, CheckStatus

#: What the MRZ prints as the date of expiry of a card that never expires.
MRZ_NO_EXPIRY = "991231"
DG13_DATE_OF_EXPIRY_FIELD = 12
#: DG13 fields from this number on hold other document numbers (the old CMND, a cancelled ID: cccd-card.md).
DG13_OTHER_NUMBERS_FROM = 15
_MRZ_SEX = {"Nam": "M", "Nữ": "F"}
_MRZ_NAME_LENGTH = 30  # TD1 line 3: a name that fills it may have been truncated

MATCH, MISMATCH, ABSENT = "match", "mismatch", "not present"


class MrzLike(Protocol):
    """The DG1 fields compared (``edge.protocol.mrz.Mrz``)."""

    @property
    def document_number(self) -> str: ...
    @property
    def optional_data1(self) -> str: ...
    @property
    def date_of_birth(self) -> str: ...
    @property
    def sex(self) -> str: ...
    @property
    def date_of_expiry(self) -> str: ...
    @property
    def primary_identifier(self) -> str: ...
    @property
    def secondary_identifier(self) -> str: ...


class Dg13Like(Protocol):
    """The DG13 fields compared (``edge.protocol.lds.dg13.Dg13``)."""

    @property
    def id_number(self) -> str | None: ...
    @property
    def full_name(self) -> str | None: ...
    @property
    def date_of_birth(self) -> date | None: ...
    @property
    def sex(self) -> str | None: ...
    @property
    def place_of_residence(self) -> str | None: ...
    @property
    def date_of_issue(self) -> date | None: ...
    @property
    def date_of_expiry(self) -> date | None: ...
    @property
    def old_id_number(self) -> str | None: ...
    @property
    def father_name(self) -> str | None: ...
    @property
    def mother_name(self) -> str | None: ...
    @property
    def raw_fields(self) -> Mapping[int, str]: ...


class QrLike(Protocol):
    """The QR fields compared (``edge.protocol.cccd_qr.CccdQr``)."""

    @property
    def id_number(self) -> str: ...
    @property
    def old_id_number(self) -> str | None: ...
    @property
    def full_name(self) -> str: ...
    @property
    def date_of_birth(self) -> date: ...
    @property
    def sex(self) -> str: ...
    @property
    def place_of_residence(self) -> str: ...
    @property
    def date_of_issue(self) -> date: ...
    @property
    def cancelled_id_numbers(self) -> tuple[str, ...]: ...
    @property
    def parent_names(self) -> tuple[str, ...]: ...
    @property
    def unrecognised_extra_fields(self) -> tuple[int, ...]: ...


# --- normalisation ---------------------------------------------------------------------------------------------


def _text(value: str) -> str:
    """NFC with collapsed whitespace: the same words typed or encoded differently compare equal."""
    return " ".join(unicodedata.normalize("NFC", value).split())


def mrz_name(name: str) -> str:
    """Vietnamese name as the MRZ spells it (no diacritics, Đ -> D, apostrophes dropped), words single-spaced."""
    return " ".join(transliterate(name).replace("<", " ").split())


def _mrz_date_matches(mrz: str, day: date) -> bool:
    """``<`` in an MRZ date marks an unknown part (e.g. unknown day of birth) and matches anything."""
    expected = day.strftime("%y%m%d")
    return len(mrz) == 6 and all(m in ("<", e) for m, e in zip(mrz, expected, strict=True))


def _report(name: str, mismatch_intro: str, fields: dict[str, str], labels: dict[str, str],
            notes: tuple[str, ...] = ()) -> Check:  # fmt: skip
    bad = [labels[field] for field, outcome in fields.items() if outcome == MISMATCH]
    compared = [field for field, outcome in fields.items() if outcome != ABSENT]
    detail = dict(fields)
    if notes:
        detail["notes"] = "; ".join(notes)
    if bad:
        return Check(name, CheckStatus.FAILED, f"{mismatch_intro}: {', '.join(bad)}", detail)
    if not compared:
        return Check(name, CheckStatus.NOT_PERFORMED, "no field was present on both sides", detail)
    reason = (f"{len(compared)} fields agree: {', '.join(labels[field] for field in compared)}"
              + (f" ({'; '.join(notes)})" if notes else ""))  # fmt: skip
    return Check(name, CheckStatus.PASSED, reason, detail)


def _compare(left: object, right: object, equal: Callable[[], bool]) -> str:
    if left is None or right is None:
        return ABSENT
    return MATCH if equal() else MISMATCH


# --- DG1 vs DG13 -----------------------------------------------------------------------------------------------

_MRZ_LABELS = {
    "id_number": "ID number", "date_of_birth": "date of birth", "sex": "sex", "date_of_expiry": "date of expiry",
    "name": "name",
}  # fmt: skip


def crosscheck_mrz_dg13(mrz: MrzLike, dg13: Dg13Like) -> Check:
    """DG1 vs DG13. The CCCD MRZ document number is the last 9 digits of the ID and its optional data starts with
    the full 12-digit ID; ``991231`` means no expiry; the MRZ name is DG13's without diacritics."""
    notes: list[str] = []
    fields: dict[str, str] = {}
    idn = dg13.id_number
    fields["id_number"] = _compare(idn, mrz.document_number, lambda: bool(
        idn and len(idn) == 12 and mrz.document_number == idn[3:]
        and mrz.optional_data1.replace("<", "").startswith(idn)
    ))  # fmt: skip
    dob = dg13.date_of_birth
    fields["date_of_birth"] = _compare(dob, mrz.date_of_birth, lambda: dob is not None and _mrz_date_matches(
        mrz.date_of_birth, dob))  # fmt: skip
    sex = dg13.sex
    fields["sex"] = _compare(sex, mrz.sex, lambda: _MRZ_SEX.get(_text(sex or "")) == mrz.sex)
    fields["date_of_expiry"] = _expiry(mrz, dg13)
    fields["name"] = _name(mrz, dg13, notes)
    return _report(MRZ_VS_DG13, "the chip's MRZ (DG1) and personal data (DG13) disagree on", fields, _MRZ_LABELS,
                   tuple(notes))  # fmt: skip


def _expiry(mrz: MrzLike, dg13: Dg13Like) -> str:
    expiry = dg13.date_of_expiry
    if expiry is None:
        if dg13.raw_fields.get(DG13_DATE_OF_EXPIRY_FIELD) is None:
            return ABSENT
        return MATCH if mrz.date_of_expiry == MRZ_NO_EXPIRY else MISMATCH  # field 12 says "no expiry"
    return MATCH if _mrz_date_matches(mrz.date_of_expiry, expiry) else MISMATCH


def _name(mrz: MrzLike, dg13: Dg13Like, notes: list[str]) -> str:
    if dg13.full_name is None:
        return ABSENT
    printed = " ".join(f"{mrz.primary_identifier} {mrz.secondary_identifier}".replace("<", " ").split())
    expected = mrz_name(dg13.full_name)
    if printed == expected:
        return MATCH
    used = len(mrz.primary_identifier) + 2 + len(mrz.secondary_identifier)
    if used >= _MRZ_NAME_LENGTH and printed and expected.replace(" ", "").startswith(printed.replace(" ", "")):
        notes.append("the MRZ name is truncated to fit its line")
        return MATCH
    return MISMATCH


# --- QR vs DG13 ------------------------------------------------------------------------------------------------

_QR_LABELS = {
    "id_number": "ID number", "old_id_number": "old ID number", "full_name": "name", "date_of_birth": "date of birth",
    "sex": "sex", "place_of_residence": "place of residence", "date_of_issue": "date of issue",
    "cancelled_id_number": "cancelled ID number", "parents": "parents' names",
}  # fmt: skip


def crosscheck_qr_dg13(qr: QrLike | None, dg13: Dg13Like) -> Check:
    """The QR shown at the counter vs the chip's DG13 (``not_performed`` when no QR was used). Texts compare after
    Unicode NFC and whitespace normalisation; the old ID is compared only when both sides carry one.

    A 2024 QR's extras are compared when both sides carry them: each cancelled ID must be one of DG13's other
    12-digit numbers (fields 15 on), each parent's name one of DG13's father and mother (in any order: the QR's
    order is unconfirmed). Extras of unconfirmed meaning are counted in a note, never compared."""
    if qr is None:
        return Check(QR_VS_DG13, CheckStatus.NOT_PERFORMED, "no QR code was read")
    fields = {
        "id_number": _compare(dg13.id_number, qr.id_number, lambda: dg13.id_number == qr.id_number),
        "old_id_number": _compare(dg13.old_id_number, qr.old_id_number or None,
                                  lambda: dg13.old_id_number == qr.old_id_number),
        "full_name": _compare(dg13.full_name, qr.full_name, lambda: _text(dg13.full_name or "") == _text(
            qr.full_name)),
        "date_of_birth": _compare(dg13.date_of_birth, qr.date_of_birth, lambda: dg13.date_of_birth == qr.date_of_birth),
        "sex": _compare(dg13.sex, qr.sex, lambda: _text(dg13.sex or "") == _text(qr.sex)),
        "place_of_residence": _compare(dg13.place_of_residence, qr.place_of_residence, lambda: _text(
            dg13.place_of_residence or "") == _text(qr.place_of_residence)),
        "date_of_issue": _compare(dg13.date_of_issue, qr.date_of_issue, lambda: dg13.date_of_issue == qr.date_of_issue),
        "cancelled_id_number": _within(qr.cancelled_id_numbers, _dg13_other_numbers(dg13), str.strip),
        "parents": _within(qr.parent_names, (dg13.father_name, dg13.mother_name), _text),
    }  # fmt: skip
    unrecognised = len(qr.unrecognised_extra_fields)
    notes = [f"{unrecognised} QR field(s) of unconfirmed meaning not compared"] if unrecognised else []
    return _report(QR_VS_DG13, "the QR code and the chip disagree on", fields, _QR_LABELS, tuple(notes))


def _dg13_other_numbers(dg13: Dg13Like) -> set[str]:
    """DG13's 12-digit numbers beyond its ID (fields 15 on: an earlier personal ID number, if the card keeps one)."""
    texts = (text.strip() for number, text in dg13.raw_fields.items() if number >= DG13_OTHER_NUMBERS_FROM)
    return {text for text in texts if len(text) == 12 and text.isascii() and text.isdigit() and text != dg13.id_number}


def _within(printed: tuple[str, ...], chip: Iterable[str | None], normalise: Callable[[str], str]) -> str:
    """Every value the QR prints is one the chip holds; ``not present`` when either side has none."""
    on_chip = {normalise(value) for value in chip if value}
    if not printed or not on_chip:
        return ABSENT
    return MATCH if {normalise(value) for value in printed} <= on_chip else MISMATCH


# --- ID number structure ---------------------------------------------------------------------------------------

_FINDING_LABELS = {
    "malformed": "it is not 12 digits", "sex_mismatch": "sex", "century_mismatch": "century of birth",
    "birth_year_mismatch": "year of birth", "unknown_province": "province prefix not in the legacy table",
}  # fmt: skip


def check_id_structure(dg13: Dg13Like) -> Check:
    """``PPP G YY NNNNNN`` vs DG13's date of birth and sex. An unknown province is a warning (passed with a note):
    the rule defining the prefixes expired in 2024 and provinces merged in 2025."""
    if dg13.id_number is None or dg13.date_of_birth is None or dg13.sex is None:
        return Check(ID_NUMBER_STRUCTURE, CheckStatus.NOT_PERFORMED, "ID number, date of birth or sex is absent")
    findings = check_id_number(dg13.id_number, dg13.date_of_birth, _text(dg13.sex))
    errors = [_FINDING_LABELS.get(f.code, f.code) for f in findings if f.severity == "error"]
    warnings = [_FINDING_LABELS.get(f.code, f.code) for f in findings if f.severity != "error"]
    detail = {"findings": ", ".join(f.code for f in findings) or "none"}
    if errors:
        return Check(ID_NUMBER_STRUCTURE, CheckStatus.FAILED,
                     f"the ID number's structure disagrees with the card on: {', '.join(errors)}", detail)
    reason = "the ID number's structure agrees with date of birth and sex"
    if warnings:
        reason += f" (warning: {'; '.join(warnings)})"
    return Check(ID_NUMBER_STRUCTURE, CheckStatus.PASSED, reason, detail)
