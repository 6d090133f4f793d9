"""JSON from untrusted bytes, refused by size and nesting depth before the parser sees it.

Python's ``json`` recurses once per nesting level: a few kilobytes of ``[[[[`` raise ``RecursionError`` (not a
``ValueError``), which no parser boundary expects and which kills the thread it runs on. :func:`check_json_bounds`
measures the depth with one flat, linear scan (strings are skipped whole by the regex engine, so brackets quoted
inside them do not count), and :func:`loads_bounded` parses only what passed it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edge.errors import JsonError

#: Deeper than any document cccd-edge writes (a result is 4 levels deep) and far below Python's recursion limit.
MAX_JSON_DEPTH = 32

# A whole string (escapes included), one bracket, or a quote that opens a string never closed.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|"', re.DOTALL)
_OPENERS = frozenset(b"[{")


def check_json_bounds(data: bytes, *, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JsonError` if ``data`` is longer than ``max_bytes`` or nests deeper than ``max_depth``."""
    if len(data) > max_bytes:
        raise JsonError(f"{len(data)} bytes, more than the {max_bytes} accepted", what=what)
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return  # it cannot nest deeper than it has brackets (a result has about ten): no scan needed
    depth = 0
    for match in _TOKENS.finditer(data):
        token = match.group()
        if len(token) != 1:
            continue  # a complete string
        if token[0] in _OPENERS:
            depth += 1
            if depth > max_depth:
                raise JsonError(f"nested deeper than {max_depth} levels", what=what, offset=match.start())
        elif token == b'"':
            return  # an unterminated string: the parser refuses it, and nothing after it can nest
        else:
            depth -= 1


def loads_bounded(data: bytes, *, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(data)`` within the bounds; any failure is a :class:`JsonError` that names ``what``."""
    check_json_bounds(data, what=what, max_bytes=max_bytes, max_depth=max_depth)
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise JsonError(f"not JSON: {_position(exc)}", what=what) from None


class _NotJsonNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    """Python's parser takes NaN and Infinity, which JSON has not: a value kept from them breaks whatever serialises
    it again (a page's JSON answer, a database's JSON column)."""
    raise _NotJsonNumber(f"{name} is not a JSON number")


def _position(exc: Exception) -> str:
    """Where the parser gave up, without the text around it (that may be a citizen's data)."""
    if isinstance(exc, _NotJsonNumber):
        return str(exc)
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at offset {exc.pos}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 at offset {exc.start}"
    return type(exc).__name__
