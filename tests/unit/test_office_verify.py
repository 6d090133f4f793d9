"""Office side without a broker: verify tokens (JWS and JWE), the CLI, de-duplication and seq gaps in the store, and
the office's own check of the chip's Active Authentication answer to its challenge (real signatures, real keys)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from edge import signers
from edge.cli import main
from edge.errors import ConfigError, TokenError
from edge.office.receiver import ResultStore
from edge.office.verify import check_active_auth, load_keys, verify_result
from edge.protocol import jose
from edge.protocol.keys import explicit_spki
from edge.protocol.result import ActiveAuthEvidence, ProcedureProfile, ReadTiming, ResultDocument, Verdict
from edge.protocol.verify.checks import DG_HASHES, DS_CHAIN, VERDICT_WORDS
from edge.sim.active_auth_card import sign_active_auth
from tests.support.results import legacy, sample_result

NOW = 1_800_000_000
TERMINAL = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
WARD = ec.generate_private_key(ec.SECP256R1())
KEYS = {TERMINAL.kid: TERMINAL.public_key}


#: The office's AA challenge and the DG15 key of the chip that answers it: brainpool with explicit parameters.
CHALLENGE = bytes.fromhex("a1b2c3d4e5f60718")
CHIP_KEY = ec.generate_private_key(ec.BrainpoolP256R1())
CHIP_SPKI = explicit_spki(CHIP_KEY.public_key())


def token(seq: int, *, terminal_id: str = "T-01", encrypt: bool = False, iat: int = NOW,
          document: ResultDocument | None = None) -> str:  # fmt: skip
    document = document or sample_result(ProcedureProfile.RESIDENCE, terminal_id=terminal_id,
                                         timing=ReadTiming(apdu_count=40, read_ms=900),
                                         completed_at=datetime.fromtimestamp(iat, UTC))
    claims = jose.result_claims(terminal_id="T-01", kid=TERMINAL.kid, seq=seq,
                                document=json.loads(document.to_json()), now=iat, lifetime=3600)
    jws = jose.sign_jws(TERMINAL, claims, typ=jose.RESULT_TYP)
    return jose.encrypt_jwe(jws.encode(), WARD.public_key()) if encrypt else jws


def test_verify_jws_and_jwe() -> None:
    plain = verify_result(token(1), KEYS, NOW)
    assert (plain.iss, plain.seq, plain.document.verdict) == ("T-01", 1, Verdict.VERIFIED)
    assert plain.document.citizen is not None
    assert plain.document.citizen.religion is None  # the residence profile filtered it on the terminal
    assert "Nguyễn" not in json.dumps(plain.summary(), ensure_ascii=False)
    assert verify_result(token(2, encrypt=True), KEYS, NOW, decrypt_key=WARD).seq == 2
    with pytest.raises(TokenError, match="no ward decryption key"):
        verify_result(token(3, encrypt=True), KEYS, NOW)
    assert verify_result(token(4), KEYS, NOW + 7200).flags == ()  # its exp (iat + 1 h) is ignored: no expiry
    with pytest.raises(TokenError, match="differs from issuer"):
        verify_result(token(5, terminal_id="T-02"), KEYS, NOW)


def test_key_loading(tmp_path: Path) -> None:
    pem = tmp_path / "terminal.pem"
    pem.write_bytes(TERMINAL.public_key.public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    jwks = tmp_path / "keys.json"
    jwks.write_text(json.dumps({"keys": [jose.public_jwk(TERMINAL.public_key)]}))
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
    signers.write_private_key(WARD, ward_key)
    result = tmp_path / "result.jwe"
    result.write_text(token(9, encrypt=True))
    assert main(["verify", str(result), "--cert", str(pem), "--ward-key", str(ward_key), "--now", str(NOW)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["valid"], printed["seq"], printed["result"]["citizen"]["id_number"]) == (True, 9, "079203012345")
    assert (printed["verdict"], printed["rung"]) == ("verified", "verified")
    assert printed["verdict_words"] == asdict(VERDICT_WORDS[Verdict.VERIFIED])
    assert (printed["card"]["generation"], printed["card"]["vi"]) == ("2021", "CCCD (2021)")  # issued 15/04/2021
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
        assert store.ingest(b"garbage", NOW).status == "quarantined"
        assert [seq for seq, _ in store.stored("T-01")] == [1, 2, 4]
    finally:
        store.close()
    assert (tmp_path / "office" / "results.db").stat().st_mode & 0o077 == 0


# --- Active Authentication evidence ------------------------------------------------------------------------------


def evidence(challenge: bytes = CHALLENGE, *, signature: bytes | None = None, spki: bytes = CHIP_SPKI,
             signature_algorithm: str | None = None) -> ActiveAuthEvidence:  # fmt: skip
    signature = sign_active_auth(CHIP_KEY, challenge) if signature is None else signature
    return ActiveAuthEvidence(challenge=challenge, signature=signature, public_key_spki=spki,
                              signature_algorithm=signature_algorithm)  # fmt: skip


def with_evidence(active_auth: ActiveAuthEvidence, **changes: object) -> ResultDocument:
    """The sample document with AA evidence, through validation as the office receives it."""
    data = json.loads(sample_result(ProcedureProfile.RESIDENCE).to_json())
    if isinstance(version := changes.get("schema_version"), int):
        data = legacy(data, version)
    return ResultDocument.model_validate({**data, **changes, "active_auth": json.loads(active_auth.model_dump_json())})


def test_good_evidence_passes_for_ec_with_explicit_parameters_and_for_rsa() -> None:
    check = check_active_auth(with_evidence(evidence()), CHALLENGE)
    assert (check.status, check.algorithm) == ("passed", "ECDSA/brainpoolP256r1/sha256")
    rsa_key = rsa.generate_private_key(65537, 2048)
    rsa_spki = rsa_key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    rsa_evidence = evidence(signature=sign_active_auth(rsa_key, CHALLENGE, hash_name="sha256",
                                                       implicit_sha1_trailer=False), spki=rsa_spki)
    assert check_active_auth(with_evidence(rsa_evidence), CHALLENGE).algorithm == "RSA-ISO9796-2/sha256"


def test_hash_named_by_dg14_travels_with_the_evidence() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    signature = sign_active_auth(key, CHALLENGE, hash_name="sha256")
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    plain_sha256 = "0.4.0.127.0.7.1.1.4.1.3"
    named = evidence(signature=signature, spki=spki, signature_algorithm=plain_sha256)
    assert check_active_auth(with_evidence(named), CHALLENGE).passed
    assert not check_active_auth(with_evidence(evidence(signature=signature, spki=spki)), CHALLENGE).passed


def test_evidence_for_another_challenge_fails_even_when_its_signature_is_good() -> None:
    """An answer to a challenge the office did not send could be old: refused however well it verifies."""
    other = bytes(8)
    replayed = with_evidence(evidence(other))
    assert check_active_auth(replayed, other).passed  # a good signature, for that challenge
    check = check_active_auth(replayed, CHALLENGE)
    assert (check.status, "another challenge" in check.reason) == ("failed", True)
    signed_other = with_evidence(evidence(CHALLENGE, signature=sign_active_auth(CHIP_KEY, other)))
    assert check_active_auth(signed_other, CHALLENGE).status == "failed"


def test_flipped_signature_other_key_and_absent_evidence_fail() -> None:
    good = sign_active_auth(CHIP_KEY, CHALLENGE)
    for position in (0, len(good) // 2, len(good) - 1):
        flipped = good[:position] + bytes([good[position] ^ 0x01]) + good[position + 1 :]
        check = check_active_auth(with_evidence(evidence(signature=flipped)), CHALLENGE)
        assert check.status == "failed", position
    clone_spki = explicit_spki(ec.generate_private_key(ec.BrainpoolP256R1()).public_key())
    assert check_active_auth(with_evidence(evidence(spki=clone_spki)), CHALLENGE).status == "failed"
    garbage_key = check_active_auth(with_evidence(evidence(spki=b"\x30\x03\x02\x01\x01")), CHALLENGE)
    assert garbage_key.status == "failed"
    assert check_active_auth(sample_result(ProcedureProfile.RESIDENCE), CHALLENGE).status == "absent"


def test_cli_verify_checks_the_chip_answer_against_the_office_challenge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = tmp_path / "terminal.pem"
    pem.write_bytes(TERMINAL.public_key.public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    result = tmp_path / "result.jws"
    result.write_text(token(1, document=with_evidence(evidence())))
    base = ["verify", str(result), "--cert", str(pem), "--now", str(NOW), "--summary"]
    assert main([*base, "--aa-challenge", CHALLENGE.hex()]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["active_auth"]["status"] == "passed"
    assert main([*base, "--aa-challenge", bytes(8).hex()]) == 1
    assert json.loads(capsys.readouterr().out)["active_auth"]["status"] == "failed"
    assert main(base) == 0  # no challenge given: the token alone is checked
    assert "active_auth" not in json.loads(capsys.readouterr().out)
    result.write_text(token(2))
    assert main([*base, "--aa-challenge", CHALLENGE.hex()]) == 1  # no evidence: nothing proven to the office
    assert json.loads(capsys.readouterr().out)["active_auth"]["status"] == "absent"
    with pytest.raises(SystemExit):
        main([*base, "--aa-challenge", "a1b2"])


def test_store_checks_evidence_for_the_requests_it_knows(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.db", KEYS, aa_challenges={"request-1": CHALLENGE})
    try:
        answered = store.ingest(token(1, document=with_evidence(evidence(), request_id="request-1")).encode(), NOW)
        assert answered.as_dict()["active_auth"]["status"] == "passed"
        replayed = store.ingest(token(2, document=with_evidence(evidence(bytes(8)), request_id="request-1")).encode(),
                                NOW)  # fmt: skip
        assert replayed.as_dict()["active_auth"]["status"] == "failed"
        unknown = store.ingest(token(3, document=with_evidence(evidence(), request_id="request-2")).encode(), NOW)
        assert (unknown.status, unknown.active_auth) == ("stored", None)
    finally:
        store.close()


def test_a_good_signature_by_a_key_the_sod_does_not_vouch_for_fails() -> None:
    """A clone with its own DG15 key signs the challenge perfectly; only the terminal's hash check exposes it."""
    data = json.loads(sample_result(ProcedureProfile.RESIDENCE).to_json())
    hashes_failed = [check | {"status": "failed", "reason": "DG15 differs from the SOD"} if check["name"] == DG_HASHES
                     else check for check in data["checks"]]  # fmt: skip
    clone = with_evidence(evidence(), checks=hashes_failed, verdict="failed")
    check = check_active_auth(clone, CHALLENGE)
    assert check.status == "failed"
    assert "hash check" in check.reason
    no_hash_check = [check for check in data["checks"] if check["name"] != DG_HASHES]
    assert check_active_auth(with_evidence(evidence(), checks=no_hash_check), CHALLENGE).status == "failed"


def test_an_untrusted_issuer_passes_with_the_caveat_said() -> None:
    check = check_active_auth(with_evidence(evidence(), verdict="intact_origin_unproven"), CHALLENGE)
    assert check.passed
    assert "does not chain to a trusted CSCA" in check.reason


def _with_ds_chain(status: str, **changes: object) -> ResultDocument:
    data = json.loads(sample_result(ProcedureProfile.RESIDENCE).to_json())
    chain = {"name": DS_CHAIN, "status": status, "reason": "the ladder's rung"}
    return with_evidence(evidence(), checks=[*data["checks"], chain], **changes)


def test_a_known_signer_vouches_for_dg15_like_a_csca() -> None:
    """A pinned Document Signer proves the SOD's origin, so the DG15 key it lists is the issuer's: no caveat."""
    check = check_active_auth(_with_ds_chain("known_signer", verdict="verified_known_signer"), CHALLENGE)
    assert check.passed
    assert "does not chain" not in check.reason


def test_the_office_keeps_the_verdict_as_received_and_reports_its_rung(tmp_path: Path) -> None:
    """A version 2 result (weeks in an outbox) says verified_untrusted_issuer: stored as it came, read as the
    intact_origin_unproven rung with that rung's words; its AA answer carries the caveat."""
    legacy = _with_ds_chain("issuer_not_trusted", verdict="verified_untrusted_issuer", schema_version=2)
    assert "verdict intact_origin_unproven" in check_active_auth(legacy, CHALLENGE).reason
    store = ResultStore(tmp_path / "results.db", KEYS)
    try:
        outcome = store.ingest(token(1, document=legacy).encode(), NOW)
    finally:
        store.close()
    assert (outcome.status, outcome.verdict, outcome.rung) == ("stored", "verified_untrusted_issuer",
                                                               "intact_origin_unproven")
    assert outcome.as_dict()["rung"] == "intact_origin_unproven"
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert db.execute("SELECT verdict FROM results").fetchall() == [("verified_untrusted_issuer",)]
    summary = verify_result(token(1, document=legacy), KEYS, NOW).summary()
    assert (summary["verdict"], summary["rung"]) == ("verified_untrusted_issuer", "intact_origin_unproven")
    assert summary["verdict_words"] == asdict(VERDICT_WORDS[Verdict.INTACT_ORIGIN_UNPROVEN])
    known = verify_result(token(2, document=_with_ds_chain("known_signer", verdict="verified_known_signer")),
                          KEYS, NOW).summary()
    assert (known["verdict"], known["rung"]) == ("verified_known_signer", "verified_known_signer")
    assert known["verdict_words"]["vi"] == VERDICT_WORDS[Verdict.VERIFIED_KNOWN_SIGNER].vi
