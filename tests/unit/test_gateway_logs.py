"""What the office gateway writes to its log about a sender's message stays one line: a topic is the sender's input.

mosquitto refuses a topic with a control character, another broker need not; so the message is handed to the
gateway as paho hands it (its ``on_message``), with a real SQLite store, and no broker at all.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from edge.office.store import Outcome
from tests.support.gateway import brokerless_gateway, hand_to
from tests.support.ward import WARD, Ward

FORGED = "WARNING edge.office.gateway: stored T-09 seq 1"


def test_a_topic_with_a_newline_is_one_escaped_log_line(tmp_path: Path, ward: Ward,
                                                       caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    outcomes: list[Outcome] = []
    handled = threading.Event()

    def on_outcome(outcome: Outcome) -> None:
        outcomes.append(outcome)
        handled.set()

    gateway = brokerless_gateway(tmp_path / "results.db", ward.ca_path, on_outcome=on_outcome)
    caplog.set_level(logging.INFO, logger="edge.office.gateway")
    gateway.start()
    try:
        hand_to(gateway, f"cccd-edge/v1/{WARD}/T-01\n{FORGED}\r\x1b[2K/result", b"not a token\nERROR forged too")
        assert handled.wait(10)
    finally:
        gateway.stop()
        gateway.store.close()
    assert [o.status for o in outcomes] == ["quarantined"]
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.office.gateway"]
    (line,) = [line for line in lines if line.startswith("quarantined")]
    assert not {"\n", "\r", "\x1b"} & set(line)
    assert f"T-01\\n{FORGED}\\r\\x1b[2K" in line  # the topic is there, escaped
    assert not any(written.startswith(FORGED) for written in "\n".join(lines).splitlines())
