"""`cccd-edge sim card --profile P`: serve a virtual CCCD to a vpcd reader until Ctrl-C (demos, manual tests)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
from typing import Any

from edge.errors import NoReaderError
from edge.sim.stack import SYSTEM_VPCD_PORT


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("sim", help="the virtual CCCD")
    areas = parser.add_subparsers(dest="sim_command", metavar="WHAT", required=True)
    card = areas.add_parser("card", help="put a virtual card on a vpcd reader until Ctrl-C")
    card.add_argument("--profile", default="default", help="card profile name or TOML path ('demo': built-in)")
    card.add_argument("--port", type=int, default=SYSTEM_VPCD_PORT, help="vpcd port (reader 0; +1 for reader 1)")
    card.add_argument("--host", default="127.0.0.1")
    card.set_defaults(func=run_card, log_level=logging.INFO)


def run_card(args: argparse.Namespace) -> int:
    from edge.sim.runner import SimulatedCard, demo_spec

    if args.profile == "demo":
        spec, security = demo_spec(), None
    else:  # lazy: profiles, the builder and the chip's access control are other parts of the simulator
        from edge.sim.builder import build_card
        from edge.sim.chip_security import SimChipSecurity
        from edge.sim.profile import load_profile

        spec = build_card(load_profile(args.profile))
        security = SimChipSecurity(spec.secrets, spec.quirks)
    card = SimulatedCard(spec, args.port, security=security, host=args.host)
    stop = threading.Event()
    card.insert()
    print(f"virtual card '{spec.name}' on {args.host}:{args.port}; Ctrl-C to remove it")
    try:
        while not stop.wait(0.5):
            if not card.inserted:  # left the field (quirk) or pcscd went away: put it back when it can be
                with contextlib.suppress(NoReaderError):
                    card.insert()
    except KeyboardInterrupt:
        pass
    finally:
        card.remove()
    counters = card.counters
    print(
        f"served {counters.apdus} APDUs, {counters.bytes_in} bytes in, {counters.bytes_out} bytes out, "
        f"modelled chip time {counters.modelled_seconds:.2f} s"
    )
    return 0
