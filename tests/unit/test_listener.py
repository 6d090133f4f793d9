"""The office's HTTP listeners (REST API, officers' pages) share one uvicorn thread: a bound port is reported, and a
port that cannot be bound fails ``start`` with the config key to fix, within bounded time."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from edge.errors import ConfigError
from edge.office.api_server import ApiServer
from edge.office.gateway_config import ApiSettings
from edge.office.listener import UvicornThread
from edge.office.web.server import PagesServer
from edge.office.web.settings import WebSettings


def _app() -> Starlette:
    return Starlette(routes=[Route("/", lambda _request: PlainTextResponse("ok"))])


def test_a_free_port_is_bound_and_reported() -> None:
    listener = UvicornThread(_app(), host="127.0.0.1", port=0, name="test-listener", what="the test",
                             config_key="test.listen")  # fmt: skip
    listener.start()
    try:
        assert listener.port != 0
        with urllib.request.urlopen(f"http://127.0.0.1:{listener.port}/", timeout=10) as response:
            assert response.read() == b"ok"
    finally:
        listener.stop()


# uvicorn ends its thread with sys.exit(1) when it cannot bind (harmless in a thread, but pytest reports it).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize(("make", "key"), [
    (lambda port: ApiServer(_app(), ApiSettings(port=port)), "api.listen"),
    (lambda port: PagesServer(_app(), WebSettings(port=port)), "web.listen"),
])  # fmt: skip
def test_a_taken_port_names_its_key(make: Callable[[int], UvicornThread], key: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = make(taken.getsockname()[1])
        with pytest.raises(ConfigError, match=r"could not listen on 127\.0\.0\.1:") as caught:
            server.start()
    assert caught.value.key == key
