"""Private mosquitto brokers for the tests and the demo: each on a free 127.0.0.1 port with its own config.

Isolated so that several test runs (and a demo) can share one machine. ``set_tcp_nodelay true`` (QoS 1 round trip
~0.75 ms instead of ~42 ms) and ``persistence false`` (a restart is a clean broker, the worst case for delivery).
The TLS variant has a throw-away CA and ``require_certificate true`` (mutual TLS). Started as root, mosquitto would
drop to user ``mosquitto`` before reading its key: ``user root`` keeps it able to read a 0600 key in a private
temporary directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.errors import BrokerStartError
from edge.files import private_key_pem, write_private

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
_START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    write_private(path, private_key_pem(key))


@dataclass(frozen=True)
class BrokerPki:
    """A throw-away CA with one server and one client certificate (P-256)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # an unrelated CA: the broker must refuse clients it signed


def make_pki(directory: Path, client_cn: str = "T-01") -> BrokerPki:
    """CA, server certificate for localhost/127.0.0.1 and a client certificate named ``client_cn``, valid 30 days."""
    now = datetime.datetime.now(datetime.UTC)

    def ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    def leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, cn: str, *, server: bool
             ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                         else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = ca("cccd-edge test ward CA")
    server_key, server_cert = leaf(ca_key, ca_cert, "localhost", server=True)
    client_key, client_cert = leaf(ca_key, ca_cert, client_cn, server=False)
    _, other_ca = ca("some other CA")
    pki = BrokerPki(directory / "ca.crt", directory / "server.crt", directory / "server.key",
                    directory / "client.crt", directory / "client.key", directory / "other-ca.crt")
    for cert, path in ((ca_cert, pki.ca_cert), (server_cert, pki.server_cert), (client_cert, pki.client_cert),
                       (other_ca, pki.other_ca_cert)):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, pki.server_key)
    _write_key(client_key, pki.client_key)
    return pki


class MosquittoBroker:
    """One private mosquitto process; :meth:`stop` and :meth:`start` simulate an outage on the same port.

    ``client_cas`` adds CAs whose client certificates the TLS listener accepts besides ``pki.ca_cert`` (a ward CA
    that signs terminal certificates while the broker's own CA signs the server and the office).
    ``identity_as_username`` makes the certificate's CN the user name and the client id, as a ward broker does
    (``python -m provisioning broker-kit``): with the ward's ACL (``provisioning.broker_kit.render_acl``) as
    ``acl``, each terminal is confined to its own topics. ``config_text`` runs a ready-made configuration instead
    (a generated broker kit), listening on ``port``.
    """

    def __init__(self, directory: Path, *, pki: BrokerPki | None = None, persistence: bool = False,
                 acl: str | None = None, client_cas: Sequence[Path] = (), identity_as_username: bool = False,
                 config_text: str | None = None, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.pki = pki
        self.directory = directory
        self.config = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self.acl = directory / "acl"
        directory.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None
        if config_text is not None:
            if port is None:
                raise BrokerStartError("a ready-made mosquitto configuration needs the port it listens on")
            self.config.write_text(config_text, encoding="utf-8")
            return
        if identity_as_username and pki is None:
            raise BrokerStartError("identity_as_username needs the TLS listener (pki)")
        lines = [
            "per_listener_settings false",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {directory}/",
            "set_tcp_nodelay true",
            "allow_anonymous true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
            f"listener {self.port} {self.host}",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")
        if acl is not None:
            self.acl.write_text(acl, encoding="utf-8")
            lines.insert(0, f"acl_file {self.acl}")
        if pki is not None:
            cafile = pki.ca_cert
            if client_cas:
                cafile = directory / "client-cas.pem"
                cafile.write_bytes(b"".join(path.read_bytes() for path in (pki.ca_cert, *client_cas)))
            lines += [f"cafile {cafile}", f"certfile {pki.server_cert}", f"keyfile {pki.server_key}",
                      "require_certificate true", "tls_version tlsv1.2"]
            if identity_as_username:
                lines += ["use_identity_as_username true", "use_username_as_clientid true"]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start mosquitto and return once it accepts TCP connections; raises :class:`BrokerStartError`."""
        if self.running:
            return
        if not os.path.exists(MOSQUITTO):
            raise BrokerStartError(f"{MOSQUITTO} not found")
        with self.log.open("ab") as log:
            # Own session: a Ctrl-C at the terminal reaches the caller, which stops the broker after its clients.
            self._process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise BrokerStartError(f"mosquitto exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerStartError(f"mosquitto did not listen on {self.host}:{self.port} within {_START_TIMEOUT:.0f} s")

    def reload(self, acl: str) -> None:
        """Replace the ACL and make the running broker re-read it (SIGHUP)."""
        self.acl.write_text(acl, encoding="utf-8")
        if self._process is None:
            raise BrokerStartError("mosquitto is not running: nothing to reload")
        self._process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """Terminate mosquitto (kill after 5 s); a no-op when it is not running."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
