"""Procedure profiles (issue 17 parts 3, 4, 6): the table, what the chip is asked under each, and minimisation proven.

Minimisation: every profile's result, built from the simulator's cards through the real read (in process: the
virtual chip, no pcscd), ``verify_chip`` and ``make_result``, validates against that profile's narrowed JSON Schema
and holds only what the profile declares; sealed with JWE, no personal value of the card is in the token in clear
or in base64. The stack test (tests/stack/test_terminal.py) does the same through pcscd, mosquitto and the office.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from edge import signers
from edge.office.store import MAX_RESULT_BYTES
from edge.protocol import jose
from edge.protocol.access.policy import CanKey
from edge.protocol.chip import DEFAULT_DATA_GROUPS, ChipRead, read_chip
from edge.protocol.lds.sod import parse_sod
from edge.protocol.procedures import CHIP_FILE_NAMES, PROCEDURES, ProcedureProfile, procedure
from edge.protocol.result import (
    MAX_AA_KEY_BYTES,
    MAX_AA_SIGNATURE_BYTES,
    MAX_CHIP_FILE_BYTES,
    PROFILE_FIELDS,
    ActiveAuthEvidence,
    Check,
    ChipFiles,
    CitizenData,
    Processing,
    QrUsage,
    ReadTiming,
    ResultDocument,
    citizen_fields,
    citizen_from,
    make_result,
    photo_allowed,
    result_json_schema,
)
from edge.protocol.verify.card import verify_chip
from edge.protocol.verify.checks import CheckStatus, Verdict
from edge.protocol.verify.passive import passive_authentication
from edge.protocol.verify.trust import TrustStore
from edge.sim.builder import build_card
from edge.sim.card import VirtualCard
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import SimCardSpec
from edge.sim.pki import SimPki, load_or_create_pki
from edge.sim.profile import load_profile
from tests.support.results import legacy, sample_result

README = Path(__file__).resolve().parents[2] / "README.md"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
#: The simulator's people: a 2021 CCCD, a 2024 thẻ căn cước, a married woman (spouse), a child, a long address.
CARDS = ("default", "card2024", "married", "child", "long-address")


# --- the table ---------------------------------------------------------------------------------------------------


def test_every_profile_names_its_purpose_legal_basis_and_retention() -> None:
    assert set(PROCEDURES) == set(ProcedureProfile)
    for profile, rules in PROCEDURES.items():
        assert rules.profile is profile
        Processing.of(profile, "HS-2026-000123")  # both texts fit the document's limits
        assert "91/2025/QH15" in rules.legal_basis  # the Personal Data Protection Law, in force since 2026-01-01
        assert 0 < rules.retention_days <= 90
    assert "104/2022" in procedure(ProcedureProfile.RESIDENCE).legal_basis
    assert "69/2024" in procedure(ProcedureProfile.ONLINE_CHECK).legal_basis


def test_what_each_profile_may_carry() -> None:
    assert PROFILE_FIELDS[ProcedureProfile.FULL] == set(CitizenData.model_fields) - {"photo_jpeg_b64"}
    assert PROFILE_FIELDS[ProcedureProfile.RESIDENCE] == PROFILE_FIELDS[ProcedureProfile.IDENTITY] | {
        "place_of_residence"}
    assert PROFILE_FIELDS[ProcedureProfile.ONLINE_CHECK] == {"id_number", "full_name", "date_of_birth"}
    # Only online_check carries the chip's files, all of those the national service takes, and only encrypted.
    assert {p for p, rules in PROCEDURES.items() if rules.chip_files} == {ProcedureProfile.ONLINE_CHECK}
    assert {p for p, rules in PROCEDURES.items() if rules.needs_encryption} == {ProcedureProfile.ONLINE_CHECK}
    assert procedure(ProcedureProfile.ONLINE_CHECK).chip_files == set(CHIP_FILE_NAMES)
    # The face: never for residence; as the citizen's photo for identity and full; as DG2 for online_check.
    assert {p for p in ProcedureProfile if procedure(p).photo} == set(ProcedureProfile) - {ProcedureProfile.RESIDENCE}
    assert {p for p in ProcedureProfile if photo_allowed(p)} == {ProcedureProfile.IDENTITY, ProcedureProfile.FULL}


@pytest.mark.parametrize("profile", list(ProcedureProfile))
@pytest.mark.parametrize("asked", [False, True])
def test_the_chip_is_asked_only_what_the_profile_needs(profile: ProcedureProfile, asked: bool) -> None:
    request = procedure(profile).read_request(CanKey("123456"), photo_requested=asked)
    assert request.data_groups == DEFAULT_DATA_GROUPS
    assert request.want_photo is (asked and profile is not ProcedureProfile.RESIDENCE)  # needed AND asked
    assert request.read_com is (profile is ProcedureProfile.ONLINE_CHECK)


def profile_table_markdown() -> str:
    """The README's table of profiles, rendered from :data:`PROCEDURES` so the two cannot drift."""
    rows = ["| profile | citizen fields | photo (DG2) | chip's files | purpose | legal basis | retention |",
            "|---|---|---|---|---|---|---|"]
    for profile, rules in PROCEDURES.items():
        fields = ", ".join(f"`{name}`" for name in sorted(rules.citizen_fields))
        photo = ("never read" if not rules.photo else "as DG2, on request" if rules.photo_in_files
                 else "on request")  # fmt: skip
        files = ", ".join(name for name in CHIP_FILE_NAMES if name in rules.chip_files) or "-"
        if rules.needs_encryption:
            files += " (JWE required)"
        rows.append(f"| `{profile.value}` | {fields} | {photo} | {files} | {rules.purpose} | {rules.legal_basis} | "
                    f"{rules.retention_days} days |")
    return "\n".join(rows) + "\n"


def test_readme_has_the_table_of_profiles() -> None:
    assert profile_table_markdown() in README.read_text(encoding="utf-8"), (
        "README's table of profiles is stale:\n" + profile_table_markdown())


# --- results from the simulator's cards --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    return load_or_create_pki(tmp_path_factory.mktemp("sim-pki"))


@pytest.fixture(scope="module")
def specs(pki: SimPki) -> dict[str, SimCardSpec]:
    return {name: build_card(load_profile(name), pki_dir=pki.directory) for name in CARDS}


@pytest.fixture(scope="module")
def trust(pki: SimPki) -> TrustStore:
    return TrustStore.from_der([pki.csca.certificate.public_bytes(Encoding.DER)])


def read_as(spec: SimCardSpec, profile: ProcedureProfile, *, photo: bool) -> ChipRead:
    card = VirtualCard(spec, SimChipSecurity(spec.secrets, spec.quirks))
    card.power_on()
    return read_chip(card, procedure(profile).read_request(CanKey(spec.secrets.can), photo_requested=photo))


def result_of(read: ChipRead, trust: TrustStore, profile: ProcedureProfile, *, photo: bool,
              consent_ref: str | None = None) -> ResultDocument:  # fmt: skip
    """The document as the terminal builds it (``edge.daemon.tap.result_document``'s calls, without a QR)."""
    report = verify_chip(read, trust, now=NOW, qr=None)
    assert read.dg13 is not None
    citizen = citizen_from(read.dg13, photo_jpeg=read.dg2.image if read.dg2 is not None else None)
    return make_result(
        terminal_id="T-01", ward_code="26734", profile=profile, verdict=report.verdict,
        checks=[Check.of(check) for check in report.checks], citizen=citizen, qr=QrUsage(used=False),
        timing=ReadTiming(apdu_count=read.stats.apdus, read_ms=1), completed_at=report.verified_at,
        include_photo=photo, consent_ref=consent_ref, files=read.files,
    )  # fmt: skip


def _validator(profile: ProcedureProfile | None) -> Draft202012Validator:
    schema = result_json_schema(profile)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("card", CARDS)
@pytest.mark.parametrize("profile", list(ProcedureProfile))
@pytest.mark.parametrize("photo", [False, True])
def test_every_profiles_result_holds_only_what_it_declares(card: str, profile: ProcedureProfile, photo: bool,
                                                           specs: dict[str, SimCardSpec],
                                                           trust: TrustStore) -> None:  # fmt: skip
    rules = procedure(profile)
    read = read_as(specs[card], profile, photo=photo)
    assert (2 in read.data_groups) is (photo and rules.photo)  # the face is not even read unless needed and asked
    assert (read.com is not None) is (profile is ProcedureProfile.ONLINE_CHECK)
    document = result_of(read, trust, profile, photo=photo, consent_ref="HS-2026-000123")
    assert document.verdict is Verdict.VERIFIED
    wire = json.loads(document.to_json())
    assert list(_validator(profile).iter_errors(wire)) == []  # the profile's own, narrowed schema
    assert list(_validator(None).iter_errors(wire)) == []  # and the schema every office validates with
    citizen = set(wire["citizen"])
    assert citizen <= rules.citizen_fields | ({"photo_jpeg_b64"} if photo_allowed(profile) else set())
    assert ("photo_jpeg_b64" in citizen) is (photo and photo_allowed(profile))
    files = {name.upper() for name in wire.get("chip_files", {})}
    assert files <= rules.chip_files
    assert ("DG2" in files) is (photo and rules.photo_in_files)
    assert wire["processing"] == {"purpose": rules.purpose, "legal_basis": rules.legal_basis,
                                  "consent_ref": "HS-2026-000123"}
    for other in ProcedureProfile:  # a schema narrower than what the document holds refuses it
        narrower = not (citizen <= PROFILE_FIELDS[other] | ({"photo_jpeg_b64"} if photo_allowed(other) else set())
                        and files <= procedure(other).chip_files)
        assert bool(list(_validator(other).iter_errors(wire))) is (other is not profile)
        if narrower:
            with pytest.raises(ValidationError, match=r"does not declare|carries none"):
                ResultDocument.model_validate({**wire, "procedure_profile": other.value})


def test_online_check_carries_the_files_exactly_as_read_and_they_hash_to_the_sod(
        specs: dict[str, SimCardSpec], trust: TrustStore) -> None:  # fmt: skip
    read = read_as(specs["card2024"], ProcedureProfile.ONLINE_CHECK, photo=True)
    document = result_of(read, trust, ProcedureProfile.ONLINE_CHECK, photo=True)
    wire = ResultDocument.model_validate(json.loads(document.to_json()))  # as the office parses it
    assert wire.chip_files is not None
    files = wire.chip_files.by_name()
    assert set(files) == set(CHIP_FILE_NAMES)
    assert files == read.files
    groups = {int(name[2:]): content for name, content in files.items() if name.startswith("DG")}
    checks = {c.name: c.status for c in passive_authentication(parse_sod(files["SOD"]), groups, trust, NOW)}
    assert checks["dg_hashes"] is CheckStatus.PASSED
    assert checks["sod_signature"] is CheckStatus.PASSED
    assert "photo_jpeg_b64" not in json.loads(document.to_json())["citizen"]  # the face travels once, as DG2


def test_a_file_over_its_cap_leaves_the_result_without_files_and_says_so(
        specs: dict[str, SimCardSpec], trust: TrustStore) -> None:  # fmt: skip
    read = read_as(specs["default"], ProcedureProfile.ONLINE_CHECK, photo=False)
    hostile = read.files | {"DG13": b"\x6d" * (MAX_CHIP_FILE_BYTES["DG13"] + 1)}
    assert isinstance(ChipFiles.of(hostile, CHIP_FILE_NAMES), str)
    document = make_result(terminal_id="T-01", ward_code="26734", profile=ProcedureProfile.ONLINE_CHECK,
                           verdict=Verdict.VERIFIED, checks=[], citizen=sample_result().citizen,
                           qr=QrUsage(used=False), timing=ReadTiming(apdu_count=1, read_ms=1), completed_at=NOW,
                           files=hostile)  # fmt: skip
    assert document.chip_files is None
    (check,) = document.checks
    assert (check.name, check.status) == ("chip_files", CheckStatus.NOT_PERFORMED)
    assert f"DG13 is {MAX_CHIP_FILE_BYTES['DG13'] + 1} bytes" in check.reason
    assert ChipFiles.of({"DG1": b"x"}, CHIP_FILE_NAMES) == "EF.SOD was not read, so the chip's files cannot be " \
                                                           "checked by anyone"  # fmt: skip


def test_what_version_3_added_is_refused_in_older_documents_and_minimisation_holds_in_every_version() -> None:
    data = json.loads(sample_result(ProcedureProfile.IDENTITY).to_json())
    with pytest.raises(ValidationError, match="need schema_version 3"):
        ResultDocument.model_validate({**data, "schema_version": 2})  # processing
    with pytest.raises(ValidationError, match="need schema_version 3"):
        ResultDocument.model_validate({**legacy(data, 2), "procedure_profile": "online_check"})
    residence = json.loads(sample_result(ProcedureProfile.RESIDENCE).to_json())
    photo = {**residence["citizen"], "photo_jpeg_b64": "/9j/4AAQ"}
    with pytest.raises(ValidationError, match=r"residence does not declare \['photo_jpeg_b64'\]"):
        ResultDocument.model_validate({**residence, "citizen": photo})
    # A version 2 terminal sent the photo with any profile that was asked for it: still read as it was.
    assert ResultDocument.model_validate({**legacy(residence, 2), "citizen": photo}).citizen is not None
    for version in (1, 2, 3):
        wider = {**residence["citizen"], "father_name": "Nguyễn Văn Bình"}
        with pytest.raises(ValidationError, match="does not declare"):
            ResultDocument.model_validate({**(residence if version == 3 else legacy(residence, version)),
                                           "citizen": wider})
    files = {"sod": base64.urlsafe_b64encode(b"\x77\x03\x02\x01\x00").decode().rstrip("=")}
    with pytest.raises(ValidationError, match="carries none of the chip's files"):
        ResultDocument.model_validate({**residence, "chip_files": files})


def test_a_consent_reference_is_a_record_id_not_free_text() -> None:
    assert sample_result().processing == Processing.of(ProcedureProfile.IDENTITY)
    for ref in ("HS-2026-000123", "urn:uuid:5f4d8fbd-0000-4000-8000-000000000001", "x" * 128):
        assert Processing.of(ProcedureProfile.IDENTITY, ref).consent_ref == ref
    for bad in ("", "has space", "x" * 129, "Nguyễn", "a\nb"):
        with pytest.raises(ValidationError):
            Processing.of(ProcedureProfile.IDENTITY, bad)


# --- no personal field in clear with JWE ---------------------------------------------------------------------------


def _base64_forms(value: bytes) -> set[bytes]:
    """``value`` in standard and URL-safe base64 at each of the three alignments it can have inside a longer
    encoding: only the characters that depend on ``value`` alone."""
    forms = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + value)
        core = encoded[-(-shift * 4 // 3):(shift + len(value)) * 4 // 3]
        forms |= {core, core.replace(b"+", b"-").replace(b"/", b"_")}
    return forms


#: A value shorter than this is not searched for: its base64 (8 characters or fewer) turns up by chance in a few
#: hundred kilobytes of ciphertext. The token's structure (below) covers it: the JWE's only clear part is a header
#: whose every key is known.
MIN_SEARCHED_BYTES = 6


def personal_values(read: ChipRead) -> list[bytes]:
    assert read.dg13 is not None
    assert read.dg1 is not None
    values = [value for value in citizen_fields(read.dg13).values() if value]
    values += [(read.dg13.id_number or "")[-6:], read.dg1.mrz.document_number, read.dg1.mrz.primary_identifier,
               read.dg1.mrz.text]
    texts = [value.encode() for value in values if len(value.encode()) >= MIN_SEARCHED_BYTES]
    files = [content[:48] for content in read.files.values()]  # each file's head: its tag, length and first data
    return texts + files


@pytest.mark.parametrize("profile", list(ProcedureProfile))
def test_no_personal_value_leaves_in_clear_when_jwe_is_configured(profile: ProcedureProfile,
                                                                  specs: dict[str, SimCardSpec],
                                                                  trust: TrustStore) -> None:  # fmt: skip
    read = read_as(specs["married"], profile, photo=True)
    body = result_of(read, trust, profile, photo=True).model_dump(mode="json", exclude_none=True)
    device = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    ward = ec.generate_private_key(ec.SECP256R1())
    plain = jose.result_token(device, terminal_id="T-01", seq=1, document=body, now=1_800_000_000)
    sealed = jose.result_token(device, terminal_id="T-01", seq=1, document=body, now=1_800_000_000,
                               encrypt_to=ward.public_key())  # fmt: skip
    searched = personal_values(read)
    assert len(searched) >= 10
    carried = [value for value in searched if any(form in plain for form in _base64_forms(value))]
    assert carried, "the search finds nothing even in the plain JWS: it would prove nothing"
    for value in searched:
        assert value not in sealed
        assert not any(form in sealed for form in _base64_forms(value)), f"{len(value)}-byte value in clear"
    header = json.loads(base64.urlsafe_b64decode(sealed.split(b".")[0] + b"=="))
    assert set(header) == {"alg", "enc", "kid", "cty", "epk"}
    assert set(header["epk"]) == {"kty", "crv", "x", "y"}
    assert jose.decrypt_jwe(sealed, ward).startswith(plain.split(b".")[0])  # the office opens it: the same JWS


def test_online_check_files_would_be_found_in_a_plain_token(specs: dict[str, SimCardSpec],
                                                            trust: TrustStore) -> None:  # fmt: skip
    """The search above is not blind: in a plain JWS every searched value of an online_check result shows up."""
    read = read_as(specs["married"], ProcedureProfile.ONLINE_CHECK, photo=True)
    body: dict[str, Any] = result_of(read, trust, ProcedureProfile.ONLINE_CHECK, photo=True).model_dump(
        mode="json", exclude_none=True)
    device = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    plain = jose.result_token(device, terminal_id="T-01", seq=1, document=body, now=1_800_000_000)
    payload = base64.urlsafe_b64decode(plain.split(b".")[1] + b"==")
    for value in personal_values(read):  # DG13 and DG1 carry every one, in the files' base64url
        assert any(form in payload or form in plain for form in _base64_forms(value)) or value in payload, value


# --- size ----------------------------------------------------------------------------------------------------------


def test_the_largest_online_check_result_fits_every_limit_on_its_way() -> None:
    """Every chip file at its cap (DG2 160 KiB), every text at its longest in three-byte UTF-8, 16 checks, the AA
    evidence at its largest, an 8 KiB device certificate: the JWE is ~614 KB, under the office's 1 MiB per message
    (MAX_RESULT_BYTES, the broker kit's message_size_limit), and the signed JSON inside under the JOSE parser's
    1 MiB (README, "Result size"). Nothing is forwarded by the terminal in pieces: one message per result."""
    wide = "Ữ"  # three bytes in UTF-8
    checks = [Check(name=f"check_{i:02d}", status=CheckStatus.PASSED, reason=wide * 500) for i in range(16)]
    evidence = ActiveAuthEvidence(challenge=b"\x01" * 8, signature=b"\x02" * MAX_AA_SIGNATURE_BYTES,
                                  public_key_spki=b"\x03" * MAX_AA_KEY_BYTES, signature_algorithm="1." + "2" * 62)
    document = make_result(
        terminal_id="T" * 64, ward_code="2" * 16, profile=ProcedureProfile.ONLINE_CHECK, verdict=Verdict.VERIFIED,
        checks=checks, citizen=CitizenData(id_number="0" * 12, full_name=wide * 200, date_of_birth=wide * 32),
        qr=QrUsage(used=False), timing=ReadTiming(apdu_count=10**6, read_ms=10**6, verify_ms=10**6),
        completed_at=NOW, include_photo=True, request_id="r" * 64, active_auth=evidence, consent_ref="x" * 128,
        files={name: b"\xff" * cap for name, cap in MAX_CHIP_FILE_BYTES.items()},
    )  # fmt: skip
    assert document.chip_files is not None
    assert document.chip_files.dg2 is not None
    body = document.model_dump(mode="json", exclude_none=True)
    device = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    ward = ec.generate_private_key(ec.SECP256R1())
    sealed = jose.result_token(device, terminal_id="T" * 64, seq=2**62, document=body, now=2**40,
                               encrypt_to=ward.public_key(), certificate=b"\x04" * jose.MAX_X5C_CERTIFICATE_BYTES)
    assert 600_000 < len(sealed) < 0.6 * MAX_RESULT_BYTES
    claims = jose.b64url_decode(jose.decrypt_jwe(sealed, ward).split(b".")[1].decode())
    assert len(claims) < jose.MAX_TOKEN_JSON_BYTES / 2
    assert jose.json_object(claims, "JWS payload")["result"]["chip_files"]["dg2"]  # the bounded parser takes it
