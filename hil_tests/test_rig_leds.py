"""LED outputs read back through the input pins they are wired to: what the officer would see, measured.

First the wiring (each output reaches its input, no crossed wires), then the terminal's own LED driver
(edge/drivers/leds.py) showing every pattern of ``PATTERNS``, each light's level and edges read back: this covers
the driver's pin mapping and polarity too. Waits are bounded and event-driven; nothing asserts on durations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from edge.drivers.leds import PATTERNS, Beep, Indicators, Light
from hil_tests.readback import COLOURS, Probe, sense, wired_indicators
from hil_tests.rig import Rig

pytestmark = pytest.mark.hil

#: Generous: the read-back is event-driven (wait_for_*), this only bounds a broken wire.
SETTLE_TIMEOUT = 1.0


def test_each_led_reads_back_on_its_wired_input(led_rig: Rig, pin_factory: Any) -> None:
    from gpiozero import LED

    for wire in led_rig.leds:
        led = LED(wire.output_pin, active_high=led_rig.active_high, pin_factory=pin_factory)
        level = sense(wire, led_rig, pin_factory)
        try:
            led.on()
            assert level.wait_for_active(SETTLE_TIMEOUT), f"{wire.led}: on, but input {wire.input_pin} reads off"
            led.off()
            assert level.wait_for_inactive(SETTLE_TIMEOUT), f"{wire.led}: off, but input reads on"
        finally:
            led.close()
            level.close()


def test_leds_are_independent(led_rig: Rig, pin_factory: Any) -> None:
    """One LED on must not light another input: catches crossed or shorted wires."""
    from gpiozero import LED

    wires = list(led_rig.leds)
    if len(wires) < 2:
        pytest.skip("fewer than two LEDs wired")
    leds = [LED(w.output_pin, active_high=led_rig.active_high, pin_factory=pin_factory) for w in wires]
    senses = [sense(w, led_rig, pin_factory) for w in wires]
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


@pytest.fixture
def indicators(led_rig: Rig, pin_factory: Any) -> Iterator[tuple[Indicators, dict[str, Probe]]]:
    """The terminal's driver on the rig's pins, and a probe on the input wired to each of its outputs."""
    with wired_indicators(led_rig, pin_factory) as (config, probes):
        driver = Indicators(config, pin_factory=pin_factory, time_scale=led_rig.led_time_scale)
        try:
            yield driver, probes
        finally:
            driver.close()


def _bounds(scale: float) -> tuple[float, float]:
    """(timeout for an expected edge, how long a steady light is watched): both cover two of the slowest periods."""
    slowest = max(light.on_time + light.off_time for p in PATTERNS.values() for light in (p.green, p.amber, p.red))
    return SETTLE_TIMEOUT + 2 * slowest * scale, 2 * slowest * scale


def _check_light(name: str, colour: str, light: Light, probe: Probe, since: int, scale: float) -> None:
    timeout, watch = _bounds(scale)
    where = f"{name}: {colour}"
    if light.mode == "blink":
        assert probe.wait_for(since, ons=1, offs=1, timeout=timeout), f"{where} should blink but does not toggle"
        return
    on = light.mode == "on"
    settled = probe.device.wait_for_active(SETTLE_TIMEOUT) if on else probe.device.wait_for_inactive(SETTLE_TIMEOUT)
    assert settled, f"{where} should be {light.mode}"
    mark = probe.mark()
    assert not probe.wait_for(mark, ons=int(not on), offs=int(on), timeout=watch), f"{where} should stay {light.mode}"


def _check_beep(name: str, beep: Beep | None, probe: Probe, since: int, scale: float) -> None:
    timeout, watch = _bounds(scale)
    if beep is None:
        assert probe.device.wait_for_inactive(SETTLE_TIMEOUT), f"{name}: the buzzer should be silent"
    elif beep.count is None:
        assert probe.wait_for(since, ons=1, offs=1, timeout=timeout), f"{name}: the buzzer should repeat"
    else:
        assert probe.wait_for(since, ons=beep.count, offs=beep.count, timeout=timeout), f"{name}: too few beeps"
        assert not probe.wait_for(since, ons=beep.count + 1, timeout=watch), f"{name}: more than {beep.count} beeps"


@pytest.mark.parametrize("name", list(PATTERNS))
def test_each_pattern_reads_back(name: str, indicators: tuple[Indicators, dict[str, Probe]], led_rig: Rig) -> None:
    """What the officer sees for ``name``: each light steady on, off or blinking, and the buzzer's beeps."""
    driver, probes = indicators
    scale = led_rig.led_time_scale
    pattern = PATTERNS[name]
    buzzer = probes.get("buzzer")
    if buzzer is not None:  # start from silence, so every beep of a counted pattern is an edge
        driver.show("ready")
        assert buzzer.device.wait_for_inactive(SETTLE_TIMEOUT)
    marks = {colour: probe.mark() for colour, probe in probes.items()}
    driver.show(name)
    assert driver.current == name
    for colour in COLOURS:
        _check_light(name, colour, getattr(pattern, colour), probes[colour], marks[colour], scale)
    if buzzer is not None:
        _check_beep(name, pattern.beep, buzzer, marks["buzzer"], scale)
