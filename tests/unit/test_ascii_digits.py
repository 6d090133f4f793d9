"""Only ASCII digits are digits where a key or number is parsed: ``\\d`` and ``str.isdigit`` also take '１' and '٣',
which pass a check and then crash the code that encodes them as ASCII. Each refusal is a typed error."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.errors import AccessKeyRejectedError, MrzError
from edge.protocol import crypto, mrz
from edge.protocol.access.policy import CanKey
from edge.protocol.result import ResultDocument
from edge.sim.profile import Person
from tests.support.results import sample_result

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize("table", [FULL_WIDTH, ARABIC_INDIC], ids=["full-width", "arabic-indic"])
def test_unicode_digits_are_refused_with_typed_errors(table: dict[int, str]) -> None:
    assert "123456".translate(table).isdigit()  # what let them through
    with pytest.raises(AccessKeyRejectedError):
        CanKey("123456".translate(table))
    with pytest.raises(MrzError):
        crypto.mrz_information("203012345", "030201".translate(table), "280201")
    with pytest.raises(MrzError):
        mrz.mrz_information("203012345", "030201", "280201".translate(table))
    with pytest.raises(MrzError):
        mrz.cccd_td1("079203012345".translate(table), full_name="Nguyen Van An", date_of_birth=_date(),
                     sex="Nam", date_of_expiry=None)  # fmt: skip


@pytest.mark.parametrize("table", [FULL_WIDTH, ARABIC_INDIC], ids=["full-width", "arabic-indic"])
def test_documents_and_profiles_take_ascii_digits_only(table: dict[int, str]) -> None:
    data = json.loads(sample_result().to_json())
    data["citizen"]["id_number"] = data["citizen"]["id_number"].translate(table)
    with pytest.raises(ValidationError, match="id_number"):
        ResultDocument.model_validate(data)
    person = {"id_number": "079203012345", "full_name": "Nguyễn Văn An", "date_of_birth": _date(), "sex": "Nam",
              "place_of_origin": "Quận 1", "place_of_residence": "Quận 1", "date_of_issue": _date()}
    Person.model_validate(person)
    for field in ("id_number", "old_id_number"):
        with pytest.raises(ValidationError, match=field):
            Person.model_validate(person | {field: "079203012345".translate(table)})


def _date() -> dt.date:
    return dt.date(2003, 2, 1)


def test_every_isdigit_in_the_product_is_asked_with_isascii() -> None:
    """``'²'.isdigit()`` is True and ``int('²')`` raises: a header, prompt or file that passes the check then
    crashes. So no shipped line asks ``isdigit()`` without ``isascii()`` beside it (``\\d`` is caught by ruff's
    rules and the patterns' own tests)."""
    root = Path(__file__).resolve().parents[2] / "edge"
    unasked = [f"{path.relative_to(root.parent)}:{number}" for path in sorted(root.rglob("*.py"))
               for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
               if ".isdigit()" in line and "isascii()" not in line and not line.lstrip().startswith(('"', "#"))]
    assert unasked == []
