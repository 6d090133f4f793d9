"""The AsyncAPI document of the MQTT contract: committed equal to what the models generate, every reference
resolves, real messages of each topic keep it and broken ones do not; the terminal's own status and event
vocabulary (the daemon builds them as dicts) is the contract's."""

from __future__ import annotations

import ast
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge import __version__, signers
from edge.daemon.state import Indicator, State
from edge.errors import CommandRejectedError
from edge.protocol import jose
from edge.protocol.access.policy import CanKey
from edge.protocol.asyncapi import asyncapi_document
from edge.protocol.commands import PingCommand, ReadCommand, sign_command
from edge.protocol.messages import (
    CommandRejectedEvent,
    IndicatorPattern,
    ReportName,
    TerminalState,
    event_names,
    software_version,
)
from edge.protocol.receipt import receipt_claims, sign_receipt
from tests.support.mqtt_contract import ASYNCAPI_PATH, violation
from tests.support.ward import make_ward

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000
TOPIC = "cccd-edge/v1/26734/T-01/{}"
WARD_KEY = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))


def _generated() -> str:
    return json.dumps(asyncapi_document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def test_committed_document_matches_the_models() -> None:
    generated = _generated()
    if os.environ.get("UPDATE_SCHEMAS") == "1":
        ASYNCAPI_PATH.write_text(generated, encoding="utf-8")
    assert ASYNCAPI_PATH.read_text(encoding="utf-8") == generated, "UPDATE_SCHEMAS=1 pytest tests/unit/test_asyncapi.py"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [ref for key, value in node.items()
                for ref in ([value] if key == "$ref" else _refs(value))]  # fmt: skip
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_every_reference_resolves_and_every_topic_has_a_channel_and_an_operation() -> None:
    document = asyncapi_document()
    for ref in _refs(document):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]  # a KeyError names the broken reference
    assert sorted(document["channels"]) == ["cmd", "event", "receipt", "result", "status"]
    assert sorted(op["channel"]["$ref"].rsplit("/", 1)[1] for op in document["operations"].values()) == sorted(
        document["channels"])
    assert document["asyncapi"].startswith("3.")


def test_real_messages_of_every_topic_keep_the_contract(tmp_path: Path) -> None:
    terminal = make_ward(tmp_path / "ward").terminal("T-01")
    result = terminal.token(7)
    receipt = sign_receipt(receipt_claims(gateway="gateway:office-1", terminal_id="T-01", ward_code="26734",
                                          results=[(7, "j-7")], now=NOW, jti=str(uuid.uuid4())),
                           ec.generate_private_key(ec.SECP256R1()))  # fmt: skip
    read = sign_command(ReadCommand(iss="gateway:office-1", aud="T-01", jti=str(uuid.uuid4()), iat=NOW,
                                    exp=NOW + 300, cmd="read_request", key=CanKey("123456"),
                                    challenge="0102030405060708"), WARD_KEY)  # fmt: skip
    ping = sign_command(PingCommand(iss="office", aud="T-01", jti=str(uuid.uuid4()), iat=NOW, exp=NOW + 60,
                                    cmd="ping"), WARD_KEY)  # fmt: skip
    status = {"state": "online", "version": __version__, "terminal_state": "ready", "indicator": "ready",
              "reader": "ok", "camera": "ok", "queued": 0, "outbox_full": False, "storage_full": False, "held": 0,
              "last_error": "", "clock": {"synchronised": True, "source": "ntp"}}  # fmt: skip
    good = {
        "result": [result],
        "receipt": [receipt],
        "cmd": [read, ping],
        "status": [json.dumps(status).encode(), b'{"state":"offline","version":"0.1.0"}', b'{"state":"offline"}',
                   b""],
        "event": [b'{"event":"result","detail":"result_ok","request_id":null}',
                  b'{"event":"command_rejected","reason":"replayed","jti":null}',
                  b'{"event":"delivery_recovered"}', b'{"event":"pong","jti":"abc","state":"ready"}',
                  b'{"event":"clock_not_synchronised","floor":"2026-11-01T00:00:00+00:00","source":"none"}'],
    }
    for leaf, payloads in good.items():
        for payload in payloads:
            assert violation(TOPIC.format(leaf), payload) is None, (leaf, payload[:80])
    # A read request's claims checked by the terminal's verifier too: the office signs what the terminal accepts.
    claims = jose.verify_jws(read, {WARD_KEY.kid: WARD_KEY.public_key}, NOW, typ=jose.COMMAND_TYP).claims
    assert claims["key"] == {"can": "123456"}
    assert "profile" not in claims


@pytest.mark.parametrize(("leaf", "payload", "why"), [
    ("status", b'{"state":"online","mood":"fine"}', "Additional properties"),
    ("status", b'{"state":"sleeping"}', "is not one of"),
    ("status", b'{"state":"online","version":"<b>1.0</b>"}', "at ['version']"),
    ("status", b'{"state":"online","version":"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"}', "at ['version']"),
    ("status", b"not json", "not JSON"),
    ("event", b'{"event":"exploded"}', "is not valid under any"),
    ("event", b'{"event":"pong","jti":"abc"}', "is not valid under any"),
    ("result", b"\xff not a token", "not text"),
    ("result", b"a.b", "does not match"),
    ("cmd", b"read_request", "does not match"),
    ("receipt", b"receipt 1-7", "does not match"),
    ("ping", b"{}", "no channel"),
])  # fmt: skip
def test_broken_messages_break_it(leaf: str, payload: bytes, why: str) -> None:
    found = violation(TOPIC.format(leaf), payload)
    assert found is not None
    assert why in found, found


def test_a_signed_message_of_the_wrong_type_or_with_wrong_claims_breaks_it(tmp_path: Path) -> None:
    ping = sign_command(PingCommand(iss="office", aud="T-01", jti=str(uuid.uuid4()), iat=NOW, exp=NOW + 60,
                                    cmd="ping"), WARD_KEY)  # fmt: skip
    assert "expected 'cccd-receipt+jwt'" in (violation(TOPIC.format("receipt"), ping) or "")
    odd = jose.sign_jws(WARD_KEY, {"iss": "office", "aud": "T-01", "jti": "12345678", "iat": NOW, "exp": NOW + 60,
                                   "cmd": "self_destruct"}, typ=jose.COMMAND_TYP).encode()  # fmt: skip
    assert "cmd claims" in (violation(TOPIC.format("cmd"), odd) or "")


# --- the terminal's vocabulary is the contract's -------------------------------------------------------------------


def _daemon_event_names() -> set[str]:
    """Every ``{"event": "<name>", ...}`` literal and ``Report("<name>", ...)`` in the daemon's code."""
    names: set[str] = set()
    for path in sorted((ROOT / "edge" / "daemon").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "event" and isinstance(value, ast.Constant):
                        names.add(value.value)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Report"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                names.add(node.args[0].value)
    return names


def test_every_event_the_daemon_can_publish_is_in_the_contract() -> None:
    found = _daemon_event_names()
    assert len(found) > 15, "the scan found the daemon's events"
    assert found <= event_names(), f"events missing from edge/protocol/messages.py: {sorted(found - event_names())}"


def test_state_indicator_and_refusal_vocabularies_match_the_daemons() -> None:
    assert set(TerminalState.__args__) == {state.value for state in State}
    assert set(IndicatorPattern.__args__) == {indicator.value for indicator in Indicator}
    reasons = CommandRejectedEvent.model_fields["reason"].annotation
    assert set(reasons.__args__) == set(CommandRejectedError.REASONS)  # type: ignore[union-attr]
    assert set(ReportName.__args__) <= event_names()


@pytest.mark.parametrize(("status", "shown"), [
    ({"state": "online", "version": __version__}, __version__),  # what the terminal says (`cccd-edge --version`)
    ({"state": "online", "version": "1.2.0rc1+g3f2a.dirty"}, "1.2.0rc1+g3f2a.dirty"),
    ({"state": "offline"}, None),  # an older terminal: unknown
    ({"state": "online", "version": "<img src=x onerror=alert(1)>"}, None),
    ({"state": "online", "version": "1" * 33}, None),
    ({"state": "online", "version": "1.0\n"}, None),
    ({"state": "online", "version": ""}, None),
    ({"state": "online", "version": 1.0}, None),
    ({"state": "online", "version": {"major": 1}}, None),
])  # fmt: skip
def test_the_office_shows_a_terminals_software_version_only_when_it_is_one(status: dict[str, Any],
                                                                         shown: str | None) -> None:
    """The version is the terminal's text: bounded and plain, or unknown (the fleet view shows a dash)."""
    assert software_version(status) == shown
