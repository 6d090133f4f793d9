"""Config: defaults load, and every bad value ends in a ConfigError naming the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import Config, load_config
from edge.errors import ConfigError
from edge.protocol.result import ProcedureProfile

MINIMAL = 'terminal_id = "T-01"\nward_code = "26734"\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cccd-edge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert isinstance(config, Config)
    assert config.procedure_profile is ProcedureProfile.RESIDENCE
    assert (config.mqtt.port, config.mqtt.tls, config.mqtt.topic_prefix) == (8883, True, "cccd-edge/v1")
    assert config.indicators.rgb is None
    assert config.camera.source == "picam"
    assert config.camera.qr_repeat_after == 30.0


def test_full_config(tmp_path: Path) -> None:
    text = MINIMAL + """
procedure_profile = "identity"
reader_name = "Virtual PCD 00 00"
[paths]
state_dir = "/tmp/state"
device_cert = "/etc/cccd-edge/device.crt"
[mqtt]
host = "broker.ward.local"
port = 18883
tls = false
message_expiry = 3600
[outbox]
max_count = 50
max_bytes = 100000
[indicators]
rgb = [5, 6, "GPIO13"]
buzzer = 19
[camera]
source = "replay"
replay_path = "/tmp/frames"
fps = 5
qr_repeat_after = 0
[timeouts]
wait_for_card = 12.5
"""
    config = load_config(_write(tmp_path, text))
    assert config.procedure_profile is ProcedureProfile.IDENTITY
    assert config.indicators.rgb == (5, 6, "GPIO13")
    assert config.timeouts.wait_for_card == 12.5
    assert config.camera.qr_repeat_after == 0  # never repeat while the QR stays in view
    assert config.paths.state_dir == Path("/tmp/state")


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ("[mqtt]\nport = 70000\n", "mqtt.port", "less than or equal"),
        ("[mqtt]\nporrt = 1\n", "mqtt.porrt", "Extra inputs"),
        ('[mqtt]\ntopic_prefix = "a/#"\n', "mqtt.topic_prefix", "segment"),
        ('[mqtt]\ntopic_prefix = "cccd-edge/v1\\n"\n', "mqtt.topic_prefix", "segment"),  # `$` let it through
        ("[mqtt]\nreconnect_min_delay = 10.0\nreconnect_max_delay = 1.0\n", "mqtt", "reconnect_max_delay"),
        ('procedure_profile = "everything"\n', "procedure_profile", "full"),
        ("[outbox]\nmax_count = 0\n", "outbox.max_count", "greater than"),
        ("[indicators]\ngreen = 5\namber = 5\nred = 6\n", "indicators", "used twice"),
        ("[indicators]\nred = true\n", "indicators.red", "valid integer"),
        ('[camera]\nsource = "replay"\n', "camera", "replay_path"),
        ('[camera]\nsource = "webcam"\n', "camera.source", "picam"),
        ("[camera]\nqr_repeat_after = -1\n", "camera.qr_repeat_after", "greater than or equal"),
        ("[timeouts]\nreading = -1\n", "timeouts.reading", "greater than"),
        ('procedure_profile = "online_check"\n', "paths.ward_encryption_key", "only ever encrypted to the ward"),
        ('[indicators]\nreader_leds = "acr999"\n', "indicators.reader_leds", "neither"),
        ('[indicators]\nreader_leds = "acr1252u"\n', "indicators.reader_leds", "not driven"),
        ('[indicators]\ngpio = false\nreader_leds = "off"\n', "indicators", "would see nothing"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, extra: str, key: str, problem: str) -> None:
    text = MINIMAL + extra if extra.startswith("[") else extra + MINIMAL
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert info.value.key == key
    assert problem in str(info.value)


def test_missing_required_and_bad_id(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, 'ward_code = "1"\n'))
    assert info.value.key == "terminal_id"
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, 'terminal_id = "T/1"\nward_code = "1"\n'))
    assert info.value.key == "terminal_id"
    with pytest.raises(ConfigError) as info:  # a trailing newline is no topic level either
        load_config(_write(tmp_path, 'terminal_id = "T1\\n"\nward_code = "1"\n'))
    assert info.value.key == "terminal_id"


def test_unreadable_or_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "terminal_id = \n"))
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'terminal_id = "\xff"\n')
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


def test_mqtt_settings_from_config(tmp_path: Path) -> None:
    from edge.daemon.mqtt import MqttSettings

    config = load_config(_write(tmp_path, MINIMAL + '[paths]\ndevice_cert = "/etc/c.crt"\nbroker_ca = "/etc/ca"\n'))
    settings = MqttSettings.from_config(config)
    assert settings.topics.result == "cccd-edge/v1/26734/T-01/result"
    assert settings.topics.cmd == "cccd-edge/v1/26734/T-01/cmd"
    assert (settings.cert_file, settings.key_file) == (Path("/etc/c.crt"), config.paths.device_key)
    plain = MqttSettings.from_config(load_config(_write(tmp_path, MINIMAL + "[mqtt]\ntls = false\n")))
    assert (plain.tls, plain.cert_file) == (False, None)


def test_a_token_key_cannot_serve_mutual_tls(tmp_path: Path) -> None:
    """A token key keeps its certificate for the key check but not as the TLS identity: ssl needs a key file."""
    token_paths = ('[paths]\ndevice_key = "pkcs11:token=SE;object=device?module-path=/m.so&pin-value=1"\n'
                   f'device_cert = "{tmp_path / "device.crt"}"\n')
    with pytest.raises(ConfigError, match=r"mqtt\.client_certificate = false \(server-authenticated TLS\)") as info:
        load_config(_write(tmp_path, MINIMAL + token_paths))
    assert info.value.key == "mqtt.client_certificate"
    config = load_config(_write(tmp_path, MINIMAL + token_paths + "[mqtt]\nclient_certificate = false\n"))
    assert config.paths.device_cert == tmp_path / "device.crt"  # what the daemon checks the token key against
    assert config.tls_client_identity() is None
    assert not isinstance(config.paths.device_key, Path)
    plain = load_config(_write(tmp_path, MINIMAL + token_paths + "[mqtt]\ntls = false\n"))  # no TLS, nothing to refuse
    assert plain.tls_client_identity() is None


def test_mutual_tls_only_with_tls_client_certificate_and_a_file_key(tmp_path: Path) -> None:
    """test_mqtt_settings_from_config has all three; here each one missing leaves server-authenticated or no TLS."""
    from edge.daemon.mqtt import MqttSettings

    file_key = '[paths]\ndevice_key = "/var/lib/k.pem"\ndevice_cert = "/etc/c.crt"\n'
    for mqtt in ("client_certificate = false", "tls = false"):
        settings = MqttSettings.from_config(load_config(_write(tmp_path, MINIMAL + file_key + f"[mqtt]\n{mqtt}\n")))
        assert (settings.cert_file, settings.key_file) == (None, None), mqtt
    no_cert = MqttSettings.from_config(load_config(_write(tmp_path, MINIMAL + '[paths]\ndevice_key = "/k.pem"\n')))
    assert (no_cert.tls, no_cert.cert_file, no_cert.key_file) == (True, None, None)


def test_online_check_is_a_default_only_with_results_encrypted_to_the_ward(tmp_path: Path) -> None:
    """The profile that sends the chip's own files (the face among them) is refused at load without a JWE key."""
    key = tmp_path / "ward-encryption.pub"
    text = f'procedure_profile = "online_check"\n{MINIMAL}[paths]\nward_encryption_key = "{key}"\n'
    assert load_config(_write(tmp_path, text)).procedure_profile is ProcedureProfile.ONLINE_CHECK


def test_a_usb_only_terminal_needs_no_gpio_pins(tmp_path: Path) -> None:
    """``gpio = false``: no pins at all, the states on the reader's own LEDs; a config without the keys keeps the
    three GPIO LEDs and shows them on a reader with LEDs too ("auto")."""
    config = load_config(_write(tmp_path, MINIMAL + '[indicators]\ngpio = false\nreader_leds = "acr122u"\n'))
    assert (config.indicators.gpio, config.indicators.reader_leds) == (False, "acr122u")
    old = load_config(_write(tmp_path, MINIMAL))
    assert (old.indicators.gpio, old.indicators.reader_leds, old.indicators.green) == (True, "auto", 17)
