"""A card lifted off the reader by hand, mid-read: the read ends in CardRemovedError and returns no document.

Unlike ``Quirks.remove_after_apdus`` (the card itself refuses the next APDU, in the card's own thread), this takes
the card away from another thread with :meth:`SimulatedCard.remove` while the chip is still answering an APDU, as a
hand would: vpcd loses the card during an exchange and pcscd has to notice. The card answers slowly
(``answer_delay_ms``) so the removal lands inside an exchange. Nothing here is timed: bench/removal_latency.py
measures how long the error takes.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from edge.drivers.base import CardPresence
from edge.drivers.pcsc import PcscReaderDriver
from edge.errors import CardRemovedError
from edge.protocol.access.policy import CanKey
from edge.protocol.chip import ChipRead, ReadRequest, read_chip
from edge.sim.builder import build_card
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import SimCardSpec
from edge.sim.profile import load_profile
from edge.sim.runner import SimulatedCard
from edge.sim.stack import READER_NAMES
from tests.fixtures.pcsc import InsertCard, wait_for_presence
from tests.stack.test_read_card import FULL_READ_WITH_PHOTO, REMOVE_AFTER

pytestmark = pytest.mark.stack

#: Long enough that the remover, polling the card's APDU counter, finds the chip still busy with that APDU.
ANSWER_DELAY_MS = 40.0


@pytest.fixture(scope="module")
def slow_card() -> SimCardSpec:
    spec = build_card(load_profile("default"))
    return dataclasses.replace(spec, quirks=dataclasses.replace(spec.quirks, answer_delay_ms=ANSWER_DELAY_MS))


def remove_when_answering(card: SimulatedCard, apdu: int, read_over: threading.Event) -> threading.Thread:
    """Start a thread that lifts ``card`` once the chip has begun answering its ``apdu``-th APDU."""

    def lift() -> None:
        while card.counters.apdus < apdu and not read_over.is_set():
            time.sleep(0.001)
        card.remove()

    remover = threading.Thread(target=lift, name="lift-card", daemon=True)
    remover.start()
    return remover


@pytest.mark.parametrize("apdu", [pytest.param(after + 1, id=label) for label, after in REMOVE_AFTER.items()])
def test_card_lifted_during_an_exchange_ends_in_card_removed_and_no_document(
    apdu: int, slow_card: SimCardSpec, insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    card = insert_card(slow_card, security=SimChipSecurity(slow_card.secrets, slow_card.quirks))
    read_over = threading.Event()
    result: ChipRead | None = None
    with pcsc_driver.connect(READER_NAMES[0]) as connection:
        remover = remove_when_answering(card, apdu, read_over)
        try:
            with pytest.raises(CardRemovedError):
                result = read_chip(connection, ReadRequest(CanKey(slow_card.secrets.can), want_photo=True))
        finally:
            read_over.set()
            remover.join(timeout=10.0)
    assert result is None  # never a partial document
    assert not remover.is_alive()
    assert apdu <= card.counters.apdus < FULL_READ_WITH_PHOTO  # the read stopped where the card was lifted
    assert not card.inserted
    wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.ABSENT)
