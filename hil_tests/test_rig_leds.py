"""LED outputs read back through the input pins they are wired to: what the officer would see, measured.

Uses gpiozero directly until the LED driver (edge/drivers/leds.py) exists; then switch to the driver so the test
covers its pin mapping and polarity too.
"""

from __future__ import annotations

import pytest

from hil_tests.conftest import LedWire, Rig

pytestmark = pytest.mark.hil

#: Generous: the read-back is event-driven (wait_for_*), this only bounds a broken wire.
SETTLE_TIMEOUT = 1.0


def _wires(rig: Rig) -> list[LedWire]:
    return list(rig.leds)


def test_each_led_reads_back_on_its_wired_input(led_rig: Rig) -> None:
    from gpiozero import LED, DigitalInputDevice

    for wire in _wires(led_rig):
        led = LED(wire.output_pin, active_high=led_rig.active_high)
        # The input sees the electrical level; with an active-low LED "on" is a low level.
        sense = DigitalInputDevice(wire.input_pin, pull_up=None, active_state=led_rig.active_high)
        try:
            led.on()
            assert sense.wait_for_active(SETTLE_TIMEOUT), f"{wire.led}: on, but input {wire.input_pin} reads off"
            led.off()
            assert sense.wait_for_inactive(SETTLE_TIMEOUT), f"{wire.led}: off, but input reads on"
        finally:
            led.close()
            sense.close()


def test_leds_are_independent(led_rig: Rig) -> None:
    """One LED on must not light another input: catches crossed or shorted wires."""
    from gpiozero import LED, DigitalInputDevice

    wires = _wires(led_rig)
    if len(wires) < 2:
        pytest.skip("fewer than two LEDs wired")
    leds = [LED(w.output_pin, active_high=led_rig.active_high) for w in wires]
    senses = [DigitalInputDevice(w.input_pin, pull_up=None, active_state=led_rig.active_high) for w in wires]
    try:
        for index, led in enumerate(leds):
            led.on()
            assert senses[index].wait_for_active(SETTLE_TIMEOUT)
            others = [wires[i].led for i, s in enumerate(senses) if i != index and s.is_active]
            assert not others, f"{wires[index].led} on also lights {others}"
            led.off()
            assert senses[index].wait_for_inactive(SETTLE_TIMEOUT)
    finally:
        for device in (*leds, *senses):
            device.close()
