"""Procedure profiles: what each ward procedure may take from the card, why, on what legal basis, for how long.

One table (:data:`PROCEDURES`) decides, per profile, the citizen fields that may leave the terminal, whether the
face may be read at all, which of the chip's own files travel with the result, which data groups the chip is asked
for, and the purpose, legal basis and retention the result and the office go by. Minimisation is declared here and
enforced in :func:`edge.protocol.result.make_result` (what the document holds) and by :meth:`Procedure.read_request`
(what the chip is asked: a photo the procedure does not need is never read, even if an office asks for it).

The purpose and legal-basis texts are this project's reading of the law (Personal Data Protection Law
91/2025/QH15, in force since 2026-01-01; Law on Identity 26/2023/QH15; Law on Residence 68/2020/QH14 with Decree
104/2022/NĐ-CP; Decree 69/2024/NĐ-CP on electronic identification and authentication); each ward's data
protection officer must confirm them before use (README, "Procedure profiles"). Retention is defined here and
enforced on the office side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from edge.protocol.access.policy import AccessKey
from edge.protocol.chip import DEFAULT_DATA_GROUPS, ReadRequest


class ProcedureProfile(StrEnum):
    """How much of the citizen's data a procedure needs (:data:`PROCEDURES` says what each one carries and why)."""

    FULL = "full"  # every field the chip holds
    RESIDENCE = "residence"  # identity + place of residence: what replaced the household book (CT07)
    IDENTITY = "identity"  # identity only, no address, no family
    ONLINE_CHECK = "online_check"  # the chip's own files for the national authentication service (JWE only)


#: The chip's files a procedure can carry as they were read (``ResultDocument.chip_files``), by LDS name.
CHIP_FILE_NAMES = ("COM", "DG1", "DG2", "DG13", "DG14", "DG15", "SOD")

_IDENTITY_FIELDS = frozenset({"id_number", "full_name", "date_of_birth", "sex", "nationality", "date_of_issue",
                              "date_of_expiry", "old_id_number"})  # fmt: skip
#: Every printed field DG13 holds (``CitizenData`` without the photo; a test keeps the two equal).
_ALL_FIELDS = _IDENTITY_FIELDS | {"ethnicity", "religion", "place_of_origin", "place_of_residence",
                                  "identifying_marks", "father_name", "mother_name", "spouse_name",
                                  "place_of_birth_registration"}  # fmt: skip
_PDPL = "Personal Data Protection Law 91/2025/QH15"
_IDENTITY_LAW = "Law on Identity 26/2023/QH15"
#: 90 days: the time a citizen has to complain about an administrative decision (Law on Complaints 02/2011/QH13,
#: art. 9), during which the ward may have to show how it identified them.
_COMPLAINT_PERIOD_DAYS = 90


@dataclass(frozen=True, slots=True)
class Procedure:
    """One profile's rules. ``photo``: the procedure may need the face (DG2); it is read only when a request also
    asks for it. ``chip_files``: the raw files the result carries (empty for all but ``online_check``), read as
    ``read_com`` and ``data_groups`` say. ``needs_encryption``: the terminal refuses the profile unless its results
    are encrypted to the ward key (JWE). ``retention_days``: how long the office keeps the personal data of a result,
    counted from its read; after it only non-personal fields stay (verdict, checks, terminal, time)."""

    profile: ProcedureProfile
    purpose: str
    legal_basis: str
    retention_days: int
    citizen_fields: frozenset[str]
    photo: bool = False
    chip_files: frozenset[str] = frozenset()
    needs_encryption: bool = False
    data_groups: frozenset[int] = DEFAULT_DATA_GROUPS

    def __post_init__(self) -> None:
        if not self.citizen_fields <= _ALL_FIELDS or not self.chip_files <= set(CHIP_FILE_NAMES):
            raise ValueError(f"profile {self.profile.value} names fields or files no card holds")
        if not {"id_number", "full_name", "date_of_birth"} <= self.citizen_fields:
            raise ValueError(f"profile {self.profile.value} lacks the fields every result needs")
        if "DG2" in self.chip_files and not self.photo:
            raise ValueError(f"profile {self.profile.value} carries DG2 but does not need the photo")

    @property
    def photo_in_files(self) -> bool:
        """The face travels as the chip's DG2 (``chip_files``), not as the citizen's ``photo_jpeg_b64``."""
        return "DG2" in self.chip_files

    def read_request(self, key: AccessKey, *, photo_requested: bool, aa_challenge: bytes | None = None,
                     allow_bac_fallback: bool = False) -> ReadRequest:  # fmt: skip
        """What the chip is asked for this procedure: its data groups, EF.COM when the files travel, DG2 only when
        the procedure needs the face *and* the request asks for it."""
        return ReadRequest(key, want_photo=self.photo and photo_requested, aa_challenge=aa_challenge,
                           allow_bac_fallback=allow_bac_fallback, data_groups=self.data_groups,
                           read_com="COM" in self.chip_files)  # fmt: skip


PROCEDURES: Mapping[ProcedureProfile, Procedure] = MappingProxyType({
    ProcedureProfile.IDENTITY: Procedure(
        ProcedureProfile.IDENTITY,
        purpose="Identify the citizen who files an administrative procedure at the ward's counter, from the data "
                "the State signed on the card's chip, instead of copying the card by hand",
        legal_basis=f"{_IDENTITY_LAW} (the chip card's data identifies its holder in administrative procedures); "
                    "Decree 61/2018/NĐ-CP as amended by Decree 107/2021/NĐ-CP (one-stop shop: receiving and "
                    f"checking a procedure's file); {_PDPL}: processing for a state agency's task that a law "
                    "prescribes, limited to what the task needs",
        retention_days=_COMPLAINT_PERIOD_DAYS,
        citizen_fields=_IDENTITY_FIELDS,
        photo=True,  # comparing the face with the person at the counter is part of identifying them
    ),
    ProcedureProfile.RESIDENCE: Procedure(
        ProcedureProfile.RESIDENCE,
        purpose="Confirm the citizen's place of residence for a residence procedure, or for a procedure that "
                "asked for the household book or a residence confirmation (CT07) before",
        legal_basis="Law on Residence 68/2020/QH14; Decree 104/2022/NĐ-CP (the household book is void: residence "
                    "is read from the national population database or the chip card, not asked for on paper); "
                    f"{_IDENTITY_LAW}; {_PDPL}: processing for a state agency's task that a law prescribes",
        retention_days=_COMPLAINT_PERIOD_DAYS,
        citizen_fields=_IDENTITY_FIELDS | {"place_of_residence"},
    ),
    ProcedureProfile.FULL: Procedure(
        ProcedureProfile.FULL,
        purpose="Fill in a procedure's form with every printed field the chip holds (origin, family, identifying "
                "marks), for a procedure whose own regulation asks for them (e.g. civil status registration)",
        legal_basis="The regulation of the procedure carried out, which must ask for each of these fields; "
                    f"{_IDENTITY_LAW}; {_PDPL}: only the data the purpose needs (the ward uses this profile only "
                    "where no narrower one suffices)",
        retention_days=_COMPLAINT_PERIOD_DAYS,
        citizen_fields=_ALL_FIELDS,
        photo=True,
    ),
    ProcedureProfile.ONLINE_CHECK: Procedure(
        ProcedureProfile.ONLINE_CHECK,
        purpose="Have the national identity authentication service (through the office's licensed provider) "
                "confirm that the card is genuine and neither lost nor revoked, which no offline check can tell",
        legal_basis="Decree 69/2024/NĐ-CP (electronic identification and authentication: chip card data "
                    f"authenticated against the national population database by an authentication service); "
                    f"{_IDENTITY_LAW}; {_PDPL}: the face (DG2) is sensitive personal data, so it is read only "
                    "when asked for and travels only encrypted to the ward; the consent record, when the "
                    "procedure relies on consent, is kept by the procedure software (consent_ref)",
        retention_days=30,  # the raw files hold the face: kept until the online answer is recorded and checked
        citizen_fields=frozenset({"id_number", "full_name", "date_of_birth"}),  # the rest travels inside DG13
        photo=True,
        chip_files=frozenset(CHIP_FILE_NAMES),
        needs_encryption=True,
    ),
})  # fmt: skip


def procedure(profile: ProcedureProfile) -> Procedure:
    """The rules of ``profile``."""
    return PROCEDURES[profile]
