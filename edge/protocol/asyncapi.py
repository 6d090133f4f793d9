"""The AsyncAPI 3 document of the MQTT contract (``edge/schemas/asyncapi.json``), generated from the models.

One channel per topic (``result``, ``status``, ``event``, ``cmd``, ``receipt``), described from the terminal's side
(it sends results, statuses and events, and receives commands and receipts; the gateway does the mirror image).
The payload schemas are the pydantic models' JSON Schemas (:mod:`edge.protocol.messages`,
:mod:`edge.protocol.commands`, :mod:`edge.protocol.receipt`), under ``components/schemas``, written in the
JSON Schema draft 07 that AsyncAPI's default schema format extends (a tuple's ``prefixItems`` becomes ``items`` as
a list, a discriminator its property name). A signed message's payload is a string (the compact JWS or JWE); its
claims schema is named by the message's ``x-jws-claims``. ``tests/unit/test_asyncapi.py`` keeps the committed file
equal to :func:`asyncapi_document`; the stack tests validate every message they see against it.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from edge.protocol.commands import COMMAND_ADAPTER
from edge.protocol.messages import DEFAULT_TOPIC_PREFIX, EVENT_ADAPTER, ResultClaims, TerminalStatus
from edge.protocol.receipt import ReceiptClaims

#: The contract's version: raise it with any change a consumer would notice.
CONTRACT_VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"
#: A compact JWS (3 parts) or JWE (5 parts), base64url segments (a JWE's key segment is empty for ECDH-ES).
COMPACT_JOSE_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*){2}$|^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*){4}$"
_WEEK = 7 * 24 * 3600
#: A result's expiry at the broker with receipts (``edge.config.DeliveryConfig.result_expiry``, default settings).
_RESULT_EXPIRY = 2 * 3600


def _draft07(node: Any) -> Any:
    """``node`` with the 2020-12 keywords pydantic writes in their draft 07 spelling."""
    if isinstance(node, list):
        return [_draft07(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _draft07(value) for key, value in node.items()}
    if "prefixItems" in out:
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = False
    if isinstance(out.get("discriminator"), dict):
        out["discriminator"] = out["discriminator"]["propertyName"]
    return out


def payload_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the top schema of each message kind, every named schema), draft 07, refs into ``components/schemas``."""
    mode: JsonSchemaMode = "validation"
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        ("ResultClaims", mode, TypeAdapter(ResultClaims)),
        ("TerminalStatus", mode, TypeAdapter(TerminalStatus)),
        ("TerminalEvent", mode, EVENT_ADAPTER),
        ("Command", mode, COMMAND_ADAPTER),
        ("ReceiptClaims", mode, TypeAdapter(ReceiptClaims)),
    ]
    tops, definitions = TypeAdapter.json_schemas(inputs, ref_template=_REF)
    named: dict[str, Any] = _draft07(definitions.get("$defs", {}))
    top = {key: _draft07(schema) for (key, _), schema in tops.items()}
    for name in ("TerminalEvent", "Command"):  # unions have no model of their own: name them here
        named[name] = {"title": name, **top[name]}
        top[name] = {"$ref": _REF.format(model=name)}
    return top, named


def _channel(leaf: str, description: str) -> dict[str, Any]:
    return {
        "address": f"{DEFAULT_TOPIC_PREFIX}/{{ward}}/{{terminal}}/{leaf}",
        "description": description,
        "parameters": {"ward": {"$ref": "#/components/parameters/ward"},
                       "terminal": {"$ref": "#/components/parameters/terminal"}},
        "messages": {leaf: {"$ref": f"#/components/messages/{leaf}"}},
    }  # fmt: skip


def _operation(action: str, leaf: str, summary: str, *, retain: bool = False,
               expiry: int | None = None) -> dict[str, Any]:  # fmt: skip
    binding: dict[str, Any] = {"qos": 1, "retain": retain, "bindingVersion": "0.2.0"}
    if expiry is not None:
        binding["messageExpiryInterval"] = expiry
    return {"action": action, "channel": {"$ref": f"#/channels/{leaf}"}, "summary": summary,
            "messages": [{"$ref": f"#/channels/{leaf}/messages/{leaf}"}], "bindings": {"mqtt": binding}}


def _signed(name: str, title: str, claims: str, typ: str, description: str) -> dict[str, Any]:
    return {
        "name": name, "title": title, "contentType": "application/jose", "description": description,
        "payload": {"type": "string", "pattern": COMPACT_JOSE_PATTERN, "maxLength": 1 << 20},
        "x-jws-claims": {"$ref": _REF.format(model=claims)}, "x-jws-typ": typ,
    }  # fmt: skip


def asyncapi_document() -> dict[str, Any]:
    """The whole AsyncAPI 3.0 document, as committed in ``edge/schemas/asyncapi.json``."""
    top, named = payload_schemas()
    return {
        "asyncapi": "3.0.0",
        "id": "urn:cccd-edge:mqtt",
        "info": {
            "title": "cccd-edge terminal <-> ward office (MQTT 5)",
            "version": CONTRACT_VERSION,
            "description": (
                "Chip-ID-card reader terminals publish signed results, their status and events; the ward office "
                "gateway stores each result once by (iss, jti), answers with a signed receipt and sends signed "
                "commands. Described from the terminal's side. Topics start with the configured prefix "
                f"(`{DEFAULT_TOPIC_PREFIX}` by default). Signed payloads are compact JWS (ES256; a result may be "
                "a JWE around its JWS): the claims schema is the message's `x-jws-claims`. Unknown fields are "
                "refused: a new field comes with a new contract version."),
        },
        "defaultContentType": "application/json",
        "servers": {
            "ward-broker": {
                "host": "broker.ward.example:8883", "protocol": "secure-mqtt", "protocolVersion": "5",
                "description": "The ward's mosquitto (the broker kit): mutual TLS with ward CA certificates, the "
                               "certificate's CN is the identity the ACL names.",
                "security": [{"$ref": "#/components/securitySchemes/wardCertificate"}],
            },
        },
        "channels": {
            "result": _channel("result", "Results, at least once and in seq order; each stays in the terminal's "
                                         "outbox until acknowledged (and receipted, where the ward sends receipts)."),
            "status": _channel("status", "The terminal's retained status (the last will says offline); an empty "
                                         "retained message clears it."),
            "event": _channel("event", "What happened at the terminal, for the office's log: never personal data."),
            "cmd": _channel("cmd", "Office commands for one terminal, signed with the ward command key; "
                                   "refusals are reported on the event channel (command_rejected)."),
            "receipt": _channel("receipt", "The gateway's signed word that the named results are in its database."),
        },
        "operations": {
            "sendResult": _operation("send", "result", "A verified (or failed) read, signed by the device key. "
                                     "Message expiry: twice the terminal's republish cap (2 h by default) while it "
                                     "keeps the result until receipted; a week under PUBACK-only delivery",
                                     expiry=_RESULT_EXPIRY),
            "sendStatus": _operation("send", "status", "The terminal's state, retained", retain=True),
            "sendEvent": _operation("send", "event", "A terminal event", expiry=_WEEK),
            "receiveCommand": _operation("receive", "cmd", "A command from the office (read_request, cancel, "
                                                           "ping, trust_update)", expiry=600),
            "receiveReceipt": _operation("receive", "receipt", "A receipt naming stored results", expiry=_WEEK),
        },
        "components": {
            "parameters": {
                "ward": {"description": "The ward (xã/phường) code of the terminal's certificate"},
                "terminal": {"description": "The terminal id: the CN of its device certificate"},
            },
            "securitySchemes": {"wardCertificate": {"type": "X509", "description": "A certificate from the ward "
                                                                                   "CA (terminal or gateway)"}},
            "messages": {
                "result": _signed("result", "Result token", "ResultClaims", "cccd-result+jwt",
                                  "The read's document inside a JWS by the device key, the device certificate "
                                  "chain in the header (x5c)."),
                "status": {"name": "status", "title": "Terminal status", "payload": top["TerminalStatus"]},
                "event": {"name": "event", "title": "Terminal event", "payload": top["TerminalEvent"]},
                "cmd": _signed("cmd", "Office command", "Command", "cccd-command+jwt",
                               "A command for the terminal named in aud, valid at most 600 s, never replayed."),
                "receipt": _signed("receipt", "Receipt", "ReceiptClaims", "cccd-receipt+jwt",
                                   "Names stored results by jti (and seq ranges); signed by a key the terminal "
                                   "was provisioned to trust."),
            },
            "schemas": dict(sorted(named.items())),
        },
    }
