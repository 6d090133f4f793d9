"""`cccd-edge trust import FILE...` and `cccd-edge trust list`: manage the CSCA certificates the terminal trusts.

A ward installs the anchor it receives (a CSCA certificate, a CSCA master list, a CRL) with one command; the
listing shows fingerprints so the installer can compare them with the ones the issuing authority publishes.
A signed DS list (:mod:`edge.daemon.ds_list`) pins known Document Signers; it is imported only under a key named
with ``--ds-list-key`` or taken from the terminal's config (``--config``).
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.config import Config, PathsConfig, load_config
from edge.errors import DsListRefusedError, TrustStoreError

if TYPE_CHECKING:
    from edge.protocol.verify.trust import TrustStore

#: Same default as ``paths.trust_store`` in the config: under /etc, managed by root, read-only to the daemon so a
#: compromised daemon cannot plant its own trust anchor.
DEFAULT_STORE = PathsConfig().trust_store
STORE_ENV = "CCCD_EDGE_TRUST_DIR"


def default_store() -> Path:
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


def _is_jws(path: Path) -> bool:
    """A compact JWS starts with a base64url JSON header: ``eyJ`` is ``{"``. No certificate file does."""
    try:
        with path.open("rb") as handle:
            return handle.read(64).lstrip().startswith(b"eyJ")
    except OSError:
        return False  # import_file says why it cannot be read


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
    importer.add_argument("--ds-list-key", type=Path, action="append", default=[], metavar="PUB.pem",
                          help="accept signed DS lists (known Document Signers) signed by this P-256 public key "
                          "(PEM key or certificate; repeatable)")
    importer.add_argument("--ward", help="with --ds-list-key: refuse DS lists for another ward")
    importer.add_argument("--config", type=Path, metavar="CONFIG",
                          help="the terminal's config: DS lists signed by its ward command key or trust.ds_list_keys, "
                          "for its ward, pinned in <state_dir>/known-signers (where the office's trust_update pins "
                          "too); CSCA files into its paths.trust_store")
    importer.set_defaults(func=run_import)

    lister = actions.add_parser("list", help="list the installed CSCA certificates and known Document Signers")
    lister.add_argument("--store", type=Path, default=None, help=store_help)
    lister.add_argument("--config", type=Path, metavar="CONFIG",
                        help="the terminal's config: its trust store and the signers DS lists pinned for it")
    lister.set_defaults(func=run_list)


def run_import(args: argparse.Namespace) -> int:
    from edge.protocol.verify.trust import TrustStore

    config = load_config(args.config) if args.config else None
    store_dir: Path = args.store or (config.paths.trust_store if config else default_store())
    failures = 0
    for path in args.files:
        store = TrustStore.load(store_dir)  # reload: a master list may anchor on a CSCA imported just before
        if _is_jws(path):
            failures += not _import_ds_list(path, store, args, config)
            continue
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


def _import_ds_list(path: Path, store: TrustStore, args: argparse.Namespace, config: Config | None) -> bool:
    """Verify and pin one signed DS list; prints what changed or one REFUSED line."""
    from edge.daemon.ds_list import apply_ds_list, known_signers_dir, list_keys, verify_ds_list
    from edge.protocol.ds_list import MAX_DS_LIST_BYTES
    from edge.signers import load_public_key

    named = [load_public_key(key, config_key="--ds-list-key") for key in args.ds_list_key]
    ward_key, province, ward_code = None, [], args.ward
    if config is not None:
        if config.paths.ward_command_key is not None:
            ward_key = load_public_key(config.paths.ward_command_key, config_key="paths.ward_command_key")
        province = [load_public_key(key, config_key="trust.ds_list_keys") for key in config.trust.ds_list_keys]
        ward_code = config.ward_code
    keys = list_keys(ward=ward_key, province=province, named=named)
    target: Path = args.store or (known_signers_dir(config.paths.state_dir) if config else default_store())
    now = datetime.now(UTC)
    try:
        if not keys:
            raise DsListRefusedError("unknown_key", "a signed DS list: name the key that signs it (--ds-list-key "
                                     "PUB.pem, or --config for the terminal's)")
        try:
            with path.open("rb") as handle:
                token = handle.read(MAX_DS_LIST_BYTES + 1)
        except OSError as exc:
            raise DsListRefusedError("malformed", f"cannot read it: {exc.strerror or exc}") from None
        verified = verify_ds_list(token, keys, ward_code=ward_code, now=int(now.timestamp()))
        report = apply_ds_list(verified, trust=store, target=target, at=now)
    except DsListRefusedError as exc:
        print(f"REFUSED {path}: {exc}")
        return False
    again = " (this version was accepted before)" if report.repeated else ""
    print(f"DS list {path}: version {report.version} from {report.iss} for {report.ward_code} (key {report.kid}): "
          f"{len(report.added)} added, {report.already_present} already installed, {len(report.removed)} removed"
          f"{again}; pinned in {target}")
    for entry in report.added:
        note = report.notes.get(entry.fingerprint)
        print(f"  + {entry.kind:4} {entry.fingerprint}  {entry.subject}" + (f"  ({note})" if note else ""))
    for fingerprint in report.removed:
        print(f"  - DS   {fingerprint}  (not in this version)")
    return True


def terminal_trust(store: Path | None, config_path: Path | None) -> tuple[TrustStore, Path, Path | None]:
    """The trust a terminal verifies with, as its daemon loads it: ``store`` (else the config's trust store, else the
    default), and with a config the Document Signers pinned for it (``known-signers``), so ``read`` and ``trust list``
    give the verdict the daemon would. Returns the store and the two directories."""
    from edge.daemon.ds_list import known_signers_dir
    from edge.protocol.verify.trust import TrustStore

    config = load_config(config_path) if config_path else None
    store_dir: Path = store or (config.paths.trust_store if config else default_store())
    signers_dir = known_signers_dir(config.paths.state_dir) if config else None
    return TrustStore.load(store_dir, signers_dir=signers_dir), store_dir, signers_dir


def run_list(args: argparse.Namespace) -> int:
    from edge.daemon.ds_list import load_record

    store, store_dir, signers_dir = terminal_trust(args.store, args.config)
    notes: dict[str, str] = {}
    lists: list[str] = []
    problems = list(store.problems)
    for directory in (store_dir, signers_dir):
        if directory is None:
            continue
        try:
            record = load_record(directory)
        except DsListRefusedError as exc:
            problems.append(str(exc))
            continue
        for kid, accepted in sorted(record.lists.items()):
            notes |= accepted.notes
            lists.append(f"DS list version {accepted.version} from {accepted.iss} for {accepted.ward_code} "
                         f"(key {kid}): {len(accepted.fingerprints)} signers, in {directory}")
    entries = store.entries()
    now = datetime.now(UTC)
    print(f"trust store {store_dir}: {len(entries)} certificates, {len(store.crls)} CRLs")
    for entry in entries:
        state = "valid" if entry.not_before <= now <= entry.not_after else "EXPIRED/NOT YET VALID"
        print(f"{entry.kind:4} {entry.subject}")
        print(f"     key {entry.key}; {entry.not_before:%Y-%m-%d} .. {entry.not_after:%Y-%m-%d} ({state})")
        print(f"     SHA-256 {entry.fingerprint}")
        if entry.fingerprint in notes:
            print(f"     note: {notes[entry.fingerprint]}")
    for line in lists:
        print(line)
    for problem in problems:
        print(f"PROBLEM {problem}")
    return 1 if problems else 0
