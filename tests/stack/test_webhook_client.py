"""The webhook client against a real HTTP server on a loopback port: one kept-alive connection carries many
deliveries, a connection the receiver closed while idle is replaced without a failed delivery, a redirect or a
refused connection is a failed attempt (never followed, never raised)."""

from __future__ import annotations

import itertools
import socket
import threading
from pathlib import Path

import pytest

from edge.office.webhooks import ATTEMPT_TIMEOUTS, Endpoint, WebhookClient, _tls_context, parse_secret, signed_headers
from edge.sim.broker import free_port
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.stack
SECRET = parse_secret("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkw")


def _endpoint(url: str) -> Endpoint:
    return Endpoint("erp", url, SECRET, frozenset({"+"}), timeout=5.0)


def _post(client: WebhookClient, endpoint: Endpoint, n: int) -> int | None:
    body = b'{"n": %d}' % n
    return client.post(endpoint, body, signed_headers(SECRET, f"id-{n}", 1_700_000_000, body)).status


def test_one_kept_alive_connection_carries_every_delivery() -> None:
    receiver = WebhookReceiver(keep_alive=True)
    client = WebhookClient()
    try:
        statuses = [_post(client, _endpoint(receiver.url), n) for n in range(20)]
    finally:
        client.close()
        receiver.close()
    assert statuses == [200] * 20
    assert [d.webhook_id for d in receiver.deliveries] == [f"id-{n}" for n in range(20)]
    assert receiver.connections == 1


def test_a_connection_the_receiver_closed_while_idle_is_replaced_without_a_failure() -> None:
    receiver = WebhookReceiver(keep_alive=True)
    client = WebhookClient()
    try:
        assert _post(client, _endpoint(receiver.url), 1) == 200
        receiver.drop_connections()
        assert _post(client, _endpoint(receiver.url), 2) == 200
    finally:
        client.close()
        receiver.close()
    assert [d.webhook_id for d in receiver.deliveries] == ["id-1", "id-2"]
    assert receiver.connections == 2


def test_a_receiver_that_closes_after_each_answer_gets_a_connection_each() -> None:
    receiver = WebhookReceiver(keep_alive=False)  # HTTP/1.0
    client = WebhookClient()
    try:
        assert [_post(client, _endpoint(receiver.url), n) for n in range(3)] == [200] * 3
    finally:
        client.close()
        receiver.close()
    assert receiver.connections == 3


def test_a_redirect_is_a_failed_delivery_not_followed() -> None:
    receiver = WebhookReceiver([302, 429], keep_alive=True)
    client = WebhookClient()
    try:
        body = b"{}"
        redirected = client.post(_endpoint(receiver.url), body, signed_headers(SECRET, "id-r", 1, body))
        limited = client.post(_endpoint(receiver.url), body, signed_headers(SECRET, "id-l", 1, body))
    finally:
        client.close()
        receiver.close()
    assert (redirected.status, redirected.error) == (302, "HTTP 302")
    assert (limited.status, limited.error) == (429, "HTTP 429")
    assert len(receiver.deliveries) == 2, "nothing followed the redirect"


def test_a_refused_connection_is_an_answer_without_status() -> None:
    client = WebhookClient()
    answer = client.post(_endpoint(f"http://127.0.0.1:{free_port()}/hooks"), b"{}", {})
    assert answer.status is None
    assert answer.error.startswith("ConnectionRefusedError")


def test_a_receiver_trickling_its_answer_is_cut_off_after_the_attempts_bound() -> None:
    """Each byte within the socket timeout, never a whole answer: the watchdog ends the attempt, the sender moves on."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: "):
                if stop.wait(0.02):  # far inside the socket timeout, even on a loaded machine
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    client = WebhookClient()
    endpoint = Endpoint("slow", f"http://127.0.0.1:{listener.getsockname()[1]}/hooks", SECRET, frozenset({"+"}),
                        timeout=1.0)
    no_ca = Endpoint("no-ca", "https://127.0.0.1:1/hooks", SECRET, frozenset({"+"}), ca=Path("/nonexistent/ca.pem"))
    try:
        answer = client.post(endpoint, b"{}", {})
        next_answer = client.post(no_ca, b"{}", {})  # fails before any byte is sent: not the last attempt's cut-off
    finally:
        stop.set()
        client.close()
        listener.close()
        thread.join(5)
    assert answer.status is None
    assert answer.error == f"no complete answer within {1.0 * ATTEMPT_TIMEOUTS:g} s"
    assert next_answer.status is None
    assert next_answer.error.startswith("FileNotFoundError")


def test_the_tls_context_of_a_receiver_ca_is_made_once() -> None:
    """Loading a CA bundle takes tens of ms: once per CA, not per connection."""
    assert _tls_context(None) is _tls_context(None)


@pytest.mark.parametrize("retry_after", [b"\xb2", b"\xb9\xb3", b"120"])  # latin-1 '²', '¹³': str.isdigit() says yes
def test_a_retry_after_of_non_ascii_digits_is_ignored_and_the_status_kept(retry_after: bytes) -> None:
    """http.client decodes headers as latin-1, where '²' is a digit to str.isdigit but not to int(): a receiver's
    Retry-After of it must not turn its 410 (gone: stop delivering) into a status-less failure to retry."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_once() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 410 Gone\r\nRetry-After: " + retry_after + b"\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    client = WebhookClient()
    try:
        answer = client.post(_endpoint(f"http://127.0.0.1:{listener.getsockname()[1]}/hooks"), b"{}", {})
    finally:
        client.close()
        listener.close()
        thread.join(5)
    assert (answer.status, answer.error) == (410, "HTTP 410")
    assert answer.retry_after == (120.0 if retry_after == b"120" else None)
