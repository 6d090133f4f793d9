"""The virtual card's read quirks that make the reader step down (6700/6B00 to a large Le, 6282 with the last
chunk), and `cccd-edge sim card --quirk` refusing what the card cannot be, in one line."""

from __future__ import annotations

import dataclasses

import pytest

from edge.cli import build_parser
from edge.protocol import tlv
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.iso7816 import EMRTD_AID
from edge.sim.card import VirtualCard
from edge.sim.model import Quirks, dg_fid
from edge.sim.profile import QuirkSettings, load_profile, parse_quirk_assignments
from edge.sim.runner import demo_spec

FILE = tlv.encode(0x75, bytes(range(256)) * 4)  # 1028 bytes on DG2
SIZE = len(FILE)


def card_in_applet(**quirks: object) -> VirtualCard:
    base = demo_spec()
    image = dataclasses.replace(base.image, applet_files={**base.image.applet_files, dg_fid(2): FILE})
    card = VirtualCard(dataclasses.replace(base, image=image, quirks=Quirks(plain_reads=True, **quirks)))  # type: ignore[arg-type]
    card.power_on()
    assert card.send_and_receive(CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)).ok
    assert card.send_and_receive(CommandApdu(0x00, 0xA4, 0x02, 0x0C, dg_fid(2).to_bytes(2, "big"))).ok
    return card


def read_b0(card: VirtualCard, offset: int, le: int) -> ResponseApdu:
    command = CommandApdu(0x00, 0xB0, offset >> 8, offset & 0xFF, le=le, extended=le > 256)
    return card.send_and_receive(command)


def read_b1(card: VirtualCard, offset: int, le: int) -> ResponseApdu:
    command = CommandApdu(0x00, 0xB1, 0x00, 0x02, tlv.encode(0x54, offset.to_bytes(2, "big")), le=le)
    return card.send_and_receive(command)


@pytest.mark.parametrize("refusal", [None, 0x6700, 0x6B00])
def test_an_le_over_the_limit_is_refused_with_the_chosen_status_word(refusal: int | None) -> None:
    card = card_in_applet(max_le=0xA0, **({} if refusal is None else {"le_refusal_sw": refusal}))
    assert card.send_and_receive(CommandApdu(0x00, 0xB0, 0x82, 0x00, le=0xA1)).sw == (refusal or 0x6700)  # by SFI
    assert read_b0(card, 0, 0xA1).sw == (refusal or 0x6700)
    assert read_b0(card, 0, 0xA0) == ResponseApdu(FILE[:0xA0], 0x9000)


def test_6282_comes_with_the_chunk_that_reaches_the_end_and_only_with_it() -> None:
    card = card_in_applet(eof_warning_on_last_chunk=True)
    assert read_b0(card, 0, 256) == ResponseApdu(FILE[:256], 0x9000)
    assert read_b0(card, SIZE - 100, 99) == ResponseApdu(FILE[-100:-1], 0x9000)
    assert read_b0(card, SIZE - 100, 100) == ResponseApdu(FILE[-100:], 0x6282)  # exactly to the end
    assert read_b0(card, SIZE - 100, 200) == ResponseApdu(FILE[-100:], 0x6282)  # past the end
    assert read_b1(card, SIZE - 10, 20) == ResponseApdu(tlv.encode(0x53, FILE[-10:]), 0x6282)
    assert read_b1(card, 0, 20).sw == 0x9000


def test_the_older_eof_warning_fires_only_past_the_end() -> None:
    card = card_in_applet(eof_warning=True)
    assert read_b0(card, SIZE - 100, 100).sw == 0x9000
    assert read_b0(card, SIZE - 100, 101) == ResponseApdu(FILE[-100:], 0x6282)


@pytest.mark.parametrize("refusal", [None, 0x6A81, 0x6986, 0x6B00])
def test_no_sfi_refuses_every_read_by_short_file_id_and_serves_the_selected_file(refusal: int | None) -> None:
    card = card_in_applet(no_sfi=True, **({} if refusal is None else {"sfi_refusal_sw": refusal}))
    for p1 in (0x82, 0x9E, 0x81):  # DG2, EF.COM, DG1: present or not, the answer is the refusal
        assert card.send_and_receive(CommandApdu(0x00, 0xB0, p1, 0x00, le=16)).sw == (refusal or 0x6A86)
    assert read_b0(card, 0, 16) == ResponseApdu(FILE[:16], 0x9000)  # DG2 is still the selected EF
    assert read_b1(card, 16, 20).sw == 0x9000  # B1 names its file in P1-P2, not P1 bit 8


def test_the_no_sfi_profile_is_the_default_card_refusing_with_6a86() -> None:
    quirks = load_profile("quirk-no-sfi").quirks
    assert quirks == QuirkSettings(no_sfi=True, sfi_refusal_sw=0x6A86)
    assert load_profile("quirk-no-sfi").person == load_profile("default").person


def test_quirk_assignments_take_toml_values() -> None:
    settings = parse_quirk_assignments(["max_le=0xA0", "le_refusal_sw = 0x6B00", "naked_errors=true",
                                        "bitrate_kbps=106", "answer_delay_ms=5"])  # fmt: skip
    assert settings == QuirkSettings(max_le=160, le_refusal_sw=0x6B00, naked_errors=True, bitrate_kbps=106,
                                     answer_delay_ms=5.0)  # fmt: skip
    assert QuirkSettings(max_le=64, extended_length=False).merged(settings).max_le == 160  # the command line wins
    assert parse_quirk_assignments([]) == QuirkSettings()


BAD_QUIRKS = [
    pytest.param(["bitrate_kbps=100"], "bitrate_kbps=100", id="not an ISO 14443 rate"),
    pytest.param(["le_refusal_sw=0x6A00"], "0x6700, 0x6B00", id="not a Le refusal"),
    pytest.param(["sfi_refusal_sw=0x6A82"], "0x6A86, 0x6A81, 0x6986, 0x6B00", id="file absent is no refusal"),
    pytest.param(["naked_errors=1"], "boolean", id="1 for true"),
    pytest.param(["max_le=0"], "greater than or equal to 1", id="max Le 0"),
    pytest.param(["max_le=big"], "not a TOML number", id="not TOML"),
    pytest.param(["max_le=1\nplain_reads=true"], "not a TOML number", id="two values"),
    pytest.param(["max_le"], "expected KEY=VALUE", id="no value"),
    pytest.param(["maxle=160"], "not a known quirk", id="unknown key"),
    pytest.param(["max_le=160", "extended_length=no"], "extended_length=no", id="the second of two"),
]


@pytest.mark.parametrize(("quirks", "message"), BAD_QUIRKS)
def test_sim_card_refuses_a_bad_quirk_in_one_line_with_exit_2(
    quirks: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sim", "card", "--port", "1"]  # never reached: the quirks are checked before the card is built
    for quirk in quirks:
        argv += ["--quirk", quirk]
    args = build_parser().parse_args(argv)
    assert args.func(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: config --quirk '")
    assert err.count("\n") == 1
    assert message in err
