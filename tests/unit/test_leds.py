"""Indicator patterns on gpiozero's own mock pins (MockFactory + MockPWMPin): what each pin does per state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.config import IndicatorConfig
from edge.daemon.state import Indicator
from edge.drivers.leds import PATTERNS, Indicators, patterns_markdown
from edge.errors import ConfigError

SCALE = 0.01  # every period x0.01: a blink toggles within milliseconds


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.reset()
    factory.close()


def _toggles(factory: MockFactory, pin: int, at_least: int, timeout: float = 5.0) -> list[float]:
    """Pin changes since the last clear (whose first entry is the state at clearing time), once at least
    ``at_least`` changes happened (bounded wait, no timing asserted)."""
    mock = factory.pin(pin)
    deadline = time.monotonic() + timeout
    while len(mock.states) < at_least + 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    return [float(s.state) for s in mock.states[1:]]


def _clear(factory: MockFactory, *pins: int) -> None:
    for pin in pins:
        factory.pin(pin).clear_states()


def test_every_state_has_exactly_one_pattern() -> None:
    assert set(PATTERNS) == {indicator.value for indicator in Indicator}
    table = patterns_markdown()
    assert all(f"| {name} |" in table for name in PATTERNS)


def test_every_pattern_is_told_apart_without_colour() -> None:
    """On three LEDs each pattern differs in which lamps light and how (their position, not their colour); the
    three verdict patterns also differ in their beeps, so an RGB terminal with a buzzer tells them apart too."""
    lamps = [(p.green, p.amber, p.red) for p in PATTERNS.values()]
    assert len(set(lamps)) == len(PATTERNS)
    assert len({(p.rgb, p.beep) for p in PATTERNS.values()}) == len(PATTERNS)
    verdicts = [PATTERNS[name].beep for name in ("success", "unproven", "failure")]
    assert len({beep.count for beep in verdicts if beep is not None}) == 3


def test_three_leds(factory: MockFactory) -> None:
    leds = Indicators(IndicatorConfig(green=17, amber=27, red=22, buzzer=18), pin_factory=factory, time_scale=SCALE)
    try:
        leds.show("success")
        assert (factory.pin(17).state, factory.pin(27).state, factory.pin(22).state) == (1, 0, 0)
        buzzer = _toggles(factory, 18, 2)
        assert buzzer[-2:] == [1.0, 0.0]  # one beep, then silence

        _clear(factory, 17, 27, 22, 18)
        leds.show("unproven")  # green and amber steady, two beeps: neither success nor failure
        assert (factory.pin(17).state, factory.pin(27).state, factory.pin(22).state) == (1, 1, 0)
        assert _toggles(factory, 18, 4).count(1.0) == 2

        _clear(factory, 17, 27, 22, 18)
        leds.show("failure")
        assert (factory.pin(17).state, factory.pin(27).state, factory.pin(22).state) == (0, 0, 1)
        beeps = _toggles(factory, 18, 6)
        assert beeps.count(1.0) == 3  # three beeps

        _clear(factory, 17, 27, 22)
        leds.show("scanning")
        amber = _toggles(factory, 27, 4)
        assert amber[:4] == [1.0, 0.0, 1.0, 0.0]  # blinking
        assert factory.pin(17).state == 0
        assert factory.pin(22).state == 0

        _clear(factory, 22)
        leds.show("fault")
        assert _toggles(factory, 22, 4)[:4] == [1.0, 0.0, 1.0, 0.0]

        _clear(factory, 17, 27)
        leds.show("offline_queued")
        assert _toggles(factory, 17, 2)[:2] == [1.0, 0.0]  # heartbeat
        assert _toggles(factory, 27, 2)[:2] == [1.0, 0.0]
        leds.show("no-such-state")
        assert leds.current == "fault"
    finally:
        leds.close()


def test_one_rgb_led(factory: MockFactory) -> None:
    leds = Indicators(IndicatorConfig(rgb=(5, 6, 13)), pin_factory=factory, time_scale=SCALE)
    try:
        leds.show("failure")
        assert leds.rgb is not None
        assert leds.rgb.color == (1, 0, 0)
        leds.show("success")
        assert (factory.pin(5).state, factory.pin(6).state, factory.pin(13).state) == (0, 1, 0)
        leds.show("unproven")
        assert leds.rgb.color == (1, 0.5, 0)
        _clear(factory, 5, 6)
        leds.show("offline_queued")  # amber <-> green
        reds = _toggles(factory, 5, 3)
        assert 1.0 in reds
        assert 0.0 in reds
        greens = _toggles(factory, 6, 2)
        assert 0.5 in greens
        assert 1.0 in greens
    finally:
        leds.close()


def test_pin_problems_are_config_errors(factory: MockFactory) -> None:
    first = Indicators(IndicatorConfig(green=17, amber=27, red=22), pin_factory=factory)
    try:
        with pytest.raises(ConfigError, match="indicators"):
            Indicators(IndicatorConfig(green=17, amber=5, red=6), pin_factory=factory)  # 17 already in use
    finally:
        first.close()


def test_the_readme_shows_the_patterns_the_code_drives() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert patterns_markdown().strip() in readme, "README's indicator table drifted: paste patterns_markdown()"
