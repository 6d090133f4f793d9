"""Card expiry from the renewal ages, and the BAC key candidates built from a QR."""

from __future__ import annotations

from datetime import date

import pytest

from edge.protocol.card_expiry import (
    NO_EXPIRY,
    MrzKeyCandidate,
    age_on,
    bac_key_candidates,
    birthday,
    can_from_id,
    expiry_date,
)
from edge.protocol.cccd_qr import parse_cccd_qr

BORN = date(1990, 5, 17)


@pytest.mark.parametrize(
    ("born", "issued", "expires"),
    [
        # 2014 law (issued before 2024-07-01): renewal at 25, 40, 60
        (BORN, date(2021, 3, 1), date(2030, 5, 17)),  # age 30 -> 40
        (date(2003, 2, 1), date(2021, 4, 15), date(2028, 2, 1)),  # age 18 -> 25 (cccd-card.md example)
        (BORN, date(2012, 5, 16), date(2015, 5, 17)),  # age 21 (< 23) -> 25
        (BORN, date(2013, 5, 16), date(2015, 5, 17)),  # age 22, a day before 23 -> still 25
        (BORN, date(2013, 5, 17), date(2030, 5, 17)),  # exactly 2 years before 25 -> 40
        (BORN, date(2014, 12, 1), date(2030, 5, 17)),  # age 24 -> 40
        (BORN, date(2028, 5, 16), date(2030, 5, 17)),  # age 37 -> 40
        (BORN, date(2028, 5, 17), date(2050, 5, 17)),  # age 38 -> 60
        (BORN, date(2046, 5, 16), date(2050, 5, 17)),  # age 55 -> 60
        (BORN, date(2048, 5, 16), date(2050, 5, 17)),  # age 57 -> 60
        (BORN, date(2048, 5, 17), None),  # age 58 -> never
        (date(1960, 1, 1), date(2021, 1, 1), None),  # age 61 -> never
        # 14 exists only for cards issued from 2024-07-01
        (date(2014, 3, 3), date(2024, 6, 30), date(2039, 3, 3)),  # age 10, old law -> 25
        (date(2014, 3, 3), date(2024, 7, 1), date(2028, 3, 3)),  # age 10, new law -> 14
        (date(2012, 3, 3), date(2024, 7, 1), date(2037, 3, 3)),  # age 12, within 2 years of 14 -> 25
        (date(2011, 3, 3), date(2024, 7, 1), date(2036, 3, 3)),  # age 13 -> 25
        (date(2024, 8, 1), date(2024, 9, 1), date(2038, 8, 1)),  # a baby -> 14
    ],
)
def test_expiry_table(born: date, issued: date, expires: date | None) -> None:
    assert expiry_date(born, issued) == expires


def test_born_29_february() -> None:
    leap = date(2000, 2, 29)
    assert birthday(leap, 2025) == date(2025, 2, 28)  # non-leap year: 28 February
    assert birthday(leap, 2040) == date(2040, 2, 29)
    assert age_on(leap, date(2023, 2, 27)) == 22
    assert age_on(leap, date(2023, 2, 28)) == 23
    assert expiry_date(leap, date(2021, 6, 1)) == date(2025, 2, 28)  # 25th birthday, a non-leap year
    assert expiry_date(leap, date(2023, 3, 1)) == date(2040, 2, 29)  # age 23 -> 40, a leap year


def _qr(born: str, issued: str, id_number: str = "079200012345") -> str:
    return f"{id_number}||Trần Thị Bé|{born}|Nữ|Huế|{issued}"


def test_candidates_computed_first_then_neighbours_then_no_expiry() -> None:
    candidates = bac_key_candidates(parse_cccd_qr(_qr("01022003", "15042021", "079203012345")))
    assert [c.date_of_expiry for c in candidates] == ["280201", "430201", NO_EXPIRY]
    assert candidates[0].mrz_information == "203012345" + "0" + "030201" + "4" + "280201" + "3"  # cccd-card.md MRZ
    assert all(c.document_number == "203012345" and c.date_of_birth == "030201" for c in candidates)


def test_candidates_of_a_card_without_expiry() -> None:
    candidates = bac_key_candidates(parse_cccd_qr(_qr("30081962", "10052021", "048062000777")))
    assert [c.date_of_expiry for c in candidates] == [NO_EXPIRY, "220830"]
    assert candidates[0].mrz_information == "0620007777" + "6208303" + "9912315"  # cccd-card.md second example


def test_candidates_include_previous_threshold_when_still_ahead() -> None:
    # Age 23 at issue: the law says 40; a terminal that read "within 2 years" differently would have printed 25.
    candidates = bac_key_candidates(parse_cccd_qr(_qr("01062000", "01072023")))
    assert [c.date_of_expiry for c in candidates] == ["400601", "250601", "600601", NO_EXPIRY]


def test_candidates_for_29_february_try_1_march_next() -> None:
    candidates = bac_key_candidates(parse_cccd_qr(_qr("29022000", "01062021")))
    assert [c.date_of_expiry for c in candidates][:2] == ["250228", "250301"]
    assert candidates[-1].date_of_expiry == NO_EXPIRY
    assert len({c.date_of_expiry for c in candidates}) == len(candidates)


def test_candidate_repr_masks_the_document_number() -> None:
    candidate = MrzKeyCandidate("203012345", "030201", "280201", "computed")
    assert "203012345" not in repr(candidate)


def test_can_is_re_exported() -> None:
    assert can_from_id("079203012345") == "012345"


@pytest.mark.parametrize("name", ["default", "child", "card2024", "elderly", "young"])
def test_the_first_bac_candidate_from_a_cards_printed_qr_is_its_mrz_key(name: str) -> None:
    """Both generations: the QR (2021 front, 2024 back with its extras) yields the chip's MRZ key at the first try,
    the 2024 child's by the renewal at 14 only the 2023 law has."""
    from edge.sim.card_qr import card_qr_text
    from edge.sim.profile import load_profile

    person = load_profile(name).person
    first = bac_key_candidates(parse_cccd_qr(card_qr_text(person)))[0]
    expiry = person.expiry
    assert first.date_of_expiry == (expiry.strftime("%y%m%d") if expiry else NO_EXPIRY)
    assert first.document_number == person.id_number[3:]
    assert first.date_of_birth == person.date_of_birth.strftime("%y%m%d")
