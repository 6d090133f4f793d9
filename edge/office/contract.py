"""What the gateway tells the procedure software, as models: the REST API's resources and the webhook's payload.

One shape of a stored result (:class:`ResultRecord`) for the API (``GET /v1/results``) and the webhook
(``result.stored``), so that software reading either gets the same fields. The models generate the OpenAPI document
(``edge/schemas/openapi.json``); they hold no FastAPI import, so the webhook sender uses them without the server.

A served result carries each address's units of today (:class:`AddressUnits`, the ``mapping`` that ``cccd-edge read
--json``, ``verify`` and the officer's pages show), mapped when it is served and never stored: a new data package
changes the answer at the next request or delivery, with no terminal or database touched.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from edge.errors import AdminUnitsDataError
from edge.office.admin_units import AdminUnits, Confidence, default_units, map_address
from edge.protocol.commands import CommandKey
from edge.protocol.result import CONSENT_REF_PATTERN, MAX_CONSENT_REF_CHARS, ProcedureProfile, ResultDocument
from edge.protocol.verify.checks import Verdict

#: Results one page gives at most (a page may carry photos).
MAX_PAGE = 200
DEFAULT_PAGE = 50
#: The webhook's event type for a stored result (Standard Webhooks: full-stop delimited).
RESULT_STORED: Literal["result.stored"] = "result.stored"
#: The fields of a result's citizen that hold an address (:data:`edge.office.admin_units.ADDRESS_FIELDS`).
AddressField = Literal["place_of_residence", "place_of_origin", "place_of_birth_registration"]
_ADDRESS_FIELDS: tuple[AddressField, ...] = get_args(AddressField)
#: Distinct address texts whose units are kept mapped (a ward's addresses repeat; about 4 KB each: 16 MB at most).
MAPPED_ADDRESSES = 4096


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActiveAuthOutcome(_Out):
    """The gateway's own Active Authentication check against the challenge of its ``read_request``."""

    status: Literal["passed", "failed", "absent"]
    reason: str
    algorithm: str | None = None


class UnitOut(_Out):
    name: str
    code: str = Field(description="official code (Decision 19/2025/QĐ-TTg; of 2025-06-30 for the old units): "
                                  "2 digits a province, 3 a district, 5 a commune")  # fmt: skip


class OldUnitsOut(_Out):
    """The units of 2025-06-30 the address was read as."""

    province: UnitOut | None
    district: UnitOut | None
    commune: UnitOut | None


class AddressUnits(_Out):
    """Today's units of one address of the document: the ``mapping`` that ``cccd-edge verify`` and ``cccd-edge read
    --json`` print (``UnitMapping.as_dict``). The address itself is in ``document.citizen``, as signed."""

    confidence: Confidence = Field(description="exact: one unit today; split: its residents went to several "
                                               "(candidates), none guessed; unknown: not found or ambiguous (reason)")
    province: UnitOut | None = Field(description="today's province (given for unknown too when the old one was read)")
    commune: UnitOut | None = Field(description="today's commune-level unit, only when exact")
    candidates: list[UnitOut] = Field(description="today's units that received its residents, only when split")
    old: OldUnitsOut
    data_version: str = Field(description="the mapping's data: the vietnamadminunits package's version and the "
                                          "gateway's corrections (unavailable: not installed at the gateway)")
    reason: str | None = Field(default=None, description="why split or unknown")
    sources: list[str] | None = Field(default=None, description="the resolution clauses behind a corrected entry")


@functools.lru_cache(maxsize=MAPPED_ADDRESSES)
def _address_units(units: AdminUnits | None, address: str) -> AddressUnits:
    """Pure in (data, text): mapping one address costs about 0.1 ms, and a ward's results repeat their addresses."""
    return AddressUnits.model_validate(map_address(address, units).as_dict())


def addresses_of(document: ResultDocument) -> dict[AddressField, AddressUnits]:
    """Each address the document's citizen holds, with its units of today (none: no citizen, e.g. reduced)."""
    citizen = document.citizen
    if citizen is None:
        return {}
    try:
        units: AdminUnits | None = default_units()
    except AdminUnitsDataError:
        units = None  # each mapping is then unknown, saying why
    texts = ((name, getattr(citizen, name, None)) for name in _ADDRESS_FIELDS)
    return {name: _address_units(units, text) for name, text in texts if isinstance(text, str)}


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
    addresses: dict[AddressField, AddressUnits] = Field(
        default_factory=dict, description="each address of document.citizen (by field) with today's administrative "
                                          "units, mapped by the gateway when it serves the result; {} when the "
                                          "document holds no address")  # fmt: skip

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ResultRecord:
        """From :data:`RESULT_COLUMNS`, in that order."""
        iss, ward, seq, jti, received, iat, verdict, flags, active_auth, kid, stored_by, document, token = row
        parsed = ResultDocument.model_validate_json(document)
        return cls(terminal=iss, ward=ward, seq=seq, jti=jti, received=received, iat=iat, verdict=verdict,
                   rung=Verdict(verdict).rung, flags=json.loads(flags), request_id=parsed.request_id,
                   active_auth=json.loads(active_auth) if active_auth else None, kid=kid, stored_by=stored_by,
                   document=parsed, token=token)  # fmt: skip

    def with_addresses(self) -> ResultRecord:
        """This record as served: :attr:`addresses` mapped now with the installed data (never stored)."""
        return self.model_copy(update={"addresses": addresses_of(self.document)})


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
        """The body for ``record``, its addresses mapped now (a retry maps them again)."""
        return cls(type=RESULT_STORED, timestamp=datetime.fromtimestamp(record.received, UTC),
                   data=record.with_addresses())


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
