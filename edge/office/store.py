"""The office's store of results, shared by the reference receiver and the gateway: verify, de-duplicate, spot gaps.

Delivery is at least once, so the same result may arrive twice (a resend after a lost PUBACK or receipt): it is
stored once, by the unique key ``(iss, jti)`` (a second gateway instance inserting the same result at the same
moment waits on that key and then finds it there). Each terminal numbers its results (``seq``); a jump means
results are still on their way or were lost, and is reported until the missing numbers arrive. A terminal is
``(ward, iss)``: ids are chosen per ward (the device certificate names both), and a province's database holds many
wards' "T-01". The database holds citizens' data: a SQLite file is created 0600, and only non-personal summaries are
logged or printed.

One code path for SQLite (one ward, one instance) and PostgreSQL (several instances, a province):
:class:`~edge.office.database.Database` holds the few differences.

A validly signed result is stored whatever its times say, with its ``flags`` (``late``, ``future``,
``clock_skew``, ``clock_unsynchronised``: ``edge.office.verify.ResultFlag``): the terminal deleted it once the
broker had it, so refusing it for a wrong clock or a long trip offline would lose the read for good.

The gap report (:meth:`ResultStore.gaps`) tells, per terminal, what never arrived (``missing``: below the highest
stored seq, neither stored nor quarantined) from what arrived but was refused (``refused``: a quarantined message
that claims this terminal and seq, with its quarantine row and reason). The claim is unverified, so it only moves
a seq from "missing" to "refused", never to "stored", and never opens new gaps: only a verified seq does that.

Every message ends in one of two tables: ``results`` (verified) or ``quarantine`` (anything else, with its reason).
A result answering a ``read_request`` whose Active Authentication challenge the office registered (in memory, or in
``read_requests`` for every instance: :meth:`ResultStore.register_read_request`) is checked against that challenge,
and the outcome is stored with it. ``terminal_status`` keeps each terminal's last retained status (the fleet view).

A result whose profile carries the chip's own files (``online_check``, ``edge.protocol.procedures``) is accepted
only as it must travel, encrypted to the ward (JWE): one that arrives as a plain JWS is quarantined. The office
forwards those files to the national authentication service through its provider and records the answer against
the result (:meth:`ResultStore.record_online_answer`, table ``online_answers``: every answer received, kept as
received, so a repeated check keeps its history).

Retention (:meth:`ResultStore.apply_retention`): a result keeps its personal data for its profile's
``retention_days`` (``edge.protocol.procedures``), counted from its read (the earlier of the document's
``completed_at`` and its arrival: a terminal's clock running ahead keeps nothing longer; column ``expires``). Then it
is *reduced*, not deleted: the row keeps its key, seq, verdict, checks, terminal, ward, times and flags (so the gap
report still counts it as stored and a resend is still a duplicate, not a new result), and loses its token, its
citizen and chip files (``document`` becomes the non-personal summary :func:`reduced_document`, ``reduced`` says
when), its lookup key ``subject`` and its online answers. Quarantined payloads are dropped past the longest
retention (their profile is unverified). One citizen's results are found by ``subject``: HMAC-SHA256 of the ID
number under the office's secret (``edge.office.subjects``), never the number in clear; :meth:`subject_results`
and :meth:`reduce` serve the citizen's rights to a copy and to erasure.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from edge.errors import ConfigError, EdgeError, JsonError, OnlineAnswerError, TokenError
from edge.logsetup import log_unexpected
from edge.office.contract import RESULT_COLUMNS, ActiveAuthOutcome, ResultRecord
from edge.office.database import Database
from edge.office.verify import ActiveAuthCheck, TerminalKeys, VerifiedResult, check_active_auth, verify_result
from edge.protocol.b64url import b64url_decode
from edge.protocol.bounded_json import loads_bounded
from edge.protocol.jose import decrypt_jwe, is_jwe
from edge.protocol.messages import software_version
from edge.protocol.procedures import PROCEDURES, ProcedureProfile, procedure

log = logging.getLogger(__name__)

#: Rows one multi-row INSERT carries (15 parameters each: far below SQLite's 32,766 and PostgreSQL's 65,535).
_ROWS_PER_STATEMENT = 200


def _schema(db: Database) -> list[str]:
    t = db.types
    return [
        f"""CREATE TABLE IF NOT EXISTS results (
            iss TEXT NOT NULL, jti TEXT NOT NULL, seq {t['int']} NOT NULL, received {t['real']} NOT NULL,
            verdict TEXT NOT NULL, document TEXT NOT NULL, token TEXT NOT NULL,
            PRIMARY KEY (iss, jti))""",
        "CREATE INDEX IF NOT EXISTS results_by_seq ON results (iss, seq)",
        "CREATE INDEX IF NOT EXISTS results_by_received ON results (received)",  # the pages' feed reads by arrival
        *_seq_tables(db),
        f"""CREATE TABLE IF NOT EXISTS quarantine (
            id {t['id']}, received {t['real']} NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
            iss TEXT, seq {t['int']}, size {t['int']} NOT NULL, payload {t['blob']} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS quarantine_by_origin ON quarantine (iss, seq)",
        f"""CREATE TABLE IF NOT EXISTS terminal_status (
            ward TEXT NOT NULL, iss TEXT NOT NULL, state TEXT, status TEXT NOT NULL, received {t['real']} NOT NULL,
            PRIMARY KEY (ward, iss))""",
        f"""CREATE TABLE IF NOT EXISTS read_requests (
            jti TEXT PRIMARY KEY, challenge {t['blob']} NOT NULL, created {t['real']} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS online_answers (
            id {t['id']}, iss TEXT NOT NULL, jti TEXT NOT NULL, received {t['real']} NOT NULL, answer TEXT NOT NULL,
            recorded_by TEXT)""",
        "CREATE INDEX IF NOT EXISTS online_answers_by_result ON online_answers (iss, jti)",
    ]


def _seq_tables(db: Database) -> list[str]:
    """The seq bookkeeping, per ``(ward, iss)``: terminal ids are chosen per ward (the device certificate names both),
    and a province's database holds many wards' "T-01"."""
    t = db.types
    return [f"""CREATE TABLE IF NOT EXISTS missing (
                ward TEXT NOT NULL, iss TEXT NOT NULL, seq {t['int']} NOT NULL, PRIMARY KEY (ward, iss, seq))""",
            f"""CREATE TABLE IF NOT EXISTS terminals (
                ward TEXT NOT NULL, iss TEXT NOT NULL, max_seq {t['int']} NOT NULL, PRIMARY KEY (ward, iss))"""]


#: Columns added to ``results`` since its first version: ``iat`` as signed, ``flags`` a JSON list of ``ResultFlag``
#: values (rows stored before have NULL and ``[]``), ``ward`` the document's ward, ``kid`` the key that signed,
#: ``active_auth`` the office's AA check (JSON, NULL when none was possible), ``stored_by`` the gateway instance.
def _result_columns(db: Database) -> dict[str, str]:
    return {"iat": f"iat {db.types['int']}", "flags": "flags TEXT NOT NULL DEFAULT '[]'", "ward": "ward TEXT",
            "kid": "kid TEXT", "active_auth": "active_auth TEXT", "stored_by": "stored_by TEXT",
            "subject": "subject TEXT", "expires": f"expires {db.types['real']}",
            "reduced": f"reduced {db.types['real']}"}


#: ``quarantine.ward``: the ward a message claims (its document's ``ward_code``; "" when it names none), beside its
#: claimed ``iss``: the gap report's "refused" is per ``(ward, iss)`` too.
_QUARANTINE_COLUMNS = {"ward": "ward TEXT"}

#: Indexes on columns added since the first version, created after them (an older database gains the columns in
#: :meth:`Database.create_schema`): ``subject`` (the ID number's keyed hash) and ``expires`` (when the personal data
#: goes) for retention; ``ward`` with its terminals' arrivals for the fleet's and a counter's last result per
#: ``(ward, iss)``, which otherwise read the whole table.
_LATER_INDEXES = ("CREATE INDEX IF NOT EXISTS results_by_subject ON results (subject)",
                  "CREATE INDEX IF NOT EXISTS results_by_expiry ON results (expires)",
                  "CREATE INDEX IF NOT EXISTS results_by_ward_terminal ON results (ward, iss, received)")
DAY_SECONDS = 24 * 3600
#: The column roles of a ``results`` row as :meth:`ResultStore._store` inserts it (:meth:`Database.rows_source`).
_RESULT_ROW_KINDS = ("text", "text", "int", "real", "text", "text", "text", "int", "text", "text", "text", "text",
                     "text", "text", "real")
#: What a reduced result's ``document`` keeps: nothing that tells who the citizen was.
REDUCED_FIELDS = ("schema_version", "terminal_id", "ward_code", "procedure_profile", "completed_at", "request_id",
                  "verdict", "checks")


def subject_of(id_number: str, key: bytes) -> str:
    """The lookup key of a citizen's results: HMAC-SHA256 of the ID number under the office's secret, hex. Without
    the secret the column is no register of ID numbers (12 digits are too few for a plain hash)."""
    return hmac.new(key, id_number.encode("ascii", "replace"), hashlib.sha256).hexdigest()


def reduced_document(document: Mapping[str, Any], reduced_at: float) -> str:
    """``document`` reduced to its non-personal fields, with when that happened (``reduced``)."""
    kept = {name: document[name] for name in REDUCED_FIELDS if name in document}
    return json.dumps({**kept, "reduced": reduced_at}, separators=(",", ":"), ensure_ascii=False)


def _expiry(document: Mapping[str, Any], received: float) -> float | None:
    """When ``document``'s personal data must go: its profile's retention after the read (None: unknown profile)."""
    try:
        rules = PROCEDURES[ProcedureProfile(str(document.get("procedure_profile")))]
    except ValueError:
        return None
    read = received
    completed = document.get("completed_at")
    if isinstance(completed, str):
        with contextlib.suppress(ValueError):
            read = min(received, datetime.fromisoformat(completed).timestamp())
    return read + rules.retention_days * DAY_SECONDS


def _id_number(document: Mapping[str, Any]) -> str | None:
    citizen = document.get("citizen")
    number = citizen.get("id_number") if isinstance(citizen, dict) else None
    return number if isinstance(number, str) else None


#: Seqs a quarantined message claims, for terminals (``(ward, iss)``) whose stored results do not hold them:
#: "arrived but refused" (the latest quarantine row of each). Parameters: iss twice, ward twice (None: any).
_REFUSED = """
SELECT q.ward, q.iss, q.seq, q.id, q.reason FROM quarantine q
WHERE q.iss IS NOT NULL AND q.seq IS NOT NULL AND q.ward IS NOT NULL
  AND (CAST(? AS TEXT) IS NULL OR q.iss = ?) AND (CAST(? AS TEXT) IS NULL OR q.ward = ?)
  AND q.id = (SELECT MAX(q2.id) FROM quarantine q2 WHERE q2.iss = q.iss AND q2.seq = q.seq AND q2.ward = q.ward)
  AND NOT EXISTS (SELECT 1 FROM results r WHERE r.iss = q.iss AND r.seq = q.seq AND r.ward = q.ward)
ORDER BY q.ward, q.iss, q.seq
"""
#: Seqs below a terminal's highest stored one that are neither stored nor claimed by a quarantined message.
_MISSING = """
SELECT m.ward, m.iss, m.seq FROM missing m
WHERE (CAST(? AS TEXT) IS NULL OR m.iss = ?) AND (CAST(? AS TEXT) IS NULL OR m.ward = ?)
  AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.iss = m.iss AND q.seq = m.seq AND q.ward = m.ward)
ORDER BY m.ward, m.iss, m.seq
"""

#: Largest message looked at: the largest JWE result the schema allows (online_check, every chip file at its cap)
#: is ~614 KB (README, "Result size").
MAX_RESULT_BYTES = 1 << 20
#: What a quarantined message over :data:`MAX_RESULT_BYTES` keeps of itself: enough to see what it was. Messages
#: within the limit are kept whole, so that one refused for a key not yet installed can be taken in later.
OVERSIZE_KEEP_BYTES = 4096
#: Largest answer of the national authentication service recorded (a JSON object; a provider's is a few KB).
MAX_ONLINE_ANSWER_BYTES = 64 * 1024
#: Largest retained status taken for the fleet view (a terminal's is ~300 bytes).
MAX_STATUS_BYTES = 16 * 1024
_MAX_TOPIC_CHARS = 256
_MAX_ISS_CHARS = 64
_MAX_STATE_CHARS = 32


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Literal["stored", "duplicate", "quarantined"]
    iss: str | None = None  # quarantined: as the payload claims it, unverified (None when it cannot be read)
    seq: int | None = None  # likewise
    verdict: str | None = None  # as the terminal sent it: a version 2 result may say verified_untrusted_issuer
    reason: str = ""  # why it was quarantined
    new_gaps: tuple[int, ...] = ()  # seq numbers found missing by this arrival
    missing: tuple[int, ...] = ()  # everything still missing (never arrived) for this terminal (of this ward)
    refused: tuple[int, ...] = ()  # its seqs that arrived but are quarantined (and not stored since)
    jti: str | None = None  # with iss, the key of the stored row
    iat: int | None = None  # when the terminal signed it: tells a fresh result from one left in an outbox
    active_auth: ActiveAuthCheck | None = None  # only for a request whose AA challenge the office registered
    quarantine_id: int | None = None  # the row in ``quarantine``
    topic: str | None = None  # only for a quarantined message
    rung: str | None = None  # the ladder's rung of ``verdict`` (``Verdict.rung``): what the office reports
    flags: tuple[str, ...] = ()  # stored or duplicate: the ``ResultFlag`` values judged when it was stored
    ward: str | None = None  # the document's ward (the receipt's topic); quarantined: as the payload claims it
    #: Stored now: the row as the API and webhooks serve it, built from what was inserted (not read back).
    record: ResultRecord | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("status", self.status), ("ward", self.ward), ("iss", self.iss),
                                  ("seq", self.seq), ("jti", self.jti), ("iat", self.iat), ("verdict", self.verdict),
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
    """One terminal's gap report (``iss`` of ``ward``): what never arrived, and what arrived but was refused."""

    ward: str
    iss: str
    missing: tuple[int, ...]
    refused: tuple[RefusedSeq, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"ward": self.ward, "iss": self.iss, "missing": list(self.missing),
                "refused": [{"seq": r.seq, "quarantine_id": r.quarantine_id, "reason": r.reason}
                            for r in self.refused]}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a retention run reduced (or, ``dry_run``, would reduce): results per profile, quarantined payloads
    dropped, online answers dropped. Counts only: nothing personal."""

    reduced: dict[str, int]
    quarantine_dropped: int
    online_answers_dropped: int
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"reduced": self.reduced, "quarantine_dropped": self.quarantine_dropped,
                "online_answers_dropped": self.online_answers_dropped, "dry_run": self.dry_run}


@dataclass(frozen=True, slots=True)
class OnlineAnswer:
    """One answer of the national authentication service, recorded against the ``online_check`` result it checked
    (``answer``: the provider's JSON object as received: personal data, never printed or logged)."""

    answer_id: int
    iss: str
    jti: str
    received: float
    answer: dict[str, Any]
    recorded_by: str | None = None

    def summary(self) -> dict[str, Any]:
        """What may be printed or logged: no personal data (the answer's keys, not their values)."""
        return {"answer_id": self.answer_id, "iss": self.iss, "jti": self.jti, "received": self.received,
                "keys": sorted(self.answer), "recorded_by": self.recorded_by}


@dataclass(frozen=True, slots=True)
class TerminalStatus:
    """One row of the fleet view: a terminal's last retained status as it published it."""

    ward: str
    iss: str
    state: str | None  # the status document's ``state`` (online / offline), when it says one
    status: dict[str, Any]
    received: float

    @property
    def version(self) -> str | None:
        """The software version the status names, None when unknown (an older terminal, or one not a version)."""
        return software_version(self.status)

    def as_dict(self) -> dict[str, Any]:
        return {"ward": self.ward, "terminal": self.iss, "state": self.state, "version": self.version,
                "status": self.status, "received": self.received}


def _storable(text: str | None) -> str | None:
    """``text`` as a database can hold it: a hostile message's JSON may decode to lone surrogates (``"\\ud800"``),
    which no UTF-8 column takes; they are kept visible as escapes instead of failing the quarantine itself."""
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


class ResultStore:
    """Verified results, one row per ``(iss, jti)``, with the seq bookkeeping per terminal, in SQLite or PostgreSQL.

    ``db``: a SQLite path, a ``postgresql://`` URL or an open :class:`Database`. ``keys``: how terminal keys are
    found (:class:`~edge.office.verify.TerminalKeys`: through the ward CA and/or configured keys; a plain mapping
    kid -> key is taken as configured keys). ``aa_challenges`` maps the ``jti`` of each ``read_request`` the office
    sent with a challenge to that challenge (the office system fills it; :meth:`register_read_request` keeps one
    in the database for every instance). ``instance``: the gateway instance's name, recorded with what it stores.
    ``gap_report`` False leaves each outcome's ``missing``/``refused`` empty (two queries fewer per message; the
    gateway logs the gaps a result opens, ``new_gaps``, and :meth:`gaps` reports them all).
    """

    def __init__(self, db: Path | str | Database, keys: Mapping[str, ec.EllipticCurvePublicKey] | TerminalKeys, *,
                 decrypt_key: ec.EllipticCurvePrivateKey | None = None,
                 aa_challenges: Mapping[str, bytes] | None = None, instance: str | None = None,
                 gap_report: bool = True, subject_key: bytes | None = None) -> None:  # fmt: skip
        self._gap_report = gap_report
        self._subject_key = subject_key
        self._keys = keys if isinstance(keys, TerminalKeys) else TerminalKeys(keys)
        self._decrypt_key = decrypt_key
        self._aa_challenges = aa_challenges if aa_challenges is not None else {}
        self._instance = instance
        self._db = db if isinstance(db, Database) else Database(db)
        self._lock = self._db.lock
        self._db.create_schema(_schema(self._db), {"results": _result_columns(self._db),
                                                   "quarantine": _QUARANTINE_COLUMNS}, migrate=self._key_by_ward)
        for statement in _LATER_INDEXES:
            self._db.execute(statement)
        self._backfill()

    def _key_by_ward(self) -> None:
        """Move a database from before terminal ids were known to be per ward: ``terminals`` and ``missing`` keyed by
        the id alone (two wards' "T-01" counted as one terminal: false gaps, real ones hidden). Runs once, inside
        :meth:`Database.create_schema`'s transaction (PostgreSQL instances take turns). Results stored before
        ``results.ward`` get their document's ward. An id whose results are of one ward (or of none: ward "") keeps
        its count and gaps under that ward; an id several wards share gets each ward's count and gaps anew from what
        that ward stored (a seq is missing below its highest unless stored: what booking them one by one gives).
        Quarantined messages get the ward of their claimed id's results when one ward has it, else ""."""
        db = self._db
        if "ward" in db.columns("terminals"):
            return
        for iss, jti, text in list(db.execute("SELECT iss, jti, document FROM results WHERE ward IS NULL")):
            ward = json.loads(text).get("ward_code")
            db.execute("UPDATE results SET ward=? WHERE iss=? AND jti=?", (ward if isinstance(ward, str) else "",
                                                                            iss, jti))  # fmt: skip
        counts = {str(iss): int(max_seq) for iss, max_seq in db.execute("SELECT iss, max_seq FROM terminals")}
        old_missing: dict[str, set[int]] = {}
        if "ward" not in db.columns("missing"):  # else created empty just now: a database older than that table
            for iss, seq in db.execute("SELECT iss, seq FROM missing"):
                old_missing.setdefault(iss, set()).add(int(seq))
            db.execute("DROP TABLE missing")
        db.execute("DROP TABLE terminals")
        for statement in _seq_tables(db):
            db.execute(statement)
        highest: dict[str, dict[str, int]] = {}  # iss -> ward -> highest stored seq
        for ward, iss, top in db.execute("SELECT ward, iss, MAX(seq) FROM results GROUP BY ward, iss"):
            highest.setdefault(iss, {})[ward] = int(top)
        terminal_rows: list[tuple[str, str, int]] = []
        missing_rows: list[tuple[str, str, int]] = []
        for iss, max_seq in counts.items():
            wards = highest.get(iss, {})
            if len(wards) <= 1:
                ward = next(iter(wards), "")
                terminal_rows.append((ward, iss, max_seq))
                missing_rows += [(ward, iss, seq) for seq in sorted(old_missing.get(iss, ()))]
                continue
            stored: dict[str, set[int]] = {ward: set() for ward in wards}
            for ward, seq in db.execute("SELECT ward, seq FROM results WHERE iss=?", (iss,)):
                stored[ward].add(int(seq))
            candidates = sorted(old_missing.get(iss, set()).union(*stored.values()))
            for ward, top in sorted(wards.items()):
                terminal_rows.append((ward, iss, top))
                missing_rows += [(ward, iss, seq) for seq in candidates if 0 < seq < top and seq not in stored[ward]]
        if terminal_rows:
            db.executemany("INSERT INTO terminals (ward, iss, max_seq) VALUES (?, ?, ?)", terminal_rows)
        if missing_rows:
            db.executemany("INSERT INTO missing (ward, iss, seq) VALUES (?, ?, ?)", missing_rows)
        known = [(next(iter(wards)), iss) for iss, wards in highest.items() if len(wards) == 1]
        if known:
            db.executemany("UPDATE quarantine SET ward=? WHERE ward IS NULL AND iss=?", known)
        db.execute("UPDATE quarantine SET ward=? WHERE ward IS NULL", ("",))
        log.info("seq bookkeeping keyed by ward and terminal: %d terminals, %d missing seqs", len(terminal_rows),
                 len(missing_rows))

    def _backfill(self) -> None:
        """Give rows stored before retention their ``expires``, and (with a subject key) rows still holding a
        citizen their ``subject``: ``document`` is the verified document in clear (a JWE was opened when stored)."""
        wants_subject = "subject IS NULL" if self._subject_key is not None else "1=0"
        rows = list(self._db.execute(
            f"SELECT iss, jti, received, document, expires, subject FROM results WHERE reduced IS NULL "  # noqa: S608
            f"AND (expires IS NULL OR {wants_subject})"))  # a fixed fragment, no input
        if not rows:
            return
        with self._db.transaction():
            for iss, jti, received, text, expires, subject in rows:
                document = json.loads(text)
                number = _id_number(document)
                if subject is None and number is not None and self._subject_key is not None:
                    subject = subject_of(number, self._subject_key)
                self._db.execute("UPDATE results SET expires=?, subject=? WHERE iss=? AND jti=?",
                                 (expires if expires is not None else _expiry(document, received), subject, iss, jti))

    @property
    def dialect(self) -> str:
        return self._db.dialect

    @property
    def database(self) -> Database:
        """The connection, for the office's other tables (the officers' pages: accounts, sessions, audit log)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    def ingest(self, payload: bytes, now: float, *, topic: str = "") -> Outcome:
        """Store ``payload`` if it verifies, else quarantine it; raises only when the database cannot be written
        (:class:`~edge.errors.StorageError`)."""
        return self.ingest_many([(payload, topic)], now)[0]

    def ingest_many(self, messages: Sequence[tuple[bytes, str]], now: float) -> list[Outcome]:
        """:meth:`ingest` for several ``(payload, topic)`` at once: the verified ones are stored in one transaction
        (the gateway's batches: a commit and its round trips shared), the others quarantined. The outcomes are
        those of ingesting them one by one, in order."""
        checked = [self._check(payload, now) for payload, _ in messages]
        verified = [(index, found) for index, found in enumerate(checked) if not isinstance(found, str)]
        outcomes: dict[int, Outcome] = {}
        if verified:
            stored = self._store([found for _, found in verified], now)
            outcomes.update(zip((index for index, _ in verified), stored, strict=True))
        for index, found in enumerate(checked):
            if isinstance(found, str):
                payload, topic = messages[index]
                outcomes[index] = self._quarantine(payload, now, topic, found)
        return [outcomes[index] for index in range(len(messages))]

    def retry_quarantined(self) -> list[Outcome]:
        """Check each message kept whole in quarantine again, with today's keys and rules, and store those that now
        verify (their quarantine rows go): a terminal's key installed since, or a result an older office refused
        for its times. Flags are judged at the time the message first arrived. The others stay as they are."""
        rows = list(self._db.execute("SELECT id, received FROM quarantine WHERE size <= ? AND topic NOT LIKE ? "
                                     "ORDER BY id", (MAX_RESULT_BYTES, "%/status")))
        outcomes = []
        for row_id, received in rows:
            found = self._db.execute("SELECT payload FROM quarantine WHERE id=?", (row_id,)).fetchone()
            if found is None:
                continue
            checked = self._check(bytes(found[0]), received)
            if not isinstance(checked, str):
                outcomes += self._store([checked], received, retried=row_id)
        return outcomes

    def register_read_request(self, jti: str, challenge: bytes, now: float) -> None:
        """Remember the AA challenge of a ``read_request`` the office sent, for whichever instance gets the answer."""
        self._db.execute("INSERT INTO read_requests (jti, challenge, created) VALUES (?, ?, ?) "
                         "ON CONFLICT (jti) DO NOTHING", (jti, challenge, now))

    def _challenge(self, request_id: str) -> bytes | None:
        challenge = self._aa_challenges.get(request_id)
        if challenge is not None:
            return challenge
        row = self._db.execute("SELECT challenge FROM read_requests WHERE jti=?", (request_id,)).fetchone()
        return bytes(row[0]) if row is not None else None

    def _check(self, payload: bytes, now: float) -> tuple[VerifiedResult, ActiveAuthCheck | None] | str:
        """The verified result and the office's AA check, or why it must be quarantined. A database that cannot
        be read raises (the message is not judged without it)."""
        try:
            if len(payload) > MAX_RESULT_BYTES:
                raise TokenError(f"message of {len(payload)} bytes, more than the {MAX_RESULT_BYTES} accepted")
            result = verify_result(payload, self._keys, int(now), decrypt_key=self._decrypt_key)
        except EdgeError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001  # a check's bug that an input found: keep the input, say what broke
            log_unexpected(log, "result check failed", exc)  # type and stack: a message may quote the payload
            return f"unexpected {type(exc).__name__} while checking"
        profile = result.document.procedure_profile
        if procedure(profile).needs_encryption and not is_jwe(payload):
            return (f"a {profile.value} result carries the chip's files and must arrive encrypted to the ward (JWE); "
                    "this one came as a plain JWS")
        request_id = result.document.request_id
        challenge = self._challenge(request_id) if request_id is not None else None
        try:
            active_auth = check_active_auth(result.document, challenge) if challenge is not None else None
        except Exception as exc:  # noqa: BLE001
            log_unexpected(log, "active authentication check failed", exc)
            return f"unexpected {type(exc).__name__} while checking"
        return result, active_auth

    def _store(self, checked: Sequence[tuple[VerifiedResult, ActiveAuthCheck | None]], now: float, *,
               retried: int | None = None) -> list[Outcome]:  # fmt: skip
        """Insert verified results (once per ``(iss, jti)``) and book their seqs, in one transaction; ``retried``:
        the quarantine row the (one) result came from, deleted in the same transaction."""
        db = self._db
        with db.transaction():
            # In key order: two instances inserting overlapping batches take the keys' locks in the same order,
            # so neither waits for the other in a circle. A few multi-row statements, not one per result: the
            # round trips were most of a batch's time (bench/fleet.py); RETURNING names the rows that are new.
            order = sorted(range(len(checked)), key=lambda i: (checked[i][0].iss, checked[i][0].jti))
            rows = [(result.iss, result.jti, result.seq, now, result.document.verdict.value,
                     result.document.to_json().decode(), result.token, result.iat,
                     json.dumps([flag.value for flag in result.flags]), result.document.ward_code, result.kid,
                     json.dumps(active_auth.as_dict()) if active_auth is not None else None, self._instance,
                     self._subject(result), self._result_expiry(result, now))
                    for result, active_auth in (checked[index] for index in order)]  # fmt: skip
            new_keys: set[tuple[str, str]] = set()
            for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                source, params = db.rows_source(_RESULT_ROW_KINDS, rows[start:start + _ROWS_PER_STATEMENT])
                statement = ("INSERT INTO results (iss, jti, seq, received, verdict, document, token, iat, flags, "
                             f"ward, kid, active_auth, stored_by, subject, expires) {source} "  # placeholders only
                             "ON CONFLICT (iss, jti) DO NOTHING RETURNING iss, jti")
                new_keys.update((str(iss), str(jti)) for iss, jti in db.execute(statement, params))
            inserted = [False] * len(checked)
            for index in order:  # a result twice in one batch: its first copy is the stored one
                key = (checked[index][0].iss, checked[index][0].jti)
                if key in new_keys:
                    inserted[index] = True
                    new_keys.discard(key)
            new_gaps = self._book_seqs([result for (result, _), new in zip(checked, inserted, strict=True) if new])
            flags: list[tuple[str, ...]] = []
            for (result, _), new in zip(checked, inserted, strict=True):
                if new:
                    flags.append(tuple(flag.value for flag in result.flags))
                else:  # the same result again: report the flags it was stored with
                    (stored_flags,) = db.execute("SELECT flags FROM results WHERE iss=? AND jti=?",
                                                 (result.iss, result.jti)).fetchone()
                    flags.append(tuple(json.loads(stored_flags)))
            if retried is not None:
                db.execute("DELETE FROM quarantine WHERE id=?", (retried,))
            reports = {(result.document.ward_code, result.iss): self._gaps(result.iss, result.document.ward_code)
                       for result, _ in checked} if self._gap_report else {}  # fmt: skip
        outcomes = []
        for (result, active_auth), new, result_flags in zip(checked, inserted, flags, strict=True):
            gaps = reports.get((result.document.ward_code, result.iss)) or []
            missing, refused = (gaps[0].missing, tuple(r.seq for r in gaps[0].refused)) if gaps else ((), ())
            outcomes.append(Outcome("stored" if new else "duplicate", result.iss, result.seq,
                                    result.document.verdict.value, new_gaps=new_gaps.get(id(result), ()),
                                    missing=missing, refused=refused, jti=result.jti, iat=result.iat,
                                    active_auth=active_auth, rung=result.document.verdict.rung.value,
                                    flags=result_flags, ward=result.document.ward_code,
                                    record=self._record(result, active_auth, now) if new else None))
        return outcomes

    def _record(self, result: VerifiedResult, active_auth: ActiveAuthCheck | None, now: float) -> ResultRecord:
        """The row :meth:`_store` inserts for ``result``, as :meth:`ResultRecord.from_row` would read it back."""
        document = result.document
        return ResultRecord(terminal=result.iss, ward=document.ward_code, seq=result.seq, jti=result.jti, received=now,
                            iat=result.iat, verdict=document.verdict, rung=document.verdict.rung,
                            flags=[flag.value for flag in result.flags], request_id=document.request_id,
                            active_auth=ActiveAuthOutcome.model_validate(active_auth.as_dict())
                            if active_auth is not None else None, kid=result.kid,
                            stored_by=self._instance, document=document, token=result.token)  # fmt: skip

    def _subject(self, result: VerifiedResult) -> str | None:
        citizen = result.document.citizen
        if citizen is None or self._subject_key is None:
            return None
        return subject_of(citizen.id_number, self._subject_key)

    @staticmethod
    def _result_expiry(result: VerifiedResult, now: float) -> float:
        days = procedure(result.document.procedure_profile).retention_days
        return min(now, result.document.completed_at.timestamp()) + days * DAY_SECONDS

    # --- retention and the citizen's rights ---------------------------------------------------------------------

    def apply_retention(self, now: float, *, dry_run: bool = False) -> RetentionReport:
        """Reduce every result whose profile's retention has passed (see the module's docstring), drop quarantined
        payloads older than the longest retention and the online answers of what was reduced. ``dry_run``: count
        only. Safe to run from several instances at once (a reduced row is never reduced again)."""
        expired = [(iss, jti, json.loads(text).get("procedure_profile", "?")) for iss, jti, text in self._db.execute(
            "SELECT iss, jti, document FROM results WHERE reduced IS NULL AND expires <= ? ORDER BY iss, jti",
            (now,))]  # fmt: skip
        horizon = now - max(rules.retention_days for rules in PROCEDURES.values()) * DAY_SECONDS
        per_profile: dict[str, int] = {}
        for _, _, profile in expired:
            per_profile[str(profile)] = per_profile.get(str(profile), 0) + 1
        if dry_run:
            (payloads,) = self._db.execute("SELECT COUNT(*) FROM quarantine WHERE received < ? AND payload <> ?",
                                           (horizon, b"")).fetchone()
            answers = sum(self._answer_count(iss, jti) for iss, jti, _ in expired)
            return RetentionReport(per_profile, payloads, answers, dry_run=True)
        answers = self.reduce([(iss, jti) for iss, jti, _ in expired], now)
        payloads = self._db.execute("UPDATE quarantine SET payload=? WHERE received < ? AND payload <> ?",
                                    (b"", horizon, b"")).rowcount
        return RetentionReport(per_profile, payloads, answers)

    def _answer_count(self, iss: str, jti: str) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM online_answers WHERE iss=? AND jti=?", (iss, jti)).fetchone()
        return int(count)

    def reduce(self, keys: Sequence[tuple[str, str]], now: float) -> int:
        """Reduce the results ``keys`` names (``(iss, jti)``) to their non-personal fields, with their online answers
        and quarantined copies, in one transaction; returns how many online answers went. Already reduced: left."""
        dropped = 0
        with self._db.transaction():
            for iss, jti in keys:
                lock = self._db.for_update  # the engine's fixed row lock, no input
                row = self._db.execute(f"SELECT document, seq, ward FROM results WHERE iss=? AND jti=? "  # noqa: S608
                                       f"AND reduced IS NULL{lock}", (iss, jti)).fetchone()
                if row is None:
                    continue
                text, seq, ward = row
                self._db.execute("UPDATE results SET document=?, token=?, subject=NULL, reduced=? "
                                 "WHERE iss=? AND jti=?", (reduced_document(json.loads(text), now), "", now, iss, jti))
                dropped += self._db.execute("DELETE FROM online_answers WHERE iss=? AND jti=?", (iss, jti)).rowcount
                # its terminal's copies: of its ward, or of a ward unknown (another ward's "T-01" keeps its own)
                self._db.execute("UPDATE quarantine SET payload=? WHERE iss=? AND seq=? AND ward IN (?, ?)",
                                 (b"", iss, seq, ward or "", ""))
        return dropped

    def subject_results(self, id_number: str) -> list[dict[str, Any]]:
        """Every result still holding the citizen with ``id_number`` (any terminal, JWE ones included), as stored:
        the key, seq, times, verdict, flags, document and the online answers recorded against it. Personal data:
        for the citizen's copy only. Needs the subject key (:class:`~edge.errors.ConfigError` without it)."""
        if self._subject_key is None:
            raise ConfigError("finding a citizen's results needs the office's subject key", key="storage.subject_key")
        rows = list(self._db.execute(
            "SELECT iss, jti, seq, received, iat, verdict, flags, ward, document FROM results WHERE subject=? "
            "AND reduced IS NULL ORDER BY received, iss, jti", (subject_of(id_number, self._subject_key),)))
        found = []
        for iss, jti, seq, received, iat, verdict, flags, ward, text in rows:
            document = json.loads(text)
            if _id_number(document) != id_number:  # an HMAC collision is not expected; a copy holds only theirs
                continue
            found.append({"terminal": iss, "jti": jti, "seq": seq, "received": received, "iat": iat,
                          "verdict": verdict, "flags": json.loads(flags), "ward": ward, "document": document,
                          "online_answers": [answer.answer for answer in self.online_answers(jti, iss=iss)]})
        return found

    def _book_seqs(self, results: Sequence[VerifiedResult]) -> dict[int, tuple[int, ...]]:
        """Book newly stored results' seqs in ``terminals`` and ``missing`` (inside the caller's transaction), per
        ``(ward, iss)``, as if they had come one by one in this order; returns the gaps each opened, by
        ``id(result)``."""
        db = self._db
        by_terminal: dict[tuple[str, str], list[VerifiedResult]] = {}
        for result in results:
            by_terminal.setdefault((result.document.ward_code, result.iss), []).append(result)
        opened: dict[int, tuple[int, ...]] = {}
        terminals = sorted(by_terminal)  # one lock order for every instance
        stored_maxima: dict[tuple[str, str], int] = {}
        for start in range(0, len(terminals), _ROWS_PER_STATEMENT):
            # One statement for many terminals: each row created if new, locked (an upsert's update takes the row
            # lock in PostgreSQL, in the order of the rows; SQLite's BEGIN IMMEDIATE holds the file) and its
            # highest seq read.
            chunk = terminals[start:start + _ROWS_PER_STATEMENT]
            source, params = db.rows_source(("text", "text", "int"), [(ward, iss, 0) for ward, iss in chunk])
            stored_maxima.update(((str(ward), str(iss)), int(max_seq)) for ward, iss, max_seq in db.execute(
                f"INSERT INTO terminals (ward, iss, max_seq) {source} "  # placeholders only
                "ON CONFLICT (ward, iss) DO UPDATE SET max_seq = terminals.max_seq RETURNING ward, iss, max_seq",
                params))  # fmt: skip
        missing_rows: list[tuple[str, str, int]] = []
        found_rows: list[tuple[str, str, int]] = []
        maxima: list[tuple[int, str, str]] = []
        for ward, iss in terminals:
            stored_max = stored_maxima[ward, iss]
            highest, added, filled = stored_max, set[int](), set[int]()
            for result in by_terminal[ward, iss]:
                if result.seq > highest:
                    gaps = tuple(range(highest + 1, result.seq))
                    opened[id(result)] = gaps
                    added.update(gaps)
                    highest = result.seq
                elif result.seq in added:
                    added.discard(result.seq)
                else:
                    filled.add(result.seq)
            missing_rows += [(ward, iss, seq) for seq in sorted(added)]
            found_rows += [(ward, iss, seq) for seq in sorted(filled)]
            if highest > stored_max:
                maxima.append((highest, ward, iss))
        if missing_rows:
            db.executemany("INSERT INTO missing (ward, iss, seq) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                           missing_rows)  # fmt: skip
        if found_rows:
            db.executemany("DELETE FROM missing WHERE ward=? AND iss=? AND seq=?", found_rows)
        if maxima:
            db.executemany("UPDATE terminals SET max_seq=? WHERE ward=? AND iss=?", maxima)
        return opened

    def record_online_answer(self, jti: str, answer: bytes, now: float, *, iss: str | None = None) -> OnlineAnswer:
        """Record the national authentication service's ``answer`` (a JSON object, as the provider sent it) against
        the stored ``online_check`` result ``jti`` (``iss`` names its terminal when several share that jti).
        Raises :class:`~edge.errors.OnlineAnswerError` for no such result, a result of another profile (nothing of it
        went to the national service) or an answer that is no bounded JSON object."""
        try:
            parsed = loads_bounded(answer, what="online answer", max_bytes=MAX_ONLINE_ANSWER_BYTES)
        except JsonError as exc:
            raise OnlineAnswerError(str(exc)) from None
        if not isinstance(parsed, dict):
            raise OnlineAnswerError("the online answer is not a JSON object")
        text = json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))
        try:  # a lone surrogate ("\\ud800") would be kept, then fail every answer (and listing) that shows its keys
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise OnlineAnswerError(f"the online answer holds a lone UTF-16 surrogate (at character {exc.start} of "
                                    "its compact JSON): not text") from None
        # One transaction with the result's row locked: retention reducing it at the same moment waits, or has
        # already reduced it and the answer is refused (an answer about a citizen whose data is gone would stay).
        with self._db.transaction():
            lock = self._db.for_update
            rows = list(self._db.execute(
                "SELECT iss, document, reduced FROM results "  # noqa: S608  # a fixed clause, no input
                f"WHERE jti=? AND (CAST(? AS TEXT) IS NULL OR iss=?){lock}", (jti, iss, iss)))
            if not rows:
                raise OnlineAnswerError(f"no stored result has jti {jti[:128]!r}"
                                        + (f" from {iss[:64]!r}" if iss else ""))
            if len(rows) > 1:
                raise OnlineAnswerError(f"{len(rows)} terminals' results have jti {jti[:128]!r}: name the terminal")
            (found_iss, document, reduced), = rows
            if reduced is not None:
                raise OnlineAnswerError(f"result {jti[:128]!r} was reduced by retention: its personal data is gone, "
                                        "and no answer about it is kept")  # fmt: skip
            profile = json.loads(document).get("procedure_profile")
            if profile != ProcedureProfile.ONLINE_CHECK.value:
                raise OnlineAnswerError(f"result {jti[:128]!r} was read under profile {profile!r}: none of its data "
                                        "went to the national authentication service")  # fmt: skip
            (answer_id,) = self._db.execute(
                "INSERT INTO online_answers (iss, jti, received, answer, recorded_by) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id", (found_iss, jti, now, text, self._instance)).fetchone()  # fmt: skip
        return OnlineAnswer(answer_id, found_iss, jti, now, parsed, self._instance)

    def online_answers(self, jti: str, *, iss: str | None = None) -> list[OnlineAnswer]:
        """Every answer recorded against result ``jti``, oldest first."""
        rows = self._db.execute("SELECT id, iss, jti, received, answer, recorded_by FROM online_answers WHERE jti=? "
                                "AND (CAST(? AS TEXT) IS NULL OR iss=?) ORDER BY id", (jti, iss, iss))  # fmt: skip
        return [OnlineAnswer(row_id, row_iss, row_jti, received, json.loads(answer), by)
                for row_id, row_iss, row_jti, received, answer, by in rows]

    def result(self, iss: str, jti: str) -> ResultRecord | None:
        """Stored result ``iss``/``jti`` as the API serves it (the one query for it: the API's one-result route and
        the demo read it here); None when there is none, or retention reduced it (its token and citizen are gone)."""
        row = self._db.execute(f"SELECT {RESULT_COLUMNS} FROM results WHERE iss=? AND jti=? "  # noqa: S608
                               "AND reduced IS NULL", (iss, jti)).fetchone()  # a constant column list, no input
        return None if row is None else ResultRecord.from_row(tuple(row))

    def stored(self, iss: str) -> list[tuple[int, str]]:
        """(seq, jti) of everything stored for ``iss``, by seq."""
        return [(seq, jti) for seq, jti in
                self._db.execute("SELECT seq, jti FROM results WHERE iss=? ORDER BY seq", (iss,))]

    def counts(self) -> dict[str, Any]:
        """How many results are stored, how many of them carry each flag, and how many messages are quarantined."""
        db = self._db
        with self._lock:
            (results,) = db.execute("SELECT COUNT(*) FROM results").fetchone()
            (quarantined,) = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()
            per_flag = (f"SELECT flag.value, COUNT(*) FROM results, {db.json_array_elements('results.flags')} "  # noqa: S608
                        "GROUP BY flag.value ORDER BY flag.value")  # the engine's fixed fragment, no input
            flags = {value: count for value, count in db.execute(per_flag)}
        return {"results": results, "quarantined": quarantined, "flags": flags}

    def flags(self, iss: str) -> list[tuple[int, tuple[str, ...]]]:
        """(seq, flags) of everything stored for ``iss``, by seq."""
        rows = list(self._db.execute("SELECT seq, flags FROM results WHERE iss=? ORDER BY seq", (iss,)))
        return [(seq, tuple(json.loads(flags))) for seq, flags in rows]

    def gaps(self, iss: str | None = None, *, ward: str | None = None) -> list[Gaps]:
        """The gap report of terminal ``iss`` and/or of ``ward`` (None: any; terminal ids repeat across wards), of
        each terminal with something missing or refused, by ward and terminal."""
        with self._lock:
            return self._gaps(iss, ward)

    def _gaps(self, iss: str | None, ward: str | None) -> list[Gaps]:
        missing: dict[tuple[str, str], list[int]] = {}
        refused: dict[tuple[str, str], list[RefusedSeq]] = {}
        for row_ward, terminal, seq in self._db.execute(_MISSING, (iss, iss, ward, ward)):
            missing.setdefault((row_ward, terminal), []).append(seq)
        for row_ward, terminal, seq, row_id, reason in self._db.execute(_REFUSED, (iss, iss, ward, ward)):
            refused.setdefault((row_ward, terminal), []).append(RefusedSeq(seq, row_id, reason))
        return [Gaps(key[0], key[1], tuple(missing.get(key, ())), tuple(refused.get(key, ())))
                for key in sorted(missing.keys() | refused.keys())]

    def quarantined(self) -> list[dict[str, Any]]:
        """The quarantine without the payloads (they are the tokens, personal data): id, when, topic, why, origin."""
        rows = list(self._db.execute("SELECT id, received, topic, reason, iss, seq, size FROM quarantine ORDER BY id"))
        names = ("quarantine_id", "received", "topic", "reason", "iss", "seq", "size")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def quarantine(self, payload: bytes, now: float, topic: str, reason: str, *, iss: str | None = None,
                   ward: str | None = None) -> Outcome:  # fmt: skip
        """Keep a message that cannot be accepted, with why (``iss``, ``ward``: its origin when the topic says it)."""
        return self._quarantine(payload, now, topic, reason, iss=iss, ward=ward)

    def _quarantine(self, payload: bytes, now: float, topic: str, reason: str, *, iss: str | None = None,
                    ward: str | None = None) -> Outcome:  # fmt: skip
        claimed_iss, claimed_ward, seq = self._claimed_origin(payload)
        iss = _storable(claimed_iss if iss is None else iss[:_MAX_ISS_CHARS])
        ward = _storable(claimed_ward if ward is None else ward[:_MAX_ISS_CHARS]) or ""  # "": it names none
        reason, topic = _storable(reason) or "", _storable(topic) or ""
        kept = payload if len(payload) <= MAX_RESULT_BYTES else payload[:OVERSIZE_KEEP_BYTES]
        with self._lock:
            (row_id,) = self._db.execute(
                "INSERT INTO quarantine (received, topic, reason, iss, seq, size, payload, ward) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (now, topic[:_MAX_TOPIC_CHARS], reason, iss, seq, len(payload), kept, ward),
            ).fetchone()
            gaps = self._gaps(iss, ward) if iss is not None and self._gap_report else []
        missing, refused = (gaps[0].missing, tuple(r.seq for r in gaps[0].refused)) if gaps else ((), ())
        return Outcome("quarantined", iss, seq, reason=reason, quarantine_id=row_id, topic=topic[:_MAX_TOPIC_CHARS],
                       missing=missing, refused=refused, ward=ward)

    def _claimed_origin(self, payload: bytes) -> tuple[str | None, str | None, int | None]:
        """``iss``, ward and ``seq`` as a refused payload claims them, unverified: only to tell where it came from."""
        if len(payload) > MAX_RESULT_BYTES:
            return None, None, None
        try:
            token = payload
            if is_jwe(token):
                if self._decrypt_key is None:
                    return None, None, None
                token = decrypt_jwe(token, self._decrypt_key)
            parts = token.split(b".")
            if len(parts) != 3:
                return None, None, None
            claims = loads_bounded(b64url_decode(parts[1].decode("ascii")), what="claims",
                                   max_bytes=MAX_RESULT_BYTES)
        except (TokenError, JsonError, ValueError):  # UnicodeDecodeError and the b64url refusal are ValueErrors
            return None, None, None
        if not isinstance(claims, dict):
            return None, None, None
        iss, seq, document = claims.get("iss"), claims.get("seq"), claims.get("result")
        ward = document.get("ward_code") if isinstance(document, dict) else None
        return (iss[:_MAX_ISS_CHARS] if isinstance(iss, str) else None,
                ward[:_MAX_ISS_CHARS] if isinstance(ward, str) else None,
                seq if isinstance(seq, int) and not isinstance(seq, bool) and abs(seq) < 1 << 63 else None)

    # --- the fleet view ------------------------------------------------------------------------------------------

    def keep_status(self, ward: str, terminal: str, payload: bytes, now: float, *, topic: str = "") -> Outcome | None:
        """Keep ``terminal``'s retained status (the topic names it: the broker's ACL lets only that terminal write
        there); an empty payload (a cleared retained message) forgets it. A status that is not a bounded JSON
        object is quarantined. Several instances each get every status: a row is only ever replaced by one
        received later. Returns the quarantine outcome, or None when the status was kept."""
        if not payload:
            self._db.execute("DELETE FROM terminal_status WHERE ward=? AND iss=?", (ward, terminal))
            return None
        try:
            status = loads_bounded(payload, what="status", max_bytes=MAX_STATUS_BYTES)
            if not isinstance(status, dict):
                raise JsonError("not a JSON object", what="status")
        except JsonError as exc:
            return self._quarantine(payload, now, topic, f"status: {exc}", iss=terminal, ward=ward)
        state = status.get("state")
        state = state[:_MAX_STATE_CHARS] if isinstance(state, str) else None
        self._db.execute(
            "INSERT INTO terminal_status (ward, iss, state, status, received) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (ward, iss) DO UPDATE SET state=excluded.state, status=excluded.status, "
            "received=excluded.received WHERE terminal_status.received <= excluded.received",
            (ward, terminal, state, json.dumps(status, separators=(",", ":"), ensure_ascii=False), now))
        return None

    def fleet(self, ward: str | None = None) -> list[TerminalStatus]:
        """Each terminal's last status (of ``ward``, or of every ward), by ward and terminal."""
        rows = self._db.execute("SELECT ward, iss, state, status, received FROM terminal_status "
                                "WHERE CAST(? AS TEXT) IS NULL OR ward = ? ORDER BY ward, iss", (ward, ward))
        return [TerminalStatus(w, iss, state, json.loads(status), received) for w, iss, state, status, received in rows]
