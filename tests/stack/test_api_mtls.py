"""The REST API's mutual TLS, over a real https listener (uvicorn, ``api.client_ca``): a client certificate from the
configured CA whose CN was registered (``gateway api-key add --tls-cn``) is that client, limited to its wards like a
key client; a certificate of another CA with the same CN, an unregistered CN, no certificate, or a wrong API key
beside a good certificate get nothing."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.office.api import ApiContext, create_api
from edge.office.api_clients import ApiClients
from edge.office.api_server import ApiServer
from edge.office.gateway_config import ApiSettings
from edge.office.store import ResultStore
from edge.office.verify import TerminalKeys
from provisioning.pki import GatewayIdentity
from provisioning.ward_ca import issue_server_certificate, sign_csr
from tests.support.ward import NOW, WARD, Ward, make_ward

pytestmark = pytest.mark.stack
WARD_B = "99999"


def _client_certificate(ward: Ward, name: str, directory: Path) -> tuple[str, str]:
    """A client certificate (CN ``gateway:<name>``) from ``ward``'s CA: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(GatewayIdentity(name, WARD).name_attributes()) \
        .sign(key, hashes.SHA256())  # fmt: skip
    certificate, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    certificate.write_bytes(sign_csr(ward.ca, csr, role="gateway").public_bytes(serialization.Encoding.PEM))
    signers.write_private_key(key, key_file)
    return str(certificate), str(key_file)


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[ApiServer, Ward, str]]:
    """The API over https asking for client certificates of the ward CA; clients: ``gateway:procedure`` (ward A),
    ``gateway:proc-b`` (ward B) and a key client of ward A (its key returned)."""
    ward = make_ward(tmp_path / "ward")
    server_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "api.crt").write_bytes(issue_server_certificate(ward.ca, server_key.public_key(), ["127.0.0.1"])
                                       .public_bytes(serialization.Encoding.PEM))  # fmt: skip
    signers.write_private_key(server_key, tmp_path / "api.key")
    store = ResultStore(tmp_path / "results.db", TerminalKeys({}))
    clients = ApiClients(store.database)
    key = clients.add("keyed", [WARD], NOW)
    assert key is not None
    clients.add("procedure", [WARD], NOW, tls_cn="gateway:procedure")
    clients.add("proc-b", [WARD_B], NOW, tls_cn="gateway:proc-b")
    context = ApiContext(store=store, clients=clients, webhooks=None,
                         signer=signers.KeySigner(ec.generate_private_key(ec.SECP256R1())),
                         send_command=lambda command: None, serves_ward=lambda ward_code: True,
                         clock=lambda: float(NOW))  # fmt: skip
    server = ApiServer(create_api(context), ApiSettings(port=0, tls_cert=tmp_path / "api.crt",
                                                        tls_key=tmp_path / "api.key", client_ca=ward.ca_path))
    server.start()
    yield server, ward, key
    server.stop()
    store.close()


def _get(server: ApiServer, ward: Ward, path: str, *, certificate: tuple[str, str] | None = None,
         key: str | None = None) -> int:
    """The status of one https GET (0: the TLS handshake or the connection refused it)."""
    context = ssl.create_default_context(cafile=str(ward.ca_path))
    if certificate is not None:
        context.load_cert_chain(*certificate)
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        response = connection.getresponse()
        response.read()
        return response.status
    except (ssl.SSLError, ConnectionError):
        return 0
    finally:
        connection.close()


def test_a_registered_client_certificate_is_its_client_and_limited_to_its_wards(
        https: tuple[ApiServer, Ward, str], tmp_path: Path) -> None:  # fmt: skip
    server, ward, key = https
    procedure = _client_certificate(ward, "procedure", tmp_path)
    assert _get(server, ward, f"/v1/fleet?ward={WARD}", certificate=procedure) == 200
    assert _get(server, ward, f"/v1/fleet?ward={WARD_B}", certificate=procedure) == 403, "not its ward"
    proc_b = _client_certificate(ward, "proc-b", tmp_path)
    assert _get(server, ward, f"/v1/fleet?ward={WARD_B}", certificate=proc_b) == 200
    assert _get(server, ward, f"/v1/fleet?ward={WARD}", certificate=proc_b) == 403
    assert _get(server, ward, f"/v1/fleet?ward={WARD}", key=key) == 200, "key clients still connect"


def test_no_certificate_an_unregistered_or_foreign_one_or_a_wrong_key_gets_nothing(
        https: tuple[ApiServer, Ward, str], tmp_path: Path) -> None:  # fmt: skip
    server, ward, _ = https
    assert _get(server, ward, "/v1/fleet") == 401
    assert _get(server, ward, "/v1/fleet", certificate=_client_certificate(ward, "stranger", tmp_path)) == 401
    foreign = make_ward(tmp_path / "foreign")  # another CA, the same CN as a registered client
    (tmp_path / "foreign" / "certs").mkdir()
    assert _get(server, ward, "/v1/fleet",
                certificate=_client_certificate(foreign, "procedure", tmp_path / "foreign" / "certs")) in (0, 401)
    procedure = _client_certificate(ward, "procedure", tmp_path)
    assert _get(server, ward, f"/v1/fleet?ward={WARD}", certificate=procedure, key="cek_not_a_key") == 401, \
        "a key that is offered is the client's word: a wrong one is not overruled by the certificate"
