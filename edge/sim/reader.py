"""The virtual reader: a model of a real reader's limits and escape channel between vpcd and the virtual card.

vpcd carries any APDU, so on its own it proves nothing about the readers wards buy. :class:`VirtualReader` sits
where the reader's firmware would (vpcd client -> reader model -> :class:`~edge.sim.card.VirtualCard`) and fails
the transport as close to the real reader as pcscd + vpcd allow. Measured with pcscd 1.9.9 + vpcd: a zero-length
answer blocks ``SCardTransmit`` (no error, no return), and dropping the vpcd link returns an empty answer at once
while vpcd accepts the card again only at its next presence poll (transmits fail meanwhile). A one-byte answer
comes back to the client at once, as an exchange without a status word, with the link intact: that is the failure
this model gives, the nearest to SCARD_E_NOT_TRANSACTED that vpcd can carry. The driver maps both to
:class:`~edge.errors.TransportFailedError`.

What the reader does to the card when it fails an exchange is the model's ``on_failure``: ``keeps-card`` (the chip
never saw the command, or kept its state) or ``resets-card`` (the chip is powered anew: session and selected
application gone). A profile that does not document it is modelled the pessimistic way (resets), one whose extended
length is unknown as short-only: the read must survive the worse reader.

The escape channel: ACS's ``FF 00 40`` pseudo-APDU (LED and buzzer; intercepted by the reader, never passed to
the card) is recorded as :class:`IndicatorCommand` and answered ``90 <LED state>`` as the ACR122U does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from edge.protocol.apdu import CommandApdu
from edge.protocol.readers import (
    GENERIC,
    PROFILES,
    SHORT_COMMAND_MAX,
    SHORT_RESPONSE_MAX,
    VIRTUAL,
    IndicatorChannel,
    ReaderProfile,
)
from edge.sim.vpcd import VpcdCard

#: ACS pseudo-APDU header of "bi-colour LED and buzzer control": FF 00 40 <LED state control> 04 T1 T2 reps buzzer.
ACS_LED_HEADER = bytes((0xFF, 0x00, 0x40))
#: What the model answers in place of a response when it fails an exchange: one byte, no status word.
FAILED_EXCHANGE = b"\x00"


@dataclass(frozen=True, slots=True)
class ReaderModel:
    """How the virtual reader behaves: the limits it enforces, what a failure does to the card, its escape."""

    key: str  # the profile it models (edge.protocol.readers)
    max_command: int = 0xFFFF  # vpcd's own limit: a 2-byte length
    max_response: int = 0xFFFF
    extended: bool = True  # passes extended-form APDUs
    on_failure: Literal["keeps-card", "resets-card"] = "keeps-card"
    escape: IndicatorChannel = "none"

    @property
    def signature(self) -> tuple[int, int, bool, str]:
        """What decides a read's course through this reader (two models with one signature read alike)."""
        return self.max_command, self.max_response, self.extended, self.on_failure


def model_for(profile: ReaderProfile) -> ReaderModel:
    """The virtual reader for ``profile``: documented limits as documented, unknown ones the pessimistic way."""
    extended = profile.extended_length is True
    max_command = profile.max_command or (0xFFFF if extended else SHORT_COMMAND_MAX)
    max_response = profile.max_response or (0xFFFF if extended else SHORT_RESPONSE_MAX)
    keeps = profile.on_failure == "keeps-card" or (profile.on_failure == "unknown" and profile.refused_unsent is True)
    escape = profile.indicator_channel if profile.indicator_channel == "acs-pseudo-apdu" else "none"
    return ReaderModel(profile.key, min(max_command, 0xFFFF), min(max_response, 0xFFFF), extended,
                       "keeps-card" if keeps else "resets-card", escape)  # fmt: skip


#: A model for every profile, keyed like the profiles.
MODELS: dict[str, ReaderModel] = {profile.key: model_for(profile) for profile in (*PROFILES, VIRTUAL, GENERIC)}


@dataclass(frozen=True, slots=True)
class IndicatorCommand:
    """One ``FF 00 40`` LED/buzzer command as the reader received it (API-ACR122U's fields)."""

    led_control: int  # P2: final red/green, masks, initial blinking states, blinking masks
    t1: int  # initial blinking state duration, 100 ms units
    t2: int  # toggle blinking state duration, 100 ms units
    repetitions: int
    buzzer: int  # 0 off, 1 during T1, 2 during T2, 3 during both

    @property
    def final_red(self) -> bool:
        return bool(self.led_control & 0x01)

    @property
    def final_green(self) -> bool:
        return bool(self.led_control & 0x02)


@dataclass(slots=True)
class ReaderLog:
    """What crossed the model: failed exchanges and indicator commands (read by tests from another thread)."""

    failures: list[str] = field(default_factory=list)
    indicators: list[IndicatorCommand] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class VirtualReader:
    """A :class:`~edge.sim.vpcd.VpcdCard` that puts a :class:`ReaderModel` in front of ``card``."""

    def __init__(self, card: VpcdCard, model: ReaderModel) -> None:
        self.card = card
        self.model = model
        self.log = ReaderLog()
        self._led_state = 0

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def power_on(self) -> bytes:
        return self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def lift(self) -> None:
        self.card.lift()

    def reset(self) -> bytes:
        return self.card.reset()

    def process(self, raw: bytes) -> bytes:
        model = self.model
        if model.escape == "acs-pseudo-apdu" and raw[:3] == ACS_LED_HEADER:
            return self._led_and_buzzer(raw)
        if len(raw) > model.max_command or (not model.extended and _extended(raw)):
            return self._fail(f"command of {len(raw)} bytes over the reader's limit")
        answer = self.card.process(raw)
        if len(answer) > model.max_response:
            return self._fail(f"answer of {len(answer)} bytes over the reader's limit")
        return answer

    def _fail(self, why: str) -> bytes:
        with self.log.lock:
            self.log.failures.append(why)
        if self.model.on_failure == "resets-card":
            self.card.reset()
        return FAILED_EXCHANGE

    def _led_and_buzzer(self, raw: bytes) -> bytes:
        """API-ACR122U: FF 00 40 P2 04 T1 T2 reps buzzer; answer 90 <current LED state> (6300 when malformed)."""
        if len(raw) != 9 or raw[4] != 4:
            return bytes((0x63, 0x00))
        command = IndicatorCommand(raw[3], raw[5], raw[6], raw[7], raw[8])
        with self.log.lock:
            self.log.indicators.append(command)
        self._led_state = int(command.final_red) | int(command.final_green) << 1
        return bytes((0x90, self._led_state))


def _extended(raw: bytes) -> bool:
    try:
        return CommandApdu.from_bytes(raw).extended
    except ValueError:
        return False
