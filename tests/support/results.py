"""One sample result document (a fictitious person, every field filled): for the tests of the result model, the
office side and MQTT delivery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from edge.protocol.result import (
    Check,
    CitizenData,
    ProcedureProfile,
    QrUsage,
    ReadTiming,
    ResultDocument,
    make_result,
)
from edge.protocol.verify.checks import CheckStatus, Verdict

#: Every field filled (fictitious person), so that each profile filter has something to remove.
CITIZEN = CitizenData(
    id_number="079203012345", full_name="Nguyễn Văn An", date_of_birth="01/02/2003", sex="Nam",
    nationality="Việt Nam", ethnicity="Kinh", religion="Không", place_of_origin="Quận 1, TP. Hồ Chí Minh",
    place_of_residence="12 Đường Số 3, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh", identifying_marks="Nốt ruồi",
    date_of_issue="15/04/2021", date_of_expiry="01/02/2028", old_id_number="123456789",
    father_name="Nguyễn Văn Bình", mother_name="Trần Thị Cúc", spouse_name="Lê Thị Dung", photo_jpeg_b64="/9j/4AAQ",
)  # fmt: skip
CHECKS = (Check(name="sod_signature", status=CheckStatus.PASSED), Check(name="dg_hashes", status=CheckStatus.PASSED),
          Check(name="active_authentication", status=CheckStatus.NOT_SUPPORTED, reason="no DG15"))  # fmt: skip


def sample_result(
    profile: ProcedureProfile = ProcedureProfile.IDENTITY,
    *,
    terminal_id: str = "T-01",
    ward_code: str = "26734",
    verdict: Verdict = Verdict.VERIFIED,
    checks: tuple[Check, ...] = CHECKS,
    citizen: CitizenData | None = CITIZEN,
    qr: QrUsage | None = None,
    timing: ReadTiming | None = None,
    completed_at: datetime | None = None,
    include_photo: bool = False,
) -> ResultDocument:
    return make_result(
        terminal_id=terminal_id, ward_code=ward_code, profile=profile, verdict=verdict, checks=checks,
        citizen=citizen, qr=qr or QrUsage(used=True, format="cccd2021"),
        timing=timing or ReadTiming(apdu_count=123, read_ms=2100),
        completed_at=completed_at or datetime(2026, 1, 2, tzinfo=UTC), include_photo=include_photo,
    )  # fmt: skip


def citizen_of(card_profile: str) -> CitizenData:
    """:data:`CITIZEN` with the addresses of a simulator card profile (``edge/sim/profiles``): ``default`` lives
    where today's units are one (Phường Bến Nghé -> Phường Sài Gòn), ``young`` where they are split (Phường Khương
    Trung -> Khương Đình or Phương Liệt)."""
    from edge.sim.profile import load_profile

    person = load_profile(card_profile).person
    return CITIZEN.model_copy(update={name: getattr(person, name) for name in
                                      ("place_of_residence", "place_of_origin", "place_of_birth_registration")})


def legacy(data: dict[str, Any], version: int) -> dict[str, Any]:
    """A version 3 document's JSON as an older terminal sent it: without the keys version 3 added (``processing``
    and ``chip_files``; ``clock`` is left to the tests of its own refusal)."""
    return {key: value for key, value in data.items() if key not in ("processing", "chip_files")} | {
        "schema_version": version}
