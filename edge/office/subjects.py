"""A citizen's rights on the office side: a copy of their stored results, and their erasure (Personal Data
Protection Law 91/2025/QH15), each written to the officers' audit log (``edge.office.web.audit``) before it is done.

A citizen is found by ``results.subject``, HMAC-SHA256 of their ID number under the office's subject key: a random
32-byte secret in the gateway's state directory (``storage.subject_key``, 0600, created at first use; instances
sharing a database share the file). A copy of the database without the key lists no ID numbers. The ID number itself
is read from a file or stdin by the command line, never from its arguments (``ps`` shows those to every user).
Erasure reduces the results as retention does (:meth:`~edge.office.store.ResultStore.reduce`): the audit log and
the gap report keep the results' keys, nothing of who they were about.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.errors import ConfigError
from edge.files import write_private
from edge.office.store import ResultStore

if TYPE_CHECKING:  # the pages' libraries (argon2) are optional; the gateway loads the key without them
    from edge.office.web.audit import Action, AuditLog
    from edge.office.web.officers import Officer

SUBJECT_KEY_BYTES = 32


def load_subject_key(path: Path) -> bytes:
    """The office's subject key from ``path``, created (0600) when missing; a file of another size or readable by
    others is refused (:class:`~edge.errors.ConfigError`)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another instance made it meanwhile
            pass
        else:
            os.close(fd)
            write_private(path, secrets.token_bytes(SUBJECT_KEY_BYTES), durable=True)
    try:
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path} is readable by others (chmod 600)", key="storage.subject_key")
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", key="storage.subject_key") from None
    if len(key) != SUBJECT_KEY_BYTES:
        raise ConfigError(f"{path} holds {len(key)} bytes, not a {SUBJECT_KEY_BYTES}-byte key",
                          key="storage.subject_key")
    return key


def parse_id_number(text: str) -> str:
    """The 12-digit ID number in ``text`` (one line, spaces around allowed; the document's own rule), else
    :class:`~edge.errors.ConfigError` without echoing it."""
    number = text.strip()
    if not (len(number) == 12 and number.isascii() and number.isdigit()):
        raise ConfigError("the ID number must be 12 digits on one line", key="id_number")
    return number


@dataclass(frozen=True, slots=True)
class SubjectRequest:
    """Who asks on the citizen's behalf, and why (the audit log's entry)."""

    officer: Officer
    reason: str


def export_subject(store: ResultStore, audit: AuditLog, request: SubjectRequest, id_number: str,
                   now: float) -> dict[str, Any]:  # fmt: skip
    """Every result the office still holds of the citizen, audited first (one entry per result)."""
    results = store.subject_results(id_number)
    _audit(audit, request, "subject_export", [(r["terminal"], r["jti"]) for r in results])
    return {"exported_at": now, "results": results}


def erase_subject(store: ResultStore, audit: AuditLog, request: SubjectRequest, id_number: str,
                  now: float) -> list[tuple[str, str]]:  # fmt: skip
    """Reduce every result of the citizen to its non-personal fields, audited first; returns their keys."""
    keys = [(r["terminal"], r["jti"]) for r in store.subject_results(id_number)]
    _audit(audit, request, "subject_erase", keys)
    store.reduce(keys, now)
    return keys


def _audit(audit: AuditLog, request: SubjectRequest, action: Action, keys: list[tuple[str, str]]) -> None:
    if not keys:
        audit.append(request.officer, action, reason=request.reason)
    for iss, jti in keys:
        audit.append(request.officer, action, reason=request.reason, terminal=iss, result=(iss, jti))
