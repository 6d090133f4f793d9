"""The card side of the vpcd wire protocol: a virtual card connects to pcscd's vpcd driver over TCP.

Every message is a 2-byte big-endian length plus a payload. A 1-byte payload is a control code (0 power off,
1 power on, 2 reset, 4 "send your ATR"); anything longer is a command APDU answered with a response APDU.
Connecting is inserting the card; closing the socket is removing it.

vpcd sends each message in two TCP segments; with Nagle and delayed ACK every APDU would cost ~44 ms. Setting
``TCP_NODELAY`` once and ``TCP_QUICKACK`` before every ``recv`` brings the round trip to well under a millisecond.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Protocol, Self

from edge.errors import NoReaderError
from edge.protocol.iso7816 import SW_UNKNOWN
from edge.sim.card import CardLeftField

log = logging.getLogger(__name__)

CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04


class VpcdCard(Protocol):
    """What the vpcd client needs from a card (``edge.sim.card.VirtualCard`` is one)."""

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> bytes: ...

    def power_off(self) -> None: ...

    def reset(self) -> bytes: ...

    def process(self, raw: bytes) -> bytes:
        """Answer one command APDU; raise :class:`~edge.sim.card.CardLeftField` to leave the field."""
        ...

    def lift(self) -> None:
        """Called from another thread as the card is taken off: an answer still pending is never given."""
        ...


class InsertedWhileOpen(ABC):
    """``with card:`` puts the card on the reader and takes it off again however the block ends."""

    @abstractmethod
    def insert(self) -> None: ...

    @abstractmethod
    def remove(self) -> None: ...

    def __enter__(self) -> Self:
        self.insert()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()


class VpcdClient(InsertedWhileOpen):
    """Serves one card to one vpcd reader slot (``port`` = the slot's TCP port) from a background thread."""

    def __init__(self, card: VpcdCard, port: int, host: str = "127.0.0.1", *, connect_timeout: float = 5.0) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._removed = threading.Event()
        self._removed.set()

    @property
    def inserted(self) -> bool:
        return not self._removed.is_set()

    def insert(self) -> None:
        """Connect to vpcd (retrying while pcscd starts up); the reader then reports a card present."""
        if self.inserted:
            return
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise NoReaderError(f"vpcd does not listen on {self.host}:{self.port}: {exc}") from exc
                time.sleep(0.05)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._removed.clear()
        self._thread = threading.Thread(target=self._serve, args=(sock,), name=f"vpcd-card-{self.port}", daemon=True)
        self._thread.start()

    def remove(self) -> None:
        """Take the card out of the field: close the socket and wait for the serving thread."""
        sock, thread = self._sock, self._thread
        self.card.lift()  # a stalling card lets go at once, as a real one leaves the field
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the other side
                sock.shutdown(socket.SHUT_RDWR)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self._sock = None
        self._thread = None
        self._removed.set()

    def wait_removed(self, timeout: float) -> bool:
        """Block until the card is out (removed, left the field, or pcscd went away)."""
        return self._removed.wait(timeout)

    # --- the serving thread ------------------------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                payload = _recv_message(sock)
                if payload is None:
                    return
                answer = self._answer(payload)
                if answer is None:
                    continue
                sock.sendall(len(answer).to_bytes(2, "big") + answer)
        except CardLeftField:
            log.debug("virtual card on port %d left the field", self.port)
        except OSError as exc:
            log.debug("vpcd connection on port %d ended: %s", self.port, exc)
        finally:
            sock.close()
            self._removed.set()

    def _answer(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            code = payload[0]
            if code == CTRL_POWER_OFF:
                self.card.power_off()
            elif code == CTRL_POWER_ON:
                self.card.power_on()
            elif code == CTRL_RESET:
                self.card.reset()
            elif code == CTRL_ATR:
                return self.card.atr
            else:
                log.warning("unknown vpcd control code %02X", code)
            return None
        try:
            return self.card.process(payload)
        except CardLeftField:
            raise
        except Exception:  # a simulator bug must not hang pcscd's reader: answer 6F00 and keep serving
            log.exception("virtual card failed on an APDU")
            return SW_UNKNOWN.to_bytes(2, "big")


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _recv_message(sock: socket.socket) -> bytes | None:
    header = _recv_exact(sock, 2)
    if header is None:
        return None
    length = int.from_bytes(header, "big")
    if length == 0:
        return b""
    return _recv_exact(sock, length)
