"""Machine-readable zone: 7-3-1 check digits, TD1/TD3 parsing and TD1 encoding (ICAO 9303-3/4/5)."""

from __future__ import annotations

from edge.errors import MrzError

_WEIGHTS = (7, 3, 1)


def char_value(ch: str) -> int:
    """ICAO value of one MRZ character: digits as themselves, A=10 ... Z=35, '<' = 0."""
    if ch.isdigit():
        return ord(ch) - ord("0")
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    if ch == "<":
        return 0
    raise MrzError(f"character {ch!r} is not allowed in an MRZ", what="MRZ")


def check_digit(field: str) -> str:
    """The 7-3-1 check digit of ``field`` as one character."""
    return str(sum(char_value(c) * _WEIGHTS[i % 3] for i, c in enumerate(field)) % 10)
