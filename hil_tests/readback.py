"""Reading the indicators back through the input pins they are wired to: levels and edges the officer would see.

Shared by the LED tests and the whole-terminal test; event-driven (gpiozero edge callbacks), never a clock.
"""

from __future__ import annotations

import threading
from typing import Any

from hil_tests.conftest import LedWire, Rig


def sense(wire: LedWire, rig: Rig, pin_factory: Any) -> Any:
    """The input an LED is wired to; it sees the electrical level, so with an active-low LED "on" is low."""
    from gpiozero import DigitalInputDevice

    return DigitalInputDevice(wire.input_pin, pull_up=None, active_state=rig.active_high, pin_factory=pin_factory)


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
