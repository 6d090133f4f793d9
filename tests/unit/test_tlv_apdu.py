"""BER-TLV and APDU encoding: round trips, long forms, and typed errors on malformed input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.errors import TlvError
from edge.protocol import tlv
from edge.protocol.apdu import CommandApdu, ResponseApdu


@pytest.mark.parametrize("length", [0, 1, 127, 128, 255, 256, 65535, 70000])
def test_tlv_roundtrip_lengths(length: int) -> None:
    value = bytes(length % 251 for _ in range(length))
    encoded = tlv.encode(0x5F1F, value)
    decoded = tlv.decode(encoded)
    assert decoded.tag == 0x5F1F
    assert decoded.value == value


def test_constructed_children() -> None:
    inner = tlv.encode(0x02, b"\x01") + tlv.encode(0x7F61, tlv.encode(0x02, b"\x02"))
    outer = tlv.decode(tlv.encode_constructed(0x6D, inner))
    assert outer.constructed
    kids = outer.children()
    assert [k.tag for k in kids] == [0x02, 0x7F61]
    assert kids[1].require(0x02).value == b"\x02"


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x5f", b"\x61\x05\x01", b"\x61\x80", b"\x61\x85\x01\x01\x01\x01\x01", b"\x61\x82\x01"],
)
def test_malformed_tlv_raises_typed_error(raw: bytes) -> None:
    with pytest.raises(TlvError):
        tlv.decode(raw)


@given(st.binary(max_size=300))
def test_tlv_fuzz_never_crashes(raw: bytes) -> None:
    with contextlib.suppress(TlvError):
        tlv.decode_all(raw)


def test_oid_arcs_up_to_128_bits_decode_and_longer_ones_are_refused() -> None:
    uuid_arc = "2.25.329800735698586629295641978511506172918"  # a UUID OID: one 128-bit arc
    assert tlv.decode_oid(tlv.encode_oid(uuid_arc)) == uuid_arc
    # an arc of 3000 octets has ~6300 digits: printing it raised ValueError (Python's int-to-str limit)
    with pytest.raises(TlvError, match="arc longer than 20 octets") as info:
        tlv.decode_oid(b"\xff" * 3000 + b"\x01", "DG14")
    assert info.value.what == "DG14"


@pytest.mark.parametrize(
    "apdu",
    [
        CommandApdu(0x00, 0xA4, 0x04, 0x0C, bytes.fromhex("A0000002471001")),
        CommandApdu(0x00, 0xB0, 0x9C, 0x00, le=256),
        CommandApdu(0x00, 0x84, 0x00, 0x00, le=8),
        CommandApdu(0x00, 0xB1, 0x00, 0x00, b"\x54\x02\x01\x00", le=65536, extended=True),
        CommandApdu(0x0C, 0xB0, 0x00, 0x00, b"\x97\x01\x00", le=256, extended=True),
        CommandApdu(0x00, 0xB0, 0x00, 0x00, le=1000, extended=True),
    ],
)
def test_command_apdu_roundtrip(apdu: CommandApdu) -> None:
    assert CommandApdu.from_bytes(apdu.to_bytes()) == apdu


def test_response_apdu() -> None:
    resp = ResponseApdu.from_bytes(bytes.fromhex("01029000"))
    assert resp.ok
    assert resp.data == b"\x01\x02"
