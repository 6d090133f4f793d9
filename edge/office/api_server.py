"""The procedure software's side of a gateway process: the REST API on its own uvicorn listener and the webhook
sender, beside the gateway that stores (``cccd-edge gateway run`` starts them when gateway.toml has ``[api]`` or
``[[webhooks]]``).

Mutual TLS: with ``api.client_ca`` the listener asks every client for a certificate from that CA (optional, so key
clients still connect); uvicorn checks it, and :class:`_PeerCertificate` hands the verified CN to the request
(``request.state.tls_client_cn``), which :class:`~edge.office.api_clients.ApiClients` maps to a registered client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from edge.office.api import TLS_CLIENT_CN, ApiContext, create_api
from edge.office.api_clients import ApiClients
from edge.office.database import Database
from edge.office.gateway import Gateway, open_store, webhook_endpoints
from edge.office.gateway_config import ApiSettings, GatewayConfig
from edge.office.listener import UvicornThread
from edge.office.webhooks import WebhookQueue, WebhookSender
from edge.signers import KeySigner, load_private_key

log = logging.getLogger(__name__)


def _common_name(certificate: dict[str, Any] | None) -> str | None:
    """The CN of ``ssl.SSLSocket.getpeercert()``'s dict (a verified certificate), None without one."""
    for rdn in (certificate or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName" and isinstance(value, str):
                return value
    return None


class _PeerCertificate(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, which also puts a verified client certificate's CN into each request's state."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        common_name = _common_name(ssl_object.getpeercert()) if ssl_object is not None else None
        if common_name is not None:  # this connection's own copy: app_state is shared by every connection
            self.app_state = {**self.app_state, TLS_CLIENT_CN: common_name}


class ApiServer(UvicornThread):
    """The REST API's listener: https with ``api.tls_cert``, client certificates with ``api.client_ca``."""

    def __init__(self, app: Any, settings: ApiSettings) -> None:
        tls: dict[str, Any] = {}
        if settings.tls_cert is not None:
            tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
        if settings.client_ca is not None:
            tls |= {"ssl_ca_certs": str(settings.client_ca), "ssl_cert_reqs": ssl.CERT_OPTIONAL}
        super().__init__(app, host=settings.listen, port=settings.port, name="api-server", what="the API",
                         config_key="api.listen", http=_PeerCertificate, **tls)  # fmt: skip
        self.scheme = "https" if settings.tls_cert is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/"


@dataclass
class ProcedureSide:
    """The API server and the webhook sender of one gateway process (either may be absent)."""

    api: ApiServer | None
    sender: WebhookSender | None
    context: ApiContext | None

    def start(self) -> None:
        if self.sender is not None:
            self.sender.start()
        if self.api is not None:
            self.api.start()
            log.info("REST API at %s (OpenAPI: %sopenapi.json)", self.api.url, self.api.url)

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        if self.sender is not None:
            self.sender.stop()
            self.sender.queue.close()
        if self.context is not None:
            self.context.store.close()


def open_procedure_side(config: GatewayConfig, gateway: Gateway, *, poll: float = 1.0,
                        clock: Callable[[], float] = time.time) -> ProcedureSide:  # fmt: skip
    """What ``config`` asks for beside ``gateway`` (not started): each part with its own database connection."""
    sender = None
    if config.webhooks:
        sender = WebhookSender(WebhookQueue(Database(config.storage.url), webhook_endpoints(config)),
                               config.instance, poll=poll, clock=clock)  # fmt: skip
        if gateway.webhooks is not None:  # a result this process stored goes out at once, as it was stored
            gateway.webhooks.on_enqueued = sender.wake
            gateway.webhooks.hand_over(config.instance, sender.lease, sender.offer)
    if config.api is None:
        return ProcedureSide(None, sender, None)
    store = open_store(config)
    key_path = config.api.command_key or config.receipts.key
    signer = KeySigner(load_private_key(key_path, config_key="api.command_key")) if key_path else None
    context = ApiContext(store=store, clients=ApiClients(store.database),
                         webhooks=WebhookQueue(store.database, webhook_endpoints(config)) if config.webhooks else None,
                         signer=signer, send_command=gateway.send_command,
                         command_lifetime=config.api.command_lifetime,
                         serves_ward=lambda ward: config.ward in ("+", ward), clock=clock)  # fmt: skip
    return ProcedureSide(ApiServer(create_api(context), config.api), sender, context)
