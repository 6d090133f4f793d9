"""Secure messaging (ICAO 9303-11 9.8): a processor in the APDU chain, plus the four codec functions both sides use.

The reader wraps its connection in :class:`SecureMessaging` after BAC/PACE; the simulated chip calls
:func:`unprotect_command` / :func:`protect_response` with the same keys, so a bug cannot hide by being symmetric
on one side only (the worked examples pin the reader side down).

Send-sequence counter discipline (the one rule that breaks sessions in the field): the SSC is incremented once
before every command MAC and once before every response MAC check. An answer without SM objects ("naked" 6700,
6A82, 6982...) is the exception: a chip answers naked only to a command it refused before secure messaging (an
extended APDU it cannot take, gmrtd issue 457's passport), so it counted neither message and the SSC goes back to
where it was before the command. A refusal then costs one APDU, not the session: counting it on our side only
would make the next command's MAC fail at the chip and end the session (the read used to re-authenticate there).
6987/6988 mean the chip erased its keys: the connection raises :class:`SessionLostError` and refuses further use;
the caller re-authenticates once and resumes.

A transport failure (:class:`~edge.errors.TransportFailedError`) is decided by what it says about the chip: a
command the reader never sent leaves both counters where they were (rolled back, the channel stays open); an answer
the reader lost after the chip sent it was counted by the chip (both increments kept); when that cannot be known,
the channel is closed as lost, and the caller re-authenticates and resumes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from edge.errors import (
    SecureMessagingError,
    SessionLostError,
    SmIntegrityError,
    SmObjectsMissingError,
    TlvError,
    TransportFailedError,
)
from edge.protocol import crypto, tlv
from edge.protocol.apdu import LE_MAX_EXTENDED, LE_MAX_SHORT, ApduConnection, CommandApdu, ResponseApdu
from edge.protocol.crypto import CipherSuite
from edge.protocol.iso7816 import CLA_SM, SW1_BYTES_REMAINING, SW_OK, SW_SM_INCORRECT, SW_SM_MISSING

TAG_DO85 = 0x85  # cryptogram, no padding-content indicator (odd INS)
TAG_DO87 = 0x87  # 01 || cryptogram
TAG_DO97 = 0x97  # Le
TAG_DO99 = 0x99  # processing status
TAG_DO8E = 0x8E  # cryptographic checksum


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """Session keys of one secure channel; ``repr`` hides the key bytes so they never reach a log."""

    suite: CipherSuite
    ks_enc: bytes = field(repr=False)
    ks_mac: bytes = field(repr=False)

    def ssc_bytes(self, ssc: int) -> bytes:
        return (ssc % (1 << (8 * self.suite.block_size))).to_bytes(self.suite.block_size, "big")


def _encrypt(keys: SessionKeys, ssc: int, data: bytes) -> bytes:
    iv = crypto.sm_iv(keys.suite, keys.ks_enc, keys.ssc_bytes(ssc))
    return crypto.encrypt_cbc(keys.suite, keys.ks_enc, crypto.pad(data, keys.suite.block_size), iv)


def _decrypt(keys: SessionKeys, ssc: int, data: bytes) -> bytes:
    iv = crypto.sm_iv(keys.suite, keys.ks_enc, keys.ssc_bytes(ssc))
    return crypto.unpad(crypto.decrypt_cbc(keys.suite, keys.ks_enc, data, iv))


def _mac(keys: SessionKeys, ssc: int, data: bytes) -> bytes:
    return crypto.sm_mac(keys.suite, keys.ks_mac, keys.ssc_bytes(ssc) + data)


def _encode_le(command: CommandApdu) -> bytes:
    if not command.le:
        return b""
    if command.extended or command.le > LE_MAX_SHORT:
        return tlv.encode(TAG_DO97, (command.le % LE_MAX_EXTENDED).to_bytes(2, "big"))
    return tlv.encode(TAG_DO97, bytes((command.le % LE_MAX_SHORT,)))


def _cryptogram_object(keys: SessionKeys, ssc: int, ins: int, data: bytes) -> bytes:
    if not data:
        return b""
    cryptogram = _encrypt(keys, ssc, data)
    if ins & 1:
        return tlv.encode(TAG_DO85, cryptogram)
    return tlv.encode(TAG_DO87, b"\x01" + cryptogram)


def protect_command(keys: SessionKeys, ssc: int, command: CommandApdu) -> CommandApdu:
    """Wrap ``command`` with the (already incremented) ``ssc``."""
    cla = command.cla | CLA_SM
    header = crypto.pad(bytes((cla, command.ins, command.p1, command.p2)), keys.suite.block_size)
    body = _cryptogram_object(keys, ssc, command.ins, command.data) + _encode_le(command)
    checksum = tlv.encode(TAG_DO8E, _mac(keys, ssc, header + body))
    data = body + checksum
    extended = command.extended or command.le > LE_MAX_SHORT or len(data) > 255
    return CommandApdu(
        cla, command.ins, command.p1, command.p2, data, le=LE_MAX_EXTENDED if extended else LE_MAX_SHORT,
        extended=extended,
    )


def _split_objects(data: bytes, what: str) -> tuple[dict[int, tlv.Tlv], bytes]:
    """Decode SM data objects; return them by tag and the raw bytes that precede DO8E (the MAC input)."""
    try:
        objects = tlv.decode_all(data)
    except TlvError as exc:
        raise SmIntegrityError(f"{what}: malformed SM data objects ({exc})") from exc
    by_tag: dict[int, tlv.Tlv] = {}
    for obj in objects:
        if obj.tag in by_tag:
            raise SmIntegrityError(f"{what}: duplicate SM object {obj.tag:X}")
        by_tag[obj.tag] = obj
    checksum = by_tag.get(TAG_DO8E)
    if checksum is None:
        raise SmObjectsMissingError(f"{what}: no DO8E checksum")
    if objects[-1].tag != TAG_DO8E:
        raise SmIntegrityError(f"{what}: objects after DO8E")
    return by_tag, data[: checksum.offset]


def _verify(keys: SessionKeys, ssc: int, covered: bytes, checksum: tlv.Tlv, what: str) -> None:
    if not hmac.compare_digest(_mac(keys, ssc, covered), checksum.value):
        raise SmIntegrityError(f"{what}: MAC does not verify")


def _plain_from(keys: SessionKeys, ssc: int, objects: dict[int, tlv.Tlv], what: str) -> bytes:
    if TAG_DO87 in objects:
        value = objects[TAG_DO87].value
        if not value or value[0] != 0x01:
            raise SmIntegrityError(f"{what}: DO87 without padding indicator 01")
        return _decrypt(keys, ssc, value[1:])
    if TAG_DO85 in objects:
        return _decrypt(keys, ssc, objects[TAG_DO85].value)
    return b""


def unprotect_command(keys: SessionKeys, ssc: int, command: CommandApdu) -> CommandApdu:
    """Chip side: check and strip SM from ``command`` (``ssc`` already incremented)."""
    if command.cla & CLA_SM != CLA_SM:
        raise SmObjectsMissingError("command is not secured")
    objects, covered = _split_objects(command.data, "command")
    header = crypto.pad(bytes((command.cla, command.ins, command.p1, command.p2)), keys.suite.block_size)
    _verify(keys, ssc, header + covered, objects[TAG_DO8E], "command")
    data = _plain_from(keys, ssc, objects, "command")
    le = 0
    extended = len(data) > 255
    if TAG_DO97 in objects:
        raw = objects[TAG_DO97].value
        if len(raw) not in (1, 2):
            raise SmIntegrityError("command: DO97 must hold 1 or 2 bytes")
        extended = extended or len(raw) == 2
        le = int.from_bytes(raw, "big") or (LE_MAX_EXTENDED if len(raw) == 2 else LE_MAX_SHORT)
    try:
        return CommandApdu(command.cla & ~CLA_SM & 0xFF, command.ins, command.p1, command.p2, data, le, extended)
    except ValueError as exc:
        raise SmIntegrityError(f"command: unwrapped APDU is invalid ({exc})") from exc


def protect_response(keys: SessionKeys, ssc: int, response: ResponseApdu) -> ResponseApdu:
    """Chip side: wrap ``response`` (DO87 if data, DO99 always, DO8E) with the incremented ``ssc``."""
    body = b""
    if response.data:
        body += tlv.encode(TAG_DO87, b"\x01" + _encrypt(keys, ssc, response.data))
    body += tlv.encode(TAG_DO99, response.sw.to_bytes(2, "big"))
    return ResponseApdu(body + tlv.encode(TAG_DO8E, _mac(keys, ssc, body)), response.sw)


def unprotect_response(keys: SessionKeys, ssc: int, response: ResponseApdu) -> ResponseApdu:
    """Reader side: verify and strip SM from a response that carries SM objects (``ssc`` already incremented)."""
    objects, covered = _split_objects(response.data, "response")
    _verify(keys, ssc, covered, objects[TAG_DO8E], "response")
    data = _plain_from(keys, ssc, objects, "response")
    sw = response.sw
    if TAG_DO99 in objects:
        status = objects[TAG_DO99].value
        if len(status) != 2:
            raise SmIntegrityError("response: DO99 must hold 2 bytes")
        sw = int.from_bytes(status, "big")
    return ResponseApdu(data, sw)


def max_plain_response(suite: CipherSuite, response_limit: int) -> int:
    """Largest plaintext whose protected response (DO87 + DO99 + DO8E) fits in ``response_limit`` data bytes."""
    block = suite.block_size
    best = 0
    # ciphertext is the plaintext padded to the next whole block (at least one padding byte)
    for ciphertext in range(block, response_limit + 1, block):
        value = 1 + ciphertext
        total = 1 + len(tlv.encode_length(value)) + value + 4 + 10
        if total <= response_limit:
            best = ciphertext - 1
    return best


class SecureMessaging:
    """An :class:`ApduConnection` that secures every APDU it passes to ``inner`` (yubikit-style processor)."""

    def __init__(self, inner: ApduConnection, keys: SessionKeys, ssc: int = 0) -> None:
        self._inner = inner
        self._keys = keys
        self._ssc = ssc
        self._closed: SecureMessagingError | None = None

    @property
    def inner(self) -> ApduConnection:
        return self._inner

    @property
    def suite(self) -> CipherSuite:
        return self._keys.suite

    @property
    def ssc(self) -> int:
        """Current send-sequence counter (tests check that both sides stay in step)."""
        return self._ssc

    @property
    def supports_extended_length(self) -> bool:
        return self._inner.supports_extended_length

    @property
    def usable(self) -> bool:
        """False once the channel was closed (session lost, integrity failure, a transport failure of unknown
        effect): the caller must open a new one."""
        return self._closed is None

    def rekey(self, keys: SessionKeys, ssc: int = 0) -> None:
        """Switch to new session keys (chip authentication restarts SM with SSC = 0)."""
        self._keys = keys
        self._ssc = ssc
        self._closed = None

    def max_read_chunk(self, extended: bool) -> int:
        """Largest READ BINARY Le whose secured answer fits: 231 (3DES) / 223 (AES) short, ~64 KB extended."""
        limit = LE_MAX_EXTENDED if extended else LE_MAX_SHORT
        return max_plain_response(self._keys.suite, limit)

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        if isinstance(self._closed, SessionLostError):
            raise SessionLostError(self._closed.sw, command.describe())
        if self._closed is not None:
            raise SmIntegrityError(f"secure channel closed after an integrity failure ({self._closed})")
        before = self._ssc
        self._ssc += 1
        protected = protect_command(self._keys, self._ssc, command)
        try:
            response = self._inner.send_and_receive(protected)
        except TransportFailedError as exc:
            self._after_transport_failure(exc, before, command)
            raise
        except Exception:
            self._closed = SessionLostError(0, "transport failed mid-exchange: SSC state unknown")
            raise
        self._ssc += 1
        if response.sw in (SW_SM_MISSING, SW_SM_INCORRECT):
            self._closed = SessionLostError(response.sw, command.describe())
            raise self._closed
        if not response.data:
            if response.sw == SW_OK or response.sw >> 8 == SW1_BYTES_REMAINING:
                self._closed = SmObjectsMissingError(f"{command.describe()}: success without SM objects")
                raise self._closed
            self._ssc = before  # naked: refused before secure messaging, counted by neither side (gmrtd #457)
            return response
        try:
            return unprotect_response(self._keys, self._ssc, response)
        except SmIntegrityError as exc:
            self._closed = exc
            raise

    def _after_transport_failure(self, exc: TransportFailedError, before: int, command: CommandApdu) -> None:
        """Keep the SSC where the chip's is: see the module docstring."""
        if exc.reached_chip is False:
            self._ssc = before
        elif exc.reached_chip is True and not exc.card_reset:
            self._ssc = before + 2
        else:
            self._closed = SessionLostError(0, f"{command.describe()}: the transport failed and whether the chip "
                                            "counted the command cannot be known")  # fmt: skip
