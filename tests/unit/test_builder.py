"""Every profile builds into a consistent, signed card; the test PKI chains; forgery options break one thing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.errors import ConfigError
from edge.protocol.card_expiry import expiry_date
from edge.protocol.chip import CCCD_CARD_ACCESS
from edge.protocol.lds.com import parse_com
from edge.protocol.lds.dg1 import parse_dg1
from edge.protocol.lds.dg2 import parse_dg2
from edge.protocol.lds.dg13 import parse_dg13
from edge.protocol.lds.dg14 import parse_dg14
from edge.protocol.lds.dg15 import parse_dg15
from edge.protocol.lds.sod import SodFile, parse_sod
from edge.protocol.mrz import transliterate
from edge.protocol.verify.checks import DG_HASHES, DS_CHAIN, DS_VALIDITY, SOD_SIGNATURE, CheckStatus
from edge.protocol.verify.passive import passive_authentication_of_file
from edge.protocol.verify.trust import TrustStore
from edge.sim.builder import build_card, card_access
from edge.sim.model import FID_CARD_ACCESS, FID_COM, FID_SOD, Quirks, SimCardSpec, dg_fid
from edge.sim.pki import SimPki, csca_certificate_path, load_or_create_pki
from edge.sim.profile import CardProfile, QuirkSettings, list_profiles, load_profile

PROFILES = list_profiles()
GENUINE = [name for name in PROFILES if not load_profile(name).forgery.any]
FORGED = [name for name in PROFILES if load_profile(name).forgery.any]
QUIRKY = [name for name in PROFILES if load_profile(name).quirks.any]
DER, SPKI = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
VIETNAMESE_LETTERS = "àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ"


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim-pki")


@pytest.fixture(scope="session")
def pki(pki_dir: Path) -> SimPki:
    return load_or_create_pki(pki_dir)


def _sod(spec: SimCardSpec) -> SodFile:
    return parse_sod(spec.image.applet_files[FID_SOD])


def _verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    public = issuer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))


def _verify_sod_signature(sod: SodFile) -> x509.Certificate:
    cert = x509.load_der_x509_certificate(sod.certificates[0])
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert sod.signed_attrs_der is not None
    hash_cls = {"sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
                "sha512": hashes.SHA512}[sod.digest_algorithm]  # fmt: skip
    public.verify(sod.signature, sod.signed_attrs_der, ec.ECDSA(hash_cls()))
    return cert


@pytest.mark.parametrize("name", GENUINE)
def test_every_profile_builds_consistently(name: str, pki_dir: Path, pki: SimPki) -> None:
    profile = load_profile(name)
    person = profile.person
    spec = build_card(profile, pki_dir=pki_dir)
    files = spec.image.applet_files
    dg_numbers = sorted(number for number in range(1, 17) if dg_fid(number) in files)
    assert dg_numbers[:4] == [1, 2, 13, 14]
    assert (15 in dg_numbers) == (profile.card.aa_key != "none")
    assert parse_com(files[FID_COM]).data_groups == tuple(dg_numbers)
    assert spec.image.denied_files == {dg_fid(3): 0x6982}

    sod = _sod(spec)
    assert sod.hash_algorithm == profile.card.sod_hash
    assert sorted(sod.dg_hashes) == dg_numbers
    for number in dg_numbers:
        assert sod.dg_hashes[number] == hashlib.new(sod.hash_algorithm, files[dg_fid(number)]).digest()
    assert sod.message_digest == hashlib.new(sod.digest_algorithm, sod.encap_content).digest()
    ds = _verify_sod_signature(sod)
    _verify_signed_by(ds, pki.csca.certificate)
    assert ds.issuer == pki.csca.certificate.subject

    mrz = parse_dg1(files[dg_fid(1)]).mrz
    assert mrz.document_number == person.id_number[3:]
    assert mrz.optional_data1.startswith(person.id_number)
    assert f"{mrz.primary_identifier}<<{mrz.secondary_identifier.replace(' ', '<')}" == transliterate(person.full_name)
    assert spec.secrets.can == person.id_number[-6:]
    assert spec.secrets.mrz_information == mrz.mrz_information()
    if person.expiry is None:
        assert mrz.date_of_expiry == "991231"

    dg13 = parse_dg13(files[dg_fid(13)])
    assert (dg13.id_number, dg13.full_name, dg13.date_of_expiry) == (person.id_number, person.full_name, person.expiry)
    face = parse_dg2(files[dg_fid(2)])
    assert face.mime == "image/jpeg"
    assert (face.width, face.height) == (240, 320)
    assert abs(len(files[dg_fid(2)]) - profile.card.dg2_size) < 100

    ca_oids = parse_dg14(files[dg_fid(14)]).protocol_oids
    assert "0.4.0.127.0.7.2.2.1.2" in ca_oids
    assert spec.secrets.ca_private_key is not None
    if dg_fid(15) in files:
        assert spec.secrets.aa_private_key is not None
        aa_public = parse_dg15(files[dg_fid(15)]).public_key
        assert aa_public.public_bytes(DER, SPKI) == spec.secrets.aa_private_key.public_key().public_bytes(DER, SPKI)
    access = card_access(pace_parameter_id=profile.card.pace_parameter_id, pace=spec.quirks.pace_supported)
    assert spec.image.mf_files[FID_CARD_ACCESS] == access


def test_default_card_access_is_the_real_one() -> None:
    assert card_access() == CCCD_CARD_ACCESS
    assert card_access(pace=False) != CCCD_CARD_ACCESS


def test_cards_are_stable_across_builds(pki_dir: Path) -> None:
    first = build_card(load_profile("default"), pki_dir=pki_dir)
    second = build_card(load_profile("default"), pki_dir=pki_dir)
    for fid in (dg_fid(1), dg_fid(2), dg_fid(13), dg_fid(14), dg_fid(15)):
        assert first.image.applet_files[fid] == second.image.applet_files[fid]
    assert first.secrets.mrz_information == second.secrets.mrz_information


def test_pki_is_reused_and_private(pki_dir: Path, pki: SimPki) -> None:
    again = load_or_create_pki(pki_dir)
    assert again.csca.certificate == pki.csca.certificate
    assert csca_certificate_path(pki_dir) == pki_dir / "csca.pem"
    for path in pki_dir.glob("*.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert isinstance(pki.csca.key.curve, ec.BrainpoolP384R1)
    _verify_signed_by(pki.csca.certificate, pki.csca.certificate)
    _verify_signed_by(pki.expired_ds.certificate, pki.csca.certificate)
    _verify_signed_by(pki.untrusted_ds.certificate, pki.untrusted_csca.certificate)
    assert pki.rogue_ds.certificate.issuer == pki.csca.certificate.subject
    with pytest.raises(InvalidSignature):
        _verify_signed_by(pki.rogue_ds.certificate, pki.csca.certificate)


def _forged(*options: str) -> CardProfile:
    base = load_profile("default")
    return base.model_copy(update={"forgery": base.forgery.model_copy(update=dict.fromkeys(options, True))})


def test_forgery_edit_dg13_after_signing(pki_dir: Path) -> None:
    spec = build_card(_forged("edit_dg13_after_signing"), pki_dir=pki_dir)
    sod = _sod(spec)
    dg13 = spec.image.applet_files[dg_fid(13)]
    assert sod.dg_hashes[13] != hashlib.sha256(dg13).digest()
    assert sod.dg_hashes[1] == hashlib.sha256(spec.image.applet_files[dg_fid(1)]).digest()


@pytest.mark.parametrize(("option", "attribute"), [("rogue_ds", "rogue_ds"), ("expired_ds", "expired_ds"),
                                                   ("untrusted_csca", "untrusted_ds")])  # fmt: skip
def test_forgery_signers(option: str, attribute: str, pki_dir: Path, pki: SimPki) -> None:
    sod = _sod(build_card(_forged(option), pki_dir=pki_dir))
    cert = _verify_sod_signature(sod)
    assert cert == getattr(pki, attribute).certificate


def test_forgery_clone_keys(pki_dir: Path) -> None:
    genuine = build_card(load_profile("default"), pki_dir=pki_dir)
    clone = build_card(_forged("clone_keys"), pki_dir=pki_dir)
    assert _sod(clone).dg_hashes == _sod(genuine).dg_hashes  # the same signed data groups, DG14/DG15 included
    assert clone.secrets.ca_private_key is not None
    assert genuine.secrets.ca_private_key is not None
    assert clone.secrets.ca_private_key.private_numbers() != genuine.secrets.ca_private_key.private_numbers()
    assert isinstance(clone.secrets.aa_private_key, rsa.RSAPrivateKey)
    assert isinstance(genuine.secrets.aa_private_key, rsa.RSAPrivateKey)
    assert clone.secrets.aa_private_key.public_key().public_numbers() != (
        genuine.secrets.aa_private_key.public_key().public_numbers()
    )


def test_forgery_dg1_dg13_mismatch(pki_dir: Path) -> None:
    spec = build_card(_forged("dg1_dg13_mismatch"), pki_dir=pki_dir)
    mrz = parse_dg1(spec.image.applet_files[dg_fid(1)]).mrz
    dg13 = parse_dg13(spec.image.applet_files[dg_fid(13)])
    assert dg13.date_of_birth is not None
    assert mrz.date_of_birth != dg13.date_of_birth.strftime("%y%m%d")


def test_profiles_follow_expiry_rule_and_cover_diacritics() -> None:
    text = ""
    for name in PROFILES:
        person = load_profile(name).person
        assert person.date_of_expiry is None or person.expiry == expiry_date(person.date_of_birth, person.date_of_issue)
        text += " ".join(str(value) for value in person.model_dump().values())
    assert {"default", "young", "elderly", "married", "child", "long-address"} <= set(PROFILES)
    assert set(VIETNAMESE_LETTERS) <= set(text.lower())
    assert "Đ" in text
    assert load_profile("elderly").person.expiry is None
    assert load_profile("married").person.spouse
    assert load_profile("young").person.date_of_birth.year == 2003
    assert len(load_profile("long-address").person.place_of_residence) > 300


def test_load_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such card profile"):
        load_profile("nobody")
    bad = tmp_path / "bad.toml"
    bad.write_text('[person]\nid_number = "12"\n', encoding="utf-8")
    with pytest.raises(ConfigError):
        load_profile(bad)
    good = tmp_path / "mine.toml"
    good.write_text((Path(__file__).parents[2] / "edge/sim/profiles/default.toml").read_text(encoding="utf-8"))
    assert load_profile(good).name == "mine"


@pytest.mark.parametrize("name", QUIRKY)
def test_quirk_profiles_are_the_default_card_with_one_behaviour(name: str, pki_dir: Path) -> None:
    """Shipped quirk profiles start from the default person (``based_on``), so a quirk is all that differs."""
    default, profile = load_profile("default"), load_profile(name)
    assert name.startswith("quirk-")
    assert (profile.person, profile.card, profile.forgery) == (default.person, default.card, default.forgery)
    assert profile.description
    assert profile.description != default.description
    spec = build_card(profile, pki_dir=pki_dir)
    assert spec.quirks == profile.quirks.to_quirks() != Quirks()


def test_based_on_merges_tables_and_refuses_loops(tmp_path: Path) -> None:
    child = tmp_path / "child.toml"
    child.write_text('based_on = "young"\n[person]\nfull_name = "Trần Thị Mai"\n[quirks]\nmax_le = 0xA0\n')
    profile, young = load_profile(child), load_profile("young")
    assert (profile.name, profile.description) == ("child", "")  # the base's name and description are its own
    assert profile.person == young.person.model_copy(update={"full_name": "Trần Thị Mai"})
    assert (profile.card, profile.quirks) == (young.card, QuirkSettings(max_le=0xA0))
    (tmp_path / "a.toml").write_text('based_on = "b.toml"\n')
    (tmp_path / "b.toml").write_text('based_on = "a.toml"\n')
    with pytest.raises(ConfigError, match="based on each other"):
        load_profile(tmp_path / "a.toml")
    (tmp_path / "orphan.toml").write_text('based_on = "nobody"\n')
    with pytest.raises(ConfigError, match="no such card profile"):
        load_profile(tmp_path / "orphan.toml")


def test_quirk_settings_cover_every_quirk_and_refuse_odd_values(tmp_path: Path) -> None:
    assert set(QuirkSettings.model_fields) == {field.name for field in dataclasses.fields(Quirks)}
    source = (Path(__file__).parents[2] / "edge/sim/profiles/default.toml").read_text(encoding="utf-8")
    for bad in ("bitrate_kbps = 100", "bitrate_kbps = 400", "le_refusal_sw = 0x6A00", "max_le = 0",
                "naked_errors = 1", 'max_le = "160"'):  # fmt: skip
        custom = tmp_path / "odd.toml"
        custom.write_text(f"{source}\n[quirks]\n{bad}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=bad.split()[0]):
            load_profile(custom)
    for rate in (106, 212, 424, 848):
        assert QuirkSettings(bitrate_kbps=rate).to_quirks().bitrate_kbps == rate


# --- the project's own passive authentication over built cards -------------------------------------------------

AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GENUINE_PA = {SOD_SIGNATURE, DS_VALIDITY, DS_CHAIN, DG_HASHES}


def _pa(spec: SimCardSpec, pki: SimPki) -> dict[str, CheckStatus]:
    files = spec.image.applet_files
    data_groups = {number: files[dg_fid(number)] for number in range(1, 17) if dg_fid(number) in files}
    store = TrustStore.from_der([pki.csca.certificate.public_bytes(DER)])
    checks = passive_authentication_of_file(files[FID_SOD], data_groups, store, AT)
    return {check.name: check.status for check in checks}


@pytest.mark.parametrize("name", GENUINE)
def test_passive_authentication_passes_for_every_profile(name: str, pki_dir: Path, pki: SimPki) -> None:
    statuses = _pa(build_card(load_profile(name), pki_dir=pki_dir), pki)
    assert {check for check in GENUINE_PA if statuses[check] is CheckStatus.PASSED} == GENUINE_PA


@pytest.mark.parametrize(
    ("option", "broken"),
    [
        ("edit_dg13_after_signing", {DG_HASHES}),
        ("rogue_ds", {DS_CHAIN}),
        ("expired_ds", {DS_VALIDITY}),
        ("untrusted_csca", {DS_CHAIN}),
        ("clone_keys", set()),  # passive authentication cannot see a clone: CA/AA must
        ("dg1_dg13_mismatch", set()),  # both signed: only the cross-check can see it
    ],
)
def test_forgeries_break_exactly_their_check(option: str, broken: set[str], pki_dir: Path, pki: SimPki) -> None:
    statuses = _pa(build_card(_forged(option), pki_dir=pki_dir), pki)
    assert {check for check in GENUINE_PA if statuses[check] is not CheckStatus.PASSED} == broken


@pytest.mark.parametrize(
    ("options", "broken"),
    [
        (("edit_dg13_before_signing",), set()),  # the forger's DG13 is in the SOD: the hashes hold
        (("edit_dg13_before_signing", "rogue_ds", "rogue_ds_claims_csca_key"), {DS_CHAIN}),
    ],
)
def test_forgeries_signed_by_the_forger(options: tuple[str, ...], broken: set[str], pki_dir: Path,
                                        pki: SimPki) -> None:  # fmt: skip
    spec = build_card(_forged(*options), pki_dir=pki_dir)
    statuses = _pa(spec, pki)
    assert {check for check in GENUINE_PA if statuses[check] is not CheckStatus.PASSED} == broken
    genuine = build_card(load_profile("default"), pki_dir=pki_dir)
    assert spec.image.applet_files[dg_fid(13)] != genuine.image.applet_files[dg_fid(13)]


@pytest.mark.parametrize("name", FORGED)
def test_forged_profiles_build(name: str, pki_dir: Path, pki: SimPki) -> None:
    """Bundled forgery profiles (for demos) build and keep the person's CAN and MRZ."""
    profile = load_profile(name)
    spec = build_card(profile, pki_dir=pki_dir)
    assert spec.secrets.can == profile.person.id_number[-6:]
    assert _pa(spec, pki)[SOD_SIGNATURE] is CheckStatus.PASSED


def test_quirks_and_card_settings_from_toml(tmp_path: Path, pki_dir: Path) -> None:
    source = (Path(__file__).parents[2] / "edge/sim/profiles/default.toml").read_text(encoding="utf-8")
    custom = tmp_path / "quirky.toml"
    custom.write_text(
        source + '\n[card]\naa_key = "ec"\npace_parameter_id = 12\n\n[quirks]\nmax_le = 231\nextended_length = false\n'
        "pace_supported = false\n",
        encoding="utf-8",
    )
    spec = build_card(load_profile(custom), pki_dir=pki_dir)
    assert (spec.quirks.max_le, spec.quirks.extended_length, spec.quirks.pace_supported) == (231, False, False)
    assert spec.quirks.eof_warning is False  # unset quirks keep the well-behaved default
    assert isinstance(spec.secrets.aa_private_key, ec.EllipticCurvePrivateKey)
    assert spec.secrets.pace_parameter_id == 12
    assert spec.image.mf_files[FID_CARD_ACCESS] == card_access(pace=False)
    assert stat.S_IMODE((pki_dir / ".lock").stat().st_mode) == 0o600
