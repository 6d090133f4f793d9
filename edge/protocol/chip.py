"""One chip read session: access control, EF.SOD, the data groups the SOD lists that are needed, CA and AA.

Order, and why:

1. EF.CardAccess by short file id, plain (the CCCD answers 6D00 to SELECT MF); absent or unreadable (a status word
   in ``card_access.NO_CARD_ACCESS``, e.g. a JavaCard whose card manager answers 6D00) means BAC only, and
   :attr:`ChipRead.no_card_access_reason` says why. Unless the eMRTD application is still selected from an
   earlier session on the same card (a re-read without lifting the card: PC/SC leaves the card as it was, and the
   MF cannot be selected again): one plain probe of EF.COM tells the two apart, and PACE then runs with the
   CCCD's known parameters, as re-authentication does mid-read.
2. The secure channel (PACE first, BAC only as the policy allows: ``edge.protocol.access.policy``).
3. EF.SOD first: it lists the data groups the card really has, so nothing is requested that is not there (no
   6A82 round trips, DG3/DG11 never asked for) and every file read can be hashed against it. Of those, only the
   ones the :class:`ReadRequest` names are read. An EF.SOD that arrived whole but does not parse is a fact about
   the card, not a failed read: it is kept raw (``sod`` None, ``sod_error`` saying why) and verification fails
   it. The data groups are then read as requested without a list, a 6A82 meaning the card has none, so the
   result still shows what the chip holds. A SOD cut short by a removal never gets that far: the transport
   raises :class:`~edge.errors.CardRemovedError` before any byte is parsed (``read_file`` returns whole files
   only), and a file that ends before its own header says is a bad chip answer, as for any other file.
4. DG14, then Chip Authentication right away, but only with a DG14 that hashes to the value EF.SOD lists: its
   key (and explicit curve) is the chip's word until then, and CA would compute on whatever a hostile chip chose.
   A DG14 that does not match (or an EF.SOD that does not parse) makes CA ``failed`` without a command sent.
   CA switches the channel to keys only the genuine chip can derive, so every file read after it (DG1, DG13,
   DG15, DG2) is read *from* the genuine chip. The proof is implicit: the first secured answer after CA that
   verifies. An :class:`SmIntegrityError` or a 6987/6988 there means the chip
   does not hold the DG14 key (a clone); it is retried once (the chip may simply have lost its session), then
   recorded as a failed CA and the rest is read over a fresh channel without CA, so the verdict can say why.
5. Active Authentication last, when DG15 is there.

A check whose data group the request leaves out (DG14 for CA, DG15 for AA) is ``not_performed``, saying so.

Reads go by short file id without SELECT (on a chip that refuses that, by SELECT and offset: see the file-read
strategy, ``edge.protocol.read_strategy``), in chunks as large as secure messaging allows (extended length when the
transport carries it), stepping down where the chip refuses and remembering what worked in a :class:`ChunkMemory`.
A 6987/6988 mid-read re-authenticates once (redoing CA if it was done) and resumes at the offset reached: the
chunks already received are kept and not read again.

Nothing partial leaves this module: any other error aborts the whole read with a typed error (with a note naming the
file and offset); a card removal stays a :class:`~edge.errors.CardRemovedError`. A read has a deadline: the caller's
``expired`` is asked before every APDU, and once it says so the read ends in
:class:`~edge.errors.ReadDeadlineError`. Pure: connection, randomness and the deadline are injected (no clock here).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from edge.errors import (
    AccessControlError,
    EdgeError,
    FileNotFoundOnCardError,
    PaceNotSupportedError,
    ParseError,
    ReadDeadlineError,
    SessionLostError,
    SignatureError,
    SmIntegrityError,
    StatusWordError,
    TransportFailedError,
)
from edge.protocol import tlv
from edge.protocol.access.active_auth import CHALLENGE_LENGTH, ActiveAuthResult, active_authenticate
from edge.protocol.access.card_access import SecurityInfos, no_card_access_reason, parse_security_infos
from edge.protocol.access.chip_auth import (
    NO_CHIP_AUTHENTICATION,
    ChipAuthResult,
    chip_auth_unsupported,
    perform_chip_auth,
)
from edge.protocol.access.pace import PaceResult
from edge.protocol.access.policy import AccessKey, AccessMethod, SecureChannel, open_secure_channel
from edge.protocol.apdu import ApduConnection, CommandApdu, ResponseApdu
from edge.protocol.chaining import with_response_chaining
from edge.protocol.crypto import Random
from edge.protocol.iso7816 import (
    INS_READ_BINARY,
    INS_READ_BINARY_ODD,
    INS_SELECT,
    SW_OK,
    SW_SECURITY_STATUS,
    SW_WARNING_EOF,
    SW_WRONG_P1P2,
)
from edge.protocol.lds.dg1 import Dg1, parse_dg1
from edge.protocol.lds.dg2 import FaceImage, parse_dg2
from edge.protocol.lds.dg11 import Dg11, parse_dg11
from edge.protocol.lds.dg12 import Dg12, parse_dg12
from edge.protocol.lds.dg13 import Dg13, parse_dg13
from edge.protocol.lds.dg14 import Dg14, parse_dg14
from edge.protocol.lds.dg15 import Dg15, parse_dg15
from edge.protocol.lds.sod import SodFile, parse_sod
from edge.protocol.read_strategy import (
    SFI_REFUSALS,
    ChunkMemory,
    file_name,
    odd_room,
    read_by_sfi_command,
    read_file,
    select_command,
    select_file,
)
from edge.protocol.sm import SecureMessaging
from edge.protocol.verify.checks import CheckStatus
from edge.protocol.verify.signatures import digest

log = logging.getLogger(__name__)

SFI_CARD_ACCESS = 0x1C
SFI_SOD = 0x1D
SFI_COM = 0x1E
#: EF.CardAccess as real CCCDs carry it (cccd-card.md): PACE-ECDH-GM-AES-128 on brainpoolP256r1, CA, TA. Used only
#: to run PACE when the card's own copy cannot be reached because its eMRTD application is still selected.
CCCD_CARD_ACCESS = bytes.fromhex(
    "3134300d060804007f0007020202020101300f060a04007f000702020302020201013012060a04007f0007020204020202010202010d"
)
DG_PHOTO = 2
DG_CHIP_AUTH = 14
DG_ACTIVE_AUTH = 15
#: What a read asks for unless told otherwise: MRZ, personal data, and the keys of CA and AA.
DEFAULT_DATA_GROUPS = frozenset({1, 13, DG_CHIP_AUTH, DG_ACTIVE_AUTH})
#: DG3 (fingerprints) and DG4 (iris) need Terminal Authentication, which this terminal does not implement.
EAC_PROTECTED = frozenset({3, 4})
#: Re-authentications allowed after the chip dropped its session (ICAO: re-authenticate once, then give up).
MAX_REAUTHENTICATIONS = 1
#: Le of the first (plain) EF.CardAccess read: extended, so it probes the chip and the reader before any session.
CHUNK_CARD_ACCESS = 1024
#: Reruns of one step on the same channel after transport failures that secure messaging kept in step.
MAX_TRANSPORT_RERUNS = 2

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """What to read and prove. ``aa_challenge`` fixes the AA challenge (8 bytes; else drawn from ``rng``).

    ``data_groups`` are read where the SOD lists them (``want_photo`` adds DG2): fewer for a quicker read, or
    DG11/DG12 too. CA needs DG14 and AA needs DG15: left out, that check is ``not_performed``. AA with an EC key
    but without DG14 hashes as the key size suggests, since DG14 is where the chip names its algorithm.
    ``read_com`` reads EF.COM too, after the data groups (under CA's keys when CA ran): it is no evidence (the SOD
    does not cover it), but the national authentication service takes it (``edge.protocol.procedures``).
    """

    key: AccessKey
    want_photo: bool = False
    aa_challenge: bytes | None = field(default=None, repr=False)
    allow_bac_fallback: bool = False
    do_chip_auth: bool = True
    do_active_auth: bool = True
    data_groups: frozenset[int] = DEFAULT_DATA_GROUPS
    read_com: bool = False

    def __post_init__(self) -> None:
        if self.aa_challenge is not None and len(self.aa_challenge) != CHALLENGE_LENGTH:
            raise ValueError(f"an AA challenge is {CHALLENGE_LENGTH} bytes")
        if not all(1 <= number <= 16 for number in self.data_groups):
            raise ValueError(f"data groups are numbered 1 to 16, not {sorted(self.data_groups)}")
        if self.data_groups & EAC_PROTECTED:
            raise ValueError("DG3 and DG4 need Terminal Authentication, which this terminal does not implement")

    @property
    def wanted(self) -> frozenset[int]:
        """Every data group to read: ``data_groups``, plus DG2 with ``want_photo``."""
        return self.data_groups | ({DG_PHOTO} if self.want_photo else frozenset())


@dataclass(frozen=True, slots=True)
class AccessOutcome:
    """How the channel was opened: method, protocol OID (``BAC`` for BAC), attempts, re-authentications."""

    method: AccessMethod
    protocol: str
    attempts: int
    reauthentications: int


@dataclass(frozen=True, slots=True)
class ChipAuthOutcome:
    """CA status (passed only once a secured answer under the new keys verified) and plain-words reason."""

    status: CheckStatus
    reason: str
    result: ChipAuthResult | None = None


@dataclass(frozen=True, slots=True)
class ApduStats:
    """What this read cost: the APDUs it sent and their bytes, counted once, above response chaining (a GET RESPONSE
    round or a 6Cxx resend of that link is part of the answer it completes, not an APDU of its own)."""

    apdus: int
    bytes_sent: int
    bytes_received: int


@dataclass(frozen=True, slots=True)
class ChipRead:
    """A complete chip read: raw bytes per file (for hashing), parsed objects, and what was proven.

    ``no_card_access_reason`` says why ``card_access`` is None (absent, or refused: BAC only).
    ``sod`` is None when EF.SOD does not parse (``sod_error`` says why: verification then fails). ``data_groups``
    maps DG number to the file exactly as read; ``requested`` is what the request asked for; ``not_read`` lists
    the DGs the SOD lists that were not requested (e.g. DG2 without ``want_photo``). ``com`` is EF.COM as read, when
    the request asked for it and the card has one.
    """

    card_access: bytes | None
    card_access_infos: SecurityInfos | None
    no_card_access_reason: str | None
    sod_raw: bytes
    sod: SodFile | None
    sod_error: str | None
    data_groups: Mapping[int, bytes]
    requested: frozenset[int]
    dg1: Dg1 | None
    dg2: FaceImage | None
    dg11: Dg11 | None
    dg12: Dg12 | None
    dg13: Dg13 | None
    dg14: Dg14 | None
    dg15: Dg15 | None
    not_read: tuple[int, ...]
    access: AccessOutcome
    chip_auth: ChipAuthOutcome
    active_auth: ActiveAuthResult
    stats: ApduStats
    chunk_limit: int | None
    extended_length: bool
    com: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_groups", MappingProxyType(dict(self.data_groups)))

    @property
    def files(self) -> dict[str, bytes]:
        """Every file read, exactly as read, by its LDS name (``COM``, ``SOD``, ``DG1``...): what a procedure that
        forwards the chip's own files (``online_check``) picks from."""
        named = {f"DG{number}": content for number, content in sorted(self.data_groups.items())}
        return ({"COM": self.com} if self.com is not None else {}) | {"SOD": self.sod_raw} | named


class CountingConnection:
    """A processor just above response chaining that counts APDUs and bytes (commands out, final answers in), the
    one place a read's APDUs are counted, and ends the read with :class:`ReadDeadlineError` once ``expired`` (the
    caller's deadline) says so, before the next APDU."""

    def __init__(self, inner: ApduConnection, expired: Callable[[], bool] | None = None) -> None:
        self.inner = inner
        self.expired = expired
        self.apdus = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def supports_extended_length(self) -> bool:
        return self.inner.supports_extended_length

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        if self.expired is not None and self.expired():
            raise ReadDeadlineError(f"the read ran past its deadline after {self.apdus} APDUs")
        self.apdus += 1
        self.bytes_sent += len(command.to_bytes())
        response = self.inner.send_and_receive(command)
        self.bytes_received += len(response.to_bytes())
        return response

    def stats(self) -> ApduStats:
        return ApduStats(self.apdus, self.bytes_sent, self.bytes_received)


def _read_target(command: CommandApdu) -> tuple[int, int, bool] | None:
    """(offset, most data bytes the answer may carry, addressed by SFI) of a READ BINARY; None for others."""
    if command.ins == INS_READ_BINARY:
        if command.p1 & 0x80:
            return command.p2, command.le, True
        return (command.p1 << 8) | command.p2, command.le, False
    if command.ins == INS_READ_BINARY_ODD:
        try:
            offset = tlv.decode(command.data).value
        except EdgeError:
            return None
        return int.from_bytes(offset, "big"), odd_room(command.le), command.p1 == 0 and command.p2 != 0
    return None


class _Link:
    """What ``read_file`` and the authentication steps talk to: the current secure channel, plus

    * Le fitted to secure messaging (a short Le of 256 after a refused extended read becomes 223/231, so the
      secured answer still fits 256 bytes; ``read_file`` then learns the size as a chip cap);
    * the chunks of the current file received so far, replayed after a re-authentication so the card is only
      asked for what is still missing (the file is SELECTed first if the next card read does not name its SFI
      and ``read_file`` did not SELECT it already, as it does for a chip that refuses reads by SFI);
    * whether chip authentication still awaits its proof (the first verified answer under the new keys).
    """

    def __init__(self, channel: SecureChannel) -> None:
        self.channel = channel
        self.ca_unproven = False
        self._sfi = 0
        self._received = bytearray()
        self._resuming = False
        self._file_selected = True

    @property
    def sm(self) -> SecureMessaging:
        return self.channel.connection

    @property
    def supports_extended_length(self) -> bool:
        return self.sm.supports_extended_length

    @property
    def offset_reached(self) -> int:
        return len(self._received)

    def start_file(self, sfi: int) -> None:
        self._sfi, self._received, self._resuming = sfi, bytearray(), False

    def resume_on(self, channel: SecureChannel) -> None:
        """Continue the current file over a fresh channel (the card's current EF is gone with the session)."""
        self.channel = channel
        self._resuming = bool(self._received)
        self._file_selected = False

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        target = _read_target(command)
        if target is None:
            self._file_selected = self._file_selected or command.ins == INS_SELECT
            return self._send(command)
        command = self._fit(command)
        offset, room, by_sfi = _read_target(command) or target
        if self._resuming and offset + room <= len(self._received):
            data = bytes(self._received[offset : offset + room])
            return ResponseApdu(tlv.encode(0x53, data) if command.ins == INS_READ_BINARY_ODD else data, SW_OK)
        if self._resuming and not by_sfi and not self._file_selected:
            select_file(self, self._sfi)
        self._file_selected = True
        response = self._send(command)
        self._remember(command, offset, response)
        return response

    def _fit(self, command: CommandApdu) -> CommandApdu:
        if command.extended:
            return command
        short_max = self.sm.max_read_chunk(False)
        if command.le > short_max:
            return CommandApdu(command.cla, command.ins, command.p1, command.p2, command.data, le=short_max)
        return command

    def _remember(self, command: CommandApdu, offset: int, response: ResponseApdu) -> None:
        if offset != len(self._received) or response.sw not in (SW_OK, SW_WARNING_EOF) or not response.data:
            return
        data = response.data
        if command.ins == INS_READ_BINARY_ODD:
            try:
                data = tlv.decode(data).value
            except EdgeError:
                return  # read_file reports the malformed answer
        self._received += data

    def _send(self, command: CommandApdu) -> ResponseApdu:
        response = self.sm.send_and_receive(command)
        if self.ca_unproven and (response.sw == SW_OK or response.data):  # a MAC-verified answer
            self.ca_unproven = False
        return response


class _Session:
    """The mutable state of one read; :func:`read_chip` drives it and returns only a complete :class:`ChipRead`."""

    def __init__(self, conn: CountingConnection, request: ReadRequest, card_access: bytes | None, rng: Random,
                 memory: ChunkMemory) -> None:  # fmt: skip
        self.conn = conn
        self.request = request
        self.card_access = card_access  # what PACE is run with (the card's own, or CCCD_CARD_ACCESS)
        self.rng = rng
        self.memory = memory
        channel = self._open()
        self.first = channel
        self.link = _Link(channel)
        self.reauthentications = 0
        self.ca_infos: SecurityInfos | None = None  # set once CA ran and must be redone after re-authentication
        self.ca_outcome: ChipAuthOutcome | None = None
        self.chunk_sizes: dict[tuple[str, bool], int] = {}  # (suite, extended) -> largest secured READ BINARY Le

    def _open(self) -> SecureChannel:
        return open_secure_channel(self.conn, self.request.key, card_access=self.card_access,
                                   allow_bac_fallback=self.request.allow_bac_fallback, rng=self.rng)  # fmt: skip

    def _reopen(self, *, with_ca: bool) -> None:
        self.reauthentications += 1
        channel = self._open()
        self.link.resume_on(channel)
        if with_ca and self.ca_infos is not None:
            self._chip_authenticate(self.ca_infos)

    def _chip_authenticate(self, infos: SecurityInfos) -> ChipAuthResult:
        result = perform_chip_auth(self.link.sm, infos, rng=self.rng)
        self.link.ca_unproven = True
        return result

    def run(self, step: Callable[[], _T], what: str) -> _T:
        """Run ``step``; after a lost session re-authenticate once and rerun it (reads resume where they were).

        A transport failure (the reader failed an exchange, the card still on it) reruns the step on the same
        channel when secure messaging kept it in step (the reader now carries less, and the step uses what it
        carries), and re-authenticates when the channel could not be kept or the reader reset the card."""
        reruns = 0
        while True:
            try:
                return step()
            except TransportFailedError as exc:
                if self.link.sm.usable and not exc.card_reset and reruns < MAX_TRANSPORT_RERUNS:
                    reruns += 1
                    continue
                if self.reauthentications >= MAX_REAUTHENTICATIONS:
                    exc.add_note(f"while {what} at offset {self.link.offset_reached}")
                    raise
                self._reopen(with_ca=True)
            except (SessionLostError, SmIntegrityError) as exc:
                if self.link.ca_unproven:
                    self._ca_not_proven(exc)
                    continue
                if isinstance(exc, SmIntegrityError) or self.reauthentications >= MAX_REAUTHENTICATIONS:
                    exc.add_note(f"while {what} at offset {self.link.offset_reached}")
                    raise
                self._reopen(with_ca=True)
            except EdgeError as exc:
                exc.add_note(f"while {what} at offset {self.link.offset_reached}")
                raise

    def _ca_not_proven(self, exc: SessionLostError | SmIntegrityError) -> None:
        """The first answer after CA did not verify: retry once (a lost session), else the chip is a copy."""
        self.link.ca_unproven = False
        if self.reauthentications < MAX_REAUTHENTICATIONS:
            self._reopen(with_ca=True)
            return
        self.ca_infos = None
        self.ca_outcome = ChipAuthOutcome(
            CheckStatus.FAILED,
            f"the chip could not prove it holds the DG14 key ({type(exc).__name__}): it may be a copy",
        )
        self._reopen(with_ca=False)

    def read(self, sfi: int) -> bytes:
        self.link.start_file(sfi)
        return self.run(lambda: self._read_once(sfi), f"reading {file_name(sfi)}")

    def _read_once(self, sfi: int) -> bytes:
        extended = self.link.supports_extended_length and not self.memory.extended_refused
        return read_file(self.link, sfi, chunk=self._max_chunk(extended), extended_ok=extended, memory=self.memory)

    def _max_chunk(self, extended: bool) -> int:
        """``SecureMessaging.max_read_chunk``, once per suite: it searches block by block (~5 ms for 64 KB under
        AES), which would otherwise be most of the terminal's CPU time for a read."""
        sm = self.link.sm
        key = (sm.suite.name, extended)
        if key not in self.chunk_sizes:
            self.chunk_sizes[key] = sm.max_read_chunk(extended)
        return self.chunk_sizes[key]

    def read_unlisted(self, sfi: int) -> bytes | None:
        """A data group no parsed SOD lists or rules out: 6A82 means the card has none."""
        try:
            return self.read(sfi)
        except FileNotFoundOnCardError:
            return None

    def chip_authentication(self, dg14: Dg14 | None, untrusted: str | None = None) -> None:
        """CA with ``dg14``'s key; ``untrusted`` says why DG14 may not be used (then CA fails unattempted)."""
        if not self.request.do_chip_auth:
            self.ca_outcome = ChipAuthOutcome(CheckStatus.NOT_PERFORMED, "chip authentication was not requested")
            return
        if DG_CHIP_AUTH not in self.request.wanted:
            self.ca_outcome = ChipAuthOutcome(
                CheckStatus.NOT_PERFORMED, "DG14 was not requested, so chip authentication was not performed"
            )
            return
        if dg14 is None:
            self.ca_outcome = ChipAuthOutcome(CheckStatus.NOT_SUPPORTED, NO_CHIP_AUTHENTICATION)
            return
        if untrusted is not None:
            self.ca_outcome = ChipAuthOutcome(
                CheckStatus.FAILED, f"chip authentication was not attempted: {untrusted}, so its key is not used"
            )
            return
        infos = dg14.security_infos
        unsupported = chip_auth_unsupported(infos)
        if unsupported is not None:
            self.ca_outcome = ChipAuthOutcome(CheckStatus.NOT_SUPPORTED, unsupported)
            return
        try:
            result = self.run(lambda: self._chip_authenticate(infos), "running chip authentication")
        except AccessControlError as exc:
            self.ca_outcome = ChipAuthOutcome(CheckStatus.FAILED, f"chip authentication failed: {exc}")
            return
        self.ca_infos = infos
        self.ca_outcome = ChipAuthOutcome(
            CheckStatus.PASSED, "the chip proved it holds the private key of DG14 (secure messaging under the "
            "chip authentication keys verified)", result,
        )  # fmt: skip

    def active_authentication(self, dg14: Dg14 | None, dg15: Dg15 | None, *, dg15_listed: bool) -> ActiveAuthResult:
        if dg15 is None and dg15_listed and DG_ACTIVE_AUTH not in self.request.wanted:
            return ActiveAuthResult(
                CheckStatus.NOT_PERFORMED, "DG15 was not requested, so active authentication was not performed"
            )
        if dg15 is None:
            return ActiveAuthResult.not_supported()
        if not self.request.do_active_auth:
            return ActiveAuthResult(CheckStatus.NOT_PERFORMED, "active authentication was not requested")
        challenge = self.request.aa_challenge or self.rng(CHALLENGE_LENGTH)
        aa_infos = dg14.security_infos.active_authentication if dg14 is not None else ()
        oid = next((info.signature_algorithm for info in aa_infos if info.signature_algorithm), None)
        return self.run(
            lambda: active_authenticate(
                self.link, dg15.public_key, signature_algorithm_oid=oid, rng=lambda _n: challenge
            ),
            "running active authentication",
        )


def _after_chip_auth(wanted: frozenset[int]) -> list[int]:
    """The reading order after DG14: by number, the face image (the largest file) last."""
    return sorted(wanted - {DG_CHIP_AUTH}, key=lambda number: (number == DG_PHOTO, number))


def _parse_sod(sod_raw: bytes) -> tuple[SodFile | None, str | None]:
    """The parsed EF.SOD, or None and why not: a SOD that arrived whole but does not parse is the card's fault,
    reported by verification as a failed check rather than ending the read."""
    try:
        return parse_sod(sod_raw), None
    except ParseError as exc:
        return None, str(exc)


def dg14_untrusted(sod: SodFile | None, content: bytes) -> str | None:
    """Why DG14 may not be used for chip authentication, or None when it hashes to the value EF.SOD lists.

    Whether EF.SOD's signature holds is verification's to say; this only keeps CA from running on a DG14 that the
    SOD does not even claim, the cheapest lie a hostile chip can tell.
    """
    if sod is None:
        return "EF.SOD does not parse, so DG14 cannot be checked against it"
    expected = sod.dg_hashes.get(DG_CHIP_AUTH)
    if expected is None:
        return "EF.SOD lists no hash for DG14"
    try:
        actual = digest(sod.hash_algorithm, content)
    except SignatureError:
        return f"EF.SOD's hash algorithm {sod.hash_algorithm!r} is not supported, so DG14 cannot be checked"
    if not hmac.compare_digest(expected, actual):
        return "DG14 does not hash to the value EF.SOD lists"
    return None


def _read_card_access(conn: ApduConnection, memory: ChunkMemory) -> tuple[bytes | None, str | None]:
    """EF.CardAccess, or None and why the card offers none (see step 1 of the module docstring)."""
    try:
        # An extended Le where the transport may carry it: EF.CardAccess is small, so this costs nothing, and it
        # finds out before any session exists whether the chip (6700) or the reader (a transport failure: a probed
        # reader profile) refuses extended length; the secured reads then never lose a session to it.
        return read_file(conn, SFI_CARD_ACCESS, chunk=CHUNK_CARD_ACCESS, extended_ok=True, memory=memory), None
    except StatusWordError as exc:
        reason = no_card_access_reason(exc.sw)
        if reason is None:
            exc.add_note("while reading EF.CardAccess")
            raise
        log.info("no PACE: %s", reason)
        return None, reason
    except EdgeError as exc:
        exc.add_note("while reading EF.CardAccess")
        raise


def _applet_still_selected(conn: ApduConnection) -> bool:
    """Whether EF.COM answers (6982, or data) to a plain read by SFI, or, on a chip refusing reads by SFI, to
    SELECT: then the eMRTD application is the current DF, not the MF, and a missing EF.CardAccess says nothing
    about PACE."""
    probe = conn.send_and_receive(read_by_sfi_command(SFI_COM, le=1))
    if probe.sw in SFI_REFUSALS or probe.sw == SW_WRONG_P1P2:  # with Le=1, 6B00 cannot be a refused Le
        probe = conn.send_and_receive(select_command(SFI_COM))
    return bool(probe.data) or probe.sw in (SW_OK, SW_WARNING_EOF, SW_SECURITY_STATUS)


def _open_session(conn: CountingConnection, request: ReadRequest, card_access: bytes | None, rng: Random,
                  memory: ChunkMemory) -> _Session:  # fmt: skip
    """The session over the first secure channel; see step 1 of the module docstring for a card left selected."""
    if card_access is not None or not _applet_still_selected(conn):
        return _Session(conn, request, card_access, rng, memory)
    try:
        return _Session(conn, request, CCCD_CARD_ACCESS, rng, memory)
    except PaceNotSupportedError as exc:
        raise AccessControlError(
            "EF.CardAccess cannot be read while the card's eMRTD application is still selected from an earlier "
            "session, and the chip refused PACE there",
            hint="lift the card off the reader and place it again",
        ) from exc


def read_chip(
    conn: ApduConnection,
    request: ReadRequest,
    *,
    rng: Random = os.urandom,
    memory: ChunkMemory | None = None,
    expired: Callable[[], bool] | None = None,
) -> ChipRead:
    """Read and authenticate the chip on ``conn`` (see the module docstring); never returns partial data.

    ``conn`` is a transport (one exchange per APDU, 61xx and 6Cxx as the card gave them): the chain built on it is
    response chaining, then counting and the deadline, then secure messaging. ``expired`` is the read's deadline,
    asked before each APDU (e.g. ``lambda: time.monotonic() >= deadline``)."""
    memory = memory if memory is not None else ChunkMemory()
    counting = CountingConnection(with_response_chaining(conn), expired)
    card_access, no_card_access = _read_card_access(counting, memory)
    card_access_infos = parse_security_infos(card_access, what="EF.CardAccess") if card_access is not None else None
    session = _open_session(counting, request, card_access, rng, memory)
    if session.card_access is not None and card_access is None:
        no_card_access = (
            "EF.CardAccess is out of reach while the eMRTD application is still selected: PACE ran with the "
            "CCCD's parameters"
        )

    sod_raw = session.read(SFI_SOD)
    sod, sod_error = _parse_sod(sod_raw)
    listed = frozenset(sod.dg_hashes) if sod is not None else None

    def fetch(number: int) -> bytes | None:
        if listed is None:
            return session.read_unlisted(number)
        return session.read(number) if number in listed else None

    raw: dict[int, bytes] = {}
    dg14: Dg14 | None = None
    dg14_distrust: str | None = None
    if DG_CHIP_AUTH in request.wanted and (content := fetch(DG_CHIP_AUTH)) is not None:
        raw[DG_CHIP_AUTH] = content
        dg14_distrust = dg14_untrusted(sod, content)
        dg14 = parse_dg14(content)
    session.chip_authentication(dg14, dg14_distrust)
    for number in _after_chip_auth(request.wanted):
        if (content := fetch(number)) is not None:
            raw[number] = content
    com = session.read_unlisted(SFI_COM) if request.read_com else None  # no SOD lists EF.COM: 6A82 means none
    dg1 = parse_dg1(raw[1]) if 1 in raw else None
    dg11 = parse_dg11(raw[11]) if 11 in raw else None
    dg12 = parse_dg12(raw[12]) if 12 in raw else None
    dg13 = parse_dg13(raw[13]) if 13 in raw else None
    dg15 = parse_dg15(raw[DG_ACTIVE_AUTH]) if DG_ACTIVE_AUTH in raw else None
    dg2 = parse_dg2(raw[DG_PHOTO]) if DG_PHOTO in raw else None
    active = session.active_authentication(dg14, dg15, dg15_listed=listed is None or DG_ACTIVE_AUTH in listed)
    if session.link.ca_unproven:  # nothing was exchanged after CA (a card with nothing else to read): prove it now
        proof = (select_command(SFI_SOD) if session.memory.select_files
                 else read_by_sfi_command(SFI_SOD, le=1))  # fmt: skip
        session.run(lambda: session.link.send_and_receive(proof), "proving chip authentication")
    chip_auth = session.ca_outcome or ChipAuthOutcome(CheckStatus.NOT_PERFORMED, "chip authentication did not run")
    if chip_auth.status is CheckStatus.PASSED and session.link.ca_unproven:
        # CA is implicit: only a MAC'd answer under the new keys proves it, and the chip gave none.
        chip_auth = ChipAuthOutcome(CheckStatus.FAILED, "the chip gave no answer protected under the chip "
                                    "authentication keys, so it did not prove it holds the DG14 key", chip_auth.result)
    channel = session.first
    protocol = channel.result.protocol if isinstance(channel.result, PaceResult) else "BAC"
    return ChipRead(
        card_access=card_access,
        card_access_infos=card_access_infos,
        no_card_access_reason=no_card_access,
        sod_raw=sod_raw,
        sod=sod,
        sod_error=sod_error,
        data_groups=raw,
        requested=request.wanted,
        dg1=dg1,
        dg2=dg2,
        dg11=dg11,
        dg12=dg12,
        dg13=dg13,
        dg14=dg14,
        dg15=dg15,
        not_read=tuple(sorted((listed or frozenset()) - request.wanted)),
        access=AccessOutcome(channel.method, protocol, channel.attempts, session.reauthentications),
        chip_auth=chip_auth,
        active_auth=active,
        stats=counting.stats(),
        chunk_limit=memory.limit,
        extended_length=counting.supports_extended_length and not memory.extended_refused,
        com=com,
    )
