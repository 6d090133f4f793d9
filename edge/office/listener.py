"""uvicorn in a thread, for the office's HTTP listeners (the REST API, the officers' pages): signals stay with the
main thread, which the gateway's command owns, and a listener that cannot bind fails ``start`` with the config key
to fix rather than dying unseen in its thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from edge.errors import ConfigError

START_TIMEOUT = 10.0


class UvicornThread:
    """One uvicorn server on its own daemon thread; ``port`` is the bound one once started (``port=0``: any)."""

    def __init__(self, app: Any, *, host: str, port: int, name: str, what: str, config_key: str,
                 **options: Any) -> None:  # fmt: skip
        self._config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                      lifespan="off", proxy_headers=False, server_header=False,
                                      timeout_graceful_shutdown=2, **options)  # fmt: skip
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)
        self._what, self._config_key = what, config_key
        self.host, self.port = host, port

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"{self._what} could not listen on {self.host}:{self._config.port}",
                                  key=self._config_key)
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
