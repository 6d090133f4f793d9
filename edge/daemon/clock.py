"""The terminal's clock state: whether its time can be trusted, from what, and the floor it keeps across reboots.

A Raspberry Pi has no RTC. The time is trusted from one of two sources:

* **the kernel's NTP state** (``ntp``): :func:`kernel_ntp_synchronised` reads ``adjtimex(2)`` (modes 0, read only,
  no privilege). Chrony, ntpd and systemd-timesyncd all steer the kernel clock and clear ``STA_UNSYNC`` once they
  have synchronised it, and it is exactly what ``timedatectl``'s ``NTPSynchronized`` reports, without dbus, without
  systemd-timedated (socket-activated: polling it would keep waking it) and without a process per question, so the
  loop can ask every second for the cost of one system call.
* **a time the office signed** (``office``): a verified command's ``iat`` (receipts will add more), given to
  :meth:`ClockState.observe_office_time` with the monotonic time it arrived. It is a lower bound of the true time
  (it was signed before it arrived), so the newest projection wins.

Once a trusted point exists, the time is that point carried forward with the monotonic clock, never the system
clock's word: a clock stepped by hand or an NTP daemon that lost its server does not move the evidence. Without
one the terminal says it is not synchronised and uses the floor: the newest of the software's build floor and the
last trusted time saved in ``<state_dir>/clock.json`` (0600, written when the clock is first trusted, at most every
:data:`SAVE_EVERY` seconds after, and at exit). The sources are injected so tests can fake the *source* (the
kernel's answer, the wall clock) while everything else runs for real.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.errors import JsonError
from edge.files import write_private
from edge.protocol.clock import (
    BUILD_FLOOR,
    ClockSource,
    TimeEvidence,
    TrustedTime,
    floor_from,
    parse_trusted_time,
)

log = logging.getLogger(__name__)

#: The state file that keeps the last trusted time (the floor after a reboot).
CLOCK_FILE = "clock.json"
#: Write the trusted time at most this often while it is trusted (SD cards wear; an hour-old floor is still true).
SAVE_EVERY = 600.0
#: ``adjtimex`` status bit: the clock is not synchronised (linux/timex.h).
STA_UNSYNC = 0x0040
#: Beyond this maximum error (µs) the kernel and timedated consider the clock unsynchronised (NTP_PHASE_LIMIT).
MAX_ERROR_US = 16_000_000

NtpState = Callable[[], bool | None]
WallClock = Callable[[], datetime]


class _Timex(ctypes.Structure):
    """The head of ``struct timex`` (the fields before ``time`` are longs on every ABI), padded beyond its size."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("_rest", ctypes.c_byte * 256)]  # fmt: skip


def kernel_ntp_synchronised() -> bool | None:
    """Whether the kernel's clock is NTP-synchronised; None when ``adjtimex`` cannot be called (not Linux)."""
    try:
        adjtimex = ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    timex = _Timex()  # modes 0: read only
    if adjtimex(ctypes.byref(timex)) < 0:
        return None
    return not timex.status & STA_UNSYNC and timex.maxerror < MAX_ERROR_US


def system_time() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Anchor:
    """A trusted time and the monotonic time it held at."""

    at: datetime
    monotonic: float
    source: ClockSource

    def at_monotonic(self, monotonic: float) -> datetime:
        return self.at + timedelta(seconds=monotonic - self.monotonic)


class ClockState:
    """The terminal's time and how far to trust it (module docstring); thread-safe.

    :meth:`evidence` is what verification, documents and tokens use; :meth:`observe_office_time` feeds it the
    office's signed times. ``state_file`` None keeps nothing across restarts (tests of the pure behaviour).
    """

    def __init__(self, state_file: Path | None, *, ntp: NtpState = kernel_ntp_synchronised,
                 wall: WallClock = system_time, monotonic: Callable[[], float] = time.monotonic,
                 build_floor: datetime = BUILD_FLOOR, save_every: float = SAVE_EVERY) -> None:  # fmt: skip
        self._file = state_file
        self._ntp = ntp
        self._wall = wall
        self._monotonic = monotonic
        self._save_every = save_every
        self._lock = threading.Lock()
        self._anchor: _Anchor | None = None
        self._saved: TrustedTime | None = self._load()
        self._saved_at: float | None = None  # monotonic time of the last write
        self._floor = floor_from(self._saved, build_floor)

    @property
    def floor(self) -> datetime:
        with self._lock:
            return self._floor

    def evidence(self) -> TimeEvidence:
        """The time now and whether it is trusted; asks the NTP source (one system call)."""
        synchronised = self._ntp() is True
        monotonic = self._monotonic()
        with self._lock:
            if synchronised:
                self._anchor = _Anchor(self._wall(), monotonic, "ntp")
            anchor = self._anchor
            if anchor is None:
                return TimeEvidence.unsynchronised(self._wall(), self._floor)
            now = anchor.at_monotonic(monotonic)
            self._save(now, anchor.source, monotonic, force=False)
            return TimeEvidence.trusted(now, anchor.source, self._floor)

    def now(self) -> datetime:
        """The best estimate of the time now (trusted or not): for ``iat``, ``completed_at`` and the like."""
        return self.evidence().now

    def observe_office_time(self, iat: int | datetime, monotonic: float) -> bool:
        """A time the office signed (a verified command's ``iat``), received at ``monotonic``. True when it became
        the terminal's trusted time: not while NTP holds the clock (NTP is the better source), not when an earlier
        trusted point already projects later, and never when it lies before the floor (the office's clock is then
        wrong, or the message is old: the floor has passed for certain)."""
        at = datetime.fromtimestamp(iat, UTC) if isinstance(iat, int) else iat.astimezone(UTC)
        ntp = self._ntp() is True
        now_monotonic = self._monotonic()
        with self._lock:
            candidate = _Anchor(at, monotonic, "office")
            current = self._anchor
            if ntp or (current is not None and current.at_monotonic(now_monotonic) >=
                       candidate.at_monotonic(now_monotonic)):  # fmt: skip
                return False
            if at < self._floor:
                log.warning("office time %s is before this terminal's floor %s: not trusted", f"{at:%Y-%m-%d %H:%M}",
                            f"{self._floor:%Y-%m-%d %H:%M}")  # fmt: skip
                return False
            self._anchor = candidate
            log.info("clock: office time %s trusted (%s)", f"{at:%Y-%m-%d %H:%M:%S}",
                     "was not synchronised" if current is None else f"was {current.source}")
            self._save(candidate.at_monotonic(now_monotonic), "office", now_monotonic, force=True)
            return True

    def close(self) -> None:
        """Save the trusted time, if there is one, for the next start."""
        monotonic = self._monotonic()
        with self._lock:
            if self._anchor is not None:
                self._save(self._anchor.at_monotonic(monotonic), self._anchor.source, monotonic, force=True)

    # --- the state file --------------------------------------------------------------------------------------------

    def _load(self) -> TrustedTime | None:
        if self._file is None:
            return None
        try:
            data = self._file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("clock state %s unreadable (%s): the floor is the build floor", self._file,
                        exc.strerror or type(exc).__name__)
            return None
        try:
            return parse_trusted_time(data, what=str(self._file))
        except JsonError as exc:
            log.warning("%s: the floor is the build floor", exc)
            return None

    def _save(self, now: datetime, source: ClockSource, monotonic: float, *, force: bool) -> None:
        """Keep ``now`` as the last trusted time (under the lock). Never moves backwards; a write that fails is
        logged, never raised: the clock must not stop a read."""
        if self._saved is not None and now <= self._saved.at:
            return
        if not force and self._saved_at is not None and monotonic - self._saved_at < self._save_every:
            return
        saved = TrustedTime(now, source)
        self._saved, self._saved_at = saved, monotonic
        self._floor = max(self._floor, now)
        if self._file is None:
            return
        temporary = self._file.with_name(f".{self._file.name}.tmp")
        try:
            self._file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(temporary, saved.to_json(), durable=True)
            os.replace(temporary, self._file)
        except OSError as exc:
            log.warning("cannot save the trusted time to %s: %s", self._file, exc.strerror or type(exc).__name__)
