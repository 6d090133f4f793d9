"""``cccd-edge doctor [--config PATH]``: one line per check with a fix hint; exit 1 when any check fails."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.errors import ConfigError

if TYPE_CHECKING:
    from edge.daemon.doctor import DoctorResult

DEFAULT_CONFIG = Path("/etc/cccd-edge/config.toml")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("doctor", help="check reader, camera, LEDs, clock, keys, broker, outbox, trust "
                                   "store")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the broker")
    parser.add_argument("--no-devices", dest="devices", action="store_false",
                        help="leave the camera and LEDs alone (the running service holds them)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.daemon.doctor import DoctorResult, run_checks

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        config = None
        hint = exc.hint if args.config.exists() else "python -m provisioning device install writes it"
        problem = DoctorResult("config", False, str(exc.args[0]), hint)
    else:
        problem = DoctorResult("config", True, str(args.config))
    return report([problem, *run_checks(config, broker_timeout=args.timeout, devices=args.devices)])


def report(results: Sequence[DoctorResult]) -> int:
    """Print one line per check and a summary; the exit code: 1 when a check failed (warnings pass)."""
    for result in results:
        print(result.line())
    failed = sum(not r.ok for r in results)
    warned = sum(r.ok and r.warning for r in results)
    if failed or warned:
        print(f"{len(results) - failed - warned} ok, {warned} warned, {failed} failed")
    else:
        print(f"all {len(results)} checks ok")
    return 1 if failed else 0
