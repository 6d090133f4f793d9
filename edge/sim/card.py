"""The virtual CCCD's ISO 7816-4 body: file system, SELECT, READ BINARY, quirks, counters and a timing model.

Access control and secure messaging are not done here: they come in through the :class:`ChipSecurity` seam
(``edge.sim.chip_security``), so this module can serve plain reads on its own (``Quirks.plain_reads``) and the
access-control engineer can plug the chip side of PACE/BAC/SM in without touching the file logic.

The card answers like the real one where it is known (``SELECT MF`` answers 6D00, DG3 6982, DG11 6A82) and
departs from the happy path only where :class:`~edge.sim.model.Quirks` says so (``no_sfi``: reads only the file
chosen by SELECT FILE, as JMRTD's passport applet does).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from edge.errors import CardRemovedError, TlvError
from edge.protocol import tlv
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.iso7816 import (
    CLA_CHAINING,
    CLA_SM,
    EMRTD_AID,
    INS_GET_RESPONSE,
    INS_READ_BINARY,
    INS_READ_BINARY_ODD,
    INS_SELECT,
    SW1_BYTES_REMAINING,
    SW1_WRONG_LE,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_NO_CURRENT_EF,
    SW_OK,
    SW_SECURITY_STATUS,
    SW_SM_INCORRECT,
    SW_SM_MISSING,
    SW_WARNING_EOF,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
)
from edge.protocol.read_strategy import odd_room
from edge.sim.model import SimCardSpec

FID_MF = 0x3F00
TAG_OFFSET = 0x54  # odd-INS READ BINARY: offset data object
TAG_DISCRETIONARY = 0x53  # odd-INS READ BINARY: the answer's wrapper


class SimSmFault(Exception):
    """Raised by :meth:`ChipSecurity.unwrap` when a secured command is bad; the card answers ``sw`` in plain."""

    def __init__(self, sw: int, reason: str = "") -> None:
        super().__init__(f"{sw:04X} {reason}".strip())
        self.sw = sw


class CardLeftField(Exception):
    """The virtual card has left the field (``Quirks.remove_after_apdus``); it sends no answer."""


class ChipSecurity(Protocol):
    """The chip side of access control and secure messaging, plugged into :class:`VirtualCard`."""

    def handles(self, command: CommandApdu) -> bool:
        """True for access-control INS: 84 GET CHALLENGE, 82 EXTERNAL AUTH, 22 MSE, 86 GENERAL AUTH, 88 INT AUTH."""
        ...

    def process(self, command: CommandApdu) -> ResponseApdu: ...

    @property
    def session_active(self) -> bool:
        """Secure messaging is established."""
        ...

    def unwrap(self, command: CommandApdu) -> CommandApdu:
        """Strip SM; raise :class:`SimSmFault` on a bad MAC or missing objects."""
        ...

    def wrap(self, response: ResponseApdu) -> ResponseApdu: ...

    def refuse(self) -> None:
        """Answer the command just unwrapped with a naked status word, uncounted (the SSC as before it)."""
        ...

    def reset(self) -> None:
        """Power off, reset, card removal or a plain command (e.g. a plain applet reselect): the session ends."""
        ...


@dataclass(frozen=True, slots=True)
class CardCounters:
    """What crossed the (virtual) air interface, and how long a real chip would have needed for it.

    ``modelled_seconds = apdus * apdu_overhead_ms / 1000 + (bytes_in + bytes_out) * 10 / bitrate_kbps / 1000``:
    ISO 14443 spends about 10 bits on the air per data byte (framing, CRC, parity), so a 424 kbit/s link moves
    ~42 bytes per ms; the per-APDU overhead covers reader turnaround and chip processing.
    """

    apdus: int
    bytes_in: int
    bytes_out: int
    modelled_seconds: float


class _Df(Enum):
    MF = "MF"
    APPLET = "eMRTD applet"


def _still_active(security: ChipSecurity) -> bool:
    """Re-read the session state after a command (a function call, so type narrowing does not assume it)."""
    return security.session_active


def _is_error(sw: int) -> bool:
    """Status words that are neither success nor warnings (these go out naked under ``naked_errors``)."""
    return (sw >> 8) not in (0x90, 0x61, 0x62, 0x63)


class VirtualCard:
    """One virtual CCCD: feed it raw command APDUs, get raw responses.

    Not thread-safe by design: one vpcd client thread (or one test) drives it. Counters are plain integers that
    another thread may read for statistics.
    """

    def __init__(self, spec: SimCardSpec, security: ChipSecurity | None = None) -> None:
        self.spec = spec
        self.security = security
        self._apdus = 0
        self._bytes_in = 0
        self._bytes_out = 0
        self._secured_apdus = 0
        self._session_lost_done = False
        self._short_answer_done = False
        self._left_field = False
        self._lifted = threading.Event()  # set while the card is being taken off: a stalled answer is never given
        self._df = _Df.MF
        self._current_ef: int | None = None
        self._pending: bytes = b""  # data still to be fetched with GET RESPONSE
        self._pending_sw = SW_OK  # the status word that ends the GET RESPONSE sequence
        self._sfi_map = {
            _Df.MF: {fid & 0x1F: fid for fid in spec.image.mf_files},
            _Df.APPLET: {fid & 0x1F: fid for fid in (*spec.image.applet_files, *spec.image.denied_files)},
        }

    # --- power and presence ------------------------------------------------------------------------------------

    @property
    def atr(self) -> bytes:
        return self.spec.image.atr

    @property
    def left_field(self) -> bool:
        return self._left_field

    def lift(self) -> None:
        """The card is being taken off the reader (any thread): a stalled answer is dropped, as a chip's would be."""
        self._lifted.set()

    def power_on(self) -> bytes:
        """Cold start: MF selected, no session. Returns the ATR."""
        self._lifted.clear()
        self._reset_state()
        return self.atr

    def power_off(self) -> None:
        self._reset_state()

    def reset(self) -> bytes:
        """Warm reset: same as power on for this chip."""
        return self.power_on()

    def _reset_state(self) -> None:
        self._df = _Df.MF
        self._current_ef = None
        self._pending = b""
        if self.security is not None:
            self.security.reset()

    # --- counters ----------------------------------------------------------------------------------------------

    @property
    def counters(self) -> CardCounters:
        quirks = self.spec.quirks
        air_ms = (self._bytes_in + self._bytes_out) * 10 / quirks.bitrate_kbps
        modelled = (self._apdus * quirks.apdu_overhead_ms + air_ms) / 1000
        return CardCounters(self._apdus, self._bytes_in, self._bytes_out, modelled)

    def reset_counters(self) -> None:
        self._apdus = self._bytes_in = self._bytes_out = 0

    # --- the APDU entry points ---------------------------------------------------------------------------------

    def process(self, raw: bytes) -> bytes:
        """Answer one raw command APDU; raises :class:`CardLeftField` once the card has left the field."""
        quirks = self.spec.quirks
        if self._left_field or (quirks.remove_after_apdus is not None and self._apdus >= quirks.remove_after_apdus):
            self._left_field = True
            self._reset_state()
            raise CardLeftField("the virtual card left the field")
        self._apdus += 1
        self._bytes_in += len(raw)
        if quirks.answer_delay_ms > 0:
            time.sleep(quirks.answer_delay_ms / 1000)
        stalls = quirks.stall_after_apdus is not None and self._apdus > quirks.stall_after_apdus
        if stalls and self._lifted.wait(quirks.stall_seconds):
            raise CardLeftField("the virtual card was lifted while it stalled")
        try:
            command = CommandApdu.from_bytes(raw)
        except ValueError:
            response = ResponseApdu(b"", SW_WRONG_LENGTH)
        else:
            response = self._transport(command)
        out = response.to_bytes()
        self._bytes_out += len(out)
        return out

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        """In-process :class:`~edge.protocol.apdu.ApduConnection` over the real card logic (no 61xx handling)."""
        try:
            return ResponseApdu.from_bytes(self.process(command.to_bytes()))
        except CardLeftField as exc:
            raise CardRemovedError("the virtual card left the field") from exc

    @property
    def supports_extended_length(self) -> bool:
        return True

    # --- transport: T=0 style GET RESPONSE ---------------------------------------------------------------------

    def _transport(self, command: CommandApdu) -> ResponseApdu:
        if command.ins == INS_GET_RESPONSE and command.cla == 0x00:
            if self.spec.quirks.endless_get_response:
                return ResponseApdu(b"\x00", SW1_BYTES_REMAINING << 8 | 1)
            if not self._pending:
                return ResponseApdu(b"", SW_CONDITIONS_NOT_SATISFIED)
            size = min(command.le or 256, self.spec.quirks.response_chunk or 65536)
            return self._split(self._pending, size, self._pending_sw)
        self._pending = b""
        response = self._secure_dispatch(command)
        if self.spec.quirks.endless_get_response:
            return ResponseApdu(response.data[:1], SW1_BYTES_REMAINING << 8 | 1)
        chunk = self.spec.quirks.response_chunk
        if chunk is not None and len(response.data) > chunk:
            self._pending_sw = response.sw
            return self._split(response.data, chunk, response.sw)
        return response

    def _split(self, data: bytes, size: int, final_sw: int) -> ResponseApdu:
        """Send ``size`` bytes now and announce the rest with 61xx (xx = 00 means 256 or more)."""
        head, rest = data[:size], data[size:]
        self._pending = rest
        if not rest:
            return ResponseApdu(head, final_sw)
        return ResponseApdu(head, SW1_BYTES_REMAINING << 8 | min(len(rest), 256) & 0xFF)

    # --- secure messaging seam ---------------------------------------------------------------------------------

    def _secure_dispatch(self, command: CommandApdu) -> ResponseApdu:
        security = self.security
        if command.cla & ~(CLA_SM | CLA_CHAINING) & 0xFF:
            return ResponseApdu(b"", SW_CLA_NOT_SUPPORTED)
        if command.cla & CLA_SM == CLA_SM:
            if security is None or not security.session_active:
                return ResponseApdu(b"", SW_SM_INCORRECT)
            self._secured_apdus += 1
            lost_after = self.spec.quirks.session_lost_after_apdus
            if lost_after is not None and not self._session_lost_done and self._secured_apdus > lost_after:
                self._session_lost_done = True
                security.reset()
                return ResponseApdu(b"", SW_SM_MISSING)
            try:
                inner = security.unwrap(command)
            except SimSmFault as fault:
                return ResponseApdu(b"", fault.sw)
            response = security.process(inner) if security.handles(inner) else self._execute(inner)
            if not _still_active(security):  # the command ended the session: nothing left to wrap with
                return response
            quirks = self.spec.quirks
            if quirks.naked_errors and _is_error(response.sw):
                if quirks.naked_errors_counted:
                    security.wrap(response)  # counted, then sent naked anyway
                else:
                    security.refuse()
                return response
            return security.wrap(response)
        if security is not None:
            if security.handles(command):
                return security.process(command)
            if security.session_active:  # a plain command ends secure messaging, as on real chips
                security.reset()
        return self._execute(command)

    # --- ISO 7816-4 file system --------------------------------------------------------------------------------

    def _execute(self, command: CommandApdu) -> ResponseApdu:
        if command.ins == INS_SELECT:
            return self._select(command)
        if command.ins in (INS_READ_BINARY, INS_READ_BINARY_ODD):
            return self._read_binary(command)
        return ResponseApdu(b"", SW_INS_NOT_SUPPORTED)

    def _files(self, df: _Df) -> dict[int, bytes]:
        image = self.spec.image
        return image.mf_files if df is _Df.MF else image.applet_files

    def _exists(self, fid: int) -> bool:
        return fid in self._files(self._df) or (self._df is _Df.APPLET and fid in self.spec.image.denied_files)

    def _select(self, command: CommandApdu) -> ResponseApdu:
        if command.p1 == 0x04:  # by DF name
            if command.data != EMRTD_AID:
                return ResponseApdu(b"", SW_FILE_NOT_FOUND)
            # A plain reselect has already ended any session (see _secure_dispatch); a secured one, as after PACE
            # in the MF, keeps it.
            self._df = _Df.APPLET
            self._current_ef = None
            return ResponseApdu(b"", SW_OK)
        if command.p1 == 0x00 and (not command.data or command.data == FID_MF.to_bytes(2, "big")):
            return ResponseApdu(b"", SW_INS_NOT_SUPPORTED)  # the CCCD's quirk: SELECT MF is not supported
        if command.p1 not in (0x00, 0x02):
            return ResponseApdu(b"", SW_INCORRECT_P1P2)
        if len(command.data) != 2:
            return ResponseApdu(b"", SW_WRONG_LENGTH)
        fid = int.from_bytes(command.data, "big")
        if not self._exists(fid):
            return ResponseApdu(b"", SW_FILE_NOT_FOUND)
        self._current_ef = fid
        if command.p2 & 0x0C == 0x0C:  # no response data wanted
            return ResponseApdu(b"", SW_OK)
        size = len(self._files(self._df).get(fid, b""))
        fcp = tlv.encode_constructed(
            0x62, tlv.encode(0x80, size.to_bytes(2, "big")), tlv.encode(0x82, b"\x01"), tlv.encode(0x83, command.data)
        )
        return ResponseApdu(fcp, SW_OK)

    def _resolve_sfi(self, sfi: int) -> int | None:
        return self._sfi_map[self._df].get(sfi)

    def _read_binary(self, command: CommandApdu) -> ResponseApdu:
        quirks = self.spec.quirks
        if command.extended and not quirks.extended_length:
            return ResponseApdu(b"", SW_WRONG_LENGTH)
        if command.le == 0:
            return ResponseApdu(b"", SW_WRONG_LENGTH)
        if command.le > quirks.max_le:
            return ResponseApdu(b"", quirks.le_refusal_sw)
        if quirks.wrong_le_loop and command.le > 1:
            return ResponseApdu(b"", SW1_WRONG_LE << 8 | ((command.le - 1) & 0xFF))
        odd = command.ins == INS_READ_BINARY_ODD
        target = self._odd_target(command) if odd else self._even_target(command)
        if isinstance(target, ResponseApdu):
            return target
        fid, offset = target
        denied = self.spec.image.denied_files.get(fid) if self._df is _Df.APPLET else None
        if denied is not None:
            return ResponseApdu(b"", denied)
        if self._df is _Df.APPLET and not self._may_read_applet():
            return ResponseApdu(b"", SW_SECURITY_STATUS)
        content = self._files(self._df)[fid]
        if offset >= len(content):
            return ResponseApdu(b"", SW_WRONG_P1P2)
        room = odd_room(command.le) if odd else command.le  # odd: the answer is 53 L data, all within Le
        chunk = content[offset : offset + room]
        past_end = len(chunk) < room
        short = quirks.short_answer_once
        if short is not None and offset > 0 and len(chunk) > short and not self._short_answer_done:
            self._short_answer_done = True
            chunk, past_end = chunk[:short], False
        if past_end and quirks.wrong_le_hint and not command.extended and not odd:
            return ResponseApdu(b"", SW1_WRONG_LE << 8 | (len(chunk) & 0xFF))
        reaches_end = offset + len(chunk) == len(content)
        warn = (past_end and quirks.eof_warning) or (reaches_end and quirks.eof_warning_on_last_chunk)
        data = tlv.encode(TAG_DISCRETIONARY, chunk) if odd else chunk
        return ResponseApdu(data, SW_WARNING_EOF if warn else SW_OK)

    def _may_read_applet(self) -> bool:
        if self.spec.quirks.plain_reads:
            return True
        return self.security is not None and self.security.session_active

    def _even_target(self, command: CommandApdu) -> tuple[int, int] | ResponseApdu:
        if command.p1 & 0x80:  # short file id in P1, offset in P2; the file becomes the current EF
            if self.spec.quirks.no_sfi:
                return ResponseApdu(b"", self.spec.quirks.sfi_refusal_sw)
            if command.p1 & 0x60:
                return ResponseApdu(b"", SW_INCORRECT_P1P2)
            fid = self._resolve_sfi(command.p1 & 0x1F)
            if fid is None:
                return ResponseApdu(b"", SW_FILE_NOT_FOUND)
            self._current_ef = fid
            return fid, command.p2
        if self._current_ef is None:
            return ResponseApdu(b"", SW_NO_CURRENT_EF)
        return self._current_ef, (command.p1 << 8) | command.p2

    def _odd_target(self, command: CommandApdu) -> tuple[int, int] | ResponseApdu:
        try:
            tag, length, pos = tlv.read_header(command.data)
        except TlvError:
            return ResponseApdu(b"", SW_WRONG_DATA)
        if tag != TAG_OFFSET or not 1 <= length <= 3 or pos + length > len(command.data):
            return ResponseApdu(b"", SW_WRONG_DATA)
        offset = int.from_bytes(command.data[pos : pos + length], "big")
        p1p2 = (command.p1 << 8) | command.p2
        if p1p2 == 0:
            fid = self._current_ef
        elif command.p1 == 0 and not command.p2 & 0xE0:
            fid = self._resolve_sfi(command.p2 & 0x1F)
        else:
            fid = p1p2 if self._exists(p1p2) else None
        if fid is None:
            return ResponseApdu(b"", SW_NO_CURRENT_EF if p1p2 == 0 else SW_FILE_NOT_FOUND)
        self._current_ef = fid
        return fid, offset
