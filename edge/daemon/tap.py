"""One tap, top-down: the stages a card goes through between the PC/SC event and the broker's PUBACK, each a
function or object with its inputs in its signature. The data travels in the state machine's typed events.

1. **key**: :func:`key_from_qr` (the camera thread) or :func:`key_from_command` (an office ``read_request``) ->
   ``KeyOffered``; the machine pairs the key with a card on the reader (``CardInserted``) -> ``StartRead``.
2. **read**: :func:`read_card` -> ``ReadSucceeded`` carrying the :class:`~edge.protocol.chip.ChipRead` (or the
   error that ended it -> ``ReadFailed``); the machine answers ``StartVerify`` carrying the read on.
3. **verify**: :func:`~edge.protocol.verify.card.verify_chip`: every check and the verdict, which comes from it alone.
4. **document**: :func:`result_document`: the profile-filtered result; a document that cannot carry the citizen's
   data is sent as ``failed``.
5. **seal and store**: :class:`~edge.daemon.result_store.ResultStore`: signed once, committed to the outbox (or
   held in memory while the disk refuses), then ``VerifyDone``.
6. **deliver**: :class:`~edge.daemon.mqtt.ResultPublisher` publishes with QoS 1 and deletes on PUBACK.

The worker (:mod:`edge.daemon.worker`) runs stages 2 to 5 off the loop; a read that failed or was aborted (card
pulled, cancel, timeout) publishes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from edge.daemon.state import KeySource, ReadSucceeded, StartRead, StartVerify
from edge.drivers.base import CardReaderDriver
from edge.protocol.access.policy import CanKey
from edge.protocol.cccd_qr import CccdQr
from edge.protocol.chip import read_chip
from edge.protocol.commands import ReadCommand
from edge.protocol.id_number import can_from_id
from edge.protocol.procedures import procedure
from edge.protocol.result import (
    ActiveAuthEvidence,
    Check,
    CitizenData,
    ClockEvidence,
    ProcedureProfile,
    QrUsage,
    ReadTiming,
    ResultDocument,
    citizen_from,
    make_result,
)
from edge.protocol.verify.card import VerificationReport
from edge.protocol.verify.checks import CheckStatus, Verdict

_QR_FORMATS: dict[str, Literal["cccd2021", "cccd2024"]] = {"2021": "cccd2021", "2024": "cccd2024"}


# --- 1. key --------------------------------------------------------------------------------------------------------


def key_from_qr(qr: CccdQr) -> KeySource:
    """The CAN a card's QR yields; the QR is kept to be cross-checked against DG13 (it proves nothing itself)."""
    return KeySource(CanKey(can_from_id(qr.id_number)), qr)


def key_from_command(command: ReadCommand) -> KeySource:
    """The key an office ``read_request`` carries (already the protocol's key type)."""
    return KeySource(command.key, None, command.include_photo, command.consent_ref)


# --- 2. read -------------------------------------------------------------------------------------------------------


def read_card(reader: CardReaderDriver, reader_name: str | None, order: StartRead, *, profile: ProcedureProfile,
              started: float, timeout: float, monotonic: Callable[[], float]) -> ReadSucceeded:  # fmt: skip
    """Open the chip with the order's key and read what its ``profile`` needs (the face only when the profile needs
    it and the request asked), until ``started + timeout`` at the latest (then
    :class:`~edge.errors.ReadDeadlineError`); raises the :class:`~edge.errors.EdgeError` that ended the read."""
    request = procedure(profile).read_request(order.key.access, photo_requested=order.key.include_photo,
                                              aa_challenge=order.challenge)  # fmt: skip
    deadline = started + timeout
    # The driver ends an exchange the chip never answers at the deadline too (checked here only between APDUs).
    connection = reader.connect(reader_name, time_limit=max(0.0, deadline - monotonic()))
    try:
        read = read_chip(connection, request, expired=lambda: monotonic() >= deadline)
    finally:
        connection.close()
    done = monotonic()
    return ReadSucceeded(done, order.attempt, read, int((done - started) * 1000))


# --- 4. document ---------------------------------------------------------------------------------------------------


def result_document(order: StartVerify, report: VerificationReport, *, terminal_id: str, ward_code: str,
                    default_profile: ProcedureProfile, verify_ms: int) -> ResultDocument:  # fmt: skip
    """The profile-filtered document of a verified read; the verdict is the report's, or ``failed`` when the card's
    personal data does not fit the document (the check ``citizen_data`` says so)."""
    read, key = order.read, order.key
    checks = [Check.of(check) for check in report.checks]
    verdict = report.verdict
    try:
        if read.dg13 is None:
            raise ValueError("no DG13")
        photo = read.dg2.image if key.include_photo and read.dg2 is not None else None
        citizen: CitizenData | None = citizen_from(read.dg13, photo_jpeg=photo)
    except ValueError as exc:  # pydantic's ValidationError included
        citizen = None
        verdict = Verdict.FAILED
        reason = f"the card's personal data does not fit the result document ({type(exc).__name__})"
        checks.append(Check(name="citizen_data", status=CheckStatus.FAILED, reason=reason))
    qr_format = _QR_FORMATS[key.qr.format] if key.qr else None
    return make_result(
        terminal_id=terminal_id, ward_code=ward_code, profile=order.profile or default_profile, verdict=verdict,
        checks=checks, citizen=citizen, qr=QrUsage(used=key.qr is not None, format=qr_format),
        timing=ReadTiming(apdu_count=read.stats.apdus, read_ms=order.read_ms, verify_ms=verify_ms),
        # One time evidence for the checks, completed_at and the clock object: they must agree.
        completed_at=report.verified_at, include_photo=key.include_photo, request_id=order.request_id,
        active_auth=ActiveAuthEvidence.for_office(read.active_auth, read.dg15, order.challenge),
        clock=ClockEvidence.of(report.clock), consent_ref=key.consent_ref, files=read.files,
    )  # fmt: skip
