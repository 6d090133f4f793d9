"""Result document: the profile filter decides what leaves the device; the committed JSON Schema matches the model.

Regenerate the schema after a deliberate model change with ``UPDATE_SCHEMAS=1 pytest tests/unit/test_result.py``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.protocol.result import (
    PROFILE_FIELDS,
    Check,
    CheckStatus,
    CitizenData,
    ProcedureProfile,
    QrUsage,
    ReadTiming,
    ResultDocument,
    Verdict,
    make_result,
    result_json_schema,
)

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "edge" / "schemas" / "result.schema.json"

CITIZEN = CitizenData(
    id_number="079203012345", full_name="Nguyễn Văn An", date_of_birth="01/02/2003", sex="Nam",
    nationality="Việt Nam", ethnicity="Kinh", religion="Không", place_of_origin="Quận 1, TP. Hồ Chí Minh",
    place_of_residence="12 Đường Số 3, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh", identifying_marks="Nốt ruồi",
    date_of_issue="15/04/2021", date_of_expiry="01/02/2028", old_id_number="123456789",
    father_name="Nguyễn Văn Bình", mother_name="Trần Thị Cúc", spouse_name="Lê Thị Dung", photo_jpeg_b64="/9j/4AAQ",
)
CHECKS = (Check(name="sod_signature", status=CheckStatus.PASSED),
          Check(name="active_authentication", status=CheckStatus.NOT_SUPPORTED, reason="no DG15"))


def _result(profile: ProcedureProfile, *, include_photo: bool = False, verdict: Verdict = Verdict.VERIFIED,
            checks: tuple[Check, ...] = CHECKS, citizen: CitizenData | None = CITIZEN) -> ResultDocument:
    return make_result(terminal_id="T-01", ward_code="26734", profile=profile, verdict=verdict, checks=checks,
                       citizen=citizen, qr=QrUsage(used=True, format="cccd2021"),
                       timing=ReadTiming(apdu_count=123, read_ms=2100), completed_at=datetime(2026, 1, 2, tzinfo=UTC),
                       include_photo=include_photo)


def _present(doc: ResultDocument) -> set[str]:
    assert doc.citizen is not None
    return {k for k, v in doc.citizen.model_dump().items() if v is not None}


def test_identity_profile_has_no_address_no_family_no_photo() -> None:
    doc = _result(ProcedureProfile.IDENTITY)
    assert _present(doc) == PROFILE_FIELDS[ProcedureProfile.IDENTITY]
    assert "Đường" not in doc.to_json().decode()


def test_residence_profile_adds_only_the_address() -> None:
    assert _present(_result(ProcedureProfile.RESIDENCE)) == PROFILE_FIELDS[ProcedureProfile.IDENTITY] | {
        "place_of_residence"}


def test_full_profile_and_photo_on_request() -> None:
    assert "photo_jpeg_b64" not in _present(_result(ProcedureProfile.FULL))
    assert _present(_result(ProcedureProfile.FULL, include_photo=True)) == set(CitizenData.model_fields)
    assert _present(_result(ProcedureProfile.IDENTITY, include_photo=True)) == PROFILE_FIELDS[
        ProcedureProfile.IDENTITY] | {"photo_jpeg_b64"}


def test_json_round_trip_without_nulls() -> None:
    doc = _result(ProcedureProfile.RESIDENCE)
    data = json.loads(doc.to_json())
    assert "request_id" not in data
    assert data["checks"][1] == {"name": "active_authentication", "status": "not_supported", "reason": "no DG15"}
    assert ResultDocument.model_validate(data) == doc


def test_verdict_must_agree_with_checks() -> None:
    failed = (Check(name="dg_hashes", status=CheckStatus.FAILED, reason="DG13 hash mismatch"),)
    with pytest.raises(ValidationError, match="contradicts a failed check"):
        _result(ProcedureProfile.IDENTITY, checks=failed)
    untrusted = (Check(name="csca_chain", status=CheckStatus.ISSUER_NOT_TRUSTED),)
    with pytest.raises(ValidationError, match="untrusted issuer"):
        _result(ProcedureProfile.IDENTITY, checks=untrusted)
    assert _result(ProcedureProfile.IDENTITY, checks=untrusted, verdict=Verdict.VERIFIED_UNTRUSTED_ISSUER)
    assert _result(ProcedureProfile.IDENTITY, checks=failed, verdict=Verdict.FAILED, citizen=None).citizen is None
    with pytest.raises(ValidationError, match="needs citizen data"):
        _result(ProcedureProfile.IDENTITY, citizen=None)


def test_malformed_documents_are_rejected() -> None:
    data = json.loads(_result(ProcedureProfile.IDENTITY).to_json())
    for broken in ({**data, "extra": 1}, {**data, "schema_version": 2}, {**data, "verdict": "maybe"},
                   {**data, "citizen": {**data["citizen"], "id_number": "12345"}}):
        with pytest.raises(ValidationError):
            ResultDocument.model_validate(broken)


def test_committed_schema_matches_model() -> None:
    generated = json.dumps(result_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SCHEMAS") == "1":
        SCHEMA_PATH.write_text(generated, encoding="utf-8")
    assert SCHEMA_PATH.read_text(encoding="utf-8") == generated, "run UPDATE_SCHEMAS=1 pytest tests/unit/test_result.py"
