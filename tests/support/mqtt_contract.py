"""Checks an MQTT message against the committed AsyncAPI document (``edge/schemas/asyncapi.json``), with the
``jsonschema`` library: the channel from the topic's last level, the payload against the message's schema, and for a
signed message its header's ``typ`` and its claims against ``x-jws-claims`` (a JWE is only checked for its form)."""

from __future__ import annotations

import base64
import binascii
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

from edge.errors import JsonError
from edge.protocol.bounded_json import loads_bounded

ASYNCAPI_PATH = Path(__file__).resolve().parents[2] / "edge" / "schemas" / "asyncapi.json"
_MAX_BYTES = 1 << 20  # as the office: a message is judged within bounds (deep or huge JSON is refused, not parsed)


@cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ASYNCAPI_PATH.read_text(encoding="utf-8"))
    return document


def _validator(schema: dict[str, Any]) -> Draft7Validator:
    """A validator for ``schema`` whose ``#/components/...`` references resolve inside the whole document."""
    root = {**_document(), **schema}
    return Draft7Validator(root)


@cache
def _validators(leaf: str) -> tuple[Draft7Validator, Draft7Validator | None, str | None]:
    message = _document()["components"]["messages"][leaf]
    claims = message.get("x-jws-claims")
    return (_validator(message["payload"]), _validator(claims) if claims else None, message.get("x-jws-typ"))


def _b64url_json(segment: str) -> Any:
    return loads_bounded(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)), what="JWS part",
                         max_bytes=_MAX_BYTES)


def leaves() -> tuple[str, ...]:
    return tuple(_document()["components"]["messages"])


def violation(topic: str, payload: bytes) -> str | None:
    """Why ``payload`` on ``topic`` breaks the contract, or None when it keeps it."""
    levels = topic.split("/")
    leaf = levels[-1]
    if len(levels) < 4 or leaf not in leaves() or not all(levels[-3:-1]):
        return f"no channel for topic {topic!r}"
    if leaf == "status" and payload == b"":
        return None  # a retained status cleared
    payload_validator, claims_validator, typ = _validators(leaf)
    try:
        text = payload.decode("utf-8")
        value: Any = text if claims_validator is not None else loads_bounded(payload, what=leaf, max_bytes=_MAX_BYTES)
    except (UnicodeDecodeError, JsonError) as exc:
        return f"{leaf}: not {'text' if claims_validator is not None else 'JSON'}: {exc}"
    errors = sorted(payload_validator.iter_errors(value), key=lambda e: list(e.path))
    if errors:
        return f"{leaf}: {errors[0].message[:300]} at {list(errors[0].path)}"
    if claims_validator is None or text.count(".") != 2:
        return None  # JSON checked, or a JWE (its claims are for the office's key only)
    header_segment, claims_segment, _ = text.split(".")
    try:
        header, claims = _b64url_json(header_segment), _b64url_json(claims_segment)
    except (binascii.Error, UnicodeDecodeError, JsonError, ValueError) as exc:
        return f"{leaf}: JWS parts are not base64url JSON: {exc}"
    if not isinstance(header, dict) or header.get("typ") != typ:
        return f"{leaf}: JWS typ {header.get('typ') if isinstance(header, dict) else header!r}, expected {typ!r}"
    errors = sorted(claims_validator.iter_errors(claims), key=lambda e: list(e.path))
    if errors:
        return f"{leaf} claims: {errors[0].message[:300]} at {list(errors[0].path)}"
    return None
