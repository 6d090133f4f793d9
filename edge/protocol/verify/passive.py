"""Passive authentication (ICAO 9303-11 §5.1): the data read from the chip is what the issuer signed.

Steps, each reported as its own :class:`Check` so the officer and the office see *which* link broke:

1. ``sod_signature``: the EF.SOD CMS signature over its signed attributes verifies with the Document Signer (DS)
   certificate carried in it, and the signed messageDigest equals the hash of the LDSSecurityObject;
2. ``ds_validity``: the DS certificate is valid at the verification time (a parameter: protocol code has no clock).
   With a clock that is not synchronised (:class:`~edge.protocol.clock.TimeEvidence`) the dates are not judged
   (``not_performed``, "clock not synchronised"), except a DS that expired before the floor: that one fails;
3. ``ds_chain``: the DS chains to a CSCA in the trust store; ``failed`` when an installed CSCA bears its issuer's
   name and did not sign it; ``known_signer`` when no CSCA vouches for it but the DS itself is pinned in the store;
   ``issuer_not_trusted`` when nothing installed names or pins it (the data is intact, its origin unproven);
4. ``ds_revocation``: the DS is not on an installed, verifying CRL of its CSCA (``not_performed`` without one);
5. ``dg_hashes``: every data group read hashes to the value the SOD lists for it.

Nothing raises for bad card data: garbage, unsupported algorithms and absurd values end as failed checks.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from cryptography.exceptions import UnsupportedAlgorithm

from edge.errors import EdgeError, ParseError
from edge.protocol.clock import TimeEvidence, Validity
from edge.protocol.lds.sod import parse_sod
from edge.protocol.verify.certs import CertificateInfo, verify_crl
from edge.protocol.verify.checks import (
    DG_HASHES,
    DS_CHAIN,
    DS_REVOCATION,
    DS_VALIDITY,
    SOD_SIGNATURE,
    Check,
    CheckStatus,
    clock_not_synchronised,
    failed,
    passed,
)
from edge.protocol.verify.cms import SignedContent, find_signer_certificate, verify_signer
from edge.protocol.verify.signatures import digest
from edge.protocol.verify.trust import TrustStore

#: Errors a check boundary turns into a failed check: our own tree plus what parsers and crypto may still raise.
_CHECK_ERRORS = (EdgeError, ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                 UnsupportedAlgorithm)


class SodLike(SignedContent, Protocol):
    """What passive authentication reads from a parsed EF.SOD (``edge.protocol.lds.sod.SodFile``)."""

    @property
    def hash_algorithm(self) -> str: ...
    @property
    def dg_hashes(self) -> Mapping[int, bytes]: ...


def _guarded(name: str, failure: str, step: Callable[[], Check]) -> Check:
    """Run one step; an error it meets is a failed check (``failure: error``), never an exception or a pass."""
    try:
        return step()
    except _CHECK_ERRORS as exc:
        return failed(name, f"{failure}: {exc}", error=type(exc).__name__)


def passive_authentication(
    sod: SodLike, data_groups: Mapping[int, bytes], trust: TrustStore, at: datetime | TimeEvidence
) -> tuple[Check, ...]:
    """Run passive authentication over ``data_groups`` (DG number -> the file's full bytes as read) at ``at``: a
    bare ``datetime`` is a trusted time, a :class:`TimeEvidence` says whether the clock is synchronised."""
    if isinstance(at, datetime) and at.tzinfo is None:
        raise ValueError("the verification time must carry a timezone")  # a programming error, not card data
    when = TimeEvidence.of(at)
    ds: CertificateInfo | None = None
    ds_problem = ""
    try:
        ds = find_signer_certificate(sod)
    except _CHECK_ERRORS as exc:
        ds_problem = f"the SOD's Document Signer certificate is unusable: {exc}"
    checks = [_guarded(SOD_SIGNATURE, "the SOD is not as its signer signed it",
                       lambda: _signature_check(sod, ds, ds_problem))]
    if ds is None:
        checks += [failed(DS_VALIDITY, ds_problem), failed(DS_CHAIN, ds_problem),
                   Check(DS_REVOCATION, CheckStatus.NOT_PERFORMED, "there is no Document Signer certificate")]
    else:
        signer = ds
        checks.append(_guarded(DS_VALIDITY, "the DS validity could not be checked",
                               lambda: _validity_check(signer, when)))
        chain_check, issuer = _chain_check(signer, trust, when)
        checks.append(chain_check)
        checks.append(_guarded(DS_REVOCATION, "revocation could not be checked",
                               lambda: _revocation_check(signer, issuer, trust, when)))
    checks.append(_guarded(DG_HASHES, "the data groups could not be compared with the SOD",
                           lambda: _dg_hash_check(sod, data_groups)))
    return tuple(checks)


def passive_authentication_of_file(
    sod_file: bytes, data_groups: Mapping[int, bytes], trust: TrustStore, at: datetime | TimeEvidence
) -> tuple[Check, ...]:
    """Same, from the raw EF.SOD bytes: a file that does not parse fails every essential check."""
    try:
        sod = parse_sod(sod_file)
    except (ParseError, *_CHECK_ERRORS) as exc:
        return unreadable_sod(str(exc), data_groups)
    return passive_authentication(sod, data_groups, trust, at)


def unreadable_sod(parse_error: str, data_groups: Mapping[int, bytes]) -> tuple[Check, ...]:
    """The checks for a card whose EF.SOD does not parse (``parse_error`` says why): its signature is what fails;
    what hangs on a parsed SOD (its DS certificate, its hash list) cannot be performed. The verdict is failed all the
    same: every essential check must pass."""
    no_ds = "there is no Document Signer certificate: EF.SOD cannot be parsed"
    unverified = {f"DG{number}": "read, not compared" for number in sorted(data_groups)}
    return (
        failed(SOD_SIGNATURE, f"EF.SOD cannot be parsed: {parse_error}"),
        Check(DS_VALIDITY, CheckStatus.NOT_PERFORMED, no_ds),
        Check(DS_CHAIN, CheckStatus.NOT_PERFORMED, no_ds),
        Check(DS_REVOCATION, CheckStatus.NOT_PERFORMED, no_ds),
        Check(DG_HASHES, CheckStatus.NOT_PERFORMED, "EF.SOD cannot be parsed, so it lists no hashes: none of the "
              "data groups read is verified", unverified),
    )  # fmt: skip


def _signature_check(sod: SodLike, ds: CertificateInfo | None, ds_problem: str) -> Check:
    if ds is None:
        return failed(SOD_SIGNATURE, ds_problem)
    algorithm = verify_signer(sod, ds)
    return passed(
        SOD_SIGNATURE,
        "the SOD signature by its Document Signer verifies",
        algorithm=algorithm,
        digest_algorithm=sod.digest_algorithm,
        ds_subject=ds.subject,
        ds_serial=str(ds.serial),
        ds_key=ds.key_description,
    )


def _validity_check(ds: CertificateInfo, when: TimeEvidence) -> Check:
    detail = {"not_before": ds.not_before.isoformat(), "not_after": ds.not_after.isoformat()}
    validity = when.validity(ds.not_before, ds.not_after)
    if validity is Validity.NOT_YET:
        return Check(DS_VALIDITY, CheckStatus.FAILED, "the Document Signer certificate is not valid yet", detail)
    if validity is Validity.EXPIRED:
        reason = "the Document Signer certificate has expired"
        if not when.synchronised:
            reason += " (before a time this terminal knows has passed, whatever its clock says)"
        return Check(DS_VALIDITY, CheckStatus.FAILED, reason, detail)
    if validity is Validity.UNKNOWN:
        return clock_not_synchronised(DS_VALIDITY, **detail)
    return Check(DS_VALIDITY, CheckStatus.PASSED, "the Document Signer certificate is within its validity", detail)


def _chain_check(ds: CertificateInfo, trust: TrustStore, when: TimeEvidence) -> tuple[Check, CertificateInfo | None]:
    try:
        result = trust.chain(ds, when)
    except _CHECK_ERRORS as exc:
        return failed(DS_CHAIN, f"the certificate path could not be checked: {exc}"), None
    detail = {"ds_issuer": ds.issuer}
    if result.status == "trusted":
        anchor = result.path[-1]
        detail |= {"csca_subject": anchor.subject, "csca_fingerprint": anchor.fingerprint,
                   "path_length": str(len(result.path))}
        reason = result.reason
        if not when.synchronised:  # signatures and names were checked; the CSCAs' dates could not be
            detail |= {"csca_validity": "not_performed", "clock": "not_synchronised"}
            reason += "; CSCA validity not performed: clock not synchronised"
        return Check(DS_CHAIN, CheckStatus.PASSED, reason, detail), result.path[0]
    if result.status == "broken":
        return Check(DS_CHAIN, CheckStatus.FAILED, result.reason, detail), None
    if trust.is_known_signer(ds):
        reason = f"the Document Signer '{ds.subject}' is a known signer pinned in this terminal's trust store"
        detail |= {"ds_fingerprint": ds.fingerprint}
        return Check(DS_CHAIN, CheckStatus.KNOWN_SIGNER, reason, detail), None
    reason = f"origin not proven: nothing in this terminal's trust store vouches for the signer ({result.reason})"
    return Check(DS_CHAIN, CheckStatus.ISSUER_NOT_TRUSTED, reason, detail | {"ds_fingerprint": ds.fingerprint}), None


def _revocation_check(ds: CertificateInfo, issuer: CertificateInfo | None, trust: TrustStore,
                      when: TimeEvidence) -> Check:
    if issuer is None:
        return Check(DS_REVOCATION, CheckStatus.NOT_PERFORMED, "revocation needs a trusted CSCA")
    crls = trust.crls_for(issuer)
    if not crls:
        return Check(DS_REVOCATION, CheckStatus.NOT_PERFORMED, "no CRL of this CSCA is installed")
    current = undecided = False
    for crl in crls:
        try:
            verify_crl(crl, issuer)
        except EdgeError:
            return failed(DS_REVOCATION, "an installed CRL of this CSCA does not verify", crl=crl.fingerprint)
        if ds.serial in crl.revoked_serials:
            return failed(DS_REVOCATION, "the Document Signer certificate has been revoked", crl=crl.fingerprint)
        if when.synchronised:
            now = when.now
            current = current or (crl.this_update <= now and (crl.next_update is None or now <= crl.next_update))
        elif crl.next_update is None or not when.passed_for_certain(crl.next_update):
            undecided = True  # not known to be out of date: only a trusted clock could say it is current
    if not current and undecided:
        return clock_not_synchronised(DS_REVOCATION)
    if not current:
        return Check(DS_REVOCATION, CheckStatus.NOT_PERFORMED,
                     "the installed CRL of this CSCA is out of date: revocation status unknown")
    return passed(DS_REVOCATION, "the Document Signer certificate is not on the CSCA's current CRL")


def _dg_hash_check(sod: SodLike, data_groups: Mapping[int, bytes]) -> Check:
    if not data_groups:
        return failed(DG_HASHES, "no data group was read, so nothing was compared")
    detail: dict[str, str] = {"algorithm": sod.hash_algorithm}
    bad: list[str] = []
    for number, content in sorted(data_groups.items()):
        label = f"DG{number}"
        expected = sod.dg_hashes.get(number)
        actual = digest(sod.hash_algorithm, content)
        if expected is None:
            detail[label] = "not listed in the SOD"
        elif len(expected) != len(actual):
            detail[label] = "the SOD lists a hash of the wrong length"
        elif not hmac.compare_digest(expected, actual):
            detail[label] = "mismatch: the data group differs from what was signed"
        else:
            detail[label] = "match"
            continue
        bad.append(label)
    if bad:
        return Check(DG_HASHES, CheckStatus.FAILED, f"data groups not as signed: {', '.join(bad)}", detail)
    return Check(DG_HASHES, CheckStatus.PASSED, f"all {len(data_groups)} data groups read match the SOD", detail)
