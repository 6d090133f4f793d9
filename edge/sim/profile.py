"""Card profiles: who the synthetic citizen is, how their card behaves, and which forgery it carries.

Profiles are TOML files in ``edge/sim/profiles/`` (or any path) validated by pydantic, so a typo in a test card
fails loudly instead of producing a subtly different card. All people in them are synthetic.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.errors import ConfigError
from edge.protocol.card_expiry import expiry_date
from edge.sim.model import Quirks

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(_Strict):
    id_number: str = Field(pattern=r"^\d{12}$")
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
    old_id_number: str | None = Field(default=None, pattern=r"^(\d{9}|\d{12})$")

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
    """Any subset of :class:`edge.sim.model.Quirks`; unset fields keep the well-behaved default."""

    max_le: int | None = None
    extended_length: bool | None = None
    eof_warning: bool | None = None
    naked_errors: bool | None = None
    bac_supported: bool | None = None
    pace_supported: bool | None = None
    plain_reads: bool | None = None
    remove_after_apdus: int | None = None
    answer_delay_ms: float | None = None
    bitrate_kbps: int | None = None
    apdu_overhead_ms: float | None = None
    session_lost_after_apdus: int | None = None

    def to_quirks(self) -> Quirks:
        return Quirks(**self.model_dump(exclude_none=True))


class ForgerySettings(_Strict):
    edit_dg13_after_signing: bool = False  # DG13 altered after the SOD was signed: hash mismatch
    edit_dg13_before_signing: bool = False  # DG13 altered, then the SOD signed over it: hashes match, the signer not
    rogue_ds: bool = False  # DS claims the test CSCA as issuer but another key signed it
    #: With rogue_ds: the DS also copies the CSCA's key identifier, so the chain is broken, not merely untrusted.
    rogue_ds_claims_csca_key: bool = False
    expired_ds: bool = False  # DS certificate validity ended in 2021
    untrusted_csca: bool = False  # a valid chain to a CSCA that no trust store holds
    clone_keys: bool = False  # chip keys differ from DG14/DG15: CA and AA fail, PA passes
    dg1_dg13_mismatch: bool = False  # DG1 and DG13 disagree on the date of birth, both signed

    @property
    def any(self) -> bool:
        return any(self.model_dump().values())

    @model_validator(mode="after")
    def _one_dg13_edit(self) -> ForgerySettings:
        if self.edit_dg13_after_signing and self.edit_dg13_before_signing:
            raise ValueError("DG13 is edited either before or after the SOD is signed, not both")
        if self.rogue_ds_claims_csca_key and not self.rogue_ds:
            raise ValueError("rogue_ds_claims_csca_key needs rogue_ds")
        return self


class CardProfile(_Strict):
    name: str
    description: str = ""
    person: Person
    card: CardSettings = CardSettings()
    quirks: QuirkSettings = QuirkSettings()
    forgery: ForgerySettings = ForgerySettings()


def list_profiles() -> list[str]:
    """Names of the bundled profiles."""
    return sorted(path.stem for path in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> CardProfile:
    """A bundled profile by name, or a TOML file by path; the profile name defaults to the file's stem."""
    candidate = Path(name_or_path)
    if isinstance(name_or_path, str) and candidate.suffix != ".toml" and "/" not in name_or_path:
        candidate = PROFILE_DIR / f"{name_or_path}.toml"
    if not candidate.is_file():
        raise ConfigError(f"no such card profile (known: {', '.join(list_profiles())})", key=str(name_or_path))
    try:
        data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        data.setdefault("name", candidate.stem)
        return CardProfile.model_validate(data)
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(str(exc), key=str(candidate)) from exc
