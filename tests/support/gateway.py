"""The office gateway as the stack tests run it in-process: its config for one ward at a test broker, and an
instance started and subscribed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.office.gateway import Gateway, open_gateway
from edge.office.gateway_config import GatewayConfig, parse_gateway_config
from edge.sim.broker import MosquittoBroker, free_port
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


def brokerless_gateway(storage: Path, ward_ca: Path, **hooks: Any) -> Gateway:
    """A gateway (not started) whose broker never answers (a free port): a test hands it messages itself
    (:func:`hand_to`), as no broker would (a control character in a topic) or faster than one would."""
    return open_gateway(parse_gateway_config({
        "instance": "office-1", "ward": WARD, "broker": {"host": "127.0.0.1", "port": free_port()},
        "storage": {"url": f"sqlite:///{storage}"}, "trust": {"ward_ca": str(ward_ca)},
    }), **hooks)  # fmt: skip


def hand_to(gateway: Gateway, topic: str, payload: bytes, mid: int = 1) -> None:
    """``payload`` on ``topic`` (QoS 0) to ``gateway`` as paho's network thread hands a message over."""
    message = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
    message.payload = payload
    assert gateway._client.on_message is not None
    gateway._client.on_message(gateway._client, None, message)


def start_gateway(config: GatewayConfig, clock: Callable[[], float] = time.time) -> Gateway:
    """Started and subscribed at the broker: what is published from now on reaches it (or its session)."""
    gateway = open_gateway(config, clock=clock)
    gateway.start()
    assert gateway.subscribed.wait(10)
    return gateway
