"""The terminal's state machine: every scenario at the counter, and random event storms that never get it stuck."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import TimeoutConfig
from edge.daemon.state import (
    READ_REPORT_GRACE,
    AbortRead,
    Action,
    Cancel,
    CardInserted,
    CardRemoved,
    ClockChanged,
    DeliveryChanged,
    DeviceChanged,
    Event,
    Indicator,
    KeyOffered,
    KeySource,
    Machine,
    QrRejected,
    ReadFailed,
    ReadSucceeded,
    Report,
    ShowIndicator,
    Snapshot,
    StartRead,
    StartVerify,
    State,
    Tick,
    VerifyDone,
    max_timeout,
)
from edge.protocol.access.policy import CanKey, MrzKey
from edge.protocol.chip import ChipRead

TIMEOUTS = TimeoutConfig(wait_for_card=30, wait_for_key=20, reading=15, verifying=5, show_result=4, hold_still=8)
MACHINE = Machine(TIMEOUTS)
QR_KEY = KeySource(CanKey("012345"))
KEY = KeySource(CanKey("111111"))
OTHER_KEY = KeySource(CanKey("222222"))
MRZ_KEY = KeySource(MrzKey("203012345", "030201", "280201"))
OFFICE_KEY = KeySource(CanKey("333333"), include_photo=True)
#: The machine only carries a read on to verification; it never looks inside.
CHIP_READ = cast(ChipRead, object())


def read_ok(now: float, attempt: int) -> ReadSucceeded:
    return ReadSucceeded(now, attempt=attempt, read=CHIP_READ, read_ms=7)


def run(events: Sequence[Event], snap: Snapshot | None = None) -> tuple[Snapshot, list[Action]]:
    snap = snap or Snapshot()
    actions: list[Action] = []
    for event in events:
        snap, more = MACHINE.step(snap, event)
        actions += more
    return snap, actions


def indicators(actions: Sequence[Action]) -> list[Indicator]:
    return [a.indicator for a in actions if isinstance(a, ShowIndicator)]


def test_qr_first_then_card_then_success() -> None:
    snap, actions = run([KeyOffered(0, key=QR_KEY), CardInserted(1)])
    assert snap.state is State.READING
    assert StartRead(1, QR_KEY, None, None, None) in actions
    snap, actions = run([read_ok(2, 1), VerifyDone(3, attempt=1, ok=True, proven=True)], snap)
    assert snap.state is State.RESULT_OK
    # the read travels on in the event, with the key and the office's wishes: nothing waits beside it
    assert StartVerify(1, CHIP_READ, 7, QR_KEY, None, None, None) in actions
    assert indicators(actions) == [Indicator.SUCCESS]
    snap, actions = run([Tick(3 + 4)], snap)
    assert snap.state is State.READY
    assert snap.key is None
    assert indicators(actions) == [Indicator.READY]


def test_an_unproven_issuer_shows_its_own_pattern_never_success() -> None:
    """Data intact but nobody vouches for the signer (a self-made card gets this far): neither success nor
    failure, for the result time like the others, then ready."""
    reading, _ = run([KeyOffered(0, key=KEY), CardInserted(1), read_ok(2, 1)])
    snap, actions = run([VerifyDone(3, attempt=1, ok=True, proven=False)], reading)
    assert snap.state is State.RESULT_UNPROVEN
    assert indicators(actions) == [Indicator.UNPROVEN]
    assert Report("result", "result_unproven") in actions
    snap, actions = run([Tick(3 + 4)], snap)
    assert (snap.state, indicators(actions)) == (State.READY, [Indicator.READY])
    failed, actions = run([VerifyDone(3, attempt=1, ok=False, proven=True)], reading)  # not stored: never success
    assert (failed.state, indicators(actions)) == (State.RESULT_FAILED, [Indicator.FAILURE])


def test_card_first_then_qr() -> None:
    snap, _ = run([CardInserted(0)])
    assert snap.state is State.WAIT_KEY
    snap, actions = run([KeyOffered(5, key=KEY)], snap)
    assert snap.state is State.READING
    assert any(isinstance(a, StartRead) for a in actions)


def test_office_read_request_carries_key_profile_challenge() -> None:
    snap, actions = run([KeyOffered(0, key=MRZ_KEY, request_id="req-1", challenge=b"\x01" * 8), CardInserted(1)])
    start = next(a for a in actions if isinstance(a, StartRead))
    assert (start.request_id, start.challenge) == ("req-1", b"\x01" * 8)
    snap, actions = run([ReadFailed(2, attempt=1, reason="access_key_rejected")], snap)
    assert snap.state is State.RESULT_FAILED
    assert Report("read_failed", "access_key_rejected", "req-1") in actions


def test_every_waiting_state_times_out() -> None:
    snap, actions = run([KeyOffered(0, key=KEY), Tick(29.9)])
    assert snap.state is State.WAIT_CARD
    snap, actions = run([Tick(30)], snap)
    assert snap.state is State.READY
    assert Report("timeout", "wait_card") in actions

    snap, actions = run([CardInserted(0), Tick(20)])
    assert snap.state is State.READY
    assert snap.card_present  # the card is still there; a QR now starts the read directly

    snap, _ = run([KeyOffered(0, key=KEY), CardInserted(0), Tick(15)])
    assert snap.state is State.READING  # the worker ends the read at 15 s and says why; the machine waits for it
    snap, actions = run([Tick(15 + READ_REPORT_GRACE)], snap)
    assert snap.state is State.RESULT_FAILED
    assert AbortRead(1) in actions
    assert Report("read_failed", "reading_timeout") in actions

    snap, actions = run([KeyOffered(0, key=KEY), CardInserted(0), read_ok(1, 1), Tick(6)])
    assert snap.state is State.RESULT_FAILED
    assert Report("read_failed", "verifying_timeout") in actions


def test_card_removed_mid_read_then_back_resumes_with_a_new_attempt() -> None:
    snap, actions = run([KeyOffered(0, key=KEY), CardInserted(0), CardRemoved(1)])
    assert snap.state is State.HOLD_STILL
    assert AbortRead(1) in actions
    assert indicators(actions)[-1] is Indicator.HOLD_STILL
    snap, actions = run([CardInserted(2)], snap)
    assert snap.state is State.READING
    assert StartRead(2, KEY, None, None, None) in actions
    snap, _ = run([read_ok(3, 1)], snap)  # the aborted attempt's late answer is ignored
    assert snap.state is State.READING
    snap, _ = run([CardRemoved(4), Tick(4 + 8)], snap)
    assert snap.state is State.RESULT_FAILED


def test_cancel_from_every_busy_state() -> None:
    prefixes: list[list[Event]] = [
        [KeyOffered(0, key=KEY)],
        [CardInserted(0)],
        [KeyOffered(0, key=KEY), CardInserted(0)],
        [KeyOffered(0, key=KEY), CardInserted(0), CardRemoved(0)],
        [KeyOffered(0, key=KEY), CardInserted(0), read_ok(0, 1)],
        [KeyOffered(0, key=KEY), CardInserted(0), read_ok(0, 1),
         VerifyDone(0, attempt=1, ok=False, proven=False)],
        [KeyOffered(0, key=KEY), CardInserted(0), read_ok(0, 1),
         VerifyDone(0, attempt=1, ok=True, proven=False)],
    ]
    for prefix in prefixes:
        snap, actions = run([*prefix, Cancel(1)])
        assert snap.state is State.READY, prefix
        assert any(isinstance(a, Report) and a.name == "cancelled" for a in actions)


def test_reader_lost_and_back() -> None:
    snap, actions = run([KeyOffered(0, key=KEY), CardInserted(0), DeviceChanged(1, device="reader", available=False)])
    assert snap.state is State.FAULT
    assert AbortRead(1) in actions
    assert indicators(actions)[-1] is Indicator.FAULT
    snap, actions = run([KeyOffered(2, key=OTHER_KEY), Tick(1000)], snap)
    assert snap.state is State.FAULT
    assert Report("busy", "fault") in actions
    snap, _ = run([DeviceChanged(3, device="camera", available=False), DeviceChanged(4, device="reader",
                                                                                      available=True)], snap)
    assert snap.state is State.FAULT  # camera still gone
    snap, actions = run([DeviceChanged(5, device="camera", available=True)], snap)
    assert snap.state is State.READY
    assert indicators(actions) == [Indicator.READY]


def test_a_qr_left_in_view_is_no_busy_for_its_own_card_another_card_or_a_request_is_one_each() -> None:
    """The scanner offers a QR left in view again every ``qr_repeat_after``: while that card's result shows (or its
    read runs) the repeats interrupt nothing and report nothing; another card's QR and an office request are one
    "busy" each."""
    results = {"ok": VerifyDone(3, attempt=1, ok=True, proven=True), "failed": ReadFailed(3, attempt=1, reason="x")}
    for name, outcome in results.items():
        snap, _ = run([KeyOffered(0, key=QR_KEY), CardInserted(1), *([read_ok(2, 1)] if name == "ok" else []),
                       outcome])
        assert snap.state is (State.RESULT_OK if name == "ok" else State.RESULT_FAILED)
        same_card = [KeyOffered(3 + 0.5 * i, key=KeySource(CanKey("012345"))) for i in range(1, 7)]  # until 6.0
        snap, actions = run(same_card, snap)
        assert snap.state in (State.RESULT_OK, State.RESULT_FAILED)  # still on show: show_result is 4 s
        assert [a for a in actions if isinstance(a, Report)] == []
        snap, actions = run([KeyOffered(6.2, key=OTHER_KEY), KeyOffered(6.4, key=QR_KEY, request_id="r")], snap)
        assert [a for a in actions if isinstance(a, Report)] == [Report("busy", snap.state.value),
                                                                 Report("busy", snap.state.value, "r")]
    snap, _ = run([KeyOffered(0, key=QR_KEY), CardInserted(1)])
    snap, actions = run([KeyOffered(1.5, key=QR_KEY), KeyOffered(2, key=QR_KEY)], snap)
    assert (snap.state, snap.attempt, actions) == (State.READING, 1, [])  # the read in hand goes on, unreported


def test_a_full_disk_refuses_reads_with_fault_and_clears_when_space_returns() -> None:
    snap, actions = run([DeliveryChanged(0, link_up=True, queued=0, outbox_full=False, storage_full=True)])
    assert indicators(actions) == [Indicator.FAULT]
    snap, actions = run([KeyOffered(1, key=KEY, request_id="r"), CardInserted(2)], snap)
    assert snap.state is State.READY
    assert Report("read_refused", "storage_full", "r") in actions
    assert Report("read_refused", "storage_full") in actions
    assert not any(isinstance(a, StartRead) for a in actions)
    snap, actions = run([DeliveryChanged(3, link_up=True, queued=0, outbox_full=False, storage_full=False)], snap)
    assert indicators(actions) == [Indicator.READY]


def test_a_result_the_disk_refused_is_a_storage_fault_never_a_failed_card() -> None:
    prefix = [KeyOffered(0, key=KEY, request_id="r"), CardInserted(0), read_ok(1, 1)]
    for fault in ("result_held", "repeat_read"):
        snap, actions = run([*prefix, VerifyDone(2, attempt=1, ok=True, proven=True, storage_fault=fault)])
        assert snap.state is State.READY
        assert snap.storage_full
        assert Indicator.FAILURE not in indicators(actions)
        assert indicators(actions)[-1] is Indicator.FAULT
        assert Report("storage_fault", fault, "r") in actions
        assert not any(isinstance(a, Report) and a.name in ("result", "read_failed") for a in actions)
        snap, actions = run([KeyOffered(3, key=OTHER_KEY)], snap)
        assert Report("read_refused", "storage_full") in actions


def test_a_disk_that_fills_while_a_key_waits_for_its_card_refuses_the_read() -> None:
    snap, _ = run([KeyOffered(0, key=KEY, request_id="r"),
                   DeliveryChanged(1, link_up=True, queued=0, outbox_full=False, storage_full=True)])
    snap, actions = run([CardInserted(2)], snap)
    assert snap.state is State.READY
    assert Report("read_refused", "storage_full", "r") in actions
    assert not any(isinstance(a, StartRead) for a in actions)


def test_outbox_full_refuses_reads_visibly_and_offline_queue_shows() -> None:
    snap, actions = run([DeliveryChanged(0, link_up=False, queued=3, outbox_full=False)])
    assert indicators(actions) == [Indicator.OFFLINE_QUEUED]
    snap, actions = run([DeliveryChanged(1, link_up=False, queued=10_000, outbox_full=True)], snap)
    assert indicators(actions) == [Indicator.FAULT]
    snap, actions = run([KeyOffered(2, key=KEY, request_id="r"), CardInserted(3)], snap)
    assert snap.state is State.READY
    assert Report("read_refused", "outbox_full", "r") in actions
    assert Report("read_refused", "outbox_full") in actions
    snap, actions = run([DeliveryChanged(4, link_up=True, queued=0, outbox_full=False), KeyOffered(5, key=KEY)], snap)
    assert snap.state is State.READING  # the card is still on the reader


def test_a_qr_that_gives_no_key_shows_the_failure_pattern_then_ready() -> None:
    for before in ([], [CardInserted(0)]):  # nothing yet, or a card already on the reader waiting for its key
        snap, actions = run([*before, QrRejected(1, reason="qr_inconsistent")])
        assert snap.state is State.RESULT_FAILED
        assert indicators(actions)[-1] is Indicator.FAILURE
        assert Report("qr_rejected", "qr_inconsistent") in actions
        snap, actions = run([Tick(1 + 4)], snap)
        assert snap.state is State.READY
        snap, actions = run([KeyOffered(6, key=KEY)], snap)  # the right QR now
        assert snap.state is (State.READING if before else State.WAIT_CARD)
    reading, _ = run([KeyOffered(0, key=KEY), CardInserted(1)])
    assert run([QrRejected(2, reason="not_id_card")], reading)[0].state is State.READING  # a read is not disturbed


def test_a_clock_not_synchronised_shows_on_ready_and_reads_go_on() -> None:
    snap, actions = run([ClockChanged(0, synchronised=False)])
    assert indicators(actions) == [Indicator.CLOCK_UNSYNCHRONISED]
    snap, actions = run([KeyOffered(1, key=KEY), CardInserted(2)], snap)
    assert snap.state is State.READING  # nothing is refused for the clock
    snap, actions = run([read_ok(3, 1), VerifyDone(4, attempt=1, ok=True, proven=True), Tick(9)], snap)
    assert indicators(actions) == [Indicator.SUCCESS, Indicator.CLOCK_UNSYNCHRONISED]
    snap, actions = run([DeliveryChanged(10, link_up=False, queued=2, outbox_full=False)], snap)
    assert indicators(actions) == [Indicator.OFFLINE_QUEUED]  # results waiting say more than the clock
    snap, actions = run([DeliveryChanged(11, link_up=False, queued=2, outbox_full=True)], snap)
    assert indicators(actions) == [Indicator.FAULT]
    snap, actions = run([DeliveryChanged(12, link_up=True, queued=0, outbox_full=False),
                         ClockChanged(13, synchronised=True)], snap)
    assert indicators(actions) == [Indicator.CLOCK_UNSYNCHRONISED, Indicator.READY]
    reading, _ = run([KeyOffered(0, key=KEY), CardInserted(1)])
    during, actions = run([ClockChanged(2, synchronised=False)], reading)
    assert (during.state, indicators(actions)) == (State.READING, [])  # a fact only: the read is not disturbed


# --- random storms -----------------------------------------------------------------------------------------------

_EVENT_KINDS = st.sampled_from(["key", "request", "in", "out", "cancel", "read_ok", "read_fail", "verify_ok",
                                "verify_unproven", "verify_fail", "reader_lost", "reader_back", "camera_lost",
                                "camera_back", "link", "full", "tick", "bad_qr", "disk_full", "verify_held",
                                "clock"])


def _event(kind: str, now: float, attempt: int) -> Event:
    return {
        "key": lambda: KeyOffered(now, key=QR_KEY),
        "request": lambda: KeyOffered(now, key=OFFICE_KEY, request_id="r"),
        "in": lambda: CardInserted(now),
        "out": lambda: CardRemoved(now),
        "cancel": lambda: Cancel(now),
        "read_ok": lambda: read_ok(now, attempt),
        "read_fail": lambda: ReadFailed(now, attempt=attempt, reason="x"),
        "verify_ok": lambda: VerifyDone(now, attempt=attempt, ok=True, proven=True),
        "verify_unproven": lambda: VerifyDone(now, attempt=attempt, ok=True, proven=False),
        "verify_fail": lambda: VerifyDone(now, attempt=attempt, ok=False, proven=False),
        "reader_lost": lambda: DeviceChanged(now, device="reader", available=False),
        "reader_back": lambda: DeviceChanged(now, device="reader", available=True),
        "camera_lost": lambda: DeviceChanged(now, device="camera", available=False),
        "camera_back": lambda: DeviceChanged(now, device="camera", available=True),
        "link": lambda: DeliveryChanged(now, link_up=attempt % 2 == 0, queued=attempt, outbox_full=False),
        "full": lambda: DeliveryChanged(now, link_up=False, queued=9, outbox_full=attempt % 3 == 0),
        "tick": lambda: Tick(now),
        "bad_qr": lambda: QrRejected(now, reason="not_id_card"),
        "disk_full": lambda: DeliveryChanged(now, link_up=True, queued=1, outbox_full=False,
                                             storage_full=attempt % 2 == 0),
        "verify_held": lambda: VerifyDone(now, attempt=attempt, ok=True, proven=True, storage_fault="result_held"),
        "clock": lambda: ClockChanged(now, synchronised=attempt % 2 == 0),
    }[kind]()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_EVENT_KINDS, st.floats(0, 40), st.integers(-1, 2)), max_size=60))
def test_never_stuck_and_invariants_hold(steps: list[tuple[str, float, int]]) -> None:
    snap, now = Snapshot(), 0.0
    limit = max_timeout(TIMEOUTS)
    for kind, delay, attempt_offset in steps:
        now += delay
        previous = snap
        snap, actions = MACHINE.step(snap, _event(kind, now, snap.attempt + attempt_offset))
        # Waiting states always have a deadline in the future, never further than the longest timeout.
        if snap.state in (State.READY, State.FAULT):
            assert snap.deadline is None
            assert snap.key is None
        else:
            assert snap.deadline is not None
            assert now < snap.deadline <= now + limit
        # A read is only started with a key, attempts only grow, and the LEDs always match the state.
        for action in actions:
            if isinstance(action, StartRead):
                assert action.key is not None
                assert action.attempt == snap.attempt
                assert not previous.storage_full  # a read never starts against a full disk
        assert snap.attempt >= previous.attempt
        assert not any(isinstance(a, ShowIndicator) for a in actions) or snap.indicator is next(
            a.indicator for a in reversed(actions) if isinstance(a, ShowIndicator))
    # With nothing else happening, three deadlines at most lead back to READY (FAULT needs its device back).
    for _ in range(3):
        now += limit
        snap, _ = MACHINE.step(snap, Tick(now))
    assert snap.state in (State.READY, State.FAULT)
    snap, _ = run([DeviceChanged(now, device="reader", available=True),
                   DeviceChanged(now, device="camera", available=True)], snap)
    assert snap.state is State.READY
