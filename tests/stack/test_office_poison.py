"""Poison messages against the office receiver on a real mosquitto with real SQLite.

Before, a token with a non-ASCII byte or deep JSON raised out of the message callback: paho's network thread
ended, the message was never acknowledged, and the broker delivered it again to the restarted receiver, which died
the same way. Now each is quarantined and acknowledged, the good message behind it is stored, the thread lives on,
and a restart receives nothing again; a message that could not be written at all stays unacknowledged for later.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from edge import signers
from edge.protocol import jose
from tests.fixtures.mqtt import MosquittoBroker
from tests.support.office_receiver import RecordingOffice, minimal_result_token
from tests.support.poison_messages import poison_messages

pytestmark = pytest.mark.stack

TERMINAL = "T-01"


@pytest.fixture
def signer() -> signers.KeySigner:
    return signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))


def good_token(signer: jose.Signer, seq: int, ward: str) -> bytes:
    return minimal_result_token(signer, ward=ward, seq=seq, iat=int(time.time()), lifetime=3600, terminal_id=TERMINAL)


def start_office(broker: MosquittoBroker, db: Path, signer: signers.KeySigner, ward: str,
                 client_id: str) -> RecordingOffice:  # fmt: skip
    """The receiver with its store; ``client_id`` fixed so that a restart resumes the broker's session (what was not
    acknowledged is delivered again)."""
    return RecordingOffice(broker, db, {signer.kid: signer.public_key}, ward, client_id)


class Publisher:
    def __init__(self, broker: MosquittoBroker, ward: str) -> None:
        self.topic = f"cccd-edge/v1/{ward}/{TERMINAL}/result"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, payload: bytes) -> None:
        self.client.publish(self.topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def parts(mqtt_broker: MosquittoBroker, mqtt_ward: str) -> Iterator[tuple[list[RecordingOffice], Publisher]]:
    offices: list[RecordingOffice] = []
    publisher = Publisher(mqtt_broker, mqtt_ward)
    yield offices, publisher
    publisher.close()
    for office in offices:
        office.stop()


def test_poison_is_quarantined_the_good_one_stored_and_a_restart_gets_nothing_again(
    tmp_path: Path, mqtt_broker: MosquittoBroker, signer: signers.KeySigner, mqtt_ward: str,
    parts: tuple[list[RecordingOffice], Publisher], mqtt_contract_exempt: Callable[..., None],
) -> None:
    offices, publisher = parts
    db, client_id = tmp_path / "office" / "results.db", f"office-{uuid.uuid4().hex[:8]}"
    start = functools.partial(start_office, mqtt_broker, db, signer, mqtt_ward, client_id)
    offices.append(start())
    poisons = poison_messages(signer)
    mqtt_contract_exempt(*poisons.values())
    for payload in poisons.values():
        publisher.publish(payload)
    publisher.publish(good_token(signer, 1, mqtt_ward))
    outcomes = offices[0].wait_for(len(poisons) + 1)
    assert [o.status for o in outcomes] == ["quarantined"] * len(poisons) + ["stored"]
    assert all(o.reason and o.topic == publisher.topic for o in outcomes[:-1])
    publisher.publish(good_token(signer, 2, mqtt_ward))  # the message thread is alive
    assert offices[0].wait_for(len(poisons) + 2)[-1].status == "stored"
    assert offices[0].store.counts() == {"results": 2, "quarantined": len(poisons), "flags": {}}

    offices.pop().stop()
    offices.append(start())
    publisher.publish(good_token(signer, 3, mqtt_ward))
    after_restart = offices[0].wait_for(1)
    assert [(o.status, o.seq) for o in after_restart] == [("stored", 3)]  # the poison was acknowledged: not again
    assert offices[0].store.counts() == {"results": 3, "quarantined": len(poisons), "flags": {}}


def test_a_message_that_cannot_be_written_is_left_for_the_next_connection(
    tmp_path: Path, mqtt_broker: MosquittoBroker, signer: signers.KeySigner, mqtt_ward: str,
    parts: tuple[list[RecordingOffice], Publisher], caplog: pytest.LogCaptureFixture,
    mqtt_contract_exempt: Callable[..., None],
) -> None:
    offices, publisher = parts
    client_id = f"office-{uuid.uuid4().hex[:8]}"
    offices.append(start_office(mqtt_broker, tmp_path / "broken.db", signer, mqtt_ward, client_id))
    offices[0].store.close()  # the database is gone from under the receiver: nothing can be written
    publisher.publish(good_token(signer, 1, mqtt_ward))
    mqtt_contract_exempt(poison_messages(signer)["deep_header"])
    publisher.publish(poison_messages(signer)["deep_header"])
    unwritten = lambda: [r for r in caplog.records if "neither stored nor quarantined" in r.getMessage()]  # noqa: E731
    deadline = time.monotonic() + 20
    while len(unwritten()) < 2:
        assert time.monotonic() < deadline, "the receiver never tried the two messages"
        time.sleep(0.02)
    assert offices[0].outcomes == []
    assert all("ProgrammingError" in r.getMessage() and "079203012345" not in r.getMessage() for r in unwritten())
    offices.pop().receiver.stop()

    offices.append(start_office(mqtt_broker, tmp_path / "office.db", signer, mqtt_ward, client_id))
    outcomes = offices[0].wait_for(2)
    assert sorted(o.status for o in outcomes) == ["quarantined", "stored"]  # both delivered again, now written
