"""Result document: the profile filter decides what leaves the device; the committed JSON Schema matches the model.

Regenerate the schema after a deliberate model change with ``UPDATE_SCHEMAS=1 pytest tests/unit/test_result.py``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from edge.protocol.access.active_auth import ActiveAuthResult
from edge.protocol.clock import TimeEvidence
from edge.protocol.keys import explicit_spki
from edge.protocol.lds.dg15 import encode_dg15, parse_dg15
from edge.protocol.result import (
    PROFILE_FIELDS,
    ActiveAuthEvidence,
    Check,
    CheckStatus,
    CitizenData,
    ClockEvidence,
    ProcedureProfile,
    ResultDocument,
    Verdict,
    result_json_schema,
)
from edge.protocol.verify.checks import CLOCK_NOT_SYNCHRONISED
from tests.support.results import CHECKS, legacy, sample_result

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "edge" / "schemas" / "result.schema.json"


def _present(doc: ResultDocument) -> set[str]:
    assert doc.citizen is not None
    return {k for k, v in doc.citizen.model_dump().items() if v is not None}


def test_identity_profile_has_no_address_no_family_no_photo() -> None:
    doc = sample_result(ProcedureProfile.IDENTITY)
    assert _present(doc) == PROFILE_FIELDS[ProcedureProfile.IDENTITY]
    assert "Đường" not in doc.to_json().decode()


def test_residence_profile_adds_only_the_address() -> None:
    assert _present(sample_result(ProcedureProfile.RESIDENCE)) == PROFILE_FIELDS[ProcedureProfile.IDENTITY] | {
        "place_of_residence"}


def test_full_profile_and_photo_on_request() -> None:
    assert "photo_jpeg_b64" not in _present(sample_result(ProcedureProfile.FULL))
    assert _present(sample_result(ProcedureProfile.FULL, include_photo=True)) == set(CitizenData.model_fields) - {
        "place_of_birth_registration"}  # the sample is a 2021 card: see the test of that field below
    assert _present(sample_result(ProcedureProfile.IDENTITY, include_photo=True)) == PROFILE_FIELDS[
        ProcedureProfile.IDENTITY] | {"photo_jpeg_b64"}


def test_json_round_trip_without_nulls() -> None:
    doc = sample_result(ProcedureProfile.RESIDENCE)
    data = json.loads(doc.to_json())
    assert "request_id" not in data
    assert data["checks"][-1] == {"name": "active_authentication", "status": "not_supported", "reason": "no DG15"}
    assert ResultDocument.model_validate(data) == doc


def test_verdict_must_agree_with_checks() -> None:
    failed = (Check(name="dg_hashes", status=CheckStatus.FAILED, reason="DG13 hash mismatch"),)
    with pytest.raises(ValidationError, match="contradicts a failed check"):
        sample_result(ProcedureProfile.IDENTITY, checks=failed)
    untrusted = (Check(name="csca_chain", status=CheckStatus.ISSUER_NOT_TRUSTED),)
    known = (Check(name="ds_chain", status=CheckStatus.KNOWN_SIGNER),)
    for verdict in (Verdict.VERIFIED, Verdict.VERIFIED_KNOWN_SIGNER):
        with pytest.raises(ValidationError, match=r"CSCA path|unproven issuer|known_signer check"):
            sample_result(ProcedureProfile.IDENTITY, checks=untrusted, verdict=verdict)
    with pytest.raises(ValidationError, match="CSCA path"):
        sample_result(ProcedureProfile.IDENTITY, checks=known)
    with pytest.raises(ValidationError, match="needs a known_signer check"):
        sample_result(ProcedureProfile.IDENTITY, verdict=Verdict.VERIFIED_KNOWN_SIGNER)
    assert sample_result(ProcedureProfile.IDENTITY, checks=untrusted, verdict=Verdict.INTACT_ORIGIN_UNPROVEN)
    assert sample_result(ProcedureProfile.IDENTITY, checks=known, verdict=Verdict.VERIFIED_KNOWN_SIGNER)
    assert sample_result(ProcedureProfile.IDENTITY, checks=failed, verdict=Verdict.FAILED, citizen=None).citizen is None
    with pytest.raises(ValidationError, match="needs citizen data"):
        sample_result(ProcedureProfile.IDENTITY, citizen=None)


def test_malformed_documents_are_rejected() -> None:
    data = json.loads(sample_result(ProcedureProfile.IDENTITY).to_json())
    for broken in ({**data, "extra": 1}, {**data, "schema_version": 4}, {**data, "verdict": "maybe"},
                   {**data, "citizen": {**data["citizen"], "id_number": "12345"}},
                   {**data, "verdict": "verified_untrusted_issuer"},  # the legacy spelling is not version 3's
                   {**data, "schema_version": 2, "verdict": "intact_origin_unproven"}):  # nor the new one version 2's
        with pytest.raises(ValidationError):
            ResultDocument.model_validate(broken)


def test_documents_of_earlier_versions_are_still_accepted() -> None:
    """Terminals hold signed results for weeks: a version 2 document saying verified_untrusted_issuer still reads,
    as the rung it stood for."""
    data = json.loads(sample_result(ProcedureProfile.IDENTITY).to_json())
    old = {**legacy(data, 2), "verdict": "verified_untrusted_issuer",
           "checks": [{"name": "ds_chain", "status": "issuer_not_trusted"}]}
    document = ResultDocument.model_validate(old)
    assert document.verdict.rung is Verdict.INTACT_ORIGIN_UNPROVEN
    assert not document.verdict.proves_origin


OFFICE_CHALLENGE = bytes.fromhex("0011223344556677")
DG15 = parse_dg15(encode_dg15(explicit_spki(ec.generate_private_key(ec.BrainpoolP256R1()).public_key())))


def answered(challenge: bytes = OFFICE_CHALLENGE, signature: bytes | None = b"\x5a" * 64) -> ActiveAuthResult:
    return ActiveAuthResult(CheckStatus.PASSED, "ok", "ECDSA/brainpoolP256r1/sha256", "key size", challenge, signature)


def test_active_auth_evidence_only_for_the_office_challenge() -> None:
    evidence = ActiveAuthEvidence.for_office(answered(), DG15, OFFICE_CHALLENGE)
    assert evidence is not None
    assert (evidence.challenge, evidence.public_key_spki) == (OFFICE_CHALLENGE, DG15.spki_der)  # explicit params kept
    assert ActiveAuthEvidence.for_office(answered(), DG15, None) is None  # the terminal chose it: proves nothing
    assert ActiveAuthEvidence.for_office(answered(bytes(8)), DG15, OFFICE_CHALLENGE) is None
    assert ActiveAuthEvidence.for_office(answered(signature=None), DG15, OFFICE_CHALLENGE) is None  # chip refused
    assert ActiveAuthEvidence.for_office(answered(), None, OFFICE_CHALLENGE) is None
    assert ActiveAuthEvidence.for_office(ActiveAuthResult.not_supported(), DG15, OFFICE_CHALLENGE) is None


def test_active_auth_evidence_travels_as_unpadded_base64url_since_version_2() -> None:
    evidence = ActiveAuthEvidence.for_office(answered(), DG15, OFFICE_CHALLENGE)
    assert evidence is not None
    data = json.loads(sample_result(ProcedureProfile.IDENTITY).to_json())
    assert data["schema_version"] == 3
    wire = {**data, "active_auth": json.loads(evidence.model_dump_json())}
    assert wire["active_auth"]["challenge"] == "ABEiM0RVZnc"
    assert ResultDocument.model_validate(wire).active_auth == evidence
    assert ResultDocument.model_validate(legacy(data, 1)).schema_version == 1  # still in outboxes
    with pytest.raises(ValidationError, match="needs schema_version 2"):
        ResultDocument.model_validate({**wire, "schema_version": 1})
    for challenge in ("ABEiM0RVZnc=", "ABEiM0RVZn+", "ABEiM0RVZnd", "ABEiM0RVZg", "ABEi M0RVZnc"):
        with pytest.raises(ValidationError):
            ResultDocument.model_validate({**wire, "active_auth": {**wire["active_auth"], "challenge": challenge}})


def test_committed_schema_matches_model() -> None:
    generated = json.dumps(result_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SCHEMAS") == "1":
        SCHEMA_PATH.write_text(generated, encoding="utf-8")
    assert SCHEMA_PATH.read_text(encoding="utf-8") == generated, "run UPDATE_SCHEMAS=1 pytest tests/unit/test_result.py"


def test_a_hostile_chips_oversized_answer_leaves_the_result_without_evidence_not_without_a_result() -> None:
    assert ActiveAuthEvidence.for_office(answered(signature=b"\x01" * 5000), DG15, OFFICE_CHALLENGE) is None


UNSYNCED = TimeEvidence.unsynchronised(datetime(1970, 1, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
CLOCK_CHECKS = (*CHECKS, Check(name="ds_validity", status=CheckStatus.NOT_PERFORMED, reason=CLOCK_NOT_SYNCHRONISED))


def test_the_result_records_the_clock_state_since_version_3() -> None:
    office_time = datetime(2026, 12, 6, 11, 0, tzinfo=UTC)
    for evidence, checks in ((UNSYNCED, CLOCK_CHECKS), (TimeEvidence.trusted(office_time, "office"), CHECKS)):
        document = sample_result().model_copy(update={"checks": checks, "clock": ClockEvidence.of(evidence)})
        data = json.loads(ResultDocument.model_validate(document.model_dump()).to_json())
        assert ResultDocument.model_validate(data).clock == ClockEvidence.of(evidence)
    data = json.loads(sample_result().model_copy(update={"checks": CLOCK_CHECKS,
                                                         "clock": ClockEvidence.of(UNSYNCED)}).to_json())
    assert data["clock"] == {"synchronised": False, "source": "none", "floor": "2026-11-01T00:00:00Z"}
    with pytest.raises(ValidationError, match="clock needs schema_version 3"):
        ResultDocument.model_validate({**data, "schema_version": 2})


@pytest.mark.parametrize(
    "clock",
    [{"synchronised": True, "source": "none", "evidence_time": "2026-12-06T11:00:00Z"},
     {"synchronised": False, "source": "ntp"},
     {"synchronised": True, "source": "office"},  # a trusted clock always has its evidence time
     {"synchronised": False, "source": "none", "evidence_time": "2026-12-06T11:00:00Z"},
     {"synchronised": False, "source": "gps"}, {"synchronised": False, "source": "none", "extra": 1}],
)  # fmt: skip
def test_a_clock_that_contradicts_itself_is_refused(clock: dict[str, object]) -> None:
    data = json.loads(sample_result().to_json())
    with pytest.raises(ValidationError):
        ResultDocument.model_validate({**data, "clock": clock})


def test_a_check_left_for_the_clock_needs_an_unsynchronised_clock() -> None:
    with pytest.raises(ValidationError, match="left undone for the clock"):
        sample_result(checks=CLOCK_CHECKS)  # no clock object: the office could not tell why
    synced = ClockEvidence.of(TimeEvidence.trusted(datetime(2026, 12, 6, tzinfo=UTC)))
    data = json.loads(sample_result().to_json())
    with pytest.raises(ValidationError, match="left undone for the clock"):
        ResultDocument.model_validate({**data, "checks": [c.model_dump() for c in CLOCK_CHECKS],
                                       "clock": synced.model_dump(mode="json")})


def test_place_of_birth_registration_is_a_full_profile_field_since_version_3() -> None:
    """The 2024 card prints it; only ``full`` carries it, and an older document cannot (its schema had no such key)."""
    from edge.protocol.result import PROFILE_FIELDS, ProcedureProfile

    assert [profile for profile, fields in PROFILE_FIELDS.items() if "place_of_birth_registration" in fields] == [
        ProcedureProfile.FULL]
    document = sample_result(ProcedureProfile.FULL)
    assert document.citizen is not None
    citizen = document.citizen.model_copy(update={"place_of_birth_registration": "Phường Thạch Thang, TP. Đà Nẵng"})
    data = json.loads(document.model_copy(update={"citizen": citizen}).to_json())
    assert ResultDocument.model_validate(data).citizen == citizen
    with pytest.raises(ValidationError, match="place_of_birth_registration needs schema_version 3"):
        ResultDocument.model_validate({**data, "schema_version": 2})
