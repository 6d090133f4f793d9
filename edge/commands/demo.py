"""`cccd-edge demo`: the main job end to end on a virtual card, on a fresh machine, with nothing personal printed.

What a ward counter does, with every part real except the card and the camera: a private pcscd and a mutual-TLS
mosquitto with the ward's ACL, keys and certificates made by the provisioning package, the daemon (``Terminal``) run
in this process with a replay camera showing the card's QR, the virtual card tapped on the vpcd reader, and the
office gateway (``edge.office.gateway``, SQLite) verifying, storing and sending its signed receipt back to the
terminal, with the REST API for the procedure software on a loopback port, which the demo asks for the stored
result. The chain: terminal -> broker -> gateway -> stored -> receipt at the terminal, each step in the timeline. It
prints the verdict with its rung's words and the indicator pattern the terminal showed (``--profile
untrusted-issuer``: ``intact_origin_unproven``, the ``unproven`` pattern, never success). Exit 0 only when the
gateway stored a result whose verdict proves the issuer (``verified``, ``verified_known_signer``) and the terminal
believed its receipt; everything started is stopped and the temporary directory removed, also on Ctrl-C or an
error. This is what ``make demo`` runs: one command that ends by itself.

``--serve`` keeps the whole chain running instead (:mod:`edge.demo_counter`): the daemon in its own process, the
office gateway with the officer's pages; it taps the genuine card once, prints that verdict, the page's address and
two accounts, and then waits: the page's demo panel (or typing 1, 2, 3 and Enter here) puts a genuine, forged or
self-made virtual card on the reader, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from edge.errors import DemoError
from edge.logsetup import mask_id, mask_name, mask_text
from edge.protocol.card_generation import card_words, generation_of_result
from edge.protocol.verify.checks import VERDICT_WORDS, Verdict, VerdictWords

if TYPE_CHECKING:
    from edge.daemon.mqtt import ResultPublisher
    from edge.daemon.terminal import Terminal
    from edge.demo_env import DemoEnvironment
    from edge.office.api_server import ProcedureSide
    from edge.office.gateway import Gateway
    from edge.office.gateway_config import GatewayConfig
    from edge.office.store import Outcome, ResultStore
    from edge.office.verify import VerifiedResult

READY_TIMEOUT = 30.0  # pcscd, camera and broker are local: anything slower is a fault worth reporting
QR_TIMEOUT = 10.0  # the replay camera shows the QR from its first frame
RESULT_TIMEOUT = 60.0  # covers the daemon's own reading + verifying timeouts (20 s + 10 s) with room to spare
RECEIPT_TIMEOUT = 10.0  # the gateway sends it right after the commit; the terminal checks it within milliseconds
STATE_POLL = 0.001  # fine enough to see the short VERIFYING state on a fast machine

# Terminal state names (edge.daemon.state.State values) the timeline is made of.
QR_SEEN_STATES = frozenset({"wait_card"})
READING_STATES = frozenset({"reading"})
READ_DONE_STATES = frozenset({"verifying"})
RESULT_STATES = frozenset({"result_ok", "result_unproven", "result_failed"})


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "demo", help="the main job end to end: virtual card -> daemon -> mutual-TLS broker -> office gateway -> "
        "stored -> receipt at the terminal")
    parser.add_argument("--profile", default="default",
                        help="virtual card profile (e.g. forged-dg13 to see a failure); see `cccd-edge sim card`")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (keys, config, logs)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--serve", action="store_true",
                        help="keep the chain running and serve the officer's counter page (Ctrl-C stops)")
    parser.add_argument("--port", type=int, default=8080, help="with --serve: the page's port (busy: a free one)")
    parser.set_defaults(func=run, log_level=logging.INFO)


@dataclass
class Timeline:
    """Monotonic times of the steps, filled by the state watcher (terminal states, receipts believed) and the
    gateway's callback (stored)."""

    ready: float = 0.0
    qr_seen: float | None = None
    tapped: float | None = None
    reading: float | None = None
    read_done: float | None = None
    verified: float | None = None
    stored: float | None = None  # the gateway committed it
    receipt: float | None = None  # the terminal believed the gateway's receipt (and deleted the result)
    states: list[str] = field(default_factory=list)
    indicator: str | None = None  # the pattern the LEDs showed for the result

    def observe(self, state: str, now: float, indicator: str | None = None) -> None:
        if not self.states or self.states[-1] != state:
            self.states.append(state)
        if state in QR_SEEN_STATES and self.qr_seen is None:
            self.qr_seen = now
        elif state in READING_STATES and self.reading is None:
            self.reading = now
        elif state in READ_DONE_STATES and self.read_done is None:
            self.read_done = now
        elif state in RESULT_STATES and self.verified is None:
            self.verified = now
            self.indicator = indicator
            if self.read_done is None and self.reading is not None:
                self.read_done = now  # VERIFYING came and went between two polls: verification is ~ms

    def milliseconds(self) -> dict[str, int | None]:
        """Each step relative to the QR being seen (or to the tap, if the card came first)."""
        origin = self.qr_seen if self.qr_seen is not None else self.tapped
        steps = {"qr_seen": self.qr_seen, "card_tapped": self.tapped, "card_read": self.read_done,
                 "verified": self.verified, "stored": self.stored, "receipt": self.receipt}
        if origin is None:
            return dict.fromkeys(steps)
        # States are polled, so a step may be seen after the next one happened (the office can store the result
        # before the poll sees RESULT_OK): a step happened at the latest when the next one was seen.
        for step, following in (("stored", "receipt"), ("verified", "stored"), ("card_read", "verified")):
            at, later = steps[step], steps[following]
            if at is not None and later is not None:
                steps[step] = min(at, later)
        return {name: None if at is None else round((at - origin) * 1000) for name, at in steps.items()}


@contextlib.contextmanager
def _watch_states(terminal: Terminal, timeline: Timeline) -> Iterator[threading.Event]:
    """Poll ``terminal.state`` and the receipts its publisher believed in a thread, recording when each step was
    first seen; yields a stop event."""
    stop = threading.Event()
    publisher: ResultPublisher | None = terminal.publisher

    def watch() -> None:
        while not stop.is_set():
            snapshot = terminal.snapshot  # one read: state and indicator of the same moment
            now = time.monotonic()
            timeline.observe(snapshot.state.value, now, snapshot.indicator.value)
            if timeline.receipt is None and publisher is not None and publisher.receipts_accepted:
                timeline.receipt = now
            stop.wait(STATE_POLL)

    thread = threading.Thread(target=watch, name="demo-state-watch", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=2.0)


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


@dataclass(frozen=True, slots=True)
class Delivered:
    outcome: Outcome
    result: VerifiedResult | None  # None when the office rejected the token
    receipt: bool  # the terminal believed the gateway's receipt for it
    api_url: str | None = None  # the REST API's address (None: FastAPI and uvicorn are not installed)
    api_answer: str | None = None  # how it answered for the stored result


def _run_counter(env: DemoEnvironment, timeline: Timeline) -> Delivered:
    """Office gateway (and its REST API) up, daemon up, QR shown, card tapped; returns what the gateway stored, and
    whether the terminal believed its receipt."""
    from edge.daemon.terminal import Terminal
    from edge.office.gateway import open_gateway
    from edge.office.verify import load_keys, verify_result

    if env.broker is None or env.card is None:
        raise DemoError("the demo environment was not entered")
    keys = load_keys([env.device_cert])  # the demo verifies the stored token on its own, as procedure software may
    arrivals: queue.Queue[Outcome] = queue.Queue()

    def arrived(outcome: Outcome) -> None:  # the gateway's worker thread, once the result is committed
        if outcome.status != "duplicate":
            timeline.stored = timeline.stored or time.monotonic()
            arrivals.put(outcome)

    config = env.gateway_config()
    gateway = open_gateway(config, on_outcome=arrived)
    procedure = _procedure_side(config, gateway)
    try:
        gateway.start()
        if procedure is not None:
            procedure.start()
        if not gateway.subscribed.wait(READY_TIMEOUT):
            raise DemoError(f"the office gateway did not subscribe at the broker; see {env.broker.log}")
        # The daemon, with the drivers its config names (pcsc, replay camera, gpiozero LEDs on mock pins): the same
        # object `cccd-edge run` builds.
        with Terminal(env.config) as terminal:
            if not terminal.wait_ready(READY_TIMEOUT):
                raise DemoError(f"the terminal did not become ready (state {terminal.state.value})")
            timeline.ready = time.monotonic()
            with _watch_states(terminal, timeline):
                _wait_until(lambda: timeline.qr_seen is not None, QR_TIMEOUT)  # if not, tap anyway: card first
                timeline.tapped = time.monotonic()
                env.card.insert()
                try:
                    outcome = arrivals.get(timeout=RESULT_TIMEOUT)
                except queue.Empty:
                    raise DemoError(
                        f"no result reached the office within {RESULT_TIMEOUT:.0f} s "
                        f"(terminal states: {' -> '.join(timeline.states)})") from None
                # The gateway stored it, so the terminal has shown its verdict: let the watcher see that state; the
                # receipt follows the commit (none for a message the gateway quarantined).
                _wait_until(lambda: timeline.verified is not None, 1.0)
                if outcome.status != "quarantined":
                    _wait_until(lambda: timeline.receipt is not None, RECEIPT_TIMEOUT)
        if outcome.status == "quarantined" or outcome.iss is None or outcome.jti is None:
            return Delivered(outcome, None, timeline.receipt is not None)
        token, answer = _stored_token(gateway.store, procedure, outcome.iss, outcome.jti)
        result = verify_result(token, keys, int(time.time()))  # what the API served verifies on its own
        api_url = procedure.api.url if procedure is not None and procedure.api is not None else None
        return Delivered(outcome, result, timeline.receipt is not None, api_url, answer)
    finally:
        if procedure is not None:
            procedure.stop()
        gateway.stop()
        gateway.store.close()


def _procedure_side(config: GatewayConfig, gateway: Gateway) -> ProcedureSide | None:
    """The REST API beside the gateway, as ``gateway run`` serves it with ``[api]``; None when FastAPI and uvicorn
    (the ``gateway`` extra) are not installed: the chain runs without it."""
    try:
        from edge.office.api_server import open_procedure_side
    except ImportError:
        return None
    return open_procedure_side(config, gateway)


def _stored_token(store: ResultStore, procedure: ProcedureSide | None, iss: str, jti: str) -> tuple[str, str | None]:
    """The stored result's token, as the procedure software gets it: ``GET /v1/results/{terminal}/{jti}`` from the
    REST API with an API key registered for the demo's ward (from the store, as that route reads it, when the API is
    not installed). Returns the token and what the API answered."""
    from edge.demo_env import WARD_CODE
    from edge.office.contract import ResultRecord

    if procedure is None or procedure.api is None:
        record = store.result(iss, jti)
        if record is None:
            raise DemoError(f"the gateway reported result {jti} stored, but its database does not hold it")
        return record.token, None
    import urllib.request

    from edge.office.api_clients import ApiClients

    key = ApiClients(store.database).add("demo", [WARD_CODE], time.time())
    url = f"{procedure.api.url}v1/results/{iss}/{jti}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})  # noqa: S310  # loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            record = ResultRecord.model_validate_json(response.read())
            status = response.status
    except OSError as exc:
        raise DemoError(f"the REST API at {procedure.api.url} did not answer for the stored result: {exc}") from None
    return record.token, f"GET {url.removeprefix(procedure.api.url.rstrip('/'))} -> {status}"


def _year(card_date: str) -> str:
    """Only the year of a date as the card prints it ("01/02/2003"): the day and month would narrow down a person."""
    match = re.search(r"[0-9]{4}", card_date)
    return match.group(0) if match else "****"


def _summary(env: DemoEnvironment, delivered: Delivered, timeline: Timeline, wall: float) -> dict[str, Any]:
    """Everything the demo prints, personal data masked."""
    outcome, result = delivered.outcome, delivered.result
    summary: dict[str, Any] = {
        "profile": env.profile_name,
        "delivery": {"status": outcome.status, "reason": outcome.reason, "seq": outcome.seq,
                     "broker": f"mosquitto {env.broker.host}:{env.broker.port} (mutual TLS"
                               f"{', ward ACL' if env.broker_acl else ''})" if env.broker else None,
                     "gateway": "office gateway on SQLite", "receipt": delivered.receipt},
        "api": {"url": delivered.api_url, "answer": delivered.api_answer} if delivered.api_url else None,
        "verdict": None,
        "verdict_words": None,
        "indicator": timeline.indicator,
        "checks": [],
        "card": None,
        "citizen": None,
        "timings_ms": timeline.milliseconds(),
        "terminal_states": timeline.states,
        "pcscd": env.pcscd_kind,
        "workdir": str(env.workdir),
        "kept": env.keep,
    }
    if result is not None:
        doc = result.document
        summary["verdict"] = doc.verdict.value
        summary["verdict_words"] = asdict(VERDICT_WORDS[doc.verdict])
        summary["checks"] = [{"name": c.name, "status": c.status.value, "reason": c.reason} for c in doc.checks]
        summary["read"] = {"apdus": doc.timing.apdu_count, "read_ms": doc.timing.read_ms,
                           "verify_ms": doc.timing.verify_ms, "qr_used": doc.qr.used}
        summary["terminal"] = {"id": result.iss, "ward": doc.ward_code, "profile": doc.procedure_profile.value}
        generation = generation_of_result(doc.citizen.date_of_issue if doc.citizen else None, doc.qr.format)
        summary["card"] = {"generation": generation, **asdict(card_words(generation))}
        if doc.citizen is not None:
            citizen = doc.citizen
            summary["citizen"] = {
                "id_number": mask_id(citizen.id_number),
                "full_name": mask_name(citizen.full_name),
                "year_of_birth": _year(citizen.date_of_birth),
                "place_of_residence": mask_text(citizen.place_of_residence or ""),
            }
    summary["ok"] = (outcome.status == "stored" and delivered.receipt and result is not None
                     and result.document.verdict.proves_origin)
    summary["wall_s"] = round(wall, 2)
    return summary


def _print_human(summary: dict[str, Any]) -> None:
    from edge.drivers.leds import PATTERNS  # lazy: gpiozero is not every command's business

    delivery = summary["delivery"]
    print(f"cccd-edge demo: profile '{summary['profile']}', pcscd {summary['pcscd']}, {delivery['broker']}, "
          f"{delivery['gateway']}")
    receipt = "receipt believed by the terminal" if delivery["receipt"] else "no receipt at the terminal"
    print(f"verdict: {summary['verdict'] or 'none'}  (office: {delivery['status']}"
          + (f", {delivery['reason']}" if delivery["reason"] else "")
          + (f"; {receipt}" if delivery["status"] != "quarantined" else "") + ")")
    if summary["verdict_words"] is not None:
        for line in VerdictWords(**summary["verdict_words"]).lines():
            print(f"  {line}")
    if summary["indicator"] is not None:
        print(f"indicator: {summary['indicator']} ({PATTERNS[summary['indicator']].meaning})")
    for check in summary["checks"]:
        mark = {"passed": "ok  ", "failed": "FAIL"}.get(check["status"], "--  ")
        print(f"  {mark} {check['name']:<24} {check['status']}" + (f": {check['reason']}" if check["reason"] else ""))
    if summary["card"] is not None:
        print(f"card: {summary['card']['vi']} ({summary['card']['en']})")
    citizen = summary["citizen"]
    if citizen is not None:
        print(f"citizen: {citizen['full_name']}, ID {citizen['id_number']}, born {citizen['year_of_birth']}, "
              f"residence {citizen['place_of_residence']}")
    if "read" in summary:
        read = summary["read"]
        print(f"chip: {read['apdus']} APDUs, read {read['read_ms']} ms, verify {read['verify_ms']} ms")
    steps = summary["timings_ms"]
    print("timeline: " + " -> ".join(f"{name.replace('_', ' ')} {'?' if at is None else f'+{at} ms'}"
                                     for name, at in steps.items()))
    api = summary["api"]
    if api is not None:
        print(f"REST API: {api['url']} (OpenAPI: {api['url']}openapi.json), {api['answer']}; it ran for the demo "
              "(`cccd-edge gateway run` with [api] serves it for good)")
    else:
        print("REST API: not installed (pip install 'cccd-edge[gateway]'); the gateway's database held the result")
    where = f"kept in {summary['workdir']}" if summary["kept"] else "removed"
    print(f"cleaned up: gateway, broker, pcscd and card stopped, temporary directory {where}; "
          f"wall time {summary['wall_s']} s")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the broker, pcscd and temp dir are cleaned up either way."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    from edge.demo_env import DemoEnvironment

    # No GPIO header on a PC; on a Pi the service may hold the real pins. The LEDs run on gpiozero's mock pins
    # unless the caller chose a pin factory.
    os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
    os.environ.setdefault("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")
    if not getattr(args, "verbose", False):  # the summary says it all; -v shows the daemon's (masked) log
        logging.getLogger("edge").setLevel(logging.WARNING)
    started = time.monotonic()
    timeline = Timeline()
    if getattr(args, "serve", False):
        return _serve(DemoEnvironment(args.profile, keep=args.keep, qr_repeat_after=1.0, show_result=1.5), args)
    env = DemoEnvironment(args.profile, keep=args.keep)
    try:
        with _sigterm_as_interrupt(), env:
            delivered = _run_counter(env, timeline)
    except KeyboardInterrupt:
        where = f"kept {env.workdir}" if env.keep else "removed its temporary directory"
        print(f"demo: interrupted; stopped the broker, pcscd and card and {where}", file=sys.stderr)
        return 130
    summary = _summary(env, delivered, timeline, time.monotonic() - started)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        _print_human(summary)
    if summary["ok"]:
        return 0
    if summary["delivery"]["status"] == "stored" and not summary["delivery"]["receipt"]:
        print(f"demo: no receipt from the gateway reached the terminal within {RECEIPT_TIMEOUT:.0f} s",
              file=sys.stderr)
        return 1
    failed = [c["name"] for c in summary["checks"] if c["status"] == "failed"]
    problem = (f"verdict {summary['verdict']}" + (f" (failed: {', '.join(failed)})" if failed else "")
               + (f", indicator {summary['indicator']}" if summary["indicator"] else "")
               if summary["verdict"] is not None else f"the office {summary['delivery']['status']} the result")
    print(f"demo: not verified: {problem}", file=sys.stderr)
    return 1



def _serve(env: DemoEnvironment, args: argparse.Namespace) -> int:
    """The chain kept running with the officer's pages (module docstring), until Ctrl-C or SIGTERM."""
    from edge.demo_counter import CARDS, DemoCounter

    stored: queue.Queue[Outcome] = queue.Queue()
    try:
        with _sigterm_as_interrupt(), env:
            counter = DemoCounter(env, port=args.port, on_outcome=stored.put)
            try:
                counter.start()
                counter.tap("genuine")
                try:
                    first = stored.get(timeout=RESULT_TIMEOUT)
                except queue.Empty:
                    raise DemoError(f"no result reached the office within {RESULT_TIMEOUT:.0f} s; "
                                    f"see {counter.daemon_log}") from None
                print(f"cccd-edge demo --serve: pcscd {env.pcscd_kind}, mosquitto {env.broker.host}:"  # type: ignore[union-attr]
                      f"{env.broker.port} (mutual TLS, ward ACL), terminal daemon pid {counter.daemon_pid}, "  # type: ignore[union-attr]
                      f"office gateway with the officer's pages")
                print(f"first card (genuine): verdict {first.verdict} (office: {first.status})")
                if first.verdict is not None:
                    for line in VERDICT_WORDS[Verdict(first.verdict)].lines():
                        print(f"  {line}")
                print(f"\nOpen the counter page: {counter.url}")
                for account in counter.accounts:
                    print(f"  log in as {account.username} / {account.password}  ({account.role.value})")
                if counter.api_url is not None:
                    print(f"REST API for the procedure software: {counter.api_url} (OpenAPI: "
                          f"{counter.api_url}openapi.json); e.g. curl -H 'Authorization: Bearer {counter.api_key}' "
                          f"{counter.api_url}v1/results")
                keys = ", ".join(f"{number} {name}" for number, name in enumerate(CARDS, 1))
                print(f"Tap a virtual card from the page's demo panel or type its number and Enter here ({keys}); "
                      "Ctrl-C stops everything.", flush=True)
                _wait_for_taps(counter.tap, list(CARDS))
            finally:
                counter.stop()
    except KeyboardInterrupt:
        where = f"kept {env.workdir}" if env.keep else "removed its temporary directory"
        print(f"\ndemo: stopped the daemon, gateway, pages, broker, pcscd and cards and {where}", file=sys.stderr)
        return 0
    return 0


def _wait_for_taps(tap: Callable[[str], None], cards: list[str]) -> None:
    """Read card numbers from a terminal; without one (a service, a test), just wait for the signal."""
    if not sys.stdin.isatty():
        while True:
            time.sleep(3600)
    for line in sys.stdin:
        choice = line.strip()
        if choice in ("q", "quit"):
            return
        if choice.isascii() and choice.isdigit() and 1 <= int(choice) <= len(cards):
            tap(cards[int(choice) - 1])
            print(f"tapped the {cards[int(choice) - 1]} card", flush=True)
