"""``[web]`` in gateway.toml: where the officers' pages listen and how officers are recognised.

Example::

    [web]
    listen = "0.0.0.0"                # the ward LAN; 127.0.0.1 behind a reverse proxy on the same host
    port = 8080
    command_key = "/etc/cccd-edge-gateway/ward-command.key"   # signs desk reads; default: [receipts] key
    session_idle = 900                # seconds without a request before the officer logs in again
    session_max = 36000               # a working day at most
    identity_header = "X-Remote-User" # optional: the ward's reverse proxy names the officer ...
    trusted_proxies = ["127.0.0.1"]   # ... and only a request from one of these addresses is believed
    secure_cookies = true             # behind HTTPS (the proxy): cookies never travel in clear
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: a free port (tests)
    command_key: Path | None = None
    session_idle: int = Field(default=900, ge=60, le=24 * 3600)
    session_max: int = Field(default=10 * 3600, ge=300, le=7 * 24 * 3600)
    identity_header: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
    trusted_proxies: tuple[str, ...] = ()
    secure_cookies: bool = False

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # a ValueError names the entry
        return value

    @model_validator(mode="after")
    def _proxy(self) -> WebSettings:
        if self.identity_header is not None and not self.trusted_proxies:
            raise ValueError("web.identity_header needs web.trusted_proxies: a header anyone can send proves nothing")
        return self

    def trusts(self, address: str | None) -> bool:
        """Whether a request from ``address`` may name its officer by :attr:`identity_header`."""
        if self.identity_header is None or address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies)
