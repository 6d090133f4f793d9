"""sd_notify over a real AF_UNIX datagram socket (path and abstract namespace), and the watchdog's liveness rule."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.daemon.health import Liveness, SdNotify, Watchdog, notify_address, watchdog_interval


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    """What systemd listens on: a datagram socket bound to a path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_messages_arrive_as_one_datagram_each(systemd: socket.socket, tmp_path: Path) -> None:
    notifier = SdNotify(environ={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert notifier.enabled
    assert notifier.ready("terminal T-01 ready")
    assert notifier.status("ready; queued 0")
    assert notifier.watchdog()
    assert notifier.stopping()
    received = [systemd.recv(4096).decode() for _ in range(4)]
    assert received == ["READY=1\nSTATUS=terminal T-01 ready", "STATUS=ready; queued 0", "WATCHDOG=1", "STOPPING=1"]
    notifier.close()


def test_abstract_namespace_address() -> None:
    name = f"cccd-edge-test-{os.getpid()}-{secrets.token_hex(4)}"
    assert notify_address({"NOTIFY_SOCKET": f"@{name}"}) == f"\0{name}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(f"\0{name}")
    listener.settimeout(5)
    try:
        notifier = SdNotify(environ={"NOTIFY_SOCKET": f"@{name}"})
        assert notifier.ready()
        assert listener.recv(4096) == b"READY=1"
        notifier.close()
    finally:
        listener.close()


def test_outside_systemd_everything_is_a_quiet_no_op(tmp_path: Path) -> None:
    for environ in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative/path"}):
        notifier = SdNotify(environ=environ)
        assert not notifier.enabled
        assert not notifier.ready()
    gone = SdNotify(environ={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert not gone.watchdog()  # systemd went away: logged, never raised
    gone.close()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, pid=42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, pid=43) is None  # not for us
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_ping_only_while_every_thread_made_progress(systemd: socket.socket, tmp_path: Path) -> None:
    clock = FakeClock()
    liveness = Liveness(clock)
    notifier = SdNotify(environ={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    watchdog = Watchdog(notifier, liveness, 15.0, expected=("loop", "camera"))
    liveness.beat("loop")
    assert not watchdog.ping()  # the camera thread never ran
    assert watchdog.withheld == ("camera",)
    liveness.beat("camera")
    assert watchdog.ping()
    clock.now += 10
    liveness.beat("loop")
    clock.now += 6  # camera silent for 16 s > 15 s
    assert not watchdog.ping()
    assert watchdog.withheld == ("camera",)
    liveness.beat("camera")
    assert watchdog.ping()
    received = [systemd.recv(4096) for _ in range(2)]
    assert received == [b"WATCHDOG=1", b"WATCHDOG=1"]  # exactly the two allowed pings
    notifier.close()


def test_a_declared_bounded_block_is_not_a_hang() -> None:
    clock = FakeClock()
    liveness = Liveness(clock)
    liveness.busy("worker", 20.0)  # a chip read that may take up to 20 s
    clock.now += 18
    assert liveness.stale(15.0) == []
    clock.now += 3
    assert liveness.stale(15.0) == ["worker"]
    liveness.beat("worker")
    assert liveness.stale(15.0) == []
    liveness.forget("worker")
    assert liveness.names == ()
