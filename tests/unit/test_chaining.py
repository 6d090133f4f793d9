"""Response chaining (edge/protocol/chaining.py) against the virtual card's real T=0-style answers, in process.

The link sits at the bottom of read_chip's chain, so a card that answers in pieces (61xx) reads in process exactly
as through pcscd, and the APDUs of a read are counted once, above it. Counted at the card, never timed.
"""

from __future__ import annotations

import dataclasses

import pytest

from edge.errors import TransmitError
from edge.protocol.access.policy import CanKey
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.chaining import MAX_GET_RESPONSE_ROUNDS, ResponseChaining, with_response_chaining
from edge.protocol.chip import ReadRequest, read_chip
from edge.protocol.iso7816 import CLA_SM, EMRTD_AID, INS_GET_RESPONSE
from edge.sim.builder import build_card
from edge.sim.card import VirtualCard
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import Quirks, SimCardSpec
from edge.sim.profile import load_profile
from edge.sim.runner import DEMO_COM, demo_spec
from tests.support.apdu import Recorder

SELECT_APPLET = CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)
READ_COM = CommandApdu(0x00, 0xB0, 0x9E, 0x00, le=256)  # by SFI, Le past the end of the file


def plain_card(**quirks: object) -> tuple[VirtualCard, Recorder]:
    spec = demo_spec(Quirks(plain_reads=True, **quirks))  # type: ignore[arg-type]
    card = VirtualCard(spec)
    card.power_on()
    assert card.send_and_receive(SELECT_APPLET).sw in (0x9000, 0x6101)  # a card whose answers never end: 6101
    card.reset_counters()
    return card, Recorder(card)  # the transport below the link, recorded


def test_61xx_is_completed_with_get_response() -> None:
    _card, wire = plain_card(response_chunk=8)
    assert wire.send_and_receive(READ_COM).sw >> 8 == 0x61  # the transport alone: the first piece, as the card sent it
    answer = ResponseChaining(wire).send_and_receive(READ_COM)
    assert answer == ResponseApdu(DEMO_COM, 0x9000)
    rounds = [c for c in wire.commands[2:] if c.ins == INS_GET_RESPONSE]
    assert len(rounds) == len(wire.commands) - 2 == -(-len(DEMO_COM) // 8) - 1


def test_6cxx_resends_a_plain_command_once_with_the_le_the_card_asked_for() -> None:
    _card, wire = plain_card(wrong_le_hint=True)
    assert ResponseChaining(wire).send_and_receive(READ_COM) == ResponseApdu(DEMO_COM, 0x9000)
    assert [c.le for c in wire.commands] == [256, len(DEMO_COM)]


class WrongLe:
    """A transport whose card answers every command 6C10 (wrong Le, 16 bytes available)."""

    supports_extended_length = True

    def __init__(self) -> None:
        self.commands: list[CommandApdu] = []

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        self.commands.append(command)
        return ResponseApdu(b"", 0x6C10)


def test_6cxx_to_a_secured_or_extended_command_is_passed_up_unsent() -> None:
    """A resend would replay a used SSC: secure messaging (and the read strategy) see the 6Cxx instead."""
    wire = WrongLe()
    chained = ResponseChaining(wire)
    for command in (dataclasses.replace(READ_COM, cla=CLA_SM), dataclasses.replace(READ_COM, le=300, extended=True)):
        assert chained.send_and_receive(command).sw == 0x6C10
    assert len(wire.commands) == 2
    assert chained.send_and_receive(READ_COM).sw == 0x6C10
    assert [c.le for c in wire.commands[2:]] == [256, 16]  # a plain one: resent once, with Le=10


def test_a_6cxx_loop_costs_one_resend() -> None:
    _card, wire = plain_card(wrong_le_loop=True)
    assert ResponseChaining(wire).send_and_receive(READ_COM).sw >> 8 == 0x6C
    assert len(wire.commands) == 2


def test_an_answer_that_never_ends_costs_bounded_rounds() -> None:
    card, wire = plain_card(endless_get_response=True)
    with pytest.raises(TransmitError, match="61xx"):
        ResponseChaining(wire).send_and_receive(READ_COM)
    assert card.counters.apdus == 1 + MAX_GET_RESPONSE_ROUNDS


def test_the_link_is_never_stacked_twice() -> None:
    _card, wire = plain_card()
    chained = ResponseChaining(wire)
    assert with_response_chaining(chained) is chained
    assert isinstance(with_response_chaining(wire), ResponseChaining)


@pytest.fixture(scope="module")
def default() -> SimCardSpec:
    return build_card(load_profile("default"))


def test_read_chip_puts_chaining_at_the_bottom_and_counts_above_it(default: SimCardSpec) -> None:
    """A T=0-style card read in process: before, the 61xx reached secure messaging and the read failed."""
    spec = dataclasses.replace(default, quirks=dataclasses.replace(default.quirks, response_chunk=64))
    card = VirtualCard(spec, SimChipSecurity(spec.secrets, spec.quirks))
    card.power_on()
    read = read_chip(card, ReadRequest(CanKey(spec.secrets.can)))
    assert read.dg1 is not None
    plain = VirtualCard(default, SimChipSecurity(default.secrets, default.quirks))
    plain.power_on()
    assert read.stats.apdus == read_chip(plain, ReadRequest(CanKey(default.secrets.can))).stats.apdus == 15
    assert card.counters.apdus > read.stats.apdus  # the GET RESPONSE rounds: part of the answers they complete
