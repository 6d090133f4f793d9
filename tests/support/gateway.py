"""The office gateway as the stack tests run it in-process: its config for one ward at a test broker, and an
instance started and subscribed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edge.office.gateway import Gateway, open_gateway
from edge.office.gateway_config import GatewayConfig, parse_gateway_config
from edge.sim.broker import MosquittoBroker
from tests.support.ward import WARD


def gateway_config(broker: MosquittoBroker, storage: str | Path, *, trust: Mapping[str, Any],
                   receipt_key: Path | None, instance: str = "office-1") -> GatewayConfig:  # fmt: skip
    """``storage``: a database URL, or a SQLite file; ``receipt_key``: the key it signs receipts with (None: it
    sends none)."""
    url = storage if isinstance(storage, str) else f"sqlite:///{storage}"
    return parse_gateway_config({
        "instance": instance, "ward": WARD,
        "broker": {"host": broker.host, "port": broker.port, "receive_maximum": 20},
        "storage": {"url": url}, "trust": dict(trust),
        "receipts": {"key": str(receipt_key)} if receipt_key is not None else {},
    })  # fmt: skip


def start_gateway(config: GatewayConfig, clock: Callable[[], float] = time.time) -> Gateway:
    """Started and subscribed at the broker: what is published from now on reaches it (or its session)."""
    gateway = open_gateway(config, clock=clock)
    gateway.start()
    assert gateway.subscribed.wait(10)
    return gateway
