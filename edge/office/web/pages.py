"""The officers' pages: a Starlette application (ASGI), served by uvicorn in the gateway's process.

Routes (``C``: a counter, ``T`` on a ward's server, the terminal of that id of its ward, and ``W/T`` on a
province's, ward ``W``'s terminal ``T``: terminal ids are unique only within a ward; every page needs a session,
every POST the session's CSRF token)::

    GET  /login, POST /login, POST /logout, POST /lang          who is at the desk, in which language
    GET  /                                                       the officer's counters (or the fleet / audit)
    GET  /counter/C                                              the counter page
    GET  /counter/C/latest      JSON, masked                     its last result
    GET  /counter/C/stream      text/event-stream                results, statuses, progress, as they come
    POST /counter/C/reveal      JSON {iss, jti, reason}          the citizen's data (audited first)
    POST /counter/C/read        JSON {can, profile, ...}         "Đọc thẻ": a signed read_request (audited first)
    POST /counter/C/cancel                                       the cancel command (audited)
    GET  /fleet, /fleet/data, /fleet/stream                      every terminal, problems first
    GET  /audit                                                  the audit log (auditors)
    POST /demo/tap              JSON {card}                      demo only: a virtual card on the reader
    GET  /static/...                                             CSS and scripts, all served from here

The REST API (another module) joins with ``routes=`` (e.g. ``Mount("/api", api_app)``): one server, one origin.

Personal data never goes into a URL (reveals are POSTs), a log line or the browser's storage (no localStorage, no
cookies but the session's and the language's), and every response that may hold it says ``no-store``. Every
response carries the security headers of :class:`SecurityHeaders`: a CSP of ``default-src 'self'`` with no inline
script (the pages' words travel in a JSON data block, which a CSP does not execute), no framing, no referrer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge.errors import CommandError, EdgeError, JsonError, OfficerAccessError
from edge.office.asgi import MAX_REQUEST_BYTES, BodyLimit
from edge.office.commands import SignedCommand, sign_cancel, sign_read_request
from edge.office.database import Database
from edge.office.web import records
from edge.office.web.audit import AuditLog
from edge.office.web.feed import Feed, Push
from edge.office.web.officers import TERMINAL, Officer, Officers, Session, check_csrf
from edge.office.web.settings import WebSettings
from edge.office.web.words import LANGS, Lang, client_words, ui
from edge.protocol.access.policy import CanKey
from edge.protocol.bounded_json import loads_bounded
from edge.protocol.jose import Signer
from edge.protocol.result import ProcedureProfile

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "cccd_session"
LOGIN_COOKIE = "cccd_login"
LANG_COOKIE = "lang"
MAX_BODY = 8 * 1024
HEARTBEAT = 15.0
#: Password checks under way at once. Each takes argon2id's 64 MiB and a core: a flood of logins (from anyone on the
#: LAN, no account needed) would otherwise run one per pool thread (40: 2.5 GiB) and hold the pool every page needs.
LOGIN_CHECKS = 2
_CAN = re.compile(r"^[0-9]{6}\Z")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), clipboard-read=()",
}


@dataclass(frozen=True, slots=True)
class DemoControls:
    """Demo only (``cccd-edge demo --serve``): put a virtual card on the reader from the page."""

    tap: Callable[[str], None]
    cards: tuple[str, ...] = ("genuine", "forged", "unproven")
    can: str = ""  # the virtual card's CAN, for a desk read in the demo (made-up data)


@dataclass
class OfficeWeb:
    """What the pages work with; the gateway's process builds it (:func:`edge.office.web.server.office_web`)."""

    settings: WebSettings
    db: Database
    officers: Officers
    audit: AuditLog
    feed: Feed
    ward: str | None = None  # None: every ward in the database (a province's gateway)
    signer: Signer | None = None  # the ward command key: desk reads (None: the button is not shown)
    send_command: Callable[[SignedCommand], None] | None = None
    register_request: Callable[[str, bytes, float], None] | None = None
    demo: DemoControls | None = None
    clock: Callable[[], float] = field(default=time.time)

    @property
    def desk_reads(self) -> bool:
        return self.signer is not None and self.send_command is not None and self.register_request is not None


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response, and ``no-store`` to every one but the static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"
                           or static]  # fmt: skip
                headers += [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
                headers.append((b"cache-control", b"no-cache" if static else b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(web: OfficeWeb, *, routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The pages as an ASGI application; ``routes`` (the REST API's mount) are matched first."""
    pages = _Pages(web)
    counter = "/counter/{terminal}" if web.ward is not None else "/counter/{ward}/{terminal}"
    table: list[BaseRoute] = [
        *routes,
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/lang", pages.language, methods=["POST"]),
        Route("/", pages.home, methods=["GET"]),
        Route(counter, pages.counter, methods=["GET"]),
        Route(f"{counter}/latest", pages.latest, methods=["GET"]),
        Route(f"{counter}/stream", pages.counter_stream, methods=["GET"]),
        Route(f"{counter}/reveal", pages.reveal, methods=["POST"]),
        Route(f"{counter}/read", pages.desk_read, methods=["POST"]),
        Route(f"{counter}/cancel", pages.desk_cancel, methods=["POST"]),
        Route("/fleet", pages.fleet, methods=["GET"]),
        Route("/fleet/data", pages.fleet_data, methods=["GET"]),
        Route("/fleet/stream", pages.fleet_stream, methods=["GET"]),
        Route("/audit", pages.audit_page, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    if web.demo is not None:
        table.append(Route("/demo/tap", pages.demo_tap, methods=["POST"]))
    app = Starlette(routes=table, exception_handlers={OfficerAccessError: pages.refused,
                                                      HTTPException: pages.http_error})
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit=MAX_REQUEST_BYTES)  # outermost: forms, and the API when mounted here
    return app


class _Pages:
    def __init__(self, web: OfficeWeb) -> None:
        self.web = web
        self.login_checks = asyncio.Semaphore(LOGIN_CHECKS)  # the waiting logins hold no thread
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(default=True, default_for_string=True))

    # --- helpers -------------------------------------------------------------------------------------------------

    @staticmethod
    def lang(request: Request) -> Lang:
        chosen = request.cookies.get(LANG_COOKIE)
        return "en" if chosen == "en" else "vi"

    def session(self, request: Request, *, touch: bool = True) -> Session:
        """The request's session: the trusted proxy's identity header, else the session cookie."""
        settings = self.web.settings
        header = settings.identity_header
        client = request.client.host if request.client else None
        if header is not None and header in request.headers:
            if settings.trusts(client):
                return self._proxy_session(request, request.headers[header])
            log.warning("identity header from %s ignored: not a trusted proxy", client)
        return self.web.officers.session(request.cookies.get(SESSION_COOKIE), touch=touch)

    def _proxy_session(self, request: Request, username: str) -> Session:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            try:
                session = self.web.officers.session(token)
                if session.officer.username == username:
                    return session
            except OfficerAccessError:
                pass
        officer = self.web.officers.get(username.strip().lower())
        if officer is None:
            raise OfficerAccessError("login", "the proxy names an officer this office does not know")
        new_token, session = self.web.officers.open_session(officer)
        request.state.new_session = new_token  # set as the cookie on the way out
        return session

    def render(self, request: Request, template: str, session: Session | None, **context: Any) -> HTMLResponse:
        lang = self.lang(request)
        html = self.templates.get_template(template).render(
            t=ui(lang), lang=lang, officer=session.officer if session else None,
            csrf=session.csrf if session else context.pop("csrf", ""), demo=self.web.demo is not None,
            words_json=json.dumps(client_words(lang), ensure_ascii=False), path=request.url.path, **context)
        response = HTMLResponse(html)
        self._carry_session(request, response)
        return response

    def _carry_session(self, request: Request, response: Response) -> None:
        token = getattr(request.state, "new_session", None)
        if token:
            self._set_session_cookie(response, token)

    def _set_session_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=self.web.settings.secure_cookies, max_age=self.web.settings.session_max)

    async def json_body(self, request: Request, session: Session) -> dict[str, Any]:
        """A POST's JSON object, after its CSRF header is checked."""
        check_csrf(session, request.headers.get("x-csrf-token"))
        body = await _bounded_body(request)
        try:  # bounded: a few kilobytes of ``[[[`` raise RecursionError in json.loads, a 500
            data = loads_bounded(body or b"{}", what="request", max_bytes=MAX_BODY)
        except JsonError:
            raise OfficerAccessError("input", "the request is not JSON") from None
        if not isinstance(data, dict):
            raise OfficerAccessError("input", "the request is not a JSON object")
        return data

    def counter_of(self, request: Request, session: Session) -> tuple[str, str]:
        """The ``(ward, terminal)`` the URL names (a ward's server: of its own ward), if the officer may open it."""
        ward = self.web.ward if self.web.ward is not None else str(request.path_params["ward"])
        terminal = str(request.path_params["terminal"])
        if not (TERMINAL.match(ward) and TERMINAL.match(terminal)):
            raise HTTPException(404)
        if not session.officer.may_open(ward, terminal, self.web.ward):
            raise OfficerAccessError("role", "this counter is not yours")
        return ward, terminal

    def counter_path(self, ward: str, terminal: str) -> str:
        """A counter's page (both parts are URL-safe, :data:`TERMINAL`)."""
        return f"/counter/{terminal}" if self.web.ward is not None else f"/counter/{ward}/{terminal}"

    def counter_name(self, ward: str, terminal: str) -> str:
        """A counter as an account names it, and the audit log: ``T`` on a ward's server, ``W/T`` on a province's."""
        return terminal if self.web.ward is not None else f"{ward}/{terminal}"

    async def refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OfficerAccessError)
        wants_html = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if exc.reason == "session" and wants_html:
            response: Response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        status = {"session": 401, "login": 401, "locked": 429, "role": 403, "csrf": 403}.get(exc.reason, 400)
        if wants_html:
            return HTMLResponse(self.templates.get_template("refused.html").render(
                t=ui(self.lang(request)), lang=self.lang(request), officer=None, csrf="", demo=False,
                reason=exc.reason, path=request.url.path, words_json="{}"), status_code=status)
        return JSONResponse({"error": exc.reason}, status_code=status)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    # --- login, logout, language ---------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        token = secrets.token_urlsafe(24)
        response = self.render(request, "login.html", None, csrf=token, failed=None)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=self.web.settings.secure_cookies, max_age=3600)
        return response

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not secrets.compare_digest(form.get("csrf", ""), expected):
            raise OfficerAccessError("csrf", "the login form is stale; reload it")
        try:
            async with self.login_checks:
                officer = await run_in_threadpool(self.web.officers.authenticate, form.get("username", "").strip(),
                                                  form.get("password", ""))  # fmt: skip
        except OfficerAccessError as exc:
            if exc.reason not in ("login", "locked"):
                raise
            page = self.render(request, "login.html", None, csrf=expected, failed=exc.reason)
            page.status_code = 401 if exc.reason == "login" else 429
            return page
        token, _ = await run_in_threadpool(self.web.officers.open_session, officer)
        response = RedirectResponse("/", status_code=303)
        self._set_session_cookie(response, token)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, request: Request) -> Response:
        form = await _form(request)
        session = await run_in_threadpool(self.session, request)
        check_csrf(session, form.get("csrf"))
        await run_in_threadpool(self.web.officers.close_session, request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def language(self, request: Request) -> Response:
        """Switch the pages' language (a cookie holding only ``vi`` or ``en``)."""
        form = await _form(request)
        token = form.get("csrf", "")
        login_token = request.cookies.get(LOGIN_COOKIE, "")
        if not (login_token and secrets.compare_digest(token, login_token)):
            check_csrf(await run_in_threadpool(self.session, request), token)
        back = form.get("back", "/")
        if not back.startswith("/") or back.startswith("//") or "\\" in back:
            back = "/"
        response = RedirectResponse(back, status_code=303)
        chosen = form.get("lang")
        response.set_cookie(LANG_COOKIE, chosen if chosen in LANGS else "vi", samesite="strict", path="/",
                            secure=self.web.settings.secure_cookies, max_age=365 * 86400)
        return response

    # --- pages ---------------------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        officer = session.officer
        if officer.sees_audit:
            return RedirectResponse("/audit", status_code=303)
        counters = await run_in_threadpool(self._counters, officer)
        if len(counters) == 1 and officer.role.value == "officer":
            return RedirectResponse(counters[0]["href"], status_code=303)
        return self.render(request, "home.html", session, counters=counters, show_ward=self.web.ward is None)

    def _counters(self, officer: Officer) -> list[dict[str, str]]:
        """The counters to open: an officer's own; else each terminal (of each ward) of the wards served."""
        found = (sorted(officer.counters_of(self.web.ward)) if officer.role.value == "officer"
                 else records.known_terminals(self.web.db, self.web.ward))  # fmt: skip
        return [{"ward": ward, "terminal": terminal, "href": self.counter_path(ward, terminal)}
                for ward, terminal in found]

    async def counter(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        ward, terminal = self.counter_of(request, session)
        demo = self.web.demo
        page = {"ward": ward, "terminal": terminal, "base": self.counter_path(ward, terminal),
                "desk": self.web.desk_reads,
                "demo": {"cards": list(demo.cards), "can": demo.can} if demo is not None else None}
        return self.render(request, "counter.html", session, terminal=terminal, page_json=json.dumps(page),
                           ward=ward if self.web.ward is None else None,
                           desk=self.web.desk_reads, demo_cards=list(demo.cards) if demo else [],
                           demo_can=demo.can if demo else "")

    async def latest(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        ward, terminal = self.counter_of(request, session)
        stored = await run_in_threadpool(records.latest, self.web.db, terminal, ward)
        return JSONResponse(records.masked_view(stored, self.lang(request)) if stored is not None else None)

    async def counter_stream(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        ward, terminal = self.counter_of(request, session)
        return self._stream(request, frozenset({(ward, terminal)}), None, views=True)

    async def fleet_stream(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        officer = session.officer
        if not officer.sees_citizens:
            raise OfficerAccessError("role", "the fleet is for officers and supervisors")
        served = None if self.web.ward is None else frozenset({self.web.ward})
        if officer.role.value == "supervisor":
            return self._stream(request, None, served, views=False)
        mine = officer.counters_of(self.web.ward)  # the fleet's news only: its rows are each counter's own
        return self._stream(request, frozenset(mine), None, views=False)

    def _stream(self, request: Request, counters: frozenset[tuple[str, str]] | None, wards: frozenset[str] | None, *,
                views: bool) -> Response:  # fmt: skip
        """Server-sent events about ``counters`` (``(ward, terminal)``; None: every terminal of ``wards``, None: every
        ward); ``views``: a result comes as its masked view (the counter), else only as the news that one arrived
        (the fleet)."""
        lang = self.lang(request)
        subscription = self.web.feed.subscribe(counters, wards=wards)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n\n"
                while True:
                    try:
                        push = await asyncio.wait_for(subscription.queue.get(), HEARTBEAT)
                    except TimeoutError:
                        try:  # the officer's idle time is not renewed by an open page
                            await run_in_threadpool(self.session, request, touch=False)
                        except OfficerAccessError:
                            yield "event: expired\ndata: {}\n\n"
                            return
                        yield ": still here\n\n"
                        continue
                    if push.kind == "closing":
                        return
                    data = await run_in_threadpool(self._push_data, push, lang) if views else {
                        "terminal": push.terminal}
                    if data is not None:
                        yield f"event: {push.kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
            finally:
                subscription.close()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    def _push_data(self, push: Push, lang: Lang) -> dict[str, Any] | None:
        if push.kind != "result":
            return {"terminal": push.terminal, **push.data}
        stored = records.find(self.web.db, push.data["iss"], push.data["jti"], push.ward or self.web.ward)
        return records.masked_view(stored, lang) if stored is not None else None

    async def reveal(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        ward, terminal = self.counter_of(request, session)
        data = await self.json_body(request, session)
        iss, jti, reason = data.get("iss"), data.get("jti"), str(data.get("reason", "")).strip()
        if not isinstance(iss, str) or not isinstance(jti, str) or iss != terminal:
            raise OfficerAccessError("input", "which result?")
        if not 3 <= len(reason) <= 200:
            raise OfficerAccessError("input", "say why (3-200 characters): it goes to the audit log")
        stored = await run_in_threadpool(records.find, self.web.db, iss, jti, ward)
        if stored is None:
            raise HTTPException(404, "no such result")
        client = request.client.host if request.client else None
        await run_in_threadpool(self.web.audit.append, session.officer, "reveal", reason=reason,
                                terminal=self.counter_name(ward, terminal), result=(iss, jti), client=client)
        return JSONResponse(await run_in_threadpool(records.revealed_view, stored))

    async def desk_read(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        ward, terminal = self.counter_of(request, session)
        data = await self.json_body(request, session)
        web = self.web
        if web.signer is None or web.send_command is None or web.register_request is None:
            raise HTTPException(409, "desk reads need a ward command key ([web] command_key)")
        can = str(data.get("can", ""))
        if not _CAN.match(can):
            raise OfficerAccessError("input", "the CAN is the 6 digits printed on the card")
        try:
            profile = ProcedureProfile(str(data.get("profile", "residence")))
        except ValueError:
            raise OfficerAccessError("input", "unknown procedure profile") from None
        reason = str(data.get("reason") or f"profile {profile.value}").strip()[:200]
        now = web.clock()
        try:
            command = sign_read_request(web.signer, ward=ward, terminal=terminal, key=CanKey(can), now=int(now),
                                        profile=profile, include_photo=bool(data.get("include_photo")))  # fmt: skip
        except CommandError as exc:  # the terminal's ward or id cannot be named in a command
            raise HTTPException(409, str(exc)) from None
        assert command.challenge is not None
        await run_in_threadpool(web.register_request, command.jti, command.challenge, now)
        await run_in_threadpool(web.audit.append, session.officer, "desk_read", reason=reason,
                                terminal=self.counter_name(ward, terminal), request_id=command.jti,
                                client=request.client.host if request.client else None)  # fmt: skip
        web.send_command(command)
        return JSONResponse({"request_id": command.jti})

    async def desk_cancel(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        ward, terminal = self.counter_of(request, session)
        data = await self.json_body(request, session)
        web = self.web
        if web.signer is None or web.send_command is None:
            raise HTTPException(409, "desk reads need a ward command key ([web] command_key)")
        try:
            command = sign_cancel(web.signer, ward=ward, terminal=terminal, now=int(web.clock()))
        except CommandError as exc:
            raise HTTPException(409, str(exc)) from None
        request_id = data.get("request_id") if isinstance(data.get("request_id"), str) else None
        await run_in_threadpool(web.audit.append, session.officer, "desk_cancel", reason="cancel",
                                terminal=self.counter_name(ward, terminal), request_id=request_id,
                                client=request.client.host if request.client else None)  # fmt: skip
        web.send_command(command)
        return JSONResponse({"cancelled": command.jti})

    async def fleet(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        if not session.officer.sees_citizens:
            raise OfficerAccessError("role", "the fleet is for officers and supervisors")
        return self.render(request, "fleet.html", session)

    async def fleet_data(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        officer = session.officer
        if not officer.sees_citizens:
            raise OfficerAccessError("role", "the fleet is for officers and supervisors")
        mine = None if officer.role.value == "supervisor" else officer.counters_of(self.web.ward)
        rows = await run_in_threadpool(records.fleet_rows, self.web.db, self.web.ward, mine, self.web.clock())
        for row in rows:
            row["counter"] = self.counter_path(row["ward"], row["terminal"])
        return JSONResponse({"now": self.web.clock(), "wards": self.web.ward is None, "terminals": rows})

    async def audit_page(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        if not session.officer.sees_audit:
            raise OfficerAccessError("role", "the audit log is for auditors")
        entries = await run_in_threadpool(self.web.audit.entries)
        return self.render(request, "audit.html", session, entries=[_audit_row(entry.as_dict()) for entry in entries])

    async def demo_tap(self, request: Request) -> Response:
        session = await run_in_threadpool(self.session, request)
        data = await self.json_body(request, session)
        demo = self.web.demo
        card = data.get("card")
        if demo is None or card not in demo.cards:
            raise HTTPException(404)
        try:
            await run_in_threadpool(demo.tap, str(card))
        except EdgeError as exc:
            raise HTTPException(409, str(exc)) from None
        return JSONResponse({"tapped": card})


def _audit_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {**entry, "at_text": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["at"]))}


async def _bounded_body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise OfficerAccessError("input", "request too large")
    return body


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` form (first value of each field)."""
    body = await _bounded_body(request)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise OfficerAccessError("input", "the form is not readable") from None
    return {name: values[0] for name, values in fields.items()}
