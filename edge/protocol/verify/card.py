"""Verify one chip read: passive authentication, chip and active authentication, cross-checks -> one verdict.

This is only composition: each step is another module's (``passive``, ``active_auth``, ``crosscheck``), each ends
as :class:`Check` objects, and :func:`~edge.protocol.verify.checks.decide` alone turns them into the verdict. A
step that meets an error ends as a failed check, never as a skipped one, so an error can never yield ``verified``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edge.errors import EdgeError
from edge.protocol.cccd_qr import CccdQr
from edge.protocol.chip import ChipRead
from edge.protocol.clock import TimeEvidence
from edge.protocol.verify.checks import (
    CHIP_AUTHENTICATION,
    ID_NUMBER_STRUCTURE,
    MRZ_VS_DG13,
    QR_VS_DG13,
    Check,
    CheckStatus,
    Verdict,
    decide,
    failed,
)
from edge.protocol.verify.crosscheck import check_id_structure, crosscheck_mrz_dg13, crosscheck_qr_dg13
from edge.protocol.verify.passive import passive_authentication, unreadable_sod
from edge.protocol.verify.trust import TrustStore


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """Every check, in a stable order, and the verdict ``decide`` gives for them; ``clock`` is the time evidence
    they were judged with (``verified_at`` its best estimate)."""

    checks: tuple[Check, ...]
    verdict: Verdict
    verified_at: datetime
    clock: TimeEvidence

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError if it did not run)."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)


def _chip_authentication(read: ChipRead) -> Check:
    outcome = read.chip_auth
    detail = {}
    if outcome.result is not None:
        detail = {"protocol": outcome.result.protocol, "suite": outcome.result.suite_name}
    return Check(CHIP_AUTHENTICATION, outcome.status, outcome.reason, detail)


def _passive_authentication(read: ChipRead, trust: TrustStore, now: TimeEvidence) -> tuple[Check, ...]:
    if read.sod is not None:
        return passive_authentication(read.sod, read.data_groups, trust, now)
    return unreadable_sod(read.sod_error or "no reason given", read.data_groups)


def _not_requested(name: str, number: int) -> Check:
    return Check(name, CheckStatus.NOT_PERFORMED, f"DG{number} was not requested")


def _crosschecks(read: ChipRead, qr: CccdQr | None) -> tuple[Check, ...]:
    dg13 = read.dg13
    if 13 not in read.requested:
        return _not_requested(MRZ_VS_DG13, 13), _not_requested(QR_VS_DG13, 13), _not_requested(ID_NUMBER_STRUCTURE, 13)
    if dg13 is None:  # every CCCD has DG13: without it there is nothing to compare the MRZ or QR with
        reason = "the card has no DG13 (personal data), which every CCCD carries"
        return failed(MRZ_VS_DG13, reason), failed(QR_VS_DG13, reason), failed(ID_NUMBER_STRUCTURE, reason)
    if 1 not in read.requested:
        mrz_check = _not_requested(MRZ_VS_DG13, 1)
    elif read.dg1 is None:
        mrz_check = failed(MRZ_VS_DG13, "the card has no DG1 (MRZ), which every CCCD carries")
    else:
        mrz_check = crosscheck_mrz_dg13(read.dg1.mrz, dg13)
    return mrz_check, crosscheck_qr_dg13(qr, dg13), check_id_structure(dg13)


def _guarded_crosschecks(read: ChipRead, qr: CccdQr | None) -> tuple[Check, ...]:
    """Cross-checks compare parsed values; an unexpected error in them is a failed check, not a crash or a pass."""
    try:
        return _crosschecks(read, qr)
    except (EdgeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        reason = f"the card's data could not be compared: {type(exc).__name__}"
        return failed(MRZ_VS_DG13, reason), failed(QR_VS_DG13, reason), failed(ID_NUMBER_STRUCTURE, reason)


def verify_chip(read: ChipRead, trust: TrustStore | None, *, now: datetime | TimeEvidence,
                qr: CccdQr | None) -> VerificationReport:  # fmt: skip
    """Verify ``read`` at ``now``: a timezone-aware time the caller trusts, or the daemon's
    :class:`TimeEvidence`, which may say the clock is not synchronised (date checks are then ``not_performed``
    and do not fail a genuine card, see ``decide``). Without a trust store the DS chain ends
    ``issuer_not_trusted`` (verdict ``intact_origin_unproven`` at best): the card's signatures may hold, but this
    terminal cannot say who the issuer is. An EF.SOD that does not parse
    fails ``sod_signature`` (the checks that need a parsed SOD are ``not_performed``): never verified."""
    if isinstance(now, datetime) and now.tzinfo is None:
        raise ValueError("the verification time must carry a timezone")  # a programming error, not card data
    when = TimeEvidence.of(now)
    store = trust if trust is not None else TrustStore.from_der(())
    checks = (
        *_passive_authentication(read, store, when),
        _chip_authentication(read),
        read.active_auth.check(),
        *_guarded_crosschecks(read, qr),
    )
    return VerificationReport(checks, decide(checks, clock_synchronised=when.synchronised), when.now, when)
