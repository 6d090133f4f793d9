"""The counter terminal's state machine: pure and deterministic (events in, actions out, time passed in).

Why pure: every path the officer can meet (QR before card, card before QR, an office request, a card pulled
mid-read, a reader unplugged, a full outbox) is a unit test without threads, devices or sleeps. The daemon feeds
events from its driver threads and carries out the returned actions.

The data of a tap travels in the events and actions: the key in ``KeyOffered`` -> ``StartRead``, the chip read in
``ReadSucceeded`` -> ``StartVerify``; nothing waits beside them.

Every waiting state has a deadline (``TimeoutConfig``); a late completion from an aborted attempt is recognised by
its ``attempt`` number and ignored. FAULT (reader or camera gone) is left when the device returns. Storage trouble
(a full outbox, a disk without its reserve, a result the disk refused) shows the FAULT pattern in READY and refuses
reads until there is room: a full disk is the terminal's fault, never the card's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import ClassVar

from edge.config import TimeoutConfig
from edge.protocol.access.policy import AccessKey
from edge.protocol.cccd_qr import CccdQr
from edge.protocol.chip import ChipRead
from edge.protocol.result import ProcedureProfile


class State(StrEnum):
    READY = "ready"
    WAIT_CARD = "wait_card"  # key known (QR or office request), card not yet on the reader
    WAIT_KEY = "wait_key"  # card on the reader, no key yet
    READING = "reading"
    HOLD_STILL = "hold_still"  # card left the field mid-read: put it back to resume
    VERIFYING = "verifying"
    RESULT_OK = "result_ok"  # origin proven (CSCA or a known Document Signer)
    RESULT_UNPROVEN = "result_unproven"  # data intact, issuer not proven: neither success nor failure
    RESULT_FAILED = "result_failed"
    FAULT = "fault"  # reader or camera lost


class Indicator(StrEnum):
    """What the LEDs show; one pattern each (``edge.drivers.leds.PATTERNS``)."""

    READY = "ready"
    SCANNING = "scanning"
    HOLD_STILL = "hold_still"
    SUCCESS = "success"
    UNPROVEN = "unproven"
    FAILURE = "failure"
    OFFLINE_QUEUED = "offline_queued"
    CLOCK_UNSYNCHRONISED = "clock_unsynchronised"  # READY, but dates cannot be checked until the time is trusted
    FAULT = "fault"


@dataclass(frozen=True, slots=True)
class KeySource:
    """A chip key and where it came from. ``qr`` is kept for the QR-vs-DG13 cross-check (None: office request);
    ``include_photo`` and ``consent_ref`` are the office request's (``edge.protocol.commands.ReadCommand``)."""

    access: AccessKey
    qr: CccdQr | None = None
    include_photo: bool = False
    consent_ref: str | None = None


# --- events ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    now: float  # monotonic seconds, supplied by the daemon


@dataclass(frozen=True, slots=True)
class Tick(Event):
    pass


@dataclass(frozen=True, slots=True)
class KeyOffered(Event):
    """A chip access key from a scanned QR (``request_id`` None) or from an office ``read_request``."""

    key: KeySource
    request_id: str | None = None
    profile: ProcedureProfile | None = None
    challenge: bytes | None = None


@dataclass(frozen=True, slots=True)
class QrRejected(Event):
    """A QR that gives no key: not a CCCD's (``not_id_card``), or one contradicting itself (``qr_inconsistent``).
    The officer must see it on the LEDs, not only the office on its event topic."""

    reason: str


@dataclass(frozen=True, slots=True)
class CardInserted(Event):
    pass


@dataclass(frozen=True, slots=True)
class CardRemoved(Event):
    pass


@dataclass(frozen=True, slots=True)
class Cancel(Event):
    pass


@dataclass(frozen=True, slots=True)
class ReadSucceeded(Event):
    """The chip was read: the read itself travels on to verification (``StartVerify``)."""

    attempt: int
    read: ChipRead = field(repr=False)
    read_ms: int


@dataclass(frozen=True, slots=True)
class ReadFailed(Event):
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyDone(Event):
    """``ok``: a result was stored and not ``failed``; ``proven``: its verdict also proves the issuer. Only both
    show success: a card whose origin nobody vouches for may be self-made (``Verdict.proves_origin``)."""

    attempt: int
    ok: bool
    proven: bool
    #: Set when the disk refused the result: ``"result_held"`` (kept in memory, stored when space returns) or
    #: ``"repeat_read"`` (memory full too). A storage fault, never the card's: FAULT, not the failure pattern.
    storage_fault: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceChanged(Event):
    device: str  # "reader" | "camera"
    available: bool


@dataclass(frozen=True, slots=True)
class ClockChanged(Event):
    """Whether the wall clock is trusted (``edge.daemon.clock``). A fact only: reads go on either way (their date
    checks say "clock not synchronised"), READY just shows it."""

    synchronised: bool


@dataclass(frozen=True, slots=True)
class DeliveryChanged(Event):
    """Link and outbox facts; they only change what the LEDs show and whether reads are accepted."""

    link_up: bool
    queued: int  # results the broker has not acknowledged yet
    outbox_full: bool
    storage_full: bool = False  # the disk's reserve is gone, or a result waits in memory for room
    awaiting_receipt: int = 0  # results the broker acknowledged, kept until the office's receipt names them
    receipt_overdue: bool = False  # a result published several times has no receipt: the office is not answering


# --- actions -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartRead:
    attempt: int
    key: KeySource
    request_id: str | None
    profile: ProcedureProfile | None
    challenge: bytes | None  # the office's AA challenge, if it sent one


@dataclass(frozen=True, slots=True)
class AbortRead:
    attempt: int


@dataclass(frozen=True, slots=True)
class StartVerify:
    """Verify a read, build its document, sign and store it: everything the result needs comes with it."""

    attempt: int
    read: ChipRead = field(repr=False)
    read_ms: int
    key: KeySource
    request_id: str | None
    profile: ProcedureProfile | None
    challenge: bytes | None


@dataclass(frozen=True, slots=True)
class ShowIndicator:
    indicator: Indicator


@dataclass(frozen=True, slots=True)
class Report:
    """An event for the office (``/event``): never personal data."""

    name: str
    detail: str = ""
    request_id: str | None = None


Action = StartRead | AbortRead | StartVerify | ShowIndicator | Report


# --- the machine -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: State = State.READY
    deadline: float | None = None
    attempt: int = 0
    key: KeySource | None = None
    request_id: str | None = None
    profile: ProcedureProfile | None = None
    challenge: bytes | None = None
    card_present: bool = False
    reader_ok: bool = True
    camera_ok: bool = True
    link_up: bool = True
    queued: int = 0
    awaiting_receipt: int = 0
    receipt_overdue: bool = False
    outbox_full: bool = False
    storage_full: bool = False
    clock_synchronised: bool = True
    indicator: Indicator = Indicator.READY


_WAITING_TIMEOUT: dict[State, str] = {
    State.WAIT_CARD: "wait_for_card",
    State.WAIT_KEY: "wait_for_key",
    State.READING: "reading",
    State.HOLD_STILL: "hold_still",
    State.VERIFYING: "verifying",
    State.RESULT_OK: "show_result",
    State.RESULT_UNPROVEN: "show_result",
    State.RESULT_FAILED: "show_result",
}


#: The worker ends a read at ``timeouts.reading`` itself and says why (the PC/SC driver gives up even on a chip that
#: never answers); the machine's own READING deadline is only the backstop for a worker that never reports, so it comes
#: this much later and the office hears the worker's typed reason (``ReadDeadlineError``), not ``reading_timeout``.
READ_REPORT_GRACE = 2.0


def max_timeout(timeouts: TimeoutConfig) -> float:
    return max(float(getattr(timeouts, name)) for name in _WAITING_TIMEOUT.values()) + READ_REPORT_GRACE


def indicator_for(snap: Snapshot) -> Indicator:
    if snap.state is State.FAULT:
        return Indicator.FAULT
    if snap.state is State.READY:
        if snap.outbox_full or snap.storage_full:
            return Indicator.FAULT
        # Results not safe at the office yet, and not getting there: the broker is out of reach, or it is reachable
        # but the office has answered none of several publishes of a result (its gateway is down).
        if (not snap.link_up and (snap.queued or snap.awaiting_receipt)) or snap.receipt_overdue:
            return Indicator.OFFLINE_QUEUED
        return Indicator.READY if snap.clock_synchronised else Indicator.CLOCK_UNSYNCHRONISED
    return {
        State.HOLD_STILL: Indicator.HOLD_STILL,
        State.RESULT_OK: Indicator.SUCCESS,
        State.RESULT_UNPROVEN: Indicator.UNPROVEN,
        State.RESULT_FAILED: Indicator.FAILURE,
    }.get(snap.state, Indicator.SCANNING)


def _same_card_again(snap: Snapshot, event: KeyOffered) -> bool:
    """The QR of the card the terminal is busy with (reading it, or showing its result), still in view: the scanner
    offers it again every ``camera.qr_repeat_after``, which interrupts nothing, so it reports no "busy" each time.
    An office request always learns why it did nothing; another card's QR is an interruption."""
    return event.request_id is None and snap.key is not None and event.key.access == snap.key.access


Handler = Callable[["Machine", Snapshot, Event], tuple[Snapshot, list[Action]]]


class Machine:
    """``step(snapshot, event) -> (snapshot, actions)``; no I/O, no clock, no hidden state."""

    def __init__(self, timeouts: TimeoutConfig) -> None:
        self.timeouts = timeouts

    # helpers -------------------------------------------------------------------------------------------------

    def _enter(self, snap: Snapshot, state: State, now: float, **changes: object) -> Snapshot:
        timeout = _WAITING_TIMEOUT.get(state)
        grace = READ_REPORT_GRACE if state is State.READING else 0.0
        deadline = now + float(getattr(self.timeouts, timeout)) + grace if timeout else None
        if state in (State.READY, State.FAULT):
            changes = {"key": None, "request_id": None, "profile": None, "challenge": None, **changes}
        return replace(snap, state=state, deadline=deadline, **changes)  # type: ignore[arg-type]

    def _start_read(self, snap: Snapshot, now: float) -> tuple[Snapshot, list[Action]]:
        assert snap.key is not None  # a read starts only once a key was offered
        attempt = snap.attempt + 1
        nxt = self._enter(snap, State.READING, now, attempt=attempt)
        return nxt, [StartRead(attempt, snap.key, snap.request_id, snap.profile, snap.challenge)]

    def _fail(self, snap: Snapshot, now: float, reason: str, *, abort: bool) -> tuple[Snapshot, list[Action]]:
        actions: list[Action] = [AbortRead(snap.attempt)] if abort else []
        actions.append(Report("read_failed", reason, snap.request_id))
        return self._enter(snap, State.RESULT_FAILED, now), actions

    def _refused(self, snap: Snapshot) -> str | None:
        if snap.outbox_full:
            return "outbox_full"
        if snap.storage_full:
            return "storage_full"
        return None

    # handlers ------------------------------------------------------------------------------------------------

    def _key_offered(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        assert isinstance(event, KeyOffered)
        refused = self._refused(snap)
        if refused:
            return snap, [Report("read_refused", refused, event.request_id)]
        snap = replace(snap, key=event.key, request_id=event.request_id, profile=event.profile,
                       challenge=event.challenge)
        if snap.card_present:
            return self._start_read(snap, event.now)
        return self._enter(snap, State.WAIT_CARD, event.now), []

    def _qr_rejected(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        assert isinstance(event, QrRejected)
        # The failure pattern for the result time, then ready again (a card on the reader is kept as a fact).
        return self._enter(snap, State.RESULT_FAILED, event.now), [Report("qr_rejected", event.reason)]

    def _card_inserted(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        snap = replace(snap, card_present=True)
        if snap.state is State.READY:
            refused = self._refused(snap)
            if refused:
                return snap, [Report("read_refused", refused)]
            return self._enter(snap, State.WAIT_KEY, event.now), []
        if snap.state in (State.WAIT_CARD, State.HOLD_STILL):
            refused = self._refused(snap)  # the disk filled while the key waited for its card
            if refused:
                return self._enter(snap, State.READY, event.now), [Report("read_refused", refused, snap.request_id)]
            return self._start_read(snap, event.now)
        return snap, []

    def _card_removed(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        snap = replace(snap, card_present=False)
        if snap.state is State.WAIT_KEY:
            return self._enter(snap, State.READY, event.now), []
        if snap.state is State.READING:
            return self._enter(snap, State.HOLD_STILL, event.now), [AbortRead(snap.attempt),
                                                                      Report("card_removed", "mid-read")]
        return snap, []

    def _cancel(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        if snap.state in (State.READY, State.FAULT):
            return snap, []
        actions: list[Action] = [AbortRead(snap.attempt)] if snap.state in (State.READING, State.VERIFYING) else []
        actions.append(Report("cancelled", snap.state.value, snap.request_id))
        return self._enter(snap, State.READY, event.now), actions

    def _read_succeeded(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        assert isinstance(event, ReadSucceeded)
        if snap.state is not State.READING or event.attempt != snap.attempt:
            return snap, []
        assert snap.key is not None  # READING holds the key it was started with
        verify = StartVerify(snap.attempt, event.read, event.read_ms, snap.key, snap.request_id, snap.profile,
                             snap.challenge)
        return self._enter(snap, State.VERIFYING, event.now), [verify]

    def _read_failed(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        assert isinstance(event, ReadFailed)
        if snap.state is not State.READING or event.attempt != snap.attempt:
            return snap, []
        return self._fail(snap, event.now, event.reason, abort=False)

    def _verify_done(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        assert isinstance(event, VerifyDone)
        if snap.state is not State.VERIFYING or event.attempt != snap.attempt:
            return snap, []
        if event.storage_fault is not None:  # READY showing FAULT, reads refused until the disk has room
            snap = replace(snap, storage_full=True)
            return self._enter(snap, State.READY, event.now), [Report("storage_fault", event.storage_fault,
                                                                      snap.request_id)]
        state = State.RESULT_FAILED
        if event.ok:
            state = State.RESULT_OK if event.proven else State.RESULT_UNPROVEN
        return self._enter(snap, state, event.now), [Report("result", state.value, snap.request_id)]

    def _device(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        assert isinstance(event, DeviceChanged)
        field = "reader_ok" if event.device == "reader" else "camera_ok"
        snap = replace(snap, **{field: event.available})  # type: ignore[arg-type]
        healthy = snap.reader_ok and snap.camera_ok
        report = Report("device_back" if event.available else "device_lost", event.device)
        if not healthy and snap.state is not State.FAULT:
            abort: list[Action] = [AbortRead(snap.attempt)] if snap.state in (State.READING,
                                                                               State.VERIFYING) else []
            return self._enter(snap, State.FAULT, event.now), [*abort, report]
        if healthy and snap.state is State.FAULT:
            return self._enter(snap, State.READY, event.now), [report]
        return snap, [report]

    def _delivery(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        assert isinstance(event, DeliveryChanged)
        return replace(snap, link_up=event.link_up, queued=event.queued, outbox_full=event.outbox_full,
                       storage_full=event.storage_full, awaiting_receipt=event.awaiting_receipt,
                       receipt_overdue=event.receipt_overdue), []

    def _clock(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        assert isinstance(event, ClockChanged)
        return replace(snap, clock_synchronised=event.synchronised), []

    def _timeout(self, snap: Snapshot, now: float) -> tuple[Snapshot, list[Action]]:
        if snap.state in (State.RESULT_OK, State.RESULT_UNPROVEN, State.RESULT_FAILED):
            return self._enter(snap, State.READY, now), []
        if snap.state in (State.READING, State.VERIFYING, State.HOLD_STILL):
            reason = "card_removed" if snap.state is State.HOLD_STILL else f"{snap.state.value}_timeout"
            return self._fail(snap, now, reason, abort=snap.state is not State.HOLD_STILL)
        report = Report("timeout", snap.state.value, snap.request_id)
        return self._enter(snap, State.READY, now), [report]

    _HANDLERS: ClassVar[dict[type[Event], Handler]] = {
        KeyOffered: _key_offered,
        QrRejected: _qr_rejected,
        CardInserted: _card_inserted,
        CardRemoved: _card_removed,
        Cancel: _cancel,
        ReadSucceeded: _read_succeeded,
        ReadFailed: _read_failed,
        VerifyDone: _verify_done,
        DeviceChanged: _device,
        DeliveryChanged: _delivery,
        ClockChanged: _clock,
    }

    #: Which events each state acts on (others only update facts such as card presence, or are ignored).
    ACCEPTS: ClassVar[dict[State, frozenset[type[Event]]]] = {
        State.READY: frozenset({KeyOffered, QrRejected, CardInserted, CardRemoved}),
        State.WAIT_CARD: frozenset({KeyOffered, CardInserted, CardRemoved, Cancel}),
        State.WAIT_KEY: frozenset({KeyOffered, QrRejected, CardRemoved, Cancel}),
        State.READING: frozenset({CardRemoved, Cancel, ReadSucceeded, ReadFailed}),
        State.HOLD_STILL: frozenset({CardInserted, CardRemoved, Cancel}),
        State.VERIFYING: frozenset({CardRemoved, Cancel, VerifyDone}),
        State.RESULT_OK: frozenset({CardInserted, CardRemoved, Cancel}),
        State.RESULT_UNPROVEN: frozenset({CardInserted, CardRemoved, Cancel}),
        State.RESULT_FAILED: frozenset({CardInserted, CardRemoved, Cancel}),
        State.FAULT: frozenset({CardInserted, CardRemoved}),
    }

    def step(self, snap: Snapshot, event: Event) -> tuple[Snapshot, list[Action]]:
        actions: list[Action] = []
        if snap.deadline is not None and event.now >= snap.deadline:
            snap, actions = self._timeout(snap, event.now)
        kind = type(event)
        if kind in (DeviceChanged, DeliveryChanged, ClockChanged) or kind in self.ACCEPTS[snap.state]:
            snap, more = self._HANDLERS[kind](self, snap, event)
            actions += more
        elif isinstance(event, CardInserted | CardRemoved):  # only the fact changes
            snap = replace(snap, card_present=isinstance(event, CardInserted))
        elif isinstance(event, KeyOffered) and not _same_card_again(snap, event):
            actions.append(Report("busy", snap.state.value, event.request_id))  # why a request or QR did nothing
        indicator = indicator_for(snap)
        if indicator is not snap.indicator:
            snap = replace(snap, indicator=indicator)
            actions.append(ShowIndicator(indicator))
        return snap, actions
