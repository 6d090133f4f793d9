"""The pyscard driver against a real private pcscd with vpcd readers and the virtual CCCD.

Card events, removal mid-transfer, pcscd restarting, readers vanishing. Nothing here asserts wall-clock time:
waits are on PC/SC events, and results are checked by APDU counts and bytes.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
from smartcard import scard

from edge.drivers.base import CardPresence
from edge.drivers.pcsc import REMOVAL_SETTLE_SECONDS, SLOW_CARD_HINT, PcscReaderDriver
from edge.errors import CardRemovedError, CardTimeoutError, NoCardError, NoReaderError
from edge.protocol import tlv
from edge.protocol.access.policy import CanKey
from edge.protocol.apdu import CommandApdu
from edge.protocol.chip import CountingConnection, ReadRequest, read_chip
from edge.protocol.iso7816 import EMRTD_AID
from edge.protocol.read_strategy import read_file
from edge.sim.builder import build_card
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import Quirks, dg_fid
from edge.sim.profile import load_profile
from edge.sim.runner import DEMO_COM, SimulatedCard, demo_spec
from edge.sim.stack import READER_NAMES, PcscStack
from tests.fixtures.pcsc import InsertCard, wait_for_presence

pytestmark = pytest.mark.stack

SELECT_APPLET = CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)


def presence(driver: PcscReaderDriver) -> dict[str, CardPresence]:
    return {state.name: state.presence for state in driver.readers()}


def test_lists_both_virtual_readers_empty(pcsc_driver: PcscReaderDriver) -> None:
    assert presence(pcsc_driver) == dict.fromkeys(READER_NAMES, CardPresence.ABSENT)


def test_insert_and_remove_are_events(pcsc_stack: PcscStack, pcsc_driver: PcscReaderDriver) -> None:
    pcsc_driver.readers()
    card = SimulatedCard(demo_spec(), pcsc_stack.reader_port(0))
    card.insert()
    try:
        wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.PRESENT)
        present = {s.name: s for s in pcsc_driver.readers()}[READER_NAMES[0]]
        assert present.atr == demo_spec().image.atr
    finally:
        card.remove()
    wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.ABSENT)


def test_wait_without_change_returns_the_current_states(pcsc_driver: PcscReaderDriver) -> None:
    pcsc_driver.readers()
    states = pcsc_driver.wait_for_change(0.05)
    assert {s.name: s.presence for s in states} == dict.fromkeys(READER_NAMES, CardPresence.ABSENT)


def test_connect_without_a_card(pcsc_driver: PcscReaderDriver) -> None:
    with pytest.raises(NoCardError):
        pcsc_driver.connect()
    with pytest.raises(NoCardError):
        pcsc_driver.connect(READER_NAMES[0])
    with pytest.raises(NoReaderError):
        pcsc_driver.connect("No Such Reader 00 00")


def test_removal_mid_file_raises_card_removed_with_no_partial_data(
    insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    spec = demo_spec(Quirks(plain_reads=True, remove_after_apdus=4))
    dg2 = tlv.encode(0x75, bytes(4000))
    spec = dataclasses.replace(spec, image=dataclasses.replace(spec.image, applet_files={dg_fid(2): dg2}))
    simulated = insert_card(spec)
    result: bytes | None = None
    with pcsc_driver.connect(READER_NAMES[0]) as conn:
        counted = CountingConnection(conn)
        assert counted.send_and_receive(SELECT_APPLET).ok
        with pytest.raises(CardRemovedError):
            result = read_file(counted, 2, chunk=256)
        assert counted.apdus == 5  # SELECT and four reads sent; the fourth met an empty field
    assert result is None
    assert simulated.counters.apdus == 4
    assert REMOVAL_SETTLE_SECONDS < 1.0  # the bound on detecting a removal that vpcd reports as an empty answer
    wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.ABSENT)


def test_removal_between_apdus(insert_card: InsertCard, pcsc_driver: PcscReaderDriver) -> None:
    simulated = insert_card(demo_spec())
    with pcsc_driver.connect(READER_NAMES[0]) as conn:
        assert conn.send_and_receive(SELECT_APPLET).ok
        simulated.remove()
        wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.ABSENT)
        with pytest.raises(CardRemovedError):
            conn.send_and_receive(SELECT_APPLET)


def test_reinserted_card_is_fresh(insert_card: InsertCard, pcsc_driver: PcscReaderDriver) -> None:
    simulated = insert_card(demo_spec(Quirks(plain_reads=True, remove_after_apdus=1)))
    with pcsc_driver.connect(READER_NAMES[0]) as conn:
        assert conn.send_and_receive(SELECT_APPLET).ok
        with pytest.raises(CardRemovedError):
            conn.send_and_receive(SELECT_APPLET)
    wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.ABSENT)
    simulated.insert()
    wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.PRESENT)
    with pcsc_driver.connect(READER_NAMES[0]) as conn:
        assert conn.send_and_receive(SELECT_APPLET).ok


def test_driver_survives_pcscd_restart(
    pcsc_stack: PcscStack, insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    if not pcsc_stack.private:
        pytest.skip("the system pcscd is not ours to restart")
    simulated = insert_card(demo_spec())
    conn = pcsc_driver.connect(READER_NAMES[0])
    assert conn.send_and_receive(SELECT_APPLET).ok

    pcsc_stack.kill_daemon()
    assert simulated.wait_removed(5.0)  # vpcd went down with pcscd: the card is out of the field
    assert pcsc_driver.readers() == []
    with pytest.raises(NoReaderError):
        conn.send_and_receive(SELECT_APPLET)
    with pytest.raises(NoReaderError):
        pcsc_driver.connect()
    assert pcsc_driver.wait_for_change(0.2) == []

    pcsc_stack.start_daemon()
    wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.ABSENT)
    simulated.insert()
    wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.PRESENT)
    with pcsc_driver.connect(READER_NAMES[0]) as fresh:
        assert fresh.send_and_receive(SELECT_APPLET).ok
        assert read_file(fresh, 0x1E) == DEMO_COM


def test_restart_is_noticed_by_a_waiting_driver(pcsc_stack: PcscStack, pcsc_driver: PcscReaderDriver) -> None:
    if not pcsc_stack.private:
        pytest.skip("the system pcscd is not ours to restart")
    pcsc_driver.readers()
    pcsc_stack.restart()
    states = pcsc_driver.wait_for_change(2.0)  # the dead context is replaced inside the wait
    if not states:
        states = pcsc_driver.wait_for_change(5.0)
    assert {s.name for s in states} == set(READER_NAMES)


def test_extended_length_is_configurable(insert_card: InsertCard) -> None:
    insert_card(demo_spec())
    driver = PcscReaderDriver(extended_length=False, reader_filter="Virtual PCD")
    try:
        with driver.connect(READER_NAMES[0]) as conn:
            assert not conn.supports_extended_length
            assert conn.send_and_receive(SELECT_APPLET).ok
            assert read_file(conn, 0x1E, chunk=4096, extended_ok=True) == DEMO_COM
    finally:
        driver.close()


# --- slow cards and deadlines ----------------------------------------------------------------------------------

#: Each answer of the slow card comes this late: far slower than a real chip, no PC/SC timeout for it.
SLOW_ANSWER_MS = 60.0


def test_a_slow_card_still_reads_completely(insert_card: InsertCard, pcsc_driver: PcscReaderDriver) -> None:
    spec = build_card(load_profile("default"))
    slow = dataclasses.replace(spec, quirks=dataclasses.replace(spec.quirks, answer_delay_ms=SLOW_ANSWER_MS))
    simulated = insert_card(slow, security=SimChipSecurity(slow.secrets, slow.quirks))
    with pcsc_driver.connect(READER_NAMES[0]) as conn:
        result = read_chip(conn, ReadRequest(CanKey(slow.secrets.can)))
        assert result.stats.apdus == 15  # as a fast card: no retry, no re-authentication
    assert simulated.counters.apdus == 15
    assert result.access.reauthentications == 0
    assert result.chip_auth.status.value == "passed"
    assert result.active_auth.verified


def test_waiting_for_a_card_ends_at_its_deadline(pcsc_driver: PcscReaderDriver) -> None:
    with pytest.raises(CardTimeoutError) as info:
        pcsc_driver.wait_for_card(0.3, READER_NAMES[0])
    assert isinstance(info.value, TimeoutError)  # generic callers catch it as the builtin
    assert READER_NAMES[0] in str(info.value)
    assert "place the card" in info.value.hint
    with pytest.raises(CardTimeoutError, match="any reader"):
        pcsc_driver.wait_for_card(0.1)
    with pytest.raises(NoReaderError):
        pcsc_driver.wait_for_card(0.1, "No Such Reader 00 00")


def test_waiting_for_a_card_returns_when_it_is_placed(pcsc_stack: PcscStack, pcsc_driver: PcscReaderDriver) -> None:
    card = SimulatedCard(demo_spec(), pcsc_stack.reader_port(1))
    placing = threading.Timer(0.2, card.insert)
    placing.start()
    try:
        state = pcsc_driver.wait_for_card(10.0)
        assert state.name == READER_NAMES[1]
        assert state.presence is CardPresence.PRESENT
        assert pcsc_driver.wait_for_card(0.0, READER_NAMES[1]) == state  # already there: no wait at all
    finally:
        placing.join()
        card.remove()
    wait_for_presence(pcsc_driver, READER_NAMES[1], CardPresence.ABSENT)


def test_a_transmit_timeout_is_a_timeout_while_the_card_stays_and_a_removal_once_it_left(
    insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    """vpcd never times out, so the PC/SC answer is handed to the driver's mapping as a reader would report it;
    whether the card is still there is asked of the real pcscd."""
    simulated = insert_card(demo_spec())
    with pcsc_driver.connect(READER_NAMES[0]) as conn:
        error = conn._transmit_error(scard.SCARD_E_TIMEOUT, SELECT_APPLET)
        assert isinstance(error, CardTimeoutError)
        assert "no answer in time" in str(error)
        assert error.hint == SLOW_CARD_HINT
        assert conn.send_and_receive(SELECT_APPLET).ok  # the connection stays usable for a retry
        simulated.remove()
        wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.ABSENT)
        assert isinstance(conn._transmit_error(scard.SCARD_E_TIMEOUT, SELECT_APPLET), CardRemovedError)
