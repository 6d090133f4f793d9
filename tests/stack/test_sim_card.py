"""The virtual CCCD's ISO 7816-4 behaviour: directly on raw bytes, and through pyscard -> pcscd -> vpcd (stack).

The SM seam is exercised with a deliberately trivial ChipSecurity (``ToySecurity``): the real chip side of
PACE/BAC/SM lives in edge/sim/chip_security.py and has its own tests; here only the card's dispatch rules matter
(6988 without a session, a plain command ends the session, naked errors still count the SSC).
"""

from __future__ import annotations

import dataclasses

import pytest

from edge.drivers.pcsc import PcscConnection, PcscReaderDriver
from edge.protocol import tlv
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.chaining import ResponseChaining
from edge.protocol.chip import CCCD_CARD_ACCESS, CountingConnection
from edge.protocol.iso7816 import EMRTD_AID
from edge.protocol.read_strategy import read_file
from edge.sim.card import CardLeftField, SimSmFault, VirtualCard
from edge.sim.model import Quirks, SimCardSpec, dg_fid
from edge.sim.runner import DEMO_COM, demo_spec
from edge.sim.stack import READER_NAMES
from tests.fixtures.pcsc import InsertCard

SELECT_APPLET = CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)
BIG = tlv.encode(0x75, bytes(range(256)) * 80)  # 20 KB, like a DG2 face image


def spec_with(**quirks: object) -> SimCardSpec:
    base = demo_spec()
    image = dataclasses.replace(base.image, applet_files={**base.image.applet_files, dg_fid(2): BIG})
    return SimCardSpec("test", image, base.secrets, Quirks(**{"plain_reads": True, **quirks}))  # type: ignore[arg-type]


def send(card: VirtualCard, command: CommandApdu) -> ResponseApdu:
    return ResponseApdu.from_bytes(card.process(command.to_bytes()))


def fresh(**quirks: object) -> VirtualCard:
    card = VirtualCard(spec_with(**quirks))
    card.power_on()
    return card


def in_applet(**quirks: object) -> VirtualCard:
    card = fresh(**quirks)
    assert send(card, SELECT_APPLET).sw == 0x9000
    return card


# --- file system --------------------------------------------------------------------------------------------------


def test_select_mf_answers_6d00_like_the_real_card() -> None:
    card = fresh()
    assert card.process(bytes.fromhex("00A4000C023F00")) == b"\x6d\x00"
    assert card.process(bytes.fromhex("00A4000C")) == b"\x6d\x00"


def test_card_access_is_readable_in_the_mf_without_access_control() -> None:
    card = VirtualCard(dataclasses.replace(demo_spec(), quirks=Quirks()))
    card.power_on()
    assert card.process(bytes.fromhex("00B09C0000")) == CCCD_CARD_ACCESS + b"\x90\x00"
    assert send(card, CommandApdu(0, 0xA4, 0x02, 0x0C, b"\x01\x1c")).ok
    assert send(card, CommandApdu(0, 0xB0, 0, 4, le=256)).data == CCCD_CARD_ACCESS[4:]


def test_select_applet_and_files() -> None:
    card = fresh()
    assert send(card, CommandApdu(0, 0xA4, 0x04, 0x0C, bytes.fromhex("A0000002471002"))).sw == 0x6A82
    assert send(card, SELECT_APPLET).ok
    assert send(card, CommandApdu(0, 0xA4, 0x02, 0x0C, b"\x01\x1e")).ok
    assert send(card, CommandApdu(0, 0xB0, 0, 0, le=256)).data == DEMO_COM
    fcp = send(card, CommandApdu(0, 0xA4, 0x00, 0x00, b"\x01\x02", le=256))
    assert fcp.ok
    assert tlv.decode(fcp.data).require(0x80).value == len(BIG).to_bytes(2, "big")
    assert send(card, CommandApdu(0, 0xA4, 0x02, 0x0C, b"\x01\x0b")).sw == 0x6A82  # DG11 absent
    assert send(card, CommandApdu(0, 0xA4, 0x02, 0x0C, b"\x01\x03")).ok  # DG3 exists...
    assert send(card, CommandApdu(0, 0xB0, 0, 0, le=16)).sw == 0x6982  # ...but is denied


def test_read_binary_rules() -> None:
    card = in_applet()
    assert send(card, CommandApdu(0, 0xB0, 0, 0, le=16)).sw == 0x6986  # no current EF yet
    assert send(card, CommandApdu(0, 0xB0, 0x8B, 0, le=16)).sw == 0x6A82  # DG11 by SFI
    assert send(card, CommandApdu(0, 0xB0, 0x83, 0, le=16)).sw == 0x6982  # DG3 by SFI
    answer = send(card, CommandApdu(0, 0xB0, 0x9E, 2, le=256))  # Le past the end: fewer bytes, 9000
    assert answer == ResponseApdu(DEMO_COM[2:], 0x9000)
    assert send(card, CommandApdu(0, 0xB0, 0, len(DEMO_COM), le=1)).sw == 0x6B00  # offset past the end
    assert send(card, CommandApdu(0, 0xB0, 0, 0)).sw == 0x6700  # no Le
    assert send(card, CommandApdu(0x80, 0xB0, 0, 0, le=1)).sw == 0x6E00
    assert send(card, CommandApdu(0, 0xCA, 0, 0, le=1)).sw == 0x6D00


def test_extended_le_and_length_quirks() -> None:
    card = in_applet()
    answer = send(card, CommandApdu(0, 0xB0, 0x82, 0, le=65536, extended=True))
    assert answer == ResponseApdu(BIG, 0x9000)
    assert send(in_applet(extended_length=False), CommandApdu(0, 0xB0, 0x82, 0, le=1000, extended=True)).sw == 0x6700
    assert send(in_applet(max_le=128), CommandApdu(0, 0xB0, 0x82, 0, le=200)).sw == 0x6700
    assert send(in_applet(max_le=128), CommandApdu(0, 0xB0, 0x82, 0, le=128)).ok


def test_eof_warning_and_wrong_le_hint_quirks() -> None:
    assert send(in_applet(eof_warning=True), CommandApdu(0, 0xB0, 0x9E, 0, le=256)) == ResponseApdu(DEMO_COM, 0x6282)
    assert send(in_applet(wrong_le_hint=True), CommandApdu(0, 0xB0, 0x9E, 0, le=256)).sw == 0x6C00 | len(DEMO_COM)


def test_odd_ins_read_binary() -> None:
    card = in_applet()
    offset = 0x9000 % len(BIG)
    by_sfi = send(card, CommandApdu(0, 0xB1, 0x00, 0x02, tlv.encode(0x54, offset.to_bytes(2, "big")), le=100))
    assert by_sfi.ok
    assert tlv.decode(by_sfi.data) == tlv.Tlv(0x53, BIG[offset : offset + 98])
    current = send(card, CommandApdu(0, 0xB1, 0, 0, tlv.encode(0x54, b"\x00\x10"), le=20))  # P1P2 0 = current EF
    assert tlv.decode(current.data).value == BIG[0x10 : 0x10 + 18]
    by_fid = send(card, CommandApdu(0, 0xB1, 0x01, 0x1E, tlv.encode(0x54, b"\x00"), le=256))
    assert tlv.decode(by_fid.data).value == DEMO_COM
    assert send(card, CommandApdu(0, 0xB1, 0, 0, b"\x55\x01\x00", le=20)).sw == 0x6A80


def test_61xx_get_response_quirk() -> None:
    card = in_applet(response_chunk=50)
    first = send(card, CommandApdu(0, 0xB0, 0x82, 0, le=200))
    assert (first.data, first.sw) == (BIG[:50], 0x6196)
    rest = send(card, CommandApdu(0, 0xC0, 0, 0, le=0x96))
    assert (rest.data, rest.sw) == (BIG[50:100], 0x6164)
    assert send(card, CommandApdu(0, 0xB0, 0x9E, 0, le=16)).ok  # another command drops what was pending
    assert send(card, CommandApdu(0, 0xC0, 0, 0, le=16)).sw == 0x6985


def test_power_on_resets_the_selection() -> None:
    card = in_applet()
    assert send(card, CommandApdu(0, 0xB0, 0x9E, 0, le=1)).ok
    card.reset()
    assert send(card, CommandApdu(0, 0xB0, 0, 0, le=1)).sw == 0x6986
    assert send(card, CommandApdu(0, 0xB0, 0x9E, 0, le=1)).sw == 0x6A82  # EF.COM is not in the MF


def test_counters_and_timing_model() -> None:
    card = in_applet(bitrate_kbps=424, apdu_overhead_ms=10.0)
    card.reset_counters()
    command = CommandApdu(0, 0xB0, 0x82, 0, le=200)
    for _ in range(5):
        card.process(command.to_bytes())
    counters = card.counters
    assert (counters.apdus, counters.bytes_in, counters.bytes_out) == (5, 5 * 5, 5 * 202)
    assert counters.modelled_seconds == pytest.approx((5 * 10 + (25 + 1010) * 10 / 424) / 1000)


def test_remove_after_apdus() -> None:
    card = fresh(remove_after_apdus=2)
    card.process(SELECT_APPLET.to_bytes())
    card.process(bytes.fromhex("00B09E0000"))
    with pytest.raises(CardLeftField):
        card.process(bytes.fromhex("00B09E0000"))
    assert card.left_field
    assert card.counters.apdus == 2


# --- secure messaging seam ----------------------------------------------------------------------------------------


class ToySecurity:
    """A transparent 'secure channel' to test the card's dispatch: GET CHALLENGE opens it, wrap counts an SSC."""

    def __init__(self) -> None:
        self.active = False
        self.ssc = 0
        self.resets = 0

    def handles(self, command: CommandApdu) -> bool:
        return command.ins in (0x84, 0x82, 0x22, 0x86, 0x88)

    def process(self, command: CommandApdu) -> ResponseApdu:
        self.active = True
        return ResponseApdu(bytes(8), 0x9000)

    @property
    def session_active(self) -> bool:
        return self.active

    def unwrap(self, command: CommandApdu) -> CommandApdu:
        self.ssc += 1
        if command.data == b"BAD MAC":
            self.active = False
            raise SimSmFault(0x6988, "bad MAC")
        return dataclasses.replace(command, cla=command.cla & ~0x0C)

    def refuse(self) -> None:
        self.ssc -= 1

    def wrap(self, response: ResponseApdu) -> ResponseApdu:
        self.ssc += 1
        return ResponseApdu(b"\x99\x02" + response.sw.to_bytes(2, "big") + response.data, 0x9000)

    def reset(self) -> None:
        self.active = False
        self.resets += 1


def secured_card(**quirks: object) -> tuple[VirtualCard, ToySecurity]:
    security = ToySecurity()
    card = VirtualCard(dataclasses.replace(spec_with(**quirks), quirks=Quirks(**quirks)), security)  # type: ignore[arg-type]
    card.power_on()
    assert send(card, SELECT_APPLET).ok
    return card, security


def test_sm_without_session_answers_6988_and_plain_reads_are_denied() -> None:
    card, _security = secured_card()
    assert send(card, CommandApdu(0x0C, 0xB0, 0x9E, 0, le=16)).sw == 0x6988
    assert send(card, CommandApdu(0x00, 0xB0, 0x9E, 0, le=16)).sw == 0x6982
    without_security = VirtualCard(dataclasses.replace(demo_spec(), quirks=Quirks()))
    assert without_security.process(bytes.fromhex("0CB09E0010")) == b"\x69\x88"


def test_secured_read_is_unwrapped_dispatched_and_wrapped() -> None:
    card, security = secured_card()
    assert send(card, CommandApdu(0x00, 0x84, 0, 0, le=8)).ok
    answer = send(card, CommandApdu(0x0C, 0xB0, 0x9E, 0, le=256))
    assert answer.data == b"\x99\x02\x90\x00" + DEMO_COM
    assert security.ssc == 2


def test_plain_command_ends_the_session() -> None:
    card, security = secured_card()
    send(card, CommandApdu(0x00, 0x84, 0, 0, le=8))
    assert send(card, CommandApdu(0x00, 0xA4, 0x02, 0x0C, b"\x01\x1e")).ok
    assert not security.session_active
    assert send(card, CommandApdu(0x0C, 0xB0, 0x9E, 0, le=16)).sw == 0x6988


def test_naked_errors_are_not_counted_unless_the_quirk_says_so() -> None:
    """A naked answer is a refusal before secure messaging: the chip's SSC stays (gmrtd #457); the counted variant
    moves it by two, as a chip that counted and answered naked anyway would."""
    card, security = secured_card(naked_errors=True)
    send(card, CommandApdu(0x00, 0x84, 0, 0, le=8))
    assert send(card, CommandApdu(0x0C, 0xB0, 0x8B, 0, le=16)) == ResponseApdu(b"", 0x6A82)
    assert security.ssc == 0
    assert security.session_active
    counting, counted = secured_card(naked_errors=True, naked_errors_counted=True)
    send(counting, CommandApdu(0x00, 0x84, 0, 0, le=8))
    assert send(counting, CommandApdu(0x0C, 0xB0, 0x8B, 0, le=16)) == ResponseApdu(b"", 0x6A82)
    assert counted.ssc == 2
    wrapped_card, _ = secured_card()
    send(wrapped_card, CommandApdu(0x00, 0x84, 0, 0, le=8))
    assert send(wrapped_card, CommandApdu(0x0C, 0xB0, 0x8B, 0, le=16)).data == b"\x99\x02\x6a\x82"


def test_sm_fault_answers_plain_and_session_lost_quirk() -> None:
    card, _security = secured_card()
    send(card, CommandApdu(0x00, 0x84, 0, 0, le=8))
    assert send(card, CommandApdu(0x0C, 0xB0, 0x9E, 0, b"BAD MAC", le=16)).sw == 0x6988
    lossy, security = secured_card(session_lost_after_apdus=1)
    send(lossy, CommandApdu(0x00, 0x84, 0, 0, le=8))
    assert send(lossy, CommandApdu(0x0C, 0xB0, 0x9E, 0, le=16)).ok
    assert send(lossy, CommandApdu(0x0C, 0xB0, 0x9E, 0, le=16)) == ResponseApdu(b"", 0x6987)
    assert not security.session_active
    send(lossy, CommandApdu(0x00, 0x84, 0, 0, le=8))
    assert send(lossy, CommandApdu(0x0C, 0xB0, 0x9E, 0, le=16)).ok  # only once


def test_applet_select_under_sm_keeps_the_session_a_plain_one_ends_it() -> None:
    card, security = secured_card()
    send(card, CommandApdu(0x00, 0x84, 0, 0, le=8))  # as after PACE in the MF
    assert send(card, CommandApdu(0x0C, 0xA4, 0x04, 0x0C, EMRTD_AID)).data == b"\x99\x02\x90\x00"
    assert security.session_active
    assert send(card, SELECT_APPLET).ok
    assert not security.session_active


# --- through the real stack ---------------------------------------------------------------------------------------


@pytest.mark.stack
def test_61xx_is_collected_by_response_chaining(insert_card: InsertCard, pcsc_driver: PcscReaderDriver) -> None:
    simulated = insert_card(spec_with(response_chunk=64))
    with pcsc_driver.connect(READER_NAMES[0]) as conn:
        wire = CountingConnection(conn)
        chained = ResponseChaining(wire)
        assert chained.send_and_receive(SELECT_APPLET).ok
        answer = chained.send_and_receive(CommandApdu(0, 0xB0, 0x82, 0, le=256))
        assert answer == ResponseApdu(BIG[:256], 0x9000)
        assert wire.apdus == 1 + 4  # the SELECT, one READ BINARY and three GET RESPONSE
        raw = conn.send_and_receive(CommandApdu(0, 0xB0, 0x82, 0, le=256))  # the transport alone: the answer as is
        assert raw == ResponseApdu(BIG[:64], 0x61C0)
    assert simulated.counters.apdus == 5 + 1


@pytest.mark.stack
def test_6cxx_is_answered_by_resending(insert_card: InsertCard, pcsc_driver: PcscReaderDriver) -> None:
    insert_card(spec_with(wrong_le_hint=True))
    with pcsc_driver.connect(READER_NAMES[0]) as conn:
        wire = CountingConnection(conn)
        chained = ResponseChaining(wire)
        assert chained.send_and_receive(SELECT_APPLET).ok
        assert chained.send_and_receive(CommandApdu(0, 0xB0, 0x9E, 0, le=256)) == ResponseApdu(DEMO_COM, 0x9000)
        assert wire.apdus == 3


@pytest.mark.stack
def test_extended_length_through_pcscd(insert_card: InsertCard, pcsc_driver: PcscReaderDriver) -> None:
    simulated = insert_card(spec_with())
    with pcsc_driver.connect(READER_NAMES[0]) as conn:
        wire = CountingConnection(conn)
        assert wire.send_and_receive(SELECT_APPLET).ok
        assert read_file(wire, 2, chunk=65536, extended_ok=True) == BIG
        assert wire.apdus == 2
        assert (wire.bytes_sent, wire.bytes_received) == (
            simulated.counters.bytes_in,
            simulated.counters.bytes_out,
        )


@pytest.mark.stack
def test_sfi_and_b1_reads_through_pcscd(pcsc_connection: PcscConnection) -> None:
    assert read_file(pcsc_connection, 0x1C) == CCCD_CARD_ACCESS  # in the MF, by SFI
    assert pcsc_connection.send_and_receive(SELECT_APPLET).ok
    assert read_file(pcsc_connection, 0x1E) == DEMO_COM
    answer = pcsc_connection.send_and_receive(CommandApdu(0, 0xB1, 0, 0x1E, tlv.encode(0x54, b"\x02"), le=256))
    assert tlv.decode(answer.data).value == DEMO_COM[2:]


@pytest.mark.stack
def test_second_reader_serves_its_own_card(insert_card: InsertCard, pcsc_driver: PcscReaderDriver) -> None:
    insert_card(spec_with(), reader=1)
    with pcsc_driver.connect() as conn:  # the first reader holding a card
        assert conn.reader_name == READER_NAMES[1]
        assert conn.send_and_receive(SELECT_APPLET).ok


@pytest.mark.stack
@pytest.mark.parametrize("extended", [False, True])
def test_pace_then_secured_reads_of_a_built_card(
    insert_card: InsertCard, pcsc_driver: PcscReaderDriver, extended: bool
) -> None:
    """End to end: a profile-built card with its chip security, PACE with the CAN, every file read under SM."""
    builder = pytest.importorskip("edge.sim.builder")
    profile = pytest.importorskip("edge.sim.profile")
    chip_security = pytest.importorskip("edge.sim.chip_security")
    policy = pytest.importorskip("edge.protocol.access.policy")
    spec = builder.build_card(profile.load_profile("default"))
    simulated = insert_card(spec, security=chip_security.SimChipSecurity(spec.secrets, spec.quirks))
    with pcsc_driver.connect(READER_NAMES[0]) as conn:
        wire = CountingConnection(conn)
        card_access = read_file(wire, 0x1C)
        assert card_access == spec.image.mf_files[0x011C]
        channel = policy.open_secure_channel(wire, policy.CanKey(spec.secrets.can), card_access=card_access)
        secured = channel.connection
        chunk = secured.max_read_chunk(extended=extended)
        before = wire.apdus
        for fid, content in spec.image.applet_files.items():
            assert read_file(secured, fid & 0x1F, chunk=chunk, extended_ok=extended) == content, f"{fid:04X}"
        reads = wire.apdus - before
        expected = sum(-(-len(content) // chunk) for content in spec.image.applet_files.values())
        assert reads == expected  # no SELECT, no header read, no refusal: one APDU per chunk
        assert secured.ssc == 2 * (1 + reads)  # the applet SELECT and every read, counted both ways
    assert simulated.counters.apdus == wire.apdus
