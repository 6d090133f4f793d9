"""The virtual rig's parts, so CI runs the HIL suite unchanged: the suite must not rot between visits to a real rig.

- reader: the private pcscd + vpcd of ``tests/fixtures/pcsc.py``; each ``[[cards]]`` entry is a card built from its
  sim profile (``build_card``) with the chip side of PACE/CA/AA (``SimChipSecurity``), on its own vpcd reader; an
  ``access = "bac"`` entry is that card as a JMRTD test card is: no EF.CardAccess, no PACE;
- camera: the replay driver showing synthetic photographs of each card's QR (``bench/qr_synth.py``'s renderer);
- LEDs: gpiozero MockFactory pins, each output a ``MockConnectedPin`` driving its wired input pin.

Only the hardware is replaced: pyscard, pcscd, the protocol code, the decoders and gpiozero are the real ones.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import Encoding
from gpiozero.pins.mock import MockConnectedPin, MockFactory
from PIL import Image

from edge.drivers.base import CardPresence
from edge.drivers.pcsc import PcscReaderDriver
from edge.protocol.access.policy import MrzKey
from edge.protocol.verify.trust import TrustStore
from edge.sim.builder import build_card
from edge.sim.card_qr import card_qr_text
from edge.sim.chip_security import SimChipSecurity
from edge.sim.pki import load_or_create_pki
from edge.sim.profile import load_profile
from edge.sim.reader import ReaderModel, VirtualReader
from edge.sim.runner import SimulatedCard
from edge.sim.stack import READER_NAMES, PcscStack
from hil_tests.rig import LedWire, Rig, RigFileError, TestCard
from tests.fixtures.pcsc import wait_for_presence

if TYPE_CHECKING:
    from edge.sim.model import SimCardSpec

def reader_slot(rig: Rig, index: int) -> int:
    """The vpcd reader of card ``index``: the one its ``reader`` names, else its position in the file."""
    named = rig.cards[index].reader
    return READER_NAMES.index(named) if named is not None else index


def card_spec(card: TestCard) -> SimCardSpec:
    """The card of the entry's profile; the rig file's key must be the card's, as on a real rig (else the file is
    wrong). A BAC card loses EF.CardAccess and PACE, as on a JMRTD test card personalised from the profile."""
    spec = build_card(load_profile(card.profile))
    key = card.key
    if isinstance(key, MrzKey):
        if key.mrz_information() != spec.secrets.mrz_information:
            raise RigFileError(f"card {card.profile!r}: the rig file's mrz is not the card's (DG1)")
        image = dataclasses.replace(spec.image, mf_files={})
        return dataclasses.replace(spec, image=image, quirks=dataclasses.replace(spec.quirks, pace_supported=False))
    if spec.secrets.can != key.can:
        raise RigFileError(f"card {card.profile!r}: the rig file's CAN is not the card's (the last 6 ID digits)")
    return spec


class VirtualCards:
    """Inserts the rig's cards for as long as the context lasts; waits on PC/SC events, not on a clock."""

    def __init__(self, rig: Rig, stack: PcscStack, driver: PcscReaderDriver) -> None:
        self._driver = driver
        self._cards: list[tuple[str, SimulatedCard]] = []
        # [reader] leds: the vpcd readers carry everything, with that reader's LED/buzzer escape channel modelled
        model = ReaderModel(f"{rig.reader_leds}-leds", escape="acs-pseudo-apdu") if rig.reader_leds else None
        for index, entry in enumerate(rig.cards):
            spec = card_spec(entry)
            slot = reader_slot(rig, index)
            card = SimulatedCard(spec, stack.reader_port(slot), security=SimChipSecurity(spec.secrets, spec.quirks),
                                 reader=model)  # fmt: skip
            self._cards.append((READER_NAMES[slot], card))

    def virtual_reader(self, reader: str) -> VirtualReader | None:
        """The virtual reader model in front of the card on ``reader`` (its log shows what it was asked)."""
        return next((card.virtual_reader for name, card in self._cards if name == reader), None)

    def __enter__(self) -> VirtualCards:
        for reader, card in self._cards:
            card.insert()
            wait_for_presence(self._driver, reader, CardPresence.PRESENT)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for _, card in self._cards:
            card.remove()
        for reader, _ in self._cards:  # the stack is shared with tests/: hand its readers back empty
            wait_for_presence(self._driver, reader, CardPresence.ABSENT)


def sim_trust_store() -> TrustStore:
    """The simulator's test CSCA: a virtual rig's cards are signed under it, so a genuine one is ``verified``."""
    return TrustStore.from_der([load_or_create_pki().csca.certificate.public_bytes(Encoding.DER)])


def qr_photos(profiles: Sequence[str], folder: Path, seed: int = 2026) -> list[Path]:
    """One seeded 640x480 photograph (perspective, rotation, no degradation) of each profile's card QR."""
    from edge.sim.qr_frames import HEIGHT, WIDTH, render

    rng = random.Random(seed)
    paths: list[Path] = []
    for index, profile in enumerate(profiles):
        card = load_profile(profile)
        pixels, _ = render(card_qr_text(card.qr_person), rng, ())
        path = folder / f"{index:02d}-{profile}.png"
        Image.frombytes("L", (WIDTH, HEIGHT), pixels).save(path)
        paths.append(path)
    return paths


def wired_mock_factory(wires: Sequence[LedWire]) -> MockFactory:
    """Mock pins wired like the rig: each output pin drives its input pin, so tests read levels, not beliefs."""
    factory = MockFactory()
    for wire in wires:
        factory.pin(wire.output_pin, pin_class=MockConnectedPin, input_pin=factory.pin(wire.input_pin))
    return factory
