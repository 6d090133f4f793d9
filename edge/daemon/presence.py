"""The reader thread: whether a card is on the reader (and which reader holds it), from PC/SC's reader changes, and
the PC/SC context it shares with the worker.

PC/SC serialises calls on one context, so the watcher steps aside (``SCardCancel``) while the worker talks to the
card (:meth:`ReaderWatcher.card_context`); the read itself reports a removal it runs into (:meth:`card_left`).

The reader's own LEDs (``[indicators] reader_leds``) are driven through that context too, so their commands go to
the watcher (:meth:`ReaderWatcher.send_to_reader`): it sends them between its waits, and while a read holds the
context they wait for its end (the read's APDUs go first; the states a read ends in are shown after it anyway).

The watcher also keeps the fact the QR-repeat policy needs (:mod:`edge.daemon.qr_camera`): whether the result for
the card now on the reader is already stored. It is cleared whenever the card changes.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from edge.daemon.state import CardInserted, CardRemoved, DeviceChanged
from edge.daemon.threads import Shared
from edge.drivers.base import CardPresence, CardReaderDriver, ReaderState
from edge.drivers.reader_leds import check_answer
from edge.errors import EdgeError
from edge.protocol.readers import READER_LED_CHANNEL, by_key

log = logging.getLogger(__name__)

#: Longest single PC/SC wait of the watcher: bounds how long the worker may wait for the context.
WATCH_SLICE = 0.25
#: Reader LED commands waiting for the context (a read's length of state changes; the oldest go first when full).
LED_QUEUE = 16


class ReaderWatcher:
    """Card and reader presence from ``reader`` (only ``reader_name`` when one is configured). ``reader_leds``:
    "auto" or a reader profile key when the reader's LEDs show the states (config ``indicators.reader_leds``)."""

    def __init__(self, shared: Shared, reader: CardReaderDriver, reader_name: str | None,
                 reader_leds: str | None = None) -> None:  # fmt: skip
        self._shared = shared
        self._reader = reader
        self._wanted = reader_name
        self._lock = threading.Lock()  # presence and the stored-result mark change together
        self._present = False
        self._present_reader: str | None = None
        self._card: tuple[str, int] | None = None  # (reader, its card-event count) of the card on the reader
        self._reader_available = True
        #: Set once a result for the card now on the reader is stored, cleared when that card leaves: a QR left in
        #: view fires again after ``camera.qr_repeat_after`` (a retry without lifting the card after a failed read),
        #: but a card whose result is already out must not produce a second one every 30 s.
        self._result_stored_for_card = False
        self._reading = threading.Event()
        self._pcsc_lock = threading.Lock()
        #: The profile the reader's LEDs are driven as; None: the attached reader's own (or no LEDs at all).
        self._led_profile = by_key(reader_leds) if reader_leds is not None and reader_leds != "auto" else None
        self._led_commands: deque[bytes] = deque(maxlen=LED_QUEUE)
        self._led_reader: str | None = None  # the attached reader LED commands go to
        self._leds_refused: str | None = None  # the reader whose profile has no driven LEDs (logged once)

    def run(self) -> None:
        """The thread body: the reader list once, then PC/SC's changes, each wait a slice long."""
        first = True
        while not self._shared.stopping.is_set():
            self._shared.liveness.beat("reader")
            if self._reading.is_set():  # the worker owns the PC/SC context now
                self._shared.stopping.wait(0.02)
                continue
            try:
                with self._pcsc_lock:
                    states = self._reader.readers() if first else self._reader.wait_for_change(WATCH_SLICE)
            except EdgeError as exc:  # the driver maps pcscd's trouble to NoReaderError itself; this is the rest
                log.warning("reader watch: %s", exc)
                states = []
                self._shared.stopping.wait(1.0)
            first = False
            if not self._shared.stopping.is_set():
                self._apply(states)
                self._send_led_commands()
            self._shared.mark_ready("reader")

    def send_to_reader(self, command: bytes) -> None:
        """Queue a reader LED command (any thread): sent by the watcher between its waits, after a running read."""
        self._led_commands.append(command)
        if not self._reading.is_set():
            self.cancel_wait()  # shown now, not after the watcher's slice

    def cancel_wait(self) -> None:
        """End the watcher's PC/SC wait now (the worker wants the context, or the terminal stops)."""
        self._reader.cancel()

    @contextmanager
    def card_context(self) -> Iterator[str | None]:
        """Hold the PC/SC context for a read: the watcher lets go of it (its waits are cancelled until the worker has
        it) and waits until the worker is done. Yields the reader that holds the card (None: not known yet)."""
        self._reading.set()
        while not self._pcsc_lock.acquire(timeout=0.02):
            self.cancel_wait()
        try:
            yield self._present_reader
        finally:
            self._pcsc_lock.release()
            self._reading.clear()

    def card_left(self) -> None:
        """The worker's read ran into the card's removal: say so before PC/SC's next change does."""
        self._card = None
        self._set_presence(False)

    def result_stored(self) -> None:
        """A result was stored: for the card on the reader, if one still is (a card pulled meanwhile cleared it)."""
        with self._lock:
            if self._present:
                self._result_stored_for_card = True

    def result_stored_for_card(self) -> bool:
        """Whether the card now on the reader already has its result out (a repeated QR then reads nothing)."""
        with self._lock:
            return self._result_stored_for_card

    def _send_led_commands(self) -> None:
        """Send the queued LED commands to the reader, if its profile (or the configured one) drives its LEDs."""
        name = self._led_reader
        while self._led_commands and not self._reading.is_set():
            command = self._led_commands.popleft()
            if name is None:
                continue  # no reader: the next state is shown once one is there
            try:
                with self._pcsc_lock:
                    profile = self._led_profile or self._reader.profile(name)
                    if profile.indicator_channel != READER_LED_CHANNEL:
                        if self._leds_refused != name:
                            self._leds_refused = name
                            log.info("reader %s (%s): no LEDs the terminal drives", name, profile.model)
                        continue
                    present = name == self._present_reader  # the watch's own view: no change taken from it
                    check_answer(self._reader.escape(name, command, card_present=present))
            except EdgeError as exc:  # an indicator never stops the terminal
                log.warning("reader LEDs: %s", exc)

    def _apply(self, states: Sequence[ReaderState]) -> None:
        relevant = [state for state in states if self._wanted is None or state.name == self._wanted]
        available = any(state.presence is not CardPresence.NO_READER for state in relevant)
        holding = [state.name for state in relevant if state.presence is CardPresence.PRESENT]
        if available != self._reader_available:
            self._reader_available = available
            log.warning("card reader %s", "back" if available else "lost")
            self._shared.post(DeviceChanged(self._shared.monotonic(), "reader", available))
        holder = next((state for state in relevant if state.presence is CardPresence.PRESENT), None)
        self._present_reader = holder.name if holder else None
        attached = [state.name for state in relevant if state.presence is not CardPresence.NO_READER]
        self._led_reader = self._present_reader or (attached[0] if attached else None)
        card = (holder.name, holder.card_events) if holder else None
        if card is not None and self._card is not None and card != self._card and self._present:
            # Another card, or the same one lifted and put back, between two looks: its result is not this one's.
            log.info("the card on the reader changed between two looks")
            self._set_presence(False)
        self._card = card
        self._set_presence(bool(holding))

    def _set_presence(self, present: bool) -> None:
        with self._lock:
            if present == self._present:
                return
            self._present = present
            self._result_stored_for_card = False  # any change: a new card, or none
        now = self._shared.monotonic()
        self._shared.post(CardInserted(now) if present else CardRemoved(now))
