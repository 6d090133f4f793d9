"""The office's check of a result token: decrypt (if JWE), verify the terminal's ES256 signature, validate the doc.

Terminal keys are found through the ward CA: a result carries its device certificate (``x5c``), checked against
the ward CA and its CRL (:class:`~edge.office.ward_trust.WardTrust`), so a new terminal needs no office
configuration. Keys can also be configured by hand, from certificates (PEM) or a JWKS file (tokens without
``x5c``, from terminals provisioned before it); the ``kid`` is the RFC 7638 thumbprint in every case
(:class:`TerminalKeys`). An office that sent its own Active Authentication challenge can
also check that the chip answered *this* challenge (:func:`check_active_auth`): proof that the card was on the
reader for this request, not an old answer replayed. That the DG15 key is the issuer's still rests on the
terminal's signed hash check.

A result's times never make it invalid (a result is evidence of a read, not a permission; commands keep their
strict ``exp``): one signed by a terminal whose clock said 1970, 2020 or next year, or delivered 90 days late, is
accepted and carries its :class:`ResultFlag` values for the officer and the procedure software.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from edge.errors import ConfigError, DeviceCertificateError, PublicKeyFormatError, SignatureError, TokenError
from edge.office.ward_trust import DeviceIdentity, WardTrust
from edge.protocol.access.active_auth import verify_active_auth
from edge.protocol.jose import (
    DEFAULT_LEEWAY,
    RESULT_LATE_AFTER,
    CompactJws,
    decrypt_jwe,
    is_jwe,
    jwk_to_public_key,
    key_id,
    parse_compact,
    verify_result_jws,
    x5c_chain,
)
from edge.protocol.keys import load_public_key as load_spki
from edge.protocol.receipt import MAX_RESULT_JTI_CHARS, RESULT_JTI_PATTERN
from edge.protocol.result import ResultDocument
from edge.protocol.verify.checks import DG_HASHES, VERDICT_WORDS, CheckStatus, Verdict
from edge.signers import load_public_key

#: No terminal signed a result before this software existed (its first commit, November 2026). Unlike the terminal's
#: ``edge.protocol.clock.BUILD_FLOOR``, raised on releases, this never moves: an office newer than a terminal must
#: not call that terminal's honest results impossible.
EARLIEST_RESULT = datetime(2026, 11, 1, tzinfo=UTC)


class ResultFlag(StrEnum):
    """What the office notes about a result's times; none of them refuses it (module docstring)."""

    #: Read more than ``RESULT_LATE_AFTER`` (a day) before it arrived, by a time the office can go by: the clock
    #: object's trusted ``evidence_time``, or ``iat`` from a terminal that says nothing about its clock.
    LATE = "late"
    #: Signed or read at a time ahead of the office's clock beyond the leeway (a terminal clock running ahead).
    FUTURE = "future"
    #: The terminal's time was wrong for certain: ahead of the office, before this software existed
    #: (:data:`EARLIEST_RESULT`: a Pi without RTC booted in 1970, a clock left in 2020), or before the ``floor`` the
    #: document's clock says had passed. The read's age is then unknown: it is not called late.
    CLOCK_SKEW = "clock_skew"
    #: The document's ``clock`` says the terminal's time was not synchronised: ``iat`` is the system clock's word.
    CLOCK_UNSYNCHRONISED = "clock_unsynchronised"


def result_flags(iat: int, document: ResultDocument, now: int, *,
                 leeway: int = DEFAULT_LEEWAY) -> tuple[ResultFlag, ...]:  # fmt: skip
    """The flags of a result signed at ``iat`` and received at ``now`` (the office's clock), in declaration order."""
    clock = document.clock
    trusted = int(clock.evidence_time.timestamp()) if clock is not None and clock.evidence_time is not None else None
    claimed = (iat,) if trusted is None else (iat, trusted)
    flags: set[ResultFlag] = set()
    if any(time > now + leeway for time in claimed):
        flags |= {ResultFlag.FUTURE, ResultFlag.CLOCK_SKEW}
    floor = max(EARLIEST_RESULT, clock.floor) if clock is not None and clock.floor is not None else EARLIEST_RESULT
    if any(time < floor.timestamp() - leeway for time in claimed):
        flags.add(ResultFlag.CLOCK_SKEW)
    if clock is not None and not clock.synchronised:
        flags.add(ResultFlag.CLOCK_UNSYNCHRONISED)
    read_at = trusted if clock is not None else iat  # an unsynchronised clock gives no time to go by
    if ResultFlag.CLOCK_SKEW not in flags and read_at is not None and now - read_at > RESULT_LATE_AFTER:
        flags.add(ResultFlag.LATE)
    return tuple(flag for flag in ResultFlag if flag in flags)


#: Largest seq taken: the office stores it as an SQLite INTEGER.
MAX_SEQ = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class VerifiedResult:
    iss: str
    jti: str
    seq: int
    iat: int
    exp: int | None  # what terminals before results stopped expiring signed; shown, never enforced
    kid: str
    document: ResultDocument
    token: str  # the inner JWS, kept as evidence
    flags: tuple[ResultFlag, ...] = ()  # judged when it was verified (:func:`result_flags`)

    def summary(self) -> dict[str, Any]:
        """What may be printed or logged: no personal data."""
        verdict = self.document.verdict
        return {"iss": self.iss, "seq": self.seq, "jti": self.jti, "verdict": verdict.value,
                "rung": verdict.rung.value, "verdict_words": asdict(VERDICT_WORDS[verdict]),
                "profile": self.document.procedure_profile.value, "ward": self.document.ward_code,
                "flags": [flag.value for flag in self.flags]}


@dataclass(frozen=True, slots=True)
class TerminalKeys:
    """Where the office finds the key of a result's signer.

    A token with a device certificate (``x5c``) is judged by the ward CA when ``ward`` is given: the certificate
    must chain to it and not be revoked, and it names the terminal (the token's ``iss``) and its ward (the
    document's ``ward_code``). A token without one (older terminals, a lab set-up) is checked with the keys
    ``configured`` by hand, chosen by ``kid``; so is every token when no ward CA is given.
    """

    configured: Mapping[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    ward: WardTrust | None = None

    def for_token(self, token: CompactJws, now: int
                  ) -> tuple[Mapping[str, ec.EllipticCurvePublicKey], DeviceIdentity | None]:  # fmt: skip
        """The keys to verify ``token`` with, and the device certificate's identity when the ward CA vouched."""
        chain = x5c_chain(token.header)
        if not chain or self.ward is None:
            return self.configured, None
        identity = self.ward.device(chain, now=now, signed_at=lambda: _unverified_iat(token))
        return {identity.kid: identity.key}, identity


def _unverified_iat(token: CompactJws) -> int | None:
    """The ``iat`` a token claims, before its signature is checked: only to judge a certificate that has expired
    since (the signature is checked right after, with that certificate's key)."""
    try:
        iat = token.unverified_payload().get("iat")
    except TokenError:
        return None
    return iat if isinstance(iat, int) and not isinstance(iat, bool) else None


def load_keys(certs: Iterable[Path] = (), jwks: Path | None = None, *,
              required: bool = True) -> dict[str, ec.EllipticCurvePublicKey]:  # fmt: skip
    """Trusted terminal keys by kid, from PEM certificates / public keys and/or a JWKS file (``required``: at least
    one, for an office that has no ward CA to find keys through)."""
    keys = {}
    for path in certs:
        key = load_public_key(path, config_key="--cert")
        keys[key_id(key)] = key
    if jwks is not None:
        try:
            document = json.loads(jwks.read_text(encoding="utf-8"))
            entries = document["keys"]
            if not isinstance(entries, list):
                raise TypeError("keys is not a list")
            for entry in entries:
                key = jwk_to_public_key(entry)
                keys[key_id(key)] = key
        except (OSError, ValueError, KeyError, TypeError, TokenError) as exc:
            raise ConfigError(f"{jwks}: not a usable JWKS ({exc})", key="--jwks") from None
    if not keys and required:
        raise ConfigError("no terminal keys given", key="--cert/--jwks")
    return keys


def verify_result(
    token: str | bytes,
    keys: Mapping[str, ec.EllipticCurvePublicKey] | TerminalKeys,
    now: int,
    *,
    decrypt_key: ec.EllipticCurvePrivateKey | None = None,
) -> VerifiedResult:
    """Check one token from ``/result`` received at ``now``; raises a :class:`TokenError` (or subclass) when it must
    not be trusted. Its times only flag it (:func:`result_flags`). ``keys``: configured keys by kid, or
    :class:`TerminalKeys` (the ward CA through the token's device certificate)."""
    if is_jwe(token):
        if decrypt_key is None:
            raise TokenError("result is encrypted (JWE) and no ward decryption key was given")
        token = decrypt_jwe(token, decrypt_key)
    try:  # strict: a replacement character would only fail later, outside the typed errors
        text = token.decode("ascii") if isinstance(token, bytes) else token
    except UnicodeDecodeError:
        raise TokenError("result token is not ASCII") from None
    jws = parse_compact(text)
    trusted, device = (keys if isinstance(keys, TerminalKeys) else TerminalKeys(keys)).for_token(jws, now)
    if device is not None and jws.header.get("kid") != device.kid:
        raise DeviceCertificateError("the token's kid is not the key of the certificate it carries")
    verified = verify_result_jws(jws, trusted)
    claims = verified.claims
    try:
        document = ResultDocument.model_validate(claims.get("result"))
    except ValidationError as exc:
        raise TokenError(f"result document invalid: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    iss, jti, seq = claims.get("iss"), claims.get("jti"), claims.get("seq")
    if not isinstance(iss, str) or not isinstance(jti, str) or not isinstance(seq, int) or isinstance(seq, bool):
        raise TokenError("claims need string iss, string jti and integer seq")
    if not 0 <= seq <= MAX_SEQ:
        raise TokenError(f"seq {seq} is out of range")
    if len(jti) > MAX_RESULT_JTI_CHARS or not re.fullmatch(RESULT_JTI_PATTERN, jti):
        raise TokenError(f"jti must be 1 to {MAX_RESULT_JTI_CHARS} printable ASCII characters")
    if document.terminal_id != iss:
        raise TokenError(f"document terminal {document.terminal_id!r} differs from issuer {iss!r}")
    if device is not None and (device.terminal_id, device.ward_code) != (iss, document.ward_code):
        raise DeviceCertificateError(f"signed under the certificate of {device.terminal_id!r} of ward "
                                     f"{device.ward_code!r}, but claims {iss!r} of ward {document.ward_code!r}")
    iat, exp = claims["iat"], claims.get("exp")
    return VerifiedResult(iss=iss, jti=jti, seq=seq, iat=iat, exp=exp if type(exp) is int else None,
                          kid=str(verified.header["kid"]), document=document, token=text,
                          flags=result_flags(iat, document, now))


@dataclass(frozen=True, slots=True)
class ActiveAuthCheck:
    """The office's own check of the chip's AA answer: ``absent`` when the document carries no evidence."""

    status: Literal["passed", "failed", "absent"]
    reason: str
    algorithm: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_dict(self) -> dict[str, str]:
        algorithm = {"algorithm": self.algorithm} if self.algorithm else {}
        return {"status": self.status, "reason": self.reason} | algorithm


def check_active_auth(document: ResultDocument, sent_challenge: bytes) -> ActiveAuthCheck:
    """Verify the document's AA evidence against the challenge this office sent, and nothing else.

    Evidence for any other challenge fails, however good its signature: an answer to a challenge the office did not
    choose could be an old one, replayed.
    """
    evidence = document.active_auth
    if evidence is None:
        return ActiveAuthCheck("absent", "the result carries no Active Authentication evidence")
    # The signature proves the chip holds the key in the evidence; only the SOD's hash over DG15 (checked by the
    # terminal: ``dg_hashes``) ties that key to the issuer. Without it a clone's own key would "pass" here.
    hashes = next((check for check in document.checks if check.name == DG_HASHES), None)
    if document.verdict is Verdict.FAILED or hashes is None or hashes.status is not CheckStatus.PASSED:
        return ActiveAuthCheck("failed", "the DG15 key is not shown to be the issuer's: the terminal's data-group "
                                         "hash check did not pass (verdict " + document.verdict.value + ")")
    if not hmac.compare_digest(evidence.challenge, sent_challenge):
        return ActiveAuthCheck("failed", "the chip answered another challenge than the one this office sent")
    try:
        chip_key = load_spki(evidence.public_key_spki)
        algorithm, _source = verify_active_auth(chip_key, sent_challenge, evidence.signature,
                                                signature_algorithm_oid=evidence.signature_algorithm)
    except (PublicKeyFormatError, SignatureError) as exc:
        return ActiveAuthCheck("failed", str(exc))
    if not document.verdict.proves_origin:  # the SOD vouches for DG15, but nobody vouches for the SOD's signer
        return ActiveAuthCheck("passed", "the chip signed this office's challenge with the DG15 key its SOD lists; "
                               "that SOD's signer does not chain to a trusted CSCA and is no known Document Signer "
                               f"(verdict {document.verdict.rung.value}), so a clone signed by its own DS would pass "
                               "this too", algorithm)  # fmt: skip
    return ActiveAuthCheck("passed", "the chip signed this office's challenge with the DG15 key", algorithm)
