"""The office gateway: many terminals' results in, each verified, stored once, its gaps tracked, and a receipt out.

MQTT 5 (paho), two subscriptions:

* ``$share/<group>/<prefix>/<ward>/+/result``, a *shared* subscription: the broker hands each result to one of the
  instances of the group, so several instances share the load. Each instance keeps a persistent session (clean
  start off, session expiry ``broker.session_expiry``) and acknowledges a result only once it is stored or
  quarantined (manual PUBACK), so nothing the broker accepted is lost with an instance: mosquitto (2.0) keeps the
  results it was handing to an instance that died (and, round-robin, its share of new ones) in that instance's
  session, and delivers them when that identity connects again (systemd restarts it). It does not hand them to
  another member of the group (measured; MQTT 5 leaves that to the broker). The end-to-end receipt covers an
  instance that never comes back: a result without a receipt is published again by its terminal, and the other
  instances store it (once: the unique key) and send the receipt.
* ``<prefix>/<ward>/+/status``, *not* shared: a shared subscription gets no retained messages, and the fleet view
  needs each terminal's retained status; every instance keeps them (a row is replaced only by a later one).
* ``<prefix>/<ward>/+/event`` (only with ``on_event``: the officer's pages), *not* shared and at QoS 0: a terminal's
  progress (command accepted, read failed, ...) for whoever watches it now; nothing is stored or queued for later.

Threads: paho's network thread only puts messages on a queue. One worker thread stores, publishes receipts and
acknowledges (paho is published to from one thread, as in the terminal). It takes what has arrived in a batch
(waiting :data:`BATCH_LINGER` for more once one message has come), so under load one receipt names many results of
a terminal; the batch's receipts go out before its acknowledgements,
so a result the broker no longer holds has had its receipt handed to the broker (a kill between the two means the
result is delivered again, stored as a duplicate, and receipted then). A database that cannot be written
(PostgreSQL restarting, a full disk) is retried with a capped backoff, the message kept unacknowledged meanwhile
(the broker holds the rest: ``receive_maximum``); a message that breaks the store in another way is quarantined
with the reason. Nothing a message holds ends the worker or paho's thread.

Receipts (:mod:`edge.protocol.receipt`): after a batch's results are committed, one receipt per terminal (at most
:data:`~edge.protocol.receipt.MAX_RECEIPT_RESULTS` results each) on ``<prefix>/<ward>/<terminal>/receipt``, QoS 1,
signed with the receipt key; a duplicate gets its receipt again (the terminal sent it again because it had none).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.errors import StorageError
from edge.logsetup import log_unexpected
from edge.office.commands import SignedCommand
from edge.office.database import Database
from edge.office.gateway_config import GatewayConfig
from edge.office.store import Outcome, ResultStore
from edge.office.subjects import load_subject_key
from edge.office.verify import TerminalKeys, load_keys
from edge.office.ward_trust import WardTrust
from edge.office.webhooks import Endpoint, WebhookQueue, load_secret
from edge.protocol.jose import key_id
from edge.protocol.receipt import MAX_RECEIPT_RESULTS, receipt_claims, sign_receipt
from edge.signers import load_private_key
from edge.tcp import no_delay

log = logging.getLogger(__name__)

#: Messages the worker takes at once (they share receipts); more wait in the queue.
BATCH = 200
#: How long the worker waits for more messages once one has come: a batch costs two transactions and a receipt per
#: terminal whatever its size, and at a few hundred results/s one message per batch took more CPU than 1,000/s in
#: full batches (bench/fleet.py). A few milliseconds against a receipt timeout of a minute.
BATCH_LINGER = 0.005
#: Waits between tries of a database that cannot be written.
RETRY_MIN, RETRY_MAX = 0.2, 10.0
_STOP = object()  # tells the worker to finish
_GAVE_UP = object()  # a message the worker left unacknowledged because the gateway is stopping


@dataclass
class GatewayStats:
    """What the worker did, for tests, the log and the bench (written by the worker thread only)."""

    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    statuses: int = 0
    receipts: int = 0
    storage_retries: int = 0
    by_terminal: dict[tuple[str, str], int] = field(default_factory=dict)  # stored, by (ward, terminal)

    def as_dict(self) -> dict[str, Any]:
        return {"stored": self.stored, "duplicates": self.duplicates, "quarantined": self.quarantined,
                "statuses": self.statuses, "receipts": self.receipts, "storage_retries": self.storage_retries}


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


class Gateway:
    """One gateway instance: subscribes, feeds :class:`ResultStore`, acknowledges, sends receipts."""

    def __init__(self, config: GatewayConfig, store: ResultStore, *,
                 receipt_key: ec.EllipticCurvePrivateKey | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 on_status: Callable[[str, str], None] | None = None,
                 on_event: Callable[[str, str, bytes], None] | None = None,
                 webhooks: WebhookQueue | None = None,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        """``on_outcome`` runs on the worker thread for each result, once it is stored or quarantined;
        ``on_status(ward, terminal)`` there once a status is kept; ``on_event(ward, terminal, payload)`` on paho's
        thread for each terminal event (keep it short: it only hands over). ``webhooks``: where stored results are
        queued for the ``[[webhooks]]`` endpoints (default: opened from ``config``, None when it names none)."""
        self.config = config
        self.store = store
        #: Each stored result (and each that arrives again) is queued here before the broker's acknowledgement.
        self.webhooks = webhooks if webhooks is not None else open_webhook_queue(config)
        self.stats = GatewayStats()
        self.subscribed = threading.Event()
        self._receipt_key = receipt_key
        self._receipt_kid = key_id(receipt_key.public_key()) if receipt_key is not None else None
        #: One PUBLISH properties object for every receipt (paho only reads it): built per receipt it cost more
        #: than the receipt's signature.
        self._receipt_properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self._receipt_properties.MessageExpiryInterval = config.receipts.lifetime
        self._on_outcome = on_outcome
        self._on_status = on_status
        self._on_event = on_event
        self._clock = clock
        prefix, ward, group = config.broker.topic_prefix, config.ward, share_group(config, receipt_key)
        self._prefix_levels = len(prefix.split("/"))
        self._prefix = prefix
        self._results = f"$share/{group}/{prefix}/{ward}/+/result"
        self._statuses = f"{prefix}/{ward}/+/status"
        self._events = f"{prefix}/{ward}/+/event"
        self._queue: queue.Queue[_Message | object] = queue.Queue()
        self._halt = threading.Event()
        self._worker = threading.Thread(target=self._work, name=f"gateway-{config.instance}", daemon=True)
        self._retention = threading.Thread(target=self._keep_retention, name=f"retention-{config.instance}",
                                           daemon=True)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id, protocol=mqtt.MQTTv5,
                                   manual_ack=True)
        broker = config.broker
        if broker.ca is not None:
            self._client.tls_set(ca_certs=str(broker.ca), certfile=str(broker.cert) if broker.cert else None,
                                 keyfile=str(broker.key) if broker.key else None)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._handle_connect
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_message = self._handle_message
        self._client.on_socket_open = no_delay  # receipts are small: Nagle held each for the broker's delayed ACK

    # --- life cycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()
        if self.config.storage.retention_every > 0:
            self._retention.start()
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
        session.SessionExpiryInterval = self.config.broker.session_expiry
        session.ReceiveMaximum = self.config.broker.receive_maximum
        self._client.connect_async(self.config.broker.host, self.config.broker.port,
                                   keepalive=self.config.broker.keepalive, clean_start=False, properties=session)
        self._client.loop_start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what was taken, then leave (the session stays at the broker with what is not acknowledged)."""
        self._halt.set()
        self._queue.put(_STOP)
        self._worker.join(timeout)
        if self._retention.is_alive():
            self._retention.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._client._reset_sockets(sockpair_only=True)  # as edge.daemon.mqtt.close_loop_sockets: not left to __del__
        if self.webhooks is not None:
            self.webhooks.close()

    def _keep_retention(self) -> None:
        """Reduce expired results now and every ``storage.retention_every`` seconds (several instances may: a reduced
        row is never reduced again). A failed run is logged and tried at the next."""
        while True:
            try:
                report = self.store.apply_retention(self._clock())
                if report.reduced or report.quarantine_dropped:
                    log.info("retention %s", json.dumps(report.as_dict()))
            except Exception as exc:  # noqa: BLE001  # the thread boundary: the next run tries again
                log_unexpected(log, "retention run failed", exc)
            if self._halt.wait(self.config.storage.retention_every):
                return

    # --- paho's thread: record and hand over ---------------------------------------------------------------------

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                        reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the gateway's connection: %s", reason_code)
            return
        # Retained statuses once per new subscription, not again at every reconnect of a kept session.
        status_options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        topics = [(self._results, SubscribeOptions(qos=1)), (self._statuses, status_options)]
        if self._on_event is not None:  # progress for the pages watching now: QoS 0, nothing kept for later
            topics.append((self._events, SubscribeOptions(qos=0, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)))
        client.subscribe(topics)

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                          properties: Properties | None) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            log.warning("broker refused a subscription (%s, %s): %s", self._results, self._statuses, refused[0])
            return
        log.info("subscribed to %s and %s", self._results, self._statuses)
        self.subscribed.set()

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic  # paho decodes it here, and raises for a topic that is not UTF-8
        except UnicodeDecodeError:
            topic = "<topic not UTF-8>"
        if self._on_event is not None and topic.endswith("/event"):
            origin = self._origin(topic)
            if origin is not None and origin[2] == "event":
                try:
                    self._on_event(origin[0], origin[1], bytes(message.payload))
                except Exception as exc:  # noqa: BLE001  # a watcher's failure must not end paho's thread
                    log_unexpected(log, "handing over a terminal event failed", exc)
                if message.qos > 0:  # a broker that upgraded the QoS still wants its PUBACK
                    client.ack(message.mid, message.qos)
                return
        self._queue.put(_Message(topic, bytes(message.payload), message.mid, message.qos))

    # --- commands to terminals ----------------------------------------------------------------------------------

    def send_command(self, command: SignedCommand) -> None:
        """Publish a signed office command (QoS 1) to its terminal's ``/cmd`` (paho's publish is thread-safe)."""
        expiry = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        expiry.MessageExpiryInterval = 120  # a command not delivered by then has expired at the terminal anyway
        self._client.publish(command.topic(self._prefix), command.token, qos=1, properties=expiry)

    # --- the worker ----------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            linger_until = time.monotonic() + BATCH_LINGER
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, linger_until - time.monotonic())))
                except queue.Empty:
                    break
            stopping = any(not isinstance(item, _Message) for item in batch)
            messages = [item for item in batch if isinstance(item, _Message)]
            receipts: dict[tuple[str, str], list[tuple[int, str]]] = {}
            done: list[_Message] = []
            try:
                done = self._handle(messages, receipts)
            except Exception as exc:  # noqa: BLE001  # the thread boundary: nothing a message holds ends it
                log_unexpected(log, "messages could not be handled together; handling them one by one", exc)
                done = self._one_by_one(messages, receipts)
            try:  # receipts before acknowledgements: whatever the broker no longer holds has had its receipt sent
                self._send_receipts(receipts)
            except Exception as exc:  # noqa: BLE001  # its terminal will send the results again, and get one then
                log_unexpected(log, "receipts could not be sent", exc)
            for message in done:
                if message.qos > 0:
                    self._client.ack(message.mid, message.qos)
            if stopping:
                return

    def _handle(self, messages: list[_Message], receipts: dict[tuple[str, str], list[tuple[int, str]]]
                ) -> list[_Message]:  # fmt: skip
        """Store, quarantine or keep each message; returns those done (the others stay unacknowledged: the gateway
        is stopping). Results go to the store together, in one transaction."""
        done: list[_Message] = []
        results: list[_Message] = []
        for message in messages:
            origin = self._origin(message.topic)
            if origin is not None and origin[2] == "result":
                results.append(message)
            elif origin is not None and origin[2] == "status":
                ward, terminal = origin[0], origin[1]
                kept = self._stubborn(lambda m=message, w=ward, t=terminal: self.store.keep_status(  # type: ignore[misc]
                    w, t, m.payload, self._clock(), topic=m.topic))
                if kept is _GAVE_UP:
                    return done
                self.stats.statuses += 1
                self.stats.quarantined += isinstance(kept, Outcome)
                done.append(message)
                if self._on_status is not None and not isinstance(kept, Outcome):
                    try:
                        self._on_status(ward, terminal)
                    except Exception as exc:  # noqa: BLE001  # a failing report must not end the thread
                        log_unexpected(log, "reporting a status failed", exc)
            else:
                outcome = self._stubborn(lambda m=message: self.store.quarantine(  # type: ignore[misc]
                    m.payload, self._clock(), m.topic, "not a result or status topic"))
                if outcome is _GAVE_UP:
                    return done
                self._report(outcome, receipts)
                done.append(message)
        if results:
            outcomes = self._stubborn(lambda: self._ingest(results))
            if outcomes is _GAVE_UP:
                return done
            if self.webhooks is not None and self._stubborn(lambda: self._queue_webhooks(outcomes)) is _GAVE_UP:
                return done  # stored, not acknowledged: delivered again as duplicates, queued then
            for outcome in outcomes:
                self._report(outcome, receipts)
            done += results
        return done

    def _one_by_one(self, messages: list[_Message], receipts: dict[tuple[str, str], list[tuple[int, str]]]
                    ) -> list[_Message]:  # fmt: skip
        """After a batch broke the gateway (a bug some input found): each message alone, and one that breaks it
        again is quarantined with what broke and acknowledged. Left unacknowledged, it would hold one of the
        broker's ``receive_maximum`` slots until the next connection, and break the batch again then."""
        done: list[_Message] = []
        for message in messages:
            try:
                done += self._handle([message], receipts)
                continue
            except Exception as exc:  # noqa: BLE001  # the thread boundary, as in _work
                log_unexpected(log, "a message could not be handled; quarantined", exc)
                reason = f"unexpected {type(exc).__name__} while handling it"
            try:
                outcome = self._stubborn(lambda m=message, r=reason: self.store.quarantine(  # type: ignore[misc]
                    m.payload, self._clock(), m.topic, r))
            except Exception as exc:  # noqa: BLE001  # not even kept: stays unacknowledged, for the next connection
                log_unexpected(log, "quarantining a message failed; not acknowledged", exc)
                continue
            if outcome is _GAVE_UP:
                return done
            self._report(outcome, receipts)
            done.append(message)
        return done

    def _queue_webhooks(self, outcomes: list[Outcome]) -> int:
        """Queue the batch's results (a duplicate too: its first arrival may have been stored and not queued)."""
        assert self.webhooks is not None
        return self.webhooks.enqueue([(o.iss, o.jti, o.ward) for o in outcomes if o.status != "quarantined"
                                      and o.iss is not None and o.jti is not None and o.ward is not None],
                                     self._clock(), records={(o.record.terminal, o.record.jti): o.record
                                                             for o in outcomes if o.record is not None})  # fmt: skip

    def _report(self, outcome: Outcome, receipts: dict[tuple[str, str], list[tuple[int, str]]]) -> None:
        self._count(outcome)
        if outcome.status != "quarantined" and outcome.iss is not None and outcome.jti is not None:
            receipts.setdefault((outcome.ward or "", outcome.iss), []).append((outcome.seq or 0, outcome.jti))
        if self._on_outcome is not None:
            try:
                self._on_outcome(outcome)
            except Exception as exc:  # noqa: BLE001  # a failing report must not end the thread
                log_unexpected(log, "reporting a message's outcome failed", exc)

    def _ingest(self, results: list[_Message]) -> list[Outcome]:
        """The batch's results stored together; should one break the store (a bug an input found), each alone, so
        that only that one is quarantined, with what broke."""
        now = self._clock()
        try:
            return self.store.ingest_many([(message.payload, message.topic) for message in results], now)
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001
            log_unexpected(log, "storing a batch failed; storing its results one by one", exc)
        outcomes = []
        for message in results:
            try:
                outcomes.append(self.store.ingest(message.payload, now, topic=message.topic))
            except StorageError:
                raise
            except Exception as exc:  # noqa: BLE001  # a store bug this message found: keep it, say what broke
                log_unexpected(log, "storing a result failed", exc)
                outcomes.append(self.store.quarantine(message.payload, now, message.topic,
                                                      f"unexpected {type(exc).__name__} while storing"))
        return outcomes

    def _stubborn(self, attempt: Callable[[], Any]) -> Any:
        """``attempt()`` until the database takes it (a :class:`StorageError` is waited out), or the gateway stops
        (then :data:`_GAVE_UP`: the messages stay unacknowledged, for the next connection)."""
        delay = RETRY_MIN
        while True:
            try:
                return attempt()
            except StorageError as exc:
                self.stats.storage_retries += 1
                log.warning("database not writable (%s); messages kept, retry in %.1f s", exc, delay)
            if self._halt.wait(delay):
                return _GAVE_UP
            delay = min(delay * 2, RETRY_MAX)

    def _count(self, outcome: Outcome) -> None:
        if outcome.status == "stored":
            self.stats.stored += 1
            if outcome.iss is not None:
                key = (outcome.ward or "", outcome.iss)
                self.stats.by_terminal[key] = self.stats.by_terminal.get(key, 0) + 1
            if outcome.new_gaps:
                log.info("terminal %s of ward %s: seq %d arrived, %d earlier seq(s) not (yet): %s", outcome.iss,
                         outcome.ward, outcome.seq, len(outcome.new_gaps), _ranges_text(outcome.new_gaps))
            log.debug("result %s", json.dumps(outcome.as_dict()))
        elif outcome.status == "duplicate":
            self.stats.duplicates += 1
        else:
            self.stats.quarantined += 1
            # %r: the topic is the sender's, and the reason may quote what it sent; a newline or control character
            # in either is escaped, never a log line of its own
            log.warning("quarantined (row %s, %r): %r", outcome.quarantine_id, outcome.topic, outcome.reason[:300])

    def _origin(self, topic: str) -> tuple[str, str, str] | None:
        """(ward, terminal, leaf) of ``<prefix>/<ward>/<terminal>/<leaf>``, None for anything else."""
        levels = topic.split("/")
        if len(levels) != self._prefix_levels + 3 or "/".join(levels[: self._prefix_levels]) != self._prefix:
            return None
        ward, terminal, leaf = levels[-3:]
        return ward, terminal, leaf

    def _send_receipts(self, receipts: dict[tuple[str, str], list[tuple[int, str]]]) -> None:
        if self._receipt_key is None:
            return
        now = int(self._clock())
        for (ward, terminal), results in receipts.items():
            for start in range(0, len(results), MAX_RECEIPT_RESULTS):
                claims = receipt_claims(gateway=self.config.client_id, terminal_id=terminal, ward_code=ward,
                                        results=results[start:start + MAX_RECEIPT_RESULTS], now=now,
                                        jti=str(uuid.uuid4()), lifetime=self.config.receipts.lifetime)
                token = sign_receipt(claims, self._receipt_key, kid=self._receipt_kid)
                self._client.publish(f"{self._prefix}/{ward}/{terminal}/receipt", token, qos=1,
                                     properties=self._receipt_properties)
                self.stats.receipts += 1



def _ranges_text(seqs: tuple[int, ...]) -> str:
    return f"{seqs[0]}..{seqs[-1]}" if len(seqs) > 1 else str(seqs[0])


def webhook_endpoints(config: GatewayConfig) -> list[Endpoint]:
    """The ``[[webhooks]]`` endpoints with their secrets read."""
    return [Endpoint(hook.name, hook.url, load_secret(hook.secret_file, key=f"webhooks.{hook.name}.secret_file"),
                     frozenset(hook.wards), max_attempts=hook.max_attempts, retry_first=hook.retry_first,
                     retry_cap=hook.retry_cap, timeout=hook.timeout, ca=hook.ca) for hook in config.webhooks]


def open_webhook_queue(config: GatewayConfig) -> WebhookQueue | None:
    """The webhook queue on its own connection to the gateway's database; None when no endpoint is configured."""
    return WebhookQueue(Database(config.storage.url), webhook_endpoints(config)) if config.webhooks else None


def open_store(config: GatewayConfig) -> ResultStore:
    """The store ``config`` describes, with the terminal keys it trusts (the ward CA, keys configured by hand)."""
    trust = config.trust
    ward = WardTrust.load(trust.ward_ca, trust.crl) if trust.ward_ca is not None else None
    configured = load_keys(trust.terminal_certs, trust.jwks, required=ward is None)
    decrypt_key = load_private_key(trust.decrypt_key, config_key="trust.decrypt_key") if trust.decrypt_key else None
    return ResultStore(config.storage.url, TerminalKeys(configured, ward), decrypt_key=decrypt_key,
                       instance=config.instance, gap_report=False,
                       subject_key=load_subject_key(config.storage.subject_key_path()))


def open_gateway(config: GatewayConfig, *, on_outcome: Callable[[Outcome], None] | None = None,
                 on_status: Callable[[str, str], None] | None = None,
                 on_event: Callable[[str, str, bytes], None] | None = None,
                 clock: Callable[[], float] = time.time) -> Gateway:  # fmt: skip
    """A gateway instance as ``config`` describes it (not started)."""
    receipt_key = (load_private_key(config.receipts.key, config_key="receipts.key")
                   if config.receipts.key is not None else None)
    return Gateway(config, open_store(config), receipt_key=receipt_key, on_outcome=on_outcome, on_status=on_status,
                   on_event=on_event, clock=clock)


def share_group(config: GatewayConfig, receipt_key: ec.EllipticCurvePrivateKey | None) -> str:
    """The shared subscription's group name: configured, else derived from the receipt key (``broker.share_group``:
    a name a terminal cannot guess, so it cannot join the group and take results the broker would then drop)."""
    if config.broker.share_group is not None:
        return config.broker.share_group
    if receipt_key is None:
        return "gateway"
    secret = receipt_key.private_numbers().private_value.to_bytes(32, "big")
    return "gw-" + hmac.new(secret, b"cccd-edge gateway share group", hashlib.sha256).hexdigest()[:24]
