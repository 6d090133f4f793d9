"""Signed DS lists on the real stack: a card read through pcscd gives its DS certificate (`read --export-ds`), the
ward signs it (`python -m provisioning ds-list sign`), the terminal pins it (`trust import`, or the office's
``trust_update`` over a real mosquitto), and that card then reads ``verified_known_signer`` while a self-made card
stays unproven. Refused lists leave the pinned signers as they were."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge import signers
from edge.cli import build_parser
from edge.cli import main as edge_main
from edge.config import parse_config
from edge.daemon.ds_list import KNOWN_SIGNERS_DIR
from edge.daemon.terminal import Terminal
from edge.protocol import jose
from edge.protocol.ds_list import DS_LIST_TYP
from edge.protocol.verify.certs import parse_certificate
from edge.sim.builder import build_card
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import SimCardSpec
from edge.sim.pki import load_or_create_pki
from edge.sim.profile import load_profile
from edge.sim.stack import READER_NAMES
from provisioning.__main__ import main as provisioning_main
from tests.fixtures.mqtt import MosquittoBroker
from tests.fixtures.pcsc import InsertCard
from tests.stack.test_terminal import TERMINAL, WARD, Material, Office, SwitchCamera, _blank_image, config_data

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def specs() -> dict[str, SimCardSpec]:
    return {name: build_card(load_profile(name)) for name in ("default", "self-made")}


@pytest.fixture(scope="module")
def ward_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The ward's command key as provisioning keeps it (0600 PEM) and its public half as the terminal has it."""
    directory = tmp_path_factory.mktemp("ward")
    key = ec.generate_private_key(ec.SECP256R1())
    signers.write_private_key(key, directory / "ward-command.key")
    (directory / "ward-command.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return directory / "ward-command.key", directory / "ward-command.pub"


def genuine_ds() -> bytes:
    return load_or_create_pki().ds.certificate.public_bytes(serialization.Encoding.DER)


def insert(insert_card: InsertCard, spec: SimCardSpec, reader: int = 0) -> None:
    insert_card(spec, reader=reader, security=SimChipSecurity(spec.secrets, spec.quirks))


def read_json(capsys: pytest.CaptureFixture[str], spec: SimCardSpec, trust: Path, *extra: str) -> dict[str, Any]:
    args = build_parser().parse_args(["read", "--can", spec.secrets.can, "--json", "--trust-dir", str(trust),
                                      *extra])  # fmt: skip
    args.func(args)
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def ds_chain(document: dict[str, Any]) -> str:
    return str(next(check["status"] for check in document["checks"] if check["name"] == "ds_chain"))


def sign(key: Path, version: int, out: Path, *certificates: Path) -> Path:
    argv = ["ds-list", "sign", "--key", str(key), "--version", str(version), "--ward", WARD, "-o", str(out)]
    assert provisioning_main([*argv, *map(str, certificates)]) == 0
    return out


def test_a_card_exported_signed_and_imported_reads_verified_known_signer_and_a_self_made_card_does_not(
    specs: dict[str, SimCardSpec], ward_keys: tuple[Path, Path], insert_card: InsertCard, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    ward_key, ward_pub = ward_keys
    trust = tmp_path / "trust"
    exported = tmp_path / "ds.pem"
    insert(insert_card, specs["default"])
    before = read_json(capsys, specs["default"], trust, "--export-ds", str(exported))
    assert before["verdict"] == "intact_origin_unproven"  # nothing installed yet: the CSCA is not public
    assert before["ds_certificate"]["fingerprint"] == parse_certificate(genuine_ds()).fingerprint
    assert exported.stat().st_mode & 0o777 == 0o644
    assert exported.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")

    signed = sign(ward_key, 1, tmp_path / "list.jws", exported)
    capsys.readouterr()
    assert edge_main(["trust", "import", "--store", str(trust), "--ds-list-key", str(ward_pub), str(signed)]) == 0
    assert "1 added" in capsys.readouterr().out

    after = read_json(capsys, specs["default"], trust)
    assert (after["verdict"], ds_chain(after)) == ("verified_known_signer", "known_signer")
    insert(insert_card, specs["self-made"], reader=1)
    forged = read_json(capsys, specs["self-made"], trust, "--reader", READER_NAMES[1])
    # its own CSCA and DS: a pinned DS vouches for the cards its key signed, nothing else
    assert (forged["verdict"], ds_chain(forged)) == ("intact_origin_unproven", "issuer_not_trusted")


def test_read_with_a_terminals_config_verifies_as_its_daemon_does(
    specs: dict[str, SimCardSpec], ward_keys: tuple[Path, Path], insert_card: InsertCard, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A signer pinned for a terminal (its ``known-signers``, where the daemon and ``trust import --config`` put it)
    counts for ``read --config`` too: the officer checking a card by hand sees the daemon's verdict."""
    ward_key, ward_pub = ward_keys
    config = tmp_path / "config.toml"
    config.write_text(f'terminal_id = "{TERMINAL}"\nward_code = "{WARD}"\n[paths]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'trust_store = "{tmp_path / "etc"}"\nward_command_key = "{ward_pub}"\n', encoding="utf-8")
    certificate = tmp_path / "ds.der"
    certificate.write_bytes(genuine_ds())
    signed = sign(ward_key, 1, tmp_path / "list.jws", certificate)
    assert edge_main(["trust", "import", "--config", str(config), str(signed)]) == 0
    insert(insert_card, specs["default"])
    capsys.readouterr()
    args = build_parser().parse_args(["read", "--can", specs["default"].secrets.can, "--json", "--config",
                                      str(config)])  # fmt: skip
    args.func(args)
    with_config = json.loads(capsys.readouterr().out)
    assert (with_config["verdict"], ds_chain(with_config)) == ("verified_known_signer", "known_signer")
    without = read_json(capsys, specs["default"], tmp_path / "etc")  # the root store alone: nothing pinned there
    assert without["verdict"] == "intact_origin_unproven"


# --- pushed by the office ------------------------------------------------------------------------------------------


@pytest.fixture
def rig(tmp_path: Path, ward_keys: tuple[Path, Path], mqtt_broker_factory: Callable[..., MosquittoBroker],
        pcsc_stack: object) -> Iterator[tuple[Terminal, Office, MosquittoBroker, signers.KeySigner]]:  # fmt: skip
    """A terminal whose root trust store is empty (the CSCA of real cards is not public)."""
    ward_key, ward_pub = ward_keys
    trust = tmp_path / "trust"
    trust.mkdir()
    device_key = ec.generate_private_key(ec.SECP256R1())
    signers.write_private_key(device_key, tmp_path / "device.key")
    ward = signers.KeySigner(signers.load_private_key(ward_key))
    material = Material(build_card(load_profile("default")), trust, _blank_image(tmp_path / "qr.png"),
                        _blank_image(tmp_path / "blank.png"), device_key, tmp_path / "device.key", ward, ward_pub)
    broker = mqtt_broker_factory()
    config = parse_config(config_data(material, broker, tmp_path / "state"))
    camera, pins = SwitchCamera(material), MockFactory(pin_class=MockPWMPin)
    office = Office(broker, material, tmp_path / "office.db")
    terminal = Terminal(config, camera=camera, pin_factory=pins)
    terminal.start()
    try:
        assert terminal.wait_ready(10)
        assert terminal.publisher is not None
        assert terminal.publisher.commands_subscribed.wait(10)
        yield terminal, office, broker, ward
    finally:
        terminal.stop()
        office.close()
        camera.close()
        pins.close()


def trust_update(ward: signers.KeySigner, ds_list: str) -> tuple[str, bytes]:
    now, jti = int(time.time()), str(uuid.uuid4())
    claims = {"iss": f"ward-{WARD}", "aud": TERMINAL, "jti": jti, "iat": now, "exp": now + 60,
              "cmd": "trust_update", "ds_list": ds_list}
    return jti, jose.sign_jws(ward, claims, typ=jose.COMMAND_TYP).encode()


def test_a_trust_update_pins_the_signer_the_next_read_is_verified_known_signer_and_bad_lists_change_nothing(
    rig: tuple[Terminal, Office, MosquittoBroker, signers.KeySigner], ward_keys: tuple[Path, Path],
    specs: dict[str, SimCardSpec], insert_card: InsertCard, tmp_path: Path,
) -> None:  # fmt: skip
    terminal, office, broker, ward = rig
    certificate = tmp_path / "ds.der"
    certificate.write_bytes(genuine_ds())
    csca = tmp_path / "csca.der"
    csca.write_bytes(load_or_create_pki().csca.certificate.public_bytes(serialization.Encoding.DER))
    foreign_key = tmp_path / "foreign.key"
    signers.write_private_key(ec.generate_private_key(ec.SECP256R1()), foreign_key)
    current = sign(ward_keys[0], 2, tmp_path / "v2.jws", certificate).read_text().strip()
    older = sign(ward_keys[0], 1, tmp_path / "v1.jws", certificate).read_text().strip()
    foreign = sign(foreign_key, 3, tmp_path / "foreign.jws", certificate).read_text().strip()
    _, body, _ = current.split(".")
    unsigned_head = jose.b64url(json.dumps({"alg": "none", "kid": ward.kid, "typ": DS_LIST_TYP}).encode())
    unsigned = f"{unsigned_head}.{body}."
    with_ca = jose.sign_jws(ward, {**json.loads(jose.b64url_decode(body)), "version": 4, "certificates": [
        {"cert": jose.b64url(csca.read_bytes())}]}, typ=DS_LIST_TYP)  # fmt: skip

    sent = [trust_update(ward, token) for token in (foreign, unsigned, with_ca, current, older, current)]
    for _, payload in sent:
        office.command(broker, payload)
    answers = ("trust_updated", "trust_update_refused")
    office.wait(lambda: len([e for e in office.events if e.get("event") in answers]) == len(sent))
    events = {e["jti"]: e for e in office.events if e.get("event") in answers}
    outcomes = [events[jti].get("reason", events[jti]["event"]) for jti, _ in sent]
    assert outcomes == ["unknown_key", "unsigned", "certificate_refused", "trust_updated", "not_newer",
                        "trust_updated"]  # fmt: skip
    fingerprint = parse_certificate(genuine_ds()).fingerprint
    assert events[sent[3][0]]["added"] == [fingerprint]
    assert events[sent[5][0]]["repeated"] is True  # the same list again: harmless
    assert terminal.stats.get("trust_updates_refused") == 4
    pinned = sorted(p.name for p in (tmp_path / "state" / KNOWN_SIGNERS_DIR).glob("ds-*"))
    assert pinned == [f"ds-{fingerprint.lower()}.der"]
    assert list((tmp_path / "trust").iterdir()) == []  # root's store is never written by the daemon

    insert(insert_card, specs["default"])
    jti, request = read_request(ward, specs["default"].secrets.can)
    office.command(broker, request)
    office.wait(lambda: len(office.outcomes) >= 1)
    assert office.outcomes[0].verdict == "verified_known_signer"
    document = json.loads(office.store._db.execute("SELECT document FROM results").fetchone()[0])
    assert document["request_id"] == jti
    assert {c["name"]: c["status"] for c in document["checks"]}["ds_chain"] == "known_signer"
    assert terminal.stats.get("verdict_verified_known_signer") == 1


def read_request(ward: signers.KeySigner, can: str) -> tuple[str, bytes]:
    now, jti = int(time.time()), str(uuid.uuid4())
    claims = {"iss": f"ward-{WARD}", "aud": TERMINAL, "jti": jti, "iat": now, "exp": now + 60,
              "cmd": "read_request", "key": {"can": can}}
    return jti, jose.sign_jws(ward, claims, typ=jose.COMMAND_TYP).encode()
