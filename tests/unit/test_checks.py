"""The verdict table: ``verified`` only when passive authentication fully held and the issuer is trusted."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.protocol.verify.checks import (
    ACTIVE_AUTHENTICATION,
    CHIP_AUTHENTICATION,
    CLOCK_DETAIL,
    CLOCK_NOT_SYNCHRONISED,
    DG_HASHES,
    DS_CHAIN,
    DS_REVOCATION,
    DS_VALIDITY,
    ESSENTIAL_CHECKS,
    MRZ_VS_DG13,
    QR_VS_DG13,
    SOD_SIGNATURE,
    VERDICT_WORDS,
    Check,
    CheckStatus,
    Verdict,
    clock_not_synchronised,
    decide,
)

P, F = CheckStatus.PASSED, CheckStatus.FAILED
NS, NP, UNTRUSTED = CheckStatus.NOT_SUPPORTED, CheckStatus.NOT_PERFORMED, CheckStatus.ISSUER_NOT_TRUSTED


def card(**statuses: CheckStatus) -> list[Check]:
    """A full set of checks, all passed unless overridden (``name=status``, or ``name=None`` to leave it out)."""
    base = {name: P for name in (*ESSENTIAL_CHECKS, DS_REVOCATION, ACTIVE_AUTHENTICATION, MRZ_VS_DG13)}
    base.update(statuses)
    return [Check(name, status, "reason") for name, status in base.items() if status is not None]


@pytest.mark.parametrize(
    ("overrides", "verdict"),
    [
        ({}, Verdict.VERIFIED),
        ({DS_REVOCATION: NP, ACTIVE_AUTHENTICATION: NS, QR_VS_DG13: NP}, Verdict.VERIFIED),
        ({DS_CHAIN: UNTRUSTED}, Verdict.INTACT_ORIGIN_UNPROVEN),
        ({DS_CHAIN: UNTRUSTED, DS_REVOCATION: NP, ACTIVE_AUTHENTICATION: NS}, Verdict.INTACT_ORIGIN_UNPROVEN),
        # never verified when something failed
        ({SOD_SIGNATURE: F}, Verdict.FAILED),
        ({DG_HASHES: F}, Verdict.FAILED),
        ({DS_VALIDITY: F}, Verdict.FAILED),
        ({DS_CHAIN: F}, Verdict.FAILED),
        ({DS_REVOCATION: F}, Verdict.FAILED),
        ({ACTIVE_AUTHENTICATION: F}, Verdict.FAILED),
        ({MRZ_VS_DG13: F}, Verdict.FAILED),
        ({DS_CHAIN: UNTRUSTED, DG_HASHES: F}, Verdict.FAILED),
        ({DS_CHAIN: UNTRUSTED, ACTIVE_AUTHENTICATION: F}, Verdict.FAILED),
        # never verified when an essential check was skipped, unsupported or is missing
        ({SOD_SIGNATURE: NP}, Verdict.FAILED),
        ({SOD_SIGNATURE: NS}, Verdict.FAILED),
        ({DG_HASHES: NP}, Verdict.FAILED),
        ({DS_VALIDITY: NS}, Verdict.FAILED),
        ({DS_CHAIN: NP}, Verdict.FAILED),
        ({SOD_SIGNATURE: None}, Verdict.FAILED),
        ({DS_CHAIN: None}, Verdict.FAILED),
        ({DG_HASHES: None}, Verdict.FAILED),
        ({DS_VALIDITY: None}, Verdict.FAILED),
        # issuer_not_trusted anywhere but ds_chain is a status in the wrong place
        ({SOD_SIGNATURE: UNTRUSTED}, Verdict.FAILED),
        ({ACTIVE_AUTHENTICATION: UNTRUSTED}, Verdict.FAILED),
        # chip authentication is not essential: a chip offering only DH CA (not_supported) or a read that left out
        # DG14 (not_performed) is decided by the rest; a CA that ran and failed is a failed card
        ({CHIP_AUTHENTICATION: NS}, Verdict.VERIFIED),
        ({CHIP_AUTHENTICATION: NP, ACTIVE_AUTHENTICATION: NP}, Verdict.VERIFIED),
        ({CHIP_AUTHENTICATION: NS, DS_CHAIN: UNTRUSTED}, Verdict.INTACT_ORIGIN_UNPROVEN),
        ({CHIP_AUTHENTICATION: NS, ACTIVE_AUTHENTICATION: F}, Verdict.FAILED),
        ({CHIP_AUTHENTICATION: F}, Verdict.FAILED),
        # an EF.SOD that does not parse: its signature fails, what needs a parsed SOD is not performed
        ({SOD_SIGNATURE: F, DS_VALIDITY: NP, DS_CHAIN: NP, DS_REVOCATION: NP, DG_HASHES: NP}, Verdict.FAILED),
    ],
)
def test_verdict_table(overrides: dict[str, CheckStatus], verdict: Verdict) -> None:
    assert decide(card(**overrides)) is verdict


def test_no_checks_is_failed() -> None:
    assert decide([]) is Verdict.FAILED


def test_duplicate_names_the_worst_wins() -> None:
    checks = [*card(), Check(DG_HASHES, F, "DG2 mismatch")]
    assert decide(checks) is Verdict.FAILED
    assert decide([*card(), Check(DS_CHAIN, UNTRUSTED, "second path")]) is Verdict.INTACT_ORIGIN_UNPROVEN


def test_check_is_immutable() -> None:
    detail = {"DG1": "match"}
    check = Check(DG_HASHES, P, "ok", detail)
    detail["DG1"] = "changed"
    assert check.detail["DG1"] == "match"
    with pytest.raises(TypeError):
        check.detail["DG1"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        check.status = F  # type: ignore[misc]


def test_names_and_values_are_stable() -> None:
    """The result document serialises these strings."""
    assert [s.value for s in CheckStatus] == [
        "passed", "failed", "not_supported", "not_performed", "issuer_not_trusted", "known_signer",
    ]
    assert [v.value for v in Verdict] == [
        "verified", "verified_known_signer", "intact_origin_unproven", "failed", "verified_untrusted_issuer"]
    assert ESSENTIAL_CHECKS == ("sod_signature", "ds_validity", "ds_chain", "dg_hashes")


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([*ESSENTIAL_CHECKS, DS_REVOCATION, ACTIVE_AUTHENTICATION, "other"]),
                          st.sampled_from(list(CheckStatus)))))  # fmt: skip
def test_verified_implies_everything_essential_passed(pairs: list[tuple[str, CheckStatus]]) -> None:
    checks = [Check(name, status, "r") for name, status in pairs]
    verdict = decide(checks)
    statuses = {status for _, status in pairs}
    if verdict is not Verdict.FAILED:
        assert F not in statuses
        for name in ESSENTIAL_CHECKS:
            allowed = {P, UNTRUSTED} if name == DS_CHAIN else {P}
            assert {s for n, s in pairs if n == name} <= allowed
            assert any(n == name for n, _ in pairs)
    if verdict is Verdict.VERIFIED:
        assert UNTRUSTED not in statuses


def verdict_ladder_markdown() -> str:
    """The README's ladder table, rendered from VERDICT_WORDS so the words cannot drift."""
    rows = ["| verdict | officer's words | proves | does not prove |", "|---|---|---|---|"]
    for verdict in (Verdict.VERIFIED, Verdict.VERIFIED_KNOWN_SIGNER, Verdict.INTACT_ORIGIN_UNPROVEN, Verdict.FAILED):
        words = VERDICT_WORDS[verdict]
        rows.append(f"| `{verdict.value}` | {words.vi} ({words.en}) | {words.proves} | {words.does_not_prove} |")
    return "\n".join(rows)


def test_the_readme_shows_the_verdict_ladder() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert verdict_ladder_markdown() in readme


def test_only_the_proven_rungs_may_show_success() -> None:
    assert {verdict for verdict in Verdict if verdict.proves_origin} == {
        Verdict.VERIFIED, Verdict.VERIFIED_KNOWN_SIGNER}
    assert Verdict.VERIFIED_UNTRUSTED_ISSUER.rung is Verdict.INTACT_ORIGIN_UNPROVEN


@pytest.mark.parametrize(
    ("chain", "verdict"),
    [(CheckStatus.PASSED, Verdict.VERIFIED), (CheckStatus.KNOWN_SIGNER, Verdict.VERIFIED_KNOWN_SIGNER),
     (CheckStatus.ISSUER_NOT_TRUSTED, Verdict.INTACT_ORIGIN_UNPROVEN), (CheckStatus.FAILED, Verdict.FAILED)],
)  # fmt: skip
def test_the_chain_status_picks_the_rung(chain: CheckStatus, verdict: Verdict) -> None:
    assert decide(card(ds_chain=chain)) is verdict
    assert decide([*card(ds_chain=chain), Check("other", CheckStatus.KNOWN_SIGNER, "r")]) is Verdict.FAILED


# --- a clock that is not synchronised ----------------------------------------------------------------------------

CLOCK = clock_not_synchronised(DS_VALIDITY)


def with_clock_check(*extra: Check, **statuses: CheckStatus) -> list[Check]:
    """A full card whose ``ds_validity`` was left undone for the clock."""
    return [*card(ds_validity=None, **statuses), CLOCK, *extra]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("checks", "clock_synchronised", "verdict"),
    [
        (with_clock_check(), False, Verdict.VERIFIED),  # a genuine card read with a wrong clock is not failed
        (with_clock_check(ds_chain=UNTRUSTED), False, Verdict.INTACT_ORIGIN_UNPROVEN),
        (with_clock_check(ds_chain=CheckStatus.KNOWN_SIGNER), False, Verdict.VERIFIED_KNOWN_SIGNER),
        # the waiver needs the caller to say the clock is not synchronised: by default it is an essential NP
        (with_clock_check(), True, Verdict.FAILED),
        # only a date check, only with the marker, only not_performed
        (card(ds_validity=NP), False, Verdict.FAILED),
        ([*card(ds_chain=None), clock_not_synchronised(DS_CHAIN)], False, Verdict.FAILED),
        ([*card(sod_signature=None), clock_not_synchronised(SOD_SIGNATURE)], False, Verdict.FAILED),
        ([*card(ds_validity=None), Check(DS_VALIDITY, F, CLOCK_NOT_SYNCHRONISED, {"clock": "not_synchronised"})],
         False, Verdict.FAILED),
        # an expired DS (the floor proves it) or anything else failing still fails
        (card(ds_validity=F), False, Verdict.FAILED),
        (with_clock_check(dg_hashes=F), False, Verdict.FAILED),
        (with_clock_check(Check(DS_VALIDITY, NP, "reason")), False, Verdict.FAILED),  # a second, unmarked one
        (with_clock_check(Check(DS_VALIDITY, F, "expired")), False, Verdict.FAILED),
        ([CLOCK], False, Verdict.FAILED),  # nothing else: nothing proven
    ],
)  # fmt: skip
def test_a_date_check_left_for_the_clock_never_fails_a_genuine_card_nor_passes_a_bad_one(
    checks: list[Check], clock_synchronised: bool, verdict: Verdict
) -> None:
    assert decide(checks, clock_synchronised=clock_synchronised) is verdict


def test_the_clock_check_says_why_in_its_reason() -> None:
    assert CLOCK.status is NP
    assert CLOCK.reason == "not performed: clock not synchronised"
    assert CLOCK.detail[CLOCK_DETAIL] == "not_synchronised"
