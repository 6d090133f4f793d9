"""What the pages may show of a stored result, masked or revealed, and the fleet's rows, problems first.

A result was verified when it was stored (:mod:`edge.office.store`); here it is only read back. The masked view
is what a counter page shows without a reveal (initials, the ID number's first three and last two digits, years,
lengths of addresses) and carries the verdict, its words and the checks; the revealed view adds the citizen's
fields as read (what the procedure profile let leave the terminal), each address with today's administrative units
beside it, and the photo when the read asked for one.
"""

from __future__ import annotations

import json
from collections.abc import Set
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from edge.errors import EdgeError
from edge.logsetup import mask_date, mask_id, mask_name, mask_text
from edge.office.admin_units import ADDRESS_FIELDS, map_addresses
from edge.office.database import Database
from edge.office.web.words import FIELDS, Lang, check_label
from edge.protocol.card_generation import card_words, generation_of_result
from edge.protocol.jose import unverified_header, x5c_chain
from edge.protocol.messages import software_version
from edge.protocol.result import ResultDocument
from edge.protocol.verify.checks import VERDICT_WORDS, CheckStatus, Verdict

_COLUMNS = "iss, jti, seq, received, document, flags, active_auth, token"
_NAMES = frozenset({"full_name", "father_name", "mother_name", "spouse_name"})
_NUMBERS = frozenset({"id_number", "old_id_number"})
_DATES = frozenset({"date_of_birth", "date_of_issue", "date_of_expiry"})


@dataclass(frozen=True, slots=True)
class StoredResult:
    iss: str
    jti: str
    seq: int
    received: float
    document: ResultDocument
    flags: tuple[str, ...]
    active_auth: dict[str, str] | None
    token: str

    @classmethod
    def of(cls, row: Any) -> StoredResult:
        iss, jti, seq, received, document, flags, active_auth, token = row
        return cls(iss, jti, seq, received, ResultDocument.model_validate_json(document),
                   tuple(json.loads(flags or "[]")), json.loads(active_auth) if active_auth else None, token)


def latest(db: Database, terminal: str, ward: str | None) -> StoredResult | None:
    """The terminal's last result to arrive (what its counter shows), of ``ward`` (None: any ward's terminal of
    that id; terminal ids repeat across wards, which may share the database)."""
    row = db.execute(f"SELECT {_COLUMNS} FROM results WHERE iss=? AND reduced IS NULL "  # noqa: S608
                     "AND (CAST(? AS TEXT) IS NULL OR ward = ?) ORDER BY received DESC, seq DESC LIMIT 1",
                     (terminal, ward, ward)).fetchone()  # fmt: skip  # fixed columns, no input; reduced: none to show
    return StoredResult.of(row) if row is not None else None


def find(db: Database, iss: str, jti: str, ward: str | None) -> StoredResult | None:
    """Result ``iss``/``jti`` if it is of ``ward`` (None: of any ward)."""
    row = db.execute(f"SELECT {_COLUMNS} FROM results WHERE iss=? AND jti=? AND reduced IS NULL "  # noqa: S608
                     "AND (CAST(? AS TEXT) IS NULL OR ward = ?)", (iss, jti, ward, ward)).fetchone()
    return StoredResult.of(row) if row is not None else None


def arrived_since(db: Database, since: float) -> list[tuple[str, str, str, float]]:
    """``(ward, iss, jti, received)`` of results stored at or after ``since`` (office clock), oldest first; ward ""
    for a row stored before ``results`` had the column."""
    return [(ward or "", iss, jti, received) for ward, iss, jti, received in db.execute(
        "SELECT ward, iss, jti, received FROM results WHERE received >= ? AND reduced IS NULL "
        "ORDER BY received, iss, jti", (since,))]  # fmt: skip


def _masked(name: str, value: str) -> str:
    if name in _NUMBERS:
        return mask_id(value)
    if name in _NAMES:
        return mask_name(value)
    if name in _DATES:
        return mask_date(value)
    if name in ADDRESS_FIELDS or name == "identifying_marks":
        return mask_text(value)
    return "•" * min(len(value), 3)  # sex, nationality, ethnicity, religion: short, yet personal


def verdict_view(document: ResultDocument, lang: Lang) -> dict[str, Any]:
    """The banner: the rung, its words, its style and, when it failed, the failing checks by name."""
    rung = document.verdict.rung
    failing = [check.name for check in document.checks if check.status is CheckStatus.FAILED]
    words = VERDICT_WORDS[rung]
    title = words.vi if lang == "vi" else words.en
    if rung is Verdict.FAILED:
        named = ", ".join(check_label(name, lang) for name in failing) or ("không rõ" if lang == "vi" else "unknown")
        title = f"{title}: {named}"
    style = "ok" if rung.proves_origin else "unproven" if rung is Verdict.INTACT_ORIGIN_UNPROVEN else "failed"
    return {"verdict": rung.value, "style": style, "title": title, "words": asdict(words), "failing": failing}


def masked_view(stored: StoredResult, lang: Lang) -> dict[str, Any]:
    """Everything the counter shows before a reveal; no field of the citizen in clear."""
    document = stored.document
    citizen = document.citizen.model_dump(exclude_none=True) if document.citizen is not None else {}
    photo = citizen.pop("photo_jpeg_b64", None) is not None
    card = card_words(generation_of_result(citizen.get("date_of_issue"), document.qr.format))
    return {
        "key": {"iss": stored.iss, "jti": stored.jti},
        "seq": stored.seq,
        "received": stored.received,
        "completed_at": document.completed_at.astimezone(UTC).timestamp(),
        "banner": verdict_view(document, lang),
        "checks": [{"name": check.name, "label": check_label(check.name, lang), "status": check.status.value,
                    "reason": check.reason} for check in document.checks],
        "card": card.vi if lang == "vi" else card.en,
        "profile": document.procedure_profile.value,
        "request_id": document.request_id,
        "active_auth": stored.active_auth,
        "flags": list(stored.flags),
        "photo": photo,
        "fields": [{"name": name, "label": vi if lang == "vi" else en, "masked": _masked(name, citizen[name])}
                   for name, vi, en in FIELDS if isinstance(citizen.get(name), str)],
    }


def revealed_view(stored: StoredResult) -> dict[str, Any]:
    """The citizen's fields as read, in the forms' order, addresses with today's units, the photo if any."""
    document = stored.document
    citizen = document.citizen.model_dump(exclude_none=True) if document.citizen is not None else {}
    return {
        "key": {"iss": stored.iss, "jti": stored.jti},
        "fields": [{"name": name, "value": citizen[name]} for name, _, _ in FIELDS
                   if isinstance(citizen.get(name), str)],
        "addresses": map_addresses(citizen),
        "photo_jpeg_b64": citizen.get("photo_jpeg_b64"),
    }


# --- the fleet -----------------------------------------------------------------------------------------------------


def certificate_expiry(token: str) -> float | None:
    """When the device certificate that vouched for ``token`` (its x5c, verified when stored) expires."""
    try:
        chain = x5c_chain(unverified_header(token))
        if not chain:
            return None
        return x509.load_der_x509_certificate(chain[0]).not_valid_after_utc.timestamp()
    except (EdgeError, ValueError, TypeError):  # a reduced result keeps no token
        return None


def problems(status: dict[str, Any], state: str | None) -> list[str]:
    """What needs someone's attention about one terminal (keys into the page's words), worst first."""
    found = []
    if state != "online":
        found.append("offline")
    if status.get("terminal_state") == "fault" or status.get("indicator") == "fault":
        found.append("fault")
    if status.get("reader") == "missing":
        found.append("reader")
    if status.get("camera") == "missing":
        found.append("camera")
    if status.get("storage_full"):
        found.append("storage_full")
    if status.get("outbox_full"):
        found.append("outbox_full")
    clock = status.get("clock")  # any JSON: the store keeps a status as the terminal sent it
    if isinstance(clock, dict) and clock.get("synchronised") is False:
        found.append("clock")
    if isinstance(status.get("queued"), int) and status["queued"] > 0:
        found.append("queued")
    return found


def known_terminals(db: Database, ward: str | None) -> list[tuple[str, str]]:
    """``(ward, terminal)`` of each terminal with a retained status or a stored result, of ``ward`` (None: of every
    ward; terminal ids repeat across wards), sorted. Stored results are found through the store's seq bookkeeping
    (``terminals``: one row per ward and terminal that stored one), not ``results``: ``results.ward`` is in no
    index, so reading it scans every row's document and token, on each home page a supervisor opens."""
    return sorted({(str(w), str(iss)) for w, iss in db.execute(
        "SELECT ward, iss FROM terminal_status WHERE CAST(? AS TEXT) IS NULL OR ward = ? "
        "UNION SELECT ward, iss FROM terminals WHERE CAST(? AS TEXT) IS NULL OR ward = ?",
        (ward, ward, ward, ward))})  # fmt: skip


def fleet_rows(db: Database, ward: str | None, terminals: Set[tuple[str, str]] | None,
               now: float) -> list[dict[str, Any]]:  # fmt: skip
    """One row per terminal (``(ward, iss)``) with a retained status (of ``ward``; only ``terminals``, ``(ward,
    iss)`` each, when given), problems first; its last result and certificate are its own ward's terminal's, not
    another's of that id."""
    rows = db.execute("SELECT ward, iss, state, status, received FROM terminal_status "
                      "WHERE CAST(? AS TEXT) IS NULL OR ward = ? ORDER BY ward, iss", (ward, ward)).fetchall()
    last: dict[tuple[str, str], tuple[float, str]] = {}
    for result_ward, iss, received, token in db.execute(
            "SELECT r.ward, r.iss, r.received, r.token FROM results r JOIN (SELECT ward, iss, MAX(received) AS m "
            "FROM results WHERE CAST(? AS TEXT) IS NULL OR ward = ? GROUP BY ward, iss) l "
            "ON r.ward = l.ward AND r.iss = l.iss AND r.received = l.m", (ward, ward)):
        last[result_ward, iss] = (received, token)
    out = []
    for row_ward, iss, state, status_text, received in rows:
        if terminals is not None and (row_ward, iss) not in terminals:
            continue
        # NaN/Infinity: the status's parser takes them, the page's JSON (RFC 8259) has none: one such status
        # would make the whole fleet an error
        status = json.loads(status_text, parse_constant=lambda _: None)
        result = last.get((row_ward, iss))
        expiry = certificate_expiry(result[1]) if result is not None else None
        found = problems(status, state)
        if expiry is not None and expiry - now < 30 * 86400:
            found.insert(1 if "offline" in found else 0, "cert_expiring")
        out.append({
            "ward": row_ward, "terminal": iss, "state": state or "unknown", "status_received": received,
            "terminal_state": status.get("terminal_state"), "indicator": status.get("indicator"),
            "reader": status.get("reader"), "camera": status.get("camera"), "queued": status.get("queued"),
            "awaiting_receipt": status.get("awaiting_receipt"), "held": status.get("held"),
            "last_error": status.get("last_error"), "version": software_version(status),
            "last_result": result[0] if result is not None else None, "cert_expiry": expiry, "problems": found,
        })  # fmt: skip
    severity = ["offline", "fault", "cert_expiring", "reader", "camera", "storage_full", "outbox_full", "clock",
                "queued"]
    out.sort(key=lambda row: (min((severity.index(p) for p in row["problems"]), default=len(severity)),
                              row["terminal"], row["ward"]))  # fmt: skip
    return out


def as_utc(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp is not None else None
