"""The gateway at a ward broker made by the broker kit (mutual TLS, the certificate's CN as user name, the kit's
ACL): its identity may share the results and write receipts; a terminal that joins the well-known share group
cannot make results vanish, because the gateway's group name comes from its receipt key."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.office.gateway import open_gateway
from edge.office.gateway_config import parse_gateway_config
from edge.protocol import jose
from edge.protocol.receipt import verify_receipt
from tests.stack.test_broker_kit import PREFIX, WARD, Peer, Ward, peers, topic, ward  # noqa: F401  # its fixtures
from tests.support.ward import Terminal as SignedTerminal

pytestmark = pytest.mark.stack


def test_the_gateway_at_a_kit_broker_loses_nothing_to_a_terminal_in_the_share_group(
        ward: Ward, peers: Callable[..., Peer], tmp_path: Path) -> None:  # noqa: F811
    ward.broker()
    receipt_key = tmp_path / "receipt.key"
    key = ec.generate_private_key(ec.SECP256R1())
    signers.write_private_key(key, receipt_key)
    config = parse_gateway_config({
        "instance": "office-1", "ward": WARD,
        "broker": {"host": "127.0.0.1", "port": ward.port, "ca": str(ward.ca), "cert": str(ward.gateway.cert),
                   "key": str(ward.gateway.key)},
        "storage": {"url": f"sqlite:///{tmp_path / 'results.db'}"},
        "trust": {"ward_ca": str(ward.directory / "ward-ca" / "ward-ca.crt")},
        "receipts": {"key": str(receipt_key)},
    })  # fmt: skip
    gateway = open_gateway(config)  # the kit's certificates are valid now, for two days
    gateway.start()
    try:
        assert gateway.subscribed.wait(10), "the kit's ACL lets the gateway identity share the results"
        thief = peers(ward.b)  # T-B's own certificate
        assert thief.subscribe(f"$share/gateway/{PREFIX}/{WARD}/+/result") == 1  # mosquitto 2.0 grants it
        a = peers(ward.a)
        assert a.subscribe(topic("T-A", "receipt")) == 1
        terminal = SignedTerminal("T-A", signers.KeySigner(signers.load_private_key(ward.a.key)),
                                  _der(ward.a.cert))
        tokens = [terminal.token(seq, now=int(time.time())) for seq in range(1, 11)]
        for token in tokens:
            assert a.publish(topic("T-A", "result"), token) == 0
        deadline = time.monotonic() + 20
        while gateway.stats.stored < len(tokens) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gateway.stats.stored == len(tokens), "every result reached the gateway, none went to the thief"
        assert thief.messages == []
        deadline = time.monotonic() + 20
        keys = {jose.key_id(key.public_key()): key.public_key()}
        named: set[str] = set()
        while len(named) < len(tokens) and time.monotonic() < deadline:
            named = {jti for _, payload, _ in list(a.messages)
                     for jti in verify_receipt(payload, keys, terminal_id="T-A", ward_code=WARD, now=None).claims.jtis}
            time.sleep(0.05)
        assert len(named) == len(tokens), "the kit's ACL lets the gateway write T-A's receipt topic"
    finally:
        gateway.stop()
        gateway.store.close()


def _der(path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)
