"""Office side without a broker: verify tokens (JWS and JWE), the CLI, de-duplication and seq gaps in the store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.cli import main
from edge.daemon import signing
from edge.errors import ConfigError, TokenError, TokenExpiredError
from edge.office.receiver import ResultStore
from edge.office.verify import load_keys, verify_result
from edge.protocol.result import ProcedureProfile, ReadTiming, Verdict
from tests.result_helpers import sample_result

NOW = 1_800_000_000
TERMINAL = signing.KeySigner(ec.generate_private_key(ec.SECP256R1()))
WARD = ec.generate_private_key(ec.SECP256R1())
KEYS = {TERMINAL.kid: TERMINAL.public_key}


def token(seq: int, *, terminal_id: str = "T-01", encrypt: bool = False, iat: int = NOW) -> str:
    document = sample_result(ProcedureProfile.RESIDENCE, terminal_id=terminal_id,
                             timing=ReadTiming(apdu_count=40, read_ms=900),
                             completed_at=datetime.fromtimestamp(iat, UTC))
    claims = signing.result_claims(terminal_id="T-01", kid=TERMINAL.kid, seq=seq,
                                   document=json.loads(document.to_json()), now=iat, lifetime=3600)
    jws = signing.sign_jws(TERMINAL, claims, typ=signing.RESULT_TYP)
    return signing.encrypt_jwe(jws.encode(), WARD.public_key()) if encrypt else jws


def test_verify_jws_and_jwe() -> None:
    plain = verify_result(token(1), KEYS, NOW)
    assert (plain.iss, plain.seq, plain.document.verdict) == ("T-01", 1, Verdict.VERIFIED)
    assert plain.document.citizen is not None
    assert plain.document.citizen.religion is None  # the residence profile filtered it on the terminal
    assert "Nguyễn" not in json.dumps(plain.summary(), ensure_ascii=False)
    assert verify_result(token(2, encrypt=True), KEYS, NOW, decrypt_key=WARD).seq == 2
    with pytest.raises(TokenError, match="no ward decryption key"):
        verify_result(token(3, encrypt=True), KEYS, NOW)
    with pytest.raises(TokenExpiredError):
        verify_result(token(4), KEYS, NOW + 7200)
    with pytest.raises(TokenError, match="differs from issuer"):
        verify_result(token(5, terminal_id="T-02"), KEYS, NOW)


def test_key_loading(tmp_path: Path) -> None:
    pem = tmp_path / "terminal.pem"
    pem.write_bytes(TERMINAL.public_key.public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    jwks = tmp_path / "keys.json"
    jwks.write_text(json.dumps({"keys": [signing.public_jwk(TERMINAL.public_key)]}))
    assert load_keys([pem]) == load_keys(jwks=jwks) == KEYS
    jwks.write_text('{"keys": [{"kty": "RSA"}]}')
    with pytest.raises(ConfigError, match="JWKS"):
        load_keys(jwks=jwks)
    with pytest.raises(ConfigError, match="no terminal keys"):
        load_keys()


def test_cli_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pem = tmp_path / "terminal.pem"
    pem.write_bytes(TERMINAL.public_key.public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    ward_key = tmp_path / "ward.key"
    signing.write_private_key(WARD, ward_key)
    result = tmp_path / "result.jwe"
    result.write_text(token(9, encrypt=True))
    assert main(["verify", str(result), "--cert", str(pem), "--ward-key", str(ward_key), "--now", str(NOW)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["valid"], printed["seq"], printed["result"]["citizen"]["id_number"]) == (True, 9, "079203012345")
    assert main(["verify", str(result), "--cert", str(pem), "--now", str(NOW)]) == 1
    assert "no ward decryption key" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "absent"), "--cert", str(pem)]) == 1


def test_store_deduplicates_and_reports_gaps(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "office" / "results.db", KEYS, decrypt_key=WARD)
    try:
        first = token(1)
        assert store.ingest(first.encode(), NOW).status == "stored"
        assert store.ingest(first.encode(), NOW).status == "duplicate"
        gap = store.ingest(token(4, encrypt=True).encode(), NOW)
        assert (gap.status, gap.new_gaps, gap.missing) == ("stored", (2, 3), (2, 3))
        late = store.ingest(token(2).encode(), NOW)
        assert late.missing == (3,)
        assert store.ingest(b"garbage", NOW).status == "rejected"
        assert [seq for seq, _ in store.stored("T-01")] == [1, 2, 4]
    finally:
        store.close()
    assert (tmp_path / "office" / "results.db").stat().st_mode & 0o077 == 0
