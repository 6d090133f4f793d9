"""The result document a terminal sends to the ward office, and the profile filter that decides what leaves it.

Data minimisation is enforced here, in one pure function (:func:`make_result`), rather than by each caller: a
procedure that needs no address never gets one, and the face photo leaves the device only when asked for. The
model is also the wire format's JSON Schema (``edge/schemas/result.schema.json``, kept in sync by a test).

Versions: documents forbid unknown keys, so any new key needs a new ``schema_version``; the office keeps accepting
the older versions, because terminals hold signed results in their outbox for up to the token lifetime.
Version 2 added ``active_auth``. Version 3 is the verdict ladder: ``verified_known_signer`` and
``intact_origin_unproven`` (which replaces ``verified_untrusted_issuer``, still accepted in versions 1 and 2), the
``known_signer`` check status and the optional ``clock`` object (how far the terminal could trust its time), the
citizen's optional ``place_of_birth_registration`` (printed on the 2024 thẻ căn cước; ``full`` profile only), the
``online_check`` profile with its ``chip_files`` (the chip's own files for the national authentication service),
and ``processing`` (the profile's purpose and legal basis, and the office's consent reference). From version 3 on,
the face travels only under a profile that needs it (``edge.protocol.procedures``); in every version a document
holds no citizen field its profile does not declare.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema, model_validator

from edge.protocol.access.active_auth import CHALLENGE_LENGTH, ActiveAuthResult
from edge.protocol.b64url import b64url_decode, b64url_encode
from edge.protocol.clock import ClockSource, TimeEvidence
from edge.protocol.lds.dg13 import DATE_OF_BIRTH, DATE_OF_EXPIRY, DATE_OF_ISSUE, Dg13, format_date
from edge.protocol.lds.dg15 import Dg15
from edge.protocol.procedures import CHIP_FILE_NAMES, PROCEDURES
from edge.protocol.procedures import ProcedureProfile as ProcedureProfile  # re-exported: the profile's home
from edge.protocol.verify import checks as verification
from edge.protocol.verify.checks import CLOCK_NOT_SYNCHRONISED, CheckStatus, Verdict
from edge.protocol.verify.signatures import MAX_RSA_BITS

SCHEMA_VERSION: Literal[3] = 3
#: What each schema version may say: a value from a later version inside an earlier document is a forgery or a bug.
_LEGACY_VERDICTS = frozenset({Verdict.VERIFIED, Verdict.VERIFIED_UNTRUSTED_ISSUER, Verdict.FAILED})
_V3_VERDICTS = frozenset(Verdict) - {Verdict.VERIFIED_UNTRUSTED_ISSUER}
#: Largest AA answer carried (an RSA signature is as long as the largest modulus verified) and DG15 key.
MAX_AA_SIGNATURE_BYTES = MAX_RSA_BITS // 8
MAX_AA_KEY_BYTES = 2048


class _Doc(BaseModel):
    # Frozen and strict about unknown keys: a document is evidence, and an office parser must not guess.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(_Doc):
    """One verification step, as computed by ``edge.protocol.verify.checks``."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    status: CheckStatus
    reason: str = Field(default="", max_length=500)

    @classmethod
    def of(cls, check: verification.Check) -> Check:
        """The document's form of a verification check: the one conversion (its ``detail`` stays on the terminal)."""
        return cls(name=check.name, status=check.status, reason=check.reason[:500])


class CitizenData(_Doc):
    """The citizen as read from the chip (DG13 / DG1 / DG2). Dates are kept as the card prints them."""

    id_number: str = Field(pattern=r"^[0-9]{12}$")  # not \d: pydantic's regex takes any Unicode digit
    full_name: str = Field(min_length=1, max_length=200)
    date_of_birth: str = Field(max_length=32)
    sex: str | None = Field(default=None, max_length=16)
    nationality: str | None = Field(default=None, max_length=64)
    ethnicity: str | None = Field(default=None, max_length=64)
    religion: str | None = Field(default=None, max_length=64)
    place_of_origin: str | None = Field(default=None, max_length=500)
    place_of_residence: str | None = Field(default=None, max_length=500)
    identifying_marks: str | None = Field(default=None, max_length=500)
    date_of_issue: str | None = Field(default=None, max_length=32)
    date_of_expiry: str | None = Field(default=None, max_length=32)  # may read "Không thời hạn"
    old_id_number: str | None = Field(default=None, max_length=32)
    father_name: str | None = Field(default=None, max_length=200)
    mother_name: str | None = Field(default=None, max_length=200)
    spouse_name: str | None = Field(default=None, max_length=200)
    place_of_birth_registration: str | None = Field(default=None, max_length=500)  # 2024 cards; since version 3
    photo_jpeg_b64: str | None = Field(default=None, max_length=200_000)  # DG2 face, only on request


#: Fields each profile lets leave the device (``edge.protocol.procedures``); ``photo_jpeg_b64`` is governed
#: separately: :func:`photo_allowed` and the request's ``include_photo``.
PROFILE_FIELDS: dict[ProcedureProfile, frozenset[str]] = {
    profile: rules.citizen_fields for profile, rules in PROCEDURES.items()
}


def photo_allowed(profile: ProcedureProfile) -> bool:
    """Whether the citizen's ``photo_jpeg_b64`` may be in a (version 3) document of ``profile``: the procedure needs
    the face, and does not carry it as the chip's DG2 already."""
    rules = PROCEDURES[profile]
    return rules.photo and not rules.photo_in_files


class QrUsage(_Doc):
    """Whether a QR supplied the chip key. The QR is unsigned: it is never evidence, only a key source."""

    used: bool
    format: Literal["cccd2021", "cccd2024", "unknown"] | None = None


def citizen_fields(dg13: Dg13) -> dict[str, str | None]:
    """DG13 in :class:`CitizenData`'s words, dates as the card prints them (the card's own text when it has one, such
    as a date of expiry of "Không thời hạn"): the one mapping the result document and ``cccd-edge read`` share."""
    raw = dg13.raw_fields

    def printed(number: int, value: date | None) -> str | None:
        return raw.get(number) or (format_date(value) if value is not None else None)

    return {
        "id_number": dg13.id_number, "full_name": dg13.full_name,
        "date_of_birth": printed(DATE_OF_BIRTH, dg13.date_of_birth), "sex": dg13.sex, "nationality": dg13.nationality,
        "ethnicity": dg13.ethnicity, "religion": dg13.religion, "place_of_origin": dg13.place_of_origin,
        "place_of_residence": dg13.place_of_residence, "identifying_marks": dg13.identifying_marks,
        "date_of_issue": printed(DATE_OF_ISSUE, dg13.date_of_issue),
        "date_of_expiry": printed(DATE_OF_EXPIRY, dg13.date_of_expiry), "old_id_number": dg13.old_id_number,
        "father_name": dg13.father_name, "mother_name": dg13.mother_name, "spouse_name": dg13.spouse_name,
        "place_of_birth_registration": dg13.place_of_birth_registration,
    }  # fmt: skip


def citizen_from(dg13: Dg13, *, photo_jpeg: bytes | None = None) -> CitizenData:
    """The citizen as DG13 states it (:func:`citizen_fields`), with the DG2 face when asked for; raises pydantic's
    ValidationError (a ValueError) when the card's data does not fit the document."""
    fields = citizen_fields(dg13)
    required = {name: fields[name] or "" for name in ("id_number", "full_name", "date_of_birth")}
    photo = base64.b64encode(photo_jpeg).decode("ascii") if photo_jpeg is not None else None
    return CitizenData.model_validate(fields | required | {"photo_jpeg_b64": photo})


class ReadTiming(_Doc):
    apdu_count: int = Field(ge=0)
    read_ms: int = Field(ge=0)
    verify_ms: int | None = Field(default=None, ge=0)


def _base64url_field(value: Any) -> Any:
    """Text from JSON is decoded (strictly); bytes given in Python pass as they are."""
    return b64url_decode(value) if isinstance(value, str) else value


#: Bytes that travel as unpadded base64url (the JOSE spelling the rest of the message uses).
Base64Url = Annotated[
    bytes, BeforeValidator(_base64url_field), PlainSerializer(b64url_encode, return_type=str, when_used="json")
]


def _base64url_schema(min_bytes: int, max_bytes: int) -> WithJsonSchema:
    """The wire form's JSON Schema, its length limits derived from the limits in bytes."""
    return WithJsonSchema({"type": "string", "contentEncoding": "base64url", "pattern": "^[A-Za-z0-9_-]+$",
                           "minLength": math.ceil(min_bytes * 4 / 3), "maxLength": math.ceil(max_bytes * 4 / 3)})


class ActiveAuthEvidence(_Doc):
    """The chip's Active Authentication answer to the office's own challenge, so that the office can check it.

    Only a challenge the office chose proves anything to the office (that this chip answered after the request):
    the terminal includes this object only when AA ran with the challenge of the office's ``read_request``, never
    for a challenge of its own. ``public_key_spki`` is DG15's SubjectPublicKeyInfo exactly as the card stores it
    (EC keys may spell brainpool curves out as explicit parameters: ``edge.protocol.keys.load_public_key`` reads
    both); the terminal's ``sod_signature``/``dg_hashes`` checks already say whether DG15 is the issuer's.
    ``signature_algorithm`` is the AA algorithm OID DG14 names, which fixes the hash for ECDSA keys.
    """

    challenge: Annotated[Base64Url, Field(min_length=CHALLENGE_LENGTH, max_length=CHALLENGE_LENGTH),
                         _base64url_schema(CHALLENGE_LENGTH, CHALLENGE_LENGTH)]
    signature: Annotated[Base64Url, Field(min_length=1, max_length=MAX_AA_SIGNATURE_BYTES),
                         _base64url_schema(1, MAX_AA_SIGNATURE_BYTES)]
    public_key_spki: Annotated[Base64Url, Field(min_length=1, max_length=MAX_AA_KEY_BYTES),
                               _base64url_schema(1, MAX_AA_KEY_BYTES)]
    signature_algorithm: str | None = Field(default=None, max_length=64, pattern=r"^[0-2](\.[0-9]+)+$")

    @classmethod
    def for_office(cls, result: ActiveAuthResult, dg15: Dg15 | None,
                   office_challenge: bytes | None) -> ActiveAuthEvidence | None:  # fmt: skip
        """The evidence when the chip answered the office's challenge; None otherwise (nothing to prove to it)."""
        if office_challenge is None or dg15 is None or result.signature is None or result.challenge != office_challenge:
            return None
        try:
            return cls(challenge=result.challenge, signature=result.signature, public_key_spki=dg15.spki_der,
                       signature_algorithm=result.signature_algorithm_oid)  # fmt: skip
        except ValueError:  # a hostile chip's oversized answer or key: the result goes out without evidence
            return None


#: Largest file of each kind a result carries as read (``chip_files``), in bytes. Real CCCD files are far smaller
#: (EF.COM ~40, DG1 ~95, DG13 ~1 KB, DG14 < 1 KB, DG15 < 400, EF.SOD 2-5 KB, DG2 5-25 KB); the caps bound a hostile
#: chip's files, and together keep the largest encrypted result under the office's 1 MiB per message (README,
#: "Result size": ~590 KB at every cap). DG2's cap is the citizen photo's (``photo_jpeg_b64``: 200,000 base64
#: characters = 150,000 bytes) with room for its ISO 19794-5 headers.
MAX_CHIP_FILE_BYTES: dict[str, int] = {"COM": 512, "DG1": 512, "DG2": 160 * 1024, "DG13": 16 * 1024,
                                       "DG14": 8 * 1024, "DG15": 4 * 1024, "SOD": 32 * 1024}  # fmt: skip
ComBytes = Annotated[Base64Url, Field(min_length=1, max_length=MAX_CHIP_FILE_BYTES["COM"]),
                     _base64url_schema(1, MAX_CHIP_FILE_BYTES["COM"])]
Dg1Bytes = Annotated[Base64Url, Field(min_length=1, max_length=MAX_CHIP_FILE_BYTES["DG1"]),
                     _base64url_schema(1, MAX_CHIP_FILE_BYTES["DG1"])]
Dg2Bytes = Annotated[Base64Url, Field(min_length=1, max_length=MAX_CHIP_FILE_BYTES["DG2"]),
                     _base64url_schema(1, MAX_CHIP_FILE_BYTES["DG2"])]
Dg13Bytes = Annotated[Base64Url, Field(min_length=1, max_length=MAX_CHIP_FILE_BYTES["DG13"]),
                      _base64url_schema(1, MAX_CHIP_FILE_BYTES["DG13"])]
Dg14Bytes = Annotated[Base64Url, Field(min_length=1, max_length=MAX_CHIP_FILE_BYTES["DG14"]),
                      _base64url_schema(1, MAX_CHIP_FILE_BYTES["DG14"])]
Dg15Bytes = Annotated[Base64Url, Field(min_length=1, max_length=MAX_CHIP_FILE_BYTES["DG15"]),
                      _base64url_schema(1, MAX_CHIP_FILE_BYTES["DG15"])]
SodBytes = Annotated[Base64Url, Field(min_length=1, max_length=MAX_CHIP_FILE_BYTES["SOD"]),
                     _base64url_schema(1, MAX_CHIP_FILE_BYTES["SOD"])]


class ChipFiles(_Doc):
    """The chip's own files, byte for byte as read (base64url), for the office to forward to the national identity
    authentication service through its provider, which takes COM, DG1, DG2, DG13, DG14 and DG15 (since version 3,
    ``online_check`` only, and only encrypted to the ward: ``edge.protocol.procedures``).

    EF.SOD is there so that anyone can check, as the terminal did (``dg_hashes``), that each data group is what the
    issuer signed; EF.COM is no evidence (the SOD does not cover it). DG2, the face, is there only when the read
    request asked for the photo. A file the card does not have is absent.
    """

    com: ComBytes | None = None
    dg1: Dg1Bytes | None = None
    dg2: Dg2Bytes | None = None
    dg13: Dg13Bytes | None = None
    dg14: Dg14Bytes | None = None
    dg15: Dg15Bytes | None = None
    sod: SodBytes

    def by_name(self) -> dict[str, bytes]:
        """The files present, by LDS name (``COM``, ``DG1``... ``SOD``)."""
        return {name: value for name in CHIP_FILE_NAMES if (value := getattr(self, name.lower())) is not None}

    @classmethod
    def of(cls, files: Mapping[str, bytes], wanted: Iterable[str]) -> ChipFiles | str:
        """The ``wanted`` files among ``files`` (LDS names), or why they cannot travel: no EF.SOD, or a file over its
        cap in :data:`MAX_CHIP_FILE_BYTES` (a hostile chip's; the message names sizes, never content)."""
        kept = {name: files[name] for name in CHIP_FILE_NAMES if name in wanted and name in files}
        if "SOD" not in kept:
            return "EF.SOD was not read, so the chip's files cannot be checked by anyone"
        for name, content in kept.items():
            if len(content) > MAX_CHIP_FILE_BYTES[name]:
                return f"{name} is {len(content)} bytes, more than the {MAX_CHIP_FILE_BYTES[name]} a result carries"
        return cls.model_validate({name.lower(): content for name, content in kept.items()})


#: A consent reference: the procedure software's own record id, printable ASCII without spaces. Never the citizen's
#: ID number or name: the reference travels in every result.
CONSENT_REF_PATTERN = r"^[\x21-\x7e]{1,128}$"
MAX_CONSENT_REF_CHARS = 128


class Processing(_Doc):
    """Why the card was read and on what basis (since version 3): the profile's purpose and legal basis as the
    terminal declared them (``edge.protocol.procedures``), and, when the office's ``read_request`` gave one, the
    reference of the consent record the procedure software keeps."""

    purpose: str = Field(min_length=1, max_length=500)
    legal_basis: str = Field(min_length=1, max_length=1000)
    consent_ref: str | None = Field(default=None, max_length=MAX_CONSENT_REF_CHARS, pattern=CONSENT_REF_PATTERN)

    @classmethod
    def of(cls, profile: ProcedureProfile, consent_ref: str | None = None) -> Processing:
        rules = PROCEDURES[profile]
        return cls(purpose=rules.purpose, legal_basis=rules.legal_basis, consent_ref=consent_ref)


class ClockEvidence(_Doc):
    """How far the terminal could trust its clock at this read (since version 3; ``edge.protocol.clock``).

    ``synchronised``: its time came from the kernel's NTP state (``ntp``) or from a time the office signed,
    carried forward with the monotonic clock (``office``); then ``evidence_time`` is that trusted time at the read
    (equal to ``completed_at``). Not synchronised (``none``): the date checks were not performed, there is no
    ``evidence_time``, and ``completed_at`` is only the system clock's word raised to ``floor``, a time that had
    passed for certain (the read happened after it). The office judges the read's age by ``evidence_time`` when
    present, else by when it received the result, never by a ``completed_at`` the terminal could not trust.
    """

    synchronised: bool
    source: ClockSource
    evidence_time: datetime | None = None
    floor: datetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ClockEvidence:
        if self.synchronised != (self.source != "none"):
            raise ValueError(f"clock source {self.source} contradicts synchronised={self.synchronised}")
        if (self.evidence_time is not None) != self.synchronised:
            raise ValueError("evidence_time is present exactly when the clock is synchronised")
        return self

    @classmethod
    def of(cls, evidence: TimeEvidence) -> ClockEvidence:
        return cls(synchronised=evidence.synchronised, source=evidence.source, evidence_time=evidence.evidence_time,
                   floor=evidence.floor)  # fmt: skip


class ResultDocument(_Doc):
    """What the office receives (inside a signed JWS, optionally a JWE)."""

    schema_version: Literal[1, 2, 3] = SCHEMA_VERSION
    terminal_id: str = Field(min_length=1, max_length=64)
    ward_code: str = Field(min_length=1, max_length=16)
    procedure_profile: ProcedureProfile
    completed_at: datetime
    request_id: str | None = Field(default=None, max_length=64)  # jti of the office's read_request, if any
    verdict: Verdict
    checks: tuple[Check, ...]
    citizen: CitizenData | None = None  # None when the read failed before any identity data was available
    qr: QrUsage
    timing: ReadTiming
    active_auth: ActiveAuthEvidence | None = None  # since version 2
    clock: ClockEvidence | None = None  # since version 3
    processing: Processing | None = None  # since version 3
    chip_files: ChipFiles | None = None  # since version 3, online_check only

    @model_validator(mode="after")
    def _verdict_matches_checks(self) -> ResultDocument:
        # A last guard: a "verified" document with a failed check would be a lie, whoever computed it.
        statuses = {check.status for check in self.checks}
        allowed = _V3_VERDICTS if self.schema_version >= 3 else _LEGACY_VERDICTS
        if self.verdict not in allowed:
            raise ValueError(f"verdict {self.verdict.value} does not exist in schema version {self.schema_version}")
        if self.schema_version < 3 and CheckStatus.KNOWN_SIGNER in statuses:
            raise ValueError(f"check status known_signer does not exist in schema version {self.schema_version}")
        if self.verdict is not Verdict.FAILED and CheckStatus.FAILED in statuses:
            raise ValueError(f"verdict {self.verdict.value} contradicts a failed check")
        if self.verdict is Verdict.VERIFIED and statuses & {CheckStatus.ISSUER_NOT_TRUSTED, CheckStatus.KNOWN_SIGNER}:
            raise ValueError("verdict verified needs a CSCA path, and the checks say there is none")
        if self.verdict is Verdict.VERIFIED_KNOWN_SIGNER and CheckStatus.KNOWN_SIGNER not in statuses:
            raise ValueError("verdict verified_known_signer needs a known_signer check")
        if self.verdict.proves_origin and CheckStatus.ISSUER_NOT_TRUSTED in statuses:
            raise ValueError(f"verdict {self.verdict.value} contradicts an unproven issuer")
        if self.verdict is not Verdict.FAILED and self.citizen is None:
            raise ValueError(f"verdict {self.verdict.value} needs citizen data")
        if self.active_auth is not None and self.schema_version < 2:
            raise ValueError("active_auth needs schema_version 2")
        if self.clock is not None and self.schema_version < 3:
            raise ValueError("clock needs schema_version 3")
        if self.citizen is not None and self.citizen.place_of_birth_registration is not None \
                and self.schema_version < 3:  # fmt: skip
            raise ValueError("place_of_birth_registration needs schema_version 3")
        if any(check.reason == CLOCK_NOT_SYNCHRONISED for check in self.checks) and (
                self.clock is None or self.clock.synchronised):
            raise ValueError("a check left undone for the clock needs a clock that says it is not synchronised")
        self._holds_only_what_its_profile_declares()
        return self

    def _holds_only_what_its_profile_declares(self) -> None:
        """Minimisation, checked wherever a document is read (the office too): no field or file beyond the profile's
        declaration (``edge.protocol.procedures``), and what version 3 introduced only in version 3."""
        profile, rules = self.procedure_profile, PROCEDURES[self.procedure_profile]
        if self.schema_version < 3 and (profile is ProcedureProfile.ONLINE_CHECK or self.processing is not None
                                        or self.chip_files is not None):  # fmt: skip
            raise ValueError("online_check, processing and chip_files need schema_version 3")
        if self.citizen is not None:
            present = {name for name, value in self.citizen if value is not None}
            photo = {"photo_jpeg_b64"} if self.schema_version < 3 or photo_allowed(profile) else set()
            if extra := present - PROFILE_FIELDS[profile] - photo:
                raise ValueError(f"profile {profile.value} does not declare {sorted(extra)}")
        if self.chip_files is not None and (extra := set(self.chip_files.by_name()) - rules.chip_files):
            raise ValueError(f"profile {profile.value} carries none of the chip's files {sorted(extra)}")

    def to_json(self) -> bytes:
        """Compact JSON without nulls: the smallest message that still validates against the schema."""
        return self.model_dump_json(exclude_none=True).encode()


def filter_citizen(citizen: CitizenData, profile: ProcedureProfile, *, include_photo: bool = False) -> CitizenData:
    """Keep only the fields ``profile`` allows (plus the photo when explicitly requested and the profile needs it)."""
    allowed = PROFILE_FIELDS[profile] | ({"photo_jpeg_b64"} if include_photo and photo_allowed(profile) else set())
    kept = {name: value for name, value in citizen.model_dump().items() if name in allowed}
    return CitizenData.model_validate(kept)


def make_result(
    *,
    terminal_id: str,
    ward_code: str,
    profile: ProcedureProfile,
    verdict: Verdict,
    checks: Sequence[Check],
    citizen: CitizenData | None,
    qr: QrUsage,
    timing: ReadTiming,
    completed_at: datetime,
    include_photo: bool = False,
    request_id: str | None = None,
    active_auth: ActiveAuthEvidence | None = None,
    clock: ClockEvidence | None = None,
    consent_ref: str | None = None,
    files: Mapping[str, bytes] | None = None,
) -> ResultDocument:
    """Build the document, applying the profile filter: the only way citizen data should enter a result.

    ``files``: every file the chip read, by LDS name (``ChipRead.files``); only a profile that carries the chip's
    files takes them, and DG2 only with ``include_photo``. Files that cannot travel (module ``ChipFiles.of``) leave
    the document without them and a ``chip_files`` check saying why."""
    rules = PROCEDURES[profile]
    filtered = filter_citizen(citizen, profile, include_photo=include_photo) if citizen is not None else None
    chip_files: ChipFiles | None = None
    checks = tuple(checks)
    if rules.chip_files and files is not None:
        wanted = rules.chip_files - (set() if include_photo and rules.photo else {"DG2"})
        carried = ChipFiles.of(files, wanted)
        if isinstance(carried, str):
            checks += (Check(name="chip_files", status=CheckStatus.NOT_PERFORMED,
                             reason=f"the chip's files are not carried: {carried}"),)  # fmt: skip
        else:
            chip_files = carried
    return ResultDocument(
        terminal_id=terminal_id,
        ward_code=ward_code,
        procedure_profile=profile,
        completed_at=completed_at,
        request_id=request_id,
        verdict=verdict,
        checks=checks,
        citizen=filtered,
        qr=qr,
        timing=timing,
        active_auth=active_auth,
        clock=clock,
        processing=Processing.of(profile, consent_ref),
        chip_files=chip_files,
    )


def result_json_schema(profile: ProcedureProfile | None = None) -> dict[str, Any]:
    """The JSON Schema the office validates against (``edge/schemas/result.schema.json``); with ``profile``, that
    schema narrowed to what the profile declares (version 3): its citizen fields (and the photo where it needs the
    face), its chip files or none, so that a document holding anything more fails it."""
    schema = ResultDocument.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://cccd-edge.invalid/schemas/result.schema.json"
    if profile is None:
        return schema
    rules, defs, properties = PROCEDURES[profile], schema["$defs"], schema["properties"]
    schema["$id"] = f"https://cccd-edge.invalid/schemas/result-{profile.value}.schema.json"
    properties["schema_version"] = {"const": SCHEMA_VERSION}
    properties["procedure_profile"] = {"const": profile.value}
    citizen = PROFILE_FIELDS[profile] | ({"photo_jpeg_b64"} if photo_allowed(profile) else set())
    defs["CitizenData"]["properties"] = {k: v for k, v in defs["CitizenData"]["properties"].items() if k in citizen}
    if rules.chip_files:
        files = {name.lower() for name in rules.chip_files}
        defs["ChipFiles"]["properties"] = {k: v for k, v in defs["ChipFiles"]["properties"].items() if k in files}
    else:
        del properties["chip_files"]
        del defs["ChipFiles"]
    return schema
