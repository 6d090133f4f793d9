"""Old card addresses to today's units (issue 17 part 1), against the Standing Committee's resolutions of 16/6/2025.

Each row of :data:`CASES` is a real old unit and what the clause of its province's resolution (1654 to 1687/
NQ-UBTVQH15, Article 1, «k.» = clause) makes of it for an address: ``exact`` (whole, or all its residents, into
one unit), ``split`` (residents in several units: every one listed), ``unknown``. Codes are those of Decision
19/2025/QĐ-TTg (5-digit communes, 2-digit provinces).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.office import admin_units
from edge.office.address_text import fold, segments, unit_name
from edge.office.admin_unit_corrections import ALL_RESIDENTS, LAND_ONLY, NAMESAKE_FIXES
from edge.office.admin_units import AdminUnits, Confidence, default_units, map_address, map_addresses
from edge.sim.profile import list_profiles, load_profile

EXACT, SPLIT, UNKNOWN = Confidence.EXACT, Confidence.SPLIT, Confidence.UNKNOWN

#: (address as a card prints it, confidence, new commune code(s), new province code, why: the resolution's clause)
CASES: list[tuple[str, Confidence, tuple[str, ...], str | None, str]] = [
    # Whole units merged into one (Hà Nội, 1656).
    ("Số 7 phố Lò Sũ, Phường Lý Thái Tổ, Quận Hoàn Kiếm, Hà Nội", EXACT, ("00070",), "01", "1656 k.1: Hoàn Kiếm"),
    ("Phường Hàng Bạc, Quận Hoàn Kiếm, Hà Nội", EXACT, ("00070",), "01", "1656 k.1: Hoàn Kiếm"),
    ("Số 3 phố Quán Thánh, Phường Quán Thánh, Quận Ba Đình, Thành phố Hà Nội", EXACT, ("00004",), "01",
     "1656 k.3: Ba Đình"),
    # Splits: every receiving unit listed, none guessed.
    ("Phường Điện Biên, Quận Ba Đình, Hà Nội", SPLIT, ("00004", "00070", "00190", "00226"), "01",
     "1656 k.1, 3, 11, 13: Hoàn Kiếm, Ba Đình, Văn Miếu - Quốc Tử Giám, the rest Ô Chợ Dừa"),
    ("Phường Cửa Nam, Quận Hoàn Kiếm, Hà Nội", SPLIT, ("00004", "00070", "00082", "00226"), "01",
     "1656 k.1, 2, 3, 11"),
    ("Số 25 ngõ 68 phố Ỷ Lan, Phường Khương Trung, Quận Thanh Xuân, Hà Nội", SPLIT, ("00352", "00364"), "01",
     "1656 k.23 Khương Đình, k.24 the rest Phương Liệt"),
    # A street named like a commune ("đường Xã Đàn") is street, left alone; the ward before the district counts.
    ("Số 9 đường Xã Đàn, Phường Nam Đồng, Quận Đống Đa, Hà Nội", SPLIT, ("00226", "00229", "00235"), "01",
     "1656 k.9 Đống Đa, k.10 Kim Liên, k.11 the rest Văn Miếu - Quốc Tử Giám"),
    # Land only («một phần diện tích tự nhiên» without population) is no candidate for an address.
    ("Phường Thụy Khuê, Quận Tây Hồ, Hà Nội", EXACT, ("00103",), "01", "1656 k.3 land only to Ba Đình; k.28 Tây Hồ"),
    ("Xã Văn Khê, Huyện Mê Linh, Hà Nội", SPLIT, ("08995", "09022"), "01",
     "1656 k.107, 119 land only; k.118 Mê Linh, k.120 the rest Tiến Thắng"),
    ("Phường Long Thạnh Mỹ, Thành phố Thủ Đức, Thành phố Hồ Chí Minh", EXACT, ("26833",), "79",
     "1685 k.71 land only to Tăng Nhơn Phú"),
    ("Phường Sơn Kỳ, Quận Tân Phú, Thành phố Hồ Chí Minh", SPLIT, ("27013", "27019"), "79",
     "1685 k.41 land only to Bình Hưng Hòa"),
    ("Xã Hải Hòa, Thành phố Cẩm Phả, Tỉnh Quảng Ninh", EXACT, ("06886",), "22",
     "1679 k.3 land only to the new Xã Hải Hòa: its people are elsewhere"),
    ("Xã An Nghĩa, Huyện An Lão, Tỉnh Bình Định", EXACT, ("21622",), "52", "1664 k.37 land only to An Hòa"),
    ("Thị trấn Thiệu Hóa, Huyện Thiệu Hóa, Tỉnh Thanh Hóa", SPLIT, ("15772", "15835"), "38",
     "1686 k.42 land only to Thiệu Quang"),
    # «toàn bộ quy mô dân số»: the land was divided, every resident went to one unit.
    ("Phường Tây Tựu, Quận Bắc Từ Liêm, Hà Nội", EXACT, ("00613",), "01", "1656 k.30 all residents to Tây Tựu"),
    ("Xã Kim Chung, Huyện Đông Anh, Hà Nội", EXACT, ("00493",), "01", "1656 k.116 all residents to Thiên Lộc"),
    # Numbered wards: the district decides (Phường 15 of six districts, six fates).
    ("Phường 15, Quận 10, Thành phố Hồ Chí Minh", EXACT, ("27163",), "79", "1685: Hòa Hưng"),
    ("Phường 15, Quận Tân Bình, Thành phố Hồ Chí Minh", SPLIT, ("27004", "27007"), "79",
     "1685 k.60 Tân Bình, k.61 the rest Tân Sơn"),
    ("Phường 15, Quận Gò Vấp, Thành phố Hồ Chí Minh", EXACT, ("26878",), "79", "1685 k.50 An Hội Đông"),
    ("Phường 15, Quận 8, Thành phố Hồ Chí Minh", EXACT, ("27427",), "79", "1685 k.23 Phú Định"),
    ("Phường 15, Quận 11, Thành phố Hồ Chí Minh", EXACT, ("27226",), "79", "1685 k.31 Phú Thọ"),
    ("Phường 15, Thành phố Hồ Chí Minh", UNKNOWN, (), "79", "no district: seven Phường 15 in the city"),
    ("Phường 05, Quận 10, TP.HCM", UNKNOWN, (), "79", "Quận 10 had no Phường 5 left on 2025-06-30"),
    # Province merges (Resolution 202/2025/QH15) and abbreviations.
    ("12 Đường Số 3, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh", EXACT, ("26740",), "79", "1685 k.1 Sài Gòn"),
    ("P. Bến Thành, Q.1, TP.HCM", EXACT, ("26743",), "79", "1685: Bến Thành"),
    ("Xã Tân Phú Trung, Huyện Củ Chi, TP. Hồ Chí Minh", EXACT, ("27553",), "79", "1685: Củ Chi"),
    ("Phường 1, Thành phố Vũng Tàu, Tỉnh Bà Rịa - Vũng Tàu", EXACT, ("26506",), "79",
     "Bà Rịa - Vũng Tàu into TP. Hồ Chí Minh; 1685: Vũng Tàu"),
    ("Huyện Côn Đảo, Tỉnh Bà Rịa - Vũng Tàu", EXACT, ("26732",), "79", "1685 k.163: special zone Côn Đảo"),
    ("Huyện Lý Sơn, Tỉnh Quảng Ngãi", EXACT, ("21548",), "51", "1677: special zone Lý Sơn"),
    ("Xã Điện Minh, Thị xã Điện Bàn, Quảng Nam", EXACT, ("20551",), "48",
     "Quảng Nam into Đà Nẵng; 1659: Điện Bàn (the card says Xã, a Phường since 2020)"),
    ("Phường Thạch Thang, Quận Hải Châu, TP. Đà Nẵng", EXACT, ("20242",), "48", "1659: Hải Châu"),
    ("Tổ 5, Phường Phước Ninh, Quận Hải Châu, TP. Đà Nẵng", EXACT, ("20242",), "48", "1659: Hải Châu"),
    ("Xã Hòa Tiến, Huyện Hòa Vang, TP. Đà Nẵng", EXACT, ("20332",), "48", "1659: Hòa Tiến"),
    ("Xã Quảng Thọ, Huyện Quảng Điền, Thừa Thiên Huế", EXACT, ("19867",), "46",
     "Thừa Thiên Huế is Thành phố Huế since 2025-01-01; 1675: Quảng Điền"),
    ("Kiệt 14 đường Đặng Dung, Phường Tây Lộc, TP. Huế, Thừa Thiên Huế", EXACT, ("19753",), "46",
     "district TP. Huế gone on 2025-01-01: the ward's name is unique in the province; 1675: Phú Xuân"),
    ("Xã Mỹ Hòa Hưng, Thành phố Long Xuyên, Tỉnh An Giang", EXACT, ("30313",), "91", "1654: Mỹ Hòa Hưng"),
    # Namesakes whose provinces merged: the district tells them apart (the package conflates them).
    ("Phường 4, Thành phố Tây Ninh, Tỉnh Tây Ninh", EXACT, ("25459",), "80", "1682 k.87 Tân Ninh"),
    ("Phường 4, Thành phố Tân An, Tỉnh Long An", EXACT, ("27694",), "80", "Long An into Tây Ninh; 1682 k.84 Long An"),
    ("Thị trấn Thủ Thừa, Huyện Thủ Thừa, Tỉnh Long An", EXACT, ("28036",), "80", "1682 k.20 Thủ Thừa"),
    ("Phường 4, Thành phố Mỹ Tho, Tỉnh Tiền Giang", EXACT, ("28249",), "82",
     "Tiền Giang into Đồng Tháp; 1663 k.84 Đạo Thạnh"),
    ("Xã Hòa Bình, Huyện Kim Thành, Tỉnh Hải Dương", EXACT, ("10804",), "31",
     "Hải Dương into Hải Phòng; 1669 k.79 land only to Hà Nam, k.112 the rest Kim Thành"),
    ("Xã Hòa Bình, Huyện Vĩnh Bảo, Thành phố Hải Phòng", EXACT, ("11911",), "31", "1669 k.63 Nguyễn Bỉnh Khiêm"),
    ("Xã Hồng Phong, Huyện Bình Gia, Tỉnh Lạng Sơn", EXACT, ("06079",), "20", "1672 k.10 Hồng Phong"),
    ("Xã Phú Tân, Huyện Châu Thành, Tỉnh Sóc Trăng", EXACT, ("31582",), "92",
     "Sóc Trăng into Cần Thơ; 1668 k.80 Thuận Hòa"),
    ("Xã Thạnh Quới, Huyện Mỹ Xuyên, Tỉnh Sóc Trăng", EXACT, ("31726",), "92", "1668 k.66 Gia Hòa"),
    # Unknown: a unit gone before 2025-06-30, no unit at all.
    ("Tổ 5, Phường Hải Châu I, Quận Hải Châu, TP. Đà Nẵng", UNKNOWN, (), "48",
     "Hải Châu I merged into Phường Hải Châu on 2025-01-01: not in the list of 2025-06-30"),
    ("Phòng 3, Tầng 2, Tòa nhà A", UNKNOWN, (), None, "no unit at all"),
    ("", UNKNOWN, (), None, "nothing read"),
]  # fmt: skip


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert {case[1] for case in CASES} == {EXACT, SPLIT, UNKNOWN}


@pytest.mark.parametrize(("address", "confidence", "codes", "province", "why"), CASES,
                         ids=[case[0][:60] or "empty" for case in CASES])  # fmt: skip
def test_old_address_maps_as_the_resolution_says(address: str, confidence: Confidence, codes: tuple[str, ...],
                                                 province: str | None, why: str) -> None:  # fmt: skip
    mapping = map_address(address)
    assert mapping.confidence is confidence, (why, mapping.reason)
    assert (mapping.province.code if mapping.province else None) == province, why
    if confidence is EXACT:
        assert mapping.commune is not None
        assert (mapping.commune.code,) == codes, why
        assert mapping.candidates == ()
    elif confidence is SPLIT:
        assert mapping.commune is None  # none guessed
        assert sorted(unit.code for unit in mapping.candidates) == sorted(codes), why
        assert len(mapping.candidates) >= 2
    else:
        assert mapping.commune is None
        assert mapping.candidates == ()
        assert mapping.reason
    assert mapping.data_version.startswith("vietnamadminunits ")


def test_new_names_and_codes_come_from_the_official_list() -> None:
    mapping = map_address("Phường Điện Biên, Quận Ba Đình, Hà Nội")
    assert {(unit.code, unit.name) for unit in mapping.candidates} == {
        ("00004", "Phường Ba Đình"), ("00070", "Phường Hoàn Kiếm"), ("00190", "Phường Ô Chợ Dừa"),
        ("00226", "Phường Văn Miếu - Quốc Tử Giám")}  # fmt: skip
    assert mapping.province is not None
    assert mapping.province.name == "Thành phố Hà Nội"
    assert mapping.old.district is not None
    assert mapping.old.district.name == "Quận Ba Đình"
    assert mapping.old.commune is not None
    assert mapping.old.commune.code == "00019"


def test_address_as_read_is_kept_word_for_word() -> None:
    """The street part (renamed streets too: names did not follow the units) and the old units stay as signed."""
    citizen = {"place_of_residence": "Số 9 đường Xã Đàn, Phường Nam Đồng, Quận Đống Đa, Hà Nội",
               "place_of_origin": "12 Đường Số 3, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh", "full_name": "X"}
    shown = map_addresses(citizen)
    assert set(shown) == {"place_of_residence", "place_of_origin"}
    for name, entry in shown.items():
        assert entry["as_read"] == citizen[name]
    assert shown["place_of_origin"]["mapping"]["commune"] == {"name": "Phường Sài Gòn", "code": "26740"}
    assert shown["place_of_origin"]["mapping"]["old"]["commune"] == {"name": "Phường Bến Nghé", "code": "26740"}


def test_corrected_entries_cite_their_clause() -> None:
    mapping = map_address("Phường Thụy Khuê, Quận Tây Hồ, Hà Nội")
    assert mapping.sources == ("1656/NQ-UBTVQH15 k.3 (land only to 00004)",)
    assert "sources" not in map_address("Phường Hàng Bạc, Quận Hoàn Kiếm, Hà Nội").as_dict()


def test_every_correction_names_units_of_the_list() -> None:
    """A package release that renumbers or drops a unit shows up here, not as a silent wrong mapping."""
    units = default_units()
    olds = {code for district in units._districts.values() for code in (c.code for c in district.communes)}
    news = set(units._new_units)
    for old, (targets, _) in NAMESAKE_FIXES.items():
        assert f"{old:05d}" in olds
        assert all(f"{code:05d}" in news for code in targets)
    for old, land, _ in LAND_ONLY:
        assert f"{old:05d}" in olds
        assert f"{land:05d}" in news
    for old, (target, _) in ALL_RESIDENTS.items():
        assert f"{old:05d}" in olds
        assert f"{target:05d}" in news


def test_every_old_unit_has_a_receiving_unit() -> None:
    units = default_units()
    olds = [c.code for district in units._districts.values() for c in district.communes]
    assert len(olds) == 10_035
    assert len(set(units._new_units)) == 3_321
    assert all(units._receivers.get(code) for code in olds)
    splits = sum(1 for code in olds if len(units._receivers[code]) > 1)
    assert 350 < splits < 480  # the package's 471 divided, less namesakes fixed and land-only receivers dropped


def test_every_shipped_profile_address_maps() -> None:
    """The done-when: every address of every shipped card profile shows its current units (exact or split)."""
    seen = 0
    for name in list_profiles():
        person = load_profile(name).person
        for field in ("place_of_residence", "place_of_origin", "place_of_birth_registration"):
            address = getattr(person, field)
            if address is None:
                continue
            mapping = map_address(address)
            assert mapping.confidence in (EXACT, SPLIT), (name, field, mapping.reason)
            seen += 1
    assert seen >= 60


def test_without_the_data_package_every_address_is_unknown_with_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_units, "PACKAGE", "no-such-admin-units-package")
    default_units.cache_clear()
    try:
        mapping = map_address("Phường Hàng Bạc, Quận Hoàn Kiếm, Hà Nội")
    finally:
        default_units.cache_clear()
    assert mapping.confidence is UNKNOWN
    assert "not installed" in mapping.reason
    assert "cccd-edge[office]" in mapping.reason
    assert mapping.data_version == "unavailable"


def test_folding_and_unit_names() -> None:
    assert fold("TP. Hồ Chí Minh") == "tp ho chi minh"
    assert fold("Phường 05") == "phuong 5"
    assert fold("Đắk Lắk") == "dak lak"
    assert unit_name("TP.HCM").kind == "thanh pho"
    assert unit_name("Q.1") == unit_name("Q.1").__class__("Q.1", "quan", "1")
    assert unit_name("Thị trấn Trâu Quỳ").kind == "thi tran"
    assert unit_name("Hà Nội").kind is None
    assert segments("Ấp 5, Xã Phước Kiển (nơi ở cũ: Xã A, Huyện B), Huyện Nhà Bè, Việt Nam") == (
        "Ấp 5", "Xã Phước Kiển", "Huyện Nhà Bè")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gives_a_mapping_never_an_exception(text: str) -> None:
    mapping = map_address(text)
    assert mapping.confidence in (EXACT, SPLIT, UNKNOWN)
    mapping.as_dict()


_PIECES = st.sampled_from(["Phường 15", "Quận 10", "TP.", "Tỉnh", "Thành phố", "Xã", "Huyện", "Thị xã", "Thị trấn",
                           "Hà Nội", "Hồ Chí Minh", "Bến Nghé", "(", ")", ",", ";", "  ", "Đ", "0", "Việt Nam"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=30).map(" ".join))
def test_address_like_text_gives_a_mapping_never_an_exception(text: str) -> None:
    assert map_address(text).confidence in (EXACT, SPLIT, UNKNOWN)


def test_a_long_text_is_bounded() -> None:
    units: AdminUnits = default_units()
    """Units are at the end of an address: the last characters are read, the rest of an overlong text is not."""
    assert units.map_address("Phường Bến Nghé, " * 10_000 + "Quận 1, TP. Hồ Chí Minh").confidence is EXACT


def test_read_shows_todays_units_only_with_pii() -> None:
    """``cccd-edge read --json``: the units beside the address; masked output keeps only the confidence, since
    the commune and province of today would give away the masked address."""
    from types import SimpleNamespace

    from edge.commands import read as read_command
    from edge.protocol.lds.dg13 import Dg13

    card = Dg13(id_number="079203001234", full_name="Nguyễn Văn An",
                place_of_origin="Xã Tân Phú Trung, Huyện Củ Chi, TP. Hồ Chí Minh",
                place_of_residence="Số 25 ngõ 68 phố Ỷ Lan, Phường Khương Trung, Quận Thanh Xuân, Hà Nội")
    read: object = SimpleNamespace(dg13=card, dg1=None)
    shown = read_command.addresses(read, show=True)  # type: ignore[arg-type]  # only dg13 is read
    assert shown["place_of_residence"]["as_read"] == card.place_of_residence
    assert shown["place_of_residence"]["mapping"]["confidence"] == "split"
    assert {unit["name"] for unit in shown["place_of_residence"]["mapping"]["candidates"]} == {
        "Phường Khương Đình", "Phường Phương Liệt"}
    assert shown["place_of_origin"]["mapping"]["commune"] == {"name": "Xã Củ Chi", "code": "27553"}
    masked = read_command.addresses(read, show=False)  # type: ignore[arg-type]
    text = json.dumps(masked, ensure_ascii=False)
    assert "Khương" not in text
    assert "Củ Chi" not in text
    assert masked["place_of_origin"]["mapping"]["confidence"] == "exact"
    assert set(masked["place_of_origin"]["mapping"]) == {"confidence", "data_version"}
    assert read_command._units_line(shown["place_of_origin"]["mapping"]) == (
        "Xã Củ Chi (27553), Thành phố Hồ Chí Minh (79) [exact]")


def test_office_verify_shows_todays_units_beside_the_signed_address(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The office side: ``cccd-edge verify`` prints the result as signed and each address's units beside it;
    ``--summary`` (non-personal) only how each address maps."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from edge import signers
    from edge.cli import main
    from edge.protocol import jose
    from edge.protocol.result import ProcedureProfile
    from tests.support.results import CITIZEN, sample_result

    terminal = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    now = 1_800_000_000
    document = sample_result(ProcedureProfile.FULL)
    claims = jose.result_claims(terminal_id="T-01", kid=terminal.kid, seq=1, document=json.loads(document.to_json()),
                                now=now, lifetime=3600)  # fmt: skip
    result = tmp_path / "result.jws"
    result.write_text(jose.sign_jws(terminal, claims, typ=jose.RESULT_TYP))
    pem = tmp_path / "terminal.pem"
    pem.write_bytes(terminal.public_key.public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    assert main(["verify", str(result), "--cert", str(pem), "--now", str(now)]) == 0
    printed = json.loads(capsys.readouterr().out)
    residence = printed["addresses"]["place_of_residence"]
    assert residence["as_read"] == printed["result"]["citizen"]["place_of_residence"] == CITIZEN.place_of_residence
    assert residence["mapping"]["commune"] == {"name": "Phường Sài Gòn", "code": "26740"}
    assert printed["addresses"]["place_of_origin"]["mapping"]["confidence"] == "unknown"  # "Quận 1, TP. HCM": no ward
    assert main(["verify", str(result), "--cert", str(pem), "--now", str(now), "--summary"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["addresses"] == {"place_of_residence": "exact", "place_of_origin": "unknown"}
    assert "Sài Gòn" not in json.dumps(summary, ensure_ascii=False)
