"""`cccd-edge sim card --profile P`: serve a virtual CCCD to a vpcd reader until Ctrl-C (demos, manual tests)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
from typing import Any

from edge.errors import ConfigError, NoReaderError
from edge.sim.stack import SYSTEM_VPCD_PORT

#: Exit code of a usage error (a bad --quirk), as argparse uses.
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("sim", help="the virtual CCCD")
    areas = parser.add_subparsers(dest="sim_command", metavar="WHAT", required=True)
    card = areas.add_parser("card", help="put a virtual card on a vpcd reader until Ctrl-C")
    card.add_argument("--profile", default="default", help="card profile name or TOML path ('demo': built-in)")
    card.add_argument("--port", type=int, default=SYSTEM_VPCD_PORT, help="vpcd port (reader 0; +1 for reader 1)")
    card.add_argument("--host", default="127.0.0.1")
    card.add_argument(
        "--quirk",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a quirk over the profile's own, VALUE in TOML (max_le=0xA0, naked_errors=true); repeatable",
    )
    card.set_defaults(func=run_card, log_level=logging.INFO)


def run_card(args: argparse.Namespace) -> int:
    from edge.sim.profile import QuirkSettings, load_profile, parse_quirk_assignments
    from edge.sim.runner import SimulatedCard, demo_spec

    try:
        overrides = parse_quirk_assignments(args.quirk)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.profile == "demo":
        quirks = QuirkSettings(plain_reads=True).merged(overrides)
        spec, security = demo_spec(quirks.to_quirks()), None
    else:  # lazy: the builder and the chip's access control are other parts of the simulator
        from edge.sim.builder import build_card
        from edge.sim.chip_security import SimChipSecurity

        profile = load_profile(args.profile)
        quirks = profile.quirks.merged(overrides)
        spec = build_card(profile.model_copy(update={"quirks": quirks}))
        security = SimChipSecurity(spec.secrets, spec.quirks)
    shown = ", ".join(  # status words in hex, as they are written
        f"{key}=0x{value:04X}" if key.endswith("_sw") else f"{key}={value}"
        for key, value in quirks.model_dump(exclude_none=True).items()
    )
    on_air = f"virtual card '{spec.name}' on {args.host}:{args.port}" + (f" (quirks: {shown})" if shown else "")
    card = SimulatedCard(spec, args.port, security=security, host=args.host)
    stop = threading.Event()
    card.insert()
    try:
        print(f"{on_air}; Ctrl-C to remove it")
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
