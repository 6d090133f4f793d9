"""``cccd-edge receive``: the reference office receiver; prints one non-personal JSON line per result.

Each stored result's line gives the verdict as the terminal sent it, its rung of the ladder (``rung``: a version 2
result's ``verified_untrusted_issuer`` reads as ``intact_origin_unproven``) and the rung's words (``verdict_words``:
Vietnamese, English, what it proves and what it does not).

It runs until stopped, or with ``--count N`` until N new results are stored (exit 0; exit 1 when ``--timeout``
passes first), so that a script can wait for a delivery without polling the database. It logs "subscribed to
<filter>" once the broker holds results for it: publish after that line and nothing is missed.

A validly signed result is stored whatever its times: its line's ``flags`` say what the office noticed (``late``:
read more than a day before it arrived; ``future`` and ``clock_skew``: the terminal's clock was wrong;
``clock_unsynchronised``: the terminal said so). A message that does not verify is quarantined (its line says
``"status": "quarantined"``, why, and the row). Lines of a terminal with gaps list its seqs that never arrived
(``missing``) apart from those that arrived but were refused (``refused``). The store's counts (with how many
results carry each flag) are logged at start and exit; ``--quarantined`` lists the quarantine (without payloads),
``--gaps`` the gap report per terminal (refused seqs with their quarantine row and reason), and
``--retry-quarantined`` checks the quarantine again with the keys given and stores what now verifies (a key
installed since, or results an older office refused for their times).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.office.receiver import Outcome, Receiver, ResultStore
from edge.office.verify import load_keys
from edge.protocol.verify.checks import VERDICT_WORDS, Verdict
from edge.signers import load_private_key

log = logging.getLogger(__name__)


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
    parser.add_argument("--count", type=_positive_int, metavar="N",
                        help="exit 0 once N new results are stored (duplicates and quarantined messages do not count)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="with --count: exit 1 if they are not all stored within S seconds of starting")
    parser.add_argument("--since", type=int, metavar="EPOCH",
                        help="with --count: count only results the terminal signed (iat) at or after this Unix "
                             "time; older ones (left in an outbox) are still stored, not counted")
    parser.add_argument("--quarantined", action="store_true",
                        help="print the quarantined messages (one JSON line each, no payload) and the counts; exit")
    parser.add_argument("--gaps", action="store_true",
                        help="print each terminal's seqs that never arrived (missing) and that arrived but were "
                             "refused (quarantine id and reason), one JSON line per terminal, and the counts; exit")
    parser.add_argument("--retry-quarantined", action="store_true",
                        help="check the quarantined messages again with --cert/--jwks/--ward-key, store those that "
                             "now verify (one JSON line each), print the counts; exit")
    parser.set_defaults(func=run, log_level=logging.INFO)  # a service: its progress is its log


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    if args.count is None and (args.timeout is not None or args.since is not None):
        print("error: --timeout and --since need --count", file=sys.stderr)
        return 2
    if args.quarantined or args.gaps:
        return _list(args.db, gaps=args.gaps)
    started = time.monotonic()
    keys = load_keys(args.cert, args.jwks)
    decrypt_key = load_private_key(args.ward_key, config_key="--ward-key") if args.ward_key else None
    store = ResultStore(args.db, keys, decrypt_key=decrypt_key)
    if args.retry_quarantined:
        return _retry(store)
    log.info("store %s", json.dumps(store.counts()))
    tls = None
    if args.ca:
        tls = {"ca": args.ca} | ({"cert": args.client_cert, "key": args.client_key} if args.client_cert else {})

    counted = 0
    done = threading.Event()

    def report(outcome: Outcome) -> None:
        nonlocal counted
        print(json.dumps(_with_words(outcome.as_dict()), ensure_ascii=False), flush=True)
        fresh = args.since is None or (outcome.iat is not None and outcome.iat >= args.since)
        if outcome.status == "stored" and fresh:
            counted += 1
            if args.count is not None and counted >= args.count:
                done.set()

    receiver = Receiver(store, host=args.host, port=args.port, ward=args.ward, prefix=args.prefix,
                        client_id=args.client_id, tls=tls, on_outcome=report)
    receiver.start()
    try:
        if args.count is None:
            done.wait()
        elif not done.wait(None if args.timeout is None else max(0.0, args.timeout - (time.monotonic() - started))):
            log.error("%d of %d results stored within %g s", counted, args.count, args.timeout)
            return 1
    finally:
        receiver.stop()
        log.info("store %s", json.dumps(store.counts()))
        store.close()
    return 0


def _with_words(line: dict[str, Any]) -> dict[str, Any]:
    """The outcome's line with its rung's words (the same as ``verify`` and the terminal say)."""
    rung = line.get("rung")
    return line | {"verdict_words": asdict(VERDICT_WORDS[Verdict(rung)])} if rung else line


def _list(db: Path, *, gaps: bool) -> int:
    store = ResultStore(db, {})  # listing verifies nothing: no keys needed
    try:
        for row in [gap.as_dict() for gap in store.gaps()] if gaps else store.quarantined():
            print(json.dumps(row))
        print(json.dumps({"counts": store.counts()}))
    finally:
        store.close()
    return 0


def _retry(store: ResultStore) -> int:
    try:
        for outcome in store.retry_quarantined():
            print(json.dumps(_with_words(outcome.as_dict()), ensure_ascii=False))
        print(json.dumps({"counts": store.counts()}))
    finally:
        store.close()
    return 0
