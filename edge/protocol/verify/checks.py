"""The one verdict model: every verification step ends as a :class:`Check`, and :func:`decide` alone turns checks
into a :class:`Verdict`.

The verdict is a ladder that says what was proven (:data:`VERDICT_WORDS` gives each rung the same words on the
terminal, in ``verify``, in the receiver and on the officer's screen):

* ``verified``: the data is the issuer's, proven by the country's CSCA in the trust store;
* ``verified_known_signer``: proven by a *known Document Signer*, a DS certificate the ward pinned in its trust
  store (from a signed DS list). A DS certificate is public, but only the issuer holds its key, so a pinned DS is a
  sound anchor where the CSCA is not public (real CCCDs today);
* ``intact_origin_unproven``: the data is as its signer signed it, but nothing here says who the signer is. A
  fully self-made card (own CSCA, own DS, consistent chip keys) reaches this rung too, so it is never success;
* ``failed``.

Keeping the decision in one small pure function makes the rule auditable: a card is ``verified`` only when the
essential passive-authentication checks ran and passed, the Document Signer chains to a trusted CSCA, and nothing
else that ran failed. A check that could not run because of an error is reported as ``failed`` (never as
``not_performed``), so an error can never turn into a pass. Only a check that needs what another check found
broken is ``not_performed`` and names it (an EF.SOD that does not parse fails ``sod_signature``; there is then no
DS certificate or hash list to check): the essential checks must pass, so the verdict is ``failed`` all the same.
One other exception: a terminal whose clock is not synchronised cannot judge dates, so ``ds_validity`` is then
``not_performed`` with :data:`CLOCK_NOT_SYNCHRONISED` (``edge.protocol.clock``), and :func:`decide` told that the
clock is not synchronised lets that one check through: the signatures prove the data either way, and a genuine card
must not fail for the terminal's clock (the result records the clock state for the office).
The names and values here are serialised by the result document: keep them stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class CheckStatus(StrEnum):
    """Outcome of one check."""

    PASSED = "passed"
    FAILED = "failed"  # did not hold, or could not be performed because of an error
    NOT_SUPPORTED = "not_supported"  # the card does not offer it (e.g. no DG15: no active authentication)
    NOT_PERFORMED = "not_performed"  # not applicable or not requested (e.g. no QR shown, no CRL installed)
    ISSUER_NOT_TRUSTED = "issuer_not_trusted"  # only for ds_chain: signature fine, CSCA not in the trust store
    KNOWN_SIGNER = "known_signer"  # only for ds_chain: no CSCA path, but the DS itself is pinned in the trust store


#: The statuses only ``ds_chain`` may carry: they say how far the signer's origin was proven.
CHAIN_ONLY_STATUSES = frozenset({CheckStatus.ISSUER_NOT_TRUSTED, CheckStatus.KNOWN_SIGNER})


class Verdict(StrEnum):
    VERIFIED = "verified"
    VERIFIED_KNOWN_SIGNER = "verified_known_signer"
    INTACT_ORIGIN_UNPROVEN = "intact_origin_unproven"
    FAILED = "failed"
    #: Result documents before schema version 3 said this for ``intact_origin_unproven``; never decided now.
    VERIFIED_UNTRUSTED_ISSUER = "verified_untrusted_issuer"

    @property
    def proves_origin(self) -> bool:
        """Genuine and from a known issuer: the only verdicts that may show success."""
        return self in (Verdict.VERIFIED, Verdict.VERIFIED_KNOWN_SIGNER)

    @property
    def rung(self) -> Verdict:
        """The rung of the ladder this verdict stands on (a legacy spelling reads as its current one)."""
        return Verdict.INTACT_ORIGIN_UNPROVEN if self is Verdict.VERIFIED_UNTRUSTED_ISSUER else self


@dataclass(frozen=True, slots=True)
class VerdictWords:
    """What a rung proves, in the officer's words (Vietnamese first) and in English."""

    vi: str
    en: str
    proves: str
    does_not_prove: str

    def lines(self) -> tuple[str, str, str]:
        """The words as every command prints them under its verdict line (read, demo): one layout everywhere."""
        return f"{self.vi} ({self.en})", f"proves: {self.proves}", f"does not prove: {self.does_not_prove}"


_RUNG_WORDS = {
    Verdict.VERIFIED: VerdictWords(
        "Thẻ thật, đã xác minh nguồn phát hành",
        "Genuine card: issuer proven by the country's CSCA",
        "the chip's data is what the issuer signed, under a CSCA installed in the trust store",
        "that the card was not reported lost or revoked since (an offline check cannot know)"),
    Verdict.VERIFIED_KNOWN_SIGNER: VerdictWords(
        "Thẻ thật, đã xác minh người ký đã biết",
        "Genuine card: signed by a Document Signer this ward knows",
        "the chip's data is what a Document Signer pinned by the ward signed (only the issuer holds its key)",
        "the CSCA above that signer (not installed), or revocation since"),
    Verdict.INTACT_ORIGIN_UNPROVEN: VerdictWords(
        "Dữ liệu nguyên vẹn, chưa xác minh được nguồn phát hành",
        "Data intact, issuer not proven",
        "the data is as its signer signed it and the chip holds the signed keys",
        "who the signer is: a self-made card with its own CSCA reaches this too; check the card by other means"),
    Verdict.FAILED: VerdictWords(
        "Không đạt",
        "Not verified",
        "a check failed (named in the checks): the data, the signer or the chip is not what it claims",
        "that the holder is not the citizen (a worn chip or a reader fault fails too: repeat the read)"),
}
#: The words for every verdict, a legacy spelling included (it reads as its rung).
VERDICT_WORDS: Mapping[Verdict, VerdictWords] = MappingProxyType(
    {verdict: _RUNG_WORDS[verdict.rung] for verdict in Verdict})


# Stable check names (the result document and the office side key on them).
SOD_SIGNATURE = "sod_signature"
DS_VALIDITY = "ds_validity"
DS_CHAIN = "ds_chain"
DS_REVOCATION = "ds_revocation"
DG_HASHES = "dg_hashes"
CHIP_AUTHENTICATION = "chip_authentication"
ACTIVE_AUTHENTICATION = "active_authentication"
MRZ_VS_DG13 = "mrz_vs_dg13"
QR_VS_DG13 = "qr_vs_dg13"
ID_NUMBER_STRUCTURE = "id_number_structure"

#: Passive authentication is the proof of genuineness: without all of these, nothing is verified.
ESSENTIAL_CHECKS = (SOD_SIGNATURE, DS_VALIDITY, DS_CHAIN, DG_HASHES)
#: Essential checks that judge only a date: the only ones a clock that is not synchronised may leave undone.
DATE_CHECKS = frozenset({DS_VALIDITY})
#: The reason of a date check not performed because the clock is not synchronised (and its detail marker).
CLOCK_NOT_SYNCHRONISED = "not performed: clock not synchronised"
CLOCK_DETAIL = "clock"


@dataclass(frozen=True, slots=True)
class Check:
    """One check. ``reason`` is plain words for the officer and never holds personal data; ``detail`` carries
    technical facts (algorithm, which field or data group) as strings, also free of personal data."""

    name: str
    status: CheckStatus
    reason: str
    detail: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A frozen dataclass holding a dict would still be mutable through the dict; freeze the mapping too.
        object.__setattr__(self, "detail", MappingProxyType(dict(self.detail)))

    @property
    def passed(self) -> bool:
        return self.status is CheckStatus.PASSED


def passed(name: str, reason: str, **detail: str) -> Check:
    return Check(name, CheckStatus.PASSED, reason, detail)


def failed(name: str, reason: str, **detail: str) -> Check:
    return Check(name, CheckStatus.FAILED, reason, detail)


def clock_not_synchronised(name: str, **detail: str) -> Check:
    """A date check the terminal could not perform because its clock is not synchronised."""
    return Check(name, CheckStatus.NOT_PERFORMED, CLOCK_NOT_SYNCHRONISED, {**detail, CLOCK_DETAIL: "not_synchronised"})


def _waived_for_clock(check: Check, clock_synchronised: bool) -> bool:
    return (not clock_synchronised and check.name in DATE_CHECKS and check.status is CheckStatus.NOT_PERFORMED
            and check.detail.get(CLOCK_DETAIL) == "not_synchronised")


def decide(checks: Iterable[Check], *, clock_synchronised: bool = True) -> Verdict:
    """The verdict for a set of checks.

    * ``failed`` when any check failed, when an essential check is missing or did not pass, or when a check other
      than ``ds_chain`` claims a chain-only status (a status in the wrong place is treated as an error);
    * ``intact_origin_unproven`` when everything held except that nothing in the trust store vouches for the DS;
    * ``verified_known_signer`` when everything held and the DS is pinned, but no CSCA path exists;
    * ``verified`` otherwise. ``not_supported`` / ``not_performed`` of a non-essential check (no DG15, no QR
      shown) do not block, because they mean "not offered", never "went wrong".

    Only when the caller says ``clock_synchronised=False`` does a date check marked by
    :func:`clock_not_synchronised` count as absent-but-allowed; with a synchronised clock (the default) it is an
    essential check not passed like any other, so an expired DS can never slip through as "no clock".
    """
    by_name: dict[str, list[CheckStatus]] = {}
    waived: set[str] = set()
    for check in checks:
        if _waived_for_clock(check, clock_synchronised):
            waived.add(check.name)
        else:
            by_name.setdefault(check.name, []).append(check.status)
    statuses = [status for group in by_name.values() for status in group]
    if not statuses or CheckStatus.FAILED in statuses:
        return Verdict.FAILED
    verdict = Verdict.VERIFIED
    for name in ESSENTIAL_CHECKS:
        group = by_name.get(name)
        if not group:
            if name in waived:
                continue
            return Verdict.FAILED
        for status in group:
            if status is CheckStatus.ISSUER_NOT_TRUSTED and name == DS_CHAIN:
                verdict = Verdict.INTACT_ORIGIN_UNPROVEN
            elif status is CheckStatus.KNOWN_SIGNER and name == DS_CHAIN:
                verdict = verdict if verdict is Verdict.INTACT_ORIGIN_UNPROVEN else Verdict.VERIFIED_KNOWN_SIGNER
            elif status is not CheckStatus.PASSED:
                return Verdict.FAILED
    for name, group in by_name.items():
        if name != DS_CHAIN and CHAIN_ONLY_STATUSES.intersection(group):
            return Verdict.FAILED
    return verdict
