"""End-to-end receipts: the office gateway's signed word that it has stored a terminal's results (issue 15).

A PUBACK only says the broker has a result; a receipt says the office's database has it. The gateway publishes one
on the terminal's own ``receipt`` topic (``{prefix}/{ward}/{terminal}/receipt``, QoS 1; the ward broker's ACL lets
only gateways write it and only that terminal read it) after the results it names are committed, and again for a
result that arrives twice (the terminal sent it again because the first receipt was lost).

Format: a compact JWS ES256, ``typ`` :data:`RECEIPT_TYP`, ``kid`` the RFC 7638 thumbprint of the signing key, no
``x5c``: the terminal trusts a key it was provisioned with (the ward's command key, or a receipt key installed the
same way), never one a message brings along. Claims (:class:`ReceiptClaims`, strict, every field capped):

``iss``   the gateway instance that stored them (``gateway:office-1``): for logs, trust comes from the key
``sub``   the terminal the results came from, ``ward`` its ward: a receipt for another terminal is refused
``iat``   the office's clock when it signed: a lower bound of the true time, which the terminal may use as a signed
          time source (``edge.daemon.clock.ClockState.observe_office_time``)
``exp``   ``iat`` + at most :data:`MAX_RECEIPT_LIFETIME`
``jti``   the receipt's own id (replay detection on the terminal)
``jtis``  the ``jti`` of each result stored, and ``seqs`` their ``seq`` as sorted, merged inclusive ranges

:meth:`ReceiptClaims.covers` is the one rule for "this receipt names this result": when ``jtis`` is given, the
result's ``jti`` must be in it (exact, whatever the seqs say: a terminal whose seq restarted cannot lose a new
result to an old receipt); a receipt with ``seqs`` only (a gateway acknowledging a range in bulk) names every seq
in its ranges. The gateway sends both.

Pure: bytes and a key in, objects out; the terminal's clock is passed in (``now``, None when it is not trusted).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.errors import JsonError, ReceiptRefusedError, TokenError, TokenSignatureError
from edge.protocol.bounded_json import check_json_bounds
from edge.protocol.jose import (
    ES256,
    b64url_decode,
    es256_signature,
    json_object,
    key_id,
    sign_compact,
    split_compact,
    unverified_header,
    verify_es256,
)

RECEIPT_TYP = "cccd-receipt+jwt"
#: Results one receipt names at most; the gateway splits a larger batch.
MAX_RECEIPT_RESULTS = 500
#: Seq ranges one receipt carries at most.
MAX_RECEIPT_RANGES = MAX_RECEIPT_RESULTS
#: Largest receipt token looked at: 500 jtis of 128 characters and their ranges fit in well under it.
MAX_RECEIPT_BYTES = 128 * 1024
#: A receipt queued at the broker for an offline terminal should still be good when it comes back: as long as the
#: results' own message expiry (7 days).
DEFAULT_RECEIPT_LIFETIME = 7 * 24 * 3600
MAX_RECEIPT_LIFETIME = 30 * 24 * 3600
#: Clock skew tolerated when the terminal checks ``iat`` / ``exp`` (the same as for commands).
RECEIPT_LEEWAY = 120
#: The office stores ``seq`` and times as SQLite INTEGERs.
MAX_SEQ = (1 << 63) - 1
#: A result ``jti`` the office accepts (and a receipt can name): printable ASCII, at most 128 characters (terminals
#: use a UUID, 36).
MAX_RESULT_JTI_CHARS = 128
RESULT_JTI_PATTERN = r"^[\x21-\x7e]{1,128}$"
_SEGMENT = r"^[A-Za-z0-9_.-]+$"  # terminal ids and ward codes (edge.config)

Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
SeqRange = tuple[Seq, Seq]
ResultJti = Annotated[str, Field(min_length=1, max_length=MAX_RESULT_JTI_CHARS, pattern=RESULT_JTI_PATTERN)]


class ReceiptClaims(BaseModel):
    """The claims of a receipt (module docstring). Strict: JSON types only, no coercion, nothing extra."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    iss: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")
    sub: str = Field(min_length=1, max_length=64, pattern=_SEGMENT)
    ward: str = Field(min_length=1, max_length=16, pattern=_SEGMENT)
    iat: int = Field(ge=0, le=MAX_SEQ)
    exp: int = Field(ge=0, le=MAX_SEQ)
    jti: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    seqs: tuple[SeqRange, ...] = Field(default=(), max_length=MAX_RECEIPT_RANGES)
    jtis: tuple[ResultJti, ...] = Field(default=(), max_length=MAX_RECEIPT_RESULTS)

    @model_validator(mode="after")
    def _consistent(self) -> ReceiptClaims:
        if not self.seqs and not self.jtis:
            raise ValueError("a receipt names at least one result (seqs or jtis)")
        if not self.iat <= self.exp <= self.iat + MAX_RECEIPT_LIFETIME:
            raise ValueError(f"exp must lie between iat and iat + {MAX_RECEIPT_LIFETIME} s")
        previous = -2
        for first, last in self.seqs:  # one spelling: sorted, merged, each first <= last
            if first > last or first <= previous + 1:
                raise ValueError("seqs must be sorted, disjoint, non-adjacent inclusive ranges")
            previous = last
        if len(set(self.jtis)) != len(self.jtis):
            raise ValueError("jtis must not repeat")
        return self

    def covers(self, seq: int, jti: str) -> bool:
        """Whether this receipt names the result ``(seq, jti)`` (module docstring: jtis decide when present)."""
        if self.jtis:
            return jti in self.jtis
        index = bisect.bisect_right(self.seqs, (seq, MAX_SEQ))
        return index > 0 and self.seqs[index - 1][0] <= seq <= self.seqs[index - 1][1]


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    claims: ReceiptClaims
    kid: str  # the trusted key that signed it


def seq_ranges(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Sorted, merged inclusive ranges of ``seqs``: ``[1, 2, 3, 7]`` -> ``((1, 3), (7, 7))``."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return tuple(ranges)


def receipt_claims(*, gateway: str, terminal_id: str, ward_code: str, results: Iterable[tuple[int, str]], now: int,
                   jti: str, lifetime: int = DEFAULT_RECEIPT_LIFETIME) -> ReceiptClaims:  # fmt: skip
    """The claims naming ``results`` (``(seq, jti)`` pairs, at most :data:`MAX_RECEIPT_RESULTS`), signed at ``now``.
    Raises :class:`ValueError` (pydantic's) for anything out of bounds."""
    pairs = sorted(set(results))
    return ReceiptClaims(iss=gateway, sub=terminal_id, ward=ward_code, iat=now, exp=now + lifetime, jti=jti,
                         seqs=seq_ranges(seq for seq, _ in pairs), jtis=tuple(dict.fromkeys(j for _, j in pairs)))


def readable_result_jti(token: bytes) -> str | None:
    """The ``jti`` of a result token the terminal can read (a compact JWS), unverified: the terminal matches its own
    results to receipts by it. None for a JWE (its claims are sealed to the ward) or anything that is not a result."""
    try:
        claims = json_object(b64url_decode(split_compact(token, 3)[1]), "result claims")
    except TokenError:
        return None
    jti = claims.get("jti")
    return jti if isinstance(jti, str) and re.fullmatch(RESULT_JTI_PATTERN, jti) else None


def sign_receipt(claims: ReceiptClaims, key: ec.EllipticCurvePrivateKey, *, kid: str | None = None) -> bytes:
    """The receipt token (ASCII bytes, what MQTT carries). ``kid``: the key's id, when the caller keeps it (a
    gateway signs a receipt per terminal per batch; deriving it each time was a tenth of the signing)."""
    header = {"alg": ES256, "kid": kid if kid is not None else key_id(key.public_key()), "typ": RECEIPT_TYP}
    body: dict[str, Any] = claims.model_dump(mode="json")
    return sign_compact(header, body, lambda data: es256_signature(key, data)).encode("ascii")


def verify_receipt(token: bytes | str, keys: Mapping[str, ec.EllipticCurvePublicKey], *, terminal_id: str,
                   ward_code: str, now: int | None, leeway: int = RECEIPT_LEEWAY) -> VerifiedReceipt:  # fmt: skip
    """Check a receipt arriving at terminal ``terminal_id`` of ``ward_code``; raises :class:`ReceiptRefusedError`.

    ``keys``: the receipt keys the terminal trusts, by kid. ``now``: the terminal's trusted time, or None when its
    clock is not synchronised (then ``iat``/``exp`` are only checked against each other, and the caller judges them
    against the floor it knows has passed). Replays (a ``jti`` seen before) are the caller's to refuse: it holds the
    state.
    """
    if len(token) > MAX_RECEIPT_BYTES:
        raise ReceiptRefusedError("malformed", f"{len(token)} bytes, more than the {MAX_RECEIPT_BYTES} accepted")
    try:
        header = unverified_header(token)
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise ReceiptRefusedError("malformed", "the header names no key (kid)")
        key = keys.get(kid)
        if key is None:
            raise ReceiptRefusedError("unknown_key", f"signed by key {kid!r}, which this terminal does not trust")
        header, payload = verify_es256(token, key)
    except TokenSignatureError as exc:
        raise ReceiptRefusedError("bad_signature", str(exc)) from None
    except ReceiptRefusedError:
        raise
    except TokenError as exc:
        raise ReceiptRefusedError("malformed", str(exc)) from None
    if header.get("typ") != RECEIPT_TYP:
        raise ReceiptRefusedError("malformed", f"token type {header.get('typ')!r}, expected {RECEIPT_TYP!r}")
    try:
        check_json_bounds(payload, what="receipt claims", max_bytes=MAX_RECEIPT_BYTES)
        claims = ReceiptClaims.model_validate_json(payload)
    except JsonError as exc:
        raise ReceiptRefusedError("malformed", str(exc)) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ReceiptRefusedError("malformed", f"claims invalid: {error['loc']}: {error['msg']}") from None
    if claims.sub != terminal_id or claims.ward != ward_code:
        raise ReceiptRefusedError("wrong_terminal", f"for terminal {claims.sub!r} of ward {claims.ward!r}")
    if now is not None and now > claims.exp + leeway:
        raise ReceiptRefusedError("expired", f"expired {now - claims.exp} s ago")
    if now is not None and claims.iat > now + leeway:
        raise ReceiptRefusedError("expired", f"issued {claims.iat - now} s in the future")
    return VerifiedReceipt(claims, kid)
