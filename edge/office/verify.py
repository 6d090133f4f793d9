"""The office's check of a result token: decrypt (if JWE), verify the terminal's ES256 signature, validate the doc.

Terminal keys come from their certificates (PEM) or a JWKS file; the ``kid`` is the RFC 7638 thumbprint in both
cases, so nothing has to be kept in sync by hand. An office that sent its own Active Authentication challenge can
also check that the chip answered *this* challenge (:func:`check_active_auth`): proof that the card was on the
reader for this request, not an old answer replayed. That the DG15 key is the issuer's still rests on the
terminal's signed hash check.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from edge.daemon.signing import (
    RESULT_TYP,
    decrypt_jwe,
    is_jwe,
    jwk_to_public_key,
    key_id,
    load_public_key,
    verify_jws,
)
from edge.errors import ConfigError, PublicKeyFormatError, SignatureError, TokenError
from edge.protocol.access.active_auth import verify_active_auth
from edge.protocol.keys import load_public_key as load_spki
from edge.protocol.result import ResultDocument
from edge.protocol.verify.checks import DG_HASHES, VERDICT_WORDS, CheckStatus, Verdict


@dataclass(frozen=True, slots=True)
class VerifiedResult:
    iss: str
    jti: str
    seq: int
    iat: int
    exp: int
    kid: str
    document: ResultDocument
    token: str  # the inner JWS, kept as evidence

    def summary(self) -> dict[str, Any]:
        """What may be printed or logged: no personal data."""
        verdict = self.document.verdict
        return {"iss": self.iss, "seq": self.seq, "jti": self.jti, "verdict": verdict.value,
                "rung": verdict.rung.value, "verdict_words": asdict(VERDICT_WORDS[verdict]),
                "profile": self.document.procedure_profile.value, "ward": self.document.ward_code}


def load_keys(certs: Iterable[Path] = (), jwks: Path | None = None) -> dict[str, ec.EllipticCurvePublicKey]:
    """Trusted terminal keys by kid, from PEM certificates / public keys and/or a JWKS file."""
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
    if not keys:
        raise ConfigError("no terminal keys given", key="--cert/--jwks")
    return keys


def verify_result(
    token: str | bytes,
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    now: int,
    *,
    decrypt_key: ec.EllipticCurvePrivateKey | None = None,
) -> VerifiedResult:
    """Check one token from ``/result``; raises a :class:`TokenError` (or subclass) when it must not be trusted."""
    if is_jwe(token):
        if decrypt_key is None:
            raise TokenError("result is encrypted (JWE) and no ward decryption key was given")
        token = decrypt_jwe(token, decrypt_key)
    try:  # strict: a replacement character would only fail later, outside the typed errors
        text = token.decode("ascii") if isinstance(token, bytes) else token
    except UnicodeDecodeError:
        raise TokenError("result token is not ASCII") from None
    verified = verify_jws(text, keys, now, typ=RESULT_TYP)
    claims = verified.claims
    try:
        document = ResultDocument.model_validate(claims.get("result"))
    except ValidationError as exc:
        raise TokenError(f"result document invalid: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    iss, jti, seq = claims.get("iss"), claims.get("jti"), claims.get("seq")
    if not isinstance(iss, str) or not isinstance(jti, str) or not isinstance(seq, int) or isinstance(seq, bool):
        raise TokenError("claims need string iss, string jti and integer seq")
    if document.terminal_id != iss:
        raise TokenError(f"document terminal {document.terminal_id!r} differs from issuer {iss!r}")
    return VerifiedResult(iss=iss, jti=jti, seq=seq, iat=claims["iat"], exp=claims["exp"],
                          kid=str(verified.header["kid"]), document=document, token=text)


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
