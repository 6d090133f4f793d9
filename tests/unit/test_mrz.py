"""MRZ: ICAO 9303 vectors, the CCCD back-side examples of cccd-card.md byte-for-byte, and fuzzing."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import MrzError
from edge.protocol.mrz import (
    cccd_td1,
    check_digit,
    encode_td1,
    mrz_information,
    parse_mrz,
    transliterate,
    yymmdd,
)

CCCD_EXAMPLE_1 = (
    "IDVNM2030123450079203012345<<0\n"
    "0302014M2802013VNM<<<<<<<<<<<4\n"
    "NGUYEN<<VAN<AN<<<<<<<<<<<<<<<<"
)
CCCD_EXAMPLE_2 = (
    "IDVNM0620007777048062000777<<7\n"
    "6208303M9912315VNM<<<<<<<<<<<4\n"
    "LE<<VAN<CUONG<<<<<<<<<<<<<<<<<"
)
ICAO_TD3 = (
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n"
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10"
)
ICAO_TD1 = (
    "I<UTOD231458907<<<<<<<<<<<<<<<\n"
    "7408122F1204159UTO<<<<<<<<<<<6\n"
    "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"
)


@pytest.mark.parametrize(("field", "digit"), [("520727", "3"), ("AB2134<<<", "5"), ("L898902C<", "3")])
def test_check_digit_vectors(field: str, digit: str) -> None:
    assert check_digit(field) == digit


def test_mrz_information_vectors() -> None:
    assert mrz_information("L898902C3", "740812", "120415") == "L898902C3674081221204159"
    assert mrz_information("L898902C", "690806", "940623") == "L898902C<369080619406236"
    assert mrz_information("D23145890734", "340712", "950712") == "D23145890734934071279507122"
    assert mrz_information("T22000129", "640812", "101031") == "T22000129364081251010318"


def test_cccd_examples_byte_for_byte() -> None:
    first = cccd_td1(
        "079203012345",
        full_name="Nguyễn Văn An",
        date_of_birth=dt.date(2003, 2, 1),
        sex="Nam",
        date_of_expiry=dt.date(2028, 2, 1),
    )
    second = cccd_td1(
        "048062000777", full_name="Lê Văn Cường", date_of_birth=dt.date(1962, 8, 30), sex="Nam", date_of_expiry=None
    )
    assert first == CCCD_EXAMPLE_1
    assert second == CCCD_EXAMPLE_2


def test_parse_cccd_td1() -> None:
    mrz = parse_mrz(CCCD_EXAMPLE_1)
    assert mrz.format == "TD1"
    assert (mrz.document_code, mrz.issuing_state, mrz.nationality) == ("ID", "VNM", "VNM")
    assert mrz.document_number == "203012345"
    assert mrz.optional_data1 == "079203012345<<0"
    assert (mrz.date_of_birth, mrz.sex, mrz.date_of_expiry) == ("030201", "M", "280201")
    assert (mrz.primary_identifier, mrz.secondary_identifier) == ("NGUYEN", "VAN AN")
    assert mrz.lines == tuple(CCCD_EXAMPLE_1.split("\n"))
    assert mrz.mrz_information() == "203012345" + "0" + "030201" + "4" + "280201" + "3"
    assert parse_mrz(CCCD_EXAMPLE_2).date_of_expiry == "991231"


def test_parse_icao_td3_and_td1() -> None:
    td3 = parse_mrz(ICAO_TD3)
    assert (td3.format, td3.document_number, td3.nationality) == ("TD3", "L898902C3", "UTO")
    assert td3.optional_data1 == "ZE184226B"
    assert td3.mrz_information() == "L898902C3674081221204159"
    assert (td3.primary_identifier, td3.secondary_identifier) == ("ERIKSSON", "ANNA MARIA")
    td1 = parse_mrz(ICAO_TD1)
    assert (td1.format, td1.document_number, td1.sex) == ("TD1", "D23145890", "F")


def test_td1_long_document_number() -> None:
    text = encode_td1(
        document_number="D23145890734",
        date_of_birth="340712",
        sex="F",
        date_of_expiry="950712",
        primary_identifier="SMITH",
        secondary_identifier="JOHN J",
        document_code="I",
        issuing_state="NLD",
        nationality="NLD",
    )
    assert text.split("\n")[0].startswith("I<NLDD23145890<7349<")
    mrz = parse_mrz(text)
    assert mrz.document_number == "D23145890734"
    assert mrz.mrz_information() == "D23145890734934071279507122"


@pytest.mark.parametrize(
    ("position", "field"),
    [(14, "document number"), (36, "date of birth"), (44, "date of expiry"), (59, "composite")],
)
def test_wrong_check_digit_names_the_field(position: int, field: str) -> None:
    flat = CCCD_EXAMPLE_1.replace("\n", "")
    wrong = str((int(flat[position]) + 1) % 10)
    with pytest.raises(MrzError, match=field):
        parse_mrz(flat[:position] + wrong + flat[position + 1 :])


def test_rejects_bad_length_and_characters() -> None:
    with pytest.raises(MrzError, match="neither TD1"):
        parse_mrz("IDVNM")
    with pytest.raises(MrzError, match="not allowed"):
        parse_mrz(CCCD_EXAMPLE_1.lower())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Nguyễn Văn An", "NGUYEN<<VAN<AN"),
        ("Đỗ Mạnh Dũng", "DO<<MANH<DUNG"),
        ("Lê Thị Thu Hường", "LE<<THI<THU<HUONG"),
        ("Phạm Đức Thịnh", "PHAM<<DUC<THINH"),
        ("Huỳnh Thị Mỹ Duyên", "HUYNH<<THI<MY<DUYEN"),
        ("Ưng Hoàng Phúc", "UNG<<HOANG<PHUC"),
        ("  Lò  Văn  Ỷ ", "LO<<VAN<Y"),
        ("Mai", "MAI"),
        ("", ""),
    ],
)
def test_transliterate(name: str, expected: str) -> None:
    assert transliterate(name) == expected


def test_yymmdd() -> None:
    assert yymmdd(dt.date(2003, 2, 1)) == "030201"
    assert yymmdd(None) == "991231"


_DATES = st.dates(min_value=dt.date(1930, 1, 1), max_value=dt.date(2099, 12, 31))
_NAMES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ ", min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    number=st.from_regex(r"\A[0-9A-Z]{1,14}\Z"),
    dob=_DATES,
    doe=_DATES,
    sex=st.sampled_from("MF<"),
    primary=_NAMES,
    secondary=_NAMES,
)
def test_td1_round_trip(
    number: str, dob: dt.date, doe: dt.date, sex: str, primary: str, secondary: str
) -> None:
    text = encode_td1(
        document_number=number,
        date_of_birth=yymmdd(dob),
        sex=sex,
        date_of_expiry=yymmdd(doe),
        primary_identifier=primary,
        secondary_identifier=secondary,
    )
    mrz = parse_mrz(text)
    assert mrz.document_number == number.rstrip("<")
    assert (mrz.date_of_birth, mrz.date_of_expiry, mrz.sex) == (yymmdd(dob), yymmdd(doe), sex)
    assert mrz.text == text.replace("\n", "")


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=100), st.text(alphabet="0123456789<ABCDEFGHIJKLMNOPQRSTUVWXYZ\n", max_size=95)))
def test_fuzz_parse_mrz_only_raises_mrz_error(text: str) -> None:
    with contextlib.suppress(MrzError):
        parse_mrz(text)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=89), st.sampled_from("0123456789<ABCZ"))
def test_fuzz_single_character_changes(position: int, replacement: str) -> None:
    flat = CCCD_EXAMPLE_1.replace("\n", "")
    mutated = flat[:position] + replacement + flat[position + 1 :]
    try:
        mrz = parse_mrz(mutated)
    except MrzError:
        return
    assert len(mrz.text) == 90
