"""The officers' pages have words for everything a terminal's status can say (the contract's literals), in both
languages: a state or a light the page has no words for would show the protocol's own English token."""

from __future__ import annotations

from typing import get_args

from edge.office.web.words import LANGS, client_words
from edge.protocol.messages import IndicatorPattern, TerminalState


def test_every_terminal_state_and_indicator_pattern_has_words_in_both_languages() -> None:
    for lang in LANGS:
        words = client_words(lang)
        assert set(get_args(TerminalState)) <= set(words["states"]), lang
        assert set(get_args(IndicatorPattern)) <= set(words["indicators"]), lang
        assert all(words["indicators"].values())
        assert words["ui"]["awaiting_receipt"]
