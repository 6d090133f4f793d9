"""The fleet reads each terminal's retained status as the gateway kept it: any bounded JSON object (the store checks
no more). One terminal putting a string where a field's object belongs must not take the whole fleet page down for
every supervisor: its row says what it can, the others' rows are unaffected."""

from __future__ import annotations

from typing import Any

import pytest

from edge.office.web.records import problems

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
