"""Hostile and glitching chips through the real transport: pyscard -> private pcscd -> vpcd -> the virtual CCCD.

What tests/unit/test_hostile_chip.py shows in process, read here through the driver that production uses (with
read_chip's response chaining above it: 61xx and 6Cxx): one short answer does not shrink every later read, a chip
that never settles on a length or never ends its answer costs a bounded number of APDUs and ends in a typed error,
and a read ends at its deadline, after which the same reader reads the next card, even when the chip never answers
an APDU (the driver gives the exchange up at the deadline). Counted in APDUs at the card, never timed.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from edge.drivers.base import CardPresence
from edge.drivers.pcsc import PcscConnection, PcscReaderDriver
from edge.errors import ReadDeadlineError, StatusWordError, TransmitError
from edge.protocol.access.policy import CanKey
from edge.protocol.chaining import MAX_GET_RESPONSE_ROUNDS
from edge.protocol.chip import ChipRead, ReadRequest, read_chip
from edge.protocol.read_strategy import MAX_WRONG_LE_HINTS, PROBE_AFTER_SHORT_ANSWERS
from edge.protocol.verify.card import verify_chip
from edge.protocol.verify.checks import Verdict
from edge.protocol.verify.trust import TrustStore
from edge.sim.builder import build_card
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import SimCardSpec
from edge.sim.pki import load_or_create_pki
from edge.sim.profile import load_profile
from edge.sim.runner import SimulatedCard
from edge.sim.stack import READER_NAMES
from tests.fixtures.pcsc import InsertCard, wait_for_presence
from tests.support.waiting import wait_until

pytestmark = pytest.mark.stack

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def default() -> SimCardSpec:
    return build_card(load_profile("default"))


@pytest.fixture
def connect(pcsc_driver: PcscReaderDriver) -> Iterator[Any]:
    opened: list[PcscConnection] = []

    def open_reader() -> PcscConnection:
        opened.append(pcsc_driver.connect(READER_NAMES[0]))
        return opened[-1]

    yield open_reader
    for connection in opened:
        connection.close()


def insert(insert_card: InsertCard, spec: SimCardSpec) -> SimulatedCard:
    return insert_card(spec, security=SimChipSecurity(spec.secrets, spec.quirks))


def lift(card: SimulatedCard, driver: PcscReaderDriver) -> None:
    card.remove()
    assert card.wait_removed(5.0)
    wait_for_presence(driver, READER_NAMES[0], CardPresence.ABSENT)


def with_quirks(spec: SimCardSpec, **quirks: Any) -> SimCardSpec:
    return dataclasses.replace(spec, quirks=dataclasses.replace(spec.quirks, **quirks))


def read(connection: PcscConnection, spec: SimCardSpec, **options: Any) -> ChipRead:
    return read_chip(connection, ReadRequest(CanKey(spec.secrets.can), want_photo=True), **options)


def test_one_short_answer_costs_a_few_apdus_not_a_tiny_chunk_for_the_rest_of_the_card(
    insert_card: InsertCard, pcsc_driver: PcscReaderDriver, connect: Any
) -> None:
    """quirk-one-short-answer (no extended length; one 8-byte answer) against the same card without the glitch.
    Before, 8 bytes stayed the chunk size: 1,726 APDUs for a read of 75."""
    glitching = build_card(load_profile("quirk-one-short-answer"))
    steady = with_quirks(glitching, short_answer_once=None)
    steady_card = insert(insert_card, steady)
    baseline = read(connect(), steady)
    assert steady_card.counters.apdus == baseline.stats.apdus
    lift(steady_card, pcsc_driver)
    card = insert(insert_card, glitching)
    result = read(connect(), glitching)
    assert result.chunk_limit == baseline.chunk_limit  # no size stuck: the secured reads go at CHUNK_AES_SM
    assert baseline.stats.apdus < result.stats.apdus <= baseline.stats.apdus + PROBE_AFTER_SHORT_ANSWERS + 1
    assert card.counters.apdus == result.stats.apdus
    trust = TrustStore.from_der([load_or_create_pki().csca.certificate.public_bytes(Encoding.DER)])
    assert verify_chip(result, trust, now=NOW, qr=None).verdict is Verdict.VERIFIED


def test_a_chip_that_never_settles_on_a_length_ends_in_a_typed_error(
    default: SimCardSpec, insert_card: InsertCard, connect: Any
) -> None:
    """Every READ BINARY answered 6Cxx with one byte less: response chaining resends a plain command once, the read
    strategy follows MAX_WRONG_LE_HINTS hints, then it is the chip's error (before: Le by Le, ~500 APDUs)."""
    spec = with_quirks(default, wrong_le_loop=True)
    card = insert(insert_card, spec)
    with pytest.raises(StatusWordError) as raised:
        read(connect(), spec)
    assert raised.value.sw >> 8 == 0x6C
    # EF.CardAccess: the first, extended, attempt (chaining resends only short commands), then each short attempt
    # and chaining's resend of it
    assert card.counters.apdus == 1 + 2 * MAX_WRONG_LE_HINTS


def test_a_chip_whose_answer_never_ends_costs_bounded_get_response_rounds(
    default: SimCardSpec, insert_card: InsertCard, connect: Any
) -> None:
    spec = with_quirks(default, endless_get_response=True)
    card = insert(insert_card, spec)
    with pytest.raises(TransmitError, match="61xx"):
        read(connect(), spec)
    assert card.counters.apdus == 1 + MAX_GET_RESPONSE_ROUNDS


class Deadline:
    """Expires after ``checks`` questions: the deadline counted in APDUs (the daemon passes a monotonic clock)."""

    def __init__(self, checks: int) -> None:
        self.left = checks

    def __call__(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_a_read_ends_at_its_deadline_and_the_reader_reads_the_next_card(
    default: SimCardSpec, insert_card: InsertCard, pcsc_driver: PcscReaderDriver, connect: Any
) -> None:
    slow = with_quirks(default, answer_delay_ms=20.0)
    card = insert(insert_card, slow)
    with pytest.raises(ReadDeadlineError):
        read(connect(), slow, expired=Deadline(9))
    assert card.counters.apdus == 9  # nothing sent once the deadline passed
    lift(card, pcsc_driver)
    insert(insert_card, default)
    result = read(connect(), default, expired=Deadline(1000))
    assert result.stats.apdus == 16  # a full read with the photo


def call_threads() -> list[threading.Thread]:
    """The threads time-limited PC/SC connections make their calls on (one per connection)."""
    return [thread for thread in threading.enumerate() if thread.name.startswith("pcsc-")]


def test_a_chip_that_never_answers_ends_at_the_deadline_and_the_reader_reads_the_next_card(
    default: SimCardSpec, insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    stalling = with_quirks(default, stall_after_apdus=3, stall_seconds=600.0)
    card = insert(insert_card, stalling)
    connection = pcsc_driver.connect(READER_NAMES[0], time_limit=3.0)
    with pytest.raises(ReadDeadlineError, match="no answer to"):
        read(connection, stalling)  # no deadline between APDUs: only the driver's can end it
    connection.close()
    assert card.counters.apdus == 4  # the fourth reached the chip, which is still silent
    answered = card.counters.bytes_out
    lift(card, pcsc_driver)  # the driver watches on a fresh context: the stuck one is never touched
    assert card.counters.bytes_out == answered  # the stalled APDU's answer never came
    wait_until(lambda: not call_threads(), "the stuck call's thread to end once the card left")
    insert(insert_card, default)
    with pcsc_driver.connect(READER_NAMES[0], time_limit=600.0) as fresh:
        result = read(fresh, default)
        assert len(call_threads()) == 1  # one thread for the whole read, none per APDU
    assert result.stats.apdus == 16  # a full read with the photo
    wait_until(lambda: not call_threads(), "the connection's thread to end with it")


def test_the_reader_watch_goes_on_while_a_chip_never_answers(
    default: SimCardSpec, insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    """The daemon's reader thread waits for changes on the driver's context while the worker reads: the stuck
    SCardTransmit must not hold that context (pcsc-lite would then freeze every PC/SC call of the process until the
    card left). Fails when the time-limited connection shares the driver's context."""
    stalling = with_quirks(default, stall_after_apdus=3, stall_seconds=600.0)
    card = insert(insert_card, stalling)
    stop = threading.Event()
    waits: list[int] = []

    def watch() -> None:
        while not stop.is_set():
            pcsc_driver.wait_for_change(0.2)
            waits.append(1)

    watcher = threading.Thread(target=watch, name="watch", daemon=True)
    watcher.start()
    try:
        connection = pcsc_driver.connect(READER_NAMES[0], time_limit=2.0)
        with pytest.raises(ReadDeadlineError, match="no answer to"):
            read(connection, stalling)
        connection.close()
        seen = len(waits)
        wait_until(lambda: len(waits) > seen + 2, "the watch to go on beside the stuck call", timeout=10.0)
        states = pcsc_driver.readers()  # on the driver's context, with the card still silent on the reader
        assert [state.presence for state in states if state.name == READER_NAMES[0]] == [CardPresence.PRESENT]
    finally:
        stop.set()
        lift(card, pcsc_driver)
        watcher.join(5.0)
    wait_until(lambda: not call_threads(), "the stuck call's thread to end once the card left")
