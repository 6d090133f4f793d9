"""`cccd-edge readers`: list the PC/SC readers, whether a card is on them (support desk's first question), and each
reader's profile with what it implies for a read (edge/protocol/readers.py)."""

from __future__ import annotations

import argparse
import time
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("readers", help="list card readers and card state")
    parser.add_argument("--watch", type=float, default=0.0, metavar="SECONDS", help="then print card events")
    parser.set_defaults(func=run)


def _show(states: Any, *, profiles: bool = False) -> None:
    from edge.protocol.readers import profile_for

    for state in states:
        atr = f"  ATR {state.atr.hex().upper()}" if state.atr else ""
        print(f"{state.name}: {state.presence.value}{atr}")
        if profiles:
            profile = profile_for(state.name)
            print(f"  profile {profile.key} ({profile.model}, verified from {profile.verified})")
            for line in profile.implications():
                print(f"    {line}")


def run(args: argparse.Namespace) -> int:
    from edge.drivers.pcsc import PcscReaderDriver  # lazy: other commands need not load pyscard

    driver = PcscReaderDriver()
    try:
        states = driver.readers()
        if not states:
            print("no card readers (is pcscd running? is the reader plugged in?)")
        _show(states, profiles=True)
        deadline = time.monotonic() + args.watch
        while (remaining := deadline - time.monotonic()) > 0:
            changed = driver.wait_for_change(remaining)
            if [(s.name, s.presence) for s in changed] != [(s.name, s.presence) for s in states]:
                print("--")
                _show(changed)
                states = changed
        return 0 if states else 1
    finally:
        driver.close()
