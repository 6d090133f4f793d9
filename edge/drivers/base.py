"""Typed interfaces of the terminal's devices. Each driver module implements one of them, real and simulated.

The daemon and the CLI only see these protocols; which library stands behind them (pyscard, picamera2, zxing-cpp,
gpiozero) is the business of one driver module each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from edge.protocol.apdu import ApduConnection
from edge.protocol.readers import ReaderProfile


class CardPresence(Enum):
    ABSENT = "absent"
    PRESENT = "present"
    NO_READER = "no_reader"


@dataclass(frozen=True, slots=True)
class ReaderState:
    """One reader as PC/SC sees it."""

    name: str
    presence: CardPresence
    atr: bytes = b""
    #: How many times a card came or went on this reader (pcsc-lite keeps the count in the upper word of
    #: dwEventState): a card swapped between two looks changes it though the reader holds a card both times.
    card_events: int = 0


class CardConnection(ApduConnection, Protocol):
    """An open session with one card. Closing it releases the card for other readers of the same terminal."""

    @property
    def atr(self) -> bytes: ...

    @property
    def reader_name(self) -> str: ...

    def close(self) -> None: ...


class CardReaderDriver(Protocol):
    """Readers attached to the terminal: list them, wait for changes or a card, connect, and be woken or closed.

    ``cancel`` and ``close`` are part of the contract so a caller never has to probe for them: the daemon's reader
    thread blocks in :meth:`wait_for_change` and is woken by ``cancel`` from the thread that stops it.
    """

    def readers(self) -> Sequence[ReaderState]:
        """Current readers and their card state; an empty list when pcscd or the reader is gone."""
        ...

    def wait_for_change(self, timeout: float) -> Sequence[ReaderState]:
        """Block until a reader or card state changes or ``timeout`` seconds pass; return the new states."""
        ...

    def wait_for_card(self, timeout: float, reader_name: str | None = None) -> ReaderState:
        """The state of ``reader_name`` (or the first reader) once it holds a card, waiting up to ``timeout`` seconds.

        Raises :class:`~edge.errors.CardTimeoutError` at the deadline, :class:`~edge.errors.NoReaderError` when no
        such reader is attached.
        """
        ...

    def connect(self, reader_name: str | None = None, *, time_limit: float | None = None) -> CardConnection:
        """Connect to the card on ``reader_name`` (or the first reader holding a card). With ``time_limit`` (seconds:
        what is left of the read's deadline), connecting and every exchange end in
        :class:`~edge.errors.ReadDeadlineError` once it has passed, even while the card never answers."""
        ...

    def escape(self, reader_name: str, command: bytes, *, card_present: bool | None = None) -> bytes:
        """Send a command the reader answers itself (its LEDs: ``edge.drivers.reader_leds``); the card sees none.
        ``card_present``: whether a card lies there, as the caller's watch knows (None: the driver looks)."""
        ...

    def profile(self, reader_name: str) -> ReaderProfile:
        """What is known of ``reader_name``'s model (``edge.protocol.readers``): limits, LED channel."""
        ...

    def cancel(self) -> None:
        """Wake a :meth:`wait_for_change` (or :meth:`wait_for_card`) blocked in another thread; harmless when idle."""
        ...

    def close(self) -> None:
        """Release the driver's resources (the PC/SC context); a later call starts afresh."""
        ...


@dataclass(frozen=True, slots=True)
class Frame:
    """One grey-scale camera frame (8-bit luminance, row-major)."""

    width: int
    height: int
    pixels: bytes
    timestamp: float  # monotonic seconds; supplied by the driver, so protocol code stays clock-free


class FrameSource(Protocol):
    """Camera-like source of grey frames."""

    @property
    def exhausted(self) -> bool:
        """True once no frame will ever come again (a replay run to its end), so a reader stops asking; a camera
        never is: a missing frame from it is a stall or a lost camera (:class:`~edge.errors.CameraError`)."""
        ...

    def read(self, timeout: float) -> Frame | None:
        """Next frame, or None when no frame arrived within ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DecodedSymbol:
    """One QR code found in a frame: its raw bytes (decode as UTF-8 yourself) and the decoder's name."""

    raw: bytes
    decoder: str


class QrDecoder(Protocol):
    name: str

    def decode(self, frame: Frame) -> Sequence[DecodedSymbol]: ...

    def close(self) -> None:
        """Release native decoder state (zbar holds C memory)."""
        ...
