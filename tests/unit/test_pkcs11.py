"""The device key on a PKCS#11 token: URI parsing, provisioning on the token, ES256 signing, on a real SoftHSM2.

SoftHSM2 reads ``SOFTHSM2_CONF`` once, when python-pkcs11 first initialises the module in this process, so one
token in a temporary directory serves the whole file; each test uses its own key label on it.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import parse_config
from edge.daemon import signing
from edge.daemon.pkcs11_signer import Pkcs11Signer
from edge.errors import ConfigError
from edge.protocol.pkcs11_uri import Pkcs11Uri, parse_pkcs11_uri
from provisioning import device, ward_ca
from provisioning.pki import TerminalIdentity, new_private_key
from provisioning.token import public_keys, token_session

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
    """A key label of the test's own on the shared token."""
    return request.node.name.removeprefix("test_")[:32]


@pytest.fixture
def token_uri(softhsm: Path, label: str) -> str:
    return uri_text(softhsm, label)


def open_signer(text: str) -> signing.Signer:
    """The daemon's path: config value -> paths.device_key -> signer."""
    return signing.device_signer(parse_config({"terminal_id": "t", "ward_code": "w",
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
    assert token_signer.kid == signing.key_id(public)
    token = signing.result_token(token_signer, terminal_id="t", seq=7, document={"verdict": "pass"}, now=1000,
                                 lifetime=600)
    verified = signing.verify_jws(token, {signing.key_id(public): public}, 1000, typ=signing.RESULT_TYP)
    assert verified.claims["seq"] == 7
    assert len(signing.b64url_decode(token.decode().rsplit(".", 1)[1])) == 64  # raw r || s, as ES256 wants


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


def test_provision_install_and_rotate_on_the_token(token_uri: str, tmp_path: Path) -> None:
    state, etc = tmp_path / "state", tmp_path / "etc"
    ward = ward_ca.init_ward_ca(tmp_path / "ward-ca", IDENTITY.ward_code)[0]
    csca = ward_ca.init_ward_ca(tmp_path / "csca", "VN")[0].cert
    files = {"csca": tmp_path / "csca.der", "broker_ca": tmp_path / "broker.crt", "command": tmp_path / "cmd.pub"}
    files["csca"].write_bytes(csca.public_bytes(serialization.Encoding.DER))
    files["broker_ca"].write_bytes(ward.cert.public_bytes(serialization.Encoding.PEM))
    files["command"].write_bytes(new_private_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def sign_and_install() -> device.InstallResult:
        cert = tmp_path / "device.crt"
        csr = x509.load_pem_x509_csr((state / device.CSR).read_bytes())
        cert.write_bytes(ward_ca.sign_csr(ward, csr).public_bytes(serialization.Encoding.PEM))
        return device.install_device(state, etc, cert=cert, broker_ca=files["broker_ca"],
                                     ward_command_key=files["command"], trust=[files["csca"]], mqtt_host="h")

    device.init_device(state, IDENTITY, pkcs11_uri=token_uri)
    assert not sign_and_install().rotated
    config = (etc / device.CONFIG).read_text(encoding="utf-8")
    assert f'device_key = "{token_uri}"' in config
    first = token_public_key(token_uri)

    rotation = device.rotate_device(state)  # no --pkcs11-uri: the state dir remembers the token
    assert isinstance(rotation.key, Pkcs11Uri)
    assert rotation.key.object.endswith(".next")
    assert token_public_key(token_uri) == first  # the old key serves until the new certificate is installed
    assert sign_and_install().rotated
    second = token_public_key(token_uri)
    assert second != first
    assert x509.load_pem_x509_certificate((etc / device.CERT).read_bytes()).public_key() == second
    assert public_keys(parse_pkcs11_uri(token_uri))[1] is None  # the pending pair took the label; the old is gone
    signer = open_signer(token_uri)
    assert signer.kid == signing.key_id(second)
    assert isinstance(signer, Pkcs11Signer)
    signer.close()
