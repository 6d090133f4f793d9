"""When a CCCD expires, and the BAC keys worth trying when only the QR is known.

The QR carries no expiry date, but BAC needs it. The law fixes it: a card must be renewed at ages 14 (cards
issued from 2024-07-01 only), 25, 40 and 60; a card issued within 2 years before one of those ages lasts until the
next one; a card issued at 58 or later never expires (MRZ ``991231``). With ``age`` = completed years at the issue
date, the card expires on the birthday of the first threshold ``t`` with ``age < t - 2``.

Born on 29 February: in a non-leap year the birthday is taken as **28 February**, which keeps the expiry month
equal to the birth month, as printed cards do. 1 March is the next candidate key, so either practice opens the chip.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from edge.logsetup import mask_id
from edge.protocol.card_generation import NEW_CARD_LAW_START
from edge.protocol.cccd_qr import CccdQr
from edge.protocol.id_number import can_from_id, mrz_document_number
from edge.protocol.mrz import check_digit

__all__ = [
    "NO_EXPIRY",
    "MrzKeyCandidate",
    "age_on",
    "bac_key_candidates",
    "birthday",
    "can_from_id",
    "expiry_date",
    "renewal_ages",
]

#: MRZ date of expiry of a card that never expires.
NO_EXPIRY = "991231"

_AGES_2014_LAW = (25, 40, 60)
_AGES_2023_LAW = (14, 25, 40, 60)
_GRACE_YEARS = 2


def renewal_ages(date_of_issue: date) -> tuple[int, ...]:
    """The ages at which a card issued on ``date_of_issue`` must be renewed (14 exists from 2024-07-01 on)."""
    return _AGES_2023_LAW if date_of_issue >= NEW_CARD_LAW_START else _AGES_2014_LAW


def birthday(date_of_birth: date, year: int) -> date:
    """The birthday in ``year``; 29 February becomes 28 February in non-leap years (module docstring)."""
    try:
        return date_of_birth.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def age_on(date_of_birth: date, day: date) -> int:
    """Completed years on ``day``, with the same 29-February rule as :func:`birthday`."""
    years = day.year - date_of_birth.year
    return years if day >= birthday(date_of_birth, day.year) else years - 1


def expiry_date(date_of_birth: date, date_of_issue: date) -> date | None:
    """The card's date of expiry, or None for a card that never expires (issued at 58 or later)."""
    age = age_on(date_of_birth, date_of_issue)
    for threshold in renewal_ages(date_of_issue):
        if age < threshold - _GRACE_YEARS:
            return birthday(date_of_birth, date_of_birth.year + threshold)
    return None


def _yymmdd(day: date) -> str:
    return day.strftime("%y%m%d")


@dataclass(frozen=True, slots=True)
class MrzKeyCandidate:
    """One guess at the MRZ fields BAC derives its key from; ``reason`` says which rule produced it."""

    document_number: str  # last 9 digits of the ID number
    date_of_birth: str  # YYMMDD
    date_of_expiry: str  # YYMMDD, or 991231
    reason: str

    @property
    def mrz_information(self) -> str:
        """Document number, birth and expiry, each followed by its check digit: the BAC key seed's input."""
        return "".join(f + check_digit(f) for f in (self.document_number, self.date_of_birth, self.date_of_expiry))

    def __repr__(self) -> str:
        return f"MrzKeyCandidate(document_number={mask_id(self.document_number)!r}, reason={self.reason!r})"


def bac_key_candidates(qr: CccdQr) -> list[MrzKeyCandidate]:
    """MRZ keys to try, most likely first: the computed expiry, its 29-February alternative, the neighbouring
    renewal ages, then "no expiry". Each expiry appears once.
    """
    dob = qr.date_of_birth
    computed = expiry_date(dob, qr.date_of_issue)
    guesses: list[tuple[str, str]] = []
    every_age = _AGES_2023_LAW
    if computed is None:
        guesses.append((NO_EXPIRY, "computed: no expiry"))
        neighbours: tuple[int, ...] = (every_age[-1],)
    else:
        computed_age = computed.year - dob.year
        guesses.append((_yymmdd(computed), f"computed: age {computed_age}"))
        if (dob.month, dob.day) == (2, 29) and computed.day == 28:
            guesses.append((_yymmdd(date(computed.year, 3, 1)), f"age {computed_age}, birthday taken as 1 March"))
        position = every_age.index(computed_age)
        neighbours = every_age[max(position - 1, 0) : position] + every_age[position + 1 : position + 2]
    for age in neighbours:
        expiry = birthday(dob, dob.year + age)
        if expiry > qr.date_of_issue:
            guesses.append((_yymmdd(expiry), f"neighbouring age {age}"))
    guesses.append((NO_EXPIRY, "no expiry"))

    document_number = mrz_document_number(qr.id_number)
    candidates: list[MrzKeyCandidate] = []
    seen: set[str] = set()
    for expiry_text, reason in guesses:
        if expiry_text not in seen:
            seen.add(expiry_text)
            candidates.append(MrzKeyCandidate(document_number, _yymmdd(dob), expiry_text, reason))
    return candidates
