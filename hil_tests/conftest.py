"""Hardware-in-loop fixtures: a rig file (TOML) named by ``CCCD_EDGE_RIG`` says what hardware is attached.

Without the variable every test here is skipped with the reason, so ``pytest`` stays green on any machine. A rig
file can describe real hardware (a Pi with reader, test cards, camera, LEDs wired back to inputs) or, with
``kind = "virtual"``, the simulated stack; tests ask the :class:`Rig` what it has and skip what it lacks.
See hil_tests/README.md for the format.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

RIG_ENV = "CCCD_EDGE_RIG"
HIL_DIR = Path(__file__).resolve().parent


class RigFileError(ValueError):
    """The rig file is malformed: fail loudly rather than skip hardware tests by accident."""


@dataclass(frozen=True, slots=True)
class TestCard:
    """A test card kept at the rig. ``can`` is a secret of a test card, never of a citizen: not logged anyway."""

    __test__ = False  # not a pytest test class, despite the name

    profile: str
    can: str
    atr: bytes | None = None  # expected ATR, when the rig pins one card model


@dataclass(frozen=True, slots=True)
class LedWire:
    """An LED output pin wired back to an input pin, so a test can read what the terminal shows."""

    led: str  # "green", "amber", "red" (or "buzzer")
    output_pin: int | str
    input_pin: int | str


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    host: str
    port: int
    tls: bool = True
    ca: Path | None = None


@dataclass(frozen=True, slots=True)
class Rig:
    name: str
    kind: str  # "hardware" or "virtual" (the simulated stack, described by the lead for CI)
    reader_name: str | None
    cards: tuple[TestCard, ...]
    camera: dict[str, Any] | None
    leds: tuple[LedWire, ...]
    active_high: bool
    broker: BrokerSpec | None

    @property
    def virtual(self) -> bool:
        return self.kind == "virtual"

    @property
    def has_reader(self) -> bool:
        return self.reader_name is not None

    @property
    def has_cards(self) -> bool:
        return bool(self.cards)

    @property
    def has_camera(self) -> bool:
        return self.camera is not None

    @property
    def has_leds(self) -> bool:
        return bool(self.leds)

    @property
    def has_broker(self) -> bool:
        return self.broker is not None


def _pin(value: Any, where: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RigFileError(f"{where}: a pin is a BCM number or a gpiozero name such as 'GPIO17'")
    return value


def load_rig(path: Path) -> Rig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RigFileError(f"cannot read rig file {path}: {exc}") from None
    try:
        reader = data.get("reader", {})
        cards = tuple(
            TestCard(str(c["profile"]), str(c["can"]), bytes.fromhex(c["atr"]) if "atr" in c else None)
            for c in data.get("cards", [])
        )
        leds_section = data.get("leds", {})
        leds = tuple(
            LedWire(str(w["led"]), _pin(w["output"], f"leds.wires[{i}].output"),
                    _pin(w["input"], f"leds.wires[{i}].input"))
            for i, w in enumerate(leds_section.get("wires", []))
        )
        broker_section = data.get("broker")
        broker = None
        if broker_section is not None:
            ca = broker_section.get("ca")
            broker = BrokerSpec(str(broker_section["host"]), int(broker_section.get("port", 8883)),
                                bool(broker_section.get("tls", True)), Path(ca) if ca else None)
        kind = str(data.get("kind", "hardware"))
        if kind not in {"hardware", "virtual"}:
            raise RigFileError(f"kind must be 'hardware' or 'virtual', not {kind!r}")
        return Rig(
            name=str(data.get("name", path.stem)),
            kind=kind,
            reader_name=reader.get("name"),
            cards=cards,
            camera=data.get("camera"),
            leds=leds,
            active_high=bool(leds_section.get("active_high", True)),
            broker=broker,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, RigFileError):
            raise
        raise RigFileError(f"rig file {path}: missing or bad value ({exc!r})") from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under hil_tests/ as ``hil``; skip them all, with the reason, when no rig is named."""
    rig_path = os.environ.get(RIG_ENV)
    skip = pytest.mark.skip(reason=f"{RIG_ENV} not set: hardware-in-loop tests need a rig file "
                                   "(see hil_tests/README.md)")
    for item in items:
        if HIL_DIR in item.path.parents:
            item.add_marker(pytest.mark.hil)
            if not rig_path:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def rig() -> Rig:
    rig_path = os.environ.get(RIG_ENV)
    if not rig_path:
        pytest.skip(f"{RIG_ENV} not set")
    return load_rig(Path(rig_path))


@pytest.fixture(scope="session")
def reader_rig(rig: Rig) -> Rig:
    if not rig.has_reader:
        pytest.skip(f"rig {rig.name} has no [reader]")
    return rig


@pytest.fixture(scope="session")
def led_rig(rig: Rig) -> Rig:
    if not rig.has_leds:
        pytest.skip(f"rig {rig.name} has no [leds] wires")
    if rig.virtual:
        os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
    return rig
