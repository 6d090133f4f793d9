"""``cccd-edge run --config PATH``: the daemon in the foreground (systemd ``Type=notify`` with a watchdog).

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 when the configuration (or a file it names) is unusable, with
the offending key in the message so the support desk can fix that one line. Logs go to stdout (journald under
systemd) through the PII-masking filter of :mod:`edge.logsetup`.
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
from typing import Any

EXIT_CONFIG = 2
#: How often the main thread updates systemd's STATUS= line when systemd asked for no watchdog.
IDLE_CHECK_SECONDS = 5.0

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
    from edge.errors import ConfigError

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
    terminal = Terminal(config, liveness=liveness)
    try:
        terminal.start()
    except ConfigError as exc:  # start() has already released what it opened
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
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
