"""DG13: round trips for every profile, an independent asn1crypto decode, the 15/16 ambiguity, fuzzing."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import pytest
from asn1crypto import core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import LdsError
from edge.protocol import tlv
from edge.protocol.lds.dg13 import Dg13, encode_dg13, parse_dg13
from edge.sim.builder import _dg13
from edge.sim.profile import list_profiles, load_profile

PROFILES = list_profiles()


def _field(number: int, value: bytes) -> bytes:
    return tlv.encode_constructed(0x30, tlv.encode(0x02, bytes((number,))), value)


def _dg13_bytes(*fields: bytes, oid: bytes = bytes.fromhex("060628D316010008")) -> bytes:
    body = tlv.encode_constructed(0x30, tlv.encode(0x02, b"\x01"), oid, tlv.encode_constructed(0x31, *fields))
    return tlv.encode(0x6D, body)


def _utf8(text: str) -> bytes:
    return tlv.encode(0x0C, text.encode())


def _independent_decode(data: bytes) -> dict[int, Any]:
    """Decode DG13 with asn1crypto's generic loader only: nothing of our own TLV code is involved."""
    outer = core.load(data)
    assert (outer.class_, outer.tag) == (1, 13)  # [APPLICATION 13] = 6D
    sequence = core.load(outer.contents)
    version, oid, fields = _children(sequence)
    assert core.Integer.load(_raw(version)).native == 1
    assert core.ObjectIdentifier.load(_raw(oid)).dotted == "1.0.10646.1.0.8"
    decoded: dict[int, Any] = {}
    for field in _children(fields):
        number, value = _children(field)
        key = core.Integer.load(_raw(number)).native
        if value.tag == 16:  # nested SEQUENCE of strings
            decoded[key] = [core.UTF8String.load(_raw(part)).native for part in _children(value)]
        else:
            decoded[key] = core.UTF8String.load(_raw(value)).native
    return decoded


def _raw(obj: Any) -> bytes:
    return bytes(obj._header + obj.contents)


def _children(obj: Any) -> list[Any]:
    out = []
    data = obj.contents
    pos = 0
    while pos < len(data):
        child = core.load(data[pos:], strict=False)
        out.append(child)
        pos += len(_raw(child))
    return out


@pytest.mark.parametrize("name", PROFILES)
def test_round_trip_every_profile(name: str) -> None:
    person = load_profile(name).person
    encoded = encode_dg13(_dg13(person))
    parsed = parse_dg13(encoded)
    assert parsed.id_number == person.id_number
    assert parsed.full_name == person.full_name
    assert parsed.date_of_birth == person.date_of_birth
    assert parsed.sex == person.sex
    assert parsed.place_of_residence == person.place_of_residence
    assert parsed.identifying_marks == person.identifying_marks
    assert parsed.date_of_issue == person.date_of_issue
    assert parsed.date_of_expiry == person.expiry
    assert (parsed.father_name, parsed.mother_name, parsed.spouse_name) == (person.father, person.mother, person.spouse)
    assert parsed.old_id_number == person.old_id_number
    assert encode_dg13(parsed) == encoded


@pytest.mark.parametrize("name", PROFILES)
def test_independent_decoder_gives_the_profile_back(name: str) -> None:
    person = load_profile(name).person
    fields = _independent_decode(encode_dg13(_dg13(person)))
    assert fields[1] == person.id_number
    assert fields[2] == person.full_name
    assert fields[3] == person.date_of_birth.strftime("%d/%m/%Y")
    assert fields[4] == person.sex
    assert fields[5] == person.nationality
    assert fields[6] == person.ethnicity
    assert fields[7] == person.religion
    assert fields[8] == person.place_of_origin
    assert fields[9] == person.place_of_residence
    assert fields.get(10) == person.identifying_marks
    assert fields[11] == person.date_of_issue.strftime("%d/%m/%Y")
    expiry = person.expiry
    assert fields[12] == (expiry.strftime("%d/%m/%Y") if expiry else "Không thời hạn")
    assert fields[13] == [person.father or "", person.mother or ""]
    assert fields.get(14) == ([person.spouse] if person.spouse else None)
    assert fields.get(15) == person.old_id_number


def test_elderly_never_expires() -> None:
    parsed = parse_dg13(encode_dg13(_dg13(load_profile("elderly").person)))
    assert parsed.date_of_expiry is None
    assert parsed.raw_fields[12] == "Không thời hạn"


def test_fields_by_number_not_position_and_printable_string() -> None:
    data = _dg13_bytes(
        _field(3, tlv.encode(0x13, b"01/02/2003")),
        _field(1, tlv.encode(0x13, b"079203012345")),
        _field(12, _utf8("KHÔNG THỜI HẠN")),
        _field(2, _utf8("Nguyễn Văn An")),
    )
    parsed = parse_dg13(data)
    assert parsed.id_number == "079203012345"
    assert parsed.date_of_birth == dt.date(2003, 2, 1)
    assert parsed.full_name == "Nguyễn Văn An"
    assert parsed.date_of_expiry is None
    assert parsed.sex is None
    assert parsed.father_name is None


@pytest.mark.parametrize(
    ("f15", "f16", "old_id"),
    [
        ("123456789", None, "123456789"),
        ("ABCDEF0123456789", "123456789", "123456789"),
        ("ABCDEF0123456789", "079203012345", "079203012345"),
        ("AB12", "12345", None),
    ],
)
def test_fields_15_16_ambiguity(f15: str, f16: str | None, old_id: str | None) -> None:
    fields = [_field(1, _utf8("079203012345")), _field(15, _utf8(f15))]
    if f16 is not None:
        fields.append(_field(16, _utf8(f16)))
    parsed = parse_dg13(_dg13_bytes(*fields))
    assert parsed.old_id_number == old_id
    assert parsed.raw_fields[15] == f15
    assert parsed.raw_fields.get(16) == f16
    assert parse_dg13(encode_dg13(parsed)) == parsed


def test_decomposed_unicode_is_normalised() -> None:
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "Nguyễn Văn An")
    parsed = parse_dg13(_dg13_bytes(_field(2, _utf8(decomposed))))
    assert parsed.full_name == "Nguyễn Văn An"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (tlv.encode(0x6C, b""), "outer tag"),
        (_dg13_bytes(_field(3, _utf8("31/02/2003"))), "does not exist"),
        (_dg13_bytes(_field(3, _utf8("yesterday"))), "dd/mm/yyyy"),
        (_dg13_bytes(_field(2, _utf8("a")), _field(2, _utf8("b"))), "twice"),
        (_dg13_bytes(_field(2, tlv.encode(0x0C, b"\xff\xfe"))), "not valid utf-8"),
        (_dg13_bytes(_field(2, tlv.encode(0x04, b"x"))), "not a string"),
        (_dg13_bytes(tlv.encode_constructed(0x30, tlv.encode(0x02, b"\x01"))), "SEQUENCE"),
        (tlv.encode(0x6D, tlv.encode_constructed(0x30, tlv.encode(0x02, b"\x01"))), "version, OID"),
    ],
)
def test_malformed_raises_lds_error(data: bytes, message: str) -> None:
    with pytest.raises(LdsError, match=message) as info:
        parse_dg13(data)
    assert info.value.what == "DG13"


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    id_number=st.from_regex(r"\A[0-9]{12}\Z"),
    name=_TEXT,
    dob=st.dates(min_value=dt.date(1900, 1, 1)),
    doe=st.none() | st.dates(min_value=dt.date(1900, 1, 1)),
    father=st.none() | _TEXT,
    spouse=st.none() | _TEXT,
    old=st.none() | st.from_regex(r"\A[0-9]{9}\Z"),
)
def test_round_trip_hypothesis(
    id_number: str, name: str, dob: dt.date, doe: dt.date | None, father: str | None, spouse: str | None,
    old: str | None,
) -> None:  # fmt: skip
    import unicodedata

    name = unicodedata.normalize("NFC", name)
    original = Dg13(id_number=id_number, full_name=name, date_of_birth=dob, date_of_expiry=doe,
                    father_name=father or None, spouse_name=spouse or None, old_id_number=old)  # fmt: skip
    parsed = parse_dg13(encode_dg13(original))
    assert (parsed.id_number, parsed.full_name, parsed.date_of_birth) == (id_number, name, dob)
    assert parsed.date_of_expiry == doe
    assert parsed.old_id_number == old


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(LdsError):
        parse_dg13(data)


_VALID = encode_dg13(_dg13(load_profile("married").person))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(_VALID) - 1), st.integers(min_value=0, max_value=255),
       st.integers(min_value=0, max_value=len(_VALID)))  # fmt: skip
def test_fuzz_mutations(position: int, value: int, cut: int) -> None:
    mutated = (_VALID[:position] + bytes((value,)) + _VALID[position + 1 :])[: max(cut, 1)]
    with contextlib.suppress(LdsError):
        parse_dg13(mutated)


@pytest.mark.parametrize("number", [128, 300, 65536])
def test_encoding_a_parsed_dg13_with_an_odd_field_number_raises_lds_error(number: int) -> None:
    """A chip may number a field with any INTEGER; writing such a DG13 back was a ValueError from bytes()."""
    parsed = parse_dg13(_dg13_bytes(tlv.encode_constructed(0x30, tlv.encode(0x02, number.to_bytes(3, "big")),
                                                           _utf8("x"))))  # fmt: skip
    assert parsed.raw_fields[number] == "x"
    with pytest.raises(LdsError, match=f"field number {number} out of range"):
        encode_dg13(parsed)


def test_an_enormous_field_number_is_an_lds_error() -> None:
    """A field numbered by an INTEGER of thousands of digits (twice) raised ValueError: Python refuses to print it."""
    huge = tlv.encode_constructed(0x30, tlv.encode(0x02, b"\x7f" + b"\xff" * 2000), _utf8("x"))
    with pytest.raises(LdsError, match="INTEGER of 2001 bytes"):
        parse_dg13(_dg13_bytes(huge, huge))


# --- the 2024 card: what the confirmed layout does not cover is kept, never a failed read ------------------------

_ISSUED_2024 = _field(11, _utf8("20/08/2024"))
_ISSUED_2021 = _field(11, _utf8("15/04/2021"))


@pytest.mark.parametrize(
    "value",
    [
        tlv.encode_constructed(0x30, _utf8("Phường Thạch Thang"), _utf8("Quận Hải Châu")),  # nested strings
        tlv.encode_constructed(0x30, tlv.encode(0x02, b"\x07")),  # nested, not strings
        tlv.encode(0x02, b"\x01\x00"),  # INTEGER
        tlv.encode(0x04, b"\x00\xff"),  # OCTET STRING
        tlv.encode(0x0C, b"\xff\xfe"),  # UTF8String that is not UTF-8
        tlv.encode(0x18, b"20240820000000Z"),  # GeneralizedTime
    ],
)
@pytest.mark.parametrize("number", [17, 18, 40, 127])
def test_a_field_of_an_unconfirmed_number_is_kept_as_sent_whatever_it_holds(number: int, value: bytes) -> None:
    data = _dg13_bytes(_field(1, _utf8("048190006789")), _ISSUED_2024, _field(number, value))
    parsed = parse_dg13(data)
    assert parsed.id_number == "048190006789"
    assert parsed.raw_values == {number: value}
    assert number not in parsed.raw_fields
    assert (parsed.field_numbers, parsed.unconfirmed_field_numbers) == ((1, 11, number), (number,))
    assert parsed.place_of_birth_registration is None
    assert encode_dg13(parsed) == data  # written back exactly: a simulator can replay what a real card carried


def test_a_confirmed_flat_field_found_nested_is_kept_raw_not_lost() -> None:
    """A structured place of residence (one guess at a new layout) must not vanish silently nor fail the read."""
    nested = tlv.encode_constructed(0x30, _utf8("K12/4 Nguyễn Chí Thanh"), _utf8("Phường Thạch Thang"))
    parsed = parse_dg13(_dg13_bytes(_field(9, nested), _ISSUED_2024))
    assert parsed.place_of_residence is None
    assert parsed.raw_values == {9: nested}
    assert parsed.unconfirmed_field_numbers == ()  # the number is known, only its form is not


def test_text_of_an_unconfirmed_number_stays_in_raw_fields() -> None:
    parsed = parse_dg13(_dg13_bytes(_ISSUED_2024, _field(20, tlv.encode(0x13, b"O+"))))
    assert parsed.raw_fields[20] == "O+"
    assert parsed.raw_values == {}
    assert parsed.unconfirmed_field_numbers == (20,)


def test_place_of_birth_registration_is_typed_only_on_a_2024_card_and_only_as_text() -> None:
    place = "Phường Thạch Thang, Quận Hải Châu, TP. Đà Nẵng"
    new = parse_dg13(_dg13_bytes(_ISSUED_2024, _field(17, _utf8(place))))
    assert (new.generation, new.place_of_birth_registration, new.raw_fields[17]) == ("2024", place, place)
    old = parse_dg13(_dg13_bytes(_ISSUED_2021, _field(17, _utf8(place))))
    assert (old.generation, old.place_of_birth_registration, old.raw_fields[17]) == ("2021", None, place)
    undated = parse_dg13(_dg13_bytes(_field(17, _utf8(place))))
    assert (undated.generation, undated.place_of_birth_registration) == (None, None)
    nested = parse_dg13(_dg13_bytes(_ISSUED_2024, _field(17, tlv.encode_constructed(0x30, _utf8(place)))))
    assert nested.place_of_birth_registration is None
    assert 17 in nested.raw_values


def test_the_2024_profile_round_trips_with_its_place_of_birth_registration() -> None:
    person = load_profile("card2024").person
    assert person.place_of_birth_registration is not None
    encoded = encode_dg13(_dg13(person))
    parsed = parse_dg13(encoded)
    assert parsed.place_of_birth_registration == person.place_of_birth_registration
    assert _independent_decode(encoded)[17] == person.place_of_birth_registration
    assert parsed.identifying_marks is None  # the 2024 card no longer carries them


_ANY_TLV = st.builds(lambda tag, body: tlv.encode(tag, body), st.sampled_from([0x01, 0x02, 0x04, 0x05, 0x0C, 0x13,
                     0x16, 0x17, 0x18, 0x1E, 0x80, 0xA0]), st.binary(max_size=24))  # fmt: skip
_NESTED = st.lists(_ANY_TLV, max_size=3).map(lambda parts: tlv.encode_constructed(0x30, *parts))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(min_value=17, max_value=127), _ANY_TLV | _NESTED, max_size=5))
def test_fuzz_unconfirmed_fields_never_fail_a_read_and_are_all_kept(extra: dict[int, bytes]) -> None:
    """Whatever a newer card adds beyond field 16, the confirmed fields still read and nothing added is lost."""
    data = _dg13_bytes(_field(1, _utf8("048190006789")), _ISSUED_2024,
                       *(_field(number, value) for number, value in sorted(extra.items())))  # fmt: skip
    parsed = parse_dg13(data)
    assert (parsed.id_number, parsed.date_of_issue) == ("048190006789", dt.date(2024, 8, 20))
    assert set(parsed.raw_values) | (set(parsed.raw_fields) - {1, 11}) == set(extra)
    assert parsed.unconfirmed_field_numbers == tuple(sorted(extra))
    assert parse_dg13(encode_dg13(parsed)) == parsed
