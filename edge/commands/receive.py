"""``cccd-edge receive``: the reference office receiver; prints one non-personal JSON line per result."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

from edge.daemon.signing import load_private_key
from edge.office.receiver import Outcome, Receiver, ResultStore
from edge.office.verify import load_keys


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("receive", help="receive, verify and store results from a ward's terminals")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8883)
    parser.add_argument("--ward", required=True, help="ward code (topic segment)")
    parser.add_argument("--prefix", default="cccd-edge/v1")
    parser.add_argument("--db", type=Path, required=True, help="SQLite file for verified results (created 0600)")
    parser.add_argument("--cert", type=Path, action="append", default=[], help="terminal certificate (PEM)")
    parser.add_argument("--jwks", type=Path, help="JWKS file with terminal public keys")
    parser.add_argument("--ward-key", type=Path, help="ward private key (PEM, 0600) to open encrypted results")
    parser.add_argument("--ca", help="broker CA (enables TLS)")
    parser.add_argument("--client-cert", help="office client certificate for mutual TLS")
    parser.add_argument("--client-key", help="office client key for mutual TLS")
    parser.add_argument("--client-id", default="cccd-edge-office")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    keys = load_keys(args.cert, args.jwks)
    decrypt_key = load_private_key(args.ward_key, config_key="--ward-key") if args.ward_key else None
    store = ResultStore(args.db, keys, decrypt_key=decrypt_key)
    tls = None
    if args.ca:
        tls = {"ca": args.ca} | ({"cert": args.client_cert, "key": args.client_key} if args.client_cert else {})

    def report(outcome: Outcome) -> None:
        print(json.dumps(outcome.as_dict()), flush=True)

    receiver = Receiver(store, host=args.host, port=args.port, ward=args.ward, prefix=args.prefix,
                        client_id=args.client_id, tls=tls, on_outcome=report)
    receiver.start()
    try:
        threading.Event().wait()
    finally:
        receiver.stop()
        store.close()
    return 0
