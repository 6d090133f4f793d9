"""The audit log: who saw which citizen's data, or asked a terminal to read, when, and why. Append-only.

Every reveal of a result's personal data and every desk read (and its cancel) is written here *before* the data is
shown or the command sent: no entry, no access. The code has no path that changes or removes a row (this module
only inserts and selects), and the database refuses to as well: SQLite and PostgreSQL triggers abort any UPDATE or
DELETE (and, on PostgreSQL, TRUNCATE) of ``audit_log``. That keeps the officers' software, and anyone who takes it
over, from editing history; a database administrator can still drop a trigger, which is what the database's own
privileges and its backups are for (give the gateway's PostgreSQL role no ownership of the table in a province).
An entry names the result by ``(iss, jti)``, never by its personal data: the log itself is no register of citizens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edge.office.database import Database
from edge.office.web.officers import Officer

#: ``subject_export`` / ``subject_erase``: a citizen's request for a copy of, or the erasure of, their results
#: (``cccd-edge gateway subject``), one entry per result it covered (or one without a result when none was found).
Action = Literal["reveal", "desk_read", "desk_cancel", "subject_export", "subject_erase"]
MAX_REASON = 200
_REFUSAL = "audit_log is append-only"


def _schema(db: Database) -> list[str]:
    t = db.types
    table = f"""CREATE TABLE IF NOT EXISTS audit_log (
        id {t['id']}, at {t['real']} NOT NULL, officer TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL,
        terminal TEXT, result_iss TEXT, result_jti TEXT, request_id TEXT, reason TEXT NOT NULL, client TEXT)"""
    if db.dialect == "sqlite":
        return [table, *(f"CREATE TRIGGER IF NOT EXISTS audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                         f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END" for verb in ("UPDATE", "DELETE"))]
    return [
        table,
        "CREATE OR REPLACE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{_REFUSAL}'; END $$",
        "CREATE OR REPLACE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse()",
    ]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    officer: str
    role: str
    action: str
    terminal: str | None
    result_iss: str | None
    result_jti: str | None
    request_id: str | None
    reason: str
    client: str | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class AuditLog:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        db.create_schema(_schema(db), {})

    def append(self, officer: Officer, action: Action, *, reason: str, terminal: str | None = None,
               result: tuple[str, str] | None = None, request_id: str | None = None,
               client: str | None = None) -> int:  # fmt: skip
        """Write one entry (raises :class:`~edge.errors.StorageError` when it cannot: then nothing is shown)."""
        iss, jti = result if result is not None else (None, None)
        (row_id,) = self._db.execute(
            "INSERT INTO audit_log (at, officer, role, action, terminal, result_iss, result_jti, request_id, reason, "
            "client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (self._clock(), officer.username, officer.role.value, action, terminal, iss, jti, request_id,
             reason[:MAX_REASON], client)).fetchone()
        return int(row_id)

    def entries(self, *, limit: int = 200, before: int | None = None) -> list[AuditEntry]:
        """The latest entries first (``before``: the page below that id)."""
        rows = self._db.execute(
            "SELECT id, at, officer, role, action, terminal, result_iss, result_jti, request_id, reason, client "
            "FROM audit_log WHERE CAST(? AS BIGINT) IS NULL OR id < ? ORDER BY id DESC LIMIT ?",
            (before, before, limit)).fetchall()
        return [AuditEntry(*row) for row in rows]
