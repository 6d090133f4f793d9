"""The gateway's worker when handling a message breaks it (a bug some input found): the batch is handled again one
message at a time, the one that breaks it is quarantined with what broke, and the others are handled as usual.

A real gateway with a real SQLite store and no broker: messages are handed to it as paho's ``on_message`` would.
"""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.office.gateway import open_gateway
from edge.office.gateway_config import parse_gateway_config
from edge.office.store import Outcome
from edge.sim.broker import free_port
from tests.support.ward import WARD, Ward


def test_a_message_that_breaks_the_worker_is_quarantined_and_the_rest_handled(
        tmp_path: Path, ward: Ward, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    config = parse_gateway_config({
        "instance": "office-1", "ward": WARD, "broker": {"host": "127.0.0.1", "port": free_port()},  # none listens
        "storage": {"url": f"sqlite:///{tmp_path / 'results.db'}"}, "trust": {"ward_ca": str(ward.ca_path)},
    })  # fmt: skip
    outcomes: list[Outcome] = []
    both = threading.Event()

    def on_outcome(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 2:
            both.set()

    gateway = open_gateway(config, on_outcome=on_outcome)

    def broken_keep_status(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in keeping statuses")

    monkeypatch.setattr(gateway.store, "keep_status", broken_keep_status)
    messages = []
    for mid, (leaf, payload) in enumerate((("status", b'{"state": "online"}'), ("result", b"not a token")), 1):
        message = mqtt.MQTTMessage(mid=mid, topic=f"cccd-edge/v1/{WARD}/T-01/{leaf}".encode())
        message.payload = payload
        messages.append(message)
    gateway.start()
    try:
        assert gateway._client.on_message is not None
        for message in messages:
            gateway._client.on_message(gateway._client, None, message)  # as paho's network thread calls it
        assert both.wait(10), f"handled: {[o.as_dict() for o in outcomes]}"
        quarantined = {row["topic"].rsplit("/", 1)[1]: row["reason"] for row in gateway.store.quarantined()}
    finally:
        gateway.stop()
        gateway.store.close()
    assert [o.status for o in outcomes] == ["quarantined", "quarantined"]
    assert quarantined["status"] == "unexpected RuntimeError while handling it"
    assert quarantined["result"] != quarantined["status"]  # refused as what it is: no token
