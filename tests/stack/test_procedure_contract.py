"""The procedure software's contract end to end, with real parts: mosquitto, a gateway storing on SQLite or
PostgreSQL, its REST API on uvicorn over real HTTP, and a webhook receiver that fails the first two deliveries.

The procedure software asks a terminal to read (POST read-requests): the terminal (an MQTT client here, checking
the command with the terminal's own verifier) gets the signed read_request on its cmd topic and answers with a
result naming the request; it sends the result twice (a receipt lost). The result is stored once, reaches the
receiver exactly once by webhook-id through the failures, every attempt signed by the Standard Webhooks scheme,
and the API lists it with its request_id; ward B's key sees none of it. Every MQTT message on the broker keeps
the AsyncAPI document (the broker fixture's recorder)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from edge import signers
from edge.daemon.mqtt import close_loop_sockets
from edge.daemon.office_commands import CommandVerifier, ReadCommand, ReplayGuard
from edge.office.api_clients import ApiClients
from edge.office.api_server import open_procedure_side
from edge.office.database import Database
from edge.office.gateway import open_gateway
from edge.office.gateway_config import parse_gateway_config
from edge.office.webhooks import parse_secret, verify_webhook, write_secret
from edge.protocol import jose
from edge.protocol.access.policy import CanKey
from edge.sim.broker import MosquittoBroker
from tests.support.results import sample_result
from tests.support.waiting import wait_until
from tests.support.ward import NOW, WARD, make_ward
from tests.support.webhook_receiver import WebhookReceiver, spec_signature_holds

pytestmark = pytest.mark.stack
PREFIX = "cccd-edge/v1"
WARD_B = "99999"


class TerminalLink:
    """The terminal's end of MQTT: receives its commands, publishes results."""

    def __init__(self, broker: MosquittoBroker, terminal: str) -> None:
        self.commands: list[bytes] = []
        self._topic = f"{PREFIX}/{WARD}/{terminal}"
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cccd-edge-{terminal}",
                                   protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.on_message = lambda _c, _u, message: self.commands.append(bytes(message.payload))
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._client.subscribe(f"{self._topic}/cmd", qos=1)
        assert subscribed.wait(10)

    def publish(self, payload: bytes) -> None:
        self._client.publish(f"{self._topic}/result", payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        close_loop_sockets(self._client)


def _http(method: str, url: str, key: str, body: object = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,  # noqa: S310  # the test's own server
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    made = WebhookReceiver(answers=[500, 503])
    yield made
    made.close()


def test_read_request_to_webhook_exactly_once_and_the_api_lists_it(
        mqtt_broker_factory: Callable[..., MosquittoBroker], office_db: str | Path, tmp_path: Path,
        receiver: WebhookReceiver) -> None:  # fmt: skip
    broker = mqtt_broker_factory()
    ward = make_ward(tmp_path / "ward-ca")
    command_key = tmp_path / "ward-command.key"
    signers.write_private_key(ec.generate_private_key(ec.SECP256R1()), command_key)
    secret_file = tmp_path / "procedure.whsec"
    secret_text = write_secret(secret_file)
    url = office_db if isinstance(office_db, str) else f"sqlite:///{office_db}"
    config = parse_gateway_config({
        "instance": "office-1", "ward": WARD,
        "broker": {"host": broker.host, "port": broker.port},
        "storage": {"url": url},
        "trust": {"ward_ca": str(ward.ca_path)},
        "receipts": {"key": str(command_key)},
        "api": {"listen": "127.0.0.1", "port": 0},
        "webhooks": [{"name": "procedure", "url": receiver.url, "secret_file": str(secret_file), "wards": [WARD],
                      "retry_first": 0.05, "retry_cap": 0.2}],
    })  # fmt: skip
    keys_db = Database(url)
    clients = ApiClients(keys_db)
    key_a, key_b = clients.add("procedure-a", [WARD], NOW), clients.add("procedure-b", [WARD_B], NOW)
    keys_db.close()
    assert key_a is not None
    assert key_b is not None
    offset = NOW - time.time()  # the office's clock in the ward's certificates' time, still running
    gateway = open_gateway(config, clock=lambda: time.time() + offset)
    procedure = open_procedure_side(config, gateway, poll=0.05, clock=lambda: time.time() + offset)
    terminal = ward.terminal("T-01")
    link = TerminalLink(broker, "T-01")
    gateway.start()
    procedure.start()
    try:
        assert gateway.subscribed.wait(10)
        assert procedure.api is not None
        api = procedure.api.url.rstrip("/")
        status, asked = _http("POST", f"{api}/v1/wards/{WARD}/terminals/T-01/read-requests", key_a,
                              {"key": {"can": "123456"}, "profile": "residence"})  # fmt: skip
        assert status == 202, asked
        wait_until(lambda: len(link.commands) == 1, "the read request at the terminal")
        verifier = CommandVerifier(signers.load_private_key(command_key).public_key(), "T-01",
                                   ReplayGuard(tmp_path / "seen.db"))  # fmt: skip
        command = verifier.verify(link.commands[0], NOW)
        assert isinstance(command, ReadCommand)
        assert command.key == CanKey("123456")
        assert command.jti == asked["request_id"]
        document = json.loads(sample_result(terminal_id="T-01").to_json()) | {"request_id": command.jti}
        token = jose.result_token(terminal.signer, terminal_id="T-01", seq=1, document=document, now=NOW,
                                  certificate=terminal.certificate)  # fmt: skip
        link.publish(token)
        link.publish(token)  # again: its receipt was lost
        wait_until(lambda: gateway.stats.stored + gateway.stats.duplicates == 2, "the result and its duplicate")
        wait_until(lambda: len(receiver.accepted()) == 1, "the webhook through two failures")
        time.sleep(0.5)  # a second delivery would show now
        assert [d.status for d in receiver.deliveries] == [500, 503, 200], "one result, three attempts, one id"
        jti = json.loads(jose.b64url_decode(token.split(b".")[1].decode()))["jti"]
        assert {d.webhook_id for d in receiver.deliveries} == {jti}
        for delivery in receiver.deliveries:
            assert spec_signature_holds(secret_text, delivery.headers, delivery.body)
            verify_webhook(parse_secret(secret_text), delivery.headers, delivery.body,
                           now=int(delivery.headers["webhook-timestamp"]))  # fmt: skip
        event = receiver.accepted()[0].json()
        assert event["type"] == "result.stored"
        assert event["data"]["request_id"] == command.jti
        assert event["data"]["document"]["request_id"] == command.jti
        status, page = _http("GET", f"{api}/v1/results", key_a)
        assert status == 200
        assert [(r["terminal"], r["jti"], r["request_id"]) for r in page["items"]] == [("T-01", jti, command.jti)]
        assert _http("GET", f"{api}/v1/results", key_b)[1]["items"] == [], "ward B's key sees nothing of ward A"
        assert _http("GET", f"{api}/v1/results?ward={WARD}", key_b)[0] == 403
        status, letters = _http("GET", f"{api}/v1/webhooks/dead-letters", key_a)
        assert letters["items"] == []
    finally:
        link.close()
        procedure.stop()
        gateway.stop()
        gateway.store.close()
