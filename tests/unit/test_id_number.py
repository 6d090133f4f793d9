"""The 12-digit ID number: structure, and its agreement with date of birth and sex."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import IdNumberError, ParseError
from edge.protocol.id_number import (
    PROVINCES,
    IdNumber,
    can_from_id,
    check_id_number,
    mrz_document_number,
    parse_id_number,
)


def test_province_table_has_the_63_legacy_codes() -> None:
    assert len(PROVINCES) == 63
    assert PROVINCES["001"] == "Hà Nội"
    assert PROVINCES["046"] == "Thừa Thiên Huế"
    assert PROVINCES["096"] == "Cà Mau"


@pytest.mark.parametrize(
    ("id_number", "expected"),
    [
        ("079203012345", IdNumber("079", "Hồ Chí Minh", "Nam", 2003, "012345")),
        ("048062000777", IdNumber("048", "Đà Nẵng", "Nam", 1962, "000777")),
        ("001185000001", IdNumber("001", "Hà Nội", "Nữ", 1985, "000001")),
        ("046310000002", IdNumber("046", "Thừa Thiên Huế", "Nữ", 2010, "000002")),
        ("003400000003", IdNumber("003", None, "Nam", 2100, "000003")),
    ],
)
def test_parse(id_number: str, expected: IdNumber) -> None:
    assert parse_id_number(id_number) == expected


@pytest.mark.parametrize("bad", ["", "07920301234", "0792030123456", "07920301234a", "٠٧٩٢٠٣٠١٢٣٤٥"])
def test_malformed_numbers_raise_typed_error(bad: str) -> None:
    with pytest.raises(IdNumberError):
        parse_id_number(bad)
    with pytest.raises(ParseError):
        can_from_id(bad)


def test_can_and_mrz_document_number() -> None:
    assert can_from_id("079203012345") == "012345"
    assert mrz_document_number("079203012345") == "203012345"


def test_consistent_number_has_no_findings() -> None:
    assert check_id_number("079203012345", date(2003, 2, 1), "Nam") == []
    assert check_id_number("001185000001", date(1985, 12, 31), "Nữ") == []


def test_unknown_province_is_only_a_warning() -> None:
    findings = check_id_number("003203012345", date(2003, 2, 1), "Nam")
    assert [(f.severity, f.code) for f in findings] == [("warning", "unknown_province")]


@pytest.mark.parametrize(
    ("id_number", "born", "sex", "code"),
    [
        ("079203012345", date(2003, 2, 1), "Nữ", "sex_mismatch"),
        ("079303012345", date(2003, 2, 1), "Nam", "sex_mismatch"),
        ("079003012345", date(2003, 2, 1), "Nam", "century_mismatch"),
        ("079203012345", date(2004, 2, 1), "Nam", "birth_year_mismatch"),
        ("07920301234", date(2003, 2, 1), "Nam", "malformed"),
    ],
)
def test_disagreements_are_errors(id_number: str, born: date, sex: str, code: str) -> None:
    findings = check_id_number(id_number, born, sex)
    assert [(f.severity, f.code) for f in findings] == [("error", code)]


def test_findings_never_quote_the_number() -> None:
    for finding in check_id_number("003303012345", date(1999, 2, 1), "Nam"):
        assert "3012345" not in finding.message


@given(id_number=st.text(max_size=14) | st.from_regex(r"\A[0-9]{12}\Z"),
       born=st.dates(date(1, 1, 1), date(9999, 12, 31)), sex=st.sampled_from(["Nam", "Nữ"]))
@settings(max_examples=200)
def test_fuzz_check_never_raises_and_never_quotes_the_serial(id_number: str, born: date, sex: str) -> None:
    findings = check_id_number(id_number, born, sex)
    assert {f.code for f in findings} <= {"malformed", "unknown_province", "sex_mismatch", "century_mismatch",
                                           "birth_year_mismatch"}
    assert all(f.severity in ("warning", "error") for f in findings)
    if len(id_number) == 12:
        assert all(id_number[6:] not in f.message for f in findings)
