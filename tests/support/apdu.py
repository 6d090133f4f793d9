"""A processor for the APDU chain that records what passes through it, for tests that count or inspect commands."""

from __future__ import annotations

from edge.protocol.apdu import ApduConnection, CommandApdu, ResponseApdu


class Recorder:
    """Records every command on its way to ``inner`` (under SM the header stays in clear: INS, P1 and P2 show)."""

    def __init__(self, inner: ApduConnection) -> None:
        self.inner = inner
        self.commands: list[CommandApdu] = []

    @property
    def supports_extended_length(self) -> bool:
        return self.inner.supports_extended_length

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        self.commands.append(command)
        return self.inner.send_and_receive(command)
