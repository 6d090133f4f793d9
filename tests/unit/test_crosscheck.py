"""Cross-checks between DG1 (MRZ), DG13 and the QR: which field disagrees, never its value."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.protocol.cccd_qr import CccdQr, parse_cccd_qr
from edge.protocol.lds.dg13 import NO_EXPIRY_TEXT, Dg13
from edge.protocol.mrz import Mrz, cccd_td1, parse_mrz
from edge.protocol.verify.checks import ID_NUMBER_STRUCTURE, MRZ_VS_DG13, QR_VS_DG13, CheckStatus
from edge.protocol.verify.crosscheck import (
    check_id_structure,
    crosscheck_mrz_dg13,
    crosscheck_qr_dg13,
    mrz_name,
)

ID = "079203012345"
NAME = "Nguyễn Văn An"
RESIDENCE = "12 Đường Số 3, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh"
DG13 = Dg13(
    id_number=ID,
    full_name=NAME,
    date_of_birth=dt.date(2003, 2, 1),
    sex="Nam",
    place_of_residence=RESIDENCE,
    date_of_issue=dt.date(2021, 4, 15),
    date_of_expiry=dt.date(2028, 2, 1),
    old_id_number="123456789",
    raw_fields=MappingProxyType({12: "01/02/2028"}),
)
QR = CccdQr(ID, "123456789", NAME, dt.date(2003, 2, 1), "Nam", RESIDENCE, dt.date(2021, 4, 15))
PERSONAL_VALUES = (ID, ID[3:], NAME, "NGUYEN", "2003", "030201", "Đường", "123456789")


def mrz_for(dg13: Dg13, **overrides: object) -> Mrz:
    fields: dict[str, object] = {
        "full_name": dg13.full_name, "date_of_birth": dg13.date_of_birth, "sex": dg13.sex,
        "date_of_expiry": dg13.date_of_expiry,
    }  # fmt: skip
    fields.update(overrides)
    number = str(fields.pop("id_number", dg13.id_number))
    return parse_mrz(cccd_td1(number, **fields))  # type: ignore[arg-type]


def assert_no_personal_data(reason: str) -> None:
    for value in PERSONAL_VALUES:
        assert value not in reason


# --- DG1 vs DG13 -----------------------------------------------------------------------------------------------


def test_mrz_matches_dg13() -> None:
    check = crosscheck_mrz_dg13(mrz_for(DG13), DG13)
    assert (check.name, check.status) == (MRZ_VS_DG13, CheckStatus.PASSED)
    assert set(check.detail.values()) == {"match"}


def test_the_example_mrz_from_the_reference_matches() -> None:
    mrz = parse_mrz("IDVNM2030123450079203012345<<0\n0302014M2802013VNM<<<<<<<<<<<4\nNGUYEN<<VAN<AN<<<<<<<<<<<<<<<<")
    assert crosscheck_mrz_dg13(mrz, DG13).status is CheckStatus.PASSED


@pytest.mark.parametrize(
    ("overrides", "field", "label"),
    [
        ({"id_number": "079203012346"}, "id_number", "ID number"),
        ({"date_of_birth": dt.date(2003, 2, 2)}, "date_of_birth", "date of birth"),
        ({"sex": "Nữ"}, "sex", "sex"),
        ({"date_of_expiry": dt.date(2029, 2, 1)}, "date_of_expiry", "date of expiry"),
        ({"date_of_expiry": None}, "date_of_expiry", "date of expiry"),
        ({"full_name": "Nguyễn Văn Ân Bình"}, "name", "name"),
        ({"full_name": "Trần Văn An"}, "name", "name"),
    ],
)
def test_mrz_mismatch_names_the_field(overrides: dict[str, object], field: str, label: str) -> None:
    check = crosscheck_mrz_dg13(mrz_for(DG13, **overrides), DG13)
    assert check.status is CheckStatus.FAILED
    assert check.detail[field] == "mismatch"
    assert check.reason.endswith(f"disagree on: {label}")
    assert_no_personal_data(check.reason)
    assert_no_personal_data(" ".join(check.detail.values()))


def test_no_expiry_card() -> None:
    forever = replace(DG13, date_of_expiry=None, raw_fields=MappingProxyType({12: NO_EXPIRY_TEXT}))
    mrz = mrz_for(forever)
    assert mrz.date_of_expiry == "991231"
    assert crosscheck_mrz_dg13(mrz, forever).status is CheckStatus.PASSED
    assert crosscheck_mrz_dg13(mrz_for(DG13), forever).detail["date_of_expiry"] == "mismatch"
    absent = replace(DG13, date_of_expiry=None, raw_fields=MappingProxyType({}))
    assert crosscheck_mrz_dg13(mrz, absent).detail["date_of_expiry"] == "not present"


def test_female_and_d_stroke() -> None:
    dg13 = replace(DG13, full_name="Đặng Thị Ngọc Hà", sex="Nữ", id_number="001303012345")
    assert mrz_name(dg13.full_name or "") == "DANG THI NGOC HA"
    assert crosscheck_mrz_dg13(mrz_for(dg13), dg13).status is CheckStatus.PASSED


def test_truncated_mrz_name_matches_with_a_note() -> None:
    long_name = "Tôn Nữ Hoàng Thị Phương Khánh Linh Ngọc"
    dg13 = replace(DG13, full_name=long_name)
    mrz = mrz_for(dg13)
    assert mrz.lines[2] == "TON<<NU<HOANG<THI<PHUONG<KHANH"  # the line is full: LINH NGOC did not fit
    check = crosscheck_mrz_dg13(mrz, dg13)
    assert check.status is CheckStatus.PASSED
    assert check.detail["name"] == "match"
    assert check.detail["notes"] == "the MRZ name is truncated to fit its line"
    other = crosscheck_mrz_dg13(mrz, replace(dg13, full_name="Tôn Nữ Hoàng Thị Phương Lan"))
    assert other.detail["name"] == "mismatch"


def test_absent_dg13_fields_are_not_compared() -> None:
    check = crosscheck_mrz_dg13(mrz_for(DG13), Dg13())
    assert check.status is CheckStatus.NOT_PERFORMED
    partial = crosscheck_mrz_dg13(mrz_for(DG13), Dg13(id_number=ID))
    assert partial.status is CheckStatus.PASSED
    assert partial.detail["sex"] == "not present"


# --- QR vs DG13 ------------------------------------------------------------------------------------------------


def test_qr_matches_dg13() -> None:
    check = crosscheck_qr_dg13(QR, DG13)
    assert (check.name, check.status) == (QR_VS_DG13, CheckStatus.PASSED)
    assert check.reason == ("7 fields agree: ID number, old ID number, name, date of birth, sex, place of residence, "
                            "date of issue")  # the fields compared are named: a 2024 QR adds some
    assert (check.detail["cancelled_id_number"], check.detail["parents"]) == ("not present", "not present")
    spaced = replace(QR, place_of_residence="  12 Đường Số 3,  Phường Bến Nghé, Quận 1,\tTP. Hồ Chí Minh ")
    assert crosscheck_qr_dg13(spaced, DG13).status is CheckStatus.PASSED
    decomposed = replace(QR, full_name="Nguye\u0302\u0303n Văn An")  # NFD form of the same name
    assert crosscheck_qr_dg13(decomposed, DG13).status is CheckStatus.PASSED


def test_no_qr_is_not_performed() -> None:
    assert crosscheck_qr_dg13(None, DG13).status is CheckStatus.NOT_PERFORMED


@pytest.mark.parametrize(
    ("change", "field", "label"),
    [
        ({"id_number": "079203012346"}, "id_number", "ID number"),
        ({"old_id_number": "123456780"}, "old_id_number", "old ID number"),
        ({"full_name": "Nguyễn Văn Ân"}, "full_name", "name"),
        ({"date_of_birth": dt.date(2003, 1, 2)}, "date_of_birth", "date of birth"),
        ({"sex": "Nữ"}, "sex", "sex"),
        ({"place_of_residence": RESIDENCE.replace("Quận 1", "Quận 3")}, "place_of_residence", "place of residence"),
        ({"date_of_issue": dt.date(2021, 4, 16)}, "date_of_issue", "date of issue"),
    ],
)
def test_qr_mismatch_names_the_field(change: dict[str, object], field: str, label: str) -> None:
    check = crosscheck_qr_dg13(replace(QR, **change), DG13)  # type: ignore[arg-type]
    assert check.status is CheckStatus.FAILED
    assert check.detail[field] == "mismatch"
    assert check.reason == f"the QR code and the chip disagree on: {label}"
    assert_no_personal_data(check.reason)


def test_old_id_on_one_side_only_is_not_a_mismatch() -> None:
    check = crosscheck_qr_dg13(replace(QR, old_id_number=None), DG13)
    assert check.status is CheckStatus.PASSED
    assert check.detail["old_id_number"] == "not present"


# --- QR vs DG13: the 2024 thẻ căn cước --------------------------------------------------------------------------

ID_2024, CANCELLED = "048190006789", "048090006789"
DG13_2024 = Dg13(
    id_number=ID_2024, full_name="Phan Thị Mỹ Duyên", date_of_birth=dt.date(1990, 10, 12), sex="Nữ",
    place_of_origin="Xã Điện Minh, Thị xã Điện Bàn, Quảng Nam",
    place_of_residence="K12/4 Nguyễn Chí Thanh, Phường Thạch Thang, Quận Hải Châu, TP. Đà Nẵng",
    date_of_issue=dt.date(2024, 8, 20), father_name="Phan Văn Lộc", mother_name="Võ Thị Hoa",
    old_id_number="201234567", raw_fields=MappingProxyType({15: "201234567", 16: CANCELLED}),
)  # fmt: skip
QR_2024 = parse_cccd_qr(f"{ID_2024}|201234567|Phan Thị Mỹ Duyên|12101990|Nữ|{DG13_2024.place_of_residence}|20082024|"
                        f"{CANCELLED}|Phan Văn Lộc|Võ Thị Hoa")  # fmt: skip


def test_2024_qr_matches_dg13_and_names_every_field_compared() -> None:
    check = crosscheck_qr_dg13(QR_2024, DG13_2024)
    assert check.status is CheckStatus.PASSED, check.reason
    assert check.reason == ("9 fields agree: ID number, old ID number, name, date of birth, sex, place of residence, "
                            "date of issue, cancelled ID number, parents' names")
    assert set(check.detail.values()) == {"match"}


def test_2024_parents_compare_in_any_order_and_one_parent_is_enough() -> None:
    swapped = replace(QR_2024, extra_fields=(CANCELLED, "Võ Thị Hoa", "Phan Văn Lộc"))
    assert crosscheck_qr_dg13(swapped, DG13_2024).detail["parents"] == "match"
    mother_only = replace(QR_2024, extra_fields=("", "", "Vo\u0303 Thị  Hoa"))  # NFD, doubled space
    check = crosscheck_qr_dg13(mother_only, DG13_2024)
    assert (check.status, check.detail["parents"], check.detail["cancelled_id_number"]) == (
        CheckStatus.PASSED, "match", "not present")


@pytest.mark.parametrize(
    ("extras", "field", "label"),
    [
        ((CANCELLED[:-1] + "0", "Phan Văn Lộc", "Võ Thị Hoa"), "cancelled_id_number", "cancelled ID number"),
        ((CANCELLED, "Phan Văn Lộc", "Võ Thị Hồng"), "parents", "parents' names"),
        ((CANCELLED, "Trần Văn Bảy", ""), "parents", "parents' names"),
    ],
)
def test_2024_qr_mismatch_names_the_field(extras: tuple[str, ...], field: str, label: str) -> None:
    check = crosscheck_qr_dg13(replace(QR_2024, extra_fields=extras), DG13_2024)
    assert check.status is CheckStatus.FAILED
    assert check.detail[field] == "mismatch"
    assert check.reason == f"the QR code and the chip disagree on: {label}"
    for value in (CANCELLED, ID_2024, "Phan", "Võ", "Trần"):
        assert value not in check.reason


@pytest.mark.parametrize(
    "dg13",
    [
        replace(DG13_2024, raw_fields=MappingProxyType({15: "201234567"})),  # the chip keeps only the old CMND
        replace(DG13_2024, raw_fields=MappingProxyType({})),
        replace(DG13_2024, raw_fields=MappingProxyType({16: "ABCDEF0123456789"})),  # 16 hex chars: not a number
    ],
)
def test_a_cancelled_id_the_chip_does_not_carry_is_not_a_mismatch(dg13: Dg13) -> None:
    """Whether (and where) a 2024 DG13 keeps the cancelled ID is unconfirmed: no number there, nothing compared."""
    check = crosscheck_qr_dg13(QR_2024, dg13)
    assert (check.status, check.detail["cancelled_id_number"]) == (CheckStatus.PASSED, "not present")
    assert "cancelled ID number" not in check.reason


def test_parents_only_on_one_side_are_not_compared() -> None:
    adult_qr = replace(QR_2024, extra_fields=(CANCELLED, "", ""))
    assert crosscheck_qr_dg13(adult_qr, DG13_2024).detail["parents"] == "not present"
    no_parents_on_chip = replace(DG13_2024, father_name=None, mother_name=None)
    assert crosscheck_qr_dg13(QR_2024, no_parents_on_chip).detail["parents"] == "not present"


def test_a_qr_repeating_its_own_id_number_has_no_cancelled_id() -> None:
    """Should a real 2024 QR repeat the card's own number among its extras, that is no cancelled ID to fail on."""
    repeated = replace(QR_2024, extra_fields=(ID_2024, "Phan Văn Lộc", "Võ Thị Hoa"))
    assert (repeated.cancelled_id_numbers, repeated.unrecognised_extra_fields) == ((), (7,))
    check = crosscheck_qr_dg13(repeated, DG13_2024)
    assert (check.status, check.detail["cancelled_id_number"]) == (CheckStatus.PASSED, "not present")
    assert check.detail["notes"] == "1 QR field(s) of unconfirmed meaning not compared"


def test_2024_extras_of_unconfirmed_meaning_are_noted_never_compared() -> None:
    odd = replace(QR_2024, extra_fields=(*QR_2024.extra_fields, "A+", "Cha: Phan Văn Lộc"))
    check = crosscheck_qr_dg13(odd, DG13_2024)
    assert check.status is CheckStatus.PASSED
    assert check.detail["notes"] == "2 QR field(s) of unconfirmed meaning not compared"
    assert check.reason.endswith("(2 QR field(s) of unconfirmed meaning not compared)")


def test_a_2021_qr_against_a_2024_chip_fails_on_the_fields_both_carry() -> None:
    """Both generations are valid at the counter: a 2021 QR shown with a 2024 chip (another card of the same
    person, or a stale sticker) is compared on what both carry, and the date of issue gives it away."""
    old_card_qr = replace(QR_2024, date_of_issue=dt.date(2021, 5, 4), extra_fields=())
    check = crosscheck_qr_dg13(old_card_qr, DG13_2024)
    assert check.status is CheckStatus.FAILED
    assert {field for field, outcome in check.detail.items() if outcome == "mismatch"} == {"date_of_issue"}
    assert (check.detail["cancelled_id_number"], check.detail["parents"]) == ("not present", "not present")


# --- ID number structure ---------------------------------------------------------------------------------------


def test_id_structure_consistent() -> None:
    check = check_id_structure(DG13)
    assert (check.name, check.status) == (ID_NUMBER_STRUCTURE, CheckStatus.PASSED)


def test_unknown_province_is_a_warning() -> None:
    check = check_id_structure(replace(DG13, id_number="099203012345"))
    assert check.status is CheckStatus.PASSED
    assert "warning" in check.reason
    assert "099" not in check.reason


@pytest.mark.parametrize(
    ("change", "label"),
    [
        ({"sex": "Nữ"}, "sex"),
        ({"date_of_birth": dt.date(1903, 2, 1)}, "century of birth"),
        ({"date_of_birth": dt.date(2004, 2, 1)}, "year of birth"),
        ({"id_number": "07920301234"}, "it is not 12 digits"),
    ],
)
def test_id_structure_disagreement_fails(change: dict[str, object], label: str) -> None:
    check = check_id_structure(replace(DG13, **change))  # type: ignore[arg-type]
    assert check.status is CheckStatus.FAILED
    assert label in check.reason
    assert_no_personal_data(check.reason)


def test_id_structure_without_fields_is_not_performed() -> None:
    assert check_id_structure(Dg13(id_number=ID)).status is CheckStatus.NOT_PERFORMED


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=40))
def test_mrz_name_is_always_mrz_letters(name: str) -> None:
    assert set(mrz_name(name)) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ ")
