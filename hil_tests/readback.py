"""Reading the indicators back through the input pins they are wired to: levels and edges the officer would see.

Shared by the LED tests and the whole-terminal test; event-driven (gpiozero edge callbacks), never a clock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from edge.config import IndicatorConfig
from hil_tests.rig import LedWire, Rig

COLOURS = ("green", "amber", "red")


def sense(wire: LedWire, rig: Rig, pin_factory: Any) -> Any:
    """The input an LED is wired to; it sees the electrical level, so with an active-low LED "on" is low."""
    from gpiozero import DigitalInputDevice

    return DigitalInputDevice(wire.input_pin, pull_up=None, active_state=rig.active_high, pin_factory=pin_factory)


@contextlib.contextmanager
def wired_indicators(rig: Rig, pin_factory: Any) -> Iterator[tuple[IndicatorConfig, dict[str, Probe]]]:
    """The rig's LEDs as config.toml would name them, and a probe on the input each one is wired to (closed after).
    Skips the test when the three-LED driver's lights are not all wired."""
    wires = {wire.led: wire for wire in rig.leds}
    missing = [colour for colour in COLOURS if colour not in wires]
    if missing:
        pytest.skip(f"the three-LED driver needs {missing} wired too")
    buzzer = wires.get("buzzer")
    config = IndicatorConfig(green=wires["green"].output_pin, amber=wires["amber"].output_pin,
                             red=wires["red"].output_pin, buzzer=buzzer.output_pin if buzzer else None,
                             active_high=rig.active_high)  # fmt: skip
    probes = {name: Probe(sense(wire, rig, pin_factory)) for name, wire in wires.items()
              if name in (*COLOURS, "buzzer")}  # fmt: skip
    try:
        yield config, probes
    finally:
        for probe in probes.values():
            probe.device.close()


class Probe:
    """Every level change an input sees (True: became active), recorded from gpiozero's edge callbacks."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self._changed = threading.Condition()
        self._edges: list[bool] = []
        device.when_activated = lambda: self._record(True)
        device.when_deactivated = lambda: self._record(False)

    def _record(self, active: bool) -> None:
        with self._changed:
            self._edges.append(active)
            self._changed.notify_all()

    def mark(self) -> int:
        """A position in the edge history, to look only at what happened after it."""
        with self._changed:
            return len(self._edges)

    def wait_for(self, since: int, *, ons: int = 0, offs: int = 0, timeout: float) -> bool:
        """Whether at least ``ons`` activations and ``offs`` deactivations happen after ``since`` in ``timeout``."""

        def enough() -> bool:
            edges = self._edges[since:]
            return edges.count(True) >= ons and edges.count(False) >= offs

        with self._changed:
            return self._changed.wait_for(enough, timeout)

    def edges_since(self, since: int) -> list[bool]:
        with self._changed:
            return self._edges[since:]
