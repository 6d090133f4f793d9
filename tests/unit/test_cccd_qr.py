"""The CCCD QR parser: both layouts, extra fields kept, malformed and foreign QR codes refused with a typed error."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import QrFormatError
from edge.protocol.cccd_qr import NOT_ID_CARD, CccdQr, encode_cccd_qr, parse_cccd_qr
from edge.protocol.id_number import PROVINCES

QR_2021 = ("079203012345|123456789|Nguyễn Văn An|01022003|Nam|"
           "12 Đường Số 3, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh|15042021")
QR_2024 = "046224000123||Phạm Ngọc Thạch|09092024|Nam|Phường Phú Hội, TP. Huế|20092024||Phạm Văn Hùng|Lê Thị Huế"


def test_2021_layout() -> None:
    qr = parse_cccd_qr(QR_2021.encode("utf-8"))
    assert qr == CccdQr(
        id_number="079203012345",
        old_id_number="123456789",
        full_name="Nguyễn Văn An",
        date_of_birth=date(2003, 2, 1),
        sex="Nam",
        place_of_residence="12 Đường Số 3, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh",
        date_of_issue=date(2021, 4, 15),
        extra_fields=(),
        format="2021",
    )


def test_2024_layout_keeps_extra_fields_raw() -> None:
    qr = parse_cccd_qr(QR_2024.encode("utf-8"))
    assert qr.format == "2024"
    assert qr.old_id_number is None
    assert qr.full_name == "Phạm Ngọc Thạch"
    assert qr.extra_fields == ("", "Phạm Văn Hùng", "Lê Thị Huế")


QR_2024_FULL = ("001190012345|012345678|Đỗ Thị Ánh Tuyết|05031990|Nữ|Số 7 ngõ 12 phố Huế, Phường Phố Huế, Hà Nội|"
                "02082024|001090054399|Đỗ Văn Khải|Nguyễn Thị Lụa")


def test_2024_layout_every_field() -> None:
    qr = parse_cccd_qr(QR_2024_FULL.encode("utf-8"))
    assert (qr.id_number, qr.old_id_number, qr.full_name, qr.date_of_birth, qr.sex, qr.date_of_issue) == (
        "001190012345", "012345678", "Đỗ Thị Ánh Tuyết", date(1990, 3, 5), "Nữ", date(2024, 8, 2))
    assert qr.place_of_residence == "Số 7 ngõ 12 phố Huế, Phường Phố Huế, Hà Nội"
    assert (qr.format, qr.generation) == ("2024", "2024")
    assert qr.cancelled_id_numbers == ("001090054399",)
    assert qr.parent_names == ("Đỗ Văn Khải", "Nguyễn Thị Lụa")
    assert qr.unrecognised_extra_fields == ()
    assert qr.consistent


@pytest.mark.parametrize(
    ("extras", "cancelled", "parents"),
    [
        ("", (), ()),  # seven fields: every optional field absent
        ("|||", (), ()),  # the slots printed empty
        ("|001090054399||", ("001090054399",), ()),  # an adult: cancelled ID, no parents
        ("||Phạm Văn Hùng|Lê Thị Huế", (), ("Phạm Văn Hùng", "Lê Thị Huế")),  # a child without a cancelled ID
        ("||Lê Thị Huế", (), ("Lê Thị Huế",)),  # one parent only
        ("|Phạm Văn Hùng|001090054399|", ("001090054399",), ("Phạm Văn Hùng",)),  # another order: read by content
        ("|001090054399, 001090054398", ("001090054399", "001090054398"), ()),  # two cancelled IDs in one field
        ("|  Pha\u0323m  Văn Hùng ", (), ("Phạm Văn Hùng",)),  # NFD, spaces: normalised
    ],
)
def test_2024_optional_fields_present_or_absent(extras: str, cancelled: tuple[str, ...],
                                                parents: tuple[str, ...]) -> None:  # fmt: skip
    qr = parse_cccd_qr(QR_2024_FULL.split("|02082024|")[0] + "|02082024" + extras)
    assert (qr.cancelled_id_numbers, qr.parent_names, qr.unrecognised_extra_fields) == (cancelled, parents, ())
    assert qr.format == "2024"


@pytest.mark.parametrize(
    "extra",
    ["123456789", "00109005439", "001090054399x", "Cha: Đỗ Văn Khải", "Đỗ Văn Khải 2", "05031990", "٠٠١١٩٠٠٥٤٣٢١",
     "..."],
)
def test_an_extra_field_that_is_neither_an_id_nor_a_name_stays_raw_and_unrecognised(extra: str) -> None:
    qr = parse_cccd_qr(f"{QR_2024_FULL}|{extra}")
    assert qr.extra_fields[-1] == extra
    assert qr.unrecognised_extra_fields == (10,)
    assert (qr.cancelled_id_numbers, qr.parent_names) == (("001090054399",), ("Đỗ Văn Khải", "Nguyễn Thị Lụa"))


def test_generation_follows_the_date_of_issue() -> None:
    assert parse_cccd_qr(QR_2021).generation == "2021"
    assert parse_cccd_qr(QR_2021.replace("15042021", "01072024")).generation == "2024"
    assert parse_cccd_qr(QR_2021.replace("15042021", "30062024")).generation == "2021"


def test_many_more_fields_are_never_a_reason_to_reject() -> None:
    text = QR_2021 + "|" + "|".join(f"field {i}" for i in range(30))
    assert len(parse_cccd_qr(text).extra_fields) == 30


def test_issued_after_the_2023_law_without_extras_is_2024_layout() -> None:
    assert parse_cccd_qr(QR_2021.replace("15042021", "01072024")).format == "2024"
    assert parse_cccd_qr(QR_2021.replace("15042021", "30062024")).format == "2021"


def test_twelve_digit_old_number_nfd_sex_bom_and_newline_accepted() -> None:
    decomposed_nu = "Nu\u031b\u0303"  # "Nữ" as u + combining horn + combining tilde
    text = "\ufeff" + QR_2021.replace("123456789", "079090001234").replace("|Nam|", f"|{decomposed_nu}|") + "\r\n"
    qr = parse_cccd_qr(text)
    assert qr.old_id_number == "079090001234"
    assert qr.sex == "Nữ"
    assert qr.place_of_residence.endswith("Hồ Chí Minh")


@pytest.mark.parametrize(
    "payload",
    [
        "00020101021238570010A00000072701270006970436011300110123456780208QRIBFTTA53037045802VN6304ABCD",  # VietQR
        "https://dichvucong.gov.vn/p/home/dvc-trang-chu.html",
        "WIFI:S:Counter;T:WPA;P:secret;;",
        "hello",
        "",
        "079203012345|123456789|Nguyễn Văn An|01022003|Nam|Quận 1",  # six fields
        "07920301234|123456789|Nguyễn Văn An|01022003|Nam|Quận 1|15042021",  # 11 digits
        "٠٧٩٢٠٣٠١٢٣٤٥|123456789|Nguyễn Văn An|01022003|Nam|Quận 1|15042021",  # non-ASCII digits
        "079203012345|12345|Nguyễn Văn An|01022003|Nam|Quận 1|15042021",  # old number of 5 digits
        "079203012345|123456789| |01022003|Nam|Quận 1|15042021",  # no name
        "079203012345|123456789|Nguyễn Văn An|31022003|Nam|Quận 1|15042021",  # 31 February
        "079203012345|123456789|Nguyễn Văn An|2003-02-01|Nam|Quận 1|15042021",
        "079203012345|123456789|Nguyễn Văn An|01022003|Male|Quận 1|15042021",
        "079203012345|123456789|Nguyễn Văn An|01022003|Nam|Quận 1|15042001",  # issued before birth
    ],
)
def test_foreign_and_malformed_qr_codes_are_not_id_cards(payload: str) -> None:
    with pytest.raises(QrFormatError, match=NOT_ID_CARD):
        parse_cccd_qr(payload.encode("utf-8"))


def test_invalid_utf8_is_a_typed_error_with_offset() -> None:
    raw = QR_2021.encode("utf-8").replace("Văn".encode(), b"V\xe0n")
    with pytest.raises(QrFormatError, match="UTF-8") as caught:
        parse_cccd_qr(raw)
    assert caught.value.offset == raw.index(b"\xe0")


def test_error_messages_never_contain_the_fields() -> None:
    with pytest.raises(QrFormatError) as caught:
        parse_cccd_qr(QR_2021.replace("01022003", "99999999"))
    assert "99999999" not in str(caught.value)
    assert "Nguyễn" not in str(caught.value)


def test_repr_masks_personal_data() -> None:
    text = repr(parse_cccd_qr(QR_2021))
    assert "079203012345" not in text
    assert "Nguyễn" not in text


def _read_everything(qr: CccdQr) -> None:
    """Every derived field of a parsed QR can be computed (none may raise either)."""
    assert isinstance(repr(qr), str)
    assert all(_is_digits(number, 12) for number in qr.cancelled_id_numbers)
    assert all(name.strip() for name in qr.parent_names)
    assert all(index >= 7 for index in qr.unrecognised_extra_fields)
    assert qr.generation in ("2021", "2024")
    assert isinstance(qr.consistent, bool)


def _is_digits(text: str, length: int) -> bool:
    return len(text) == length and text.isascii() and text.isdigit()


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_fuzz_bytes_parse_or_raise_typed_error(raw: bytes) -> None:
    try:
        qr = parse_cccd_qr(raw)
    except QrFormatError:
        return
    _read_everything(qr)


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_fuzz_any_bytes_after_a_valid_2024_qr_parse_or_raise_typed_error(tail: bytes) -> None:
    """The 2024 extras are where unconfirmed content lives: whatever follows the seven fields, the QR parses (its
    extras kept raw) or, when the bytes are not UTF-8, ends in a QrFormatError."""
    raw = QR_2024_FULL.encode("utf-8") + b"|" + tail
    try:
        tail.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(QrFormatError, match="UTF-8"):
            parse_cccd_qr(raw)
        return
    qr = parse_cccd_qr(raw)
    _read_everything(qr)
    assert qr.extra_fields[:3] == ("001090054399", "Đỗ Văn Khải", "Nguyễn Thị Lụa")


_fields = st.text(st.characters(blacklist_characters="|", blacklist_categories=("Cs",)), max_size=20)


@given(st.lists(_fields, min_size=0, max_size=12))
@settings(max_examples=300)
def test_fuzz_pipe_separated_text(fields: list[str]) -> None:
    with contextlib.suppress(QrFormatError):
        qr = parse_cccd_qr("|".join(fields))
        assert qr.consistent == all(f.severity != "error" for f in qr.id_findings)


_LETTERS = "aăâbcdđeêghiklmnoôơpqrstuưvxyàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ"
_names = st.text(alphabet=_LETTERS + " ÀẾỮĐ,.-/0123456789", min_size=1, max_size=40).map(str.strip).filter(bool)


@given(
    id_number=st.from_regex(r"\A[0-9]{12}\Z"),
    old=st.one_of(st.none(), st.from_regex(r"\A[0-9]{9}\Z"), st.from_regex(r"\A[0-9]{12}\Z")),
    name=_names,
    born=st.dates(date(1900, 1, 1), date(2030, 12, 31)),
    days_later=st.integers(0, 40000),
    sex=st.sampled_from(["Nam", "Nữ"]),
    residence=_names,
    extra=st.lists(st.text(st.characters(blacklist_characters="|\r\n", blacklist_categories=("Cs",)), max_size=15),
                   max_size=4),
)
@settings(max_examples=200)
def test_round_trip(id_number: str, old: str | None, name: str, born: date, days_later: int, sex: str,
                    residence: str, extra: list[str]) -> None:
    issued = date.fromordinal(min(born.toordinal() + days_later, date(9999, 12, 31).toordinal()))
    original = CccdQr(id_number, old, name, born, "Nữ" if sex == "Nữ" else "Nam", residence, issued, tuple(extra))
    qr = parse_cccd_qr(encode_cccd_qr(original).encode("utf-8"))
    assert (qr.id_number, qr.old_id_number, qr.full_name, qr.date_of_birth, qr.sex, qr.date_of_issue) == (
        id_number, old, name, born, sex, issued)
    assert qr.extra_fields == tuple(extra)
    assert parse_cccd_qr(encode_cccd_qr(qr)) == qr


def test_consistent_qr_carries_no_findings() -> None:
    qr = parse_cccd_qr(QR_2021)
    assert qr.id_findings == ()
    assert qr.consistent


def test_unknown_province_is_a_warning_and_still_consistent() -> None:
    qr = parse_cccd_qr(QR_2021.replace("079203012345", "003203012345"))
    assert [(f.severity, f.code) for f in qr.id_findings] == [("warning", "unknown_province")]
    assert qr.consistent


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("|Nam|", "|Nữ|", "sex_mismatch"),  # the ID says male
        ("01022003", "01021903", "century_mismatch"),  # the ID says born in the 2000s
        ("01022003", "01022004", "birth_year_mismatch"),
    ],
)
def test_id_contradicting_the_qr_is_parsed_but_inconsistent(old: str, new: str, code: str) -> None:
    qr = parse_cccd_qr(QR_2021.replace(old, new))
    assert [(f.severity, f.code) for f in qr.id_findings] == [("error", code)]
    assert not qr.consistent
    assert all("3012345" not in f.message for f in qr.id_findings)


def test_findings_follow_the_fields_of_a_replaced_qr() -> None:
    qr = parse_cccd_qr(QR_2021)
    assert not dataclasses.replace(qr, sex="Nữ").consistent


@given(
    province=st.sampled_from(sorted(PROVINCES)),
    born=st.dates(date(1900, 1, 1), date(2099, 12, 31)),
    sex=st.sampled_from(["Nam", "Nữ"]),
    serial=st.from_regex(r"\A[0-9]{6}\Z"),
)
@settings(max_examples=100)
def test_fuzz_an_id_built_from_the_qr_is_consistent(province: str, born: date, sex: str, serial: str) -> None:
    century_digit = 2 * (born.year // 100 - 19) + (sex == "Nữ")
    id_number = f"{province}{century_digit}{born.year % 100:02d}{serial}"
    text = f"{id_number}||Lê Văn Bảy|{born:%d%m}{born.year:04d}|{sex}|Huế|{born:%d%m}{born.year:04d}"
    qr = parse_cccd_qr(text)
    assert qr.id_findings == ()
    assert qr.consistent


@given(id_number=st.from_regex(r"\A[0-9]{12}\Z"), born=st.dates(date(1900, 1, 1), date(2099, 12, 31)),
       sex=st.sampled_from(["Nam", "Nữ"]))
@settings(max_examples=100)
def test_fuzz_any_parsed_qr_has_findings_that_decide_consistency(id_number: str, born: date, sex: str) -> None:
    qr = parse_cccd_qr(f"{id_number}||Lê Văn Bảy|{born:%d%m}{born.year:04d}|{sex}|Huế|01012100")
    assert qr.consistent == (not [f for f in qr.id_findings if f.severity == "error"])
    assert {f.code for f in qr.id_findings} <= {"unknown_province", "sex_mismatch", "century_mismatch",
                                                  "birth_year_mismatch"}
