"""gateway.toml (edge.office.gateway_config) and the gateway's systemd unit."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge.errors import ConfigError
from edge.office.gateway import share_group
from edge.office.gateway_config import load_gateway_config, parse_gateway_config

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "cccd-edge-gateway.service"
MINIMAL: dict[str, Any] = {"instance": "office-1", "trust": {"ward_ca": "/etc/cccd-edge-gateway/ward-ca.crt"}}


def test_a_minimal_config_takes_the_defaults() -> None:
    config = parse_gateway_config(MINIMAL)
    assert (config.ward, config.client_id, config.broker.share_group) == ("+", "gateway:office-1", None)
    assert config.storage.url.startswith("sqlite:////var/lib/")
    assert config.receipts.key is None


@pytest.mark.parametrize(("change", "key"), [
    ({"instanse": "x"}, "instanse"),
    ({"instance": "gateway:1"}, "instance"),
    ({"ward": "a/b"}, "ward"),
    ({"trust": {}}, "trust"),
    ({"trust": {"terminal_certs": [], "crl": "/x"}}, "trust"),
    ({"storage": {"url": "mysql://x"}}, "storage.url"),
    ({"broker": {"cert": "/c"}}, "broker"),
    ({"broker": {"topic_prefix": "a/+/b"}}, "broker.topic_prefix"),
    ({"broker": {"port": 0}}, "broker.port"),
    ({"receipts": {"lifetime": 10}}, "receipts.lifetime"),
])  # fmt: skip
def test_mistakes_name_their_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_gateway_config(MINIMAL | change)
    assert caught.value.key == key


def test_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('instance = "office-2"\nward = "26734"\n[trust]\nward_ca = "/w.crt"\n'
                    '[storage]\nurl = "postgresql:///cccd?host=/run/postgresql"\n', encoding="utf-8")
    assert load_gateway_config(path).storage.url.startswith("postgresql://")
    path.write_text("instance = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="TOML"):
        load_gateway_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_gateway_config(tmp_path / "missing.toml")


def test_the_unit_runs_the_gateway_sandboxed() -> None:
    text = UNIT.read_text(encoding="utf-8")
    assert "ExecStart=/opt/cccd-edge/bin/cccd-edge gateway run --config /etc/cccd-edge-gateway/gateway.toml" in text
    assert "Restart=always" in text
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt install systemd)")
    run = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True,
                         text=True, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", run.stdout)
    assert match, run.stdout + run.stderr
    assert float(match.group(1)) <= 2.0, run.stdout
    verify = subprocess.run([analyze, "verify", "--man=no", str(UNIT)], capture_output=True, text=True, check=False)
    complaints = [line for line in (verify.stdout + verify.stderr).splitlines()
                  if line.strip() and "/opt/cccd-edge/bin/cccd-edge is not executable" not in line]
    assert not complaints, complaints


def test_the_share_group_is_not_guessable_without_the_receipt_key() -> None:
    """Every instance with the ward's receipt key is in one group; a terminal cannot name it (joining would let it
    take results the broker's ACL then drops)."""
    config = parse_gateway_config(MINIMAL)
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    assert share_group(config, key) == share_group(parse_gateway_config(MINIMAL | {"instance": "office-2"}), key)
    assert share_group(config, key) != share_group(config, other)
    assert share_group(config, key).startswith("gw-")
    assert share_group(config, None) == "gateway"
    named = parse_gateway_config(MINIMAL | {"broker": {"share_group": "ward-26734"}})
    assert share_group(named, key) == "ward-26734"


HOOK: dict[str, Any] = {"name": "procedure", "url": "https://procedure.ward.example/hooks", "secret_file": "/s",
                        "wards": ["26734"]}


@pytest.mark.parametrize(("change", "key"), [
    ({"api": {"listen": "192.0.2.10"}}, "api"),  # citizens' data in clear on the network
    ({"api": {"tls_cert": "/c"}}, "api"),
    ({"api": {"client_ca": "/ca"}}, "api"),
    ({"api": {"command_lifetime": 900}}, "api.command_lifetime"),
    ({"webhooks": [HOOK | {"url": "http://procedure.ward.example/hooks"}]}, "webhooks.0.url"),
    ({"webhooks": [HOOK | {"wards": []}]}, "webhooks.0.wards"),
    ({"webhooks": [HOOK | {"wards": ["a/b"]}]}, "webhooks.0.wards"),
    ({"webhooks": [HOOK, HOOK]}, "webhooks"),
    ({"webhooks": [HOOK | {"retry_first": 0}]}, "webhooks.0.retry_first"),
])  # fmt: skip
def test_api_and_webhook_settings_refused(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_gateway_config(MINIMAL | change)
    assert raised.value.key == key


def test_api_and_webhooks_taken() -> None:
    config = parse_gateway_config(MINIMAL | {"api": {"port": 0, "listen": "192.0.2.10", "tls_cert": "/c",
                                                     "tls_key": "/k", "client_ca": "/ca"},
                                             "webhooks": [HOOK, HOOK | {"name": "local", "url": "http://127.0.0.1:9/h",
                                                                        "wards": ["+"]}]})  # fmt: skip
    assert config.api is not None
    assert config.api.command_key is None
    assert [hook.name for hook in config.webhooks] == ["procedure", "local"]
    assert config.webhooks[0].max_attempts == 25
