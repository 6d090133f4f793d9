"""The officer's indicators on gpiozero: three LEDs (green/amber/red) or one RGB LED, and an optional buzzer.

ONE pattern per terminal state, all in :data:`PATTERNS` (the README renders the same table), so the meaning of a
light never depends on which code path switched it. The patterns are keyed by the state machine's indicator names
(``edge.daemon.state.Indicator`` values); drivers may not import the daemon, and a test keeps both sets equal.

Why blinking rather than colours alone: a colour-blind officer must tell "hold still" from "fault", so every
pattern differs in rhythm too. The pin factory is injectable (gpiozero's MockFactory in tests and demos).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gpiozero import LED, RGBLED, Buzzer
from gpiozero.pins import Factory

from edge.config import IndicatorConfig
from edge.errors import ConfigError

Colour = tuple[float, float, float]
OFF: Colour = (0.0, 0.0, 0.0)
GREEN: Colour = (0.0, 1.0, 0.0)
AMBER: Colour = (1.0, 0.5, 0.0)
RED: Colour = (1.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Light:
    """One LED's behaviour: off, steady on, or blinking (seconds on / off, forever)."""

    mode: Literal["off", "on", "blink"] = "off"
    on_time: float = 0.0
    off_time: float = 0.0


@dataclass(frozen=True, slots=True)
class RgbLight:
    """The single-RGB-LED rendering: ``colour`` steady, or alternating ``colour`` / ``off_colour``."""

    colour: Colour
    on_time: float = 0.0  # 0: steady
    off_time: float = 0.0
    off_colour: Colour = OFF


@dataclass(frozen=True, slots=True)
class Beep:
    on_time: float
    off_time: float
    count: int | None  # None: until the next pattern


@dataclass(frozen=True, slots=True)
class Pattern:
    meaning: str
    green: Light
    amber: Light
    red: Light
    rgb: RgbLight
    beep: Beep | None = None


_HEARTBEAT = Light("blink", 0.1, 2.9)  # alive and idle: a short green flash every 3 s

#: One pattern per indicator; keys are ``edge.daemon.state.Indicator`` values.
PATTERNS: dict[str, Pattern] = {
    "ready": Pattern("ready for the next citizen", _HEARTBEAT, Light(), Light(), RgbLight(GREEN, 0.1, 2.9)),
    "scanning": Pattern("key or card seen: reading, keep the card on the reader", Light(), Light("blink", 0.25, 0.25),
                        Light(), RgbLight(AMBER, 0.25, 0.25)),
    "hold_still": Pattern("card left the field: put it back and hold it still", Light(), Light("blink", 0.08, 0.08),
                          Light(), RgbLight(AMBER, 0.08, 0.08), Beep(0.05, 0.45, None)),
    "success": Pattern("genuine, issuer proven (CSCA or known Document Signer): result stored for the office",
                       Light("on"), Light(), Light(), RgbLight(GREEN), Beep(0.15, 0.0, 1)),
    # Green AND amber steady, two beeps: "the data holds, but who issued it is not proven" must never read as
    # success (one beep, green alone) nor as failure (red, three beeps), also for a colour-blind officer.
    "unproven": Pattern("data intact, issuer not proven: check the card by other means, see the office screen",
                        Light("on"), Light("on"), Light(), RgbLight(AMBER), Beep(0.15, 0.15, 2)),
    "failure": Pattern("not verified, read failed, or not a CCCD QR: see the office screen",
                       Light(), Light(), Light("on"), RgbLight(RED), Beep(0.1, 0.1, 3)),
    "offline_queued": Pattern("offline, or the office confirms nothing: reads continue, results wait in the outbox",
                              _HEARTBEAT, Light("blink", 1.0, 1.0), Light(), RgbLight(AMBER, 1.0, 1.0, GREEN)),
    # Ready with a short amber flash every second: the terminal works, but has no trusted time since it started
    # (no RTC: NTP or the office gives it). Not a fault: results say "clock not synchronised" for the date checks.
    "clock_unsynchronised": Pattern("ready, clock not synchronised: reads continue, date checks wait for the time "
                                    "(network / NTP); call support if it lasts", _HEARTBEAT,
                                    Light("blink", 0.1, 0.9), Light(), RgbLight(AMBER, 0.1, 0.9)),
    "fault": Pattern("reader/camera missing or outbox full: call support", Light(), Light(),
                     Light("blink", 0.5, 0.5), RgbLight(RED, 0.5, 0.5)),
}


def patterns_markdown() -> str:
    """The README table, generated from :data:`PATTERNS` so documentation cannot drift."""

    def light(spec: Light) -> str:
        return {"off": "off", "on": "on"}.get(spec.mode, f"blink {spec.on_time:g}/{spec.off_time:g} s")

    def rgb(spec: RgbLight) -> str:
        names = {GREEN: "green", AMBER: "amber", RED: "red", OFF: "off"}
        if not spec.on_time:
            return names[spec.colour]
        return f"{names[spec.colour]}/{names[spec.off_colour]} {spec.on_time:g}/{spec.off_time:g} s"

    def beep(spec: Beep | None) -> str:
        if spec is None:
            return "-"
        times = "repeating" if spec.count is None else f"{spec.count}x"
        return f"{times} {spec.on_time:g} s"

    rows = ["| state | meaning | green | amber | red | RGB LED | buzzer |", "|---|---|---|---|---|---|---|"]
    rows += [f"| {name} | {p.meaning} | {light(p.green)} | {light(p.amber)} | {light(p.red)} | {rgb(p.rgb)} | "
             f"{beep(p.beep)} |" for name, p in PATTERNS.items()]
    return "\n".join(rows)


class Indicators:
    """Drives the configured LEDs/buzzer. ``time_scale`` shortens every period (tests, demos on mock pins)."""

    def __init__(self, config: IndicatorConfig, *, pin_factory: Factory | None = None,
                 time_scale: float = 1.0) -> None:
        self._scale = time_scale
        self._devices: list[Any] = []
        self.current: str | None = None
        try:
            if config.rgb is not None:
                self.rgb: RGBLED | None = RGBLED(*config.rgb, active_high=config.active_high, pwm=True,
                                                 pin_factory=pin_factory)
                self._devices.append(self.rgb)
                self.leds: dict[str, LED] = {}
            else:
                self.rgb = None
                self.leds = {colour: LED(pin, active_high=config.active_high, pin_factory=pin_factory)
                             for colour, pin in (("green", config.green), ("amber", config.amber),
                                                 ("red", config.red))}
                self._devices += self.leds.values()
            self.buzzer = Buzzer(config.buzzer, pin_factory=pin_factory) if config.buzzer is not None else None
            if self.buzzer is not None:
                self._devices.append(self.buzzer)
        except Exception as exc:  # gpiozero raises many types (BadPinFactory, PinInvalidPin, GPIOPinInUse)
            self.close()
            raise ConfigError(f"cannot open indicator pins: {exc}", key="indicators") from exc

    def show(self, name: str) -> None:
        """Switch to the pattern for ``name`` (an indicator value); unknown names show ``fault``."""
        pattern = PATTERNS.get(name, PATTERNS["fault"])
        self.current = name if name in PATTERNS else "fault"
        s = self._scale
        if self.rgb is not None:
            spec = pattern.rgb
            if spec.on_time:
                self.rgb.blink(on_time=spec.on_time * s, off_time=spec.off_time * s, on_color=spec.colour,
                               off_color=spec.off_colour)
            else:
                self.rgb.color = spec.colour
        for colour, led in self.leds.items():
            light: Light = getattr(pattern, colour)
            if light.mode == "blink":
                led.blink(on_time=light.on_time * s, off_time=light.off_time * s)
            elif light.mode == "on":
                led.on()
            else:
                led.off()
        if self.buzzer is not None:
            if pattern.beep is None:
                self.buzzer.off()
            else:
                self.buzzer.beep(on_time=pattern.beep.on_time * s, off_time=max(pattern.beep.off_time * s, 0.001),
                                 n=pattern.beep.count)

    def close(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()
