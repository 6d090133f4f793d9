"""ASGI pieces shared by the office's HTTP applications (the REST API, the officers' pages)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from edge.office.store import MAX_ONLINE_ANSWER_BYTES

#: No request body is longer than an online answer and its JSON around it; a larger one is refused unread.
MAX_REQUEST_BYTES = MAX_ONLINE_ANSWER_BYTES + 4096


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is a 413, by its Content-Length before anything is read,
    or once that much has streamed in (the body is read here, then handed on). FastAPI reads a JSON body whole
    before validating it, and uvicorn sets no limit: without this, a client could make the gateway hold gigabytes."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message.get("type") != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay([{"type": "http.request", "body": bytes(body), "more_body": False}], receive),
                       send)

    async def _refuse(self, send: Callable[[Any], Any]) -> None:
        body = json.dumps({"detail": f"the request body is larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Any], receive: Callable[[], Any]) -> Callable[[], Any]:
    """A ``receive`` giving ``messages`` first, then the connection's own (a disconnect, later)."""
    pending = list(messages)

    async def replayed() -> Any:
        return pending.pop(0) if pending else await receive()

    return replayed
