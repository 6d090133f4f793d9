"""Ward CA -> device key + CSR -> signed certificate -> install, in temporary directories, with real keys."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.config import load_config
from edge.errors import ProvisioningError
from provisioning import device, ward_ca
from provisioning.__main__ import main
from provisioning.files import dump_toml, write_atomic
from provisioning.pki import TerminalIdentity, new_private_key

WARD = "26734"
TERMINAL = "hn-bd-26734-01"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """The ward's files a terminal receives besides its certificate: broker CA, command key, one CSCA."""
    files = tmp_path / "from-ward"
    broker, _ = ward_ca.init_ward_ca(tmp_path / "broker-ca", "broker")
    csca, _ = ward_ca.init_ward_ca(tmp_path / "csca", "VN")
    files.mkdir()
    (files / "broker-ca.crt").write_bytes(broker.cert.public_bytes(serialization.Encoding.PEM))
    (files / "csca.der").write_bytes(csca.cert.public_bytes(serialization.Encoding.DER))
    command_key = new_private_key().public_key()
    (files / "command.pub").write_bytes(
        command_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return {
        "ca": tmp_path / "ward-ca",
        "state": tmp_path / "var-lib",
        "etc": tmp_path / "etc",
        "broker_ca": files / "broker-ca.crt",
        "command": files / "command.pub",
        "csca": files / "csca.der",
    }


def cli(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


def provision(site: dict[str, Path], *, extra: tuple[str, ...] = ()) -> Path:
    """Run the whole documented sequence through the CLI; returns the signed certificate path."""
    assert cli("ward-ca", "init", "--dir", site["ca"], "--ward", WARD) == 0
    assert cli("device", "init", "--terminal-id", TERMINAL, "--ward", WARD, "--state-dir", site["state"],
               "--owner", "") == 0
    cert = site["state"].parent / "terminal.crt"
    assert cli("ward-ca", "sign", site["state"] / "device.csr", "--dir", site["ca"], "--days", "30",
               "--out", cert) == 0
    assert cli("device", "install", "--cert", cert, "--broker-ca", site["broker_ca"], "--ward-command-key",
               site["command"], "--trust", site["csca"], "--mqtt-host", "broker.ward.example",
               "--state-dir", site["state"], "--config-dir", site["etc"], "--owner", "", *extra) == 0
    return cert


def test_full_flow_installs_files_with_tight_modes(site: dict[str, Path]) -> None:
    provision(site)
    assert mode(site["ca"] / "ward-ca.key") == 0o600
    assert mode(site["state"]) == 0o700
    assert mode(site["state"] / "device.key") == 0o600
    assert mode(site["etc"]) == 0o750
    for name in ("config.toml", "device.crt", "broker-ca.crt", "ward-command.pub"):
        assert mode(site["etc"] / name) == 0o640, name
    assert mode(site["etc"] / "trust") == 0o750
    assert len(list((site["etc"] / "trust").glob("csca-*.der"))) == 1  # the daemon's trust-store format
    config = tomllib.loads((site["etc"] / "config.toml").read_text())
    assert config["terminal_id"] == TERMINAL
    assert config["ward_code"] == WARD
    assert config["mqtt"] == {"tls": True, "client_certificate": True, "host": "broker.ward.example"}
    assert config["paths"]["device_key"] == str(site["state"] / "device.key")
    assert config["paths"]["trust_store"] == str(site["etc"] / "trust")


def test_a_provisioned_terminal_believes_receipts_under_the_ward_command_key_or_is_set_puback_only(
        site: dict[str, Path]) -> None:
    """Receipts need no step of their own: the ward command key the install puts in place is the key the ward's
    gateway signs them with. A ward whose office sends no receipts says so once (``--delivery puback``); a re-run
    without the flag keeps it."""
    provision(site)
    config = load_config(site["etc"] / "config.toml")
    assert (config.delivery.mode, config.receipt_keys()) == ("receipt", (site["etc"] / "ward-command.pub",))
    cert = site["state"].parent / "terminal.crt"
    install = ("device", "install", "--cert", cert, "--broker-ca", site["broker_ca"], "--ward-command-key",
               site["command"], "--state-dir", site["state"], "--config-dir", site["etc"], "--owner", "")
    assert cli(*install, "--delivery", "puback") == 0
    assert load_config(site["etc"] / "config.toml").delivery.mode == "puback"
    assert cli(*install) == 0
    assert load_config(site["etc"] / "config.toml").delivery.mode == "puback"


def test_issued_certificate_names_terminal_and_ward_for_client_auth(site: dict[str, Path]) -> None:
    cert = x509.load_pem_x509_certificate(provision(site).read_bytes())
    ca = ward_ca.load_ward_ca(site["ca"])
    cert.verify_directly_issued_by(ca.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == TERMINAL
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == WARD
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=30, minutes=10)


def test_config_is_accepted_by_the_daemon(site: dict[str, Path]) -> None:
    config_module = pytest.importorskip("edge.config", reason="edge.config not importable yet")
    provision(site)
    config = config_module.load_config(site["etc"] / "config.toml")
    assert config.terminal_id == TERMINAL
    assert config.paths.device_key == site["state"] / "device.key"
    assert config.paths.device_cert == site["etc"] / "device.crt"
    assert config.mqtt.client_certificate  # a key file: mutual TLS
    assert config.tls_client_identity() == (site["etc"] / "device.crt", site["state"] / "device.key")


def test_rerunning_keeps_keys_and_operator_settings(site: dict[str, Path]) -> None:
    provision(site)
    ca_key = (site["ca"] / "ward-ca.key").read_bytes()
    device_key = (site["state"] / "device.key").read_bytes()
    config_path = site["etc"] / "config.toml"
    config_path.write_text(config_path.read_text() + "\n[indicators]\ngreen = 5\namber = 6\nred = 13\n")
    provision(site)
    assert (site["ca"] / "ward-ca.key").read_bytes() == ca_key
    assert (site["state"] / "device.key").read_bytes() == device_key
    config = tomllib.loads(config_path.read_text())
    assert config["indicators"] == {"green": 5, "amber": 6, "red": 13}
    assert config["mqtt"]["host"] == "broker.ward.example"


def test_rotation_keeps_old_key_until_new_certificate_arrives(site: dict[str, Path]) -> None:
    old_cert = provision(site)
    old_key = (site["state"] / "device.key").read_bytes()
    assert cli("device", "rotate", "--state-dir", site["state"], "--owner", "") == 0
    pending = site["state"] / "device.key.next"
    assert mode(pending) == 0o600
    assert (site["state"] / "device.key").read_bytes() == old_key
    install = ("device", "install", "--broker-ca", site["broker_ca"], "--ward-command-key", site["command"],
               "--state-dir", site["state"], "--config-dir", site["etc"], "--owner", "")
    # The old certificate still installs (a re-run during rotation changes nothing).
    assert cli(*install, "--cert", old_cert) == 0
    assert pending.exists()
    new_cert = site["state"].parent / "terminal-2.crt"
    assert cli("ward-ca", "sign", site["state"] / "device.csr", "--dir", site["ca"], "--out", new_cert) == 0
    assert cli(*install, "--cert", new_cert) == 0
    assert not pending.exists()
    assert (site["state"] / "device.key").read_bytes() != old_key
    assert mode(site["state"] / "device.key") == 0o600
    # The old certificate no longer matches any key on the device.
    with pytest.raises(ProvisioningError, match="not for this terminal's key"):
        device.install_device(site["state"], site["etc"], cert=old_cert, broker_ca=site["broker_ca"],
                              ward_command_key=site["command"], trust=[])


def test_ca_refuses_a_terminal_of_another_ward(tmp_path: Path) -> None:
    ca, _ = ward_ca.init_ward_ca(tmp_path / "ca", WARD)
    result = device.init_device(tmp_path / "state", TerminalIdentity("t1", "99999"))
    with pytest.raises(ProvisioningError, match="ward 99999"):
        ward_ca.sign_csr(ca, ward_ca.load_csr(result.csr))


def test_install_refuses_expired_certificate(site: dict[str, Path]) -> None:
    cert = provision(site)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    with pytest.raises(ProvisioningError, match="not now"):
        device.install_device(site["state"], site["etc"], cert=cert, broker_ca=site["broker_ca"],
                              ward_command_key=site["command"], trust=[], now=later)


def test_loose_key_mode_is_refused(site: dict[str, Path]) -> None:
    cert = provision(site)
    os.chmod(site["state"] / "device.key", 0o644)
    with pytest.raises(ProvisioningError, match="mode 0644"):
        device.install_device(site["state"], site["etc"], cert=cert, broker_ca=site["broker_ca"],
                              ward_command_key=site["command"], trust=[])


def test_half_a_ca_is_never_replaced(tmp_path: Path) -> None:
    ward_ca.init_ward_ca(tmp_path, WARD)
    (tmp_path / "ward-ca.crt").unlink()
    with pytest.raises(ProvisioningError, match="half-way"):
        ward_ca.init_ward_ca(tmp_path, WARD)


def test_bad_pkcs11_uri_is_refused_before_anything_is_written(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert cli("device", "init", "--terminal-id", TERMINAL, "--ward", WARD, "--state-dir", state,
               "--owner", "", "--pkcs11-uri", "pkcs11:token=edge") == 1
    assert "pkcs11 URI needs object=" in capsys.readouterr().err
    assert not state.exists()


def test_identity_rejects_topic_breaking_names() -> None:
    with pytest.raises(ProvisioningError, match="terminal id"):
        TerminalIdentity("a/b", WARD)


def test_write_atomic_sets_mode_despite_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        write_atomic(tmp_path / "f", b"x", 0o640)
    finally:
        os.umask(previous)
    assert mode(tmp_path / "f") == 0o640


def test_dump_toml_round_trips() -> None:
    table = {"a": "q\"uote\\", "n": 3, "t": True, "sub": {"x": [1, 2], "deeper": {"y": 1.5}}}
    assert tomllib.loads(dump_toml(table)) == table


INSTALL_SH = Path(__file__).resolve().parents[2] / "provisioning" / "install.sh"
POLKIT_RULE = INSTALL_SH.parent / "polkit" / "50-cccd-edge-pcscd.rules"


def test_install_script_parses() -> None:
    subprocess.run(["bash", "-n", str(INSTALL_SH)], check=True)


def test_install_script_lints_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    run = subprocess.run([shellcheck, str(INSTALL_SH)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout


def test_install_script_dry_run_plans_every_step_and_changes_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    run = subprocess.run(["bash", str(INSTALL_SH), "--dry-run", "--prefix", str(prefix)], capture_output=True,
                         text=True, check=False, timeout=60)
    assert run.returncode == 0, run.stderr
    plan = run.stdout
    for expected in (
        "venv --system-site-packages",
        "sysusers.d/cccd-edge.conf",
        "install -d -m 0700 -o cccd-edge -g cccd-edge /var/lib/cccd-edge",
        "install -d -m 0750 -o root -g cccd-edge /etc/cccd-edge",
        "/etc/systemd/system/cccd-edge.service",
        "dry run: nothing changed",
    ):
        assert expected in plan, f"{expected!r} missing from the plan:\n{plan}"
    assert not prefix.exists()


def test_install_checks_everything_before_writing(site: dict[str, Path]) -> None:
    cert = provision(site)
    (site["etc"] / "config.toml").unlink()
    # A terminal certificate is no CSCA: the trust store refuses it, and nothing is written.
    with pytest.raises(ProvisioningError, match="trust anchor"):
        device.install_device(site["state"], site["etc"], cert=cert, broker_ca=site["broker_ca"],
                              ward_command_key=site["command"], trust=[cert], mqtt_host="h")
    assert not (site["etc"] / "config.toml").exists()


def test_command_key_is_created_once_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "ward-ca"
    assert cli("ward-ca", "command-key", "--dir", directory) == 0
    key, pub = directory / ward_ca.COMMAND_KEY, directory / ward_ca.COMMAND_PUB
    assert mode(key) == 0o600
    assert "created ward command key" in capsys.readouterr().out
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pub.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"  # what `device install --ward-command-key` accepts
    assert public.public_numbers() == private.public_key().public_numbers()
    before = (key.read_bytes(), pub.read_bytes())

    assert cli("ward-ca", "command-key", "--dir", directory) == 0
    assert "kept existing ward command key" in capsys.readouterr().out
    assert (key.read_bytes(), pub.read_bytes()) == before
    assert mode(key) == 0o600


def test_command_key_rewrites_a_damaged_public_half_from_the_key(tmp_path: Path) -> None:
    pub, created = ward_ca.init_command_key(tmp_path)
    assert created
    good = pub.read_bytes()
    pub.write_bytes(b"not a key\n")
    assert ward_ca.init_command_key(tmp_path) == (pub, False)
    assert pub.read_bytes() == good


def test_command_key_refuses_a_public_half_without_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ward_ca.init_command_key(tmp_path)
    (tmp_path / ward_ca.COMMAND_KEY).unlink()
    trusted = (tmp_path / ward_ca.COMMAND_PUB).read_bytes()
    assert cli("ward-ca", "command-key", "--dir", tmp_path) == 1
    err = capsys.readouterr().err
    assert f"{ward_ca.COMMAND_PUB} exists without {ward_ca.COMMAND_KEY}" in err
    assert "refusing to replace" in err
    assert not (tmp_path / ward_ca.COMMAND_KEY).exists()
    assert (tmp_path / ward_ca.COMMAND_PUB).read_bytes() == trusted


def test_install_script_dry_run_builds_the_venv_on_the_system_python(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    run = subprocess.run(["bash", str(INSTALL_SH), "--dry-run", "--no-apt", "--prefix", str(prefix)],
                         capture_output=True, text=True, check=False, timeout=60)
    assert run.returncode == 0, run.stderr
    # The system interpreter apt installs picamera2 for, never whatever `python3` comes first on root's PATH.
    assert f"+ /usr/bin/python3 -m venv --system-site-packages {prefix}\n" in run.stdout, run.stdout
    assert not prefix.exists()


def test_install_script_stamp_covers_the_extras(tmp_path: Path) -> None:
    """`--pkcs11` after a plain install must still run pip: the stamp of the installed sources names the extras."""
    prefix = tmp_path / "opt"

    def plan(*options: str) -> str:
        run = subprocess.run(["bash", str(INSTALL_SH), "--dry-run", "--no-apt", "--prefix", str(prefix), *options],
                             capture_output=True, text=True, check=False, timeout=60)
        assert run.returncode == 0, run.stderr
        return run.stdout

    stamp = re.search(r"touch '(.+?)'", plan())
    assert stamp is not None
    prefix.mkdir()
    Path(stamp.group(1)).touch()  # as a real plain install leaves it
    assert "package in " + str(prefix) + " is up to date" in plan()
    with_token = plan("--pkcs11")
    assert f"pip install --quiet --disable-pip-version-check {INSTALL_SH.parents[1]}[pi,pkcs11]" in with_token


def test_install_script_dry_run_installs_the_polkit_rule_where_polkit_is(tmp_path: Path) -> None:
    run = subprocess.run(["bash", str(INSTALL_SH), "--dry-run", "--no-apt", "--prefix", str(tmp_path / "opt")],
                         capture_output=True, text=True, check=False, timeout=60)
    assert run.returncode == 0, run.stderr
    # install.sh looks at this machine's polkit directories, so the expected plan depends on them too.
    if Path("/usr/share/polkit-1").is_dir() or Path("/etc/polkit-1").is_dir():
        expected = f"+ install -D -m 0644 {POLKIT_RULE} /etc/polkit-1/rules.d/50-cccd-edge-pcscd.rules\n"
    else:
        expected = "install: polkit not installed: pcscd does not consult it, no rule needed\n"
    assert expected in run.stdout, run.stdout


def test_polkit_rule_is_javascript_that_adds_one_rule() -> None:
    text = POLKIT_RULE.read_text(encoding="utf-8")
    assert text.count("polkit.addRule(function (action, subject) {") == 1
    assert 'subject.user == "cccd-edge"' in text
    for action in ("org.debian.pcsc-lite.access_pcsc", "org.debian.pcsc-lite.access_card"):
        assert f'action.id == "{action}"' in text
    assert "return polkit.Result.YES;" in text
    node = shutil.which("node")
    if node is None:  # the structural checks above stand in for a parser
        assert text.count("{") == text.count("}")
        assert text.count("(") == text.count(")")
        return
    # polkitd runs rules as JavaScript (duktape): node's syntax check catches what a typo would break. On stdin,
    # because node refuses to check a file whose extension is not .js.
    run = subprocess.run([node, "--check"], input=text, capture_output=True, text=True, check=False, timeout=60)
    assert run.returncode == 0, run.stderr
