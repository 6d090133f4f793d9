"""The read strategy: get a whole elementary file off the chip in as few APDUs as the card allows.

The first READ BINARY selects the file by short file id (no SELECT round trip) and asks for a full chunk; the TLV
header in that chunk tells the file's total length, so no separate 4-byte header read is needed. Offsets up to
0x7FFF use READ BINARY B0; beyond that the odd-INS B1 with an offset data object. Chips differ in what they accept
(Le limits, extended length, 6282 at the end), so the strategy steps down on refusals and short answers and
records what worked in a :class:`ChunkMemory` the caller keeps per card. That memory recovers: after a few answers
in full at the smaller size, the size that failed is tried once more, so one glitch (a single short answer) does
not shrink every later read of the card; a size that fails twice is the chip's limit for the rest of the read.
Every loop is bounded: the step-down ladder, one switch to SELECT, and at most :data:`MAX_WRONG_LE_HINTS` 6Cxx
retries per read. A file is returned whole or not at all.

Some chips (JMRTD's passport applet) read only the file chosen by SELECT FILE. A read by short file id refused
with a status word that means "not addressed this way" (:data:`SFI_REFUSALS`; 6B00 only once no smaller Le helps)
falls back to SELECT by FID and READ BINARY by offset, and the memory remembers it: the card's later files go
straight to SELECT. 6A82 (no such file) and 6982 (not allowed) are answers about the file, never a reason to try
again. Under secure messaging every command of the fallback goes through the same connection, so the SSC stays in
step: a refused read is one more counted exchange, protected or naked.

A reader that fails an exchange at the transport (:class:`~edge.errors.TransportFailedError`, the card still on
it) is stepped around the same way: an extended APDU that failed makes the chunk memory short-only, an answer the
reader could not pass makes the next Le smaller; secure messaging has already put its SSC where the chip's is (or
closed the channel, and the session re-authenticates and resumes the file at its offset).

Pure: the connection is injected (a PC/SC reader, the simulator, or secure messaging wrapping either).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edge.errors import LdsError, TlvError, TransportFailedError
from edge.protocol import tlv
from edge.protocol.apdu import LE_MAX_SHORT, ApduConnection, CommandApdu, ResponseApdu, status_error
from edge.protocol.iso7816 import (
    INS_READ_BINARY,
    INS_READ_BINARY_ODD,
    INS_SELECT,
    SW1_WRONG_LE,
    SW_FUNC_NOT_SUPPORTED,
    SW_INCORRECT_P1P2,
    SW_NO_CURRENT_EF,
    SW_OK,
    SW_WARNING_EOF,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
)

MAX_B0_OFFSET = 0x7FFF
MAX_B1_OFFSET = 0xFFFFFF

#: Usual chunk sizes: the largest Le whose answer fits 256 bytes under AES SM (223), 3DES SM (231), plain (256).
CHUNK_AES_SM = 223
CHUNK_3DES_SM = 231
CHUNK_PLAIN = 256

#: Sizes tried, in order, when a chip refuses a chunk (6700/6B00) or answers short.
_STEP_LADDER = (32768, 16384, 8192, 4096, 2048, 1024, 512, 256, 231, 223, 192, 160, 128, 64, 32, 16, 8, 4, 1)

#: Enough bytes to hold any TLV header we accept (4-byte tag is not used by LDS: 2-byte tag + 0x84 + 4 bytes).
_HEADER_MAX = 8

#: 6Cxx (wrong Le, xx available) answers followed per READ BINARY: one is the ISO 7816-4 case, more a chip lying.
MAX_WRONG_LE_HINTS = 2
#: Full answers at a size learned from a short answer before the larger size is tried again (free: a short answer
#: still carries data).
PROBE_AFTER_SHORT_ANSWERS = 4
#: Full answers at a size learned from refusals (6700/6B00, the chip's own word) before the refused size is tried
#: again (costs one refused APDU on a chip that meant it, so rarely).
PROBE_AFTER_REFUSALS = 16

#: Answers to a READ BINARY by short file id meaning the chip does not take SFI addressing (ISO 7816-4: 6A81
#: function not supported, 6A86 incorrect P1-P2, 6986 no current EF: the SFI was ignored). 6B00 (wrong P1-P2)
#: also means a refused Le on some chips, so it counts only once the Le ladder is exhausted.
SFI_REFUSALS = frozenset({SW_FUNC_NOT_SUPPORTED, SW_INCORRECT_P1P2, SW_NO_CURRENT_EF})


def file_name(sfi: int) -> str:
    """Human name of a short file id, for error messages and logs."""
    names = {0x1C: "EF.CardAccess", 0x1D: "EF.SOD", 0x1E: "EF.COM"}
    return names.get(sfi, f"DG{sfi}" if 1 <= sfi <= 16 else f"SFI {sfi:02X}")


def file_id(sfi: int) -> int:
    """The LDS FID whose low five bits are ``sfi``: EF.CardAccess 011C, EF.SOD 011D, EF.COM 011E, DGn 0100+n."""
    return 0x0100 | sfi


def select_command(sfi: int) -> CommandApdu:
    """SELECT the EF by FID in the current DF, no answer data."""
    return CommandApdu(0x00, INS_SELECT, 0x02, 0x0C, file_id(sfi).to_bytes(2, "big"))


def read_by_sfi_command(sfi: int, le: int, offset: int = 0) -> CommandApdu:
    """READ BINARY of the EF with short file id ``sfi`` (P1 bit 8), from ``offset`` (< 256)."""
    return CommandApdu(0x00, INS_READ_BINARY, 0x80 | sfi, offset, le=le, extended=le > LE_MAX_SHORT)


def select_file(conn: ApduConnection, sfi: int) -> None:
    """SELECT the EF with short file id ``sfi``; 6A82 raises :class:`~edge.errors.FileNotFoundOnCardError`."""
    conn.send_and_receive(select_command(sfi)).check(f"SELECT {file_name(sfi)}")


@dataclass(slots=True)
class ChunkMemory:
    """Largest chunk this card answers in full, learned by stepping down; kept by the caller for one card.

    Mutable on purpose: it is per-card state that outlives one file read (the next file starts at the size that
    worked instead of failing again). ``extended_refused`` remembers a 6700 to an extended APDU; ``select_files``
    that the chip refused a read by short file id, so each file is SELECTed and read by offset.

    ``limit`` recovers: ``ceiling`` is the size that failed, tried again (a probe) once ``patience`` answers in a
    row came back in full at the limit. A probe answered in full lifts the limit (the failure was a glitch); a probe
    that fails again ``settled`` the limit for the rest of the read, so a chip that really caps costs one probe.
    """

    limit: int | None = None
    extended_refused: bool = False
    select_files: bool = False
    ceiling: int | None = None
    settled: bool = False
    full_answers: int = 0
    patience: int = PROBE_AFTER_SHORT_ANSWERS
    probe_from: int | None = None  # the limit before the probe now under way
    short_once: int | None = None  # the size one short answer came back to, not yet believed

    def size_for(self, requested: int) -> int:
        size = requested if self.limit is None else min(requested, self.limit)
        return min(size, LE_MAX_SHORT) if self.extended_refused else size

    def step_down(self, failed: int) -> int | None:
        """Record that ``failed`` bytes were refused; return the next size to try or None when out of steps."""
        smaller = next((step for step in _STEP_LADDER if step < failed), None)
        if smaller is not None:
            self._lower(smaller, failed, PROBE_AFTER_REFUSALS)
        return smaller

    def cap_answers(self, answered: int, asked: int) -> None:
        """A read of ``asked`` bytes (not past the file's end) came back with ``answered``: the chip caps there once
        it happens twice in a row at that size. The first time costs nothing to doubt (the next read asks the full
        size again and a capping chip still answers what it can), and a one-off glitch then shrinks no read."""
        if self.short_once != asked:
            self.short_once = asked
            return
        self._lower(answered, asked, PROBE_AFTER_SHORT_ANSWERS)

    def answered_in_full(self, asked: int) -> None:
        """A read of ``asked`` bytes came back whole: count it towards a probe, or end a probe as a success."""
        self.short_once = None
        if self.probe_from is not None:
            if asked > self.probe_from:  # the size that failed once answered in full: it was a glitch
                self.limit = self.ceiling = self.probe_from = None
            else:  # the caller asked for no more than before: the probe is for a later, larger read
                self.limit, self.probe_from, self.full_answers = self.probe_from, None, 0
            return
        if self.limit is None or self.ceiling is None or self.settled or asked < self.limit:
            return  # nothing to recover, or a file's tail, which says nothing about the limit
        self.full_answers += 1
        if self.full_answers >= self.patience:
            self.probe_from, self.limit = self.limit, self.ceiling

    def _lower(self, size: int, failed: int, patience: int) -> None:
        if self.probe_from is not None:  # the size failed twice: the chip's limit, no more probes
            self.settled, self.probe_from = True, None
        self.limit, self.ceiling, self.full_answers, self.patience = size, failed, 0, patience

    def restore(self, earlier: ChunkMemory) -> None:
        """Forget what was learned since ``earlier`` (a copy): the refusals were about something else."""
        self.limit, self.extended_refused, self.ceiling = earlier.limit, earlier.extended_refused, earlier.ceiling
        self.settled, self.full_answers, self.patience = earlier.settled, earlier.full_answers, earlier.patience
        self.probe_from, self.short_once = earlier.probe_from, earlier.short_once


@dataclass(slots=True)
class _Reader:
    """One file being read: the connection, its short file id, and the card's chunk memory."""

    conn: ApduConnection
    sfi: int
    memory: ChunkMemory

    @property
    def name(self) -> str:
        return file_name(self.sfi)

    def command_text(self, offset: int) -> str:
        return f"READ BINARY {self.name} offset {offset}"

    def send(self, command: CommandApdu) -> ResponseApdu:
        return self.conn.send_and_receive(command)

    def odd(self, offset: int, first: bool) -> bool:
        return offset > MAX_B0_OFFSET and not first

    def read_binary(self, offset: int, le: int, *, by_sfi: bool) -> tuple[ResponseApdu, int]:
        """One READ BINARY with Le ``le``; returns the answer (DO 53 unwrapped) and its length on the wire."""
        extended = le > LE_MAX_SHORT
        if by_sfi:
            command = read_by_sfi_command(self.sfi, le, offset)
        elif offset <= MAX_B0_OFFSET:
            command = CommandApdu(0x00, INS_READ_BINARY, offset >> 8, offset & 0xFF, le=le, extended=extended)
        else:
            return self._read_odd(offset, le)
        response = self.send(command)
        return response, len(response.data)

    def _read_odd(self, offset: int, le: int) -> tuple[ResponseApdu, int]:
        """B1 with offset DO 54; the answer comes wrapped in DO 53, whose header counts against Le."""
        if offset > MAX_B1_OFFSET:
            raise LdsError("file larger than 16 MB", what=self.name, offset=offset)
        encoded = offset.to_bytes(3 if offset > 0xFFFF else 2, "big")
        offset_object = tlv.encode(0x54, encoded)
        command = CommandApdu(0x00, INS_READ_BINARY_ODD, 0, 0, offset_object, le=le, extended=le > LE_MAX_SHORT)
        response = self.send(command)
        if not response.data:
            return response, 0
        try:
            tag, length, pos = tlv.read_header(response.data)
        except TlvError as exc:
            raise LdsError(f"odd READ BINARY answer: {exc}", what=self.name, offset=offset) from exc
        if tag != 0x53 or pos + length != len(response.data):
            raise LdsError("odd READ BINARY answer is not one 53 object", what=self.name, offset=offset)
        return ResponseApdu(response.data[pos:], response.sw), len(response.data)

    def fetch(self, offset: int, want: int, cap: int, *, first: bool = False) -> bytes:
        """Read up to ``want`` bytes at ``offset`` with Le at most ``cap``, stepping down on refusals.

        ``first`` is the file's first read (by short file id unless the chip wants SELECT), whose Le may run past
        the end of a short file: a short answer is normal there. Later reads never ask past the length the header
        announced, so a short answer means the chip caps its answers, and that size is remembered. ``cap`` bounds
        the whole plain answer (so secure messaging's overhead still fits); past offset 0x7FFF the DO 53 header
        of B1 answers counts against it.
        """
        odd = self.odd(offset, first)
        le = min(want + odd_overhead(want), cap) if odd else min(want, cap)
        by_sfi = first and not self.memory.select_files
        learned_before = dataclasses.replace(self.memory)
        hints = 0
        while True:
            try:
                response, wire_length = self.read_binary(offset, le, by_sfi=by_sfi)
            except TransportFailedError as exc:
                le = self.after_transport_failure(exc, le)
                continue
            expected = min(want, odd_room(le)) if odd else le
            data = response.data[:expected]
            if data and response.sw == SW_OK:
                if len(data) < expected and not first:
                    self.memory.cap_answers(wire_length, le)
                elif len(data) == expected:
                    self.memory.answered_in_full(le)
                return data
            if data and response.sw == SW_WARNING_EOF:
                if len(data) < expected and not first:
                    raise LdsError("the file ends before the length in its header", what=self.name, offset=offset)
                return data
            if by_sfi and response.sw in SFI_REFUSALS:
                self.switch_to_select()
                by_sfi = False
                continue
            hint = response.sw & 0xFF or 256
            if response.sw >> 8 == SW1_WRONG_LE and 0 < hint < le and hints < MAX_WRONG_LE_HINTS:
                hints += 1
                le = hint
                continue
            if response.sw not in (SW_WRONG_LENGTH, SW_WRONG_P1P2, SW_WARNING_EOF, SW_OK):
                raise status_error(response.sw, self.command_text(offset))
            if le > LE_MAX_SHORT and not self.memory.extended_refused:
                self.memory.extended_refused = True
                le = LE_MAX_SHORT
                continue
            next_le = self.memory.step_down(le)
            if next_le is None and by_sfi and response.sw == SW_WRONG_P1P2:  # no Le helps: the SFI was refused
                self.memory.restore(learned_before)
                self.switch_to_select()
                by_sfi = False
                le = min(want, self.memory.size_for(cap))
                continue
            if next_le is None or (odd and odd_room(next_le) < 1):
                raise status_error(response.sw, self.command_text(offset))
            le = next_le

    def after_transport_failure(self, exc: TransportFailedError, le: int) -> int:
        """The Le to try after the reader failed a READ BINARY of ``le``; re-raises when no smaller one can help.

        Only a failure over the reader's command limit says extended length is refused: a card reset under the read
        (SCARD_W_RESET_CARD) is re-raised as it is, so the session re-opens and resumes at the same Le."""
        if le > LE_MAX_SHORT and not self.memory.extended_refused and exc.over_limit == "command":
            self.memory.extended_refused = True  # whatever the limit, short APDUs are what every reader carries
            return LE_MAX_SHORT
        if exc.over_limit == "response":
            smaller = self.memory.step_down(le)
            if smaller is not None:
                return smaller
        raise exc

    def switch_to_select(self) -> None:
        """The chip refused the read by short file id: SELECT the file, and remember to do so for the next ones."""
        select_file(self.conn, self.sfi)
        self.memory.select_files = True


def odd_overhead(size: int) -> int:
    """Bytes the DO 53 header adds to ``size`` data bytes in an odd-INS READ BINARY answer."""
    return 1 + len(tlv.encode_length(size))


def odd_room(le: int) -> int:
    """Most data bytes an odd-INS READ BINARY answer of at most ``le`` bytes can carry (its DO 53 included)."""
    room = max(le - 2, 0)
    while room and room + odd_overhead(room) > le:
        room -= 1
    return room


def _clamp_chunk(conn: ApduConnection, chunk: int, extended_ok: bool) -> int:
    if chunk < 1:
        raise ValueError("chunk must be positive")
    if not (extended_ok and conn.supports_extended_length):
        chunk = min(chunk, LE_MAX_SHORT)
    return chunk


def read_file(
    conn: ApduConnection,
    sfi: int,
    *,
    chunk: int = CHUNK_PLAIN,
    extended_ok: bool = False,
    memory: ChunkMemory | None = None,
) -> bytes:
    """Read the whole file with short file id ``sfi`` (its current DF must be selected).

    By short file id, or by SELECT and offset once ``memory`` says the chip refused that (see the module docstring).
    ``chunk`` is the caller's Le per READ BINARY (223 under AES SM, 231 under 3DES SM, 256 plain, more with
    ``extended_ok``). Raises typed errors: :class:`~edge.errors.FileNotFoundOnCardError` (6A82),
    :class:`~edge.errors.SecurityStatusError` (6982), other :class:`~edge.errors.StatusWordError`, and
    :class:`~edge.errors.LdsError` with file name and offset when the bytes do not add up. Transport errors
    (card removed) pass through. Never returns a partial file.
    """
    if not 1 <= sfi <= 30:
        raise ValueError(f"short file id out of range: {sfi}")
    memory = memory if memory is not None else ChunkMemory()
    reader = _Reader(conn, sfi, memory)
    requested = _clamp_chunk(conn, chunk, extended_ok)  # before the memory's limit, which may lift mid-file
    if memory.select_files:
        select_file(conn, sfi)
    size = memory.size_for(requested)
    buffer = bytearray(reader.fetch(0, size, size, first=True))
    total = _total_length(reader, buffer)
    while total is None:  # header not complete yet (a chip answering in tiny pieces)
        cap = memory.size_for(requested)
        buffer += reader.fetch(len(buffer), cap, cap)
        total = _total_length(reader, buffer)
    while len(buffer) < total:
        cap = memory.size_for(requested)
        buffer += reader.fetch(len(buffer), min(cap, total - len(buffer)), cap)
    return bytes(buffer[:total])


def _total_length(reader: _Reader, buffer: bytearray) -> int | None:
    """Total file length from its TLV header, or None when more bytes are needed to see the header."""
    try:
        _tag, length, value_offset = tlv.read_header(bytes(buffer))
    except TlvError as exc:
        if len(buffer) >= _HEADER_MAX:
            raise LdsError(f"no valid TLV header: {exc}", what=reader.name, offset=exc.offset) from exc
        return None
    return value_offset + length
