"""``cccd-edge gateway``: the office gateway (``run``), and what its database says (``fleet``, ``gaps``).

``run`` is a service (systemd/cccd-edge-gateway.service): it logs "subscribed to ..." once the broker holds results
for it, quarantines (with the reason) what it cannot accept, logs seq gaps as they open, and every minute a line of
counts. ``--count N`` (tests, scripts) exits 0 once N new results are stored by this instance (1 after
``--timeout`` seconds). With a ``[web]`` section it also serves the officers' pages (``edge.office.web``) and logs
their address. ``fleet`` prints each terminal's last retained status, ``gaps`` the gap report, ``audit`` the
officers' audit log, one JSON line each; ``officer add|list|disable`` keeps the officers' accounts (the password is
asked for, or read from stdin with ``--password-stdin``; never an argument: it would sit in the shell's history).
``online-answer RESULT_JTI --file answer.json`` records the national authentication service's answer against an
``online_check`` result (``ResultStore.record_online_answer``) and prints the record without the answer's values.
With ``[api]`` and/or ``[[webhooks]]`` ``run`` also serves the REST API and sends the webhooks
(``edge.office.api_server``); ``api-key add --name N --ward W`` registers an API client and prints its key once
(``--tls-cn CN``: a client certificate instead), ``api-key list|revoke``; ``webhook-secret --out F`` writes a new
``whsec_`` secret (0600). ``retention [--dry-run]`` reduces the results past their profile's retention (``run``
also does, every ``storage.retention_every`` seconds); ``subject export --id-number-file F --reason R --officer O
-o out.json`` writes one citizen's results (0600), ``subject erase`` reduces them, each audited.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import signal
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from types import FrameType
from typing import Any

from edge.errors import OnlineAnswerError
from edge.office.gateway import open_gateway, open_store
from edge.office.gateway_config import load_gateway_config
from edge.office.store import MAX_ONLINE_ANSWER_BYTES, Outcome

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
                       ("gaps", "each terminal's (ward and id) missing and refused seqs, one JSON line each"),
                       ("audit", "the officers' audit log (reveals, desk reads), latest first, one JSON line each")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, required=True, help="gateway.toml")
        sub.add_argument("--ward", help="only this ward (fleet, gaps)")
        sub.set_defaults(func=_list, what=name)
    officer = actions.add_parser("officer", help="the officers' accounts for the pages ([web])")
    officer_actions = officer.add_subparsers(dest="officer_action", metavar="ACTION", required=True)
    add = officer_actions.add_parser("add", help="create (or --replace) an account")
    add.add_argument("username")
    add.add_argument("--role", choices=("officer", "supervisor", "auditor"), required=True)
    add.add_argument("--counter", action="append", default=[], metavar="[WARD/]TERMINAL",
                     help="a counter this officer works at (repeat): WARD/TERMINAL, or on a ward's server TERMINAL "
                     "alone (its own ward's)")
    add.add_argument("--display-name", default="")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    add.add_argument("--no-password", action="store_true", help="only the reverse proxy's identity header logs in")
    add.add_argument("--replace", action="store_true", help="replace an existing account (its sessions end)")
    for name in ("list", "disable"):
        sub = officer_actions.add_parser(name, help="every account" if name == "list" else "disable an account")
        if name == "disable":
            sub.add_argument("username")
    for sub in officer_actions.choices.values():
        sub.add_argument("--config", type=Path, required=True, help="gateway.toml")
        sub.set_defaults(func=_officer)
    answer = actions.add_parser("online-answer", help="record the national authentication service's answer against "
                                "an online_check result")  # fmt: skip
    answer.add_argument("result_jti", metavar="RESULT_JTI", help="the result's jti")
    answer.add_argument("--file", type=Path, required=True, help="the provider's answer, a JSON object ('-': stdin)")
    answer.add_argument("--terminal", help="the result's terminal, when several terminals' results share the jti")
    answer.add_argument("--config", type=Path, required=True, help="gateway.toml")
    answer.set_defaults(func=_online_answer)
    api_key = actions.add_parser("api-key", help="the REST API's clients: each with a key (or a certificate CN) and "
                                                 "its wards")  # fmt: skip
    key_actions = api_key.add_subparsers(dest="key_action", metavar="ACTION", required=True)
    key_add = key_actions.add_parser("add", help="register a client; prints its API key once")
    key_add.add_argument("--name", required=True, help="who the client is (the procedure software's name)")
    key_add.add_argument("--ward", action="append", required=True, metavar="WARD",
                         help="a ward whose results it may read and whose terminals it may ask (repeat; '+': all)")
    key_add.add_argument("--tls-cn", metavar="CN", help="a client certificate's CN instead of a key (api.client_ca)")
    key_revoke = key_actions.add_parser("revoke", help="refuse a client from now on")
    key_revoke.add_argument("--name", required=True)
    key_actions.add_parser("list", help="every client, one JSON line each (no secrets)")
    for sub in key_actions.choices.values():
        sub.add_argument("--config", type=Path, required=True, help="gateway.toml")
        sub.set_defaults(func=_api_key)
    retention = actions.add_parser("retention", help="reduce results past their profile's retention now")
    retention.add_argument("--dry-run", action="store_true", help="only count what would be reduced")
    retention.add_argument("--config", type=Path, required=True, help="gateway.toml")
    retention.set_defaults(func=_retention)
    subject = actions.add_parser("subject", help="one citizen's rights: a copy of their results, or their erasure")
    subject_actions = subject.add_subparsers(dest="subject_action", metavar="ACTION", required=True)
    for name, text in (("export", "write every stored result of the citizen to a file (0600)"),
                       ("erase", "reduce every stored result of the citizen to its non-personal fields")):
        sub = subject_actions.add_parser(name, help=text)
        sub.add_argument("--id-number-file", type=Path, required=True,
                         help="a file holding the citizen's ID number ('-': stdin; never an argument: ps shows those)")
        sub.add_argument("--reason", required=True, help="the request's reference, written to the audit log")
        sub.add_argument("--officer", required=True, help="the officer's account acting on the request")
        sub.add_argument("--config", type=Path, required=True, help="gateway.toml")
        if name == "export":
            sub.add_argument("-o", "--out", type=Path, required=True, help="the copy (JSON, created 0600)")
        sub.set_defaults(func=_subject)
    secret = actions.add_parser("webhook-secret", help="write a new Standard Webhooks secret (whsec_...) to a file")
    secret.add_argument("--out", type=Path, required=True, help="the file (created 0600; never replaced)")
    secret.set_defaults(func=_webhook_secret)


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

    office = None
    if config.web is not None:
        from edge.office.web.server import open_office  # the pages' libraries: only where [web] asks for them

        office = open_office(config, on_outcome=counted)
        gateway = office.gateway
    else:
        gateway = open_gateway(config, on_outcome=counted)
    signal.signal(signal.SIGTERM, stop)
    started = time.monotonic()
    log.info("gateway %s: storage %s, %s", config.instance, gateway.store.dialect,
             "receipts signed" if config.receipts.key else "no receipts (PUBACK-only ward)")
    procedure = None
    if config.api is not None or config.webhooks:
        from edge.office.api_server import open_procedure_side  # FastAPI and uvicorn: only where asked for

        procedure = open_procedure_side(config, gateway)
    if office is not None:
        office.start()
        log.info("officers' pages at %s", office.url)
    else:
        gateway.start()
    if procedure is not None:
        procedure.start()
    try:
        while not done.wait(COUNTS_EVERY if args.timeout is None else min(COUNTS_EVERY, args.timeout)):
            log.info("counts %s", json.dumps(gateway.stats.as_dict()))
            if args.timeout is not None and time.monotonic() - started >= args.timeout:
                log.error("%d of %d results stored within %g s", stored, args.count, args.timeout)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        if procedure is not None:
            procedure.stop()
        if office is not None:
            office.stop()
        else:
            gateway.stop()
            gateway.store.close()
        log.info("counts %s", json.dumps(gateway.stats.as_dict()))
    return 0


def _list(args: argparse.Namespace) -> int:
    with closing(open_store(load_gateway_config(args.config))) as store:
        if args.what == "audit":
            from edge.office.web.audit import AuditLog

            rows = [entry.as_dict() for entry in AuditLog(store.database).entries(limit=10_000)]
        else:
            rows = ([row.as_dict() for row in store.fleet(args.ward)] if args.what == "fleet"
                    else [gap.as_dict() for gap in store.gaps(ward=args.ward)])
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    return 0


def _officer(args: argparse.Namespace) -> int:
    from edge.office.database import Database
    from edge.office.web.officers import Officers, Role

    config = load_gateway_config(args.config)
    with closing(Database(config.storage.url)) as db:
        officers = Officers(db)
        if args.officer_action == "list":
            for account, disabled in officers.all():
                print(json.dumps({"username": account.username, "role": account.role.value,
                                  "counters": list(account.counters), "display_name": account.display_name,
                                  "disabled": disabled}, ensure_ascii=False))
        elif args.officer_action == "disable":
            if not officers.disable(args.username):
                print(f"error: no officer {args.username}", file=sys.stderr)
                return 1
        else:
            password = None
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            elif not args.no_password:
                password = getpass.getpass(f"password for {args.username}: ")
                if getpass.getpass("again: ") != password:
                    print("error: the passwords differ", file=sys.stderr)
                    return 1
            officers.add(args.username, Role(args.role), password=password, counters=args.counter,
                         display_name=args.display_name, replace=args.replace, province=config.ward == "+")
            print(f"officer {args.username}: {args.role}" + (f", counters {', '.join(args.counter)}"
                                                           if args.counter else ""))
    return 0


def _online_answer(args: argparse.Namespace) -> int:
    """``online-answer``: the answer recorded against its result; prints the record without the answer's values."""
    try:
        if str(args.file) == "-":
            data = sys.stdin.buffer.read(MAX_ONLINE_ANSWER_BYTES + 1)
        else:
            with args.file.open("rb") as file:
                data = file.read(MAX_ONLINE_ANSWER_BYTES + 1)  # a larger one is refused, not read whole
    except OSError as exc:
        raise OnlineAnswerError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    with closing(open_store(load_gateway_config(args.config))) as store:
        recorded = store.record_online_answer(args.result_jti, data, time.time(), iss=args.terminal)
    print(json.dumps(recorded.summary(), ensure_ascii=False))
    return 0


def _retention(args: argparse.Namespace) -> int:
    """``retention``: what was (``--dry-run``: would be) reduced, counts only."""
    with closing(open_store(load_gateway_config(args.config))) as store:
        print(json.dumps(store.apply_retention(time.time(), dry_run=args.dry_run).as_dict()))
    return 0


def _subject(args: argparse.Namespace) -> int:
    """``subject export|erase``: audited under the officer's account; prints counts, never the citizen's data."""
    from edge.errors import ConfigError
    from edge.files import write_private
    from edge.office.subjects import SubjectRequest, erase_subject, export_subject, parse_id_number
    from edge.office.web.audit import AuditLog
    from edge.office.web.officers import Officers

    try:
        text = sys.stdin.readline() if str(args.id_number_file) == "-" else args.id_number_file.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the ID number from {args.id_number_file}: {exc}", key="id_number") from None
    id_number = parse_id_number(text)
    if not args.reason.strip():
        raise ConfigError("a request needs its reason", key="reason")
    with closing(open_store(load_gateway_config(args.config))) as store:
        officer = Officers(store.database).get(args.officer)
        if officer is None or not officer.sees_citizens:
            raise ConfigError(f"no officer or supervisor account {args.officer[:64]!r}", key="officer")
        request, audit, now = SubjectRequest(officer, args.reason.strip()), AuditLog(store.database), time.time()
        if args.subject_action == "export":
            copy = export_subject(store, audit, request, id_number, now)
            write_private(args.out, json.dumps(copy, ensure_ascii=False, indent=1).encode(), durable=True)
            print(json.dumps({"exported": len(copy["results"]), "out": str(args.out)}))
        else:
            print(json.dumps({"erased": len(erase_subject(store, audit, request, id_number, now))}))
    return 0


def _api_key(args: argparse.Namespace) -> int:
    from edge.office.api_clients import ApiClients
    from edge.office.database import Database

    with closing(Database(load_gateway_config(args.config).storage.url)) as db:
        clients = ApiClients(db)
        if args.key_action == "list":
            for client in clients.all():
                print(json.dumps(client, ensure_ascii=False))
        elif args.key_action == "revoke":
            if not clients.revoke(args.name, time.time()):
                print(f"error: no client {args.name}", file=sys.stderr)
                return 1
        else:
            key = clients.add(args.name, args.ward, time.time(), tls_cn=args.tls_cn)
            print(key if key is not None else f"client {args.name}: certificate CN {args.tls_cn}")
    return 0


def _webhook_secret(args: argparse.Namespace) -> int:
    from edge.office.webhooks import write_secret

    write_secret(args.out)
    print(f"secret written to {args.out}: give the receiver its content, put the path in [[webhooks]] secret_file")
    return 0
