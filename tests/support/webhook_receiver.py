"""A webhook receiver for tests: a real HTTP server on a loopback port that records every delivery and answers
with the statuses it is told (then 200), verifying signatures the way the Standard Webhooks spec tells a
receiver to, written out here independently of ``edge.office.webhooks``."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


def spec_signature_holds(secret_text: str, headers: dict[str, str], body: bytes) -> bool:
    """The spec's check: the secret is the base64 after ``whsec_``; the signed content is
    ``{webhook-id}.{webhook-timestamp}.{body}``; any ``v1,<base64 HMAC-SHA256>`` of the space-separated list."""
    key = base64.b64decode(secret_text.removeprefix("whsec_"))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(version == "v1" and hmac.compare_digest(value, expected)
               for version, _, value in (item.partition(",") for item in headers["webhook-signature"].split()))


class WebhookReceiver:
    """``answers``: the statuses of the first deliveries (then 200 for every other). ``keep_alive``: HTTP/1.1, a
    connection carries many deliveries (else HTTP/1.0, one each); ``connections`` counts those accepted."""

    def __init__(self, answers: Iterable[int] = (), *, keep_alive: bool = False) -> None:
        self.deliveries: list[Delivery] = []
        self.connections = 0
        self._answers = list(answers)
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1
                    receiver._open.append(self.connection)

            def do_POST(self) -> None:  # the http.server spelling
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver._answers.pop(0) if receiver._answers else 200
                    receiver.deliveries.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body,
                                                        status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/cccd"

    def accepted(self) -> list[Delivery]:
        """The 2xx deliveries, each webhook-id once (what a receiver de-duplicating by webhook-id processes)."""
        with self._lock:
            seen: dict[str, Delivery] = {}
            for delivery in self.deliveries:
                if 200 <= delivery.status < 300:
                    seen.setdefault(delivery.webhook_id, delivery)
            return list(seen.values())

    def drop_connections(self) -> None:
        """Close every open connection from this side, as a receiver does with idle keep-alive connections."""
        with self._lock:
            dropped, self._open = self._open, []
        for connection in dropped:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.drop_connections()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
