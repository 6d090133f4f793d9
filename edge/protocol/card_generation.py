"""Which card the citizen holds: the 2014 law's chip CCCD or the 2023 law's thẻ căn cước, told by the date of issue.

The Law on Identity 2023 took effect on 2024-07-01: every card issued from that day is a "thẻ căn cước" (QR on the
back with more fields, place of birth registration printed instead of home town, renewal at 14 too); the chip CCCDs
issued before stay valid until their printed expiry, so a counter sees both for years. The date of issue is on the
chip (DG13) and in the QR, so the generation needs no field of its own anywhere: it is derived, never stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

#: Cards issued from this day are the 2023 law's "thẻ căn cước".
NEW_CARD_LAW_START = date(2024, 7, 1)

Generation = Literal["2021", "2024"]


@dataclass(frozen=True, slots=True)
class CardWords:
    """The card's name in the officer's words (Vietnamese, as printed on it) and in English."""

    vi: str
    en: str


CARD_WORDS: dict[Generation | None, CardWords] = {
    "2021": CardWords("CCCD (2021)", "chip citizen identity card (Law on CCCD 2014), issued before 2024-07-01"),
    "2024": CardWords("Thẻ căn cước (2024)", "identity card (Law on Identity 2023), issued from 2024-07-01"),
    None: CardWords("CCCD / thẻ căn cước", "chip identity card, date of issue unknown"),
}

_QR_FORMATS: dict[str, Generation] = {"cccd2021": "2021", "cccd2024": "2024"}
_PRINTED_DATE = re.compile(r"^\s*([0-9]{1,2})[/.-]([0-9]{1,2})[/.-]([0-9]{4})\s*\Z")


def generation_of(date_of_issue: date) -> Generation:
    """``2024`` for a card issued from 2024-07-01, ``2021`` before."""
    return "2024" if date_of_issue >= NEW_CARD_LAW_START else "2021"


def generation_of_printed(date_of_issue: str | None) -> Generation | None:
    """The generation from a date of issue as the result document carries it (dd/mm/yyyy as the card prints it);
    None when absent or not a date (the office must not guess a card from a damaged field)."""
    match = _PRINTED_DATE.match(date_of_issue or "")
    if match is None:
        return None
    day, month, year = (int(part) for part in match.groups())
    try:
        return generation_of(date(year, month, day))
    except ValueError:
        return None


def generation_of_result(date_of_issue: str | None, qr_format: str | None) -> Generation | None:
    """The generation a result document shows: by the chip's date of issue (as printed), else by the layout of the
    QR used (``cccd2021``/``cccd2024``, the QR's own claim: only when the chip said nothing)."""
    return generation_of_printed(date_of_issue) or _QR_FORMATS.get(qr_format or "")


def card_words(generation: Generation | None) -> CardWords:
    """What to call the card on every screen and in every command's output."""
    return CARD_WORDS[generation]
