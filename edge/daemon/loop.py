"""The loop thread: the ONLY thread that steps :class:`~edge.daemon.state.Machine`. Every other thread posts typed
items to one queue (:mod:`edge.daemon.threads`); a quiet queue yields a :class:`~edge.daemon.state.Tick` so
deadlines fire. One owner means no lock around the snapshot, and the order of events is the order the machine sees.

The loop carries out the machine's actions (jobs to the worker, LEDs, ``/event``), feeds it the facts it decides
on (delivery and storage, whether the time is trusted), applies verified office commands, and publishes the
status when it changes.
"""

from __future__ import annotations

import logging
import queue
from typing import Any

from edge.daemon.clock import ClockState
from edge.daemon.mqtt import ResultPublisher
from edge.daemon.office_commands import CommandVerifier
from edge.daemon.result_store import ResultStore
from edge.daemon.state import (
    AbortRead,
    Action,
    Cancel,
    CardInserted,
    ClockChanged,
    Event,
    KeyOffered,
    Machine,
    Report,
    ShowIndicator,
    Snapshot,
    StartRead,
    StartVerify,
    Tick,
)
from edge.daemon.tap import key_from_command
from edge.daemon.threads import TICK_SECONDS, CommandArrived, DeliveryNews, LoopItem, Shared
from edge.daemon.trust import TerminalTrust
from edge.daemon.worker import Worker
from edge.drivers.reader_leds import IndicatorBackend
from edge.errors import CommandRejectedError, StorageError
from edge.logsetup import log_unexpected
from edge.protocol.commands import CancelCommand, PingCommand, ReadCommand

log = logging.getLogger(__name__)

#: How often the loop looks at the free space while idle (and always just before a read starts).
STORAGE_CHECK_SECONDS = 1.0
#: How often the loop asks whether the time is trusted (one adjtimex call; a change shows on READY and /event).
CLOCK_CHECK_SECONDS = 1.0


class TerminalLoop:
    """The machine and everything it acts through; :attr:`snapshot` is the machine's state (read it, never step it
    from another thread)."""

    def __init__(self, shared: Shared, machine: Machine, *, worker: Worker, results: ResultStore,
                 publisher: ResultPublisher, indicators: IndicatorBackend, clock: ClockState, trust: TerminalTrust,
                 commands: CommandVerifier | None) -> None:  # fmt: skip
        self._shared = shared
        self._machine = machine
        self._worker = worker
        self._results = results
        self._publisher = publisher
        self._indicators = indicators
        self._clock = clock
        self._trust = trust
        self._commands = commands
        self.snapshot = Snapshot()
        self._storage_checked = float("-inf")
        self._clock_checked = float("-inf")
        self._clock_facts: tuple[bool, str] | None = None  # (synchronised, source) as last shown
        self._last_status: dict[str, Any] = {}

    def run(self) -> None:
        """The thread body: one item at a time; one bad item must not stop the terminal."""
        while not self._shared.stopping.is_set():
            self._shared.liveness.beat("loop")
            self._shared.mark_ready("loop")
            try:
                item: LoopItem = self._shared.loop_items.get(timeout=TICK_SECONDS)
            except queue.Empty:
                item = Tick(self._shared.monotonic())
            try:
                self._watch_clock()
                self._handle(item)
            except Exception as exc:  # noqa: BLE001  # one bad event must not stop the terminal
                log_unexpected(log, "terminal loop failed on %s", exc, type(item).__name__)
                self._shared.count("loop_errors")

    def _handle(self, item: LoopItem) -> None:
        if isinstance(item, CommandArrived):
            self._command(item)
        elif isinstance(item, DeliveryNews):
            self._dispatch(self._results.delivery_facts(self._shared.monotonic()))
        else:
            self._dispatch(item)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, KeyOffered | CardInserted) or (
                isinstance(event, Tick) and event.now - self._storage_checked >= STORAGE_CHECK_SECONDS):
            self._check_storage(event.now)
        self.snapshot, actions = self._machine.step(self.snapshot, event)
        for action in actions:
            self.carry_out(action)
        self._publish_status()

    def carry_out(self, action: Action) -> None:
        if isinstance(action, StartRead | StartVerify):
            self._worker.submit(action)
        elif isinstance(action, AbortRead):
            self._worker.abort(action.attempt)
        elif isinstance(action, ShowIndicator):
            self._indicators.show(action.indicator.value)
        elif isinstance(action, Report):
            self._shared.count(f"report_{action.name}")
            if action.name in ("read_failed", "read_refused"):
                self._shared.last_error = f"{action.name}: {action.detail}"
            log.info("event %s %s", action.name, action.detail)
            self._shared.event({"event": action.name, "detail": action.detail, "request_id": action.request_id})

    def _check_storage(self, now: float) -> None:
        """Before a read can start (and every second while idle): a full disk is refused with FAULT before the card
        is read, and READY returns by itself when space does."""
        self._storage_checked = now
        if self._results.storage_full() != self.snapshot.storage_full:
            self._dispatch(self._results.delivery_facts(now))

    def _watch_clock(self) -> None:
        """At most every :data:`CLOCK_CHECK_SECONDS`: whether the time is trusted, and from what, goes to the machine
        (READY shows it), to ``/event`` and to the status when it changes."""
        now = self._shared.monotonic()
        if now - self._clock_checked < CLOCK_CHECK_SECONDS:
            return
        self._clock_checked = now
        evidence = self._clock.evidence()
        facts = (evidence.synchronised, evidence.source)
        if facts == self._clock_facts:
            return
        self._clock_facts = facts
        floor = evidence.floor.isoformat() if evidence.floor is not None else None
        if evidence.synchronised:
            log.info("clock synchronised (%s)", evidence.source)
        else:
            log.warning("clock not synchronised: date checks are not performed until NTP or the office gives the "
                        "time (floor %s)", floor)  # fmt: skip
        self._shared.event({"event": "clock_synchronised" if evidence.synchronised else "clock_not_synchronised",
                            "source": evidence.source, "floor": floor})  # fmt: skip
        self._dispatch(ClockChanged(now, evidence.synchronised))

    def _publish_status(self) -> None:
        snap = self.snapshot
        status: dict[str, Any] = {
            "terminal_state": snap.state.value,
            "indicator": snap.indicator.value,
            "reader": "ok" if snap.reader_ok else "missing",
            "camera": "ok" if snap.camera_ok else "missing",
            "queued": snap.queued,
            "awaiting_receipt": snap.awaiting_receipt,
            "outbox_full": snap.outbox_full,
            "storage_full": snap.storage_full,
            "held": self._results.held,
            "last_error": self._shared.last_error,
        }
        if self._clock_facts is not None:
            status["clock"] = {"synchronised": self._clock_facts[0], "source": self._clock_facts[1]}
        if status != self._last_status:
            self._last_status = status
            self._publisher.set_status(**status)

    def _command(self, item: CommandArrived) -> None:
        """An office command: verified (a refusal says why on ``/event``), its signed time offered to the clock,
        then applied."""
        try:
            if self._commands is None:
                raise CommandRejectedError("unknown_key", "no ward command key is configured")
            command = self._commands.verify(item.payload, self._clock.evidence())
        except CommandRejectedError as exc:
            self._shared.count("commands_rejected")
            log.warning("office command rejected: %s", exc.reason)
            self._shared.event({"event": "command_rejected", "reason": exc.reason, "jti": exc.jti})
            return
        except StorageError as exc:  # its jti cannot be remembered (a replay could not be refused): not accepted
            self._shared.count("commands_rejected")
            log.warning("office command not accepted: %s", exc)
            self._shared.event({"event": "command_rejected", "reason": "storage", "jti": None})
            return
        self._shared.count("commands_accepted")
        if self._clock.observe_office_time(command.iat, item.arrived):
            self._clock_checked = float("-inf")  # show it now, not at the next check
            self._watch_clock()
        now = self._shared.monotonic()
        if isinstance(command, ReadCommand):
            self._shared.event({"event": "command_accepted", "cmd": command.cmd, "jti": command.jti})
            self._dispatch(KeyOffered(now, key_from_command(command), command.jti, command.profile,
                                      command.challenge_bytes))  # fmt: skip
        elif isinstance(command, CancelCommand):
            self._shared.event({"event": "command_accepted", "cmd": command.cmd, "jti": command.jti})
            self._dispatch(Cancel(now))
        elif isinstance(command, PingCommand):
            self._shared.event({"event": "pong", "jti": command.jti, "state": self.snapshot.state.value})
        else:
            self._trust.update(command, int(self._clock.now().timestamp()))
