"""The card generation: a CCCD issued before 2024-07-01, a thẻ căn cước from that day, told by the date of issue."""

from __future__ import annotations

from datetime import date

import pytest

from edge.protocol.card_generation import (
    NEW_CARD_LAW_START,
    card_words,
    generation_of,
    generation_of_printed,
    generation_of_result,
)


def test_the_law_takes_effect_on_its_day() -> None:
    assert date(2024, 7, 1) == NEW_CARD_LAW_START
    assert (generation_of(date(2024, 6, 30)), generation_of(date(2024, 7, 1))) == ("2021", "2024")


@pytest.mark.parametrize(
    ("printed", "generation"),
    [("15/04/2021", "2021"), ("30/06/2024", "2021"), ("01/07/2024", "2024"), ("1.7.2024", "2024"),
     (" 20-08-2024 ", "2024"), ("31/02/2024", None), ("2024-08-20", None), ("", None), (None, None),
     ("Không thời hạn", None), ("٠١/٠٧/٢٠٢٤", None)],
)  # fmt: skip
def test_a_printed_date_of_issue_gives_the_generation_or_none(printed: str | None, generation: str | None) -> None:
    assert generation_of_printed(printed) == generation


def test_a_result_takes_the_chips_date_first_and_the_qr_layout_only_without_it() -> None:
    assert generation_of_result("15/04/2021", "cccd2024") == "2021"  # the chip's word over the unsigned QR's
    assert generation_of_result(None, "cccd2024") == "2024"
    assert generation_of_result("damaged", "cccd2021") == "2021"
    assert generation_of_result(None, "unknown") is None
    assert generation_of_result(None, None) is None


def test_the_officers_words_for_each_card() -> None:
    assert (card_words("2021").vi, card_words("2024").vi, card_words(None).vi) == (
        "CCCD (2021)", "Thẻ căn cước (2024)", "CCCD / thẻ căn cước")
    assert "2023" in card_words("2024").en
