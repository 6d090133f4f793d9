"""The reader's own LEDs and buzzer as the officer's indicators: for terminals without GPIO wiring, or beside it.

Same pattern table as the GPIO LEDs (:data:`edge.drivers.leds.PATTERNS`), rendered as far as the reader allows.
An ACS reader with the ``FF 00 40`` pseudo-APDU (ACR122U: API-ACR122U 2.04 "Bi-color LED and Buzzer Control") has
one red/green LED (both lit read as amber) and a buzzer; one command sets an initial state for T1, a toggle state
for T2 (100 ms units), a number of repetitions, the final state and whether the buzzer sounds during T1 and/or T2.
So each pattern's single-RGB rendering maps onto it: a steady colour, or colour / other colour alternating, with
the beeps on the same clock (a pattern whose beep has another rhythm than its blink, hold_still, takes the beep's:
the sound is what makes a citizen look). Durations round to 100 ms, at least one unit. A pattern that lasts
("until the next one") is sent for 255 repetitions and sent again before those run out.

The reader intercepts the pseudo-APDU (the card never sees it), so it travels through ``SCardTransmit`` on a shared
connection while a card lies there, between a read's APDUs without disturbing its secure messaging; with no card,
pcsc-lite needs a direct connection and ``SCardControl`` with the CCID escape code (``SCARD_CTL_CODE(3500)``, which
libccid allows only with ``ifdDriverOptions`` 0x0001; the test stack models the transmit path only, as vpcd passes
APDUs but no control codes). A failing indicator never stops a read: it is logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge.drivers.leds import AMBER, GREEN, OFF, PATTERNS, RED, Beep, Colour, Pattern
from edge.errors import ConfigError, EdgeError

log = logging.getLogger(__name__)

#: Repetitions of a lasting pattern per command (the field is one byte).
LASTING_REPETITIONS = 255
_UNIT = 0.1  # seconds per T1/T2 unit
_BUZZER_NONE, _BUZZER_T1 = 0x00, 0x01


@dataclass(frozen=True, slots=True)
class AcsLedCommand:
    """One ``FF 00 40`` command: P2 (LED state control), T1, T2, repetitions, buzzer link; ``lasts`` says whether
    it must be sent again before ``period`` seconds x repetitions run out."""

    control: int
    t1: int
    t2: int
    repetitions: int
    buzzer: int
    lasts: bool

    def apdu(self) -> bytes:
        return bytes((0xFF, 0x00, 0x40, self.control, 0x04, self.t1, self.t2, self.repetitions, self.buzzer))

    @property
    def seconds(self) -> float:
        """How long the command's blinking sequence runs."""
        return (self.t1 + self.t2) * _UNIT * self.repetitions


def _leds(colour: Colour) -> tuple[bool, bool]:
    """(red, green) of a bi-colour LED showing ``colour``: amber is both lit."""
    shown = {GREEN: (False, True), AMBER: (True, True), RED: (True, False), OFF: (False, False)}
    return shown[colour]


def units(seconds: float) -> int:
    """T1/T2 units (100 ms) for ``seconds``: rounded, at least one."""
    return max(1, min(255, round(seconds / _UNIT)))


def acs_led_command(pattern: Pattern) -> AcsLedCommand:
    """The pseudo-APDU for ``pattern`` (see the module docstring)."""
    rgb, beep = pattern.rgb, pattern.beep
    first, second = rgb.colour, (rgb.off_colour if rgb.on_time else rgb.colour)
    (red_1, green_1), (red_2, green_2) = _leds(first), _leds(second)
    blinking = bool(rgb.on_time)
    on, off = (rgb.on_time, rgb.off_time) if blinking else (0.0, 0.0)
    if beep is not None and (not blinking or beep.count is None):
        on, off = beep.on_time, beep.off_time or beep.on_time  # the beep's clock (see the module docstring)
    lasts = blinking or (beep is not None and beep.count is None)
    repetitions = LASTING_REPETITIONS if lasts else (beep.count if beep is not None and beep.count else 1)
    control = (
        (red_2 if blinking else red_1)  # final red: the toggle state a lasting pattern rests in
        | (green_2 if blinking else green_1) << 1
        | 0x04 | 0x08  # update both LEDs
        | red_1 << 4 | green_1 << 5  # initial blinking states
        | (red_1 != red_2) << 6 | (green_1 != green_2) << 7  # blink the LEDs whose two states differ
    )  # fmt: skip
    return AcsLedCommand(int(control), units(on) if on else 1, units(off) if off else 1, repetitions,
                         _BUZZER_T1 if beep is not None else _BUZZER_NONE, lasts)  # fmt: skip


def pattern_support(pattern: Pattern) -> str:
    """How an ACR122U-style reader renders ``pattern``, for the README: exact, or what it approximates."""
    beep: Beep | None = pattern.beep
    notes = []
    if pattern.rgb.on_time and beep is not None and beep.count is None:
        notes.append("blinks on the beep's clock")
    times = [t for t in (pattern.rgb.on_time, pattern.rgb.off_time) if t]
    times += [t for t in ((beep.on_time, beep.off_time) if beep is not None else ()) if t]
    if any(abs(t - units(t) * _UNIT) > 1e-9 for t in times):
        notes.append("times rounded to 100 ms")
    return "; ".join(notes) or "as the RGB LED"


#: Sends one pseudo-APDU to the reader and returns its answer (``edge.drivers.pcsc.PcscReaderDriver.escape``), or
#: None when it was queued for the thread that holds the PC/SC context (which then checks the answer).
EscapeChannel = Callable[[bytes], bytes | None]


def check_answer(answer: bytes | None) -> None:
    """Log a reader's refusal of an LED command (``90 xx`` is its yes); None: queued, checked when sent."""
    if answer is not None and answer[:1] != b"\x90":
        log.warning("reader LEDs: the reader answered %s", answer.hex())


class ReaderIndicators:
    """Shows the terminal's states on the reader's own LEDs and buzzer; same ``show``/``close`` as
    :class:`edge.drivers.leds.Indicators`. ``time_scale`` shortens the re-send period (tests)."""

    def __init__(self, send: EscapeChannel, *, time_scale: float = 1.0) -> None:
        self._send = send
        self._scale = time_scale
        self.current: str | None = None
        self.sent = 0
        self._wake = threading.Event()
        self._stop = False
        self._command: AcsLedCommand | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._refresh, name="reader-leds", daemon=True)
        self._thread.start()

    def show(self, name: str) -> None:
        """Switch to the pattern for ``name``; unknown names show ``fault``."""
        pattern = PATTERNS.get(name, PATTERNS["fault"])
        self.current = name if name in PATTERNS else "fault"
        command = acs_led_command(pattern)
        with self._lock:
            self._command = command
        self._transmit(command)
        self._wake.set()  # restart the re-send clock for the new pattern

    def _transmit(self, command: AcsLedCommand) -> None:
        try:
            answer = self._send(command.apdu())
        except EdgeError as exc:
            log.warning("reader LEDs: %s", exc)
            return
        self.sent += 1
        check_answer(answer)

    def _refresh(self) -> None:
        """Send a lasting pattern again shortly before its repetitions run out."""
        while not self._stop:
            with self._lock:
                command = self._command
            period = command.seconds * 0.95 * self._scale if command is not None and command.lasts else None
            woken = self._wake.wait(period)
            self._wake.clear()
            if not woken and not self._stop and command is not None:
                self._transmit(command)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=2.0)


class IndicatorBackend(Protocol):
    """What shows the terminal's states: :class:`edge.drivers.leds.Indicators` or :class:`ReaderIndicators`."""

    def show(self, name: str) -> None: ...

    def close(self) -> None: ...


class CombinedIndicators:
    """GPIO LEDs and the reader's together: each state shown on both."""

    def __init__(self, *parts: IndicatorBackend) -> None:
        if not parts:
            raise ConfigError("no indicators to combine", key="indicators")
        self._parts = parts
        self.current: str | None = None

    def show(self, name: str) -> None:
        self.current = name
        for part in self._parts:
            part.show(name)

    def close(self) -> None:
        for part in self._parts:
            part.close()


def reader_patterns_markdown() -> str:
    """The README's table of how a reader's own LED (red/green) and buzzer show each pattern."""
    names = {GREEN: "green", AMBER: "red+green", RED: "red", OFF: "off"}
    rows = ["| state | reader LED (ACR122U: FF 00 40) | buzzer | fidelity |", "|---|---|---|---|"]
    for name, pattern in PATTERNS.items():
        command = acs_led_command(pattern)
        rgb = pattern.rgb
        if rgb.on_time:
            led = f"{names[rgb.colour]} / {names[rgb.off_colour]} {command.t1 / 10:g}/{command.t2 / 10:g} s"
        else:
            led = names[rgb.colour]
        beep = "-" if pattern.beep is None else (
            f"{command.t1 / 10:g} s x{command.repetitions}" if not command.lasts else f"{command.t1 / 10:g} s repeating"
        )  # fmt: skip
        rows.append(f"| {name} | {led} | {beep} | {pattern_support(pattern)} |")
    return "\n".join(rows)
