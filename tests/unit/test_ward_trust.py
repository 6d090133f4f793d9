"""Device keys found through the ward CA (edge.office.ward_trust, edge.office.verify.TerminalKeys): a result's own
certificate (x5c) vouches for it when the ward CA issued it to that terminal and has not revoked it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edge.errors import ConfigError, DeviceCertificateError, ProvisioningError, TokenError, UnknownKeyError
from edge.office.verify import TerminalKeys, verify_result
from edge.office.ward_trust import WardTrust
from edge.protocol import jose
from provisioning.__main__ import main as provisioning_main
from provisioning.ward_ca import CRL, issue_server_certificate, revoke
from tests.support.ward import NOW, Ward, make_ward

DAY = 24 * 3600


def _keys(ward: Ward, *, crl: bool = False, configured: dict[str, object] | None = None) -> TerminalKeys:
    trust = WardTrust.load(ward.ca_path, ward.directory / CRL if crl else None)
    return TerminalKeys(configured or {}, trust)  # type: ignore[arg-type]


def test_a_new_terminal_is_verified_through_the_ward_ca_alone(ward: Ward) -> None:
    terminal = ward.terminal("T-NEW")
    result = verify_result(terminal.token(1), _keys(ward), NOW)
    assert (result.iss, result.seq, result.kid) == ("T-NEW", 1, terminal.signer.kid)
    header = jose.unverified_header(terminal.token(2))
    assert len(header["x5c"]) == 1


def test_old_tokens_without_x5c_still_verify_with_configured_keys(ward: Ward) -> None:
    terminal = ward.terminal("T-OLD")
    with pytest.raises(UnknownKeyError):
        verify_result(terminal.token(1, x5c=False), _keys(ward), NOW)
    keys = _keys(ward, configured={terminal.signer.kid: terminal.signer.public_key})
    assert verify_result(terminal.token(1, x5c=False), keys, NOW).iss == "T-OLD"


def test_a_certificate_of_another_ca_is_refused(ward: Ward, tmp_path: Path) -> None:
    stranger = make_ward(tmp_path / "other-ca").terminal("T-01")
    with pytest.raises(DeviceCertificateError, match="does not chain to the ward CA"):
        verify_result(stranger.token(1), _keys(ward), NOW)


def test_a_certificate_of_another_terminal_is_refused(ward: Ward) -> None:
    """T-02's certificate in a token T-02 signed but that claims to be T-01."""
    t2 = ward.terminal("T-02")
    with pytest.raises(DeviceCertificateError, match="claims 'T-01'"):
        verify_result(t2.token(1, terminal_id="T-01"), _keys(ward), NOW)


def test_a_borrowed_certificate_is_refused(ward: Ward) -> None:
    """T-01's certificate copied into a token signed by another key: the kid is not the certificate's key."""
    t1, t2 = ward.terminal("T-01"), ward.terminal("T-02")
    with pytest.raises(DeviceCertificateError, match="kid"):
        verify_result(t2.token(1, terminal_id="T-01", certificate=t1.certificate), _keys(ward), NOW)


def test_a_certificate_for_another_ward_is_refused(ward: Ward) -> None:
    terminal = ward.terminal("T-01")
    with pytest.raises(DeviceCertificateError, match="ward"):
        verify_result(terminal.token(1, ward="99999"), _keys(ward), NOW)


def test_a_gateway_certificate_signs_no_results(ward: Ward) -> None:
    gateway = ward.terminal("office-1", role="gateway")
    with pytest.raises(DeviceCertificateError, match="gateway"):
        verify_result(gateway.token(1, terminal_id="T-01"), _keys(ward), NOW)


def test_a_broker_server_certificate_is_refused(ward: Ward) -> None:
    """serverAuth only: the client verifier wants clientAuth."""
    terminal = ward.terminal("T-01")
    server = issue_server_certificate(ward.ca, terminal.signer.public_key, ["localhost"],
                                      now=dt.datetime.fromtimestamp(NOW, dt.UTC))
    with pytest.raises(DeviceCertificateError):
        verify_result(terminal.token(1, certificate=server.public_bytes(serialization.Encoding.DER)), _keys(ward),
                      NOW)


def test_an_expired_certificate_still_vouches_for_what_it_signed_while_valid(ward: Ward) -> None:
    """Results never expire: one signed within the certificate's validity and delivered after it is accepted."""
    issued = dt.datetime.fromtimestamp(NOW - 400 * DAY, dt.UTC)
    terminal = ward.terminal("T-01", days=365, issued=issued)
    signed_in_time = terminal.token(1, now=NOW - 300 * DAY)
    assert verify_result(signed_in_time, _keys(ward), NOW).seq == 1
    with pytest.raises(DeviceCertificateError, match="neither now nor when"):
        verify_result(terminal.token(2, now=NOW), _keys(ward), NOW)
    # a verified chain is cached; the time is still judged per token
    with pytest.raises(DeviceCertificateError, match="neither now nor when"):
        verify_result(terminal.token(3, now=NOW - 10 * DAY), _keys(ward), NOW)


def test_a_revoked_certificate_vouches_for_nothing(ward: Ward, capsys: pytest.CaptureFixture[str]) -> None:
    t1, t2 = ward.terminal("T-01"), ward.terminal("T-02")
    revoke(ward.ca, ward.directory, [], now=dt.datetime.fromtimestamp(NOW, dt.UTC))
    keys = _keys(ward, crl=True)
    assert verify_result(t1.token(1), keys, NOW).seq == 1
    serial = x509.load_der_x509_certificate(t1.certificate).serial_number
    cert_file = ward.directory / "t1.crt"
    cert_file.write_bytes(x509.load_der_x509_certificate(t1.certificate).public_bytes(serialization.Encoding.PEM))
    assert provisioning_main(["ward-ca", "revoke", "--dir", str(ward.directory), "--cert", str(cert_file)]) == 0
    assert "1 revoked in all" in capsys.readouterr().out
    os.utime(ward.directory / CRL, ns=(NOW * 10**9, NOW * 10**9))  # a new mtime even within the clock's tick
    with pytest.raises(DeviceCertificateError, match=f"serial {serial:x}.*revoked"):
        verify_result(t1.token(2), keys, NOW)
    assert verify_result(t2.token(1), keys, NOW).iss == "T-02"
    # a damaged new CRL keeps the last good one in force
    (ward.directory / CRL).write_bytes(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    with pytest.raises(DeviceCertificateError, match="revoked"):
        verify_result(t1.token(3), keys, NOW)


def test_a_crl_not_signed_by_the_ward_ca_is_refused_at_start(ward: Ward, tmp_path: Path) -> None:
    other = make_ward(tmp_path / "other-ca")
    path, _ = revoke(other.ca, other.directory, [123], now=dt.datetime.fromtimestamp(NOW, dt.UTC))
    with pytest.raises(ConfigError, match="not signed by the ward CA"):
        WardTrust.load(ward.ca_path, path)
    with pytest.raises(ConfigError):
        WardTrust.load(ward.directory / "missing.crt")


@pytest.mark.parametrize("serial", [0, -1, 1 << 159])
def test_a_serial_no_certificate_can_have_is_refused(ward: Ward, serial: int) -> None:
    with pytest.raises(ProvisioningError, match=f"serial {serial} is not"):
        revoke(ward.ca, ward.directory, [serial])
    assert not (ward.directory / CRL).exists()


@pytest.mark.parametrize("x5c", [
    "not a list", [], ["!!!"], ["QUJD"], ["QUJD="], [1], ["QUJD"] * 5, ["A" * 20000],
])  # fmt: skip
def test_a_malformed_x5c_is_a_typed_refusal(ward: Ward, x5c: object) -> None:
    terminal = ward.terminal("T-01")
    claims = jose.result_claims(terminal_id="T-01", kid=terminal.signer.kid, seq=1, document={}, now=NOW)
    header = {"alg": "ES256", "kid": terminal.signer.kid, "typ": jose.RESULT_TYP, "x5c": x5c}
    token = jose.sign_compact(header, claims, terminal.signer.sign)
    with pytest.raises(TokenError):
        verify_result(token, _keys(ward), NOW)
