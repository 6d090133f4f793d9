"""MQTT v5 delivery of outbox results (paho-mqtt 2.x): QoS 1, PUBACK-driven acks, ordered drain after outages.

Threads: paho's network loop (``loop_start``) runs the callbacks; ONE publisher thread of ours makes every
``publish()`` call (paho is not meant to be published to from several threads, and ``wait_for_publish`` without
a timeout can hang). The callbacks only record facts (connected, PUBACK for mid n) and wake the publisher.

Delivery guarantee: at least once, in ``seq`` order, nothing lost. With receipts (``receipts`` given: the
``delivery.mode = "receipt"`` the terminal runs by default) a result leaves the outbox only when a signed receipt
from the office gateway names it: the PUBACK moves it to the results awaiting a receipt, and one whose receipt does
not come is published again on :class:`~edge.daemon.receipts.RepublishSchedule`'s backoff (same token; the
gateway de-duplicates and sends the receipt again). Without receipts (PUBACK-only delivery) a result leaves the
outbox when the broker acknowledged it (PUBACK with a success reason code), and from then on the broker is all
that holds it. Either way a crash before that means it is sent again after restart and the office drops the
duplicate by ``(iss, jti)``. paho keeps unacknowledged messages in memory and resends them
first after a reconnect; new results wait until those resends are acknowledged (the *resend barrier*), so the
office sees ``seq`` in order. The number of results in flight is bounded by ``inflight_window``.

Faults wait: a failed delivery cycle (a damaged outbox, a full disk) is retried after a jittered backoff that
nothing else cuts short (new results and events wake the normal cycle, never the fault wait), and is reported on
``/event`` once per kind of fault, not once per try. A PUBACK that cannot be booked (the DELETE fails on a full
disk) is kept in memory and booked later; its result is never published again meanwhile. An outbox entry that no
longer decrypts is quarantined by the outbox and reported once (``result_quarantined``, marked on its PUBACK).

Back quickly: paho's wait between connection attempts is replaced by :class:`~edge.daemon.backoff.ReconnectWait`
(capped at ``reconnect_max_delay``, jittered, cut short by a TCP probe when the broker becomes reachable).

Topics: ``{prefix}/{ward}/{terminal}/result`` (results), ``/status`` (retained; the last will says offline),
``/event`` (terminal events, never personal data), ``/cmd`` (office commands, handed to a callback), ``/receipt``
(the gateway's receipts, checked and applied on the publisher thread; a refusal is reported as ``receipt_refused``).
The session is a clean one: a receipt sent while the terminal was away is lost with it, and its results are
published again a receipt timeout later.

Message expiry: results carry ``message_expiry`` (``edge.config.DeliveryConfig.result_expiry``: a week without
receipts, when the broker is the result's only keeper; twice the republish cap with them, since a fresher copy
follows); events a week.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge import __version__
from edge.config import PUBACK_RESULT_EXPIRY, Config
from edge.daemon.backoff import Backoff, ReconnectWait, RetryClock
from edge.daemon.health import Liveness
from edge.daemon.outbox import Outbox, OutboxEntry
from edge.daemon.receipts import ReceiptChecker, RepublishSchedule, names_result
from edge.errors import EdgeError, ReceiptRefusedError
from edge.logsetup import log_unexpected
from edge.protocol.receipt import ReceiptClaims
from edge.tcp import no_delay

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    ward: str
    terminal: str

    def _topic(self, leaf: str) -> str:
        return f"{self.prefix}/{self.ward}/{self.terminal}/{leaf}"

    @property
    def result(self) -> str:
        return self._topic("result")

    @property
    def status(self) -> str:
        return self._topic("status")

    @property
    def event(self) -> str:
        return self._topic("event")

    @property
    def cmd(self) -> str:
        return self._topic("cmd")

    @property
    def receipt(self) -> str:
        return self._topic("receipt")


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """What the publisher needs from the config (a separate type so tests and the bench need no TOML)."""

    host: str
    port: int
    topics: Topics
    client_id: str
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None  # with key_file: mutual TLS
    key_file: Path | None = None
    keepalive: int = 30
    message_expiry: int = PUBACK_RESULT_EXPIRY  # results' (edge.config.DeliveryConfig.result_expiry)
    inflight_window: int = 20
    reconnect_min_delay: float = 1.0
    reconnect_max_delay: float = 8.0
    receipt_timeout: float = 60.0  # with receipts: the first republish after a PUBACK without receipt
    republish_max_delay: float = 3600.0  # and the cap of the doubling waits after it

    @classmethod
    def from_config(cls, config: Config) -> MqttSettings:
        cert_file, key_file = config.tls_client_identity() or (None, None)
        return cls(
            host=config.mqtt.host,
            port=config.mqtt.port,
            topics=Topics(config.mqtt.topic_prefix, config.ward_code, config.terminal_id),
            client_id=f"cccd-edge-{config.terminal_id}",
            tls=config.mqtt.tls,
            ca_file=config.paths.broker_ca,
            cert_file=cert_file,
            key_file=key_file,
            keepalive=config.mqtt.keepalive,
            message_expiry=(config.mqtt.message_expiry if config.mqtt.message_expiry is not None
                            else config.delivery.result_expiry()),
            inflight_window=config.mqtt.inflight_window,
            reconnect_min_delay=config.mqtt.reconnect_min_delay,
            reconnect_max_delay=config.mqtt.reconnect_max_delay,
            receipt_timeout=config.delivery.receipt_timeout,
            republish_max_delay=config.delivery.republish_max_delay,
        )


#: The name the publisher thread reports its progress under (:class:`edge.daemon.health.Liveness`).
PUBLISHER_THREAD = "publisher"
#: Events are not kept by the terminal: the broker keeps them a week for an office that was away.
EVENT_EXPIRY = 7 * 24 * 3600
#: Receipts checked in one publisher turn (each costs two fsyncs): a burst is spread over turns, so the turn stays
#: well inside the liveness deadline and PUBACKs are booked in between.
RECEIPTS_PER_TURN = 32


def close_loop_sockets(client: mqtt.Client) -> None:
    """Close the socket pair ``loop_start()`` opened: paho closes it only in ``Client.__del__``, which for a client
    caught in a reference cycle runs at an arbitrary later time (a ResourceWarning, an fd held meanwhile)."""
    client._reset_sockets(sockpair_only=True)


def tcp_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to the broker opens now: the cheap probe that ends a reconnect wait early."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class _PacedClient(mqtt.Client):
    """paho's client waiting :attr:`pace` between connection attempts instead of its own plain doubling (no jitter,
    no probe). paho calls ``_reconnect_wait`` from its network thread before every retry; a unit test checks that
    the paho in use still does."""

    pace: Callable[[], None] | None = None

    def _reconnect_wait(self) -> None:
        if self.pace is None:
            super()._reconnect_wait()
        else:
            self.pace()


#: Every status the terminal publishes names its software, its last will too: the office's fleet view still shows
#: the version of a terminal that went dark (the one to suspect when it went dark after an update).
_ONLINE: dict[str, Any] = {"state": "online", "version": __version__}
_OFFLINE: dict[str, Any] = {"state": "offline", "version": __version__}


def _json(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _expiry_properties(packet_type: int, seconds: int) -> Properties:
    """MQTT v5 Message Expiry Interval: a result nobody fetched in time is dropped by the broker, not by us."""
    properties = Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves __init__ unannotated
    properties.MessageExpiryInterval = seconds
    return properties


class ResultPublisher:
    """Drains an :class:`Outbox` to the broker; also publishes status and events and receives commands.

    paho calls ``on_publish`` while holding its own message lock, so our callbacks never take a lock the publisher
    thread holds across ``publish()``: they append facts to a queue and set an event. Only the publisher thread
    touches the in-flight map, which is why a PUBACK can never be seen before its mid is recorded.
    """

    def __init__(
        self,
        settings: MqttSettings,
        outbox: Outbox,
        *,
        on_command: Callable[[bytes], None] | None = None,
        on_link_change: Callable[[bool], None] | None = None,
        on_delivered: Callable[[list[int]], None] | None = None,
        receipts: ReceiptChecker | None = None,
        on_receipt: Callable[[ReceiptClaims], None] | None = None,
        liveness: Liveness | None = None,
        clock: RetryClock | None = None,
        rng: random.Random | None = None,
        probe: Callable[[], bool] | None = None,
    ) -> None:
        """``on_command(payload)`` and ``on_link_change(up)`` run on paho's thread, ``on_delivered(seqs)`` on the
        publisher thread after the outbox commit (the queues changed: published, or gone for good): all must be
        quick (put on a queue). ``receipts``: delivery ends at the office's receipt, checked by it (module
        docstring); None: PUBACK-only. ``on_receipt(claims)`` runs on the publisher thread for each receipt
        believed (the terminal takes the office's signed time from it). The publisher thread reports
        its progress to ``liveness`` as ``"publisher"``, so a hung delivery loop withholds the systemd watchdog.
        ``clock``, ``rng`` and ``probe`` (default: a TCP connect to the broker) pace the retries; tests pass fakes."""
        self.settings = settings
        self._liveness = liveness
        self._on_delivered = on_delivered
        self.outbox = outbox
        self._on_command = on_command
        self._on_link_change = on_link_change
        self._receipts = receipts
        self._on_receipt = on_receipt
        self._receipt_payloads: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._event_expiry = _expiry_properties(PacketTypes.PUBLISH, EVENT_EXPIRY)
        self._wake = threading.Event()  # the normal cycle: new result, event, status, paho fact
        self._halt = threading.Event()  # ends the fault wait (only stop() sets it)
        self._closing = threading.Event()  # ends the reconnect wait (set after the clean disconnect)
        self._clock = clock if clock is not None else RetryClock()
        rng = rng if rng is not None else random.Random()
        self._fault_backoff = Backoff(settings.reconnect_min_delay, settings.reconnect_max_delay, rng=rng)
        self._refusal_backoff = Backoff(settings.reconnect_min_delay, settings.reconnect_max_delay, rng=rng)
        #: With receipts: when each result awaiting one is published again (publisher thread only).
        self.republish = RepublishSchedule(settings.receipt_timeout, settings.republish_max_delay, rng=rng)
        self._republish_loaded = False  # the results awaiting a receipt at start are scheduled by the first cycle
        #: paho's wait between connection attempts (its counters say how often it waited and was cut short).
        self.reconnect = ReconnectWait(
            Backoff(settings.reconnect_min_delay, settings.reconnect_max_delay, rng=rng),
            probe or (lambda: tcp_reachable(settings.host, settings.port)), self._closing, clock=self._clock, rng=rng,
        )  # fmt: skip
        self._facts: queue.SimpleQueue[tuple[str, int, ReasonCode | None]] = queue.SimpleQueue()
        self._stopping = False
        self._connected = False  # as last reported by paho (read by any thread)
        #: Set once the broker acknowledged the /cmd subscription: office commands sent earlier are not delivered.
        self.commands_subscribed = threading.Event()
        self._online = False  # as processed by the publisher thread (orders resends before new results)
        # Owned by the publisher thread only:
        self._inflight: dict[int, OutboxEntry] = {}  # mid -> result awaiting PUBACK
        self._unbooked: dict[int, OutboxEntry] = {}  # entry id -> acknowledged, but its DELETE has not committed
        self._report_mids: dict[int, int] = {}  # mid of a quarantine report -> the quarantined seq
        self._reported: list[int] = []  # quarantined seqs whose report the broker acknowledged, to mark in the outbox
        self._barrier: set[int] = set()  # mids in flight at the last disconnect: resent by paho before new ones
        self._barrier_deadline = 0.0  # if paho never resends them, give up on the barrier and resend ourselves
        self._cursor = 0  # highest seq handed to paho
        self._retry_at = 0.0  # after a refused PUBACK: no new results until then (self._clock)
        self._lock = threading.Lock()  # guards the two below, shared with any thread
        self._events: deque[bytes] = deque(maxlen=1000)
        self._status: dict[str, Any] | None = dict(_ONLINE)
        self._last_status: dict[str, Any] = dict(_ONLINE)
        self.delivered = 0  # results gone from the outbox for good: on their receipt, or PUBACK-only on the PUBACK
        self.published = 0  # PUBACKs of results (with receipts, a republished result counts again)
        self.republished = 0  # results published again for want of a receipt
        self.receipts_accepted = 0
        self.receipts_refused: Counter[str] = Counter()  # by ReceiptRefusedError.reason
        self.fault: str | None = None  # last delivery error (reported on /event once), None after a good cycle
        self.fault_cycles = 0  # delivery cycles that failed (each followed by a backoff wait)
        self._client = self._make_client()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)

    # --- setup ---------------------------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = _PacedClient(CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=mqtt.MQTTv5)
        client.pace = self.reconnect
        # Results + a few status/event messages: paho may hold the window plus some slack in flight.
        client.max_inflight_messages_set(s.inflight_window + 10)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(max(1, round(s.reconnect_min_delay)), max(1, round(s.reconnect_max_delay)))
        # The status (this will included) carries no expiry: the retained document must always say the latest truth,
        # even to an office dashboard that subscribes a month after the terminal went dark.
        client.will_set(s.topics.status, _json(_OFFLINE), qos=1, retain=True)
        if s.tls:
            client.tls_set(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_socket_open = no_delay
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        return client

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start draining."""
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive,
                                   clean_start=True)
        self._client.loop_start()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` status, disconnect cleanly and stop both threads. Undelivered results stay queued."""
        self._stopping = True
        self._halt.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._liveness is not None:
            self._liveness.forget(PUBLISHER_THREAD)
        self._client.disconnect()  # first: paho must see it is disconnecting when the reconnect wait returns
        self._closing.set()
        self._client.loop_stop()
        close_loop_sockets(self._client)

    # --- API for the daemon (any thread) -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def notify(self) -> None:
        """Call after :meth:`Outbox.enqueue`: wakes the publisher to send the new result now."""
        self._wake.set()

    def publish_event(self, event: Mapping[str, Any]) -> None:
        """Queue a terminal event (no personal data!). Best effort: events are not stored across restarts."""
        with self._lock:
            self._events.append(_json(event))
        self._wake.set()

    def set_status(self, **fields: Any) -> None:
        """Update the retained status document (``state``, ``version`` and anything else useful to the office)."""
        with self._lock:
            self._status = self._last_status = {**_ONLINE, **fields}
        self._wake.set()

    @property
    def receipts(self) -> bool:
        """Whether delivery ends at the office's receipt (else at the PUBACK)."""
        return self._receipts is not None

    def wait_drained(self, timeout: float) -> bool:
        """Block until nothing is queued or in flight (tests, benchmarks, shutdown): with receipts, until every
        result has its receipt."""
        deadline = time.monotonic() + timeout
        while self._inflight or self._unbooked or self.outbox.stats().count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def wait_published(self, timeout: float) -> bool:
        """Block until every result has had its PUBACK (with receipts, some may still await their receipt)."""
        deadline = time.monotonic() + timeout
        while self._inflight or self._unbooked or self.outbox.stats().unpublished:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # --- paho callbacks (network thread): record the fact and wake the publisher ---------------------------------

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                        reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        topics = [(self.settings.topics.cmd, 1)]
        if self._receipts is not None:
            topics.append((self.settings.topics.receipt, 1))
        client.subscribe(topics)
        self.reconnect.backoff.reset()
        self._connected = True
        self._facts.put(("connected", 0, None))
        self._wake.set()
        log.info("connected to %s:%d", self.settings.host, self.settings.port)
        if self._on_link_change:
            self._on_link_change(True)

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                          properties: Properties | None) -> None:
        if any(code.is_failure for code in reason_codes):
            log.warning("broker refused the subscription to %s (and receipts): %s", self.settings.topics.cmd,
                        reason_codes)
            return
        self.commands_subscribed.set()

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                           reason_code: ReasonCode, properties: Properties | None) -> None:
        was_connected, self._connected = self._connected, False
        self.commands_subscribed.clear()
        self._facts.put(("disconnected", 0, None))
        self._wake.set()
        if was_connected:
            log.log(logging.INFO if self._stopping else logging.WARNING, "disconnected from broker (%s)", reason_code)
            if self._on_link_change:
                self._on_link_change(False)

    def _handle_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                        properties: Properties) -> None:
        self._facts.put(("puback", mid, reason_code))
        self._wake.set()

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.settings.topics.receipt and self._receipts is not None:
            self._receipt_payloads.put(bytes(message.payload))  # checked on the publisher thread
            self._wake.set()
        elif message.topic == self.settings.topics.cmd and self._on_command is not None:
            try:
                self._on_command(bytes(message.payload))
            except Exception as exc:  # noqa: BLE001  # a bad command must never kill the network thread
                log_unexpected(log, "command handler failed", exc)  # a read_request carries a chip key

    # --- the publisher thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        expiry = _expiry_properties(PacketTypes.PUBLISH, self.settings.message_expiry)
        # One turn blocks at most this long (the longer of the idle wait and the wait after a fault).
        longest_turn = max(1.0, self.settings.reconnect_max_delay) + 1.0
        while not self._stopping:
            if self._liveness is not None:
                self._liveness.busy(PUBLISHER_THREAD, longest_turn)
            self._wake.clear()
            try:
                self._cycle(expiry)
            except Exception as exc:  # noqa: BLE001  # a damaged outbox or a full disk must not stop delivery: _faulted logs
                self._faulted(exc)
            else:
                if self.fault is not None:
                    log.info("delivery works again")
                    self.publish_event({"event": "delivery_recovered"})
                self.fault = None
                self._fault_backoff.reset()
        self._publish_offline()

    def _faulted(self, exc: Exception) -> None:
        """Record a failed cycle and wait a jittered backoff that no new result or event cuts short: a fault that
        persists costs one try per few seconds, not thousands (each of which re-published results)."""
        self.fault_cycles += 1
        fault = f"{type(exc).__name__}: {exc}"
        delay = self._fault_backoff.next_delay()
        if fault != self.fault:  # reported once per kind of fault, with the stack; repeats are one line
            if isinstance(exc, EdgeError):
                log.error("delivery cycle failed: %s", exc)
            else:
                log_unexpected(log, "delivery cycle failed", exc)
            self.publish_event({"event": "delivery_fault", "error": type(exc).__name__})
        else:
            log.warning("delivery still failing (%s); next try in %.1f s", type(exc).__name__, delay)
        self.fault = fault
        self._clock.wait(self._halt, delay)

    def _cycle(self, expiry: Properties) -> None:
        """One round: book PUBACKs, publish control messages, send as many results as the window allows."""
        acks = self._process_facts()
        for entry in acks:
            self._unbooked[entry.id] = entry
        if not self._republish_loaded:
            self._load_awaiting()
        receipted = self._apply_receipts()
        if self._online:
            self._publish_control()
        sent = 0
        if self._online and self._barrier and time.monotonic() >= self._barrier_deadline:
            self._release_barrier()
        if self._online and not self._barrier and self._clock.now() >= self._retry_at:
            room = self.settings.inflight_window - len(self._inflight)
            if room > 0:
                sent = self._send_results(room, expiry)
            room = self.settings.inflight_window - len(self._inflight)
            if room > 0 and self._receipts is not None:
                sent += self._republish(room, expiry)
        self._book()
        if not sent and not acks and not receipted:
            self._wake.wait(0.5)

    def _book(self) -> None:
        """Book acknowledged results (with receipts: now awaiting one, due to be published again on the schedule;
        PUBACK-only: deleted) and mark acknowledged quarantine reports. On a full disk this raises and the entries
        stay here (never published again) until a later cycle books them."""
        if self._unbooked:
            entries = list(self._unbooked.values())
            ids = [entry.id for entry in entries]
            if self._receipts is None:
                self.delivered += self.outbox.ack_many(ids)
            else:
                now = self._clock.now()
                for entry_id, attempts in self.outbox.mark_published(ids).items():
                    self.republish.published(entry_id, attempts, now)
            self.published += len(entries)
            for entry in entries:
                del self._unbooked[entry.id]
            if self._on_delivered is not None:
                self._on_delivered([entry.seq for entry in entries])
        if self._reported:
            self.outbox.mark_reported(self._reported)
            self._reported = []

    def _process_facts(self) -> list[OutboxEntry]:
        acks: list[OutboxEntry] = []
        while True:
            try:
                kind, mid, reason = self._facts.get_nowait()
            except queue.Empty:
                return acks
            if kind == "connected":
                self._online = True
                self._barrier_deadline = time.monotonic() + 2 * self.settings.keepalive
                with self._lock:
                    self._status = self._last_status  # a restarted broker lost the retained status
            elif kind == "disconnected":
                self._online = False
                self._barrier = set(self._inflight)
            else:
                self._barrier.discard(mid)
                reported = self._report_mids.pop(mid, None)
                if reported is not None and not (reason is not None and reason.is_failure):
                    self._reported.append(reported)
                entry = self._inflight.pop(mid, None)
                if entry is None:
                    continue
                if reason is not None and reason.is_failure:
                    # The broker refused it (quota, authorisation): keep it, retry later, say so.
                    log.warning("broker refused result seq %d: %s", entry.seq, reason)
                    if entry.attempts:  # a republish: due again on its own schedule
                        self.republish.published(entry.id, entry.attempts, self._clock.now())
                    else:
                        self._cursor = min(self._cursor, entry.seq - 1)
                    self._retry_at = self._clock.now() + self._refusal_backoff.next_delay()
                    self.publish_event({"event": "publish_refused", "seq": entry.seq, "reason": str(reason)})
                else:
                    self._refusal_backoff.reset()
                    acks.append(entry)

    def _release_barrier(self) -> None:
        """Resends never acknowledged: forget those mids and publish the entries again (the office de-dups)."""
        stale = [self._inflight.pop(mid) for mid in self._barrier if mid in self._inflight]
        log.warning("%d result(s) not acknowledged after reconnect; publishing them again", len(stale))
        now = self._clock.now()
        for entry in stale:
            if entry.attempts:  # a republish: due now again
                self.republish.published(entry.id, 0, now)
        unpublished = [entry.seq for entry in stale if not entry.attempts]
        if unpublished:
            self._cursor = min(self._cursor, min(unpublished) - 1)
        self._barrier = set()

    def _publish_control(self) -> None:
        expiry = self._event_expiry
        with self._lock:
            events = list(self._events)
            self._events.clear()
            status, self._status = self._status, None
        for payload in events:
            self._client.publish(self.settings.topics.event, payload, qos=1, properties=expiry)
        if status is not None:
            self._client.publish(self.settings.topics.status, _json(status), qos=1, retain=True)
        if self.outbox.unreported_quarantine > len(self._report_mids) + len(self._reported):
            self._report_quarantine(expiry)

    def _report_quarantine(self, expiry: Properties) -> None:
        """Tell the office, once, which results were moved aside: it will never receive those seqs."""
        waiting = set(self._report_mids.values()) | set(self._reported)
        for seq, reason in self.outbox.quarantine_to_report():
            if seq in waiting:
                continue
            payload = _json({"event": "result_quarantined", "seq": seq, "reason": reason})
            info = self._client.publish(self.settings.topics.event, payload, qos=1, properties=expiry)
            self._report_mids[info.mid] = seq

    def _send_results(self, room: int, expiry: Properties) -> int:
        in_flight_ids = {entry.id for entry in self._inflight.values()} | set(self._unbooked)
        sent = 0
        for entry in self.outbox.pending(after_seq=self._cursor, limit=room):
            self._cursor = entry.seq
            if entry.id in in_flight_ids:
                continue
            info = self._client.publish(self.settings.topics.result, entry.payload, qos=1, properties=expiry)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("publish of seq %d not queued: %s", entry.seq, mqtt.error_string(info.rc))
                self._cursor = entry.seq - 1
                break
            self._inflight[info.mid] = entry
            sent += 1
        return sent

    # --- receipts (publisher thread) -----------------------------------------------------------------------------

    def _load_awaiting(self) -> None:
        """At start: each result that had its PUBACK before and still awaits a receipt waits its backoff again; a
        terminal now on PUBACK-only delivery publishes them once more instead, and deletes them on that PUBACK."""
        if self._receipts is None:
            if moved := self.outbox.unpublish_awaiting():
                log.info("PUBACK-only delivery: %d result(s) that awaited a receipt are published once more", moved)
        else:
            now = self._clock.now()
            for entry_id, attempts in self.outbox.awaiting():
                self.republish.published(entry_id, attempts, now)
        self._republish_loaded = True

    def _apply_receipts(self) -> int:
        """Check the receipts that arrived (at most :data:`RECEIPTS_PER_TURN`); delete the results a believed one
        names. Returns how many were checked."""
        arrived = 0
        while self._receipts is not None and arrived < RECEIPTS_PER_TURN:
            try:
                payload = self._receipt_payloads.get_nowait()
            except queue.Empty:
                break
            arrived += 1
            try:
                claims = self._receipts.check(payload)
            except ReceiptRefusedError as exc:
                self.receipts_refused[exc.reason] += 1
                log.warning("receipt refused (the results it names stay): %s", exc)
                self.publish_event({"event": "receipt_refused", "reason": exc.reason})
                continue
            self.receipts_accepted += 1
            deleted = self.outbox.delete_named(claims.jtis, claims.seqs, names_result(claims))
            for entry_id, _seq in deleted:
                self.republish.forget(entry_id)
            self.delivered += len(deleted)
            log.debug("receipt %s from %s: %d result(s) stored at the office", claims.jti, claims.iss, len(deleted))
            if self._on_receipt is not None:
                self._on_receipt(claims)
            if deleted and self._on_delivered is not None:
                self._on_delivered([seq for _id, seq in deleted])
        return arrived

    def _republish(self, room: int, expiry: Properties) -> int:
        """Publish again up to ``room`` results whose receipt is overdue (same token: the gateway stores it once)."""
        due = self.republish.take_due(self._clock.now(), room)
        if not due:
            return 0
        in_flight = {entry.id for entry in self._inflight.values()} | set(self._unbooked)
        sent = 0
        for entry in self.outbox.entries([entry_id for entry_id in due if entry_id not in in_flight]):
            info = self._client.publish(self.settings.topics.result, entry.payload, qos=1, properties=expiry)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("republish of seq %d not queued: %s", entry.seq, mqtt.error_string(info.rc))
                self.republish.published(entry.id, entry.attempts, self._clock.now())
                continue
            self._inflight[info.mid] = entry
            sent += 1
        if sent:
            self.republished += sent
            log.info("%d result(s) published again: no receipt from the office yet", sent)
        return sent

    def _publish_offline(self) -> None:
        if not self._connected:
            return
        info = self._client.publish(self.settings.topics.status, _json(_OFFLINE), qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=2.0)
        except RuntimeError:
            log.warning("could not publish offline status")
