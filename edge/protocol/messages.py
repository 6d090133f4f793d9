"""What a terminal and the ward office say to each other over MQTT, as models: the contract of every topic.

Topics are ``{prefix}/{ward}/{terminal}/{leaf}`` (``prefix`` ``cccd-edge/v1`` unless configured):

=========  ======================  ==============================================================================
leaf       who publishes           payload
=========  ======================  ==============================================================================
result     the terminal, QoS 1     compact JWS (or a JWE around it) whose claims are :class:`ResultClaims`
status     the terminal, retained  :class:`TerminalStatus` JSON (the last will says ``{"state": "offline"}`` and
                                   the terminal's ``version``); an empty retained message clears it
event      the terminal, QoS 1     :data:`TerminalEvent` JSON, never personal data
cmd        the office, QoS 1       compact JWS by the ward command key, claims :data:`edge.protocol.commands.Command`
receipt    the gateway, QoS 1      compact JWS by the receipt key, claims :class:`edge.protocol.receipt.ReceiptClaims`
=========  ======================  ==============================================================================

The models refuse unknown fields: the AsyncAPI document generated from them (``edge/schemas/asyncapi.json``,
:mod:`edge.protocol.asyncapi`) is exact, and the stack tests validate every message they see against it, so a
field added to a status or an event must be added here first. The terminal builds its status and events as dicts
(the daemon's modules); ``tests/unit/test_asyncapi.py`` keeps their names and values in step with these models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from edge.protocol.clock import ClockSource
from edge.protocol.receipt import MAX_SEQ, RESULT_JTI_PATTERN
from edge.protocol.result import ResultDocument

DEFAULT_TOPIC_PREFIX = "cccd-edge/v1"
#: One plain MQTT topic level (a terminal id, a ward code, a level of the prefix): no wildcard, no separator, no
#: empty level. Matched with ``fullmatch``: ``$`` would let a trailing newline through.
TOPIC_LEVEL = re.compile(r"[A-Za-z0-9_.-]+")


def _plain_topic_levels(value: str) -> str:
    if not all(TOPIC_LEVEL.fullmatch(level) for level in value.split("/")):
        raise ValueError("each segment must be letters, digits, '_', '.' or '-' (no wildcards, no empty)")
    return value


#: A configured topic prefix (terminal and gateway alike): plain levels only, since a wildcard or an empty level
#: would make the gateway subscribe to, or a terminal publish on, topics that are not its own.
TopicPrefix = Annotated[str, AfterValidator(_plain_topic_levels)]
#: The last topic level of each kind of message.
TOPIC_LEAVES = ("result", "status", "event", "cmd", "receipt")
TopicLeaf = Literal["result", "status", "event", "cmd", "receipt"]

_Short = Annotated[str, Field(max_length=64)]
_Text = Annotated[str, Field(max_length=1000)]
_RequestId = Annotated[str | None, Field(default=None, max_length=64)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- result ----------------------------------------------------------------------------------------------------------


class ResultClaims(_Message):
    """The claims of a result token (``typ`` ``cccd-result+jwt``, ES256, ``x5c`` the device certificate chain)."""

    iss: str = Field(min_length=1, max_length=64, description="the terminal id")
    kid: str = Field(min_length=1, max_length=128, description="RFC 7638 thumbprint of the device key")
    seq: int = Field(ge=0, le=MAX_SEQ, description="the terminal's result counter: a jump is a gap")
    jti: str = Field(pattern=RESULT_JTI_PATTERN, description="unique per result: (iss, jti) de-duplicates")
    iat: int = Field(description="when the terminal signed, by its clock (Unix seconds)")
    exp: int | None = Field(default=None, description="signed by older terminals only; the office ignores it")
    result: ResultDocument


# --- status ----------------------------------------------------------------------------------------------------------

TerminalState = Literal["ready", "wait_card", "wait_key", "reading", "hold_still", "verifying", "result_ok",
                        "result_unproven", "result_failed", "fault"]  # fmt: skip
IndicatorPattern = Literal["ready", "scanning", "hold_still", "success", "unproven", "failure", "offline_queued",
                           "clock_unsynchronised", "fault"]  # fmt: skip


#: A terminal's software version as its status may say it (PEP 440 and local builds fit): the office shows it, so
#: it is bounded in length and characters; anything else is an unknown version (:func:`software_version`).
SOFTWARE_VERSION_PATTERN = r"^[0-9A-Za-z.+_-]{1,32}$"
_SOFTWARE_VERSION = re.compile(SOFTWARE_VERSION_PATTERN)


def software_version(status: Mapping[str, Any]) -> str | None:
    """The ``version`` a terminal's status names, or None (unknown) when it says none or one that is not a plain
    version string: the office reads statuses as JSON objects, and a hostile terminal may put anything there."""
    version = status.get("version")
    return version if isinstance(version, str) and _SOFTWARE_VERSION.fullmatch(version) else None


class StatusClock(_Message):
    synchronised: bool
    source: ClockSource


class TerminalStatus(_Message):
    """The terminal's retained status: ``state`` and ``version`` alone while it connects and in its last will, the
    rest once its loop has run (the office's fleet view)."""

    state: Literal["online", "offline"]
    version: str | None = Field(default=None, pattern=SOFTWARE_VERSION_PATTERN, description="the terminal's "
                                "software version (``cccd-edge --version``), in every status it publishes, its last "
                                "will too; older terminals do not say it")  # fmt: skip
    terminal_state: TerminalState | None = None
    indicator: IndicatorPattern | None = None
    reader: Literal["ok", "missing"] | None = None
    camera: Literal["ok", "missing"] | None = None
    queued: int | None = Field(default=None, ge=0, description="results in the outbox the broker has not "
                               "acknowledged yet")  # fmt: skip
    awaiting_receipt: int | None = Field(default=None, ge=0, description="results the broker acknowledged, kept in "
                                         "the outbox until the office's receipt names them")  # fmt: skip
    outbox_full: bool | None = None
    storage_full: bool | None = None
    held: int | None = Field(default=None, ge=0, description="results held in memory until the disk has room")
    last_error: _Text | None = None
    clock: StatusClock | None = None


# --- events ----------------------------------------------------------------------------------------------------------

#: What the terminal's state machine reports (``edge.daemon.state.Report``): ``detail`` is a reason or a state.
ReportName = Literal["read_failed", "read_refused", "qr_rejected", "card_removed", "cancelled", "storage_fault",
                     "result", "device_back", "device_lost", "timeout", "busy"]  # fmt: skip


class ReportEvent(_Message):
    event: ReportName
    detail: _Text = ""
    request_id: _RequestId


class ClockEvent(_Message):
    event: Literal["clock_synchronised", "clock_not_synchronised"]
    source: ClockSource
    floor: str | None = Field(default=None, max_length=64, description="ISO 8601: a time that has passed for certain")


class CommandRejectedEvent(_Message):
    event: Literal["command_rejected"]
    reason: Literal["malformed", "bad_signature", "unknown_key", "expired", "replayed", "wrong_terminal",
                    "unknown_command", "encryption_required", "photo_not_needed", "storage"]  # fmt: skip
    jti: str | None = Field(default=None, max_length=64)


class CommandAcceptedEvent(_Message):
    event: Literal["command_accepted"]
    cmd: Literal["read_request", "cancel"]
    jti: _Short


class PongEvent(_Message):
    event: Literal["pong"]
    jti: _Short
    state: TerminalState


class TrustUpdatedEvent(_Message):
    event: Literal["trust_updated"]
    jti: _Short
    iss: _Short
    version: int
    listed: int = Field(ge=0)
    added: list[_Short] = Field(description="SHA-256 fingerprints of the Document Signers pinned now")
    removed: list[_Short]
    repeated: bool


class TrustUpdateRefusedEvent(_Message):
    event: Literal["trust_update_refused"]
    jti: _Short
    reason: _Short
    detail: _Text = ""


class ResultNotStoredEvent(_Message):
    event: Literal["result_not_stored"]
    reason: _Short
    request_id: _RequestId
    action: Literal["repeat_read"] | None = None


class ResultHeldEvent(_Message):
    event: Literal["result_held"]
    reason: _Short
    request_id: _RequestId
    held: int = Field(ge=0)


class ResultStoredLateEvent(_Message):
    event: Literal["result_stored"]
    seq: int = Field(ge=0)
    request_id: _RequestId
    late: bool


class DeliveryRecoveredEvent(_Message):
    event: Literal["delivery_recovered"]


class DeliveryFaultEvent(_Message):
    event: Literal["delivery_fault"]
    error: _Short


class PublishRefusedEvent(_Message):
    event: Literal["publish_refused"]
    seq: int = Field(ge=0)
    reason: _Text


class ReceiptRefusedEvent(_Message):
    """A receipt the terminal did not believe: the results it names stay in the outbox (published again later)."""

    event: Literal["receipt_refused"]
    reason: Literal["malformed", "unknown_key", "bad_signature", "expired", "replayed", "wrong_terminal"]


class ResultQuarantinedEvent(_Message):
    event: Literal["result_quarantined"]
    seq: int = Field(ge=0)
    reason: _Text


AnyEvent = (ReportEvent | ClockEvent | CommandRejectedEvent | CommandAcceptedEvent | PongEvent | TrustUpdatedEvent
            | TrustUpdateRefusedEvent | ResultNotStoredEvent | ResultHeldEvent | ResultStoredLateEvent
            | DeliveryRecoveredEvent | DeliveryFaultEvent | PublishRefusedEvent | ResultQuarantinedEvent
            | ReceiptRefusedEvent)
#: One ``/event`` message, told apart by ``event``.
TerminalEvent = Annotated[AnyEvent, Field(discriminator="event")]
EVENT_ADAPTER = TypeAdapter[AnyEvent](TerminalEvent)


def event_names() -> frozenset[str]:
    """Every ``event`` value the contract knows."""
    names: set[str] = set()
    for model in get_args(AnyEvent):
        names.update(get_args(model.model_fields["event"].annotation))
    return frozenset(names)
