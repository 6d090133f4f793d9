"""Unpadded base64url, the JOSE spelling: one encoder and one strict decoder for tokens and result documents.

Strict: only the canonical spelling of some bytes decodes (no padding, no '+', '/', whitespace, no non-zero
trailing bits), so a signed token or a document field has exactly one textual form.
"""

from __future__ import annotations

import base64
import binascii


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: object) -> bytes:
    """The bytes ``text`` spells; ValueError unless it is their one canonical unpadded base64url spelling."""
    if not isinstance(text, str) or not text.isascii() or any(c in text for c in "=+/ \n\r\t"):
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not unpadded base64url") from None
    if b64url_encode(data) != text:
        raise ValueError("not unpadded base64url")
    return data
