"""`cccd-edge doctor` checks on temporary terminals: real keys, real TLS handshakes, real SQLite files."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from edge.daemon import doctor
from edge.daemon.doctor import DoctorResult, ReaderLister
from edge.drivers.base import CardPresence, ReaderState
from edge.errors import NoReaderError
from provisioning import device, ward_ca
from provisioning.pki import TerminalIdentity, new_private_key
from tests.fixtures.mqtt import BrokerPki, MosquittoBroker, free_port, make_pki

NOW = dt.datetime.now(dt.UTC)
StartServer = Callable[[Path], int]


class ListedReaders:
    """A reader driver that reports fixed states: what pcscd would say, without pcscd."""

    def __init__(self, states: Sequence[ReaderState] | Exception) -> None:
        self.states = states
        self.closed = False

    def readers(self) -> Sequence[ReaderState]:
        if isinstance(self.states, Exception):
            raise self.states
        return self.states

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def terminal(tmp_path: Path) -> tuple[Path, Path]:
    """A provisioned terminal's key and certificate (through the real provisioning code)."""
    ca, _ = ward_ca.init_ward_ca(tmp_path / "ca", "26734")
    init = device.init_device(tmp_path / "state", TerminalIdentity("t-01", "26734"))
    cert = ward_ca.sign_csr(ca, ward_ca.load_csr(init.csr), days=90)
    cert_path = tmp_path / "device.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return init.key, cert_path


def by_name(results: Sequence[DoctorResult]) -> dict[str, DoctorResult]:
    return {r.name: r for r in results}


def test_clock_before_2025_fails() -> None:
    assert not doctor.check_clock(dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).ok
    assert doctor.check_clock(NOW).ok


def test_private_file_must_be_0600(tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert not doctor.check_private_file("device key", key).ok
    key.write_bytes(b"x")
    key.chmod(0o640)
    result = doctor.check_private_file("device key", key)
    assert not result.ok
    assert "0640" in result.detail
    assert "chmod 600" in result.hint
    key.chmod(0o600)
    assert doctor.check_private_file("device key", key).ok


def test_certificate_matches_key_and_dates(terminal: tuple[Path, Path], tmp_path: Path) -> None:
    key, cert = terminal
    assert doctor.check_certificate(cert, key, NOW).ok
    assert "expires" in doctor.check_certificate(cert, key, NOW + dt.timedelta(days=70)).detail
    assert "expired" in doctor.check_certificate(cert, key, NOW + dt.timedelta(days=91)).detail
    other = tmp_path / "other.key"
    other.write_bytes(new_private_key().private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    mismatch = doctor.check_certificate(cert, other, NOW)
    assert not mismatch.ok
    assert "not for the key" in mismatch.detail
    assert doctor.check_certificate(None, key, NOW).detail.startswith("skipped")


@pytest.fixture
def pki(tmp_path: Path) -> BrokerPki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_server(pki: BrokerPki) -> Iterator[Callable[[Path], int]]:
    """Start TLS listeners that, like the ward broker, require a client certificate from ``client_ca``."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(client_ca: Path) -> int:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        listener = socket.create_server(("127.0.0.1", 0))

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return  # listener closed: the test is over
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)  # wait for the client to hang up, as a broker waits for CONNECT
                except (OSError, ssl.SSLError):
                    conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        listeners.append(listener)
        threads.append(thread)
        port: int = listener.getsockname()[1]
        return port

    yield start
    for listener in listeners:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
    for thread in threads:
        thread.join(timeout=5)


def test_broker_tls_handshake_with_client_certificate(tls_server: StartServer, pki: BrokerPki) -> None:
    port = tls_server(pki.ca_cert)
    result = doctor.check_broker("127.0.0.1", port, tls=True, ca=pki.ca_cert, cert=pki.client_cert,
                                 key=pki.client_key)
    assert result.ok, result
    assert "TLS" in result.detail


def test_broker_with_wrong_ca_is_refused(tls_server: StartServer, pki: BrokerPki) -> None:
    port = tls_server(pki.ca_cert)
    result = doctor.check_broker("127.0.0.1", port, tls=True, ca=pki.other_ca_cert, cert=pki.client_cert,
                                 key=pki.client_key)
    assert not result.ok
    assert "broker_ca" in result.hint


def test_broker_refusing_our_certificate_is_reported(
    tls_server: StartServer, pki: BrokerPki, terminal: tuple[Path, Path]
) -> None:
    port = tls_server(pki.ca_cert)
    key, cert = terminal  # signed by another ward's CA: the broker must refuse it
    result = doctor.check_broker("127.0.0.1", port, tls=True, ca=pki.ca_cert, cert=cert, key=key)
    assert not result.ok
    assert "refused" in result.detail or "handshake failed" in result.detail


def test_unreachable_broker() -> None:
    result = doctor.check_broker("127.0.0.1", free_port(), tls=True, timeout=2)
    assert not result.ok
    assert "cannot reach" in result.detail


def test_databases_integrity(tmp_path: Path) -> None:
    import sqlite3

    assert doctor.check_databases(tmp_path)[0].ok
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    (tmp_path / "replay.sqlite").write_bytes(b"this is not a database" * 100)
    results = by_name(doctor.check_databases(tmp_path))
    assert results["outbox"].ok
    assert not results["replay"].ok


def test_outbox_key_mode_is_checked(tmp_path: Path) -> None:
    (tmp_path / "outbox.sqlite").touch()
    key = tmp_path / "outbox.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    assert not by_name(doctor.check_databases(tmp_path))["outbox key"].ok


def test_trust_store(tmp_path: Path, terminal: tuple[Path, Path]) -> None:
    store = tmp_path / "trust"
    assert not doctor.check_trust_store(store).ok
    store.mkdir()
    assert "no CSCA" in doctor.check_trust_store(store).detail
    (store / "terminal.pem").write_bytes(terminal[1].read_bytes())  # a certificate, but no CSCA
    assert "no CSCA" in doctor.check_trust_store(store).detail
    csca, _ = ward_ca.init_ward_ca(tmp_path / "csca", "VN")
    (store / "csca.pem").write_bytes(csca.cert.public_bytes(serialization.Encoding.PEM))
    assert doctor.check_trust_store(store).ok
    (store / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n")
    assert "broken.pem" in doctor.check_trust_store(store).detail


def test_pcscd_socket(tmp_path: Path) -> None:
    path = tmp_path / "pcscd.comm"
    assert not doctor.check_pcscd(str(path)).ok
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        assert doctor.check_pcscd(str(path)).ok


def test_readers_and_card_atr() -> None:
    atr = bytes.fromhex("3B8880010000000000000000")
    driver = ListedReaders([ReaderState("ACS ACR1252 00 00", CardPresence.PRESENT, atr),
                            ReaderState("ACS ACR1252 00 01", CardPresence.ABSENT)])
    results = doctor.check_readers(lambda: driver)
    assert results[0].ok
    assert "2:" in results[0].detail
    assert "3B 88 80 01" in results[1].detail
    assert driver.closed
    assert not doctor.check_readers(lambda: ListedReaders([]))[0].ok
    assert not doctor.check_readers(lambda: ListedReaders(NoReaderError("pcscd gone")))[0].ok
    missing = by_name(doctor.check_readers(lambda: driver, reader_name="Identiv"))
    assert not missing["reader"].ok


def test_missing_driver_is_a_failed_check_not_a_crash() -> None:
    def factory() -> ReaderLister:
        raise ImportError("No module named 'smartcard'")

    result = doctor.check_readers(factory)[0]
    assert not result.ok
    assert "smartcard" in result.detail


def test_result_line_carries_the_hint() -> None:
    line = DoctorResult("clock", False, "1970", "set the time").line()
    assert line.startswith("[FAIL] clock")
    assert line.endswith("-> set the time")


def test_provisioned_terminal_passes_every_configured_check(
    tmp_path: Path, tls_server: StartServer, pki: BrokerPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: provisioning's output is exactly what doctor (and the daemon's config loader) accept."""
    config_module = pytest.importorskip("edge.config", reason="edge.config not importable yet")
    ward, _ = ward_ca.init_ward_ca(tmp_path / "ward", "26734")
    port = tls_server(tmp_path / "ward" / "ward-ca.crt")  # the broker trusts the ward CA for its terminals
    state, etc = tmp_path / "state", tmp_path / "etc"
    init = device.init_device(state, TerminalIdentity("T-01", "26734"))
    signed = tmp_path / "t.crt"
    signed.write_bytes(ward_ca.sign_csr(ward, ward_ca.load_csr(init.csr)).public_bytes(serialization.Encoding.PEM))
    command = tmp_path / "command.pub"
    command.write_bytes(new_private_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    device.install_device(state, etc, cert=signed, broker_ca=pki.ca_cert, ward_command_key=command,
                          trust=[pki.other_ca_cert], mqtt_host="127.0.0.1", mqtt_port=port)
    config = config_module.load_config(etc / "config.toml")
    pcscd = tmp_path / "pcscd.comm"
    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", str(pcscd))
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(pcscd))
        listener.listen()
        results = doctor.run_checks(config, driver_factory=lambda: ListedReaders(
            [ReaderState("Virtual PCD 00 00", CardPresence.ABSENT)]))
    failed = [r.line() for r in results if not r.ok]
    assert not failed, failed
    assert {"device key", "certificate", "broker", "trust store", "camera", "leds"} <= set(by_name(results))


def test_an_unreadable_path_is_a_failed_check_not_a_crash(tmp_path: Path) -> None:
    config_module = pytest.importorskip("edge.config", reason="edge.config not importable yet")
    config = config_module.parse_config({
        "terminal_id": "T-01",
        "ward_code": "26734",
        "paths": {"state_dir": str(tmp_path), "device_key": "/k" * 3000, "trust_store": str(tmp_path / "trust")},
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "tls": False},
    })
    results = by_name(doctor.run_checks(config, driver_factory=lambda: ListedReaders([])))
    assert not results["device key"].ok  # ENAMETOOLONG from stat(), reported instead of raised
    assert not results["broker"].ok
    assert results["camera"].detail.startswith("skipped")


def test_command_prints_one_line_per_check_and_fails_without_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from edge.commands import doctor as command

    pytest.importorskip("edge.config", reason="edge.config not importable yet")
    # PCSCLITE_CSOCK_NAME stays the session's: libpcsclite fixes its socket path at the first PC/SC context of the
    # process, so pointing it elsewhere here would cut every later stack test off from the private pcscd.
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["doctor", "--config", str(tmp_path / "missing.toml")])
    assert args.func(args) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[FAIL] config")
    assert "device install" in lines[0]
    assert lines[-1].endswith("failed")


@pytest.mark.stack
def test_doctor_against_a_real_mutual_tls_mosquitto(
    mqtt_broker_factory: Callable[..., MosquittoBroker], terminal: tuple[Path, Path]
) -> None:
    """mosquitto with require_certificate: our handshake passes with the ward's client certificate and is reported
    as refused with a certificate from another CA (TLS 1.3 tells the client only after its handshake)."""
    broker = mqtt_broker_factory(tls=True)
    pki = broker.pki
    assert pki is not None
    accepted = doctor.check_broker("127.0.0.1", broker.port, tls=True, ca=pki.ca_cert, cert=pki.client_cert,
                                   key=pki.client_key)
    assert accepted.ok, accepted
    key, cert = terminal
    refused = doctor.check_broker("127.0.0.1", broker.port, tls=True, ca=pki.ca_cert, cert=cert, key=key)
    assert not refused.ok, refused
