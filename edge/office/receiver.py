"""The reference receiver at the ward office: one instance, one subscription, feeding the office's store.

Verification, de-duplication, gaps and quarantine are :mod:`edge.office.store`'s (the gateway, ``edge.office.
gateway``, runs the same store with a shared subscription, receipts and the fleet view); the names are re-exported
here for the callers that knew them here.

Nothing a message holds can stop the message thread: a message is acknowledged to the broker once it is in either
table (``results`` or ``quarantine``), so a poison message is not delivered again after a restart, and one that
could not be written (a full disk) is left unacknowledged for the next connection.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.logsetup import log_unexpected
from edge.office.store import MAX_RESULT_BYTES as MAX_RESULT_BYTES
from edge.office.store import OVERSIZE_KEEP_BYTES as OVERSIZE_KEEP_BYTES
from edge.office.store import Gaps as Gaps
from edge.office.store import Outcome as Outcome
from edge.office.store import RefusedSeq as RefusedSeq
from edge.office.store import ResultStore as ResultStore

log = logging.getLogger(__name__)


class Receiver:
    """Subscribes to every terminal of a ward and feeds :class:`ResultStore`; persistent session (QoS 1)."""

    def __init__(self, store: ResultStore, *, host: str, port: int, ward: str, prefix: str = "cccd-edge/v1",
                 client_id: str = "cccd-edge-office", tls: dict[str, str] | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self._topic = f"{prefix}/{ward}/+/result"
        self._on_outcome = on_outcome
        self._clock = clock or time.time
        self.subscribed = threading.Event()
        # Manual acks: a message is acknowledged once it is stored or quarantined (see the module docstring).
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                   manual_ack=True)
        if tls is not None:
            self._client.tls_set(ca_certs=tls.get("ca"), certfile=tls.get("cert"), keyfile=tls.get("key"))
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._handle_connect
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_message = self._handle_message
        self._host, self._port = host, port

    def start(self) -> None:
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
        session.SessionExpiryInterval = 7 * 24 * 3600  # results queued at the broker while the office is down
        self._client.connect_async(self._host, self._port, clean_start=False, properties=session)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._client._reset_sockets(sockpair_only=True)  # as edge.daemon.mqtt.close_loop_sockets: not left to __del__

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                        reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the office connection: %s", reason_code)
            return
        client.subscribe(self._topic, qos=1)

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                          properties: Properties | None) -> None:
        # A broker whose ACL denies the filter still answers SUBACK, with a failure code: that is no subscription.
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            log.warning("broker refused the subscription to %s: %s", self._topic, refused[0])
            return
        # Scripts wait for this line before a terminal publishes: until the office's first subscription at a broker,
        # the broker keeps nothing for it.
        log.info("subscribed to %s", self._topic)
        self.subscribed.set()

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # The thread boundary: an exception here would end paho's network thread, and the unacknowledged message
        # would end the next one too. Logged by type and stack only: messages may quote the payload.
        try:
            outcome = self.store.ingest(bytes(message.payload), self._clock(), topic=_topic(message))
        except Exception as exc:  # noqa: BLE001  # the database refused: leave it unacknowledged, for later
            log_unexpected(log, "a message could be neither stored nor quarantined; not acknowledged", exc)
            return
        client.ack(message.mid, message.qos)
        try:
            log.info("result %s", json.dumps(outcome.as_dict()))
            if self._on_outcome is not None:
                self._on_outcome(outcome)
        except Exception as exc:  # noqa: BLE001  # a failing report must not end the thread either
            log_unexpected(log, "reporting a message's outcome failed", exc)


def _topic(message: mqtt.MQTTMessage) -> str:
    try:
        return message.topic  # paho decodes it here, and raises for a topic that is not UTF-8
    except UnicodeDecodeError:
        return "<topic not UTF-8>"
