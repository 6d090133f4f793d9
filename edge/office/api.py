"""The gateway's REST API for the procedure software (FastAPI on Starlette, served by uvicorn; the OpenAPI
document, generated from these routes and :mod:`edge.office.contract`'s models, is ``edge/schemas/openapi.json``).

Routes (every one needs a client: an API key as ``Authorization: Bearer``, or a client certificate on a mutual-TLS
listener). Each client sees and acts on its own wards only: a result (or dead letter) of another ward is a 404, as if
there were none, so ids do not leak; a ward the client names itself (the ``ward`` parameter, the read request's
path) and may not see is a 403, since that name is the client's own input (the answer tells it nothing new)::

    GET  /v1/results?ward&terminal&verdict&since&cursor&limit   stored results in the order stored, by cursor
    GET  /v1/results/{terminal}/{jti}                           one result
    POST /v1/results/{terminal}/{jti}/online-answers            record the national service's answer (201)
    GET  /v1/results/{terminal}/{jti}/online-answers?cursor&limit   the answers recorded, without their values
    POST /v1/wards/{ward}/terminals/{terminal}/read-requests    ask a terminal to read a card (202)
    GET  /v1/fleet?ward                                         each terminal's last status
    GET  /v1/webhooks/dead-letters?endpoint&cursor&limit        deliveries given up
    POST /v1/webhooks/dead-letters/{id}/retry                   send one again (202)

The result list is ordered by when the gateway stored each result, then terminal and jti; ``next_cursor`` is the
position after the page, to pass back now or later (polling). A result taken in late from quarantine keeps its
first arrival time and so lands behind a cursor already past it: software that must see every result exactly once
uses the webhooks (by ``webhook-id``), and the list to catch up or look back.

A read request is signed by the gateway with the ward command key (``api.command_key``, default ``receipts.key``)
with a fresh Active Authentication challenge, registered (any instance checks the answer against it), published on
the terminal's ``cmd`` topic, and answered with its id; the result carries it as ``request_id`` (and the request's
``consent_ref`` in its ``processing``). The chip key in the body is personal data: it travels only inside the signed
command, never into a log.

An ``online_check`` result's chip files go (through the office's provider) to the national authentication service;
the procedure software posts the service's answer back against the result (``ResultStore.record_online_answer``,
as ``cccd-edge gateway online-answer`` does). The answer is personal data: the API answers with its keys, never its
values, and reads at most ``MAX_ONLINE_ANSWER_BYTES`` of the body (more is a 413 before anything is parsed).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from edge.errors import CommandError, OnlineAnswerError, StorageError
from edge.office.api_clients import ApiClient, ApiClients
from edge.office.asgi import MAX_REQUEST_BYTES, BodyLimit
from edge.office.commands import SignedCommand, sign_read_request
from edge.office.contract import (
    DEFAULT_PAGE,
    MAX_PAGE,
    RESULT_COLUMNS,
    DeadLetterPage,
    Fleet,
    FleetEntry,
    OnlineAnswerOut,
    OnlineAnswerPage,
    Problem,
    ReadRequestIn,
    ReadRequestOut,
    ResultPage,
    ResultRecord,
    WebhookEvent,
)
from edge.office.store import MAX_ONLINE_ANSWER_BYTES, OnlineAnswer, ResultStore
from edge.office.webhooks import WebhookQueue
from edge.protocol.jose import Signer
from edge.protocol.result import ProcedureProfile
from edge.protocol.verify.checks import Verdict

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
#: Where the mutual-TLS listener puts the verified client certificate's CN (``scope["state"]``: request.state).
TLS_CLIENT_CN = "tls_client_cn"
_SEGMENT = r"^[A-Za-z0-9_.-]{1,64}$"
_JTI = r"^[\x21-\x7e]{1,128}$"
#: Largest row id a query takes: a larger one overflowed SQLite's INTEGER binding (a 500, not a 422).
_MAX_ID = (1 << 63) - 1
SINCE_NEEDS_OFFSET = "since needs a UTC offset, e.g. 2026-12-06T08:00:00+07:00, or Unix seconds"
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Problem, "description": "no valid API key or certificate"},
                                            404: {"model": Problem, "description": "none such for this client"}}
#: A route with a ward the client names: one it may not see is a 403 (:func:`_wards_of`).
_WARD_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS, 403: {"model": Problem, "description": "the ward named is not one of this client's"}}
_ANSWER_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    400: {"model": Problem, "description": "the body is not a JSON object (or nests too deep)"},
    409: {"model": Problem, "description": "not an online_check result: none of it went to the national service"},
    413: {"model": Problem, "description": f"the body is larger than {MAX_ONLINE_ANSWER_BYTES} bytes"}}
_ANSWER_BODY: dict[str, Any] = {"requestBody": {
    "required": True,
    "description": f"the provider's answer, as it sent it: one JSON object of at most {MAX_ONLINE_ANSWER_BYTES} "
                   "bytes (personal data: kept in the gateway's database, never echoed or logged)",
    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}}}  # fmt: skip


@dataclass
class ApiContext:
    """What the routes use: the store (own connection), the clients, the webhook queue, and how read requests are
    signed and sent (None: this gateway has no command key, or no broker, so it answers 503)."""

    store: ResultStore
    clients: ApiClients
    webhooks: WebhookQueue | None = None
    signer: Signer | None = None
    send_command: Callable[[SignedCommand], None] | None = None
    command_lifetime: int = 120
    serves_ward: Callable[[str], bool] = lambda ward: True
    clock: Callable[[], float] = time.time


_bearer = HTTPBearer(auto_error=False, scheme_name="apiKey",
                     description="An API key from `cccd-edge gateway api-key add --name N --ward W`")


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


def _client(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
            context: Annotated[ApiContext, Depends(_context)]) -> ApiClient:  # fmt: skip
    client = None
    if credentials is not None:
        client = context.clients.by_key(credentials.credentials)
    else:
        common_name = getattr(request.state, TLS_CLIENT_CN, None)
        if isinstance(common_name, str):
            client = context.clients.by_certificate(common_name)
    if client is None:
        raise HTTPException(401, "an API key (Authorization: Bearer) or a registered client certificate is needed",
                            headers={"WWW-Authenticate": "Bearer"})
    return client


Client = Annotated[ApiClient, Depends(_client)]
Context = Annotated[ApiContext, Depends(_context)]


def _wards_of(client: ApiClient, ward: str | None) -> list[str] | None:
    """The wards a query covers (None: every ward); a ward the client may not see is a 403."""
    if ward is not None:
        if not client.may_see(ward):
            raise HTTPException(403, "this client is not allowed the ward it named")  # not echoed back
        return [ward]
    return None if client.every_ward else sorted(client.wards)


def _with_offset(since: datetime) -> datetime:
    """``since`` as given, if it names its UTC offset: a naive time would be read in the server's time zone, which
    the client cannot know (a Unix time is UTC already)."""
    if since.tzinfo is None:
        raise PydanticCustomError("timezone_aware", SINCE_NEEDS_OFFSET)
    return since


def _cursor(received: float, iss: str, jti: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([received, iss, jti]).encode()).decode().rstrip("=")


def _position(cursor: str) -> tuple[float, str, str]:
    try:
        received, iss, jti = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(received, int | float) and isinstance(iss, str) and isinstance(jti, str):
            if "\x00" in iss + jti:  # neither it nor a lone surrogate (encode raises) binds in a database: a 500
                raise ValueError("NUL")
            (iss + jti).encode("utf-8")
            return float(received), iss, jti
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        pass
    raise HTTPException(400, "cursor: not one this API gave")


async def _answer_body(request: Request) -> bytes:
    """The body (:class:`~edge.office.asgi.BodyLimit` has already refused one over ``MAX_REQUEST_BYTES`` unread);
    one over :data:`MAX_ONLINE_ANSWER_BYTES` is a 413."""
    body = await request.body()
    if len(body) > MAX_ONLINE_ANSWER_BYTES:
        raise HTTPException(413, f"the online answer is larger than {MAX_ONLINE_ANSWER_BYTES} bytes")
    return body


def _is_online_check(context: ApiContext, client: ApiClient, terminal: str, jti: str) -> bool:
    """Whether result ``terminal``/``jti`` was read under ``online_check``; 404 when this client has no such result
    (none, reduced by retention, or another ward's). The profile is read from the document here, not in SQL:
    PostgreSQL's ``document::json ->> 'procedure_profile'`` fails on a ``\\u0000`` anywhere in the document (a
    chip's string may hold one), where SQLite's ``json_extract`` and :func:`json.loads` do not."""
    row = context.store.database.execute(
        "SELECT ward, document FROM results WHERE iss=? AND jti=? AND reduced IS NULL", (terminal, jti)).fetchone()
    if row is None or not client.may_see(row[0]):
        raise HTTPException(404, "no such result")
    return bool(json.loads(row[1]).get("procedure_profile") == ProcedureProfile.ONLINE_CHECK.value)


def _in(column: str, values: list[str] | None) -> tuple[str, list[Any]]:
    if values is None:
        return "", []
    return f" AND {column} IN ({', '.join('?' for _ in values)})", list(values)


def create_api(context: ApiContext | None = None) -> FastAPI:
    """The API application (``context`` None: only for generating the OpenAPI document)."""
    app = FastAPI(
        title="cccd-edge ward office gateway", version=API_VERSION, docs_url=None, redoc_url=None,
        openapi_url="/openapi.json",
        description=("Results of chip-ID-card reads as the ward office gateway stored them, the national "
                     "authentication service's answers to online_check results, read requests to the "
                     "terminals, the fleet's status, and the webhooks' dead letters. Each client is limited to its "
                     "wards. The MQTT side is edge/schemas/asyncapi.json."),
    )  # fmt: skip
    app.state.context = context
    app.add_middleware(BodyLimit, limit=MAX_REQUEST_BYTES)

    @app.get("/v1/results", response_model=ResultPage, responses=_WARD_ERRORS, tags=["results"])
    def list_results(client: Client, context: Context,
                     ward: Annotated[str | None, Query(pattern=_SEGMENT)] = None,
                     terminal: Annotated[str | None, Query(pattern=_SEGMENT)] = None,
                     verdict: Verdict | None = None,
                     since: Annotated[Annotated[datetime, AfterValidator(_with_offset)] | None, Query(
                         description="stored at or after: an ISO 8601 date-time with its UTC offset "
                                     "(2026-12-06T08:00:00+07:00, or Z), or Unix seconds; one without an offset "
                                     "is a 422, never read in the server's time zone")] = None,
                     cursor: Annotated[str | None, Query(max_length=400)] = None,
                     limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE) -> ResultPage:  # fmt: skip
        """Stored results of the client's wards, in the order the gateway stored them, each address with today's
        administrative units (``addresses``, mapped now)."""
        wards, params = _in("ward", _wards_of(client, ward))
        sql = f"SELECT {RESULT_COLUMNS} FROM results WHERE reduced IS NULL{wards}"  # noqa: S608  # placeholders only
        for clause, value in ((" AND iss = ?", terminal), (" AND verdict = ?", verdict and verdict.value),
                              (" AND received >= ?", since and since.timestamp())):  # fmt: skip
            if value is not None:
                sql += clause
                params.append(value)
        if cursor is not None:
            received, iss, jti = _position(cursor)
            sql += " AND (received > ? OR (received = ? AND (iss > ? OR (iss = ? AND jti > ?))))"
            params += [received, received, iss, iss, jti]
        sql += " ORDER BY received, iss, jti LIMIT ?"
        rows = list(context.store.database.execute(sql, [*params, limit]))
        items = [ResultRecord.from_row(tuple(row)).with_addresses() for row in rows]
        last = items[-1] if items else None
        return ResultPage(items=items, next_cursor=_cursor(last.received, last.terminal, last.jti) if last else cursor)

    @app.get("/v1/results/{terminal}/{jti}", response_model=ResultRecord, responses=_ERRORS, tags=["results"])
    def one_result(client: Client, context: Context, terminal: Annotated[str, Path(pattern=_SEGMENT)],
                   jti: Annotated[str, Path(pattern=_JTI)]) -> ResultRecord:  # fmt: skip
        """One stored result with each address's administrative units of today (``addresses``, mapped now); 404
        when there is none, or it belongs to a ward this client may not see."""
        record = context.store.result(terminal, jti)
        if record is None or not client.may_see(record.ward):
            raise HTTPException(404, "no such result")
        return record.with_addresses()

    @app.post("/v1/results/{terminal}/{jti}/online-answers", status_code=201, response_model=OnlineAnswerOut,
              responses=_ANSWER_ERRORS, openapi_extra=_ANSWER_BODY, tags=["results"])  # fmt: skip
    def record_online_answer(client: Client, context: Context, terminal: Annotated[str, Path(pattern=_SEGMENT)],
                             jti: Annotated[str, Path(pattern=_JTI)],
                             answer: Annotated[bytes, Depends(_answer_body)]) -> OnlineAnswerOut:  # fmt: skip
        """Record the national authentication service's answer against the online_check result it checked (every
        answer is kept: a repeated check keeps its history). Answers with what was recorded, without its values."""
        if not _is_online_check(context, client, terminal, jti):
            raise HTTPException(409, "this result was not read under online_check: none of its data went to the "
                                     "national authentication service")  # fmt: skip
        try:
            recorded = context.store.record_online_answer(jti, answer, context.clock(), iss=terminal)
        except OnlineAnswerError as exc:  # the result was checked above: what is left is the body's shape
            raise HTTPException(400, exc.args[0]) from None  # without the hint, which is the command line's
        log.info("online answer %d for result %s of terminal %s by client %s", recorded.answer_id, jti, terminal,
                 client.name)  # fmt: skip
        return OnlineAnswerOut.of(recorded.summary())

    @app.get("/v1/results/{terminal}/{jti}/online-answers", response_model=OnlineAnswerPage, responses=_ERRORS,
             tags=["results"])  # fmt: skip
    def online_answers(client: Client, context: Context, terminal: Annotated[str, Path(pattern=_SEGMENT)],
                       jti: Annotated[str, Path(pattern=_JTI)],
                       cursor: Annotated[int, Query(ge=0, le=_MAX_ID,
                                                    description="the answer_id after which to list")] = 0,
                       limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE) -> OnlineAnswerPage:  # fmt: skip
        """The answers recorded against a result, oldest first, without their values (none for a result of another
        profile than online_check)."""
        _is_online_check(context, client, terminal, jti)
        rows = context.store.database.execute(
            "SELECT id, iss, jti, received, answer, recorded_by FROM online_answers WHERE iss=? AND jti=? AND id > ? "
            "ORDER BY id LIMIT ?", (terminal, jti, cursor, limit))  # fmt: skip
        items = [OnlineAnswerOut.of(OnlineAnswer(row_id, iss, row_jti, received, json.loads(text), by).summary())
                 for row_id, iss, row_jti, received, text, by in rows]  # fmt: skip
        return OnlineAnswerPage(items=items, next_cursor=str(items[-1].answer_id) if len(items) == limit else None)

    @app.post("/v1/wards/{ward}/terminals/{terminal}/read-requests", status_code=202, response_model=ReadRequestOut,
              responses={**_WARD_ERRORS, 503: {"model": Problem, "description": "this gateway cannot sign or send"}},
              tags=["terminals"])  # fmt: skip
    def read_request(client: Client, context: Context, ward: Annotated[str, Path(pattern=_SEGMENT)],
                     terminal: Annotated[str, Path(pattern=_SEGMENT)], body: ReadRequestIn) -> ReadRequestOut:
        """Ask a terminal to read the card this key opens: signed by the gateway with the ward command key and a
        fresh Active Authentication challenge, sent on the terminal's cmd topic. The result carries the returned
        request_id; its active_auth says whether the chip answered this challenge."""
        _wards_of(client, ward)
        if not context.serves_ward(ward):
            raise HTTPException(404, "this gateway does not serve the ward named")  # not echoed back
        if context.signer is None or context.send_command is None:
            raise HTTPException(503, "this gateway has no command key (api.command_key or receipts.key)")
        now = context.clock()
        try:
            command = sign_read_request(context.signer, ward=ward, terminal=terminal, key=body.key, now=int(now),
                                        profile=body.profile, include_photo=body.include_photo,
                                        consent_ref=body.consent_ref, lifetime=context.command_lifetime)  # fmt: skip
        except CommandError as exc:  # a claim out of shape (never quoted: the key is personal data)
            raise HTTPException(422, f"read request refused: {exc}") from None
        if command.challenge is not None:
            context.store.register_read_request(command.jti, command.challenge, now)
        context.send_command(command)
        log.info("read request %s for terminal %s of ward %s by client %s", command.jti, terminal, ward, client.name)
        return ReadRequestOut(request_id=command.jti, ward=ward, terminal=terminal,
                              expires_at=int(now) + context.command_lifetime,
                              challenge=command.challenge.hex() if command.challenge else "")

    @app.get("/v1/fleet", response_model=Fleet, responses=_WARD_ERRORS, tags=["terminals"])
    def fleet(client: Client, context: Context,
              ward: Annotated[str | None, Query(pattern=_SEGMENT)] = None) -> Fleet:  # fmt: skip
        """Each terminal's last retained status (state online/offline and what it published)."""
        wards = _wards_of(client, ward)
        rows = [row for row in context.store.fleet(ward) if wards is None or row.ward in wards]
        return Fleet(terminals=[FleetEntry(ward=r.ward, terminal=r.iss, state=r.state, version=r.version,
                                           status=r.status, received=r.received) for r in rows])

    @app.get("/v1/webhooks/dead-letters", response_model=DeadLetterPage, responses=_ERRORS, tags=["webhooks"])
    def dead_letters(client: Client, context: Context,
                     endpoint: Annotated[str | None, Query(pattern=_SEGMENT)] = None,
                     cursor: Annotated[int, Query(ge=0, le=_MAX_ID, description="the id after which to list")] = 0,
                     limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE) -> DeadLetterPage:  # fmt: skip
        """Webhook deliveries given up (after max_attempts, a 410, or an id that could not be used), with why."""
        if context.webhooks is None:
            return DeadLetterPage(items=[], next_cursor=None)
        wards = _wards_of(client, None)
        items = context.webhooks.dead_letters(None if wards is None else frozenset(wards), endpoint=endpoint,
                                              after=cursor, limit=limit)  # fmt: skip
        return DeadLetterPage(items=items, next_cursor=str(items[-1].id) if len(items) == limit else None)

    @app.post("/v1/webhooks/dead-letters/{delivery_id}/retry", status_code=202, responses=_ERRORS,
              tags=["webhooks"])  # fmt: skip
    def retry_dead_letter(client: Client, context: Context,
                          delivery_id: Annotated[int, Path(ge=0, le=_MAX_ID)]) -> dict[str, str]:
        """Send a dead letter again, from a first attempt now (404: none such of this client's wards, or one that
        can never be sent)."""
        wards = _wards_of(client, None)
        if context.webhooks is None or not context.webhooks.retry(
                delivery_id, None if wards is None else frozenset(wards), context.clock()):
            raise HTTPException(404, "no such dead letter")
        return {"status": "pending"}

    @app.webhooks.post("result.stored")
    def result_stored(event: WebhookEvent) -> None:
        """Sent to each configured endpoint once a result is stored (Standard Webhooks): headers webhook-id (the
        result's jti: de-duplicate by it), webhook-timestamp (Unix seconds of the attempt) and webhook-signature
        (`v1,` + base64 HMAC-SHA256 with the endpoint's whsec_ secret over `{webhook-id}.{webhook-timestamp}.{body}`).
        Answer 2xx within the timeout; anything else is retried with backoff, and ends as a dead letter."""

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> Any:
        """FastAPI's 422 without the ``input`` (and ``ctx``) it echoes by default: a read request's body holds the
        CAN, six digits of the citizen's ID number, and an answer never quotes personal data back."""
        from fastapi.responses import JSONResponse

        errors = [{key: value for key, value in error.items() if key in ("type", "loc", "msg")}
                  for error in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StorageError)
    def storage_unavailable(request: Request, exc: StorageError) -> Any:
        from fastapi.responses import JSONResponse

        log.warning("API request while the database is unavailable: %s", exc)
        return JSONResponse({"detail": "the database is unavailable; try again"}, status_code=503)

    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as committed in ``edge/schemas/openapi.json``."""
    return create_api().openapi()
