"""``cccd-edge gateway``: the office gateway (``run``), and what its database says (``fleet``, ``gaps``).

``run`` is a service (systemd/cccd-edge-gateway.service): it logs "subscribed to ..." once the broker holds results
for it, quarantines (with the reason) what it cannot accept, logs seq gaps as they open, and every minute a line of
counts. ``--count N`` (tests, scripts) exits 0 once N new results are stored by this instance (1 after
``--timeout`` seconds). ``fleet`` prints each terminal's last retained status, ``gaps`` the gap report, one JSON
line each.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from edge.office.gateway import open_gateway, open_store
from edge.office.gateway_config import load_gateway_config
from edge.office.store import Outcome

log = logging.getLogger(__name__)
COUNTS_EVERY = 60.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("gateway", help="the office gateway: verify, store and receipt results")
    actions = parser.add_subparsers(dest="gateway_action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run one gateway instance (a service)")
    run.add_argument("--config", type=Path, required=True, help="gateway.toml")
    run.add_argument("--count", type=int, metavar="N", help="exit 0 once this instance stored N new results")
    run.add_argument("--timeout", type=float, metavar="S", help="with --count: exit 1 after S seconds")
    run.set_defaults(func=_run, log_level=logging.INFO)
    for name, text in (("fleet", "each terminal's last status, one JSON line each"),
                       ("gaps", "each terminal's missing and refused seqs, one JSON line each")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, required=True, help="gateway.toml")
        sub.add_argument("--ward", help="only this ward (fleet)")
        sub.set_defaults(func=_list, what=name)


def _run(args: argparse.Namespace) -> int:
    if args.timeout is not None and args.count is None:
        print("error: --timeout needs --count", file=sys.stderr)
        return 2
    config = load_gateway_config(args.config)
    logging.getLogger().setLevel(config.log_level.upper())
    done = threading.Event()
    stored = 0

    def counted(outcome: Outcome) -> None:
        nonlocal stored
        if outcome.status == "stored":
            stored += 1
            if args.count is not None and stored >= args.count:
                done.set()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    gateway = open_gateway(config, on_outcome=counted)
    signal.signal(signal.SIGTERM, stop)
    started = time.monotonic()
    log.info("gateway %s: storage %s, %s", config.instance, gateway.store.dialect,
             "receipts signed" if config.receipts.key else "no receipts (PUBACK-only ward)")
    gateway.start()
    try:
        while not done.wait(COUNTS_EVERY if args.timeout is None else min(COUNTS_EVERY, args.timeout)):
            log.info("counts %s", json.dumps(gateway.stats.as_dict()))
            if args.timeout is not None and time.monotonic() - started >= args.timeout:
                log.error("%d of %d results stored within %g s", stored, args.count, args.timeout)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()
        log.info("counts %s", json.dumps(gateway.stats.as_dict()))
        gateway.store.close()
    return 0


def _list(args: argparse.Namespace) -> int:
    store = open_store(load_gateway_config(args.config))
    try:
        rows = ([row.as_dict() for row in store.fleet(args.ward)] if args.what == "fleet"
                else [gap.as_dict() for gap in store.gaps()])
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    finally:
        store.close()
    return 0
