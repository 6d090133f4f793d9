"""The daemon's clock state: trusted time from NTP or the office carried forward on the monotonic clock, the floor
kept across restarts in a 0600 file. The sources (kernel NTP answer, wall clock, monotonic clock) are fakes the test
steps; the file is real."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.daemon.clock import CLOCK_FILE, ClockState, kernel_ntp_synchronised
from edge.protocol.clock import BUILD_FLOOR, parse_trusted_time

REAL_NOW = datetime(2026, 12, 6, 11, 0, tzinfo=UTC)
IN_1970 = datetime(1970, 1, 1, 0, 1, tzinfo=UTC)


@dataclass
class Sources:
    """What the clock state asks: the kernel's NTP answer, the wall clock and the monotonic clock."""

    synchronised: bool | None = False
    wall: datetime = IN_1970
    monotonic: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += timedelta(seconds=seconds)

    def state(self, path: Path | None, **kwargs: float) -> ClockState:
        return ClockState(path, ntp=lambda: self.synchronised, wall=lambda: self.wall,
                          monotonic=lambda: self.monotonic, **kwargs)  # fmt: skip


def test_the_kernel_answers_or_says_it_cannot() -> None:
    assert kernel_ntp_synchronised() in (True, False, None)  # one real adjtimex call, whatever the host's state


def test_without_a_trusted_time_the_clock_says_so_and_keeps_to_the_floor(tmp_path: Path) -> None:
    sources = Sources()
    evidence = sources.state(tmp_path / CLOCK_FILE).evidence()
    assert (evidence.synchronised, evidence.source, evidence.now, evidence.floor) == (False, "none", BUILD_FLOOR,
                                                                                       BUILD_FLOOR)
    assert not (tmp_path / CLOCK_FILE).exists()  # nothing trusted, nothing saved


def test_ntp_time_is_trusted_then_carried_on_the_monotonic_clock_when_ntp_is_lost(tmp_path: Path) -> None:
    sources = Sources(synchronised=True, wall=REAL_NOW)
    clock = sources.state(tmp_path / CLOCK_FILE)
    assert (clock.evidence().now, clock.evidence().source) == (REAL_NOW, "ntp")
    sources.synchronised = False
    sources.monotonic += 60
    sources.wall = IN_1970  # someone set the clock back by hand: the evidence does not follow
    evidence = clock.evidence()
    assert (evidence.synchronised, evidence.source, evidence.now) == (True, "ntp", REAL_NOW + timedelta(seconds=60))


def test_office_time_synchronises_a_terminal_booted_in_1970(tmp_path: Path) -> None:
    sources = Sources()
    clock = sources.state(tmp_path / CLOCK_FILE)
    assert not clock.evidence().synchronised
    iat = int(REAL_NOW.timestamp())
    assert clock.observe_office_time(iat, sources.monotonic)
    sources.monotonic += 30
    evidence = clock.evidence()
    assert (evidence.synchronised, evidence.source) == (True, "office")
    assert evidence.now == REAL_NOW + timedelta(seconds=30)  # the office's time carried forward, not 1970
    assert evidence.evidence_time == evidence.now
    # an older office time (a command that took a while to arrive) does not move it back; a newer one moves it on
    assert not clock.observe_office_time(iat + 10, sources.monotonic)
    assert clock.observe_office_time(iat + 40, sources.monotonic)
    assert clock.evidence().now == REAL_NOW + timedelta(seconds=40)


def test_ntp_wins_over_the_office_and_a_time_before_the_floor_is_refused(tmp_path: Path) -> None:
    sources = Sources(synchronised=True, wall=REAL_NOW)
    clock = sources.state(tmp_path / CLOCK_FILE)
    assert not clock.observe_office_time(int(REAL_NOW.timestamp()) + 3600, sources.monotonic)
    assert clock.evidence().source == "ntp"
    unsynced = Sources().state(None)
    assert not unsynced.observe_office_time(int((BUILD_FLOOR - timedelta(days=1)).timestamp()), 0.0)
    assert not unsynced.evidence().synchronised


def test_the_trusted_time_survives_a_restart_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / CLOCK_FILE
    sources = Sources()
    clock = sources.state(path)
    clock.observe_office_time(int(REAL_NOW.timestamp()), sources.monotonic)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert parse_trusted_time(path.read_bytes()).at == REAL_NOW
    sources.monotonic += 3600
    clock.close()
    assert parse_trusted_time(path.read_bytes()).at == REAL_NOW + timedelta(hours=1)
    # power cut, the Pi boots in 1970 again: not synchronised, but the floor is the last trusted time
    rebooted = Sources().state(path).evidence()
    assert (rebooted.synchronised, rebooted.floor, rebooted.now) == (False, REAL_NOW + timedelta(hours=1),
                                                                      REAL_NOW + timedelta(hours=1))


def test_saves_are_rate_limited_and_never_go_back(tmp_path: Path) -> None:
    path = tmp_path / CLOCK_FILE
    sources = Sources(synchronised=True, wall=REAL_NOW)
    clock = sources.state(path, save_every=600.0)
    clock.evidence()
    first = path.read_bytes()
    sources.advance(599)
    clock.evidence()
    assert path.read_bytes() == first  # within the interval: no write
    sources.advance(2)
    clock.evidence()
    assert parse_trusted_time(path.read_bytes()).at == REAL_NOW + timedelta(seconds=601)
    sources.wall = REAL_NOW - timedelta(days=2)  # NTP stepped the clock back: the saved floor stays
    sources.advance(601)
    clock.evidence()
    assert parse_trusted_time(path.read_bytes()).at == REAL_NOW + timedelta(seconds=601)


@pytest.mark.parametrize("content", [b"", b"garbage", b'{"trusted_time": "2027-01-01T00:00:00", "source": "ntp"}',
                                     b"[" * 10_000])  # fmt: skip
def test_a_damaged_state_file_falls_back_to_the_build_floor(tmp_path: Path, content: bytes,
                                                            caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    path = tmp_path / CLOCK_FILE
    path.write_bytes(content)
    assert Sources().state(path).floor == BUILD_FLOOR
    assert "the floor is the build floor" in caplog.text


def test_an_unwritable_state_dir_never_stops_the_clock(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_bytes(b"")
    sources = Sources()
    clock = sources.state(blocked / CLOCK_FILE)
    assert clock.observe_office_time(int(REAL_NOW.timestamp()), sources.monotonic)
    assert clock.evidence().synchronised
    assert "cannot save the trusted time" in caplog.text
