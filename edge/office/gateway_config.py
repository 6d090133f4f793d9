"""``gateway.toml``: what one gateway instance needs (broker, TLS, storage, the ward CA, the receipt key, its name).

Example (``cccd-edge gateway run --config /etc/cccd-edge-gateway/gateway.toml``)::

    instance = "office-1"                      # one name per instance (its certificate's CN is gateway:office-1)
    ward = "26734"                             # "+" : every ward at this broker (a province)

    [broker]
    host = "broker.ward.example"
    port = 8883
    ca = "/etc/cccd-edge-gateway/ca.crt"       # set: TLS; with cert + key: mutual TLS (the broker kit's way)
    cert = "/etc/cccd-edge-gateway/gateway.crt"
    key = "/etc/cccd-edge-gateway/gateway.key"

    [storage]
    url = "sqlite:////var/lib/cccd-edge-gateway/results.db"   # or postgresql:///cccd?host=/run/postgresql

    [trust]
    ward_ca = "/etc/cccd-edge-gateway/ward-ca.crt"            # device certificates (x5c) are checked against it
    crl = "/etc/cccd-edge-gateway/ward-ca.crl"                # optional: python -m provisioning ward-ca revoke

    [receipts]
    key = "/etc/cccd-edge-gateway/ward-command.key"           # a key the terminals trust; absent: no receipts

    [web]                                                     # optional: the officers' pages, see web/settings.py
    listen = "0.0.0.0"
    port = 8080

    [api]                                                     # optional: the REST API (edge/office/api.py)
    listen = "127.0.0.1"                                      # another address needs tls_cert/tls_key (https)
    port = 8443
    tls_cert = "/etc/cccd-edge-gateway/api.crt"
    tls_key = "/etc/cccd-edge-gateway/api.key"
    client_ca = "/etc/cccd-edge-gateway/ward-ca.crt"          # optional: clients may log in by certificate (CN)

    [[webhooks]]                                              # optional, repeatable: edge/office/webhooks.py
    name = "procedure"
    url = "https://procedure.ward.example/hooks/cccd"
    secret_file = "/etc/cccd-edge-gateway/procedure.whsec"    # cccd-edge gateway webhook-secret --out ...
    wards = ["26734"]                                         # "+": every ward

Unknown keys are refused (a typo must not silently leave receipts off).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.config import read_toml
from edge.errors import ConfigError
from edge.office.web.settings import WebSettings
from edge.office.webhooks import check_url
from edge.protocol.messages import DEFAULT_TOPIC_PREFIX, TopicPrefix
from edge.protocol.receipt import DEFAULT_RECEIPT_LIFETIME, MAX_RECEIPT_LIFETIME

_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSettings(_Section):
    host: str = "localhost"
    port: int = Field(default=8883, ge=1, le=65535)
    ca: Path | None = None  # the broker's CA: TLS on
    cert: Path | None = None  # with key: mutual TLS (the ward broker wants it)
    key: Path | None = None
    client_id: str | None = None  # default gateway:<instance> (a ward broker takes the certificate's CN anyway)
    topic_prefix: TopicPrefix = DEFAULT_TOPIC_PREFIX
    #: The shared subscription's group. Unset: derived from the receipt key (every instance with the same key is in the
    #: same group, and nobody without it can guess the name); "gateway" when there is no receipt key. A client that
    #: joins the group takes its share of the results, and the broker's ACL (mosquitto 2.0 cannot refuse a SUBSCRIBE)
    #: then drops what it may not read: a terminal that knew the name could make results vanish.
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    keepalive: int = Field(default=30, ge=5, le=600)
    #: MQTT 5 Receive Maximum: results handed to this instance and not yet stored (the rest wait at the broker).
    receive_maximum: int = Field(default=100, ge=1, le=65535)
    #: How long the broker keeps this instance's session (and the results routed to it) while it is away.
    session_expiry: int = Field(default=14 * 24 * 3600, ge=0)

    @model_validator(mode="after")
    def _pair(self) -> BrokerSettings:
        if (self.cert is None) != (self.key is None):
            raise ValueError("broker.cert and broker.key go together (mutual TLS)")
        if self.cert is not None and self.ca is None:
            raise ValueError("broker.cert needs broker.ca (TLS)")
        return self


class StorageSettings(_Section):
    url: str = "sqlite:////var/lib/cccd-edge-gateway/results.db"
    #: The office's subject key (edge.office.subjects, 0600, created at first use; instances sharing a database share
    #: it). Default: beside a SQLite file, else /var/lib/cccd-edge-gateway/subject.key.
    subject_key: Path | None = None
    #: Seconds between retention runs (ResultStore.apply_retention) in ``gateway run``; 0: none (run it by cron).
    retention_every: float = Field(default=3600.0, ge=0)

    def subject_key_path(self) -> Path:
        if self.subject_key is not None:
            return self.subject_key
        if self.url.startswith("sqlite:///"):
            return Path(self.url.removeprefix("sqlite:///")).parent / "subject.key"
        return Path("/var/lib/cccd-edge-gateway/subject.key")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///<absolute path> or a postgresql:// URL")
        return value


class TrustSettings(_Section):
    ward_ca: Path | None = None  # the ward CA (PEM; a province: several CAs in one file)
    crl: Path | None = None
    terminal_certs: tuple[Path, ...] = ()  # keys configured by hand, for tokens without x5c (older terminals)
    jwks: Path | None = None
    decrypt_key: Path | None = None  # the ward's private key, to open encrypted (JWE) results

    @model_validator(mode="after")
    def _some_trust(self) -> TrustSettings:
        if self.ward_ca is None and not self.terminal_certs and self.jwks is None:
            raise ValueError("trust.ward_ca (or terminal_certs / jwks) is needed: nothing else vouches for a result")
        if self.crl is not None and self.ward_ca is None:
            raise ValueError("trust.crl needs trust.ward_ca")
        return self


class ReceiptSettings(_Section):
    key: Path | None = None  # P-256 PEM, 0600; None: this ward's consumer sends no receipts (PUBACK-only)
    lifetime: int = Field(default=DEFAULT_RECEIPT_LIFETIME, ge=60, le=MAX_RECEIPT_LIFETIME)


class ApiSettings(_Section):
    """The REST API for the procedure software: a listener of its own (machine clients with keys or certificates;
    the officers' pages are ``[web]``)."""

    listen: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)  # 0: a free port (tests)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Mutual TLS: a client may present a certificate from this CA; its CN names the client (api-key add --tls-cn).
    client_ca: Path | None = None
    command_key: Path | None = None  # signs the read requests; default: receipts.key (a key the terminals trust)
    command_lifetime: int = Field(default=120, ge=30, le=600)

    @model_validator(mode="after")
    def _tls(self) -> ApiSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("api.tls_cert and api.tls_key go together")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("api.client_ca needs api.tls_cert (mutual TLS is TLS)")
        if self.tls_cert is None and self.listen not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("api.listen beyond this host needs api.tls_cert: results hold citizens' data")
        return self


class WebhookSettings(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str
    secret_file: Path  # whsec_<base64>, 0600 (cccd-edge gateway webhook-secret --out PATH)
    wards: tuple[str, ...] = Field(min_length=1)  # the wards whose results it gets; "+": every ward
    max_attempts: int = Field(default=25, ge=1, le=1000)  # then a dead letter (the API lists and resends them)
    retry_first: float = Field(default=5.0, gt=0, le=3600)  # the first retry's delay; doubling, jittered ...
    retry_cap: float = Field(default=7200.0, gt=0, le=7 * 24 * 3600)  # ... up to this
    timeout: float = Field(default=15.0, gt=0, le=120)
    ca: Path | None = None  # the receiver's CA for https; default: the system's

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            return check_url(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("config webhooks.url: ")) from None

    @field_validator("wards")
    @classmethod
    def _wards(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(ward == "+" or _SEGMENT.match(ward) for ward in value):
            raise ValueError("wards are ward codes or '+'")
        return value


class GatewayConfig(_Section):
    instance: str
    ward: str = "+"
    broker: BrokerSettings = BrokerSettings()
    storage: StorageSettings = StorageSettings()
    trust: TrustSettings
    receipts: ReceiptSettings = ReceiptSettings()
    api: ApiSettings | None = None  # the REST API; absent: not served
    webhooks: tuple[WebhookSettings, ...] = ()
    web: WebSettings | None = None  # the officers' pages (edge/office/web/settings.py); absent: none served
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: tuple[WebhookSettings, ...]) -> tuple[WebhookSettings, ...]:
        names = [hook.name for hook in value]
        if len(set(names)) != len(names):
            raise ValueError("each webhook needs a name of its own (the queue tells them apart by it)")
        return value

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: str) -> str:
        if not _SEGMENT.match(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-' (the certificate's CN is gateway:<it>)")
        return value

    @field_validator("ward")
    @classmethod
    def _ward(cls, value: str) -> str:
        if value != "+" and not _SEGMENT.match(value):
            raise ValueError("must be a ward code or '+' (every ward)")
        return value

    @property
    def client_id(self) -> str:
        return self.broker.client_id or f"gateway:{self.instance}"


def parse_gateway_config(data: dict[str, Any]) -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{first['msg'].removeprefix('Value error, ')} ({len(exc.errors())} problem(s) in total)",
                          key=key or "(top level)") from None


def load_gateway_config(path: Path) -> GatewayConfig:
    return parse_gateway_config(read_toml(path))
