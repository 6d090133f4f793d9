"""The one verdict model: every verification step ends as a :class:`Check`, and :func:`decide` alone turns checks
into a :class:`Verdict`.

Keeping the decision in one small pure function makes the rule auditable: a card is ``verified`` only when the
essential passive-authentication checks ran and passed, the Document Signer chains to a trusted CSCA, and nothing
else that ran failed. A check that could not run because of an error is reported as ``failed`` (never as
``not_performed``), so an error can never turn into a pass. Only a check that needs what another check found
broken is ``not_performed`` and names it (an EF.SOD that does not parse fails ``sod_signature``; there is then no
DS certificate or hash list to check): the essential checks must pass, so the verdict is ``failed`` all the same.
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


class Verdict(StrEnum):
    VERIFIED = "verified"
    VERIFIED_UNTRUSTED_ISSUER = "verified_untrusted_issuer"
    FAILED = "failed"


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


def decide(checks: Iterable[Check]) -> Verdict:
    """The verdict for a set of checks.

    * ``failed`` when any check failed, when an essential check is missing or did not pass, or when a check other
      than ``ds_chain`` claims ``issuer_not_trusted`` (a status in the wrong place is treated as an error);
    * ``verified_untrusted_issuer`` when everything held except that the CSCA is not in the trust store;
    * ``verified`` otherwise. ``not_supported`` / ``not_performed`` of a non-essential check (no DG15, no QR
      shown) do not block, because they mean "not offered", never "went wrong".
    """
    by_name: dict[str, list[CheckStatus]] = {}
    for check in checks:
        by_name.setdefault(check.name, []).append(check.status)
    statuses = [status for group in by_name.values() for status in group]
    if not statuses or CheckStatus.FAILED in statuses:
        return Verdict.FAILED
    untrusted = False
    for name in ESSENTIAL_CHECKS:
        group = by_name.get(name)
        if not group:
            return Verdict.FAILED
        for status in group:
            if status is CheckStatus.ISSUER_NOT_TRUSTED and name == DS_CHAIN:
                untrusted = True
            elif status is not CheckStatus.PASSED:
                return Verdict.FAILED
    for name, group in by_name.items():
        if name != DS_CHAIN and CheckStatus.ISSUER_NOT_TRUSTED in group:
            return Verdict.FAILED
    return Verdict.VERIFIED_UNTRUSTED_ISSUER if untrusted else Verdict.VERIFIED
