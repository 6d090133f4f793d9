"""Command and response APDUs (ISO/IEC 7816-4), immutable, plus the connection chain they travel through.

The chain mirrors yubikit: a :class:`ApduConnection` is anything with ``send_and_receive``; a processor such as
secure messaging wraps another connection and is itself a connection. Protocol code receives a connection by
injection and never knows whether a PC/SC reader or the simulator is behind it. The numbers (status words,
instruction bytes, class bits) are named in :mod:`edge.protocol.iso7816`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from edge.errors import (
    FileNotFoundOnCardError,
    SecurityStatusError,
    StatusWordError,
)
from edge.protocol.iso7816 import SW_FILE_NOT_FOUND, SW_OK, SW_SECURITY_STATUS

#: Le value meaning "as many as you have" for short (256) and extended (65536) APDUs.
LE_MAX_SHORT = 256
LE_MAX_EXTENDED = 65536


@dataclass(frozen=True, slots=True)
class CommandApdu:
    """One command APDU. ``le`` is the expected length (0 = none expected; 256/65536 = maximum)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int = 0
    extended: bool = False

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"APDU {name} out of range: {value}")
        limit = LE_MAX_EXTENDED if self.extended else LE_MAX_SHORT
        if not 0 <= self.le <= limit:
            raise ValueError(f"APDU Le out of range: {self.le}")
        if len(self.data) > (65535 if self.extended else 255):
            raise ValueError(f"APDU data too long: {len(self.data)}")

    def to_bytes(self) -> bytes:
        """Encode in the short or extended form (ISO 7816-4 5.1)."""
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        if not self.extended:
            body = b""
            if self.data:
                body += bytes((len(self.data),)) + self.data
            if self.le:
                body += bytes((self.le & 0xFF,))
            return header + body
        body = b""
        if self.data:
            body += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
        if self.le:
            le = (self.le & 0xFFFF).to_bytes(2, "big")
            body += le if self.data else b"\x00" + le
        return header + body

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandApdu:
        """Decode any of the seven ISO 7816-4 cases; raises ValueError on a malformed APDU."""
        if len(raw) < 4:
            raise ValueError("APDU shorter than its header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0] or 256)
        if body[0] != 0:  # short form with data
            lc = body[0]
            if len(body) == 1 + lc:
                return cls(cla, ins, p1, p2, body[1:])
            if len(body) == 2 + lc:
                return cls(cla, ins, p1, p2, body[1 : 1 + lc], le=body[-1] or 256)
            raise ValueError("APDU length byte does not match its body")
        # extended form: 00 then 2-byte length
        if len(body) == 3:
            return cls(cla, ins, p1, p2, le=int.from_bytes(body[1:3], "big") or 65536, extended=True)
        if len(body) < 3:
            raise ValueError("truncated extended APDU")
        lc = int.from_bytes(body[1:3], "big")
        data = body[3 : 3 + lc]
        if len(data) != lc:
            raise ValueError("extended APDU data shorter than its length")
        rest = body[3 + lc :]
        if not rest:
            return cls(cla, ins, p1, p2, data, extended=True)
        if len(rest) == 2:
            return cls(cla, ins, p1, p2, data, le=int.from_bytes(rest, "big") or 65536, extended=True)
        raise ValueError("extended APDU has trailing bytes")

    def describe(self) -> str:
        """Header only: safe for logs (the data field may carry personal data or keys)."""
        return f"{self.cla:02X} {self.ins:02X} {self.p1:02X} {self.p2:02X} (Lc={len(self.data)}, Le={self.le})"


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    """One response APDU: data plus the two status bytes."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise ValueError("response APDU shorter than its status word")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    def check(self, command: str = "", *, allow: tuple[int, ...] = ()) -> bytes:
        """Return the data when the status is 9000 (or in ``allow``); raise the matching typed error otherwise."""
        if self.sw == SW_OK or self.sw in allow:
            return self.data
        raise status_error(self.sw, command)


def status_error(sw: int, command: str = "") -> StatusWordError:
    """Map a status word to the most specific typed error."""
    if sw == SW_FILE_NOT_FOUND:
        return FileNotFoundOnCardError(sw, command)
    if sw == SW_SECURITY_STATUS:
        return SecurityStatusError(sw, command)
    return StatusWordError(sw, command)


@runtime_checkable
class ApduConnection(Protocol):
    """Anything that exchanges one APDU for one response: a reader, the simulator, or a processor in the chain."""

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        """Send one command and return its answer: a transport's as the chip gave it (61xx, 6Cxx included), a
        processor's as its link makes it (:class:`~edge.protocol.chaining.ResponseChaining` completes 61xx/6Cxx)."""
        ...

    @property
    def supports_extended_length(self) -> bool:
        """Whether the transport can carry extended-length APDUs (the chip may still refuse them)."""
        ...
