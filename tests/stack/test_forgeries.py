"""Every forgery of issue 4 through the real PC/SC stack, ending with the verdict and *exactly* the failing checks.

Each card is read by read_chip over pyscard -> private pcscd -> vpcd -> the virtual CCCD (VirtualCard +
SimChipSecurity) and verified by verify_chip against the simulator PKI's CSCA. A forgery must break its own check
and nothing else: every other check passes, so the officer and the office learn *which* link broke. Only
``ds_revocation`` stays ``not_performed`` (no CRL is installed) and ``ds_chain`` is ``issuer_not_trusted`` where
the issuer is unknown. The QR shown with each chip forgery is the one the forger would print to match his chip, so
``qr_vs_dg13`` passes too; the QR forgeries pair a genuine chip with another person's or an altered QR, or show the
QR the profile itself prints (``qr_overrides``: a doctored sticker). The 2024 thẻ căn cước runs alongside the 2021
CCCD: both stay valid at the counter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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


def printed_qr(profile: CardProfile) -> CccdQr:
    """The QR the profile's card carries, doctored where its ``qr_overrides`` say."""
    return card_qr(profile.qr_person)


QRS = {"matching": matching_qr, "another person": another_persons_qr, "altered": altered_qr, "printed": printed_qr}

#: The trust stores a card is verified against: the simulator's CSCA (the normal case in these tests), nothing, or
#: only the genuine Document Signer pinned (a ward without the CSCA that learned its DS), or both.
STORES = ("CSCA", "empty", "known DS", "CSCA + known DS")


@dataclass(frozen=True)
class Case:
    profile: str
    verdict: Verdict
    label: str
    failing: frozenset[str] = frozenset()
    qr: str = "matching"  # matching | another person | altered | printed
    store: str = "CSCA"


UNPROVEN, KNOWN = Verdict.INTACT_ORIGIN_UNPROVEN, Verdict.VERIFIED_KNOWN_SIGNER
CASES = [
    Case("default", Verdict.VERIFIED, "genuine (control)"),
    Case("default", KNOWN, "genuine, its DS pinned, no CSCA", store="known DS"),
    Case("default", Verdict.VERIFIED, "genuine, CSCA and pinned DS", store="CSCA + known DS"),
    Case("default", UNPROVEN, "genuine, empty trust store", store="empty"),
    Case("forged-dg13", Verdict.FAILED, "DG13 edited after signing", frozenset({DG_HASHES})),
    Case("rogue-ds", Verdict.FAILED, "DG13 re-signed by a self-made DS naming the CSCA (its key id copied)",
         frozenset({DS_CHAIN})),
    Case("rogue-ds-own-keyid", Verdict.FAILED, "the same, the DS with its own key id", frozenset({DS_CHAIN})),
    Case("rogue-ds-no-keyid", Verdict.FAILED, "the same, the DS with no key id", frozenset({DS_CHAIN})),
    Case("rogue-ds-own-keyid", UNPROVEN, "self-made DS naming a CSCA this store lacks", store="known DS"),
    Case("flipped-keyid", Verdict.FAILED, "genuine DS certificate, one key-id bit flipped", frozenset({DS_CHAIN})),
    Case("expired-ds", Verdict.FAILED, "DS certificate expired", frozenset({DS_VALIDITY})),
    Case("untrusted-issuer", UNPROVEN, "genuine data under an unknown CSCA"),
    Case("self-made", UNPROVEN, "self-made card: own CSCA and DS, edited DG13, consistent chip keys"),
    Case("self-made", UNPROVEN, "the same against a store of known DSs", store="known DS"),
    Case("self-made", UNPROVEN, "the same against CSCA and known DSs", store="CSCA + known DS"),
    Case("cloned", Verdict.FAILED, "clone: signed data copied, other chip keys",
         frozenset({CHIP_AUTHENTICATION, ACTIVE_AUTHENTICATION})),
    Case("dg1-mismatch", Verdict.FAILED, "DG1 and DG13 disagree", frozenset({MRZ_VS_DG13})),
    Case("default", Verdict.FAILED, "genuine chip, another person's QR", frozenset({QR_VS_DG13}),
         qr="another person"),
    Case("default", Verdict.FAILED, "genuine chip, altered QR", frozenset({QR_VS_DG13}), qr="altered"),
    Case("card2024", Verdict.VERIFIED, "genuine 2024 thẻ căn cước (control)"),
    Case("card2024-forged-dg13", Verdict.FAILED, "2024 card, DG13 edited after signing", frozenset({DG_HASHES})),
    Case("card2024-qr-mismatch", Verdict.FAILED, "2024 card, genuine chip, QR sticker with another cancelled ID",
         frozenset({QR_VS_DG13}), qr="printed"),
]


def indicator(verdict: Verdict) -> str:
    """The pattern the terminal shows for a verdict: success only when the origin is proven."""
    if verdict.proves_origin:
        return "success"
    return "unproven" if verdict.rung is Verdict.INTACT_ORIGIN_UNPROVEN else "failure"


def forgery_matrix_markdown() -> str:
    """The README's forgery matrix, rendered from :data:`CASES` (which the tests below prove case by case)."""
    rows = ["| card (profile) | trust store | QR | verdict | indicator | failing checks |", "|---|---|---|---|---|---|"]
    rows += [f"| {case.label} (`{case.profile}`) | {case.store} | {case.qr} | `{case.verdict.value}` | "
             f"{indicator(case.verdict)} | {', '.join(sorted(case.failing)) or '-'} |" for case in CASES]
    return "\n".join(rows)


@pytest.fixture(scope="module")
def specs() -> dict[str, SimCardSpec]:
    names = {case.profile for case in CASES}
    return {name: build_card(load_profile(name)) for name in names}


@pytest.fixture(scope="module")
def stores() -> dict[str, TrustStore]:
    pki = load_or_create_pki()
    csca, ds = (signer.certificate.public_bytes(Encoding.DER) for signer in (pki.csca, pki.ds))
    return {"CSCA": TrustStore.from_der([csca]), "empty": TrustStore.from_der(()),
            "known DS": TrustStore.from_der((), known_signers=[ds]),
            "CSCA + known DS": TrustStore.from_der([csca], known_signers=[ds])}


@pytest.fixture(scope="module")
def trust(stores: dict[str, TrustStore]) -> TrustStore:
    return stores["CSCA"]


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
    if name == DS_CHAIN and case.verdict is UNPROVEN:
        return CheckStatus.ISSUER_NOT_TRUSTED
    if name == DS_CHAIN and case.verdict is KNOWN:
        return CheckStatus.KNOWN_SIGNER
    return CheckStatus.PASSED


@pytest.mark.parametrize("case", [pytest.param(case, id=f"{case.label} [{case.store}]") for case in CASES])
def test_forgery_ends_with_its_verdict_and_exactly_its_failing_checks(
    case: Case, specs: dict[str, SimCardSpec], stores: dict[str, TrustStore], insert_card: InsertCard,
    pcsc_driver: PcscReaderDriver,
) -> None:  # fmt: skip
    profile = load_profile(case.profile)
    result = read_through_pcsc(specs[case.profile], insert_card, pcsc_driver)
    report = verify_chip(result, stores[case.store], now=NOW, qr=QRS[case.qr](profile))

    assert report.verdict is case.verdict, {check.name: check.reason for check in report.checks}
    got = statuses(report)
    assert set(got) == ALL_CHECKS
    assert got == {name: expected_status(name, case) for name in ALL_CHECKS}, {
        check.name: check.reason for check in report.checks
    }


def test_only_cards_proven_by_a_csca_or_a_known_signer_show_success() -> None:
    """The matrix's own promise: every card whose origin nothing proves is not success, whatever else held."""
    for case in CASES:
        proven = case.profile in ("default", "card2024") and case.store != "empty" and not case.failing
        assert (indicator(case.verdict) == "success") is proven, case


def test_the_readme_shows_this_forgery_matrix() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert forgery_matrix_markdown() in readme, "README forgery matrix is stale:\n" + forgery_matrix_markdown()


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
        pytest.param("printed", {"cancelled_id_number"}, id="2024 QR with another cancelled ID"),
    ],
)  # fmt: skip
def test_cross_check_names_the_disagreeing_fields(
    case: str, mismatched: set[str], specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard,
    pcsc_driver: PcscReaderDriver,
) -> None:  # fmt: skip
    profile = load_profile({"dg1-mismatch": "dg1-mismatch", "printed": "card2024-qr-mismatch"}.get(case, "default"))
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
    the SOD's list, and the verdict names the SOD; AA still shows what the chip can prove, CA is not attempted
    with a DG14 nothing vouches for."""
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
        | {SOD_SIGNATURE: CheckStatus.FAILED, CHIP_AUTHENTICATION: CheckStatus.FAILED}  # DG14 unverifiable: unused
    )
    assert statuses(report) == expected, {check.name: check.reason for check in report.checks}
