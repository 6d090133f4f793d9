"""`cccd-edge trust import FILE...` and `cccd-edge trust list`: manage the CSCA certificates the terminal trusts.

A ward installs the anchor it receives (a CSCA certificate, a CSCA master list, a CRL) with one command; the
listing shows fingerprints so the installer can compare them with the ones the issuing authority publishes.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.config import PathsConfig
from edge.errors import TrustStoreError

#: Same default as ``paths.trust_store`` in the config: under /etc, managed by root, read-only to the daemon so a
#: compromised daemon cannot plant its own trust anchor.
DEFAULT_STORE = PathsConfig().trust_store
STORE_ENV = "CCCD_EDGE_TRUST_DIR"


def default_store() -> Path:
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("trust", help="install and list trusted CSCA certificates")
    actions = parser.add_subparsers(dest="trust_command", metavar="ACTION", required=True)
    store_help = f"trust store directory (default: ${STORE_ENV} or {DEFAULT_STORE})"

    importer = actions.add_parser("import", help="verify and install CSCA certificates, master lists or CRLs")
    importer.add_argument("files", nargs="+", type=Path, metavar="FILE")
    importer.add_argument("--store", type=Path, default=None, help=store_help)
    importer.add_argument(
        "--accept-self-anchored",
        action="store_true",
        help="also accept a master list whose signer chains only to a CSCA the list carries itself (compare that "
        "CSCA's fingerprint with the one the issuing authority publishes first)",
    )
    importer.set_defaults(func=run_import)

    lister = actions.add_parser("list", help="list the installed CSCA certificates")
    lister.add_argument("--store", type=Path, default=None, help=store_help)
    lister.set_defaults(func=run_list)


def run_import(args: argparse.Namespace) -> int:
    from edge.protocol.verify.trust import TrustStore

    store_dir: Path = args.store or default_store()
    failures = 0
    for path in args.files:
        store = TrustStore.load(store_dir)  # reload: a master list may anchor on a CSCA imported just before
        try:
            report = store.import_file(path, at=datetime.now(UTC), accept_self_anchored=args.accept_self_anchored)
        except TrustStoreError as exc:
            print(f"REFUSED {exc}")  # the message starts with the file
            failures += 1
            continue
        print(f"{report.kind} {path}: {len(report.added)} added, {report.already_present} already installed")
        if report.anchored_in == "list":
            print(
                f"WARNING {path} is SELF-ANCHORED: it vouches for itself and was accepted only because of "
                f"--accept-self-anchored; compare its anchor CSCA SHA-256 {report.anchor_fingerprint} with the "
                "fingerprint the issuing authority publishes"
            )
        for entry in report.added:
            print(f"  + {entry.kind:4} {entry.fingerprint}  {entry.subject}")
        for skipped in report.skipped:
            print(f"  - skipped: {skipped}")
        for note in report.notes:
            print(f"  note: {note}")
    return 1 if failures else 0


def run_list(args: argparse.Namespace) -> int:
    from edge.protocol.verify.trust import TrustStore

    store_dir: Path = args.store or default_store()
    store = TrustStore.load(store_dir)
    entries = store.entries()
    now = datetime.now(UTC)
    print(f"trust store {store_dir}: {len(entries)} certificates, {len(store.crls)} CRLs")
    for entry in entries:
        state = "valid" if entry.not_before <= now <= entry.not_after else "EXPIRED/NOT YET VALID"
        print(f"{entry.kind:4} {entry.subject}")
        print(f"     key {entry.key}; {entry.not_before:%Y-%m-%d} .. {entry.not_after:%Y-%m-%d} ({state})")
        print(f"     SHA-256 {entry.fingerprint}")
    for problem in store.problems:
        print(f"PROBLEM {problem}")
    return 1 if store.problems else 0
