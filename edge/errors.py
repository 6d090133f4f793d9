"""One error tree for cccd-edge.

Every failure the terminal can meet ends in a subclass of :class:`EdgeError`, so the daemon can map any of them to
an LED pattern and a support-desk message without guessing. Leaves carry the data a support desk needs (status
word, file, offset) and, like gpiozero's errors, also inherit the builtin they resemble so generic callers still
catch them (``except TimeoutError`` catches :class:`CardTimeoutError`).

Tree::

    EdgeError
    ├── ConfigError(ValueError)                 bad or missing configuration key
    ├── ReaderError                             PC/SC transport
    │   ├── NoReaderError                       no reader attached / pcscd down
    │   ├── NoCardError                         no card on the reader
    │   ├── CardRemovedError                    card left the field during an exchange
    │   ├── TransmitError(OSError)              the exchange failed for another reason
    │   └── CardTimeoutError(TimeoutError)      nothing happened within the allowed time
    ├── CardError                               the chip answered, but not as hoped
    │   ├── StatusWordError                     unexpected status word (carries sw, command)
    │   │   ├── FileNotFoundOnCardError         6A82
    │   │   └── SecurityStatusError             6982 (needs access the terminal does not have)
    │   ├── AccessKeyRejectedError              PACE/BAC refused the CAN / MRZ key
    │   ├── AccessControlError                  PACE/BAC failed for a reason other than the key
    │   └── SecureMessagingError                bad MAC, missing SM objects, session lost
    ├── ParseError(ValueError)                  malformed bytes or text (carries what, offset)
    │   ├── TlvError                            BER-TLV structure
    │   ├── MrzError                            MRZ text / check digits
    │   ├── LdsError                            an LDS file (carries file name)
    │   └── QrFormatError                       a QR that is not a CCCD QR
    ├── VerificationError                       a cryptographic check could not be performed
    ├── DeliveryError                           outbox / MQTT
    │   └── OutboxFullError                     refuse new reads rather than drop old results
    └── CommandError(ValueError)                office command rejected (bad signature, expired, replayed)
"""

from __future__ import annotations


class EdgeError(Exception):
    """Root of every error cccd-edge raises on purpose."""

    #: A short hint for the officer's support desk: what to check or do.
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (hint: {self.hint})" if self.hint else base


class ConfigError(EdgeError, ValueError):
    """The configuration is invalid; carries the offending key."""

    hint = "fix the named key in the config file and restart"

    def __init__(self, message: str, *, key: str = "", hint: str | None = None) -> None:
        super().__init__(f"config {key}: {message}" if key else message, hint=hint)
        self.key = key


# --- transport -------------------------------------------------------------------------------------------------


class ReaderError(EdgeError):
    """Something went wrong talking to the card reader (PC/SC)."""


class NoReaderError(ReaderError):
    hint = "check the reader's USB cable and that pcscd is running (systemctl status pcscd)"


class NoCardError(ReaderError):
    hint = "place the card flat on the reader"


class CardRemovedError(ReaderError):
    hint = "ask the citizen to keep the card on the reader until the light turns green"


class TransmitError(ReaderError, OSError):
    hint = "retry; if it repeats, reconnect the reader or restart pcscd"


class CardTimeoutError(ReaderError, TimeoutError):
    hint = "the card or reader did not answer in time; retry"


# --- card ------------------------------------------------------------------------------------------------------


class CardError(EdgeError):
    """The chip answered, but not with what the protocol expects."""


class StatusWordError(CardError):
    """The chip answered with an unexpected status word."""

    def __init__(self, sw: int, command: str = "", *, message: str | None = None) -> None:
        text = message or f"card answered {sw:04X}" + (f" to {command}" if command else "")
        super().__init__(text)
        self.sw = sw
        self.command = command


class FileNotFoundOnCardError(StatusWordError):
    """6A82: the file does not exist on this card."""


class SecurityStatusError(StatusWordError):
    """6982: the file needs an access right the terminal does not have."""


class AccessKeyRejectedError(CardError):
    hint = "check the CAN (last 6 digits of the ID number) or the MRZ data; do not retry more than once"


class AccessControlError(CardError):
    hint = "the chip refused the secure session; retry once, then report the card"


class SecureMessagingError(CardError):
    hint = "the secure channel broke; retry the read"


# --- parsing ---------------------------------------------------------------------------------------------------


class ParseError(EdgeError, ValueError):
    """Malformed input; carries what was being parsed and the byte/char offset."""

    def __init__(self, message: str, *, what: str = "", offset: int | None = None) -> None:
        where = what + (f" at offset {offset}" if offset is not None else "")
        super().__init__(f"{where}: {message}" if where else message)
        self.what = what
        self.offset = offset


class TlvError(ParseError):
    """Malformed BER-TLV."""


class MrzError(ParseError):
    """Malformed machine-readable zone or wrong check digit."""


class LdsError(ParseError):
    """Malformed LDS file (EF.COM, DGn, EF.SOD, EF.CardAccess)."""


class QrFormatError(ParseError):
    """The QR text is not a CCCD QR code."""


# --- verification, delivery, commands --------------------------------------------------------------------------


class VerificationError(EdgeError):
    """A cryptographic check could not be performed or did not hold."""


class DeliveryError(EdgeError):
    """The result could not be stored or delivered."""


class OutboxFullError(DeliveryError):
    hint = "the terminal is offline with a full queue; restore the network before reading more cards"


class CommandError(EdgeError, ValueError):
    """An office command was rejected (bad signature, expired, replayed, malformed)."""
