"""Results signed by a wrong clock, or after a long time offline, through the terminal's real outbox and publisher,
a real mosquitto and the office's receiver on real SQLite.

The finding (issue 13): the terminal deletes a result once the broker acknowledges it; the office then refused 5 of 5
results signed in 2020 ("token expired"), a year ahead ("issued in the future") or in 1970, and every result older
than its 60-day ``exp``, and kept no trace of them, so its gap list named their seqs as missing for ever. Now each is
stored with its flags, a restart of the receiver keeps them, and the gap report tells a seq that never arrived from
one that arrived but was refused. The office's clock is fixed (``Receiver(clock=...)``) so that "90 days old" means
the same whenever the test runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.daemon.mqtt import MqttSettings, ResultPublisher, Topics
from edge.daemon.outbox import Outbox
from tests.fixtures.mqtt import MosquittoBroker
from tests.support.office_receiver import RecordingOffice, minimal_result_token

pytestmark = pytest.mark.stack

TERMINAL = "T-01"
DAY = 86_400
NOW = int(datetime(2027, 9, 1, tzinfo=UTC).timestamp())  # the office's clock
OLD_LIFETIME = 60 * DAY  # exp - iat of every result a terminal signed before results stopped expiring
#: The iat each clock of the finding gave a result, and the flags the office must store it with.
CLOCKS = {
    "2020": (int(datetime(2020, 6, 1, tzinfo=UTC).timestamp()), ["clock_skew"]),
    "a year ahead": (NOW + 365 * DAY, ["future", "clock_skew"]),
    "1970": (60, ["clock_skew"]),
    "90 days offline": (NOW - 90 * DAY, ["late"]),
    "on time": (NOW - 60, []),
}


@pytest.fixture
def signer() -> signers.KeySigner:
    return signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))


def result(signer: signers.KeySigner, ward: str, seq: int, iat: int, *, lifetime: int | None = OLD_LIFETIME,
           terminal_id: str = TERMINAL) -> bytes:  # fmt: skip
    return minimal_result_token(signer, ward=ward, seq=seq, iat=iat, lifetime=lifetime, terminal_id=TERMINAL,
                                document_terminal_id=terminal_id)


def start_office(broker: MosquittoBroker, db: Path, keys: dict[str, ec.EllipticCurvePublicKey], ward: str,
                 client_id: str) -> RecordingOffice:  # fmt: skip
    """The receiver with its store on the office's fixed clock; a fixed client id (a restart resumes the broker's
    session)."""
    return RecordingOffice(broker, db, keys, ward, client_id, clock=lambda: NOW)


class Terminal:
    """The terminal's delivery as the daemon runs it: an outbox on SQLite drained by the publisher, which deletes a
    result when the broker acknowledges it."""

    def __init__(self, broker: MosquittoBroker, state: Path, ward: str) -> None:
        self.outbox = Outbox(state / "outbox.db", max_count=100, max_bytes=10_000_000)
        self.settings = MqttSettings(broker.host, broker.port, Topics("cccd-edge/v1", ward, TERMINAL),
                                     f"{TERMINAL}-{uuid.uuid4().hex[:6]}", reconnect_min_delay=0.2,
                                     reconnect_max_delay=1)  # fmt: skip
        self.publisher: ResultPublisher | None = None

    def deliver(self, tokens: list[bytes | None]) -> None:
        """Queue every token (None: a seq that is lost on the way) and wait until the broker has them all."""
        lost = []
        for token in tokens:
            entry, _ = self.outbox.enqueue(token or b"lost")
            if token is None:
                lost.append(entry)
        for entry in lost:  # as if acknowledged by a broker that then lost it: the office never sees this seq
            self.outbox.ack(entry)
        self.publisher = ResultPublisher(self.settings, self.outbox)
        self.publisher.start()
        self.publisher.notify()
        assert self.publisher.wait_drained(30)
        assert self.outbox.stats().count == 0  # the terminal keeps nothing: the office is all there is

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
        self.outbox.close()


@pytest.fixture
def parts(mqtt_broker: MosquittoBroker, tmp_path: Path,
          mqtt_ward: str) -> Iterator[tuple[list[RecordingOffice], Terminal]]:  # fmt: skip
    offices: list[RecordingOffice] = []
    terminal = Terminal(mqtt_broker, tmp_path / "state", mqtt_ward)
    yield offices, terminal
    terminal.stop()
    for office in offices:
        office.stop()


def test_wrong_clocks_and_long_trips_are_stored_flagged_and_kept_across_a_restart(
    mqtt_broker: MosquittoBroker, tmp_path: Path, signer: signers.KeySigner, mqtt_ward: str,
    parts: tuple[list[RecordingOffice], Terminal],
) -> None:
    offices, terminal = parts
    db, client_id = tmp_path / "office" / "results.db", f"office-{uuid.uuid4().hex[:8]}"
    offices.append(start_office(mqtt_broker, db, {signer.kid: signer.public_key}, mqtt_ward, client_id))
    # Each clock as an old terminal signed it (exp = iat + 60 days) and as a terminal signs it now (no exp).
    signed = [(name, lifetime) for name in CLOCKS for lifetime in (OLD_LIFETIME, None)]
    terminal.deliver([result(signer, mqtt_ward, seq, CLOCKS[name][0], lifetime=lifetime)
                      for seq, (name, lifetime) in enumerate(signed, start=1)])
    outcomes = offices[0].wait_for(len(signed))
    by_seq = {o.seq: o for o in outcomes}
    assert [o.status for o in outcomes] == ["stored"] * len(signed), [o.reason for o in outcomes]
    assert {name: list(by_seq[seq].flags) for seq, (name, _) in enumerate(signed, start=1)} == {
        name: flags for name, (_, flags) in CLOCKS.items()}
    assert not any(o.missing or o.refused for o in outcomes)
    counts = offices[0].store.counts()
    assert counts == {"results": 10, "quarantined": 0, "flags": {"clock_skew": 6, "future": 2, "late": 2}}

    offices.pop().stop()  # the receiver restarts: the flags are in the database, not in memory
    offices.append(start_office(mqtt_broker, db, {signer.kid: signer.public_key}, mqtt_ward, client_id))
    assert offices[0].store.counts() == counts
    assert offices[0].store.flags(TERMINAL) == [(o.seq, o.flags) for o in sorted(outcomes, key=lambda o: o.seq or 0)]
    assert offices[0].store.gaps() == []
    assert offices[0].outcomes == []  # everything was acknowledged once stored: nothing delivered again


def test_the_gap_report_tells_never_arrived_from_arrived_but_refused(
    mqtt_broker: MosquittoBroker, tmp_path: Path, signer: signers.KeySigner, mqtt_ward: str,
    parts: tuple[list[RecordingOffice], Terminal],
) -> None:
    offices, terminal = parts
    stranger = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))  # a key the office was not given
    db, client_id = tmp_path / "office" / "results.db", f"office-{uuid.uuid4().hex[:8]}"
    offices.append(start_office(mqtt_broker, db, {signer.kid: signer.public_key}, mqtt_ward, client_id))
    terminal.deliver([
        result(signer, mqtt_ward, 1, NOW),
        result(stranger, mqtt_ward, 2, NOW),  # refused: unknown key
        None,  # seq 3: lost on the way
        result(signer, mqtt_ward, 4, NOW, terminal_id="T-99"),  # refused: the document names another terminal
        result(signer, mqtt_ward, 5, int(datetime(2020, 6, 1, tzinfo=UTC).timestamp())),  # stored, clock_skew
        result(signer, mqtt_ward, 6, NOW),
    ])
    outcomes = offices[0].wait_for(5)
    assert [(o.status, o.seq) for o in outcomes] == [("stored", 1), ("quarantined", 2), ("quarantined", 4),
                                                     ("stored", 5), ("stored", 6)]  # fmt: skip
    assert (outcomes[-1].missing, outcomes[-1].refused) == ((3,), (2, 4))  # the receive line says it too

    offices.pop().stop()
    offices.append(start_office(mqtt_broker, db, {signer.kid: signer.public_key}, mqtt_ward, client_id))
    (report,) = offices[0].store.gaps()
    assert (report.iss, report.missing) == (TERMINAL, (3,))
    assert [(r.seq, r.quarantine_id) for r in report.refused] == [(2, outcomes[1].quarantine_id),
                                                                  (4, outcomes[2].quarantine_id)]  # fmt: skip
    assert "unknown key id" in report.refused[0].reason
    assert "differs from issuer" in report.refused[1].reason
