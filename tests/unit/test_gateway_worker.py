"""The gateway's worker when handling a message breaks it (a bug some input found): the batch is handled again one
message at a time, the one that breaks it is quarantined with what broke, and the others are handled as usual.

A real gateway with a real SQLite store and no broker: messages are handed to it as paho's ``on_message`` would.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge.office.store import Outcome
from tests.support.gateway import brokerless_gateway, hand_to
from tests.support.ward import WARD, Ward


def test_a_message_that_breaks_the_worker_is_quarantined_and_the_rest_handled(
        tmp_path: Path, ward: Ward, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    outcomes: list[Outcome] = []
    both = threading.Event()

    def on_outcome(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 2:
            both.set()

    gateway = brokerless_gateway(tmp_path / "results.db", ward.ca_path, on_outcome=on_outcome)

    def broken_keep_status(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in keeping statuses")

    monkeypatch.setattr(gateway.store, "keep_status", broken_keep_status)
    gateway.start()
    try:
        hand_to(gateway, f"cccd-edge/v1/{WARD}/T-01/status", b'{"state": "online"}', mid=1)
        hand_to(gateway, f"cccd-edge/v1/{WARD}/T-01/result", b"not a token", mid=2)
        assert both.wait(10), f"handled: {[o.as_dict() for o in outcomes]}"
        quarantined = {row["topic"].rsplit("/", 1)[1]: row["reason"] for row in gateway.store.quarantined()}
    finally:
        gateway.stop()
        gateway.store.close()
    assert [o.status for o in outcomes] == ["quarantined", "quarantined"]
    assert quarantined["status"] == "unexpected RuntimeError while handling it"
    assert quarantined["result"] != quarantined["status"]  # refused as what it is: no token
