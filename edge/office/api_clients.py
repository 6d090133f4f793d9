"""Who may use the REST API, and for which wards: the ``api_clients`` table (SQLite or PostgreSQL, beside the
results).

A client is named, limited to a list of wards (``+``: every ward the gateway serves), and logs in either with an
API key (``Authorization: Bearer cek_<id>_<secret>``) or, on an API listener with ``client_ca``, with a client
certificate whose CN it was registered under. ``cccd-edge gateway api-key add --name N --ward W`` prints the key
once; the table keeps its id and the SHA-256 of its secret only.

Why SHA-256 and not a password hash (scrypt, argon2): the secret is 256 random bits, not something a person chose,
so there is no dictionary to run against a stolen table and a slow hash would protect nothing; it would only cost
every request tens of milliseconds of CPU. (The officers' passwords are the other case: ``edge.office.web``.)
The id in front of the secret finds the row without comparing against every client; the comparison is
constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from edge.errors import ConfigError
from edge.office.database import Database

KEY_PREFIX = "cek_"
_KEY = re.compile(r"^cek_([0-9a-f]{16})_([A-Za-z0-9_-]{43})\Z")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
_WARD = re.compile(r"^(\+|[A-Za-z0-9_.-]{1,64})\Z")


def _schema(db: Database) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS api_clients (
            name TEXT PRIMARY KEY, key_id TEXT UNIQUE, key_hash TEXT, tls_cn TEXT UNIQUE, wards TEXT NOT NULL,
            created {db.types['real']} NOT NULL, revoked {db.types['real']})""",
    ]


@dataclass(frozen=True, slots=True)
class ApiClient:
    name: str
    wards: frozenset[str]  # "+" among them: every ward
    kind: str  # "key" or "certificate"

    @property
    def every_ward(self) -> bool:
        return "+" in self.wards

    def may_see(self, ward: str | None) -> bool:
        return self.every_ward or (ward is not None and ward in self.wards)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "wards": sorted(self.wards), "kind": self.kind}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class ApiClients:
    """The registered clients (:mod:`module docstring <edge.office.api_clients>`)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.create_schema(_schema(db), {})

    def add(self, name: str, wards: list[str], now: float, *, tls_cn: str | None = None) -> str | None:
        """Register ``name`` for ``wards``: with a new API key (returned, shown once), or, given ``tls_cn``, for a
        client certificate with that CN (returns None). A :class:`ConfigError` for a name taken or out of shape."""
        if not _NAME.match(name):
            raise ConfigError("a client name is 1-64 of A-Z a-z 0-9 _ . : -", key="--name")
        if not wards or not all(_WARD.match(ward) for ward in wards):
            raise ConfigError("give one or more --ward (a ward code, or + for every ward)", key="--ward")
        if tls_cn is not None and not 0 < len(tls_cn) <= 256:
            raise ConfigError("a certificate CN is 1-256 characters", key="--tls-cn")
        key_id = secret = None
        if tls_cn is None:
            key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        with self._db.transaction():
            if self._db.execute("SELECT 1 FROM api_clients WHERE name=? OR (tls_cn IS NOT NULL AND tls_cn=?)",
                                (name, tls_cn)).fetchone() is not None:
                raise ConfigError(f"a client {name!r} (or that CN) exists; revoke it first", key="--name")
            self._db.execute("INSERT INTO api_clients (name, key_id, key_hash, tls_cn, wards, created) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (name, key_id, _digest(secret) if secret else None,
                                                           tls_cn, json.dumps(sorted(set(wards))), now))
        return f"{KEY_PREFIX}{key_id}_{secret}" if secret else None

    def revoke(self, name: str, now: float) -> bool:
        """Refuse ``name`` from now on (its row stays, named in nothing new); False when there is no such client."""
        return self._db.execute("UPDATE api_clients SET revoked=?, key_id=NULL, tls_cn=NULL WHERE name=? "
                                "AND revoked IS NULL", (now, name)).rowcount > 0

    def by_key(self, presented: str) -> ApiClient | None:
        """The client holding this API key, None for anything else (never says which part was wrong)."""
        found = _KEY.match(presented)
        if found is None:
            return None
        row = self._db.execute("SELECT name, key_hash, wards FROM api_clients WHERE key_id=? AND revoked IS NULL",
                               (found.group(1),)).fetchone()
        if row is None or row[1] is None or not hmac.compare_digest(row[1], _digest(found.group(2))):
            return None
        return ApiClient(row[0], frozenset(json.loads(row[2])), "key")

    def by_certificate(self, common_name: str) -> ApiClient | None:
        row = self._db.execute("SELECT name, wards FROM api_clients WHERE tls_cn=? AND revoked IS NULL",
                               (common_name,)).fetchone()
        return ApiClient(row[0], frozenset(json.loads(row[1])), "certificate") if row is not None else None

    def all(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT name, key_id, tls_cn, wards, created, revoked FROM api_clients ORDER BY name")
        return [{"name": name, "kind": "certificate" if cn else "key", "key_id": key_id, "tls_cn": cn,
                 "wards": json.loads(wards), "created": created, "revoked": revoked}
                for name, key_id, cn, wards, created, revoked in rows]  # fmt: skip
