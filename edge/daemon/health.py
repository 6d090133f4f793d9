"""systemd readiness and watchdog over the sd_notify datagram protocol, without the systemd Python package.

Why hand-written: the protocol is one datagram per message to the AF_UNIX socket in ``$NOTIFY_SOCKET`` (``@name``
is the abstract namespace), and a missing optional package must never keep the daemon from starting. Outside
systemd (no ``$NOTIFY_SOCKET``) every call is a no-op.

Why a liveness table: ``WATCHDOG=1`` tells systemd the *whole* daemon works. The daemon has several loop threads
(state machine, reader watch, camera, worker); a ping from a healthy main thread while the camera thread hangs would
hide the hang. So each loop thread :meth:`Liveness.beat` s on every turn, a thread about to block for a bounded
time (a chip read) declares it with :meth:`Liveness.busy`, and :meth:`Watchdog.ping` sends ``WATCHDOG=1`` only
while no thread has been silent longer than the interval (half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3)
advises). systemd then restarts a daemon whose thread hung.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def notify_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The socket address from ``$NOTIFY_SOCKET`` ('@' becomes a leading NUL: the abstract namespace)."""
    value = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not value or value[0] not in "/@":
        return None
    return "\0" + value[1:] if value[0] == "@" else value


def watchdog_interval(environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is asked for.

    ``$WATCHDOG_PID``, when set, must be this process: the variables may have leaked to a child.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    watchdog_pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (watchdog_pid and watchdog_pid != str(os.getpid() if pid is None else pid)):
        return None
    return usec / 2 / 1_000_000


class SdNotify:
    """Sends sd_notify messages; each is one datagram. Send errors are logged, never raised (systemd may be gone)."""

    def __init__(self, address: str | None = None, *, environ: Mapping[str, str] | None = None) -> None:
        self.address = address if address is not None else notify_address(environ)
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        if self.address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False when not under systemd or the send failed."""
        if self._socket is None or self.address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            with self._lock:
                self._socket.sendto(payload, self.address)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *((f"STATUS={status}",) if status else ()))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *((f"STATUS={status}",) if status else ()))

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


class Liveness:
    """When each loop thread last made progress, and how long it may legitimately stay silent. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._busy_until: dict[str, float] = {}

    def beat(self, name: str) -> None:
        """``name`` made progress now (registers it on first use)."""
        now = self._clock()
        with self._lock:
            self._last[name] = now
            self._busy_until.pop(name, None)

    def busy(self, name: str, seconds: float) -> None:
        """``name`` is about to block for at most ``seconds`` (a bounded call): not stale until then."""
        now = self._clock()
        with self._lock:
            self._last[name] = now
            self._busy_until[name] = now + seconds

    def forget(self, name: str) -> None:
        """``name`` ended on purpose (shutdown): it no longer counts."""
        with self._lock:
            self._last.pop(name, None)
            self._busy_until.pop(name, None)

    @property
    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._last))

    def stale(self, window: float) -> list[str]:
        """Threads silent for more than ``window`` seconds and not within a declared busy period."""
        now = self._clock()
        with self._lock:
            return sorted(name for name, last in self._last.items()
                          if now - last > window and now > self._busy_until.get(name, 0.0))


class Watchdog:
    """Pings systemd's watchdog only while every thread in ``liveness`` is alive (see the module docstring)."""

    def __init__(self, notifier: SdNotify, liveness: Liveness, interval: float, *,
                 expected: tuple[str, ...] = ()) -> None:
        self.notifier = notifier
        self.liveness = liveness
        self.interval = interval
        self.expected = expected  # threads that must have beaten at least once before the first ping
        self.withheld: tuple[str, ...] = ()

    def ping(self) -> bool:
        """Send ``WATCHDOG=1`` if nobody is stale; True when sent. The stale threads are in :attr:`withheld`."""
        missing = tuple(name for name in self.expected if name not in self.liveness.names)
        stale = (*missing, *self.liveness.stale(self.interval))
        if stale:
            if stale != self.withheld:
                log.warning("watchdog ping withheld: no progress from %s", ", ".join(stale))
            self.withheld = stale
            return False
        self.withheld = ()
        return self.notifier.watchdog()
