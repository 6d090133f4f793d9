"""Receipts (edge.protocol.receipt): the gateway's signed word that results are stored, as the terminal checks it."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.errors import ReceiptRefusedError
from edge.protocol.jose import b64url, es256_signature, key_id, sign_compact
from edge.protocol.receipt import (
    MAX_RECEIPT_RESULTS,
    RECEIPT_TYP,
    ReceiptClaims,
    receipt_claims,
    seq_ranges,
    sign_receipt,
    verify_receipt,
)

NOW = 1_800_000_000
KEY = ec.generate_private_key(ec.SECP256R1())
KEYS = {key_id(KEY.public_key()): KEY.public_key()}
JTIS = [str(uuid.UUID(int=n)) for n in range(10)]


def _claims(**changes: object) -> ReceiptClaims:
    claims = receipt_claims(gateway="gateway:office-1", terminal_id="T-01", ward_code="W1",
                            results=[(1, JTIS[1]), (2, JTIS[2]), (3, JTIS[3]), (7, JTIS[7])], now=NOW, jti="r-1")
    return claims.model_copy(update=changes) if changes else claims


def _raw(body: dict[str, object], *, typ: str = RECEIPT_TYP, key: ec.EllipticCurvePrivateKey = KEY) -> bytes:
    header = {"alg": "ES256", "kid": key_id(key.public_key()), "typ": typ}
    return sign_compact(header, body, lambda data: es256_signature(key, data)).encode()


def _verify(token: bytes, *, now: int | None = NOW, terminal: str = "T-01", ward: str = "W1") -> ReceiptClaims:
    return verify_receipt(token, KEYS, terminal_id=terminal, ward_code=ward, now=now).claims


def test_round_trip_names_the_results_by_jti_and_seq_ranges() -> None:
    token = sign_receipt(_claims(), KEY)
    claims = _verify(token)
    assert claims.seqs == ((1, 3), (7, 7))
    assert claims.jtis == (JTIS[1], JTIS[2], JTIS[3], JTIS[7])
    assert claims.covers(2, JTIS[2])
    assert not claims.covers(2, JTIS[5]), "the jti decides: seq 2 of another result is not named"
    assert not claims.covers(5, JTIS[5])
    assert len(token) < 1024


def test_a_seq_only_receipt_names_its_ranges() -> None:
    claims = ReceiptClaims(iss="gateway:g", sub="T-01", ward="W1", iat=NOW, exp=NOW + 60, jti="r",
                           seqs=((1, 3), (10, 20)))
    assert [seq for seq in range(25) if claims.covers(seq, "x")] == [1, 2, 3, *range(10, 21)]


def test_seq_ranges_merge() -> None:
    assert seq_ranges([7, 1, 3, 2, 2, 9, 8]) == ((1, 3), (7, 9))
    assert seq_ranges([]) == ()


@pytest.mark.parametrize(("token", "reason"), [
    (sign_receipt(_claims(), ec.generate_private_key(ec.SECP256R1())), "unknown_key"),  # a foreign gateway's key
    (b"x.y", "malformed"),
    (b"\xff.\xfe.\xfd", "malformed"),
    (b"a" * 200_000, "malformed"),
])  # fmt: skip
def test_refused(token: bytes, reason: str) -> None:
    with pytest.raises(ReceiptRefusedError) as caught:
        _verify(token)
    assert caught.value.reason == reason
    assert caught.value.reason in ReceiptRefusedError.REASONS


def test_unsigned_and_tampered_receipts_are_refused() -> None:
    token = sign_receipt(_claims(), KEY)
    head, body, _sig = token.split(b".")
    unsigned = b64url(json.dumps({"alg": "none", "kid": key_id(KEY.public_key()), "typ": RECEIPT_TYP}).encode())
    with pytest.raises(ReceiptRefusedError) as caught:
        _verify(f"{unsigned}.{body.decode()}.".encode())
    assert caught.value.reason == "malformed"
    other = sign_receipt(_claims(sub="T-02"), KEY).split(b".")[1]
    with pytest.raises(ReceiptRefusedError) as caught:
        _verify(b".".join((head, other, _sig)))
    assert caught.value.reason == "bad_signature"


def test_another_token_type_by_the_same_key_is_no_receipt() -> None:
    """A command (or anything else) the same key signed cannot be replayed as a receipt."""
    with pytest.raises(ReceiptRefusedError, match="token type"):
        _verify(_raw(_claims().model_dump(mode="json"), typ="cccd-command+jwt"))


@pytest.mark.parametrize(("terminal", "ward"), [("T-02", "W1"), ("T-01", "W2")])
def test_a_receipt_for_another_terminal_is_refused(terminal: str, ward: str) -> None:
    with pytest.raises(ReceiptRefusedError) as caught:
        _verify(sign_receipt(_claims(), KEY), terminal=terminal, ward=ward)
    assert caught.value.reason == "wrong_terminal"


def test_times() -> None:
    token = sign_receipt(_claims(), KEY)
    claims = _claims()
    for now in (claims.exp + 121, NOW - 121):
        with pytest.raises(ReceiptRefusedError) as caught:
            _verify(token, now=now)
        assert caught.value.reason == "expired"
    assert _verify(token, now=None).iat == NOW, "a terminal without a trusted clock judges iat itself"
    assert _verify(token, now=claims.exp + 100).jti == "r-1"


@pytest.mark.parametrize("change", [
    {"extra": 1},
    {"iat": True},
    {"iat": "1800000000"},
    {"iat": 1.8e9},
    {"seqs": [[3, 1]]},
    {"seqs": [[1, 3], [2, 5]]},
    {"seqs": [[1, 3], [4, 5]]},  # adjacent: not the one spelling
    {"seqs": [[5, 6], [1, 2]]},
    {"seqs": [[-1, 2]]},
    {"seqs": [[1, 2, 3]]},
    {"seqs": [], "jtis": []},
    {"jtis": ["a", "a"]},
    {"jtis": ["with space"]},
    {"jtis": ["x" * 129]},
    {"jtis": [f"j{n}" for n in range(MAX_RECEIPT_RESULTS + 1)]},
    {"exp": NOW - 1},
    {"exp": NOW + 31 * 24 * 3600},
    {"sub": "T/01"},
    {"sub": None},
])  # fmt: skip
def test_malformed_claims_are_refused(change: dict[str, object]) -> None:
    body = _claims().model_dump(mode="json") | change
    with pytest.raises(ReceiptRefusedError) as caught:
        _verify(_raw(body))
    assert caught.value.reason == "malformed"


def test_deeply_nested_claims_are_refused_without_recursion() -> None:
    token = _raw({"seqs": "placeholder"}).split(b".")
    deep = b64url(b"[" * 100_000).encode()
    with pytest.raises(ReceiptRefusedError):
        _verify(b".".join((token[0], deep, token[2])))


def test_the_builder_refuses_too_many_results() -> None:
    with pytest.raises(ValidationError):
        receipt_claims(gateway="gateway:g", terminal_id="T-01", ward_code="W1", now=NOW, jti="r",
                       results=[(n, f"j{n}") for n in range(MAX_RECEIPT_RESULTS + 1)])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_any_bytes_end_in_a_typed_refusal(data: bytes) -> None:
    with pytest.raises(ReceiptRefusedError):
        _verify(data)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["iss", "sub", "ward", "iat", "exp", "jti", "seqs", "jtis", "x"]),
                       st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                       | st.lists(st.lists(st.integers(), max_size=3), max_size=3), max_size=9))
def test_any_signed_claims_end_in_a_receipt_or_a_typed_refusal(body: dict[str, object]) -> None:
    with contextlib.suppress(ReceiptRefusedError):
        _verify(_raw(body))
