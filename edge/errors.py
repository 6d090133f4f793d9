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
    │   │   └── TransportFailedError            the reader failed one exchange, the card still on it (reached_chip)
    │   └── CardTimeoutError(TimeoutError)      nothing happened within the allowed time
    │       └── ReadDeadlineError               a chip read ran past its deadline (the terminal gives up on it)
    ├── CardError                               the chip answered, but not as hoped
    │   ├── StatusWordError                     unexpected status word (carries sw, command)
    │   │   ├── FileNotFoundOnCardError         6A82
    │   │   └── SecurityStatusError             6982 (needs access the terminal does not have)
    │   ├── AccessKeyRejectedError              PACE/BAC refused the CAN / MRZ key
    │   ├── AccessControlError                  PACE/BAC failed for a reason other than the key
    │   │   └── PaceNotSupportedError           the chip refused to start PACE (MSE:Set AT 6A80/6A88/6D00)
    │   └── SecureMessagingError                bad MAC, missing SM objects, session lost
    │       ├── SmIntegrityError                bad MAC, malformed SM objects, bad padding
    │       │   └── SmObjectsMissingError       a secured message lacks DO8E (or the command lacks SM)
    │       └── SessionLostError                6987/6988: the chip dropped its session keys
    ├── ParseError(ValueError)                  malformed bytes or text (carries what, offset)
    │   ├── TlvError                            BER-TLV structure
    │   ├── MrzError                            MRZ text / check digits
    │   ├── LdsError                            an LDS file (carries file name)
    │   ├── PublicKeyFormatError                a public key or certificate that cannot be loaded
    │   │   └── CurveParametersError            explicit EC domain parameters out of bounds or of no known curve
    │   ├── QrFormatError                       a QR that is not a CCCD QR
    │   ├── IdNumberError                       a personal ID number that is not 12 digits
    │   ├── InvalidPointError                   an EC point that is not on the expected curve
    │   └── JsonError                           untrusted JSON: malformed, too large or nested too deep
    ├── CameraError(OSError)                    the camera (or replay source) cannot deliver frames
    ├── QrDecoderUnavailableError               a QR decoder backend is missing or cannot return raw bytes
    ├── AdminUnitsDataError                     the administrative-unit data package is missing or unreadable
    ├── VerificationError                       a cryptographic check could not be performed
    │   ├── SignatureError                      a signature, digest or certificate chain does not hold
    │   ├── TrustStoreError                     a file refused by the CSCA trust store, or an unusable store
    │   │   └── DsListRefusedError              a Document Signer list refused (unsigned, foreign, older...)
    │   └── TokenError                          a JWS/JWE that does not verify or decrypt
    │       ├── TokenSignatureError             well-formed, but the signature does not verify (forged)
    │       ├── TokenExpiredError               past its exp (or issued in the future)
    │       ├── UnknownKeyError                 its kid is not among the trusted keys
    │       ├── DeviceCertificateError          its x5c certificate does not chain to the ward CA, or is revoked
    │       └── ReceiptRefusedError             a gateway receipt refused (carries reason: unsigned, foreign...)
    ├── DeliveryError                           outbox / MQTT
    │   ├── OutboxFullError                     refuse new reads rather than drop old results
    │   ├── OutboxCorruptError                  the outbox database or its key is damaged
    │   └── BrokerStartError                    a private mosquitto (tests, demo) did not start
    ├── StorageError(OSError)                   a database on the terminal's disk cannot be written or opened
    │   └── StorageFullError                    no space left (SQLITE_FULL, ENOSPC): a fault, never a failed card
    ├── SignerError                             the device key's signer failed while signing (a token unplugged)
    ├── CommandError(ValueError)                office command rejected (bad signature, expired, replayed)
    ├── ProvisioningError                       ward CA / device key / certificate install step refused
    ├── OnlineAnswerError(ValueError)           a national-service answer refused (no such online_check result...)
    ├── OfficerAccessError(PermissionError)     the officers' pages refused a request (login, session, role, CSRF)
    └── DemoError                               `cccd-edge demo` could not run to a delivered result
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


class TransportFailedError(TransmitError):
    """The reader failed one exchange while the card stayed on it (SCARD_E_NOT_TRANSACTED, an answer without a
    status word). What it says about the chip decides how the read goes on: ``reached_chip`` False means the reader
    never sent the command (over its length limit: ACS readers, acsccid issue 42), True that the chip answered and
    the reader lost the answer, None that it cannot be known; ``card_reset`` that the reader reset the card (its
    session and selected application are gone); ``over_limit`` names the limit the exchange broke ("command",
    "response" or "" when none is known), so the read steps down to short APDUs or smaller answers."""

    def __init__(self, message: str, *, reached_chip: bool | None, card_reset: bool = False,
                 over_limit: str = "") -> None:  # fmt: skip
        super().__init__(message)
        self.reached_chip = reached_chip
        self.card_reset = card_reset
        self.over_limit = over_limit


class CardTimeoutError(ReaderError, TimeoutError):
    hint = "the card or reader did not answer in time; retry"


class ReadDeadlineError(CardTimeoutError):
    """The read as a whole ran past its deadline (``timeouts.reading``), checked between APDUs: a chip that answers
    slowly or without end never keeps the terminal from the next card."""

    hint = "the card took too long to read; retry once, and report the card if it happens again"


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


class PaceNotSupportedError(AccessControlError):
    """The chip refused MSE:Set AT for PACE: BAC is the only way left (if the policy allows it)."""


class SecureMessagingError(CardError):
    hint = "the secure channel broke; retry the read"


class SmIntegrityError(SecureMessagingError):
    """A secured response failed its MAC, lacked a mandatory object, or decrypted to garbage."""


class SmObjectsMissingError(SmIntegrityError):
    """A message that must be secured carries no DO8E (a chip answers 6987 to such a command)."""


class SessionLostError(SecureMessagingError):
    """6987/6988: the chip erased its session keys; re-authenticate once and resume at the offset reached."""

    hint = "the chip reset its secure session; the terminal re-authenticates once and resumes"

    def __init__(self, sw: int, command: str = "") -> None:
        super().__init__(f"chip dropped the secure session ({sw:04X})" + (f" on {command}" if command else ""))
        self.sw = sw
        self.command = command


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


class PublicKeyFormatError(ParseError):
    """A SubjectPublicKeyInfo or certificate whose key cannot be loaded (unknown curve, malformed DER)."""


class CurveParametersError(PublicKeyFormatError):
    """Explicit EC domain parameters refused before any arithmetic: out of bounds (a field over 521 bits, an order
    of 1, a large cofactor) or spelling out no known curve. A hostile chip picks them to stall the terminal."""


class QrFormatError(ParseError):
    """The QR text is not a CCCD QR code."""


class IdNumberError(ParseError):
    """A personal ID number that is not 12 ASCII digits (so no CAN or MRZ document number can be derived)."""


class InvalidPointError(ParseError):
    """Bytes that do not encode a point on the expected curve (invalid-curve attacks start here)."""


class JsonError(ParseError):
    """Untrusted JSON that is malformed, or refused unparsed for its size or nesting depth (``bounded_json``)."""


# --- camera and QR decoding -----------------------------------------------------------------------------------


class CameraError(EdgeError, OSError):
    """The camera (or a replay source) could not be opened or stopped delivering frames."""

    hint = "check the camera cable and that the service user is in the 'video' group"


class QrDecoderUnavailableError(EdgeError):
    """A QR decoder backend is not installed, or cannot hand over raw bytes (zbar without binary mode)."""

    hint = "install the decoder's package (zxing-cpp, or libzbar0 >= 0.23) or choose the other decoder"


class AdminUnitsDataError(EdgeError):
    """The list of administrative units (old to current) cannot be loaded: its package is absent or changed shape."""

    hint = "install the office extra (pip install 'cccd-edge[office]'), or a vietnamadminunits release this reads"


# --- verification, delivery, commands --------------------------------------------------------------------------


class VerificationError(EdgeError):
    """A cryptographic check could not be performed or did not hold."""


class SignatureError(VerificationError):
    """A signature, message digest or certificate path did not verify; the message says which, in plain words."""


class TrustStoreError(VerificationError):
    """A file offered to the CSCA trust store was refused (garbage, not a CA, master list that does not verify)."""

    hint = "check that the file is a CSCA certificate, CSCA master list or CRL from the issuing authority"


class DsListRefusedError(TrustStoreError):
    """A signed list of known Document Signers was refused for ``reason`` (one of :attr:`REASONS`), machine-readable:
    the daemon reports it on ``/event``. Every reason but ``storage`` is decided before anything is written."""

    REASONS = ("malformed", "unsigned", "unknown_key", "bad_signature", "expired", "wrong_ward", "not_newer",
               "certificate_refused", "record_damaged", "storage")
    hint = "ask the ward (or province) for a current DS list signed with the key this terminal trusts"

    def __init__(self, reason: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{reason}: {message}", hint=hint)
        self.reason = reason
        self.detail = message


class TokenError(VerificationError):
    """A signed (JWS) or encrypted (JWE) token is malformed, forged or cannot be decrypted."""


class TokenSignatureError(TokenError):
    """The token is well-formed but its signature does not verify under the named key: forged or altered."""


class TokenExpiredError(TokenError):
    """The token's ``exp`` has passed, or its ``iat`` lies in the future."""

    hint = "check the clocks of terminal and office (NTP)"


class UnknownKeyError(TokenError):
    """The token names a ``kid`` that is not among the trusted keys."""

    hint = "install the sender's certificate / public key on the receiving side"

    def __init__(self, kid: str) -> None:
        super().__init__(f"unknown key id {kid!r}")
        self.kid = kid


class DeviceCertificateError(TokenError):
    """The device certificate a token carries (``x5c``) is not one the ward CA issued to that terminal and still
    vouches for: another CA, a forged or altered certificate, expired, revoked, or naming another terminal."""

    hint = "issue the terminal a certificate from this ward's CA: python -m provisioning device install"


class ReceiptRefusedError(TokenError):
    """A gateway receipt refused for ``reason`` (one of :attr:`REASONS`): the terminal keeps the results it names."""

    REASONS = ("malformed", "unknown_key", "bad_signature", "expired", "replayed", "wrong_terminal")

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.detail = message


class DeliveryError(EdgeError):
    """The result could not be stored or delivered."""


class OutboxFullError(DeliveryError):
    hint = "the terminal is offline with a full queue; restore the network before reading more cards"


class OutboxCorruptError(DeliveryError):
    hint = "the outbox database or its key file is damaged; keep a copy and call support before deleting it"


class BrokerStartError(DeliveryError):
    """A private mosquitto (tests, the demo) exited or did not listen in time; the message quotes its log."""

    hint = "check that mosquitto is installed (apt install mosquitto) and the log quoted above"


class StorageError(EdgeError, OSError):
    """A database (outbox, replay guard) could not be opened or written for a reason of the disk, not of its
    content: SQLite's I/O, permission and read-only errors. Carries the file it concerns."""

    hint = "check the state directory's disk (df -h, dmesg); the data already stored is intact"

    def __init__(self, message: str, *, path: str = "", hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message, hint=hint)
        self.path = path


class StorageFullError(StorageError):
    """No space left where a database lives. The terminal shows FAULT and refuses reads ("storage full"); a result
    signed meanwhile waits in memory until space returns."""

    hint = "free space on the state directory's disk (df -h; old logs: journalctl --vacuum-size=50M)"


class SignerError(EdgeError):
    """The device key's signer failed once running (a PKCS#11 token unplugged, locked or answering wrongly): the
    configuration was right, so not a :class:`ConfigError`. The result of that read is not stored."""

    hint = "check the token (is it plugged in? p11tool --list-tokens), then restart the terminal"


class CommandError(EdgeError, ValueError):
    """An office command was rejected (bad signature, expired, replayed, malformed)."""


class ProvisioningError(EdgeError):
    """A provisioning step was refused: key and certificate do not match, a CSR is for another ward, a file is
    unreadable or has loose permissions. Carries the offending path when there is one."""

    hint = "see provisioning/README.md for the ward CA -> CSR -> install sequence"

    def __init__(self, message: str, *, path: str = "", hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message, hint=hint)
        self.path = path


class OnlineAnswerError(EdgeError, ValueError):
    """An answer of the national authentication service the office refused to record: no stored result has its jti,
    the result was read under another profile than ``online_check``, or the answer is no bounded JSON object."""

    hint = "give the jti of a stored online_check result and the provider's answer as a JSON object"


class CommandRejectedError(CommandError):
    """An office command refused for ``reason`` (one of :attr:`REASONS`), reported back on the event topic."""

    REASONS = ("malformed", "bad_signature", "unknown_key", "expired", "replayed", "wrong_terminal",
               "unknown_command", "encryption_required", "photo_not_needed", "storage")

    def __init__(self, reason: str, detail: str = "", *, jti: str | None = None) -> None:
        super().__init__(f"command rejected: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.detail = detail
        self.jti = jti


class OfficerAccessError(EdgeError, PermissionError):
    """The officers' pages refused a request: ``reason`` is one of ``login`` (unknown officer or wrong password),
    ``locked`` (too many wrong passwords), ``session`` (none, or timed out), ``role`` (this officer may not see
    that), ``csrf`` (a POST without the session's token), ``input`` (a form field out of shape)."""

    hint = "log in again; a supervisor sets roles and counters with `cccd-edge gateway officer`"

    def __init__(self, reason: str, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(f"{reason}: {message}" if message else reason, hint=hint)
        self.reason = reason


class DemoError(EdgeError):
    """`cccd-edge demo` could not get as far as a delivered result (a part did not start, nothing arrived)."""

    hint = "run with -v for the daemon's log; `cccd-edge doctor` checks each part"
