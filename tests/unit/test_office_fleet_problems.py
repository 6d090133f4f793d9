"""The fleet reads each terminal's retained status as the gateway kept it: any bounded JSON object (the store checks
no more). One terminal putting a string where a field's object belongs must not take the whole fleet page down for
every supervisor: its row says what it can, the others' rows are unaffected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.office.database import Database
from edge.office.web.records import fleet_rows, problems

HOSTILE = ["fault", "missing", "", 0, 1, -1, True, False, None, [], ["x"], {}, {"synchronised": "no"}, 1e308]


@pytest.mark.parametrize("name", ["terminal_state", "indicator", "reader", "camera", "storage_full", "outbox_full",
                                  "clock", "queued"])  # fmt: skip
def test_a_status_field_of_any_json_type_gives_problems_not_a_crash(name: str) -> None:
    for value in HOSTILE:
        status: dict[str, Any] = {"state": "online", name: value}
        found = problems(status, "online")
        assert all(isinstance(problem, str) for problem in found), (name, value)


def test_the_clock_problem_needs_the_clock_object_saying_unsynchronised() -> None:
    assert problems({"clock": {"synchronised": False, "source": "rtc"}}, "online") == ["clock"]
    assert problems({"clock": {"synchronised": True, "source": "ntp"}}, "online") == []
    assert problems({"clock": "unsynchronised"}, "online") == []


def test_a_status_holding_nan_leaves_the_fleet_json(tmp_path: Path) -> None:
    """The status parser takes ``NaN`` and ``Infinity`` (Python's json does); the page's JSON response refuses them
    (RFC 8259): one terminal sending them made ``/fleet/data`` an error for everyone."""
    db = Database(f"sqlite:///{tmp_path}/office.db")
    try:
        db.execute("CREATE TABLE terminal_status (ward TEXT, iss TEXT, state TEXT, status TEXT, received REAL)")
        db.execute("CREATE TABLE results (ward TEXT, iss TEXT, received REAL, token TEXT)")
        db.execute("INSERT INTO terminal_status VALUES (?, ?, ?, ?, ?)",
                   ("26734", "T-01", "online", '{"state":"online","reader":NaN,"queued":Infinity}', 1.0))
        (row,) = fleet_rows(db, "26734", None, 2.0)
        assert (row["reader"], row["queued"]) == (None, None)
        json.dumps(row, allow_nan=False)  # what the page's JSONResponse does
    finally:
        db.close()
