"""The rig's reader through the real PC/SC driver: reader present, the card's ATR, EF.CardAccess by short file id,
then a full chip read of each test card (PACE with its CAN, secure messaging, CA/AA) verified on the terminal.

EF.CardAccess needs no access key (it tells the terminal which PACE variants the chip offers). The full read uses
a test card's CAN from the rig file and asserts on verdicts and check names only: no personal data in the output.
A card given as ``access = "bac"`` (a JMRTD test card: no PACE, no EF.CardAccess, reads only SELECTed files) is
read with its MRZ key over BAC instead, and has no EF.CardAccess to check.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from edge.drivers.base import CardPresence
from edge.drivers.pcsc import PcscReaderDriver
from edge.protocol.access.card_access import parse_security_infos
from edge.protocol.access.policy import AccessMethod
from edge.protocol.chip import ReadRequest, read_chip
from edge.protocol.read_strategy import read_file
from edge.protocol.verify.card import verify_chip
from edge.protocol.verify.checks import CheckStatus, Verdict
from edge.protocol.verify.trust import TrustStore
from hil_tests.rig import Rig, TestCard

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


def _reader_holding(driver: PcscReaderDriver, rig: Rig, card: TestCard) -> str:
    """The reader the test card lies on: the one it names, or the only reader holding a card."""
    present = [s.name for s in driver.readers() if s.presence is CardPresence.PRESENT]
    if card.reader is not None:
        named = [name for name in present if card.reader in name]
        assert named, f"no card on a reader named like {card.reader!r} (readers with a card: {present})"
        return named[0]
    if len(rig.cards) > 1 or len(present) != 1:
        pytest.skip("cannot tell which reader holds this card: give the card a `reader` in the rig file")
    return present[0]


def test_card_access_lists_pace(driver: PcscReaderDriver, reader_rig: Rig, rig_card: TestCard) -> None:
    if rig_card.bac:
        pytest.skip("a BAC test card has no EF.CardAccess (no PACE)")
    reader = _reader_holding(driver, reader_rig, rig_card)
    with driver.connect(reader) as connection:
        # A CCCD keeps EF.CardAccess in the master file, selected after reset: READ BINARY by SFI, no SELECT.
        infos = parse_security_infos(read_file(connection, SFI_CARD_ACCESS))
    assert infos.pace, "EF.CardAccess lists no PACE protocol: not a CCCD (or not an ICAO 9303 chip)"


def test_full_chip_read_verifies(
    driver: PcscReaderDriver, reader_rig: Rig, rig_card: TestCard, trust_store: TrustStore
) -> None:
    """PACE with the CAN (a CCCD), or BAC with the MRZ key for a BAC test card (BAC allowed in case its applet is
    selected at power-up: EF.COM then answers and the terminal tries PACE first)."""
    reader = _reader_holding(driver, reader_rig, rig_card)
    with driver.connect(reader) as connection:
        read = read_chip(connection, ReadRequest(rig_card.key, allow_bac_fallback=rig_card.bac))
    report = verify_chip(read, trust_store, now=datetime.now(UTC), qr=None)

    if rig_card.bac:
        assert read.access.method is AccessMethod.BAC, "a BAC test card opened with PACE: is access = \"bac\" right?"
    else:
        assert read.access.method is AccessMethod.PACE, "a CCCD opens with PACE (CAN); BAC means a wrong card or key"
    assert read.dg1 is not None, "every CCCD has DG1 (the MRZ)"
    assert read.dg13 is not None, "every CCCD has DG13 (personal data)"
    assert read.stats.apdus > 0
    problems = {c.name: c.reason for c in report.checks if c.status is CheckStatus.FAILED}
    if rig_card.verdict is not None:
        assert report.verdict is rig_card.verdict, f"verdict {report.verdict.value}; failed checks: {problems}"
    else:
        assert report.verdict is not Verdict.FAILED, f"failed checks: {problems}"
