"""Response chaining (ISO/IEC 7816-4 5.1.3): the processor at the bottom of the APDU chain that turns a transport's
raw exchanges into final answers.

A transport (the PC/SC reader, the in-process simulator) exchanges one command for one answer. Two answers are about
the transmission rather than the command: 61xx (xx more bytes wait: fetched with GET RESPONSE and appended) and 6Cxx
(wrong Le: the command is sent again with Le = xx). :class:`ResponseChaining` handles both, so every link above it
(counting, secure messaging, the read strategy) sees one answer per command, whatever the reader's protocol (T=0
readers answer 61xx to any case-4 command).

Bounded: at most :data:`MAX_GET_RESPONSE_ROUNDS` GET RESPONSE rounds per command, and one resend per 6Cxx (the read
strategy follows further 6Cxx hints itself, capped). A secured command (CLA bits 0C) is never resent: the resend
would replay a used send sequence counter and the chip would end the session; secure messaging sees the 6Cxx instead.
"""

from __future__ import annotations

from edge.errors import TransmitError
from edge.protocol.apdu import LE_MAX_SHORT, ApduConnection, CommandApdu, ResponseApdu
from edge.protocol.iso7816 import CLA_CHANNEL, CLA_SM, INS_GET_RESPONSE, SW1_BYTES_REMAINING, SW1_WRONG_LE

#: A card never needs more GET RESPONSE rounds than this for a 64 KB answer; more means a loop.
MAX_GET_RESPONSE_ROUNDS = 300


class ResponseChaining:
    """An :class:`~edge.protocol.apdu.ApduConnection` that follows 61xx with GET RESPONSE and resends on 6Cxx."""

    def __init__(self, inner: ApduConnection) -> None:
        self._inner = inner

    @property
    def inner(self) -> ApduConnection:
        return self._inner

    @property
    def supports_extended_length(self) -> bool:
        return self._inner.supports_extended_length

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        response = self._inner.send_and_receive(command)
        if response.sw1 == SW1_WRONG_LE and not command.extended and not command.cla & CLA_SM:
            resend = CommandApdu(command.cla, command.ins, command.p1, command.p2, command.data,
                                 le=response.sw2 or LE_MAX_SHORT)  # fmt: skip
            response = self._inner.send_and_receive(resend)
        if response.sw1 != SW1_BYTES_REMAINING:
            return response
        data = bytearray(response.data)
        for _ in range(MAX_GET_RESPONSE_ROUNDS):
            get_response = CommandApdu(command.cla & CLA_CHANNEL, INS_GET_RESPONSE, 0, 0,
                                       le=response.sw2 or LE_MAX_SHORT)  # fmt: skip
            response = self._inner.send_and_receive(get_response)
            data += response.data
            if response.sw1 != SW1_BYTES_REMAINING:
                return ResponseApdu(bytes(data), response.sw)
        raise TransmitError("the card kept answering 61xx")


def with_response_chaining(conn: ApduConnection) -> ApduConnection:
    """``conn`` with :class:`ResponseChaining` at its bottom; ``conn`` itself if it already is one (never twice:
    a second link would resend a 6Cxx command once more)."""
    return conn if isinstance(conn, ResponseChaining) else ResponseChaining(conn)
