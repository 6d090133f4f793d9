"""Messages that once stopped the office receiver for good, for the office and command-handler tests.

Each is built as an attacker on the broker would (no key: a forged header or body) or as a terminal with a bug
would (signed, but deep or non-ASCII), and named for the test ids.
"""

from __future__ import annotations

import json

from edge.protocol import jose

DEEP = 100_000  # nesting levels: far past Python's recursion limit
DEEP_OBJECT = b'{"a":' * DEEP


def _header(signer: jose.Signer, typ: str) -> str:
    return jose.b64url(json.dumps({"alg": "ES256", "kid": signer.kid, "typ": typ}).encode())


def _signed(signer: jose.Signer, header64: str, body64: str) -> bytes:
    signing_input = f"{header64}.{body64}"
    return f"{signing_input}.{jose.b64url(signer.sign(signing_input.encode('ascii')))}".encode()


def poison_messages(signer: jose.Signer, typ: str = jose.RESULT_TYP) -> dict[str, bytes]:
    """name -> payload; every one must be refused with a typed error."""
    header = _header(signer, typ)
    return {
        # A byte outside ASCII in the body: decoded with "replace", it became U+FFFD and failed an ASCII encode.
        "non_ascii_body": f"{header}.e30\u00e9.{jose.b64url(bytes(64))}".encode("latin-1"),
        "non_ascii_utf8": f"{header}.e30\u1ec7.{jose.b64url(bytes(64))}".encode(),
        # Deep JSON in the unsigned header: json.loads raised RecursionError before any signature check.
        "deep_header": f"{jose.b64url(b'[' * DEEP)}.e30.{jose.b64url(bytes(64))}".encode(),
        # Deep JSON in a body with a good signature (a terminal's bug, or a stolen key).
        "deep_signed_body": _signed(signer, header, jose.b64url(b"[" * DEEP)),
        "deep_object_header": f"{jose.b64url(DEEP_OBJECT)}.e30.{jose.b64url(bytes(64))}".encode(),
        "not_a_token": b"\x00\xff garbage",
    }
