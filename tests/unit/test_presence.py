"""The reader watcher tells a card swapped between two looks from the same card left on the reader.

pcsc-lite counts a reader's card insertions and removals in dwEventState's upper word (``ReaderState.card_events``);
a card lifted and another put down while the watcher stood aside for a read (or between two polls it saw) reads
"present" both times, and only the count says it is another card. Its result must not stand for the new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.daemon.health import Liveness
from edge.daemon.presence import ReaderWatcher
from edge.daemon.state import CardInserted, CardRemoved
from edge.daemon.threads import Shared
from edge.drivers.base import CardPresence, ReaderState


class ScriptedReader:
    """A simulated reader driver: it answers what the test says PC/SC saw."""

    def readers(self) -> Sequence[ReaderState]:
        return []

    def cancel(self) -> None:
        return None


def watcher() -> tuple[ReaderWatcher, Shared]:
    shared = Shared(lambda: 0.0, Liveness())
    return ReaderWatcher(shared, ScriptedReader(), None), shared  # type: ignore[arg-type]


def posted(shared: Shared) -> list[str]:
    items = []
    while not shared.loop_items.empty():
        items.append(type(shared.loop_items.get_nowait()).__name__)
    return items


def on_reader(events: int) -> list[ReaderState]:
    return [ReaderState("reader 00 00", CardPresence.PRESENT, b"\x3b", card_events=events)]


def test_a_card_swapped_between_two_looks_is_a_removal_and_an_insertion() -> None:
    watch, shared = watcher()
    watch._apply(on_reader(events=3))
    watch.result_stored()
    assert posted(shared) == [CardInserted.__name__]
    watch._apply(on_reader(events=5))  # lifted and another put down: two events, present both times
    assert posted(shared) == [CardRemoved.__name__, CardInserted.__name__]
    assert not watch.result_stored_for_card()  # the stored result was the other card's


def test_the_same_card_left_on_the_reader_changes_nothing() -> None:
    watch, shared = watcher()
    watch._apply(on_reader(events=3))
    watch.result_stored()
    posted(shared)
    watch._apply(on_reader(events=3))
    assert posted(shared) == []
    assert watch.result_stored_for_card()
