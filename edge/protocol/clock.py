"""What the terminal knows about the time: a best estimate, whether it can be trusted, and a floor.

A Raspberry Pi has no RTC: after a power cut it may boot in 1970, or at the time its last shutdown saved, until NTP
or the office tells it better. Verification must not turn such a clock into a verdict (a genuine card "not valid
yet" in 1970) nor hide it (a forged date looks as good as a true one). So the daemon hands verification a
:class:`TimeEvidence` instead of a bare ``datetime``:

* ``synchronised``: ``now`` is trusted, from the kernel's NTP state (``ntp``) or projected with the monotonic
  clock from a time the office signed (``office``); date checks run as usual;
* otherwise (``none``) ``now`` is only the system clock's word. Date checks then say "not performed: clock not
  synchronised" instead of passing or failing, **except** what the ``floor`` alone proves: the floor is a time
  that has passed for certain (the newest of the software's :data:`BUILD_FLOOR` and the last trusted time the
  terminal saved), so a certificate whose ``not_after`` is before it is expired whatever the clock says. Nothing
  can prove "not valid yet" without a trusted clock: the true time may be any time after the floor.

Pure: the caller supplies every time; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, get_args

from edge.errors import JsonError
from edge.protocol.bounded_json import loads_bounded

ClockSource = Literal["ntp", "office", "none"]
TRUSTED_SOURCES: tuple[ClockSource, ...] = ("ntp", "office")

#: This software cannot run before this date (its first commit was in November 2026): the floor on a terminal that
#: never saw a trusted time. Raising it on a release makes it tighter; it must never be later than a release date.
BUILD_FLOOR = datetime(2026, 11, 1, tzinfo=UTC)

#: The persisted last trusted time is a few dozen bytes; anything larger is not ours.
MAX_TRUSTED_TIME_BYTES = 256


class Validity(StrEnum):
    """A validity period judged against the evidence."""

    WITHIN = "within"
    NOT_YET = "not_yet"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # the clock is not synchronised and the floor proves nothing


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must carry a timezone")  # a programming error, not card data
    return value


@dataclass(frozen=True, slots=True)
class TimeEvidence:
    """The time a verification or a document uses, and how far it can be trusted (module docstring).

    ``now`` is the best estimate: the trusted time when ``synchronised``, else the system clock raised to the
    ``floor`` (a clock behind the floor is wrong for certain, so it is never reported). ``evidence_time`` is the
    honest time for a result: set only when a trusted time point exists.
    """

    now: datetime
    synchronised: bool
    source: ClockSource
    floor: datetime | None = None

    def __post_init__(self) -> None:
        _aware(self.now, "the verification time")
        if self.floor is not None:
            _aware(self.floor, "the time floor")
        if self.source not in get_args(ClockSource):
            raise ValueError(f"unknown clock source {self.source!r}")
        if self.synchronised != (self.source in TRUSTED_SOURCES):
            raise ValueError(f"clock source {self.source!r} contradicts synchronised={self.synchronised}")

    @classmethod
    def trusted(cls, now: datetime, source: ClockSource = "ntp", floor: datetime | None = None) -> TimeEvidence:
        """A time the caller trusts (what a bare ``datetime`` passed to verification means)."""
        return cls(now, True, source, floor)

    @classmethod
    def unsynchronised(cls, system_now: datetime, floor: datetime | None) -> TimeEvidence:
        """The system clock's word, not trusted; ``now`` is never before ``floor``."""
        _aware(system_now, "the system time")
        now = max(system_now, floor) if floor is not None else system_now
        return cls(now, False, "none", floor)

    @classmethod
    def of(cls, when: datetime | TimeEvidence) -> TimeEvidence:
        """``when`` as evidence: a bare ``datetime`` is a time the caller vouches for (tests, ``cccd-edge read``)."""
        return when if isinstance(when, TimeEvidence) else cls.trusted(when)

    @property
    def evidence_time(self) -> datetime | None:
        return self.now if self.synchronised else None

    def validity(self, not_before: datetime, not_after: datetime) -> Validity:
        """Whether ``[not_before, not_after]`` holds now. Unsynchronised, only the floor can say ``expired``."""
        if self.synchronised:
            if self.now < not_before:
                return Validity.NOT_YET
            return Validity.EXPIRED if self.now > not_after else Validity.WITHIN
        if self.floor is not None and not_after < self.floor:
            return Validity.EXPIRED
        return Validity.UNKNOWN

    def passed_for_certain(self, moment: datetime) -> bool:
        """True when ``moment`` is surely in the past (before the trusted now, or before the floor)."""
        if self.synchronised and moment < self.now:
            return True
        return self.floor is not None and moment < self.floor


# --- the persisted last trusted time -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedTime:
    """A time the terminal trusted (it has passed for certain) and where it came from: saved across restarts so
    that the floor survives a reboot without RTC."""

    at: datetime
    source: ClockSource

    def __post_init__(self) -> None:
        _aware(self.at, "a trusted time")
        if self.source not in TRUSTED_SOURCES:
            raise ValueError(f"a trusted time needs a trusted source, not {self.source!r}")

    def to_json(self) -> bytes:
        return f'{{"trusted_time":"{self.at.astimezone(UTC).isoformat()}","source":"{self.source}"}}\n'.encode()


def parse_trusted_time(data: bytes, *, what: str = "clock state") -> TrustedTime:
    """The saved trusted time; :class:`JsonError` for anything that is not one (the caller falls back to the
    build floor, never to a guess)."""
    document = loads_bounded(data, what=what, max_bytes=MAX_TRUSTED_TIME_BYTES)
    if not isinstance(document, dict) or set(document) != {"trusted_time", "source"}:
        raise JsonError("expected an object with trusted_time and source", what=what)
    text, source = document["trusted_time"], document["source"]
    if not isinstance(text, str) or len(text) > 40 or source not in TRUSTED_SOURCES:
        raise JsonError("trusted_time must be an ISO 8601 time and source ntp or office", what=what)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise JsonError("trusted_time is not an ISO 8601 time", what=what) from None
    if at.tzinfo is None:
        raise JsonError("trusted_time has no timezone", what=what)
    return TrustedTime(at.astimezone(UTC), source)


def floor_from(saved: TrustedTime | None, build_floor: datetime = BUILD_FLOOR) -> datetime:
    """The newest time known to have passed: the saved trusted time or the software's build floor."""
    return build_floor if saved is None else max(saved.at, build_floor)
