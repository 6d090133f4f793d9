"""The reference receiver at the ward office: subscribe, verify, de-duplicate, spot gaps, store.

Delivery is at least once, so the same result may arrive twice (a resend after a lost PUBACK): it is stored once,
keyed by ``(iss, jti)``. Each terminal numbers its results (``seq``); a jump means results are still on their way
or were lost, and is reported until the missing numbers arrive. The database holds citizens' data: it is created
0600, and only non-personal summaries are logged or printed.

A validly signed result is stored whatever its times say, with its ``flags`` (``late``, ``future``,
``clock_skew``, ``clock_unsynchronised``: ``edge.office.verify.ResultFlag``): the terminal deleted it once the
broker had it, so refusing it for a wrong clock or a long trip offline would lose the read for good.

The gap report (:meth:`ResultStore.gaps`) tells, per terminal, what never arrived (``missing``: below the highest
stored seq, neither stored nor quarantined) from what arrived but was refused (``refused``: a quarantined message
that claims this terminal and seq, with its quarantine row and reason). The claim is unverified, so it only moves
a seq from "missing" to "refused", never to "stored", and never opens new gaps: only a verified seq does that.

Every message ends in one of two tables: ``results`` (verified) or ``quarantine`` (anything else, with its reason).
Nothing a message holds can stop the message thread: a message is acknowledged to the broker once it is in either
table, so a poison message is not delivered again after a restart, and one that could not be written (a full disk)
is left unacknowledged for the next connection. A result answering a ``read_request`` whose Active
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
from edge.daemon.signing import decrypt_jwe, is_jwe
from edge.errors import EdgeError, JsonError, TokenError
from edge.files import create_private
from edge.logsetup import log_unexpected
from edge.office.verify import ActiveAuthCheck, VerifiedResult, check_active_auth, verify_result
from edge.protocol.b64url import b64url_decode
from edge.protocol.bounded_json import loads_bounded

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    iss TEXT NOT NULL, jti TEXT NOT NULL, seq INTEGER NOT NULL, received REAL NOT NULL,
    verdict TEXT NOT NULL, document TEXT NOT NULL, token TEXT NOT NULL,
    PRIMARY KEY (iss, jti)
);
CREATE INDEX IF NOT EXISTS results_by_seq ON results (iss, seq);
CREATE TABLE IF NOT EXISTS missing (iss TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (iss, seq));
CREATE TABLE IF NOT EXISTS terminals (iss TEXT PRIMARY KEY, max_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, received REAL NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
    iss TEXT, seq INTEGER, size INTEGER NOT NULL, payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_by_origin ON quarantine (iss, seq);
"""
#: Columns added since the first results table: ``iat`` as signed, ``flags`` a JSON list of ``ResultFlag`` values
#: (rows stored before have NULL and ``[]``).
_RESULT_COLUMNS = {"iat": "iat INTEGER", "flags": "flags TEXT NOT NULL DEFAULT '[]'"}
#: Seqs a quarantined message claims, for terminals whose stored results do not hold them: "arrived but refused".
_REFUSED = """
SELECT q.iss, q.seq, MAX(q.id), q.reason FROM quarantine q
WHERE q.iss IS NOT NULL AND q.seq IS NOT NULL AND (? IS NULL OR q.iss = ?)
  AND NOT EXISTS (SELECT 1 FROM results r WHERE r.iss = q.iss AND r.seq = q.seq)
GROUP BY q.iss, q.seq ORDER BY q.iss, q.seq
"""
#: Seqs below a terminal's highest stored one that are neither stored nor claimed by a quarantined message.
_MISSING = """
SELECT m.iss, m.seq FROM missing m
WHERE (? IS NULL OR m.iss = ?) AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.iss = m.iss AND q.seq = m.seq)
ORDER BY m.iss, m.seq
"""

#: Largest message looked at: a JWE result with the largest photo the schema allows is under half of it.
MAX_RESULT_BYTES = 1 << 20
#: What a quarantined message over :data:`MAX_RESULT_BYTES` keeps of itself: enough to see what it was. Messages
#: within the limit are kept whole, so that one refused for a key not yet installed can be taken in later.
OVERSIZE_KEEP_BYTES = 4096
_MAX_TOPIC_CHARS = 256
_MAX_ISS_CHARS = 64


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Literal["stored", "duplicate", "quarantined"]
    iss: str | None = None  # quarantined: as the payload claims it, unverified (None when it cannot be read)
    seq: int | None = None  # likewise
    verdict: str | None = None  # as the terminal sent it: a version 2 result may say verified_untrusted_issuer
    reason: str = ""  # why it was quarantined
    new_gaps: tuple[int, ...] = ()  # seq numbers found missing by this arrival
    missing: tuple[int, ...] = ()  # everything still missing (never arrived) for this terminal
    refused: tuple[int, ...] = ()  # its seqs that arrived but are quarantined (and not stored since)
    jti: str | None = None  # with iss, the key of the stored row
    iat: int | None = None  # when the terminal signed it: tells a fresh result from one left in an outbox
    active_auth: ActiveAuthCheck | None = None  # only for a request whose AA challenge the office registered
    quarantine_id: int | None = None  # the row in ``quarantine``
    topic: str | None = None  # only for a quarantined message
    rung: str | None = None  # the ladder's rung of ``verdict`` (``Verdict.rung``): what the office reports
    flags: tuple[str, ...] = ()  # stored or duplicate: the ``ResultFlag`` values judged when it was stored

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("status", self.status), ("iss", self.iss), ("seq", self.seq),
                                  ("jti", self.jti), ("iat", self.iat), ("verdict", self.verdict),
                                  ("rung", self.rung), ("flags", list(self.flags)),
                                  ("reason", self.reason), ("quarantine_id", self.quarantine_id),
                                  ("topic", self.topic), ("new_gaps", list(self.new_gaps)),
                                  ("missing", list(self.missing)), ("refused", list(self.refused)),
                                  ("active_auth", self.active_auth and self.active_auth.as_dict())) if v}


@dataclass(frozen=True, slots=True)
class RefusedSeq:
    """A seq that arrived but was refused: the latest quarantine row claiming it, and why."""

    seq: int
    quarantine_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Gaps:
    """One terminal's gap report: what never arrived, and what arrived but was refused."""

    iss: str
    missing: tuple[int, ...]
    refused: tuple[RefusedSeq, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"iss": self.iss, "missing": list(self.missing),
                "refused": [{"seq": r.seq, "quarantine_id": r.quarantine_id, "reason": r.reason}
                            for r in self.refused]}  # fmt: skip


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
        present = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        for name, definition in _RESULT_COLUMNS.items():  # a database from before these columns
            if name not in present:
                self._db.execute(f"ALTER TABLE results ADD COLUMN {definition}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ingest(self, payload: bytes, now: float, *, topic: str = "") -> Outcome:
        """Store ``payload`` if it verifies, else quarantine it; raises only when the database cannot be written."""
        checked = self._check(payload, now)
        if isinstance(checked, str):
            return self._quarantine(payload, now, topic, checked)
        return self._store(*checked, now)

    def retry_quarantined(self) -> list[Outcome]:
        """Check each message kept whole in quarantine again, with today's keys and rules, and store those that now
        verify (their quarantine rows go): a terminal's key installed since, or a result an older office refused
        for its times. Flags are judged at the time the message first arrived. The others stay as they are."""
        with self._lock:
            rows = list(self._db.execute("SELECT id, received FROM quarantine WHERE size <= ? ORDER BY id",
                                         (MAX_RESULT_BYTES,)))
        outcomes = []
        for row_id, received in rows:
            with self._lock:
                found = self._db.execute("SELECT payload FROM quarantine WHERE id=?", (row_id,)).fetchone()
            if found is None:
                continue
            checked = self._check(bytes(found[0]), received)
            if not isinstance(checked, str):
                outcomes.append(self._store(*checked, received, retried=row_id))
        return outcomes

    def _check(self, payload: bytes, now: float) -> tuple[VerifiedResult, ActiveAuthCheck | None] | str:
        """The verified result and the office's AA check, or why it must be quarantined."""
        try:
            if len(payload) > MAX_RESULT_BYTES:
                raise TokenError(f"message of {len(payload)} bytes, more than the {MAX_RESULT_BYTES} accepted")
            result = verify_result(payload, self._keys, int(now), decrypt_key=self._decrypt_key)
            request_id = result.document.request_id
            challenge = self._aa_challenges.get(request_id) if request_id is not None else None
            active_auth = check_active_auth(result.document, challenge) if challenge is not None else None
        except EdgeError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001  # a check's bug that an input found: keep the input, say what broke
            log_unexpected(log, "result check failed", exc)  # type and stack: a message may quote the payload
            return f"unexpected {type(exc).__name__} while checking"
        return result, active_auth

    def _store(self, result: VerifiedResult, active_auth: ActiveAuthCheck | None, now: float, *,
               retried: int | None = None) -> Outcome:  # fmt: skip
        """Insert a verified result (once per ``(iss, jti)``) and book its seq; ``retried``: the quarantine row it
        came from, deleted in the same transaction."""
        flags = tuple(flag.value for flag in result.flags)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                inserted = self._db.execute(
                    "INSERT OR IGNORE INTO results (iss, jti, seq, received, verdict, document, token, iat, flags) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (result.iss, result.jti, result.seq, now, result.document.verdict.value,
                     result.document.to_json().decode(), result.token, result.iat, json.dumps(flags)),
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
                else:  # the same result again: report the flags it was stored with
                    (stored_flags,) = self._db.execute("SELECT flags FROM results WHERE iss=? AND jti=?",
                                                       (result.iss, result.jti)).fetchone()
                    flags = tuple(json.loads(stored_flags))
                if retried is not None:
                    self._db.execute("DELETE FROM quarantine WHERE id=?", (retried,))
                gaps = self._gaps(result.iss)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        missing, refused = (gaps[0].missing, tuple(r.seq for r in gaps[0].refused)) if gaps else ((), ())
        return Outcome("stored" if inserted else "duplicate", result.iss, result.seq,
                       result.document.verdict.value, new_gaps=new_gaps, missing=missing, refused=refused,
                       jti=result.jti, iat=result.iat, active_auth=active_auth,
                       rung=result.document.verdict.rung.value, flags=flags)

    def stored(self, iss: str) -> list[tuple[int, str]]:
        """(seq, jti) of everything stored for ``iss``, by seq."""
        with self._lock:
            return list(self._db.execute("SELECT seq, jti FROM results WHERE iss=? ORDER BY seq", (iss,)))

    def counts(self) -> dict[str, Any]:
        """How many results are stored, how many of them carry each flag, and how many messages are quarantined."""
        with self._lock:
            (results,) = self._db.execute("SELECT COUNT(*) FROM results").fetchone()
            (quarantined,) = self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()
            flags = dict(self._db.execute("SELECT flag.value, COUNT(*) FROM results, json_each(results.flags) AS flag "
                                          "GROUP BY flag.value ORDER BY flag.value"))
        return {"results": results, "quarantined": quarantined, "flags": flags}

    def flags(self, iss: str) -> list[tuple[int, tuple[str, ...]]]:
        """(seq, flags) of everything stored for ``iss``, by seq."""
        with self._lock:
            rows = list(self._db.execute("SELECT seq, flags FROM results WHERE iss=? ORDER BY seq", (iss,)))
        return [(seq, tuple(json.loads(flags))) for seq, flags in rows]

    def gaps(self, iss: str | None = None) -> list[Gaps]:
        """The gap report of ``iss`` (or of every terminal with something missing or refused), by terminal."""
        with self._lock:
            return self._gaps(iss)

    def _gaps(self, iss: str | None) -> list[Gaps]:
        missing: dict[str, list[int]] = {}
        refused: dict[str, list[RefusedSeq]] = {}
        for terminal, seq in self._db.execute(_MISSING, (iss, iss)):
            missing.setdefault(terminal, []).append(seq)
        for terminal, seq, row_id, reason in self._db.execute(_REFUSED, (iss, iss)):
            refused.setdefault(terminal, []).append(RefusedSeq(seq, row_id, reason))
        return [Gaps(terminal, tuple(missing.get(terminal, ())), tuple(refused.get(terminal, ())))
                for terminal in sorted(missing.keys() | refused.keys())]

    def quarantined(self) -> list[dict[str, Any]]:
        """The quarantine without the payloads (they are the tokens, personal data): id, when, topic, why, origin."""
        with self._lock:
            rows = list(self._db.execute(
                "SELECT id, received, topic, reason, iss, seq, size FROM quarantine ORDER BY id"))
        names = ("quarantine_id", "received", "topic", "reason", "iss", "seq", "size")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def _quarantine(self, payload: bytes, now: float, topic: str, reason: str) -> Outcome:
        iss, seq = self._claimed_origin(payload)
        kept = payload if len(payload) <= MAX_RESULT_BYTES else payload[:OVERSIZE_KEEP_BYTES]
        with self._lock:
            row_id = self._db.execute(
                "INSERT INTO quarantine (received, topic, reason, iss, seq, size, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now, topic[:_MAX_TOPIC_CHARS], reason, iss, seq, len(payload), kept),
            ).lastrowid
            gaps = self._gaps(iss) if iss is not None else []
        missing, refused = (gaps[0].missing, tuple(r.seq for r in gaps[0].refused)) if gaps else ((), ())
        return Outcome("quarantined", iss, seq, reason=reason, quarantine_id=row_id, topic=topic[:_MAX_TOPIC_CHARS],
                       missing=missing, refused=refused)

    def _claimed_origin(self, payload: bytes) -> tuple[str | None, int | None]:
        """``iss`` and ``seq`` as a refused payload claims them, unverified: only to tell where it came from."""
        if len(payload) > MAX_RESULT_BYTES:
            return None, None
        try:
            token = payload
            if is_jwe(token):
                if self._decrypt_key is None:
                    return None, None
                token = decrypt_jwe(token, self._decrypt_key)
            parts = token.split(b".")
            if len(parts) != 3:
                return None, None
            claims = loads_bounded(b64url_decode(parts[1].decode("ascii")), what="claims",
                                   max_bytes=MAX_RESULT_BYTES)
        except (TokenError, JsonError, ValueError):  # UnicodeDecodeError and the b64url refusal are ValueErrors
            return None, None
        if not isinstance(claims, dict):
            return None, None
        iss, seq = claims.get("iss"), claims.get("seq")
        return (iss[:_MAX_ISS_CHARS] if isinstance(iss, str) else None,
                seq if isinstance(seq, int) and not isinstance(seq, bool) and abs(seq) < 1 << 63 else None)


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
        # Manual acks: a message is acknowledged once it is stored or quarantined (see the module docstring).
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                   manual_ack=True)
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
        # The thread boundary: an exception here would end paho's network thread, and the unacknowledged message
        # would end the next one too. Logged by type and stack only: messages may quote the payload.
        try:
            outcome = self.store.ingest(bytes(message.payload), self._clock(), topic=_topic(message))
        except Exception as exc:  # noqa: BLE001  # the database refused: leave it unacknowledged, for later
            log_unexpected(log, "a message could be neither stored nor quarantined; not acknowledged", exc)
            return
        client.ack(message.mid, message.qos)
        try:
            log.info("result %s", json.dumps(outcome.as_dict()))
            if self._on_outcome is not None:
                self._on_outcome(outcome)
        except Exception as exc:  # noqa: BLE001  # a failing report must not end the thread either
            log_unexpected(log, "reporting a message's outcome failed", exc)


def _topic(message: mqtt.MQTTMessage) -> str:
    try:
        return message.topic  # paho decodes it here, and raises for a topic that is not UTF-8
    except UnicodeDecodeError:
        return "<topic not UTF-8>"
