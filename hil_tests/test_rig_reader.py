"""The rig's reader through the real PC/SC driver: reader present, the card's ATR, EF.CardAccess by short file id.

EF.CardAccess needs no access key (it tells the terminal which PACE variants the chip offers), so these tests need
no CAN and never touch personal data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge.drivers.base import CardPresence
from edge.drivers.pcsc import PcscReaderDriver
from edge.protocol.access.card_access import parse_security_infos
from edge.protocol.reader import read_file
from hil_tests.conftest import Rig

pytestmark = pytest.mark.hil

SFI_CARD_ACCESS = 0x1C


@pytest.fixture(scope="module")
def driver(reader_rig: Rig) -> Iterator[PcscReaderDriver]:
    pcsc = PcscReaderDriver(reader_filter=reader_rig.reader_name or "")
    yield pcsc
    pcsc.close()


def test_reader_is_attached(driver: PcscReaderDriver, reader_rig: Rig) -> None:
    names = [state.name for state in driver.readers() if state.presence is not CardPresence.NO_READER]
    assert names, f"no reader matching {reader_rig.reader_name!r}: is it plugged in and is pcscd running?"


def test_card_answers_with_a_known_atr(driver: PcscReaderDriver, reader_rig: Rig) -> None:
    present = [s for s in driver.readers() if s.presence is CardPresence.PRESENT]
    if not present:
        pytest.skip("no card on the rig's reader")
    atr = present[0].atr
    assert atr[:1] in (b"\x3b", b"\x3f"), f"ATR {atr.hex()} does not start with a TS byte"
    expected = [card.atr for card in reader_rig.cards if card.atr is not None]
    if expected:
        assert atr in expected, f"ATR {atr.hex(' ')} is none of the rig's test cards"


def test_card_access_is_readable_by_sfi(driver: PcscReaderDriver) -> None:
    if not any(s.presence is CardPresence.PRESENT for s in driver.readers()):
        pytest.skip("no card on the rig's reader")
    connection = driver.connect()
    try:
        # A CCCD keeps EF.CardAccess in the master file, selected after reset: READ BINARY by SFI, no SELECT.
        infos = parse_security_infos(read_file(connection, SFI_CARD_ACCESS))
    finally:
        connection.close()
    assert infos.pace, "EF.CardAccess lists no PACE protocol: not a CCCD (or not an ICAO 9303 chip)"
