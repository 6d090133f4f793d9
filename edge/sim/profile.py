"""Card profiles: who the synthetic citizen is, how their card behaves, and which forgery it carries.

Profiles are TOML files in ``edge/sim/profiles/`` (or any path) validated by pydantic, so a typo in a test card
fails loudly instead of producing a subtly different card. All people in them are synthetic. A profile may start
from another with ``based_on = "default"`` (a bundled name, or a path relative to the file): its tables are merged
key by key over the base's, so a quirk profile is a few lines and never a second copy of a person.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from edge.errors import ConfigError
from edge.protocol.card_expiry import expiry_date
from edge.sim.hostile import HostileCurve
from edge.sim.model import Bitrate, LeRefusal, Quirks, SfiRefusal

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(_Strict):
    id_number: str = Field(pattern=r"^[0-9]{12}$")  # not \d: pydantic's regex takes any Unicode digit
    full_name: str
    date_of_birth: dt.date
    sex: Literal["Nam", "Nữ"]
    nationality: str = "Việt Nam"
    ethnicity: str = "Kinh"
    religion: str = "Không"
    place_of_origin: str
    place_of_residence: str
    identifying_marks: str | None = None  # the 2024 card no longer carries them
    date_of_issue: dt.date
    #: Omitted: computed by the renewal rule. "none": the card never expires (MRZ 991231).
    date_of_expiry: dt.date | Literal["none"] | None = None
    father: str | None = None
    mother: str | None = None
    spouse: str | None = None
    old_id_number: str | None = Field(default=None, pattern=r"^([0-9]{9}|[0-9]{12})$")
    #: 2024 cards: a personal ID number the holder had before (cancelled), printed in the QR and kept in DG13.
    cancelled_id_number: str | None = Field(default=None, pattern=r"^[0-9]{12}$")
    #: 2024 cards print it instead of the place of origin; the chip's field for it is unconfirmed (edge.sim.builder).
    place_of_birth_registration: str | None = None

    @property
    def expiry(self) -> dt.date | None:
        """The effective expiry (None = never expires)."""
        if self.date_of_expiry == "none":
            return None
        if isinstance(self.date_of_expiry, dt.date):
            return self.date_of_expiry
        return expiry_date(self.date_of_birth, self.date_of_issue)


class CardSettings(_Strict):
    atr: str = "3B8880010000000000718100F9"  # hex; a plausible contactless ATR
    pace_parameter_id: int = Field(default=13, ge=0, le=127)
    aa_key: Literal["rsa", "ec", "none"] = "rsa"
    aa_rsa_bits: Literal[1024, 2048] = 1024
    dg2_size: int = Field(default=12_000, ge=1_000, le=200_000)  # approximate DG2 size in bytes
    sod_hash: Literal["sha1", "sha224", "sha256", "sha384", "sha512"] = "sha256"

    @field_validator("atr")
    @classmethod
    def _hex(cls, value: str) -> str:
        bytes.fromhex(value)
        return value


class QuirkSettings(_Strict):
    """Any subset of :class:`edge.sim.model.Quirks`; unset fields keep the well-behaved default.

    Strict (no 1 for true, no "160" for 160): these come from hand-written TOML and from ``--quirk`` on the command
    line, where a silently coerced value would run a different card than the one asked for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_le: int | None = Field(default=None, ge=1, le=65536)
    le_refusal_sw: LeRefusal | None = None
    extended_length: bool | None = None
    eof_warning: bool | None = None
    eof_warning_on_last_chunk: bool | None = None
    naked_errors: bool | None = None
    naked_errors_counted: bool | None = None
    bac_supported: bool | None = None
    pace_supported: bool | None = None
    plain_reads: bool | None = None
    remove_after_apdus: int | None = Field(default=None, ge=0)
    answer_delay_ms: float | None = Field(default=None, ge=0)
    bitrate_kbps: Bitrate | None = None
    apdu_overhead_ms: float | None = Field(default=None, ge=0)
    session_lost_after_apdus: int | None = Field(default=None, ge=0)
    response_chunk: int | None = Field(default=None, ge=1, le=65536)
    wrong_le_hint: bool | None = None
    no_sfi: bool | None = None
    sfi_refusal_sw: SfiRefusal | None = None
    short_answer_once: int | None = Field(default=None, ge=1, le=65535)
    endless_get_response: bool | None = None
    wrong_le_loop: bool | None = None
    stall_after_apdus: int | None = Field(default=None, ge=0)
    stall_seconds: float | None = Field(default=None, ge=0)

    @field_validator("le_refusal_sw", "sfi_refusal_sw", mode="before")
    @classmethod
    def _status_word(cls, value: object, info: ValidationInfo) -> object:
        """Name the allowed status words in hex (pydantic's own message would give them in decimal)."""
        allowed = get_args(LeRefusal if info.field_name == "le_refusal_sw" else SfiRefusal)
        if value is not None and value not in allowed:
            raise ValueError(f"{info.field_name} must be one of {', '.join(f'0x{sw:04X}' for sw in allowed)}")
        return value

    @property
    def any(self) -> bool:
        return bool(self.model_dump(exclude_none=True))

    def merged(self, overrides: QuirkSettings) -> QuirkSettings:
        """These quirks with ``overrides``' set fields on top (run-time quirks over a profile's own)."""
        return QuirkSettings.model_validate(
            {**self.model_dump(exclude_none=True), **overrides.model_dump(exclude_none=True)}
        )

    def to_quirks(self) -> Quirks:
        return Quirks(**self.model_dump(exclude_none=True))


def parse_quirk_assignments(assignments: Iterable[str]) -> QuirkSettings:
    """``KEY=VALUE`` pairs as ``cccd-edge sim card --quirk`` takes them, VALUE in TOML syntax (``0xA0``, ``true``).

    Raises :class:`ConfigError` with a one-line message naming the offending pair.
    """
    hint = "--quirk KEY=VALUE with a TOML value, e.g. max_le=0xA0 or naked_errors=true"
    values: dict[str, Any] = {}
    given: dict[str, str] = {}  # quirk -> the assignment as typed, for the error message
    for assignment in assignments:
        key, equals, raw = (part.strip() for part in assignment.partition("="))
        if not equals:
            raise ConfigError("expected KEY=VALUE", key=f"--quirk {assignment!r}", hint=hint)
        if key not in QuirkSettings.model_fields:
            known = ", ".join(QuirkSettings.model_fields)
            raise ConfigError(f"not a known quirk (known: {known})", key=f"--quirk {assignment!r}", hint=hint)
        try:
            parsed = tomllib.loads(f"value = {raw}")
        except tomllib.TOMLDecodeError:
            parsed = {}
        if set(parsed) != {"value"}:
            raise ConfigError("the value is not a TOML number or boolean", key=f"--quirk {assignment!r}", hint=hint)
        values[key], given[key] = parsed["value"], assignment
    try:
        return QuirkSettings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        assignment = given.get(str(error["loc"][0]) if error["loc"] else "", "")
        raise ConfigError(error["msg"], key=f"--quirk {assignment!r}", hint=hint) from exc


class ForgerySettings(_Strict):
    edit_dg13_after_signing: bool = False  # DG13 altered after the SOD was signed: hash mismatch
    edit_dg13_before_signing: bool = False  # DG13 altered, then the SOD signed over it: hashes match, the signer not
    rogue_ds: bool = False  # DS claims the test CSCA as issuer but another key signed it
    #: With rogue_ds: the DS also copies the CSCA's key identifier, so the chain is broken, not merely untrusted.
    rogue_ds_claims_csca_key: bool = False
    #: With rogue_ds: the DS carries no authority key identifier at all (nothing for a verifier to filter on).
    rogue_ds_without_key_id: bool = False
    #: The genuine DS certificate with one bit of its authority key identifier flipped (its CSCA signature breaks).
    flipped_ds_key_id: bool = False
    expired_ds: bool = False  # DS certificate validity ended in 2021
    untrusted_csca: bool = False  # a valid chain to a CSCA that no trust store holds
    clone_keys: bool = False  # chip keys differ from DG14/DG15: CA and AA fail, PA passes
    dg1_dg13_mismatch: bool = False  # DG1 and DG13 disagree on the date of birth, both signed
    #: DG14's chip authentication key on an explicit curve a hostile chip picks to stall the terminal (an order of
    #: 1, a 4253-bit field: edge.sim.hostile), signed into the SOD like any DG14.
    hostile_dg14_curve: HostileCurve | None = None
    #: With hostile_dg14_curve: that DG14 replaces the signed one after signing, so EF.SOD does not list its hash.
    hostile_dg14_after_signing: bool = False

    @property
    def any(self) -> bool:
        return any(self.model_dump().values())

    @model_validator(mode="after")
    def _one_dg13_edit(self) -> ForgerySettings:
        if self.edit_dg13_after_signing and self.edit_dg13_before_signing:
            raise ValueError("DG13 is edited either before or after the SOD is signed, not both")
        if (self.rogue_ds_claims_csca_key or self.rogue_ds_without_key_id) and not self.rogue_ds:
            raise ValueError("rogue_ds_claims_csca_key and rogue_ds_without_key_id need rogue_ds")
        if self.rogue_ds_claims_csca_key and self.rogue_ds_without_key_id:
            raise ValueError("a rogue DS either copies the CSCA's key identifier or carries none, not both")
        if self.hostile_dg14_after_signing and self.hostile_dg14_curve is None:
            raise ValueError("hostile_dg14_after_signing needs hostile_dg14_curve")
        return self


#: The :class:`Person` fields a card's QR prints, hence the only ones a QR override may change.
QR_PRINTED_FIELDS = frozenset({
    "id_number", "old_id_number", "full_name", "date_of_birth", "sex", "place_of_residence", "date_of_issue",
    "father", "mother", "cancelled_id_number",
})


def qr_person(person: Person, overrides: Mapping[str, object]) -> Person:
    """``person`` as the QR shows them, validated like a profile so a typo fails loudly instead of printing junk."""
    for name in sorted(overrides):
        if name not in QR_PRINTED_FIELDS:
            raise ConfigError("not a field the card QR prints", key=f"qr_overrides.{name}")
    try:
        return Person.model_validate({**person.model_dump(), **overrides})
    except ValidationError as exc:
        raise ConfigError(str(exc), key="qr_overrides") from None


class CardProfile(_Strict):
    name: str
    description: str = ""
    person: Person
    card: CardSettings = CardSettings()
    quirks: QuirkSettings = QuirkSettings()
    forgery: ForgerySettings = ForgerySettings()
    #: QR fields printed differently from the chip (a doctored sticker); checked when the profile loads.
    qr_overrides: dict[str, str | dt.date] = {}

    @model_validator(mode="after")
    def _overrides_print(self) -> CardProfile:
        self.qr_person  # noqa: B018  # a typo in [qr_overrides] fails at load, not when a QR is drawn
        return self

    @property
    def qr_person(self) -> Person:
        """The person as the card's QR shows them (the chip's ``person`` unless ``qr_overrides`` differ)."""
        return qr_person(self.person, self.qr_overrides) if self.qr_overrides else self.person


def list_profiles() -> list[str]:
    """Names of the bundled profiles."""
    return sorted(path.stem for path in PROFILE_DIR.glob("*.toml"))


def _profile_path(name_or_path: str | Path, relative_to: Path) -> Path:
    """A bundled profile's file by name, or a TOML path (relative ones from ``relative_to``)."""
    if isinstance(name_or_path, str) and not name_or_path.endswith(".toml") and "/" not in name_or_path:
        return PROFILE_DIR / f"{name_or_path}.toml"
    return relative_to / name_or_path


def _profile_data(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The profile's TOML with its ``based_on`` chain merged in (tables key by key; a base's name and description
    describe the base, so they are not inherited)."""
    if not path.is_file():
        raise ConfigError(f"no such card profile (known: {', '.join(list_profiles())})", key=str(path))
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    base_name = data.pop("based_on", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise ConfigError("based_on names a profile", key=str(path))
    base_path = _profile_path(base_name, path.parent).resolve()
    if base_path in seen:
        raise ConfigError("profiles based on each other", key=str(path))
    base = _profile_data(base_path, (*seen, path.resolve()))
    base.pop("name", None)
    base.pop("description", None)
    for key, value in data.items():
        inherited = base.get(key)
        base[key] = {**inherited, **value} if isinstance(inherited, dict) and isinstance(value, dict) else value
    return base


def load_profile(name_or_path: str | Path) -> CardProfile:
    """A bundled profile by name, or a TOML file by path; the profile name defaults to the file's stem."""
    candidate = _profile_path(name_or_path, Path.cwd())
    try:
        data = _profile_data(candidate)
        data.setdefault("name", candidate.stem)
        return CardProfile.model_validate(data)
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(str(exc), key=str(candidate)) from exc
