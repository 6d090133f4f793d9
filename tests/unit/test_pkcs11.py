"""The device key on a PKCS#11 token: URI parsing, provisioning on the token, ES256 signing, on a real SoftHSM2.

SoftHSM2 reads ``SOFTHSM2_CONF`` once, when python-pkcs11 first initialises the module in this process, so one
token in a temporary directory serves the whole file; each test uses its own key label on it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import signers
from edge.config import Config, load_config, parse_config
from edge.daemon import doctor
from edge.daemon.health import Liveness
from edge.daemon.mqtt import MqttSettings, ResultPublisher
from edge.daemon.outbox import Outbox
from edge.daemon.result_store import ResultStore, Sealer, Stored
from edge.daemon.terminal import Terminal
from edge.daemon.threads import Shared
from edge.errors import ConfigError, ProvisioningError, SignerError
from edge.protocol import jose
from edge.protocol.pkcs11_uri import Pkcs11Uri, parse_pkcs11_uri
from edge.signers.pkcs11 import Pkcs11Signer, labelled, open_session, relabel
from provisioning import device, ward_ca
from provisioning.__main__ import main as provisioning_cli
from provisioning.pki import TerminalIdentity, new_private_key
from provisioning.token import public_keys, token_session
from tests.support.results import sample_result

if TYPE_CHECKING:
    from pkcs11 import ObjectClass
else:
    ObjectClass = pytest.importorskip("pkcs11").ObjectClass

TOKEN, PIN, SO_PIN = "cccd-edge-test", "246810", "13579111"
IDENTITY = TerminalIdentity("hn-bd-26734-01", "26734")
SOFTHSM_MODULES = (Path("/usr/lib/softhsm/libsofthsm2.so"), Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
                   Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"))


def uri_text(module: Path, label: str, *, pin: str = PIN) -> str:
    return f"pkcs11:token={TOKEN};object={label}?module-path={module}&pin-value={pin}"


# --- the URI, no token needed ------------------------------------------------------------------------------------


def test_uri_with_pin_file_parses() -> None:
    uri = parse_pkcs11_uri("pkcs11:token=Edge%20SE;object=device;type=private"
                           "?module-path=/usr/lib/p11.so&pin-source=file:/etc/cccd-edge/token.pin")
    assert uri == Pkcs11Uri(Path("/usr/lib/p11.so"), "Edge SE", "device", Path("/etc/cccd-edge/token.pin"))
    assert str(uri) == "pkcs11:token=Edge%20SE;object=device"


@pytest.mark.parametrize(("text", "problem"), [
    ("pkcs:token=t;object=o?module-path=/m.so&pin-value=1", "starts with 'pkcs11:'"),
    ("pkcs11:object=o?module-path=/m.so&pin-value=1", "needs token="),
    ("pkcs11:token=t;objet=o?module-path=/m.so&pin-value=1", "'objet' is not supported"),
    ("pkcs11:token=t;object=o;type=cert?module-path=/m.so&pin-value=1", "type must be 'private'"),
    ("pkcs11:token=t;object=o?pin-value=1", "needs module-path="),
    ("pkcs11:token=t;object=o?module-path=m.so&pin-value=1", "module-path must be absolute"),
    ("pkcs11:token=t;object=o?module-path=/m.so", "exactly one of pin-source"),
    ("pkcs11:token=t;object=o?module-path=/m.so&pin-value=1&pin-source=/p", "exactly one of pin-source"),
    ("pkcs11:token=t;token=u;object=o?module-path=/m.so&pin-value=1", "repeats 'token'"),
    ("pkcs11:token=%ff;object=o?module-path=/m.so&pin-value=1", "not UTF-8"),
    ("pkcs11:token;object=o?module-path=/m.so&pin-value=1", "'token' has no value"),
])
def test_uri_errors_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_pkcs11_uri(text)


labels = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=60)
@given(token=labels, label=labels, pin=labels)
def test_written_uri_reads_back(token: str, label: str, pin: str) -> None:
    uri = Pkcs11Uri(Path("/usr/lib/a b;c.so"), token, label, pin_value=pin)
    assert parse_pkcs11_uri(uri.text()) == uri
    assert "pin_value" not in repr(uri)
    assert parse_pkcs11_uri(uri.redacted_text()) == Pkcs11Uri(uri.module_path, token, label, pin_value="***")


def test_config_takes_a_path_or_a_uri_and_names_the_key() -> None:
    def device_key(value: object) -> Path | Pkcs11Uri:
        return parse_config({"terminal_id": "t", "ward_code": "w", "paths": {"device_key": value}}).paths.device_key

    assert device_key("/var/lib/cccd-edge/device.key") == Path("/var/lib/cccd-edge/device.key")
    assert device_key("pkcs11:token=t;object=o?module-path=/m.so&pin-value=1") == Pkcs11Uri(
        Path("/m.so"), "t", "o", pin_value="1")
    with pytest.raises(ConfigError, match=r"paths\.device_key.*needs object="):
        device_key("pkcs11:token=t?module-path=/m.so&pin-value=1")
    # A table must not fill the URI's fields around the parser.
    with pytest.raises(ConfigError, match=r"paths\.device_key"):
        device_key({"module_path": "/m.so", "token": "t", "object": "o"})


# --- on a SoftHSM2 token -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SoftHSM2 token in a temporary directory; yields the module path."""
    pytest.importorskip("pkcs11", reason="python-pkcs11 not installed (pip install 'cccd-edge[pkcs11]')")
    util = shutil.which("softhsm2-util")
    module = next((path for path in SOFTHSM_MODULES if path.exists()), None)
    if util is None or module is None:
        pytest.skip("SoftHSM2 not installed (apt-get install softhsm2)")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run([util, "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
                       check=True, capture_output=True, timeout=60)
        yield module


@pytest.fixture
def label(request: pytest.FixtureRequest) -> str:
    """A key label of the test's own on the shared token (parametrized cases too: a long name ends in its hash)."""
    name = request.node.name.removeprefix("test_")
    return name if len(name) <= 32 else f"{name[:23]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


@pytest.fixture
def token_uri(softhsm: Path, label: str) -> str:
    return uri_text(softhsm, label)


def open_signer(text: str) -> jose.Signer:
    """The daemon's path: config value -> paths.device_key -> signer."""
    return signers.device_signer(parse_config({"terminal_id": "t", "ward_code": "w",
                                               "paths": {"device_key": text}}).paths.device_key)


@pytest.fixture
def token_signer(token_uri: str, tmp_path: Path) -> Iterator[Pkcs11Signer]:
    device.init_device(tmp_path / "state", IDENTITY, pkcs11_uri=token_uri)
    signer = open_signer(token_uri)
    assert isinstance(signer, Pkcs11Signer)
    yield signer
    signer.close()  # login is per process and token: the next test logs in afresh


def token_public_key(token_uri: str) -> ec.EllipticCurvePublicKey:
    return public_keys(parse_pkcs11_uri(token_uri))[0]


def test_init_generates_on_the_token_once(token_uri: str, tmp_path: Path) -> None:
    from pkcs11 import Attribute, ObjectClass

    state = tmp_path / "state"
    first = device.init_device(state, IDENTITY, pkcs11_uri=token_uri)
    public = token_public_key(token_uri)
    second = device.init_device(state, IDENTITY, pkcs11_uri=token_uri)
    assert (first.created, second.created) == (True, False)
    assert token_public_key(token_uri) == public  # kept, not replaced
    assert not (state / device.KEY).exists()  # the private key exists only inside the token
    assert stat.S_IMODE((state / device.KEY_URI).stat().st_mode) == 0o600  # it may hold the PIN
    with token_session(parse_pkcs11_uri(token_uri)) as session:
        uri = parse_pkcs11_uri(token_uri)
        private = [o for o in session.get_objects({Attribute.LABEL: uri.object})
                   if o[Attribute.CLASS] == ObjectClass.PRIVATE_KEY]
        assert len(private) == 1
        assert private[0][Attribute.SENSITIVE]
        assert not private[0][Attribute.EXTRACTABLE]


def test_csr_is_signed_by_the_token_key(token_uri: str, tmp_path: Path) -> None:
    result = device.init_device(tmp_path, IDENTITY, pkcs11_uri=token_uri)
    csr = x509.load_pem_x509_csr(result.csr.read_bytes())
    public = token_public_key(token_uri)
    assert csr.public_key() == public
    public.verify(csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(hashes.SHA256()))  # raises if it does not
    assert TerminalIdentity.from_name(csr.subject, "csr") == IDENTITY
    ward = ward_ca.init_ward_ca(tmp_path / "ward-ca", IDENTITY.ward_code)[0]
    assert ward_ca.sign_csr(ward, csr).public_key() == public  # the ward accepts it like a file key's CSR


def test_jws_signed_on_the_token_verifies(token_signer: Pkcs11Signer) -> None:
    public = token_signer.public_key
    assert token_signer.kid == jose.key_id(public)
    token = jose.result_token(token_signer, terminal_id="t", seq=7, document={"verdict": "pass"}, now=1000,
                              lifetime=600)
    verified = jose.verify_jws(token, {jose.key_id(public): public}, 1000, typ=jose.RESULT_TYP)
    assert verified.claims["seq"] == 7
    assert len(jose.b64url_decode(token.decode().rsplit(".", 1)[1])) == 64  # raw r || s, as ES256 wants


def test_wrong_pin_is_a_clear_config_error(softhsm: Path, token_uri: str, tmp_path: Path) -> None:
    device.init_device(tmp_path, IDENTITY, pkcs11_uri=token_uri)
    with pytest.raises(ConfigError, match=r"paths\.device_key: token 'cccd-edge-test' refused the PIN") as info:
        open_signer(uri_text(softhsm, "any", pin="000000"))
    assert "000000" not in str(info.value)


def test_pin_file_readable_by_others_is_refused(softhsm: Path, tmp_path: Path) -> None:
    pin_file = tmp_path / "token.pin"
    pin_file.write_text(PIN + "\n", encoding="utf-8")
    pin_file.chmod(0o644)
    text = f"pkcs11:token={TOKEN};object=k?module-path={softhsm}&pin-source={pin_file}"
    with pytest.raises(ConfigError, match="accessible by others"):
        open_signer(text)


def test_missing_token_or_key_is_named(softhsm: Path) -> None:
    with pytest.raises(ConfigError, match="no P-256 key pair labelled 'never-made'"):
        open_signer(uri_text(softhsm, "never-made"))
    with pytest.raises(ConfigError, match="no token labelled 'absent'"):
        open_signer(uri_text(softhsm, "k").replace(f"token={TOKEN}", "token=absent"))


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    """The PIN as install wants it: a file of its own (0640 root:cccd-edge on a terminal), never in config.toml."""
    path = tmp_path / "token.pin"
    path.write_text(PIN + "\n", encoding="utf-8")
    path.chmod(0o640)
    return path


@pytest.fixture
def pin_file_uri(softhsm: Path, label: str, pin_file: Path) -> str:
    return f"pkcs11:token={TOKEN};object={label}?module-path={softhsm}&pin-source={pin_file}"


class Ward:
    """The ward's side of provisioning, and the terminal's state and config directories."""

    def __init__(self, root: Path) -> None:
        self.state, self.etc = root / "state", root / "etc"
        self.ca = ward_ca.init_ward_ca(root / "ward-ca", IDENTITY.ward_code)[0]
        csca = ward_ca.init_ward_ca(root / "csca", "VN")[0].cert
        self.csca, self.broker_ca, self.command = root / "csca.der", root / "broker.crt", root / "cmd.pub"
        self.csca.write_bytes(csca.public_bytes(serialization.Encoding.DER))
        self.broker_ca.write_bytes(self.ca.cert.public_bytes(serialization.Encoding.PEM))
        self.command.write_bytes(new_private_key().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self._signed = 0

    def sign(self) -> Path:
        """A certificate for the terminal's current CSR."""
        self._signed += 1
        cert = self.state.parent / f"device-{self._signed}.crt"
        csr = x509.load_pem_x509_csr((self.state / device.CSR).read_bytes())
        cert.write_bytes(ward_ca.sign_csr(self.ca, csr).public_bytes(serialization.Encoding.PEM))
        return cert

    def install(self, cert: Path) -> device.InstallResult:
        return device.install_device(self.state, self.etc, cert=cert, broker_ca=self.broker_ca,
                                     ward_command_key=self.command, trust=[self.csca], mqtt_host="h")

    def installed_key(self) -> ec.EllipticCurvePublicKey:
        public = x509.load_pem_x509_certificate((self.etc / device.CERT).read_bytes()).public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        return public


@pytest.fixture
def ward(tmp_path: Path) -> Ward:
    return Ward(tmp_path)


def labels_on_token(uri_text: str) -> set[str]:
    """The labels of this test's objects on the token, straight from a session (no recovery on the way)."""
    from pkcs11 import Attribute

    uri = parse_pkcs11_uri(uri_text)
    session = open_session(uri, config_key="test")
    try:
        return {str(obj[Attribute.LABEL]) for obj in session.get_objects()
                if str(obj[Attribute.LABEL]).startswith(uri.object)}
    finally:
        session.close()


def relabel_by_hand(uri_text: str, old: str, new: str) -> None:
    """One relabel of the rotation's label swap (both halves), as if the power went off right after it."""
    session = open_session(parse_pkcs11_uri(uri_text), config_key="test", rw=True)
    try:
        relabel(labelled(session, old), new)
    finally:
        session.close()


def swap_steps(active: str, first: ObjectClass) -> list[tuple[str, str | None, ObjectClass]]:
    """The rotation's swap one object at a time: (label now, label after or None to destroy, which half)."""
    second = ObjectClass.PRIVATE_KEY if first == ObjectClass.PUBLIC_KEY else ObjectClass.PUBLIC_KEY
    halves = (first, second)
    return ([(active, active + ".old", half) for half in halves] + [(active + ".next", active, half) for half in halves]
            + [(active + ".old", None, half) for half in halves])


def by_hand(uri_text: str, steps: list[tuple[str, str | None, ObjectClass]]) -> None:
    """Single-object steps done straight on the token (no recovery on the way), as if the power then went off."""
    from pkcs11 import Attribute

    session = open_session(parse_pkcs11_uri(uri_text), config_key="test", rw=True)
    try:
        for label, new_label, half in steps:
            (obj,) = [obj for obj in labelled(session, label) if obj[Attribute.CLASS] == half]
            if new_label is None:
                obj.destroy()
            else:
                relabel([obj], new_label)
    finally:
        session.close()


def objects_on_token(uri_text: str) -> list[tuple[str, ObjectClass]]:
    from pkcs11 import Attribute

    uri = parse_pkcs11_uri(uri_text)
    session = open_session(uri, config_key="test")
    try:
        return sorted((str(obj[Attribute.LABEL]), obj[Attribute.CLASS]) for obj in session.get_objects()
                      if str(obj[Attribute.LABEL]).startswith(uri.object))
    finally:
        session.close()


def signs_with(uri_text: str, expected: ec.EllipticCurvePublicKey) -> None:
    """The daemon's signer (which recovers first) opens on the expected key and its signatures verify with it."""
    signer = open_signer(uri_text)
    try:
        assert signer.kid == jose.key_id(expected)
        token = jose.sign_jws(signer, {"n": 1}, typ=jose.RESULT_TYP)
        jose.verify_es256(token, expected)  # raises unless the token signed with that key
    finally:
        signer.close()


def rotated_on_token(uri_text: str, ward: Ward) -> tuple[ec.EllipticCurvePublicKey, ec.EllipticCurvePublicKey]:
    """A provisioned terminal with a pending key: (active public key, pending public key)."""
    device.init_device(ward.state, IDENTITY, pkcs11_uri=uri_text)
    ward.install(ward.sign())
    device.rotate_device(ward.state)
    active, waiting = public_keys(parse_pkcs11_uri(uri_text))
    assert waiting is not None
    return active, waiting


def test_provision_install_and_rotate_on_the_token(pin_file_uri: str, ward: Ward) -> None:
    device.init_device(ward.state, IDENTITY, pkcs11_uri=pin_file_uri)
    result = ward.install(ward.sign())
    assert not result.rotated
    assert not result.client_tls
    config = load_config(ward.etc / device.CONFIG)  # what the daemon does: a token key must not be refused
    assert config.paths.device_key == parse_pkcs11_uri(pin_file_uri)
    assert config.paths.device_cert == ward.etc / device.CERT  # the daemon checks the token key against it
    assert not config.mqtt.client_certificate  # server-authenticated TLS only: ssl cannot use the token key
    assert config.mqtt.tls
    assert config.tls_client_identity() is None
    first = token_public_key(pin_file_uri)
    assert ward.installed_key() == first  # installed all the same: the office verifies results with it

    rotation = device.rotate_device(ward.state)  # no --pkcs11-uri: the state dir remembers the token
    assert isinstance(rotation.key, Pkcs11Uri)
    assert rotation.key.object.endswith(".next")
    assert token_public_key(pin_file_uri) == first  # the old key serves until the new certificate is installed
    assert ward.install(ward.sign()).rotated
    second = token_public_key(pin_file_uri)
    assert second != first
    assert ward.installed_key() == second
    assert labels_on_token(pin_file_uri) == {parse_pkcs11_uri(pin_file_uri).object}  # no .next, no .old
    signer = open_signer(pin_file_uri)
    assert signer.kid == jose.key_id(second)
    assert isinstance(signer, Pkcs11Signer)
    signer.close()


def test_reinstall_moving_the_key_between_file_and_token_keeps_the_config_loadable(
        pin_file_uri: str, ward: Ward, capsys: pytest.CaptureFixture[str]) -> None:
    """A file-key install left mutual TLS on: moving the key to a token turns it off (or the daemon refuses the
    config), and moving it back to a file turns it on again; paths.device_cert stays set throughout."""
    def install() -> Config:
        assert provisioning_cli(["device", "install", "--cert", str(ward.sign()), "--broker-ca", str(ward.broker_ca),
                                 "--ward-command-key", str(ward.command), "--trust", str(ward.csca), "--mqtt-host",
                                 "h", "--state-dir", str(ward.state), "--config-dir", str(ward.etc),
                                 "--owner", ""]) == 0
        return load_config(ward.etc / device.CONFIG)

    device.init_device(ward.state, IDENTITY)
    assert install().tls_client_identity() == (ward.etc / device.CERT, ward.state / device.KEY)
    (ward.state / device.KEY).unlink()
    device.init_device(ward.state, IDENTITY, pkcs11_uri=pin_file_uri)
    on_token = install()
    assert "server-authenticated TLS only" in capsys.readouterr().out
    assert (on_token.paths.device_cert, on_token.mqtt.client_certificate) == (ward.etc / device.CERT, False)
    (ward.state / device.KEY_URI).unlink()
    device.init_device(ward.state, IDENTITY)
    assert install().tls_client_identity() == (ward.etc / device.CERT, ward.state / device.KEY)


def test_install_refuses_a_pin_in_the_uri(token_uri: str, ward: Ward) -> None:
    device.init_device(ward.state, IDENTITY, pkcs11_uri=token_uri)
    with pytest.raises(ProvisioningError, match="pin-value") as info:
        ward.install(ward.sign())
    assert "pin-source=/etc/cccd-edge/token.pin" in info.value.hint
    assert "0640 root:cccd-edge" in info.value.hint
    assert PIN not in str(info.value)
    assert not ward.etc.exists()  # refused before anything was written


def test_config_dumps_never_show_the_pin(softhsm: Path) -> None:
    config = parse_config({"terminal_id": "t", "ward_code": "w", "paths": {"device_key": uri_text(softhsm, "k")}})
    for shown in (repr(config), str(config), config.model_dump_json(), str(config.model_dump()),
                  str(config.model_dump(mode="json"))):
        assert PIN not in shown
    assert config.model_dump()["paths"]["device_key"] == uri_text(softhsm, "k", pin="***")


def test_signer_opens_again_after_close(token_uri: str, tmp_path: Path) -> None:
    """Login is per process and token: only a closed signer lets the next one log in (a restarted Terminal)."""
    device.init_device(tmp_path, IDENTITY, pkcs11_uri=token_uri)
    first = open_signer(token_uri)
    first.close()
    second = open_signer(token_uri)
    assert second.kid == first.kid
    second.close()


def test_a_token_failing_mid_run_is_a_signer_error(token_uri: str, tmp_path: Path) -> None:
    """Opened as configured, then the token fails (here its session ends under the signer, as when it is pulled
    out): the office must read "SignerError", not blame the configuration."""
    device.init_device(tmp_path, IDENTITY, pkcs11_uri=token_uri)
    signer = open_signer(token_uri)
    assert len(signer.sign(b"before")) == 64
    signer.close()
    with pytest.raises(SignerError, match=f"token '{TOKEN}' failed: PKCS#11") as info:
        signer.sign(b"after")
    assert not isinstance(info.value, ConfigError)


def test_a_token_failing_mid_tap_is_reported_to_the_office_as_a_signer_error(token_uri: str, tmp_path: Path) -> None:
    """The daemon's stage 5 (seal and store) with the token gone: nothing is stored, no seq is spent, and the
    office's event names the signer, not the configuration (it said "ConfigError")."""
    device.init_device(tmp_path, IDENTITY, pkcs11_uri=token_uri)
    signer = open_signer(token_uri)
    signer.close()  # as when the token is pulled out after the start
    config = parse_config({"terminal_id": "T-01", "ward_code": "26734", "mqtt": {"tls": False}})
    shared, events = Shared(lambda: 0.0, Liveness()), []
    shared.events_to(events.append)
    outbox = Outbox(tmp_path / "outbox.db", max_count=10, max_bytes=1 << 20)
    try:
        store = ResultStore(shared, Sealer(signer, "T-01"), outbox,
                            ResultPublisher(MqttSettings.from_config(config), outbox))  # never started
        assert store.keep(sample_result()) == Stored(None)
        assert outbox.stats().count == 0
        assert outbox.enqueue(b"next")[1] == 1  # the failed seal spent no seq
    finally:
        outbox.close()
    assert events == [{"event": "result_not_stored", "reason": "SignerError", "request_id": None}]
    assert shared.stats()["results_refused"] == 1


def test_rotation_interrupted_after_the_first_relabel_is_finished_by_install(pin_file_uri: str, ward: Ward) -> None:
    device.init_device(ward.state, IDENTITY, pkcs11_uri=pin_file_uri)
    ward.install(ward.sign())
    first = token_public_key(pin_file_uri)
    device.rotate_device(ward.state)
    new_cert = ward.sign()
    active = parse_pkcs11_uri(pin_file_uri).object
    relabel_by_hand(pin_file_uri, active, active + ".old")  # the power went off here
    assert labels_on_token(pin_file_uri) == {active + ".old", active + ".next"}
    assert ward.installed_key() == first  # device.crt is written only once the new key is active
    ward.install(new_cert)  # the operator runs it again
    assert labels_on_token(pin_file_uri) == {active}
    second = token_public_key(pin_file_uri)
    assert second != first
    assert ward.installed_key() == second
    signer = open_signer(pin_file_uri)
    assert signer.kid == jose.key_id(second)
    signer.close()


def test_rotation_interrupted_before_the_old_key_is_destroyed_is_finished_by_the_daemon(
        pin_file_uri: str, ward: Ward) -> None:
    device.init_device(ward.state, IDENTITY, pkcs11_uri=pin_file_uri)
    ward.install(ward.sign())
    device.rotate_device(ward.state)
    active = parse_pkcs11_uri(pin_file_uri).object
    relabel_by_hand(pin_file_uri, active, active + ".old")
    relabel_by_hand(pin_file_uri, active + ".next", active)  # the power went off here
    signer = open_signer(pin_file_uri)  # the daemon's read-only open finishes it in a read/write session
    signer.close()
    assert labels_on_token(pin_file_uri) == {active}
    assert signer.kid == jose.key_id(token_public_key(pin_file_uri))


def test_daemon_refuses_a_token_key_the_installed_certificate_is_not_for(pin_file_uri: str, ward: Ward) -> None:
    device.init_device(ward.state, IDENTITY, pkcs11_uri=pin_file_uri)
    ward.install(ward.sign())
    device.rotate_device(ward.state)
    new_cert = ward.sign()
    active = parse_pkcs11_uri(pin_file_uri).object
    relabel_by_hand(pin_file_uri, active, active + ".old")  # install stopped: the daemon will finish the swap...
    config = load_config(ward.etc / device.CONFIG)
    # ...and then its new key does not match the old device.crt: refused, not signing results the office rejects.
    with pytest.raises(ConfigError, match=r"paths\.device_key: .*device\.crt is not for the key"):
        Terminal(config).start()
    failed = doctor.check_certificate(config.paths.device_cert,
                                      config.paths.device_key, dt.datetime.now(dt.UTC))
    assert not failed.ok
    assert "device install" in failed.hint
    assert "is not for the key" in failed.detail
    ward.install(new_cert)  # Terminal.stop() closed the token session: provisioning can log in again
    passed = doctor.check_certificate(config.paths.device_cert,
                                      config.paths.device_key, dt.datetime.now(dt.UTC))
    assert passed.ok
    assert passed.detail.endswith("matches the key on the token")
    signer = open_signer(pin_file_uri)
    signers.check_certified_key(signer, ward.etc / device.CERT)
    signer.close()


@pytest.mark.parametrize("first", ["PUBLIC_KEY", "PRIVATE_KEY"])
@pytest.mark.parametrize("done", range(1, 6))
def test_rotation_cut_after_any_single_object_step_ends_with_the_new_pair(
        pin_file_uri: str, ward: Ward, done: int, first: str) -> None:
    """Each relabel or destroy touches one object; wherever the power goes, recovery leaves one whole pair."""
    _old, new = rotated_on_token(pin_file_uri, ward)
    active = parse_pkcs11_uri(pin_file_uri).object
    by_hand(pin_file_uri, swap_steps(active, ObjectClass[first])[:done])
    signs_with(pin_file_uri, new)
    assert objects_on_token(pin_file_uri) == [(active, ObjectClass.PUBLIC_KEY), (active, ObjectClass.PRIVATE_KEY)]


@pytest.mark.parametrize("first", ["PUBLIC_KEY", "PRIVATE_KEY"])
def test_recovery_cut_part_way_is_recovered_again(pin_file_uri: str, ward: Ward, first: str) -> None:
    """Recovery is steps of the same kind: the new pair under the label with one old half left under .old, or with
    the new pair's halves split between the label and .next, is a state the next recovery finishes."""
    _old, new = rotated_on_token(pin_file_uri, ward)
    active = parse_pkcs11_uri(pin_file_uri).object
    steps = swap_steps(active, ObjectClass[first])
    by_hand(pin_file_uri, steps[:1] + steps[2:3])  # one old half moved, one new half moved: both labels mixed
    signs_with(pin_file_uri, new)
    assert labels_on_token(pin_file_uri) == {active}


def test_swap_without_a_whole_pending_pair_keeps_the_old_key(pin_file_uri: str, ward: Ward) -> None:
    old, _new = rotated_on_token(pin_file_uri, ward)
    active = parse_pkcs11_uri(pin_file_uri).object
    by_hand(pin_file_uri, [(active + ".next", None, ObjectClass.PRIVATE_KEY),
                           (active, active + ".old", ObjectClass.PRIVATE_KEY)])
    signs_with(pin_file_uri, old)
    assert objects_on_token(pin_file_uri) == [(active, ObjectClass.PUBLIC_KEY), (active, ObjectClass.PRIVATE_KEY),
                                              (active + ".next", ObjectClass.PUBLIC_KEY)]


def test_pairs_generated_without_ids_get_them_before_the_swap(pin_file_uri: str, ward: Ward) -> None:
    """Keys made before pairs had a CKA_ID all share the empty one: promotion gives each pair its own first."""
    from pkcs11 import Attribute

    _old, new = rotated_on_token(pin_file_uri, ward)
    new_cert = ward.sign()
    session = open_session(parse_pkcs11_uri(pin_file_uri), config_key="test", rw=True)
    try:
        for obj in session.get_objects():
            if str(obj[Attribute.LABEL]).startswith(parse_pkcs11_uri(pin_file_uri).object):
                obj[Attribute.ID] = b""
    finally:
        session.close()
    assert ward.install(new_cert).rotated
    signs_with(pin_file_uri, new)


def test_doctor_reports_a_stopped_rotation_and_changes_nothing(pin_file_uri: str, ward: Ward) -> None:
    rotated_on_token(pin_file_uri, ward)
    active = parse_pkcs11_uri(pin_file_uri).object
    by_hand(pin_file_uri, swap_steps(active, ObjectClass.PRIVATE_KEY)[:3])
    before = objects_on_token(pin_file_uri)
    config = load_config(ward.etc / device.CONFIG)
    failed = doctor.check_certificate(config.paths.device_cert,
                                      config.paths.device_key, dt.datetime.now(dt.UTC))
    assert not failed.ok
    assert "rotation stopped half-way" in failed.detail
    assert "python -m provisioning device install" in failed.hint
    assert objects_on_token(pin_file_uri) == before  # nothing finished, nothing destroyed


def test_doctor_does_not_try_a_pin_after_a_wrong_one(softhsm: Path, pin_file_uri: str, ward: Ward) -> None:
    device.init_device(ward.state, IDENTITY, pkcs11_uri=pin_file_uri)
    ward.install(ward.sign())
    config = load_config(ward.etc / device.CONFIG)
    with pytest.raises(ConfigError, match="refused the PIN"):
        open_signer(uri_text(softhsm, "any", pin="000000"))
    failed = doctor.check_certificate(config.paths.device_cert,
                                      config.paths.device_key, dt.datetime.now(dt.UTC))
    assert not failed.ok
    assert "counted a wrong PIN" in failed.detail
    open_signer(pin_file_uri).close()  # the daemon's good login resets the count
    passed = doctor.check_certificate(config.paths.device_cert,
                                      config.paths.device_key, dt.datetime.now(dt.UTC))
    assert passed.ok, passed.detail
