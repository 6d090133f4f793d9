"""The terminal's states on the reader's own LEDs and buzzer (``[reader] leds``): a terminal with no GPIO wiring.

Each pattern of the GPIO table is sent to the rig's reader as the ACS ``FF 00 40`` pseudo-APDU through the real
PC/SC driver; the reader must answer ``90 xx``. On the virtual rig the vpcd readers model that escape channel, so
what the reader was asked to show is read back and decoded (colours of a red/green LED, beeps) and compared with
the pattern's single-RGB rendering; a real rig's tester watches the reader instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from edge.drivers.leds import AMBER, GREEN, OFF, PATTERNS, RED
from edge.drivers.pcsc import PcscReaderDriver
from edge.drivers.reader_leds import ReaderIndicators
from hil_tests.rig import Rig

pytestmark = pytest.mark.hil

COLOURS = {(False, True): GREEN, (True, True): AMBER, (True, False): RED, (False, False): OFF}


@pytest.fixture(scope="module")
def reader_name(reader_rig: Rig) -> str:
    if not reader_rig.has_reader_leds:
        pytest.skip(f"rig {reader_rig.name} has no [reader] leds")
    driver = PcscReaderDriver(reader_filter=reader_rig.reader_name or "")
    names = [state.name for state in driver.readers()]
    driver.close()
    if not names:
        pytest.fail(f"no reader {reader_rig.reader_name!r} attached")
    return names[0]


@pytest.mark.parametrize("name", PATTERNS)
def test_each_state_shows_on_the_reader(name: str, reader_name: str, reader_rig: Rig, virtual_cards: Any) -> None:
    driver = PcscReaderDriver()
    answers: list[bytes] = []

    def send(apdu: bytes) -> bytes:
        answers.append(driver.escape(reader_name, apdu))
        return answers[-1]

    model = virtual_cards.virtual_reader(reader_name) if virtual_cards is not None else None
    seen = len(model.log.indicators) if model is not None else 0
    leds = ReaderIndicators(send, time_scale=reader_rig.led_time_scale)
    try:
        leds.show(name)
    finally:
        leds.close()
        driver.close()
    assert answers
    assert answers[0][:1] == b"\x90", answers[0].hex()
    if model is None:
        return
    command = model.log.indicators[seen]
    control, pattern = command.led_control, PATTERNS[name]
    final = (bool(control & 0x01), bool(control & 0x02))
    initial = tuple(bool(control & bit) if control & blink else final[i]
                    for i, (bit, blink) in enumerate(((0x10, 0x40), (0x20, 0x80))))  # fmt: skip
    assert COLOURS[initial] == pattern.rgb.colour  # type: ignore[index]
    if pattern.rgb.on_time:
        assert COLOURS[final] == pattern.rgb.off_colour
    assert (command.buzzer != 0) is (pattern.beep is not None)
