"""The ACS LED/buzzer pseudo-APDU for each pattern (pure mapping) and the re-send of lasting patterns."""

from __future__ import annotations

import threading

from edge.drivers.leds import PATTERNS
from edge.drivers.reader_leds import LASTING_REPETITIONS, ReaderIndicators, acs_led_command, pattern_support


def test_every_pattern_has_a_well_formed_command() -> None:
    for name, pattern in PATTERNS.items():
        command = acs_led_command(pattern)
        apdu = command.apdu()
        assert (apdu[:3], apdu[4], len(apdu)) == (b"\xff\x00\x40", 4, 9), name
        assert 1 <= min(command.t1, command.t2) <= max(command.t1, command.t2) <= 255, name
        assert pattern_support(pattern), name


def test_steady_colours_and_counted_beeps() -> None:
    success = acs_led_command(PATTERNS["success"])  # green steady, one 0.15 s beep
    assert (success.control & 0x03, success.control & 0xC0) == (0x02, 0)
    assert (success.repetitions, success.buzzer, success.lasts) == (1, 1, False)
    failure = acs_led_command(PATTERNS["failure"])  # red steady, three beeps
    assert failure.control & 0x03 == 0x01
    assert (failure.repetitions, failure.t1, failure.t2) == (3, 1, 1)
    fault = acs_led_command(PATTERNS["fault"])  # red blinking 0.5/0.5, lasting
    assert (fault.control & 0xC0) == 0x40  # only red blinks
    assert (fault.t1, fault.t2, fault.repetitions, fault.lasts) == (5, 5, LASTING_REPETITIONS, True)


def test_a_lasting_pattern_is_sent_again_before_it_runs_out() -> None:
    sent: list[bytes] = []
    twice = threading.Event()

    def send(apdu: bytes) -> bytes:
        sent.append(apdu)
        if len(sent) >= 2:
            twice.set()
        return b"\x90\x00"

    leds = ReaderIndicators(send, time_scale=0.0001)  # 255 x 1 s of 'scanning' in ~25 ms
    try:
        leds.show("scanning")
        assert twice.wait(5.0)
    finally:
        leds.close()
    assert sent[0] == sent[1]


def test_readme_tables_are_generated_from_the_profiles_and_patterns() -> None:
    from edge.drivers.reader_leds import reader_patterns_markdown
    from edge.protocol.readers import readers_markdown
    from tests.support.paths import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readers_markdown().strip() in readme, "README's reader table drifted: paste readers_markdown()"
    assert reader_patterns_markdown().strip() in readme, "README's reader LED table drifted"
