"""The reference receiver at the ward office: subscribe, verify, de-duplicate, spot gaps, store.

Delivery is at least once, so the same result may arrive twice (a resend after a lost PUBACK): it is stored once,
keyed by ``(iss, jti)``. Each terminal numbers its results (``seq``); a jump means results are still on their way
or were lost, and is reported until the missing numbers arrive. The database holds citizens' data: it is created
0600, and only non-personal summaries are logged or printed. A result answering a ``read_request`` whose Active
Authentication challenge the office registered is checked against that challenge, and the outcome says how it went.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.daemon.mqtt import close_loop_sockets
from edge.errors import TokenError
from edge.files import create_private
from edge.office.verify import ActiveAuthCheck, check_active_auth, verify_result

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    iss TEXT NOT NULL, jti TEXT NOT NULL, seq INTEGER NOT NULL, received REAL NOT NULL,
    verdict TEXT NOT NULL, document TEXT NOT NULL, token TEXT NOT NULL,
    PRIMARY KEY (iss, jti)
);
CREATE TABLE IF NOT EXISTS missing (iss TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (iss, seq));
CREATE TABLE IF NOT EXISTS terminals (iss TEXT PRIMARY KEY, max_seq INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Literal["stored", "duplicate", "rejected"]
    iss: str | None = None
    seq: int | None = None
    verdict: str | None = None
    reason: str = ""
    new_gaps: tuple[int, ...] = ()  # seq numbers found missing by this arrival
    missing: tuple[int, ...] = ()  # everything still missing for this terminal
    jti: str | None = None  # with iss, the key of the stored row
    iat: int | None = None  # when the terminal signed it: tells a fresh result from one left in an outbox
    active_auth: ActiveAuthCheck | None = None  # only for a request whose AA challenge the office registered

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("status", self.status), ("iss", self.iss), ("seq", self.seq),
                                  ("jti", self.jti), ("iat", self.iat), ("verdict", self.verdict),
                                  ("reason", self.reason), ("new_gaps", list(self.new_gaps)),
                                  ("missing", list(self.missing)),
                                  ("active_auth", self.active_auth and self.active_auth.as_dict())) if v}


class ResultStore:
    """Verified results in SQLite, one row per ``(iss, jti)``, with the seq bookkeeping per terminal.

    ``aa_challenges`` maps the ``jti`` of each ``read_request`` the office sent with a challenge to that challenge;
    the office system that sends the requests fills it (the store only reads it).
    """

    def __init__(self, path: Path, keys: Mapping[str, ec.EllipticCurvePublicKey], *,
                 decrypt_key: ec.EllipticCurvePrivateKey | None = None,
                 aa_challenges: Mapping[str, bytes] | None = None) -> None:  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path)
        self._keys = keys
        self._decrypt_key = decrypt_key
        self._aa_challenges = aa_challenges if aa_challenges is not None else {}
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ingest(self, payload: bytes, now: float) -> Outcome:
        try:
            result = verify_result(payload, self._keys, int(now), decrypt_key=self._decrypt_key)
        except TokenError as exc:
            return Outcome("rejected", reason=str(exc))
        request_id = result.document.request_id
        challenge = self._aa_challenges.get(request_id) if request_id is not None else None
        active_auth = check_active_auth(result.document, challenge) if challenge is not None else None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                inserted = self._db.execute(
                    "INSERT OR IGNORE INTO results (iss, jti, seq, received, verdict, document, token) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (result.iss, result.jti, result.seq, now, result.document.verdict.value,
                     result.document.to_json().decode(), result.token),
                ).rowcount
                new_gaps: tuple[int, ...] = ()
                if inserted:
                    row = self._db.execute("SELECT max_seq FROM terminals WHERE iss=?", (result.iss,)).fetchone()
                    max_seq = row[0] if row else 0
                    if result.seq > max_seq:
                        new_gaps = tuple(range(max_seq + 1, result.seq))
                        self._db.executemany("INSERT OR IGNORE INTO missing (iss, seq) VALUES (?, ?)",
                                             [(result.iss, s) for s in new_gaps])
                        self._db.execute("INSERT OR REPLACE INTO terminals (iss, max_seq) VALUES (?, ?)",
                                         (result.iss, result.seq))
                    else:
                        self._db.execute("DELETE FROM missing WHERE iss=? AND seq=?", (result.iss, result.seq))
                missing = tuple(s for (s,) in self._db.execute(
                    "SELECT seq FROM missing WHERE iss=? ORDER BY seq", (result.iss,)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Outcome("stored" if inserted else "duplicate", result.iss, result.seq,
                       result.document.verdict.value, new_gaps=new_gaps, missing=missing, jti=result.jti,
                       iat=result.iat, active_auth=active_auth)

    def stored(self, iss: str) -> list[tuple[int, str]]:
        """(seq, jti) of everything stored for ``iss``, by seq."""
        with self._lock:
            return list(self._db.execute("SELECT seq, jti FROM results WHERE iss=? ORDER BY seq", (iss,)))


class Receiver:
    """Subscribes to every terminal of a ward and feeds :class:`ResultStore`; persistent session (QoS 1)."""

    def __init__(self, store: ResultStore, *, host: str, port: int, ward: str, prefix: str = "cccd-edge/v1",
                 client_id: str = "cccd-edge-office", tls: dict[str, str] | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self._topic = f"{prefix}/{ward}/+/result"
        self._on_outcome = on_outcome
        self._clock = clock or time.time
        self.subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if tls is not None:
            self._client.tls_set(ca_certs=tls.get("ca"), certfile=tls.get("cert"), keyfile=tls.get("key"))
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._handle_connect
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_message = self._handle_message
        self._host, self._port = host, port

    def start(self) -> None:
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
        session.SessionExpiryInterval = 7 * 24 * 3600  # results queued at the broker while the office is down
        self._client.connect_async(self._host, self._port, clean_start=False, properties=session)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        close_loop_sockets(self._client)

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                        reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the office connection: %s", reason_code)
            return
        client.subscribe(self._topic, qos=1)

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                          properties: Properties | None) -> None:
        # A broker whose ACL denies the filter still answers SUBACK, with a failure code: that is no subscription.
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            log.warning("broker refused the subscription to %s: %s", self._topic, refused[0])
            return
        # Scripts wait for this line before a terminal publishes: until the office's first subscription at a broker,
        # the broker keeps nothing for it.
        log.info("subscribed to %s", self._topic)
        self.subscribed.set()

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        outcome = self.store.ingest(bytes(message.payload), self._clock())
        log.info("result %s", json.dumps(outcome.as_dict()))
        if self._on_outcome is not None:
            self._on_outcome(outcome)
