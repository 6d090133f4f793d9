"""The gateway and its pages in one process: the gateway stores, the feed pushes, uvicorn serves.

:func:`open_office` builds a gateway whose outcomes, statuses and events feed the pages, with the pages' own
database connection (accounts, sessions, the audit log, the pages' reads: the gateway's worker keeps its own), and
:class:`PagesServer` runs uvicorn in a thread beside it. ``cccd-edge gateway run`` does this when gateway.toml has a
``[web]`` section; ``cccd-edge demo --serve`` does the same on the demo's world.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from edge.errors import ConfigError
from edge.office.database import Database
from edge.office.gateway import Gateway, open_store
from edge.office.gateway_config import GatewayConfig
from edge.office.listener import UvicornThread
from edge.office.store import Outcome
from edge.office.web.audit import AuditLog
from edge.office.web.feed import Feed
from edge.office.web.officers import Officers
from edge.office.web.pages import DemoControls, OfficeWeb, create_app
from edge.office.web.settings import WebSettings
from edge.signers import KeySigner, load_private_key

log = logging.getLogger(__name__)


@dataclass
class Office:
    """A gateway with its pages (not started: :meth:`start`)."""

    gateway: Gateway
    web: OfficeWeb
    app: Starlette
    server: PagesServer

    def start(self) -> None:
        self.web.feed.start()
        self.gateway.start()
        self.server.start()

    def stop(self) -> None:
        self.web.feed.stop()  # ends the pages' streams, so the server stops without cutting them
        self.server.stop()
        self.gateway.stop()
        self.gateway.store.close()
        self.web.db.close()

    @property
    def url(self) -> str:
        return self.server.url


def open_office(config: GatewayConfig, *, on_outcome: Callable[[Outcome], None] | None = None,
                demo: DemoControls | None = None, routes: Sequence[BaseRoute] = (),
                clock: Callable[[], float] = time.time) -> Office:  # fmt: skip
    """The gateway ``config`` describes, with the pages of its ``[web]`` section."""
    settings = config.web
    if settings is None:
        raise ConfigError("the officers' pages need a [web] section", key="web")
    receipt_key = (load_private_key(config.receipts.key, config_key="receipts.key")
                   if config.receipts.key is not None else None)
    command_path = settings.command_key or config.receipts.key
    signer = KeySigner(load_private_key(command_path, config_key="web.command_key")) if command_path else None
    store = open_store(config)
    db = Database(config.storage.url)
    feed = Feed(db, clock=clock)

    def outcome(result: Outcome) -> None:
        if result.status == "stored":
            feed.notify_result()
        if on_outcome is not None:
            on_outcome(result)

    gateway = Gateway(config, store, receipt_key=receipt_key, on_outcome=outcome, on_status=feed.notify_status,
                      on_event=feed.publish_event, clock=clock)
    web = OfficeWeb(
        settings=settings, db=db, officers=Officers(db, session_idle=settings.session_idle,
                                                    session_max=settings.session_max, clock=clock),
        audit=AuditLog(db, clock=clock), feed=feed, ward=None if config.ward == "+" else config.ward,
        signer=signer, send_command=gateway.send_command, register_request=store.register_read_request,
        demo=demo, clock=clock)
    app = create_app(web, routes=routes)
    return Office(gateway, web, app, PagesServer(app, settings))


class PagesServer(UvicornThread):
    """The officers' pages' listener: plain http (HTTPS, where wanted, is a reverse proxy's; see WebSettings)."""

    def __init__(self, app: Starlette, settings: WebSettings) -> None:
        super().__init__(app, host=settings.listen, port=settings.port, name="pages-server", what="the pages",
                         config_key="web.listen")  # fmt: skip

    def start(self) -> None:
        super().start()
        log.info("officers' pages at %s", self.url)

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104  # what a browser here can open
        return f"http://{shown}:{self.port}/"
