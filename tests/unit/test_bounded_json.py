"""Untrusted JSON is measured before it is parsed: too large or too deep is a JsonError, never a RecursionError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import JsonError, ParseError
from edge.protocol.bounded_json import MAX_JSON_DEPTH, check_json_bounds, loads_bounded


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


def test_depth_is_refused_before_the_parser_recurses() -> None:
    with pytest.raises(RecursionError):  # what an unbounded json.loads does with a few hundred kilobytes
        json.loads(nested(200_000))
    with pytest.raises(JsonError, match=f"deeper than {MAX_JSON_DEPTH}") as info:
        loads_bounded(nested(200_000), what="claims", max_bytes=1 << 20)
    assert isinstance(info.value, ParseError)
    assert info.value.what == "claims"
    assert loads_bounded(nested(MAX_JSON_DEPTH), what="x", max_bytes=1000) is not None
    with pytest.raises(JsonError, match="deeper"):
        check_json_bounds(b'{"a": ' + nested(MAX_JSON_DEPTH) + b"}", what="x", max_bytes=1000)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"a": "[" * 1000, "b": '\\"[[[[' * 100, "c": [1, 2]}).encode()
    assert loads_bounded(text, what="x", max_bytes=1 << 20)["c"] == [1, 2]


def test_size_is_refused_before_anything() -> None:
    with pytest.raises(JsonError, match="1001 bytes, more than the 1000"):
        check_json_bounds(b" " * 1001, what="x", max_bytes=1000)


@pytest.mark.parametrize("data", [b"", b"{", b'{"a": "unterminated [[[[', b"\xff\xfe[", b"1" * 5000, b"[1,]",
                                  b'"\xc3"'])
def test_malformed_is_a_json_error(data: bytes) -> None:
    with pytest.raises(JsonError, match="not JSON"):
        loads_bounded(data, what="x", max_bytes=1 << 20)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                 max_size=3),
                     max_leaves=40)


@settings(max_examples=200)
@given(value=_JSON)
def test_the_scan_measures_what_the_parser_would_nest(value: Any) -> None:
    data = json.dumps(value).encode()
    depth = depth_of(value)
    check_json_bounds(data, what="x", max_bytes=len(data), max_depth=depth)
    if depth:
        with pytest.raises(JsonError, match="deeper"):
            check_json_bounds(data, what="x", max_bytes=len(data), max_depth=depth - 1)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(constant: bytes) -> None:
    """Python's parser takes them; a status holding one was kept and then broke the fleet's JSON answer (a 500)."""
    with pytest.raises(JsonError, match="is not a JSON number"):
        loads_bounded(b'{"clock": {"offset": ' + constant + b"}}", what="status", max_bytes=1000)
