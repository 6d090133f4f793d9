"""PC/SC card readers through pyscard's low-level ``smartcard.scard`` API (the only importer of ``smartcard``).

The low-level API is used because the terminal must own its context's life: pcscd restarts (upgrades, crashes)
and readers vanish (USB unplugged), and a long-running daemon must notice, report :class:`NoReaderError` meanwhile,
and re-establish its context when pcscd is back, without being restarted itself. A connection is a transport: one
command, one answer, as the card gave it; 61xx and 6Cxx are followed up by the protocol's response-chaining link
(:class:`edge.protocol.chaining.ResponseChaining`), which ``read_chip`` puts at the bottom of its chain.

Each reader gets its profile (:mod:`edge.protocol.readers`, by name or by the USB id that PC/SC part 10's TLV
properties report) and a :class:`ReaderLink`, kept per reader for as long as the driver lives: what the reader
was found to carry. An exchange the reader fails while the card stays on it (SCARD_E_NOT_TRANSACTED, or an answer
without a status word) is a :class:`~edge.errors.TransportFailedError` that says, from the profile and the
command's size, whether the chip saw the command; an extended APDU failing so makes the link short-only for good,
so the read and every later read on that reader go on with short APDUs (``read_strategy`` and ``sm`` do the rest).

A timeout is a :class:`CardTimeoutError` only where one genuinely happens: :meth:`PcscReaderDriver.wait_for_card`
reaching its deadline, or PC/SC reporting SCARD_E_TIMEOUT for an exchange with the card still there (one whose card
has gone is a removal). A wait for events that merely times out is normal and returns the states.

A connection opened with a ``time_limit`` (the read's deadline) ends in :class:`ReadDeadlineError` at that deadline
even when the chip never answers an APDU (or asks the reader for more time without end): SCardTransmit blocks until
the card answers or leaves, so such a connection makes its PC/SC calls on a thread of its own (one per connection,
reused for every APDU) and stops waiting at the deadline. The stuck call cannot be cancelled, and pcsc-lite (1.9.9,
measured) holds its context's lock for the whole call and takes that lock while holding the library's global lock:
any other call on the stuck context (the reader watch's SCardGetStatusChange included) would freeze every PC/SC call
of the process until the card leaves. So such a connection establishes a PC/SC context of its own, on its thread,
which nothing else uses, and at the deadline abandons it untouched; the driver's context keeps watching the readers,
and a connection to the same reader waits until the stuck call returns, which it does when the card leaves the
reader. The connection's thread then disconnects and releases the abandoned context and ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from smartcard import scard

from edge.drivers.base import CardPresence, ReaderState
from edge.errors import (
    CardRemovedError,
    CardTimeoutError,
    NoCardError,
    NoReaderError,
    ReadDeadlineError,
    ReaderError,
    TransmitError,
    TransportFailedError,
)
from edge.protocol.apdu import LE_MAX_SHORT, CommandApdu, ResponseApdu
from edge.protocol.readers import ReaderProfile, by_key, profile_for

log = logging.getLogger(__name__)

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
#: How long to let pcscd notice a removal after an exchange came back empty (its reader polling is ~0.4 s).
REMOVAL_SETTLE_SECONDS = 0.8


def _code(hresult: int) -> int:
    return hresult & 0xFFFFFFFF


_CARD_GONE = {_code(c) for c in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_UNPOWERED_CARD)}
_SERVICE_GONE = {
    _code(c)
    for c in (
        scard.SCARD_E_NO_SERVICE,
        scard.SCARD_E_SERVICE_STOPPED,
        scard.SCARD_E_INVALID_HANDLE,
        scard.SCARD_F_COMM_ERROR,
    )
}
_READER_GONE = {
    _code(c)
    for c in (scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_NO_READERS_AVAILABLE)
}
_TIMEOUT = _code(scard.SCARD_E_TIMEOUT)
#: An exchange that ended without an answer: a removal if the card is gone, else reader or chip trouble.
_EXCHANGE_FAILED = {_code(c) for c in (scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_E_COMM_DATA_LOST)} | {_TIMEOUT}
#: What the support desk can do about a card that stays on the reader but does not answer in time.
SLOW_CARD_HINT = (
    "keep the card flat and still on the reader and retry; if other cards time out too, reconnect the reader, "
    "if only this one does, its chip may be damaged"
)
_CANCELLED = _code(scard.SCARD_E_CANCELLED)
_RESET = _code(scard.SCARD_W_RESET_CARD)
#: PC/SC part 10: CM_IOCTL_GET_FEATURE_REQUEST, the FEATURE_GET_TLV_PROPERTIES tag and the properties read from it.
_GET_FEATURE_REQUEST = scard.SCARD_CTL_CODE(3400)
_FEATURE_GET_TLV_PROPERTIES = 0x12
_PROPERTY_MAX_APDU_DATA_SIZE = 0x0A
_PROPERTY_ID_VENDOR = 0x0B
_PROPERTY_ID_PRODUCT = 0x0C
#: IOCTL_CCID_ESCAPE as libccid and ACS's driver define it on Unix (SCARD_CTL_CODE(3500)).
_CCID_ESCAPE = scard.SCARD_CTL_CODE(3500)
_STATE_CHANGED = scard.SCARD_STATE_CHANGED
#: SCardStatus card state bits (pcsc-lite's SCARD_ABSENT/SCARD_PRESENT; pyscard does not export them).
_STATUS_PRESENT = 0x0004


def _describe(hresult: int) -> str:
    try:
        text = scard.SCardGetErrorMessage(hresult)
    except (TypeError, ValueError, OverflowError):
        text = "unknown"
    return f"0x{_code(hresult):08X} ({text})"


def _card_events(event_state: int) -> int:
    """pcsc-lite's count of card insertions and removals on a reader, kept in dwEventState's upper word."""
    return (event_state >> 16) & 0xFFFF


def _presence(event_state: int) -> CardPresence:
    if event_state & (scard.SCARD_STATE_UNAVAILABLE | scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_IGNORE):
        return CardPresence.NO_READER
    if event_state & scard.SCARD_STATE_PRESENT:
        return CardPresence.PRESENT
    return CardPresence.ABSENT


@dataclass(slots=True)
class ReaderLink:
    """What one reader was found to carry, kept per reader by the driver (mutable on purpose: it is learned).

    Starts from the profile (extended length unless the profile says none; a probed profile tries it once) and from
    PC/SC part 10's dwMaxAPDUDataSize where the driver reports one (0: short only); ``extended`` turns False and
    ``max_command`` shrinks for good after a command failed at the transport. An answer the reader lost is stepped
    around by the read itself (``read_strategy``: a smaller Le).
    """

    profile: ReaderProfile
    extended: bool
    max_command: int
    max_response: int

    @classmethod
    def starting(cls, profile: ReaderProfile, max_apdu_data: int | None) -> ReaderLink:
        extended = profile.extended_length is not False and max_apdu_data != 0
        return cls(profile, extended, profile.command_limit, profile.response_limit)

    def describe(self) -> str:
        return "extended length" if self.extended else "short APDUs only"


_T = TypeVar("_T")


def _new_context() -> int:
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise NoReaderError(f"pcscd is not reachable: {_describe(hresult)}")
    return int(context)


class _Stuck(Exception):
    """A call on a connection's thread outlived the deadline (private: turned into :class:`ReadDeadlineError`)."""


@dataclass(slots=True, eq=False)
class _Call(Generic[_T]):
    """One PC/SC call handed to a :class:`_CallThread`; ``lock`` decides between its end and its abandonment."""

    run: Callable[[], _T]
    on_abandon: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    result: _T | None = None
    error: BaseException | None = None
    finished: bool = False
    abandoned: bool = False


class _CallThread:
    """The one thread a time-limited connection makes its PC/SC calls on, so its caller can stop waiting at the
    deadline (see the module docstring). A daemon thread: a call stuck on a chip must not hold up the process's exit."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, run: Callable[[], _T], deadline: float, on_abandon: Callable[[], None]) -> _T:
        """``run()``'s result, or :class:`_Stuck` once the monotonic ``deadline`` passes first; the thread then runs
        ``on_abandon`` after ``run`` returns at last, and ends."""
        call: _Call[_T] = _Call(run, on_abandon)
        self._calls.put(call)
        if not call.done.wait(max(0.0, deadline - time.monotonic())):
            with call.lock:
                call.abandoned = not call.finished
            if call.abandoned:
                raise _Stuck
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]  # set whenever error is not

    def stop(self) -> None:
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                call.result = call.run()
            except BaseException as exc:  # noqa: BLE001  # handed to the caller, who raises it
                call.error = exc
            with call.lock:
                call.finished = True
            call.done.set()
            if call.abandoned:
                call.on_abandon()
                return


class PcscReaderDriver:
    """:class:`~edge.drivers.base.CardReaderDriver` over pcscd; survives pcscd restarts and readers vanishing.

    ``extended_length`` False keeps every reader to short APDUs whatever its profile says. ``reader_profile``
    names the profile (:func:`edge.protocol.readers.by_key`) of a reader whose name does not tell it (and lets the
    test stack run a vpcd reader as a given model). ``reader_filter`` keeps only readers whose name contains it.
    """

    def __init__(self, *, extended_length: bool = True, reader_filter: str = "", poll_interval: float = 0.1,
                 reader_profile: str | None = None) -> None:  # fmt: skip
        self.extended_length = extended_length
        self.reader_filter = reader_filter
        self.poll_interval = poll_interval
        self.forced_profile = by_key(reader_profile) if reader_profile is not None else None
        self._context: int | None = None
        self._lock = threading.Lock()
        self._known: dict[str, int] = {}  # reader -> last event state (event counter in the high word)
        self._reader_count = 0
        self._links: dict[str, ReaderLink] = {}  # reader name -> what it was found to carry

    # --- context -----------------------------------------------------------------------------------------------

    def _ensure_context(self) -> int:
        with self._lock:
            if self._context is not None:
                return self._context
            self._context = _new_context()
            self._known.clear()
            log.debug("PC/SC context established")
            return self._context

    def _release(self) -> bool:
        with self._lock:
            context, self._context = self._context, None
            self._known.clear()
        if context is None:
            return False
        scard.SCardReleaseContext(context)
        return True

    def _drop_context(self) -> None:
        """Forget a context pcscd no longer knows (it restarted or stopped); the next call re-establishes one."""
        if self._release():
            log.info("PC/SC context lost (pcscd stopped or restarted); will re-establish")

    def close(self) -> None:
        self._release()

    def cancel(self) -> None:
        """Wake a :meth:`wait_for_change` blocked in another thread."""
        context = self._context
        if context is not None:
            scard.SCardCancel(context)

    def error_for(self, hresult: int, doing: str) -> ReaderError:
        """Map a PC/SC error to the error tree; drops the context when pcscd is gone."""
        code = _code(hresult)
        text = f"{doing}: {_describe(hresult)}"
        if code in _SERVICE_GONE:
            self._drop_context()
            return NoReaderError(text)
        if code in _READER_GONE:
            return NoReaderError(text)
        if code in _CARD_GONE:
            return NoCardError(text)
        if code == _TIMEOUT:
            return CardTimeoutError(f"{text}: no answer in time", hint=SLOW_CARD_HINT)
        return TransmitError(text)

    # --- readers and their state -------------------------------------------------------------------------------

    def _reader_names(self, context: int) -> list[str]:
        hresult, names = scard.SCardListReaders(context, [])
        if _code(hresult) in _READER_GONE or (hresult == scard.SCARD_S_SUCCESS and not names):
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise self.error_for(hresult, "listing readers")
        return [str(name) for name in names if self.reader_filter in name]

    def _query(self, timeout: float) -> list[ReaderState] | None:
        """One SCardGetStatusChange against the known states; None on timeout (nothing changed)."""
        context = self._ensure_context()
        names = self._reader_names(context)
        if not names:
            self._known.clear()
        if set(names) != set(self._known):  # a reader came or went: take a fresh baseline first
            timeout = 0.0
        self._reader_count = len(names)
        states: list[tuple[str, int]] = [(name, self._known.get(name, scard.SCARD_STATE_UNAWARE)) for name in names]
        states.append((PNP_NOTIFICATION, len(names) << 16))
        hresult, new_states = scard.SCardGetStatusChange(context, int(timeout * 1000), states)
        code = _code(hresult)
        if code in (_TIMEOUT, _CANCELLED):
            return None
        if code in _READER_GONE:
            self._known.clear()
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise self.error_for(hresult, "waiting for card events")
        result = []
        self._known = {}
        for name, event_state, atr in new_states:
            if name == PNP_NOTIFICATION:
                continue
            self._known[name] = event_state & ~_STATE_CHANGED
            result.append(ReaderState(name, _presence(event_state), bytes(atr), _card_events(event_state)))
        return result

    def _current(self) -> list[ReaderState]:
        states = self._query(0.0)
        if states is None:  # unchanged since the last call: report what we know
            return [ReaderState(name, _presence(state), card_events=_card_events(state))
                    for name, state in self._known.items()]
        return states

    def readers(self) -> Sequence[ReaderState]:
        """Current readers and card states; empty while pcscd or the readers are gone."""
        for _attempt in range(2):  # a context that died with an old pcscd is replaced once, right away
            had_context = self._context is not None
            try:
                self._known.clear()  # ask afresh: the caller wants the ATRs too
                return self._current()
            except NoReaderError:
                if not had_context or self._context is not None:
                    break
        return []

    def wait_for_change(self, timeout: float) -> Sequence[ReaderState]:
        """Block until a card or reader changes or ``timeout`` passes; while pcscd is down, poll for its return."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not self._known and self._context is not None:
                    self._current()  # baseline, so the wait below reports a real change
                remaining = max(0.0, deadline - time.monotonic())
                states = self._query(remaining)
                if states is not None:
                    return states
                return [ReaderState(name, _presence(state), card_events=_card_events(state))
                        for name, state in self._known.items()]
            except NoReaderError:
                if self._context is None and time.monotonic() < deadline:
                    time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
                    if self._try_reconnect():
                        return self._current()
                    continue
                return []

    def _try_reconnect(self) -> bool:
        try:
            context = self._ensure_context()
            return bool(self._reader_names(context))
        except NoReaderError:
            return False

    def wait_for_card(self, timeout: float, reader_name: str | None = None) -> ReaderState:
        """The state of ``reader_name`` (or of the first reader) once it holds a card, waiting up to ``timeout``
        seconds for one to be placed. Raises :class:`CardTimeoutError` at the deadline, or :class:`NoReaderError`
        when the reader is not there at all (no card could have come)."""
        deadline = time.monotonic() + timeout
        states = self.readers()
        while True:
            watched = [state for state in states if reader_name in (None, state.name)]
            present = next((state for state in watched if state.presence is CardPresence.PRESENT), None)
            if present is not None:
                return present
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if not watched:
                    raise NoReaderError(f"no card reader {reader_name or 'attached'}")
                raise CardTimeoutError(
                    f"no card was placed on {reader_name or 'any reader'} within {timeout:g} s",
                    hint="place the card flat on the reader and leave it there until the light turns green",
                )
            states = self.wait_for_change(remaining)

    # --- connecting --------------------------------------------------------------------------------------------

    def connect(self, reader_name: str | None = None, *, time_limit: float | None = None) -> PcscConnection:
        """Connect (shared, T=0 or T=1) to the card on ``reader_name`` or on the first reader holding a card. With
        ``time_limit`` (seconds), connecting and every exchange end in :class:`ReadDeadlineError` once it has passed,
        however long the card or the reader keeps a call (see the module docstring)."""
        deadline = time.monotonic() + time_limit if time_limit is not None else None
        context = self._ensure_context()
        if reader_name is None:
            present = [state.name for state in self.readers() if state.presence is CardPresence.PRESENT]
            if not present:
                if not self._reader_names(context):
                    raise NoReaderError("no card reader attached")
                raise NoCardError("no card on any reader")
            reader_name = present[0]
        name = reader_name
        if deadline is None:
            handle, protocol, atr, link = self._open(context, name)
            return PcscConnection(self, handle, protocol, name, atr, link)
        calls = _CallThread(f"pcsc-{name}")
        opened: list[int] = []  # its own context, then its handle: what an abandoned connect leaves to the thread

        def open_own() -> tuple[int, int, int, bytes, ReaderLink]:
            own = _new_context()
            opened.append(own)
            try:
                return (own, *self._open(own, name, opened))
            except BaseException:
                opened.clear()  # _open disconnected what it opened
                scard.SCardReleaseContext(own)
                raise

        def abandoned() -> None:
            if len(opened) > 1:
                scard.SCardDisconnect(opened[1], scard.SCARD_LEAVE_CARD)
            if opened:
                scard.SCardReleaseContext(opened[0])

        try:
            own, handle, protocol, atr, link = calls.call(open_own, deadline, abandoned)
        except _Stuck:
            log.warning("PC/SC connect abandoned: it outlived the read's deadline")
            raise ReadDeadlineError(f"connecting to {name}: no answer within the read's deadline") from None
        except BaseException:
            calls.stop()
            raise
        return PcscConnection(self, handle, protocol, name, atr, link, context=own, deadline=deadline, calls=calls)

    def _open(self, context: int, reader_name: str,
              opened: list[int] | None = None) -> tuple[int, int, bytes, ReaderLink]:  # fmt: skip
        """SCardConnect, the ATR and the reader's link: (handle, protocol, ATR, link)."""
        hresult, handle, protocol = scard.SCardConnect(
            context, reader_name, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        if hresult != scard.SCARD_S_SUCCESS:
            raise self.error_for(hresult, f"connecting to {reader_name}")
        if opened is not None:
            opened.append(handle)
        hresult, _reader, _state, _protocol, atr = scard.SCardStatus(handle)
        if hresult != scard.SCARD_S_SUCCESS:
            scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
            raise self.error_for(hresult, f"reading the ATR on {reader_name}")
        return handle, protocol, bytes(atr), self.link(reader_name, handle)

    # --- reader profiles ---------------------------------------------------------------------------------------

    def link(self, reader_name: str, handle: int | None = None) -> ReaderLink:
        """The reader's :class:`ReaderLink`, made on first use from its profile (and TLV properties via
        ``handle``, when given) and kept while the driver lives."""
        link = self._links.get(reader_name)
        if link is None:
            properties = tlv_properties(handle) if handle is not None else {}
            vendor, product = properties.get(_PROPERTY_ID_VENDOR), properties.get(_PROPERTY_ID_PRODUCT)
            usb_id = (vendor, product) if vendor is not None and product is not None else None
            profile = self.forced_profile or profile_for(reader_name, usb_id)
            link = ReaderLink.starting(profile, properties.get(_PROPERTY_MAX_APDU_DATA_SIZE))
            if not self.extended_length:
                link.extended = False
            self._links[reader_name] = link
            log.info("reader %s: profile %s, %s", reader_name, profile.key, link.describe())
        return link

    def escape(self, reader_name: str, command: bytes, *, card_present: bool | None = None) -> bytes:
        """Send a reader command (a pseudo-APDU such as ACS's ``FF 00 40``, which the reader answers itself) and
        return the answer: through ``SCardTransmit`` while a card lies on the reader (the card's state is left as it
        is), else on a direct connection through ``SCardControl`` with the CCID escape code. ``card_present``: what
        the caller's watch knows (None: looked up, which takes a change from the next :meth:`wait_for_change`)."""
        context = self._ensure_context()
        present = card_present if card_present is not None else any(
            s.name == reader_name and s.presence is CardPresence.PRESENT for s in self._current())  # fmt: skip
        share = scard.SCARD_SHARE_SHARED if present else scard.SCARD_SHARE_DIRECT
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1 if present else 0
        hresult, handle, protocol = scard.SCardConnect(context, reader_name, share, protocols)
        if hresult != scard.SCARD_S_SUCCESS:
            raise self.error_for(hresult, f"opening {reader_name} for a reader command")
        try:
            if present:
                pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
                hresult, answer = scard.SCardTransmit(handle, pci, list(command))
            else:
                hresult, answer = scard.SCardControl(handle, _CCID_ESCAPE, list(command))
            if hresult != scard.SCARD_S_SUCCESS:
                raise self.error_for(hresult, f"sending a reader command to {reader_name}")
            return bytes(answer)
        finally:
            scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)

    def profile(self, reader_name: str) -> ReaderProfile:
        """The profile the driver uses (or would use) for ``reader_name``."""
        link = self._links.get(reader_name)
        if link is not None:
            return link.profile
        return self.forced_profile or profile_for(reader_name)


def tlv_properties(handle: int) -> dict[int, int]:
    """PC/SC part 10 TLV properties of the reader behind ``handle`` (dwMaxAPDUDataSize, wIdVendor, wIdProduct...);
    empty when the driver reports none. Best effort: nothing here may fail a connect."""
    hresult, features = scard.SCardControl(handle, _GET_FEATURE_REQUEST, [])
    if hresult != scard.SCARD_S_SUCCESS:
        return {}
    raw, code = bytes(features), None
    for pos in range(0, len(raw) - 5, 6):  # tag, length 4, big-endian control code
        if raw[pos] == _FEATURE_GET_TLV_PROPERTIES and raw[pos + 1] == 4:
            code = int.from_bytes(raw[pos + 2 : pos + 6], "big")
    if code is None:
        return {}
    hresult, answer = scard.SCardControl(handle, code, [])
    if hresult != scard.SCARD_S_SUCCESS:
        return {}
    raw, pos, properties = bytes(answer), 0, {}
    while pos + 2 <= len(raw):
        tag, length = raw[pos], raw[pos + 1]
        value = raw[pos + 2 : pos + 2 + length]
        if len(value) != length:
            break
        properties[tag] = int.from_bytes(value, "little")  # part 10 properties are little-endian
        pos += 2 + length
    return properties


class PcscConnection:
    """One card session (:class:`~edge.drivers.base.CardConnection`): a transport, one exchange per call."""

    def __init__(self, driver: PcscReaderDriver, handle: int, protocol: int, reader_name: str, atr: bytes,
                 link: ReaderLink, *, context: int | None = None, deadline: float | None = None,
                 calls: _CallThread | None = None) -> None:  # fmt: skip
        """``deadline`` (monotonic) with ``calls`` (its thread) and ``context`` (its own, released on close): a
        time-limited connection."""
        self._driver = driver
        self._context = context
        self._deadline = deadline
        self._calls = calls
        self._handle: int | None = handle
        self._protocol = protocol
        self._pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        self._reader_name = reader_name
        self._atr = atr
        self.link = link

    @property
    def atr(self) -> bytes:
        return self._atr

    @property
    def reader_name(self) -> str:
        return self._reader_name

    @property
    def supports_extended_length(self) -> bool:
        """What the reader carries now: may turn False mid-read after a transport failure (see the module)."""
        return self.link.extended

    @property
    def profile(self) -> ReaderProfile:
        return self.link.profile

    def close(self) -> None:
        """Disconnect and reset the card: the next session starts in the MF with no secure channel left over."""
        handle, self._handle = self._handle, None
        if handle is not None:
            scard.SCardDisconnect(handle, scard.SCARD_RESET_CARD)
        context, self._context = self._context, None
        if context is not None:
            scard.SCardReleaseContext(context)
        if self._calls is not None:
            self._calls.stop()

    def __enter__(self) -> PcscConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        """Exchange one command for the card's answer as it is (61xx and 6Cxx included: see the module docstring).

        A card that vanished mid-exchange is a :class:`CardRemovedError`; other failures are typed reader errors.
        """
        if self._handle is None:
            raise NoCardError("the card connection is closed")
        raw = command.to_bytes()
        if len(raw) > self.link.max_command:  # the reader would refuse it unsent (its profile says so): save the try
            limit = self.link.max_command
            raise TransportFailedError(f"{command.describe()}: {len(raw)} bytes, {self.profile.model} sends at most "
                                       f"{limit}", reached_chip=False, over_limit="command")  # fmt: skip
        hresult, answer = self._transmit(self._handle, raw, command)
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._transmit_error(hresult, command)
        if len(answer) < 2:  # vpcd (and some readers) report a card that vanished mid-exchange this way
            if not self._card_present(settle=REMOVAL_SETTLE_SECONDS):
                self.close()
                raise CardRemovedError(f"card removed while sending {command.describe()} on {self._reader_name}")
            raise self._transport_failed(command, "answer without status word")
        response = ResponseApdu.from_bytes(bytes(answer))
        log.debug("APDU %s -> %04X (%d bytes)", command.describe(), response.sw, len(response.data))
        return response

    def _transmit(self, handle: int, raw: bytes, command: CommandApdu) -> tuple[int, list[int]]:
        """SCardTransmit; on a time-limited connection, on its thread and given up at the deadline: the connection
        and its context are abandoned then (see the module docstring) and the chip's late answer is never read."""
        pci, apdu = self._pci, list(raw)
        if self._calls is None or self._deadline is None:
            return scard.SCardTransmit(handle, pci, apdu)  # type: ignore[no-any-return]
        if time.monotonic() >= self._deadline:
            raise ReadDeadlineError(f"the read's deadline passed before {command.describe()} on {self._reader_name}")
        context = self._context

        def abandoned() -> None:
            scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
            scard.SCardReleaseContext(context)

        try:
            answer: tuple[int, list[int]] = self._calls.call(lambda: scard.SCardTransmit(handle, pci, apdu),
                                                             self._deadline, abandoned)  # fmt: skip
            return answer
        except _Stuck:
            self._handle = self._context = None  # never touched again: its thread lets go of them once the card does
            log.warning("PC/SC context abandoned: a call on it outlived the read's deadline")
            raise ReadDeadlineError(f"no answer to {command.describe()} on {self._reader_name} within the read's "
                                    "deadline: the card keeps the reader waiting") from None

    def _transmit_error(self, hresult: int, command: CommandApdu) -> ReaderError:
        code = _code(hresult)
        doing = f"sending {command.describe()} on {self._reader_name}"
        if code in _CARD_GONE or (code in _EXCHANGE_FAILED and not self._card_present(REMOVAL_SETTLE_SECONDS)):
            self.close()
            return CardRemovedError(f"card removed while {doing}: {_describe(hresult)}")
        if code in _EXCHANGE_FAILED and code != _TIMEOUT:
            return self._transport_failed(command, _describe(hresult))
        if code == _RESET and self._reconnect():  # another party reset the card: it answers again, state gone
            return TransportFailedError(f"{doing}: the card was reset", reached_chip=False, card_reset=True)
        error = self._driver.error_for(hresult, doing)
        if isinstance(error, NoReaderError):
            self._handle = None  # the handle died with pcscd or the reader
        return error

    def _transport_failed(self, command: CommandApdu, why: str) -> TransportFailedError:
        """The reader failed this exchange with the card still there: what that says about the chip (see the module
        docstring), learned for the reader's later exchanges."""
        link, profile = self.link, self.link.profile
        size = len(command.to_bytes())
        over_limit, reached_chip = "", None
        if command.extended or size > link.max_command:
            over_limit = "command"
            reached_chip = profile.refused_unsent  # documented (ACS: never sent), else unknown
            link.extended = False
            link.max_command = min(link.max_command, max(size - 1, 5 + LE_MAX_SHORT))
        elif command.le + 2 > link.max_response:
            over_limit, reached_chip = "response", True  # the chip answered; the reader could not pass it on
        card_reset = self._was_reset()
        log.info("reader %s failed %s (%s): %s", self._reader_name, command.describe(), why,
                 f"over its {over_limit} limit" if over_limit else "no known limit")  # fmt: skip
        message = f"{profile.model} failed {command.describe()} on {self._reader_name}: {why}"
        return TransportFailedError(message, reached_chip=reached_chip, card_reset=card_reset, over_limit=over_limit)

    def _was_reset(self) -> bool:
        """Whether PC/SC says the card was reset (then the handle is reconnected, the card's state is gone)."""
        if self._handle is None:
            return False
        hresult, _reader, _state, _protocol, _atr = scard.SCardStatus(self._handle)
        return _code(hresult) == _RESET and self._reconnect()

    def _reconnect(self) -> bool:
        if self._handle is None:
            return False
        hresult, protocol = scard.SCardReconnect(self._handle, scard.SCARD_SHARE_SHARED,
                                                 scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
                                                 scard.SCARD_LEAVE_CARD)  # fmt: skip
        if hresult != scard.SCARD_S_SUCCESS:
            return False
        self._pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        return True

    def _card_present(self, settle: float = 0.0) -> bool:
        """After a failed exchange: is the card still there (reader trouble) or gone (removal)?

        pcscd learns of a removal from its reader polling, so ``settle`` seconds are given to it to notice.
        """
        deadline = time.monotonic() + settle
        while self._handle is not None:
            hresult, _reader, state, _protocol, _atr = scard.SCardStatus(self._handle)
            if hresult != scard.SCARD_S_SUCCESS or not state & _STATUS_PRESENT:
                return False
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.01)
        return False
