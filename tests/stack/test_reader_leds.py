"""Reader indicators through the real stack: ReaderIndicators -> PcscReaderDriver.escape -> pcscd -> vpcd -> the
virtual reader's model of the ACS ``FF 00 40`` pseudo-APDU, which records what the reader was asked to show.

Each pattern of the GPIO table is decoded back from what the reader received (colours of the initial and toggle
states on a red/green LED, durations, repetitions, buzzer) and compared with the pattern's RGB rendering; the card
under the reader sees none of it (its APDU counter stays put), and a read between indicator commands is unharmed.
"""

from __future__ import annotations

import pytest

from edge.drivers.leds import AMBER, GREEN, OFF, PATTERNS, RED, Colour
from edge.drivers.pcsc import PcscReaderDriver
from edge.drivers.reader_leds import LASTING_REPETITIONS, ReaderIndicators, units
from edge.protocol.access.policy import CanKey
from edge.protocol.chip import ReadRequest, read_chip
from edge.sim.builder import build_card
from edge.sim.chip_security import SimChipSecurity
from edge.sim.profile import load_profile
from edge.sim.reader import IndicatorCommand, ReaderModel
from edge.sim.stack import READER_NAMES
from tests.fixtures.pcsc import InsertCard

pytestmark = pytest.mark.stack

#: A reader that carries everything and has an ACR122U's LED and buzzer.
LED_READER = ReaderModel("acr122u-leds", escape="acs-pseudo-apdu")
COLOURS = {(False, True): GREEN, (True, True): AMBER, (True, False): RED, (False, False): OFF}


def shown(command: IndicatorCommand) -> tuple[Colour, Colour]:
    """(initial, toggle) colours the reader shows for ``command`` (API-ACR122U's LED state control bits)."""
    control = command.led_control
    final = (bool(control & 0x01), bool(control & 0x02))
    initial = tuple(bool(control & bit) if control & blink else final[i]
                    for i, (bit, blink) in enumerate(((0x10, 0x40), (0x20, 0x80))))  # fmt: skip
    toggle = tuple((not initial[i]) if control & blink else final[i] for i, blink in enumerate((0x40, 0x80)))
    return COLOURS[initial], COLOURS[toggle]  # type: ignore[index]


@pytest.mark.parametrize("name", PATTERNS)
def test_each_pattern_reaches_the_reader_as_its_rgb_rendering(
    name: str, insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    spec = build_card(load_profile("default"))
    card = insert_card(spec, security=SimChipSecurity(spec.secrets, spec.quirks), model=LED_READER)
    assert card.virtual_reader is not None
    before = card.counters.apdus
    leds = ReaderIndicators(lambda apdu: pcsc_driver.escape(READER_NAMES[0], apdu))
    try:
        leds.show(name)
    finally:
        leds.close()
    [command] = card.virtual_reader.log.indicators
    pattern = PATTERNS[name]
    first, second = shown(command)
    assert first == pattern.rgb.colour
    assert second == (pattern.rgb.off_colour if pattern.rgb.on_time else pattern.rgb.colour)
    assert (command.buzzer != 0) is (pattern.beep is not None)
    lasting = bool(pattern.rgb.on_time) or (pattern.beep is not None and pattern.beep.count is None)
    if lasting:
        assert command.repetitions == LASTING_REPETITIONS
    elif pattern.beep is not None:
        assert command.repetitions == pattern.beep.count
        assert command.t1 == units(pattern.beep.on_time)
    if pattern.rgb.on_time and pattern.beep is None:
        assert (command.t1, command.t2) == (units(pattern.rgb.on_time), units(pattern.rgb.off_time))
    assert card.counters.apdus == before  # intercepted by the reader: the card saw nothing


def test_indicators_between_a_reads_apdus_leave_the_read_whole(
    insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    """The terminal shows 'scanning' while it reads: the pseudo-APDUs go through another PC/SC handle, between
    the read's secured APDUs, and the reader answers them itself."""
    spec = build_card(load_profile("default"))
    card = insert_card(spec, security=SimChipSecurity(spec.secrets, spec.quirks), model=LED_READER)
    leds = ReaderIndicators(lambda apdu: pcsc_driver.escape(READER_NAMES[0], apdu))
    try:
        with pcsc_driver.connect(READER_NAMES[0]) as connection:
            leds.show("scanning")
            result = read_chip(connection, ReadRequest(CanKey(spec.secrets.can), want_photo=True))
            leds.show("success")
    finally:
        leds.close()
    assert result.access.reauthentications == 0
    assert result.stats.apdus == card.counters.apdus
    assert card.virtual_reader is not None
    assert len(card.virtual_reader.log.indicators) == 2
