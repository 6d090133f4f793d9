"""The terminal's result store: a result the outbox refuses stays held, whatever the refusal, until it is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge.daemon.health import Liveness
from edge.daemon.mqtt import MqttSettings, ResultPublisher, Topics
from edge.daemon.outbox import Outbox
from edge.daemon.result_store import ResultStore, Sealer
from edge.daemon.threads import Shared
from edge.errors import OutboxCorruptError
from edge.signers import KeySigner
from tests.support.results import sample_result


def test_a_held_result_survives_a_retry_the_outbox_refuses_otherwise_than_for_room(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    now = [0.0]
    shared = Shared(lambda: now[0], Liveness(lambda: now[0]))
    outbox = Outbox(tmp_path / "outbox.db", max_count=1, max_bytes=1 << 20)
    publisher = ResultPublisher(MqttSettings("127.0.0.1", 1, Topics("p", "w", "T-01"), "T-01"), outbox)  # not started
    store = ResultStore(shared, Sealer(KeySigner(ec.generate_private_key(ec.SECP256R1())), "T-01"), outbox, publisher)
    try:
        assert store.keep(sample_result()).seq == 1
        assert store.keep(sample_result()).storage_fault == "result_held"  # the outbox is full (max_count 1)
        outbox.max_count = 10

        def damaged(*_args: object, **_kwargs: object) -> tuple[int, int]:
            raise OutboxCorruptError("outbox damaged")

        with monkeypatch.context() as patched:
            patched.setattr(outbox, "enqueue", damaged)
            now[0] += 60.0
            assert store.retry_held() is False  # refused, and the worker's thread goes on
        assert store.held == 1
        now[0] += 60.0
        assert store.retry_held() is True
        assert (store.held, outbox.stats().count) == (0, 2)
    finally:
        outbox.close()
