"""Broker kit and gateway identity, without a broker: what is generated, what is kept on a re-run, what is refused.
The same kit on the real mosquitto: tests/stack/test_broker_kit.py."""

from __future__ import annotations

import datetime as dt
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.daemon.mqtt import Topics
from edge.daemon.office_commands import MAX_COMMAND_BYTES
from edge.errors import ProvisioningError
from provisioning import broker_kit, device, gateway, ward_ca
from provisioning.__main__ import main
from provisioning.pki import GatewayIdentity, TerminalIdentity

WARD = "26734"


def cli(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    ward_ca.init_ward_ca(tmp_path / "ward-ca", WARD)
    return tmp_path / "ward-ca"


def kit(ca_dir: Path, out: Path, *extra: str) -> int:
    return cli("broker-kit", "--ward-ca", ca_dir, "-o", out, "--host", "broker.ward26734.example", *extra)


def test_acl_confines_terminals_by_pattern_and_names_each_gateway() -> None:
    acl = broker_kit.render_acl(WARD, ["gateway:office-1", "gateway:office-2"])
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert rules[:5] == [
        "pattern write cccd-edge/v1/26734/%u/result",
        "pattern write cccd-edge/v1/26734/%u/status",
        "pattern write cccd-edge/v1/26734/%u/event",
        "pattern read cccd-edge/v1/26734/%u/cmd",
        "pattern read cccd-edge/v1/26734/%u/receipt",
    ]
    gateway_rules = ["topic read cccd-edge/v1/26734/+/result", "topic read cccd-edge/v1/26734/+/status",
                     "topic read cccd-edge/v1/26734/+/event", "topic write cccd-edge/v1/26734/+/cmd",
                     "topic write cccd-edge/v1/26734/+/receipt"]
    assert rules[5:] == ["user gateway:office-1", *gateway_rules, "user gateway:office-2", *gateway_rules]
    assert not any("#" in rule or "readwrite" in rule for rule in rules)


def test_acl_covers_every_topic_the_daemon_uses() -> None:
    """The ACL's leaves are the daemon's (edge.daemon.mqtt.Topics): a renamed topic must not go unnoticed."""
    topics = Topics(broker_kit.DEFAULT_TOPIC_PREFIX, WARD, "T-01")
    used = {getattr(topics, name).rsplit("/", 1)[1] for name in ("result", "status", "event", "cmd")}
    assert used <= {*broker_kit.TERMINAL_WRITES, *broker_kit.TERMINAL_READS}
    assert {topics.cmd.rsplit("/", 1)[1], "receipt"} == set(broker_kit.TERMINAL_READS)
    assert broker_kit.DEFAULT_TOPIC_PREFIX == "cccd-edge/v1"


@pytest.mark.parametrize("user", ["gateway:a+b", "all/of/it", "#", "", " padded"])
def test_acl_refuses_a_user_name_that_would_widen_it(user: str) -> None:
    with pytest.raises(ProvisioningError, match="cannot be used in an ACL"):
        broker_kit.render_acl(WARD, [user])


def test_queue_limit_is_the_stated_calculation() -> None:
    sizing = broker_kit.QueueSizing()
    assert sizing.reads == 10 * 120 * 24 == 28_800
    assert sizing.max_queued_messages == 288_000
    lines = sizing.explain()
    assert "28,800 reads" in lines[0]
    assert "288,000 messages" in lines[1]
    assert broker_kit.QueueSizing(terminals=3, reads_per_hour=60, outage_hours=48).max_queued_messages == 86_400
    with pytest.raises(ProvisioningError, match="outage-hours must be at least 1"):
        broker_kit.QueueSizing(outage_hours=0)


def test_size_limit_carries_every_message_the_system_sends() -> None:
    assert broker_kit.MESSAGE_SIZE_LIMIT >= MAX_COMMAND_BYTES  # a trust_update with a full DS list fits


def test_kit_writes_a_mutual_tls_config_with_the_kits_files(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "kit"
    assert kit(ca_dir, out, "--host", "10.0.0.5", "--gateway", "office-1", "--gateway", "office-2") == 0
    assert sorted(p.name for p in out.iterdir()) == ["acl", "ca.crt", "mosquitto.conf", "server.crt", "server.key"]
    assert stat.S_IMODE((out / "server.key").stat().st_mode) == 0o600
    conf = (out / "mosquitto.conf").read_text()
    settings = dict(line.split(" ", 1) for line in conf.splitlines() if line and not line.startswith("#"))
    install = "/etc/mosquitto/cccd-edge"
    for key, value in {
        "listener": "8883", "cafile": f"{install}/ca.crt", "certfile": f"{install}/server.crt",
        "keyfile": f"{install}/server.key", "require_certificate": "true", "use_identity_as_username": "true",
        "use_username_as_clientid": "true", "allow_anonymous": "false", "acl_file": f"{install}/acl",
        "persistence": "true", "persistence_location": "/var/lib/mosquitto/", "autosave_interval": "60",
        "max_queued_messages": "288000", "message_size_limit": str(1 << 20), "user": "mosquitto",
        "tls_version": "tlsv1.2",
    }.items():
        assert settings[key] == value, key
    assert (out / "ca.crt").read_bytes() == (ca_dir / ward_ca.CA_CERT).read_bytes()
    assert "user gateway:office-2" in (out / "acl").read_text()

    cert = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((ca_dir / ward_ca.CA_CERT).read_bytes())
    cert.verify_directly_issued_by(ca)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.ward26734.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]


def test_rerun_keeps_key_and_certificate_and_reissues_for_new_hosts(ca_dir: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kit"
    assert kit(ca_dir, out) == 0
    key, cert = (out / "server.key").read_bytes(), (out / "server.crt").read_bytes()
    capsys.readouterr()
    assert kit(ca_dir, out) == 0
    assert "server.crt (kept)" in capsys.readouterr().out
    assert ((out / "server.key").read_bytes(), (out / "server.crt").read_bytes()) == (key, cert)
    assert kit(ca_dir, out, "--host", "10.0.0.5") == 0
    assert (out / "server.key").read_bytes() == key
    assert (out / "server.crt").read_bytes() != cert


def test_a_server_certificate_near_its_end_is_renewed(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "kit"
    options = broker_kit.KitOptions(hosts=("broker.example",))
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=340)
    first = broker_kit.build_kit(ca_dir, out, options, now=old)
    assert first.server_cert_issued
    assert broker_kit.build_kit(ca_dir, out, options).server_cert_issued  # 25 days left: renewed


@pytest.mark.parametrize(("extra", "message"), [
    (("--port", "0"), "not a TCP port"),
    (("--topic-prefix", "cccd-edge/#"), "topic prefix"),
    (("--install-dir", "relative/dir"), "must be absolute"),
    (("--gateway", "a", "--gateway", "a"), "given twice"),
    (("--gateway", "has space"), "letters, digits"),
    (("--host", "not a host!"), "neither an IP address nor a DNS name"),
    (("--terminals", "0"), "terminals must be at least 1"),
    (("--user", "Root Admin"), "not a system user name"),
])
def test_kit_refuses_bad_options_before_writing(ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                extra: tuple[str, ...], message: str) -> None:
    out = tmp_path / "kit"
    assert kit(ca_dir, out, *extra) == 1
    assert message in capsys.readouterr().err
    assert not (out / "mosquitto.conf").exists()


def test_kit_needs_the_ward_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kit(tmp_path / "nowhere", tmp_path / "kit") == 1
    assert "cannot read private key" in capsys.readouterr().err


def test_gateway_identity_is_signed_only_as_a_gateway(ca_dir: Path, tmp_path: Path) -> None:
    assert cli("gateway", "init", "--name", "office-1", "--ward", WARD, "--dir", tmp_path / "gw") == 0
    csr = tmp_path / "gw" / gateway.CSR
    assert stat.S_IMODE((tmp_path / "gw" / gateway.KEY).stat().st_mode) == 0o600
    assert cli("ward-ca", "sign", csr, "--dir", ca_dir) == 1  # a gateway is never minted by accident
    assert not csr.with_suffix(".crt").exists()
    assert cli("ward-ca", "sign", csr, "--dir", ca_dir, "--role", "gateway") == 0
    cert = x509.load_pem_x509_certificate(csr.with_suffix(".crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gateway:office-1"
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    key = (tmp_path / "gw" / gateway.KEY).read_bytes()
    assert cli("gateway", "init", "--name", "office-1", "--ward", WARD, "--dir", tmp_path / "gw") == 0
    assert (tmp_path / "gw" / gateway.KEY).read_bytes() == key  # kept


def test_a_terminal_csr_is_not_signed_as_a_gateway(ca_dir: Path, tmp_path: Path) -> None:
    made = device.init_device(tmp_path / "dev", TerminalIdentity("hn-01", WARD))
    ca = ward_ca.load_ward_ca(ca_dir)
    with pytest.raises(ProvisioningError, match="not a gateway's"):
        ward_ca.sign_csr(ca, ward_ca.load_csr(made.csr), role="gateway")


def test_a_gateway_of_another_ward_is_refused(ca_dir: Path, tmp_path: Path) -> None:
    made = gateway.init_gateway(tmp_path / "gw", GatewayIdentity("office-1", "26735"))
    with pytest.raises(ProvisioningError, match="this CA signs ward 26734 only"):
        ward_ca.sign_csr(ward_ca.load_ward_ca(ca_dir), ward_ca.load_csr(made.csr), role="gateway")


def test_no_terminal_id_can_be_a_gateways_user_name() -> None:
    name = GatewayIdentity("office-1", WARD).common_name
    assert name == "gateway:office-1"
    with pytest.raises(ProvisioningError):
        TerminalIdentity(name, WARD)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", name) is None
    with pytest.raises(ProvisioningError, match="too long"):
        GatewayIdentity("g" * 60, WARD)


def test_province_acl_confines_each_bridge_to_its_ward() -> None:
    acl = broker_kit.render_province_acl({"26734": "gateway:bridge-26734"}, ["gateway:province-1"])
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user gateway:bridge-26734",
        "topic write cccd-edge/v1/26734/+/result", "topic write cccd-edge/v1/26734/+/status",
        "topic write cccd-edge/v1/26734/+/event", "topic read cccd-edge/v1/26734/+/cmd",
        "topic read cccd-edge/v1/26734/+/receipt",
        "user gateway:province-1",
        "topic read cccd-edge/v1/+/+/result", "topic read cccd-edge/v1/+/+/status",
        "topic read cccd-edge/v1/+/+/event", "topic write cccd-edge/v1/+/+/cmd",
        "topic write cccd-edge/v1/+/+/receipt",
    ]
    with pytest.raises(ProvisioningError):
        broker_kit.render_province_acl({"26734/#": "x"}, [])


def test_bridge_carries_only_the_wards_topics_each_way() -> None:
    section = broker_kit.render_bridge(WARD, address="province.example", files=Path("/etc/mosquitto/cccd-edge"))
    topics = [line for line in section.splitlines() if line.startswith("topic ")]
    assert topics == [
        "topic cccd-edge/v1/26734/+/result out 1", "topic cccd-edge/v1/26734/+/status out 1",
        "topic cccd-edge/v1/26734/+/event out 1", "topic cccd-edge/v1/26734/+/cmd in 1",
        "topic cccd-edge/v1/26734/+/receipt in 1",
    ]
    assert "address province.example:8883" in section
    assert "cleansession false" in section.splitlines()
    assert "bridge_certfile /etc/mosquitto/cccd-edge/bridge.crt" in section
