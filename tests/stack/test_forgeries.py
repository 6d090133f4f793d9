"""Every forgery of issue 4 through the real PC/SC stack, ending with the verdict and *exactly* the failing checks.

Each card is read by read_chip over pyscard -> private pcscd -> vpcd -> the virtual CCCD (VirtualCard +
SimChipSecurity) and verified by verify_chip against the simulator PKI's CSCA. A forgery must break its own check
and nothing else: every other check passes, so the officer and the office learn *which* link broke. Only
``ds_revocation`` stays ``not_performed`` (no CRL is installed) and ``ds_chain`` is ``issuer_not_trusted`` where
the issuer is unknown. The QR shown with each chip forgery is the one the forger would print to match his chip, so
``qr_vs_dg13`` passes too; the QR forgeries pair a genuine chip with another person's or an altered QR.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from edge.drivers.pcsc import PcscReaderDriver
from edge.protocol.access.policy import CanKey
from edge.protocol.cccd_qr import CccdQr
from edge.protocol.chip import ChipRead, ReadRequest, read_chip
from edge.protocol.verify.card import VerificationReport, verify_chip
from edge.protocol.verify.checks import (
    ACTIVE_AUTHENTICATION,
    CHIP_AUTHENTICATION,
    DG_HASHES,
    DS_CHAIN,
    DS_REVOCATION,
    DS_VALIDITY,
    ID_NUMBER_STRUCTURE,
    MRZ_VS_DG13,
    QR_VS_DG13,
    SOD_SIGNATURE,
    CheckStatus,
    Verdict,
)
from edge.protocol.verify.trust import TrustStore
from edge.sim.builder import FORGED_RESIDENCE, build_card
from edge.sim.card_qr import card_qr
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import FID_SOD, SimCardSpec
from edge.sim.pki import load_or_create_pki
from edge.sim.profile import CardProfile, load_profile
from edge.sim.stack import READER_NAMES
from tests.fixtures.pcsc import InsertCard

pytestmark = pytest.mark.stack

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ALL_CHECKS = {SOD_SIGNATURE, DS_VALIDITY, DS_CHAIN, DS_REVOCATION, DG_HASHES, CHIP_AUTHENTICATION,
              ACTIVE_AUTHENTICATION, MRZ_VS_DG13, QR_VS_DG13, ID_NUMBER_STRUCTURE}  # fmt: skip
ALTERED_RESIDENCE = "5 Đường Không Có, Phường Đa Kao, Quận 1, TP. Hồ Chí Minh"


def matching_qr(profile: CardProfile) -> CccdQr:
    """The QR that agrees with the chip: the card's own, or for a DG13 edit the one the forger reprinted."""
    person = profile.person
    if profile.forgery.edit_dg13_after_signing or profile.forgery.edit_dg13_before_signing:
        person = person.model_copy(update={"place_of_residence": FORGED_RESIDENCE})
    return card_qr(person)


def another_persons_qr(profile: CardProfile) -> CccdQr:
    return card_qr(load_profile("young").person)


def altered_qr(profile: CardProfile) -> CccdQr:
    return dataclasses.replace(card_qr(profile.person), place_of_residence=ALTERED_RESIDENCE)


@dataclass(frozen=True)
class Case:
    profile: str
    verdict: Verdict
    failing: frozenset[str] = frozenset()
    qr: str = "matching"  # matching | another person | altered
    trusted: bool = True  # False: PA against an empty trust store


#: rogue-ds without the CSCA's key identifier: its DS names a CSCA key this terminal does not hold, which it cannot
#: tell from the issuer's next key (a rollover), so the honest answer is "issuer not trusted", never "verified".
ROGUE_DS_OWN_KEY_ID = "rogue-ds-own-key-id"


QRS = {"matching": matching_qr, "another person": another_persons_qr, "altered": altered_qr}

CASES = [
    (Case("default", Verdict.VERIFIED), "genuine (control)"),
    (Case("forged-dg13", Verdict.FAILED, frozenset({DG_HASHES})), "a edited DG13"),
    (Case("rogue-ds", Verdict.FAILED, frozenset({DS_CHAIN})), "b edited DG13 re-signed by rogue DS"),
    (Case(ROGUE_DS_OWN_KEY_ID, Verdict.VERIFIED_UNTRUSTED_ISSUER), "b' rogue DS with its own key id"),
    (Case("expired-ds", Verdict.FAILED, frozenset({DS_VALIDITY})), "c expired DS"),
    (Case("untrusted-issuer", Verdict.VERIFIED_UNTRUSTED_ISSUER), "d DS under an unknown CSCA"),
    (Case("cloned", Verdict.FAILED, frozenset({CHIP_AUTHENTICATION, ACTIVE_AUTHENTICATION})), "e clone"),
    (Case("dg1-mismatch", Verdict.FAILED, frozenset({MRZ_VS_DG13})), "f DG1 vs DG13"),
    (Case("default", Verdict.FAILED, frozenset({QR_VS_DG13}), qr="another person"), "g QR of another person"),
    (Case("default", Verdict.FAILED, frozenset({QR_VS_DG13}), qr="altered"), "g altered QR"),
    (Case("default", Verdict.VERIFIED_UNTRUSTED_ISSUER, trusted=False), "genuine, empty trust store"),
]


def profile_of(name: str) -> CardProfile:
    if name == ROGUE_DS_OWN_KEY_ID:
        base = load_profile("rogue-ds")
        forgery = base.forgery.model_copy(update={"rogue_ds_claims_csca_key": False})
        return base.model_copy(update={"forgery": forgery})  # same name: the same chip keys
    return load_profile(name)


@pytest.fixture(scope="module")
def specs() -> dict[str, SimCardSpec]:
    names = {case.profile for case, _ in CASES}
    return {name: build_card(profile_of(name)) for name in names}


@pytest.fixture(scope="module")
def trust() -> TrustStore:
    return TrustStore.from_der([load_or_create_pki().csca.certificate.public_bytes(Encoding.DER)])


def read_through_pcsc(spec: SimCardSpec, insert_card: InsertCard, driver: PcscReaderDriver) -> ChipRead:
    insert_card(spec, security=SimChipSecurity(spec.secrets, spec.quirks))
    connection = driver.connect(READER_NAMES[0])
    try:
        return read_chip(connection, ReadRequest(CanKey(spec.secrets.can)))
    finally:
        connection.close()


def statuses(report: VerificationReport) -> dict[str, CheckStatus]:
    named = {check.name: check.status for check in report.checks}
    assert len(named) == len(report.checks), "a check ran twice"
    return named


def expected_status(name: str, case: Case) -> CheckStatus:
    """What every check other than the forgery's own must show."""
    if name in case.failing:
        return CheckStatus.FAILED
    if name == DS_REVOCATION:  # no CRL installed; and without a trusted CSCA there is nothing to ask
        return CheckStatus.NOT_PERFORMED
    if name == DS_CHAIN and (case.profile in ("untrusted-issuer", ROGUE_DS_OWN_KEY_ID) or not case.trusted):
        return CheckStatus.ISSUER_NOT_TRUSTED
    return CheckStatus.PASSED


@pytest.mark.parametrize("case", [pytest.param(case, id=label) for case, label in CASES])
def test_forgery_ends_with_its_verdict_and_exactly_its_failing_checks(
    case: Case, specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard,
    pcsc_driver: PcscReaderDriver,
) -> None:  # fmt: skip
    profile = profile_of(case.profile)
    result = read_through_pcsc(specs[case.profile], insert_card, pcsc_driver)
    store = trust if case.trusted else TrustStore.from_der(())
    report = verify_chip(result, store, now=NOW, qr=QRS[case.qr](profile))

    assert report.verdict is case.verdict
    got = statuses(report)
    assert set(got) == ALL_CHECKS
    assert got == {name: expected_status(name, case) for name in ALL_CHECKS}, {
        check.name: check.reason for check in report.checks
    }


def test_rogue_ds_signed_the_edited_dg13(specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard,
                                         pcsc_driver: PcscReaderDriver) -> None:  # fmt: skip
    """(b) is not (a) again: the edit is covered by the SOD (every hash matches, the signature verifies with the
    DS key it carries); only the DS certificate, which the CSCA never signed, gives it away."""
    result = read_through_pcsc(specs["rogue-ds"], insert_card, pcsc_driver)
    assert result.dg13 is not None
    assert result.dg13.place_of_residence == FORGED_RESIDENCE
    report = verify_chip(result, trust, now=NOW, qr=None)
    hashes = report.check(DG_HASHES).detail
    assert {label: hashes[label] for label in hashes if label.startswith("DG")} == {
        f"DG{number}": "match" for number in result.data_groups
    }
    assert report.check(SOD_SIGNATURE).passed
    assert report.check(DS_CHAIN).status is CheckStatus.FAILED
    assert report.check(QR_VS_DG13).status is CheckStatus.NOT_PERFORMED


@pytest.mark.parametrize(
    ("case", "mismatched"),
    [
        pytest.param("dg1-mismatch", {"date_of_birth"}, id="DG1 vs DG13"),
        pytest.param("altered", {"place_of_residence"}, id="altered QR"),
        pytest.param("another person", {"id_number", "full_name", "date_of_birth", "sex", "place_of_residence",
                                        "date_of_issue"}, id="QR of another person"),  # the other has no old ID
    ],
)  # fmt: skip
def test_cross_check_names_the_disagreeing_fields(
    case: str, mismatched: set[str], specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard,
    pcsc_driver: PcscReaderDriver,
) -> None:  # fmt: skip
    profile = load_profile("dg1-mismatch" if case == "dg1-mismatch" else "default")
    result = read_through_pcsc(specs[profile.name], insert_card, pcsc_driver)
    qr = QRS.get(case, matching_qr)(profile)
    report = verify_chip(result, trust, now=NOW, qr=qr)
    check = report.check(MRZ_VS_DG13 if case == "dg1-mismatch" else QR_VS_DG13)
    assert check.status is CheckStatus.FAILED
    assert {field for field, outcome in check.detail.items() if outcome == "mismatch"} == mismatched


def garbage_sod(spec: SimCardSpec) -> SimCardSpec:
    """A chip whose EF.SOD is not a SOD (well-formed TLV, nonsense inside), as in tests/stack/test_read_card.py."""
    files = {**spec.image.applet_files, FID_SOD: bytes.fromhex("7703020100")}
    return dataclasses.replace(spec, image=dataclasses.replace(spec.image, applet_files=files))


def test_a_sod_that_does_not_parse_fails_its_signature_and_nothing_is_verified(
    specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    """Not a bad chip answer ending the read: the read completes, the data groups are read as requested without
    the SOD's list, and the verdict names the SOD; CA and AA still show what the chip can prove."""
    spec = garbage_sod(specs["default"])
    result = read_through_pcsc(spec, insert_card, pcsc_driver)
    assert result.sod is None
    assert result.sod_raw == spec.image.applet_files[FID_SOD]
    assert set(result.data_groups) == {1, 13, 14, 15}
    report = verify_chip(result, trust, now=NOW, qr=matching_qr(load_profile("default")))

    assert report.verdict is Verdict.FAILED
    assert report.check(SOD_SIGNATURE).reason.startswith("EF.SOD cannot be parsed: EF.SOD")
    not_performed = {DS_VALIDITY, DS_CHAIN, DS_REVOCATION, DG_HASHES}
    expected = (
        dict.fromkeys(ALL_CHECKS, CheckStatus.PASSED)
        | dict.fromkeys(not_performed, CheckStatus.NOT_PERFORMED)
        | {SOD_SIGNATURE: CheckStatus.FAILED}
    )
    assert statuses(report) == expected, {check.name: check.reason for check in report.checks}
