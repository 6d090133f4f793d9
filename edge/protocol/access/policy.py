"""Which access control to run, and how to fail: PACE first, BAC only when allowed, never a retry storm.

Policy (ICAO 9303-11 4.2 and the CCCD facts):

* PACE whenever EF.CardAccess lists a PACE variant we implement (ECDH generic mapping, standardized curves).
* BAC when there is no usable PACE (no EF.CardAccess, no PACEInfo) or when the chip refuses to *start* PACE
  (:class:`PaceNotSupportedError`) and the caller set ``allow_bac_fallback``. Any other PACE failure fails closed:
  silently dropping to BAC would let an attacker downgrade the channel.
* A rejected key (:class:`AccessKeyRejectedError`) is final for this call: retrying a wrong CAN or MRZ only makes
  the officer wait (and may count against the chip's retry counter). A transient failure (a chip answer that
  does not fit the protocol) is retried once, then reported.

On success the eMRTD applet is selected (plain before BAC, secured after PACE), so callers always receive a
channel ready for READ BINARY. After :class:`SessionLostError` a caller calls :func:`open_secure_channel` again on
``channel.connection.inner`` and resumes reading at the offset it reached.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from enum import Enum

from edge.errors import (
    AccessControlError,
    AccessKeyRejectedError,
    PaceNotSupportedError,
    SecureMessagingError,
    StatusWordError,
)
from edge.protocol import crypto, ec
from edge.protocol.access.bac import BacResult, perform_bac
from edge.protocol.access.card_access import PaceInfo, parse_security_infos
from edge.protocol.access.pace import PacePassword, PaceResult, perform_pace
from edge.protocol.apdu import ApduConnection, CommandApdu
from edge.protocol.crypto import Random
from edge.protocol.iso7816 import EMRTD_AID, INS_SELECT
from edge.protocol.sm import SecureMessaging

log = logging.getLogger(__name__)

#: Preference among PACE cipher suites when a chip lists several (the CCCD lists AES-128 only).
_SUITE_PREFERENCE = (crypto.AES128, crypto.AES256, crypto.AES192, crypto.TDES)


@dataclass(frozen=True, slots=True)
class CanKey:
    """Card access number: the last 6 digits of the 12-digit ID on a CCCD."""

    can: str = field(repr=False)

    def __post_init__(self) -> None:
        if not (self.can.isascii() and self.can.isdigit() and len(self.can) == 6):  # '１' is a digit too
            raise AccessKeyRejectedError("a CAN is 6 digits")


@dataclass(frozen=True, slots=True)
class MrzKey:
    """The MRZ key: document number, date of birth and date of expiry (YYMMDD)."""

    document_number: str = field(repr=False)
    date_of_birth: str = field(repr=False)
    date_of_expiry: str = field(repr=False)

    def mrz_information(self) -> str:
        return crypto.mrz_information(self.document_number, self.date_of_birth, self.date_of_expiry)


AccessKey = CanKey | MrzKey


class AccessMethod(Enum):
    PACE = "PACE"
    BAC = "BAC"


@dataclass(frozen=True, slots=True)
class SecureChannel:
    """A secured, applet-selected connection and how it was obtained."""

    method: AccessMethod
    result: PaceResult | BacResult
    connection: SecureMessaging
    attempts: int


def choose_pace_info(card_access: bytes | None) -> tuple[PaceInfo | None, bool]:
    """(the PACEInfo we will run or None, whether EF.CardAccess lists PACE at all). Malformed -> LdsError."""
    if card_access is None:
        return None, False
    listed = parse_security_infos(card_access, what="EF.CardAccess").pace
    usable = [info for info in listed if info.is_ecdh_gm and info.parameter_id in ec.STANDARD_PARAMETERS]
    usable.sort(key=lambda info: _SUITE_PREFERENCE.index(info.suite))
    return (usable[0] if usable else None), bool(listed)


def _select_applet(conn: ApduConnection) -> None:
    conn.send_and_receive(CommandApdu(0x00, INS_SELECT, 0x04, 0x0C, EMRTD_AID)).check("SELECT eMRTD applet")


def _via_pace(conn: ApduConnection, key: AccessKey, info: PaceInfo, rng: Random) -> tuple[PaceResult, SecureMessaging]:
    password = PacePassword.can(key.can) if isinstance(key, CanKey) else PacePassword.mrz(key.mrz_information())
    result = perform_pace(conn, password, info, rng=rng)
    secured = SecureMessaging(conn, result.keys, result.ssc)
    _select_applet(secured)
    return result, secured


def _via_bac(conn: ApduConnection, key: AccessKey, rng: Random) -> tuple[BacResult, SecureMessaging]:
    if not isinstance(key, MrzKey):
        raise AccessControlError(
            "this chip offers only BAC, which needs the MRZ key", hint="scan or type the MRZ instead of the CAN"
        )
    _select_applet(conn)
    result = perform_bac(conn, key.mrz_information(), rng=rng)
    return result, SecureMessaging(conn, result.keys, result.ssc)


def open_secure_channel(
    conn: ApduConnection,
    key: AccessKey,
    *,
    card_access: bytes | None,
    allow_bac_fallback: bool = False,
    rng: Random = os.urandom,
) -> SecureChannel:
    """Authenticate with ``key`` and return the secured channel (see the module docstring for the policy)."""
    info, pace_listed = choose_pace_info(card_access)
    use_pace = info is not None
    if pace_listed and not use_pace and not allow_bac_fallback:
        raise PaceNotSupportedError("EF.CardAccess lists only PACE variants this terminal does not implement")
    attempts = 0
    while True:
        attempts += 1
        try:
            if use_pace and info is not None:
                pace_result, secured = _via_pace(conn, key, info, rng)
                return SecureChannel(AccessMethod.PACE, pace_result, secured, attempts)
            bac_result, secured = _via_bac(conn, key, rng)
            return SecureChannel(AccessMethod.BAC, bac_result, secured, attempts)
        except AccessKeyRejectedError:
            raise
        except PaceNotSupportedError as exc:
            if not allow_bac_fallback or not use_pace:
                raise
            log.info("PACE refused by the chip (%s); falling back to BAC as allowed", exc.args[0] if exc.args else "")
            use_pace = False
            attempts -= 1  # switching method is not a retry
        except (AccessControlError, SecureMessagingError, StatusWordError) as exc:
            log.info("secure channel attempt %d failed: %s", attempts, type(exc).__name__)
            if attempts >= 2:
                if isinstance(exc, AccessControlError):
                    raise
                reason = exc.args[0] if exc.args else type(exc).__name__
                raise AccessControlError(f"secure channel could not be opened: {reason}") from exc
