"""What the gateway tells the procedure software, as models: the REST API's resources and the webhook's payload.

One shape of a stored result (:class:`ResultRecord`) for the API (``GET /v1/results``) and the webhook
(``result.stored``), so that software reading either gets the same fields. The models generate the OpenAPI document
(``edge/schemas/openapi.json``); they hold no FastAPI import, so the webhook sender uses them without the server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge.protocol.commands import CommandKey
from edge.protocol.result import CONSENT_REF_PATTERN, MAX_CONSENT_REF_CHARS, ProcedureProfile, ResultDocument
from edge.protocol.verify.checks import Verdict

#: Results one page gives at most (a page may carry photos).
MAX_PAGE = 200
DEFAULT_PAGE = 50
#: The webhook's event type for a stored result (Standard Webhooks: full-stop delimited).
RESULT_STORED: Literal["result.stored"] = "result.stored"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActiveAuthOutcome(_Out):
    """The gateway's own Active Authentication check against the challenge of its ``read_request``."""

    status: Literal["passed", "failed", "absent"]
    reason: str
    algorithm: str | None = None


class ResultRecord(_Out):
    """A result as the gateway stored it: who sent it, what the gateway judged, the document and the signed token."""

    terminal: str = Field(description="the terminal id (the token's iss)")
    ward: str | None = Field(description="the document's ward code")
    seq: int
    jti: str = Field(description="unique per result of a terminal; the webhook-id of its webhook")
    received: float = Field(description="when the gateway stored it (Unix seconds)")
    iat: int | None = Field(description="when the terminal signed it, by the terminal's clock (Unix seconds)")
    verdict: Verdict = Field(description="as the terminal sent it")
    rung: Verdict = Field(description="the verdict's rung on the ladder (a legacy spelling as its current one)")
    flags: list[str] = Field(description="what the gateway noted about the times: late, future, clock_skew, "
                                         "clock_unsynchronised")  # fmt: skip
    request_id: str | None = Field(description="the read request this result answers, if any")
    active_auth: ActiveAuthOutcome | None = Field(description="only for a read request's challenge")
    kid: str | None = Field(description="the device key that signed (RFC 7638 thumbprint)")
    stored_by: str | None = Field(description="the gateway instance that stored it")
    document: ResultDocument
    token: str = Field(description="the terminal's signed JWS, for software that verifies on its own")

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ResultRecord:
        """From :data:`RESULT_COLUMNS`, in that order."""
        iss, ward, seq, jti, received, iat, verdict, flags, active_auth, kid, stored_by, document, token = row
        parsed = ResultDocument.model_validate_json(document)
        return cls(terminal=iss, ward=ward, seq=seq, jti=jti, received=received, iat=iat, verdict=verdict,
                   rung=Verdict(verdict).rung, flags=json.loads(flags), request_id=parsed.request_id,
                   active_auth=json.loads(active_auth) if active_auth else None, kid=kid, stored_by=stored_by,
                   document=parsed, token=token)  # fmt: skip


#: The ``results`` columns :meth:`ResultRecord.from_row` reads.
RESULT_COLUMNS = "iss, ward, seq, jti, received, iat, verdict, flags, active_auth, kid, stored_by, document, token"


class ResultPage(_Out):
    items: list[ResultRecord]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: nothing more now")


class WebhookEvent(_Out):
    """The body of a webhook (Standard Webhooks payload structure: type, timestamp, data)."""

    type: Literal["result.stored"]
    timestamp: datetime = Field(description="when the gateway stored the result")
    data: ResultRecord

    @classmethod
    def stored(cls, record: ResultRecord) -> WebhookEvent:
        return cls(type=RESULT_STORED, timestamp=datetime.fromtimestamp(record.received, UTC), data=record)


class FleetEntry(_Out):
    ward: str
    terminal: str
    state: str | None = Field(description="online / offline, as the terminal's retained status says")
    version: str | None = Field(description="the terminal's software version from its status, checked "
                                            "([0-9A-Za-z.+_-]{1,32}); null when absent or not a version")
    status: dict[str, Any] = Field(description="the retained status as published, unchecked text "
                                               "(edge/schemas/asyncapi.json)")
    received: float


class Fleet(_Out):
    terminals: list[FleetEntry]


class ReadRequestIn(BaseModel):
    """Ask a terminal to read the card this key opens (the citizen hands it over at the counter)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: CommandKey
    profile: ProcedureProfile | None = Field(default=None, description="unset: the terminal's default")
    include_photo: bool = False
    consent_ref: str | None = Field(
        default=None, max_length=MAX_CONSENT_REF_CHARS, pattern=CONSENT_REF_PATTERN,
        description="the procedure software's reference of the citizen's consent record (its own record id, never "
                    "an ID number or name), carried into the result's processing.consent_ref")  # fmt: skip


class ReadRequestOut(_Out):
    request_id: str = Field(description="the command's jti; the result carries it as request_id")
    ward: str
    terminal: str
    expires_at: int = Field(description="the command is refused by the terminal after this (Unix seconds)")
    challenge: str = Field(description="the Active Authentication challenge (hex) the gateway checks the answer "
                                       "against")  # fmt: skip


class OnlineAnswerOut(_Out):
    """An answer of the national authentication service recorded against an ``online_check`` result: what it is
    and when, not its values (personal data: they stay in the gateway's database)."""

    answer_id: int
    terminal: str = Field(description="the result's terminal (the token's iss)")
    jti: str = Field(description="the result's jti")
    received: float = Field(description="when the gateway recorded it (Unix seconds)")
    keys: list[str] = Field(description="the answer object's keys, sorted")
    recorded_by: str | None = Field(description="the gateway instance that recorded it")

    @classmethod
    def of(cls, summary: dict[str, Any]) -> OnlineAnswerOut:
        """From ``OnlineAnswer.summary()`` (the one view of an answer without its values)."""
        return cls(terminal=summary["iss"], **{name: value for name, value in summary.items() if name != "iss"})


class OnlineAnswerPage(_Out):
    items: list[OnlineAnswerOut] = Field(description="oldest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: nothing more now")


class DeadLetter(_Out):
    id: int
    endpoint: str
    event: str
    terminal: str
    jti: str
    ward: str
    attempts: int
    last_status: int | None = Field(description="the receiver's last HTTP status, null when none came")
    last_error: str | None
    created: float
    last_attempt: float | None


class DeadLetterPage(_Out):
    items: list[DeadLetter]
    next_cursor: str | None


class Problem(_Out):
    """An error (FastAPI's shape): what went wrong, without personal data."""

    detail: str
