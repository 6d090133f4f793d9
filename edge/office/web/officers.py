"""Officers: local accounts (argon2id), sessions with an idle and an absolute timeout, CSRF tokens, roles.

Roles: an ``officer`` opens the counters named in their account (their own desks: ``ward/terminal``, or a bare
terminal id, which names a terminal of the server's own ward and so none on a province's server); a ``supervisor``
every counter of the office and the fleet; an ``auditor`` only the audit log (no citizen data). An account found
through the reverse proxy's identity header (:class:`~edge.office.web.settings.WebSettings`) must exist here too:
the proxy says who, this table says what they may do.

Passwords are hashed with argon2id (argon2-cffi, RFC 9106's low-memory profile: 64 MiB, 3 passes) and rehashed at
the next login when the parameters change. A session is a random token in an HttpOnly, SameSite=Strict cookie; the
database keeps only its SHA-256, so a copy of the database opens no session. Each session has its own CSRF token,
which every POST must carry. Nothing here logs a password or a session token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge.errors import OfficerAccessError
from edge.office.database import Database

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
TERMINAL = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
#: An account's counter: ``ward/terminal``, or a bare ``terminal`` (the terminal of that id of a ward's own server).
COUNTER = re.compile(r"^(?:([A-Za-z0-9_.-]{1,64})/)?([A-Za-z0-9_.-]{1,64})\Z")
#: Wrong passwords within :data:`LOCK_WINDOW` seconds after which an account waits out the window.
LOCK_AFTER, LOCK_WINDOW = 10, 900.0
MIN_PASSWORD = 10
#: Names with recent wrong passwords kept before the stale ones are dropped (a name tried once would stay forever).
MAX_TRACKED = 1000


class Role(StrEnum):
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"


@dataclass(frozen=True, slots=True)
class Officer:
    username: str
    role: Role
    counters: tuple[str, ...]  # the counters an officer works at, as :data:`COUNTER` (others: ignored)
    display_name: str = ""

    def counters_of(self, served: str | None) -> frozenset[tuple[str, str]]:
        """``(ward, terminal)`` of this officer's counters on a server of ward ``served`` (None: every ward, a
        province's): ``ward/terminal`` of a ward served; a bare terminal id only on a ward's server, its own ward's
        (terminal ids repeat across wards, so on a province's server it names none)."""
        found = set()
        for counter in self.counters:
            match = COUNTER.match(counter)
            if match is None:
                continue
            ward, terminal = match.group(1) or served, match.group(2)
            if ward is not None and (served is None or ward == served):
                found.add((ward, terminal))
        return frozenset(found)

    def may_open(self, ward: str, terminal: str, served: str | None) -> bool:
        """Whether this officer may watch ward ``ward``'s ``terminal`` (its results, its desk reads) on a server of
        ward ``served`` (None: a province's)."""
        return self.role is Role.SUPERVISOR or (self.role is Role.OFFICER
                                                and (ward, terminal) in self.counters_of(served))  # fmt: skip

    @property
    def sees_citizens(self) -> bool:
        return self.role in (Role.OFFICER, Role.SUPERVISOR)

    @property
    def sees_audit(self) -> bool:
        return self.role is Role.AUDITOR


@dataclass(frozen=True, slots=True)
class Session:
    officer: Officer
    csrf: str
    created: float


def _schema(db: Database) -> list[str]:
    t = db.types
    return [
        f"""CREATE TABLE IF NOT EXISTS officers (
            username TEXT PRIMARY KEY, display_name TEXT NOT NULL DEFAULT '', role TEXT NOT NULL,
            counters TEXT NOT NULL DEFAULT '[]', password_hash TEXT, disabled {t['int']} NOT NULL DEFAULT 0,
            created {t['real']} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS web_sessions (
            token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL, created {t['real']} NOT NULL,
            last_seen {t['real']} NOT NULL)""",
    ]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Officers:
    """Accounts and sessions in the office database (SQLite or PostgreSQL: every gateway instance sees them)."""

    def __init__(self, db: Database, *, session_idle: float = 900, session_max: float = 36000,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._db = db
        self._idle = session_idle
        self._max = session_max
        self._clock = clock
        self._hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory parameters
        self._failures: dict[str, list[float]] = {}
        self._failures_lock = threading.Lock()
        db.create_schema(_schema(db), {})
        # A constant-time answer for unknown names: verify against a hash of nothing anyone knows.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    # --- accounts ------------------------------------------------------------------------------------------------

    def add(self, username: str, role: Role, *, password: str | None = None, counters: Sequence[str] = (),
            display_name: str = "", replace: bool = False, province: bool = False) -> Officer:  # fmt: skip
        """Create (or with ``replace`` update) an account; ``password`` None: only the proxy's header logs it in.
        ``province``: for a province's server, where a bare terminal id would name no counter (it is refused)."""
        if not USERNAME.match(username):
            raise OfficerAccessError("input", "a user name is 1-64 of a-z, 0-9, '.', '_', '-'")
        bad = [counter for counter in counters if not COUNTER.match(counter)]
        if bad:
            raise OfficerAccessError("input", f"counter {bad[0]!r} is neither ward/terminal nor a terminal id")
        bare = [counter for counter in counters if province and "/" not in counter]
        if bare:
            raise OfficerAccessError("input", f"counter {bare[0]!r}: a province's server names a counter ward/terminal "
                                     "(terminal ids repeat across wards)")
        if password is not None and len(password) < MIN_PASSWORD:
            raise OfficerAccessError("input", f"a password has at least {MIN_PASSWORD} characters")
        hashed = self._hasher.hash(password) if password is not None else None
        row = (username, display_name[:200], role.value, json.dumps(sorted(set(counters))), hashed, self._clock())
        with self._db.transaction():
            exists = self._db.execute("SELECT 1 FROM officers WHERE username=?", (username,)).fetchone()
            if exists and not replace:
                raise OfficerAccessError("input", f"officer {username} exists (replace to change)")
            self._db.execute("DELETE FROM officers WHERE username=?", (username,))
            self._db.execute("INSERT INTO officers (username, display_name, role, counters, password_hash, created) "
                             "VALUES (?, ?, ?, ?, ?, ?)", row)
            self._db.execute("DELETE FROM web_sessions WHERE username=?", (username,))  # new rights: log in again
        return Officer(username, role, tuple(sorted(set(counters))), display_name)

    def disable(self, username: str) -> bool:
        with self._db.transaction():
            changed = self._db.execute("UPDATE officers SET disabled=1 WHERE username=?", (username,)).rowcount
            self._db.execute("DELETE FROM web_sessions WHERE username=?", (username,))
        return changed > 0

    def get(self, username: str) -> Officer | None:
        row = self._db.execute("SELECT username, role, counters, display_name FROM officers "
                               "WHERE username=? AND disabled=0", (username,)).fetchone()
        return _officer(row) if row is not None else None

    def all(self) -> list[tuple[Officer, bool]]:
        """Every account and whether it is disabled."""
        rows = self._db.execute("SELECT username, role, counters, display_name, disabled FROM officers "
                                "ORDER BY username").fetchall()
        return [(_officer(row[:4]), bool(row[4])) for row in rows]

    def authenticate(self, username: str, password: str) -> Officer:
        """The officer, if the password is theirs; :class:`OfficerAccessError` (``login`` or ``locked``) if not."""
        now = self._clock()
        with self._failures_lock:
            recent = [at for at in self._failures.pop(username, []) if now - at < LOCK_WINDOW]
            if recent:  # a name with no recent wrong password is not kept
                self._failures[username] = recent
        if len(recent) >= LOCK_AFTER:
            raise OfficerAccessError("locked", "too many wrong passwords; try again later")
        row = self._db.execute("SELECT password_hash FROM officers WHERE username=? AND disabled=0",
                               (username,)).fetchone() if USERNAME.match(username) else None  # fmt: skip
        stored = row[0] if row is not None and row[0] else None
        try:
            self._hasher.verify(stored or self._decoy, password)
            if stored is None:
                raise VerifyMismatchError
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            if USERNAME.match(username):  # only a possible account can be locked: other names are not kept
                with self._failures_lock:
                    self._failures.setdefault(username, []).append(now)
                    if len(self._failures) > MAX_TRACKED:
                        self._failures = {name: times for name, times in self._failures.items()
                                          if now - times[-1] < LOCK_WINDOW}  # fmt: skip
            raise OfficerAccessError("login", "unknown officer or wrong password") from None
        if self._hasher.check_needs_rehash(stored):
            self._db.execute("UPDATE officers SET password_hash=? WHERE username=?",
                             (self._hasher.hash(password), username))
        officer = self.get(username)
        if officer is None:  # disabled between the two reads
            raise OfficerAccessError("login", "unknown officer or wrong password")
        return officer

    # --- sessions ------------------------------------------------------------------------------------------------

    def open_session(self, officer: Officer) -> tuple[str, Session]:
        """A new session: the cookie's token (only its hash is stored) and the session."""
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._clock()
        self._db.execute("INSERT INTO web_sessions (token_hash, username, csrf, created, last_seen) "
                         "VALUES (?, ?, ?, ?, ?)", (_digest(token), officer.username, csrf, now, now))
        return token, Session(officer, csrf, now)

    def session(self, token: str | None, *, touch: bool = True) -> Session:
        """The live session of ``token``; ``session`` refusal when none or timed out. ``touch``: the officer did
        something (the idle time restarts); an open page's stream only asks."""
        if not token:
            raise OfficerAccessError("session", "not logged in")
        now, digest = self._clock(), _digest(token)
        row = self._db.execute("SELECT username, csrf, created, last_seen FROM web_sessions WHERE token_hash=?",
                               (digest,)).fetchone()
        if row is None:
            raise OfficerAccessError("session", "not logged in")
        username, csrf, created, last_seen = row
        officer = self.get(username)
        if officer is None or now - last_seen > self._idle or now - created > self._max:
            self._db.execute("DELETE FROM web_sessions WHERE token_hash=?", (digest,))
            raise OfficerAccessError("session", "the session timed out")
        if touch and now - last_seen > 5:  # one write per few seconds, not per request
            self._db.execute("UPDATE web_sessions SET last_seen=? WHERE token_hash=?", (now, digest))
        return Session(officer, csrf, created)

    def close_session(self, token: str | None) -> None:
        if token:
            self._db.execute("DELETE FROM web_sessions WHERE token_hash=?", (_digest(token),))

    def purge(self) -> int:
        """Forget sessions past their timeouts."""
        now = self._clock()
        return self._db.execute("DELETE FROM web_sessions WHERE last_seen < ? OR created < ?",
                                (now - self._idle, now - self._max)).rowcount


def check_csrf(session: Session, token: str | None) -> None:
    """Refuse a POST whose token is not the session's (compared in constant time)."""
    if not token or not hmac.compare_digest(token.encode(), session.csrf.encode()):
        raise OfficerAccessError("csrf", "the form is stale or came from another site; reload the page")


def _officer(row: Sequence[object]) -> Officer:
    username, role, counters, display_name = row
    return Officer(str(username), Role(str(role)), tuple(json.loads(str(counters))), str(display_name))
