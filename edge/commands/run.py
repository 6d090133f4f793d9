"""``cccd-edge run --config PATH``: the daemon in the foreground (systemd ``Type=notify`` with a watchdog).

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 when the configuration (or a file it names) is unusable, with
the offending key in the message so the support desk can fix that one line. Logs go to stdout (journald under
systemd) through the PII-masking filter of :mod:`edge.logsetup`.

A disk too full to start on (the outbox cannot be opened) is the terminal's trouble, not a reason to leave: the
daemon shows FAULT on its LEDs, tells systemd why (STATUS=, and it keeps the watchdog fed), and starts once the
state directory has its reserve again. Exiting instead had systemd restart it every few seconds with dark LEDs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.config import Config
    from edge.daemon.health import SdNotify
    from edge.errors import StorageFullError

EXIT_CONFIG = 2
#: How often the main thread updates systemd's STATUS= line when systemd asked for no watchdog.
IDLE_CHECK_SECONDS = 5.0
#: How often a terminal waiting for disk space looks at the state directory's free space again.
STORAGE_CHECK_SECONDS = 2.0
#: Room freed since a start failed for a full disk after which the start is tried again (its LEDs let go meanwhile).
ROOM_TO_RETRY = 256 * 1024

log = logging.getLogger("edge.run")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("run", help="run the terminal daemon in the foreground")
    parser.add_argument("--config", type=Path, default=Path("/etc/cccd-edge/config.toml"), help="TOML config file")
    parser.add_argument("--ready-timeout", type=float, default=30.0, help="seconds to wait for the devices at start")
    # The daemon's log is its output: INFO to stdout, where journald takes it.
    parser.set_defaults(func=run, log_stream="stdout", log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.daemon.health import Liveness, SdNotify, Watchdog, watchdog_interval
    from edge.daemon.terminal import THREADS, Terminal
    from edge.errors import ConfigError, StorageFullError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    notifier = SdNotify()
    liveness = Liveness()
    while True:
        terminal = Terminal(config, liveness=liveness)
        try:
            terminal.start()
            break
        except ConfigError as exc:  # start() has already released what it opened
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except StorageFullError as exc:  # another disk error (I/O) is not waited out: systemd restarts the daemon
            if not _wait_for_room(config, exc, notifier, stop):
                return 0
    try:
        deadline = time.monotonic() + args.ready_timeout
        while not terminal.wait_ready(0.1):
            if stop.is_set():
                return 0
            if time.monotonic() >= deadline:
                log.warning("not every device answered within %.0f s; running anyway", args.ready_timeout)
                break
        notifier.ready(f"terminal {config.terminal_id} ready")
        log.info("terminal %s ready", config.terminal_id)
        interval = watchdog_interval()
        watchdog = Watchdog(notifier, liveness, interval or IDLE_CHECK_SECONDS, expected=THREADS)
        while True:
            if interval:
                watchdog.ping()
            snapshot = terminal.snapshot
            notifier.status(f"{terminal.state.value}; queued {snapshot.queued}, awaiting receipt "
                            f"{snapshot.awaiting_receipt}")
            if stop.wait(watchdog.interval):
                break
    finally:
        notifier.stopping("stopping")
        terminal.stop()
        notifier.close()
        log.info("stopped")
    return 0


def _wait_for_room(config: Config, error: StorageFullError, notifier: SdNotify, stop: threading.Event) -> bool:
    """FAULT on the LEDs until the state directory has more room than when the start failed (True: try to start
    again; the running terminal then keeps its reserve itself, refusing reads with FAULT below it), or a stop signal
    (False). The LEDs are let go before returning: the terminal opens the same pins."""
    from edge.daemon.state import Indicator
    from edge.daemon.storage import free_bytes
    from edge.drivers.leds import Indicators

    def free() -> int:
        try:
            return free_bytes(config.paths.state_dir)
        except OSError:  # the directory itself is gone or unreadable: no room
            return 0

    log.error("cannot start: %s; showing FAULT until the disk has room", error)
    notifier.ready(f"FAULT: {error}")  # started, in fault: systemd must not kill it for a missing READY=1
    leds = Indicators(config.indicators) if config.indicators.gpio else None
    try:
        if leds is not None:
            leds.show(Indicator.FAULT.value)
        when_failed = free()
        while True:
            notifier.status(f"FAULT: {error}; waiting for room in {config.paths.state_dir}")
            notifier.watchdog()
            if stop.wait(STORAGE_CHECK_SECONDS):
                return False
            if free() > when_failed + ROOM_TO_RETRY:
                log.info("the disk has room again: starting")
                return True
    finally:
        if leds is not None:
            leds.close()
