"""Passive authentication with real certificates and real EF.SOD files (throw-away keys from tests.support.pki)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from functools import cache

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.protocol.lds.sod import SodFile, encode_sod, parse_sod
from edge.protocol.verify.checks import (
    DG_HASHES,
    DS_CHAIN,
    DS_REVOCATION,
    DS_VALIDITY,
    SOD_SIGNATURE,
    CheckStatus,
    Verdict,
    decide,
)
from edge.protocol.verify.passive import passive_authentication, passive_authentication_of_file
from edge.protocol.verify.signatures import MAX_RSA_BITS
from edge.protocol.verify.trust import TrustStore
from tests.support.hostile_certificates import with_rsa_modulus_of
from tests.support.pki import (
    DATA_GROUPS,
    NOW,
    VALID_FROM,
    VALID_TO,
    Pki,
    PrivateKey,
    by_name,
    default_pki,
    der,
    key,
    make_cert,
    make_crl,
    name,
)

# --- the happy paths -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("csca_kind", "ds_kind", "hash_algorithm", "rsa_pss"),
    [
        ("brainpoolP384r1", "brainpoolP256r1", "sha256", False),
        ("brainpoolP512r1", "brainpoolP384r1", "sha384", False),
        ("secp384r1", "secp256r1", "sha224", False),
        ("secp521r1", "secp384r1", "sha512", False),
        ("rsa3072", "rsa2048", "sha256", False),
        ("rsa3072", "rsa2048", "sha1", False),
        ("rsa3072", "rsa2048", "sha256", True),
        ("brainpoolP384r1", "rsa2048", "sha512", True),
    ],
)
def test_genuine_sod_verifies(csca_kind: str, ds_kind: str, hash_algorithm: str, rsa_pss: bool) -> None:
    pki = Pki.create(csca_kind, ds_kind)
    checks = passive_authentication(pki.sod(hash_algorithm=hash_algorithm, rsa_pss=rsa_pss), DATA_GROUPS,
                                    pki.store(), NOW)  # fmt: skip
    assert decide(checks) is Verdict.VERIFIED, [(c.name, c.status, c.reason) for c in checks]
    named = by_name(checks)
    assert named[DS_REVOCATION].status is CheckStatus.NOT_PERFORMED
    assert named[DG_HASHES].detail["DG14"] == "match"
    expected = "RSASSA-PSS" if rsa_pss else ("RSA-PKCS1" if ds_kind.startswith("rsa") else f"ECDSA/{ds_kind}")
    assert named[SOD_SIGNATURE].detail["algorithm"].startswith(expected)


def test_plain_ecdsa_signature_verifies() -> None:
    """BSI ecdsa-plain-SHA256 (r || s) instead of DER."""
    pki = default_pki()
    sod = pki.sod()
    r, s = decode_dss_signature(sod.signature)
    plain = replace(sod, signature_algorithm_oid="0.4.0.127.0.7.1.1.4.1.3",
                    signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"))  # fmt: skip
    assert decide(passive_authentication(plain, DATA_GROUPS, pki.store(), NOW)) is Verdict.VERIFIED
    short = replace(plain, signature=plain.signature[:-1])
    checks = by_name(passive_authentication(short, DATA_GROUPS, pki.store(), NOW))
    assert checks[SOD_SIGNATURE].status is CheckStatus.FAILED
    assert "plain ECDSA signature of 63 bytes" in checks[SOD_SIGNATURE].reason


def test_subset_of_data_groups_read() -> None:
    """DG3 is listed but unreadable (6982): comparing what was read is enough."""
    pki = default_pki()
    sod = pki.sod({**DATA_GROUPS, 3: b"fingerprints"})
    assert decide(passive_authentication(sod, DATA_GROUPS, pki.store(), NOW)) is Verdict.VERIFIED


# --- what must never verify ------------------------------------------------------------------------------------


def test_tampered_data_group_fails() -> None:
    pki = default_pki()
    tampered = {**DATA_GROUPS, 13: DATA_GROUPS[13][:-1] + b"\x01"}
    checks = passive_authentication(pki.sod(), tampered, pki.store(), NOW)
    named = by_name(checks)
    assert decide(checks) is Verdict.FAILED
    assert named[DG_HASHES].status is CheckStatus.FAILED
    assert named[DG_HASHES].reason == "data groups not as signed: DG13"
    assert named[DG_HASHES].detail["DG1"] == "match"
    assert named[SOD_SIGNATURE].passed  # the SOD itself is fine; the data is not


def test_data_group_not_in_sod_fails() -> None:
    pki = default_pki()
    checks = by_name(passive_authentication(pki.sod(), {**DATA_GROUPS, 15: b"\x6f\x00"}, pki.store(), NOW))
    assert checks[DG_HASHES].detail["DG15"] == "not listed in the SOD"
    assert checks[DG_HASHES].status is CheckStatus.FAILED


def test_no_data_groups_fails() -> None:
    pki = default_pki()
    assert by_name(passive_authentication(pki.sod(), {}, pki.store(), NOW))[DG_HASHES].status is CheckStatus.FAILED


def test_expired_document_signer_fails() -> None:
    pki = Pki.create(ds_not_after=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    checks = passive_authentication(pki.sod(), DATA_GROUPS, pki.store(), NOW)
    named = by_name(checks)
    assert named[DS_VALIDITY].status is CheckStatus.FAILED
    assert named[DS_VALIDITY].reason == "the Document Signer certificate has expired"
    assert decide(checks) is Verdict.FAILED


def test_not_yet_valid_document_signer_fails() -> None:
    pki = default_pki()
    checks = by_name(passive_authentication(pki.sod(), DATA_GROUPS, pki.store(), VALID_FROM - dt.timedelta(days=1)))
    assert checks[DS_VALIDITY].status is CheckStatus.FAILED


def test_unknown_csca_is_issuer_not_trusted() -> None:
    pki = default_pki()
    other = Pki.create(slot=5)
    checks = passive_authentication(pki.sod(), DATA_GROUPS, other.store(), NOW)
    named = by_name(checks)
    assert named[DS_CHAIN].status is CheckStatus.ISSUER_NOT_TRUSTED
    assert "nothing in this terminal's trust store vouches for the signer" in named[DS_CHAIN].reason
    assert named[DS_REVOCATION].status is CheckStatus.NOT_PERFORMED
    assert decide(checks) is Verdict.INTACT_ORIGIN_UNPROVEN
    assert decide(passive_authentication(pki.sod(), DATA_GROUPS, TrustStore(), NOW)) is (
        Verdict.INTACT_ORIGIN_UNPROVEN
    )


def test_forged_ds_naming_the_trusted_csca_fails() -> None:
    """A DS that claims the trusted CSCA (same name, same key identifier) but was signed by another key."""
    pki = default_pki()
    rogue_key = key("brainpoolP384r1", 9)
    rogue_ds = make_cert(name("DS TEST 0"), pki.ds_key, pki.csca.subject, rogue_key, ca=False, serial=7)
    aki = pki.csca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert rogue_ds.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier != aki
    forged_aki = (
        x509.CertificateBuilder().subject_name(rogue_ds.subject).issuer_name(pki.csca.subject)
        .public_key(pki.ds_key.public_key()).serial_number(7).not_valid_before(VALID_FROM).not_valid_after(VALID_TO)
        .add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
        .sign(rogue_key, hashes.SHA256())
    )  # fmt: skip
    sod = encode_sod(DATA_GROUPS, signer_key=pki.ds_key, signer_cert=forged_aki)
    checks = by_name(passive_authentication(parse_sod(sod), DATA_GROUPS, pki.store(), NOW))
    assert checks[SOD_SIGNATURE].passed
    assert checks[DS_CHAIN].status is CheckStatus.FAILED
    assert "did not sign" in checks[DS_CHAIN].reason


def test_message_digest_mismatch_fails() -> None:
    pki = default_pki()
    sod = pki.sod()
    other = pki.sod({1: b"other"})
    swapped = replace(sod, encap_content=other.encap_content, dg_hashes=other.dg_hashes)
    checks = by_name(passive_authentication(swapped, {1: b"other"}, pki.store(), NOW))
    assert checks[SOD_SIGNATURE].status is CheckStatus.FAILED
    assert "message digest does not match" in checks[SOD_SIGNATURE].reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"signature_algorithm_oid": "1.2.840.10040.4.3"}, "unsupported signature algorithm"),
        ({"signature_algorithm_oid": "1.2.840.113549.1.1.11"}, "RSA signature algorithm with a non-RSA key"),
        ({"digest_algorithm": "md5"}, "unsupported hash algorithm"),
        ({"signed_attrs_der": None}, "no signed attributes"),
        ({"message_digest": None}, "lack the messageDigest"),
        ({"certificates": ()}, "carries no signer certificate"),
        ({"certificates": (b"\x30\x03\x02\x01\x01",)}, "not a readable X.509 certificate"),
        ({"signer_serial": 8}, "none of its certificates"),
        ({"signature": b""}, "does not verify"),
        ({"signature": b"\x30" * 500}, "too long for the curve"),
        ({"hash_algorithm": "sha3_999"}, "unsupported hash algorithm"),
    ],
)
def test_bad_sod_fields_fail_with_a_reason(change: dict[str, object], reason: str) -> None:
    pki = default_pki()
    checks = passive_authentication(replace(pki.sod(), **change), DATA_GROUPS, pki.store(), NOW)  # type: ignore[arg-type]
    failures = " | ".join(c.reason for c in checks if c.status is CheckStatus.FAILED)
    assert reason in failures
    assert decide(checks) is Verdict.FAILED


def test_wrong_length_rsa_signature_fails() -> None:
    pki = Pki.create("rsa3072", "rsa2048")
    sod = pki.sod()
    for signature in (sod.signature[1:], b"\x00" + sod.signature, bytes(256)):
        checks = by_name(passive_authentication(replace(sod, signature=signature), DATA_GROUPS, pki.store(), NOW))
        assert checks[SOD_SIGNATURE].status is CheckStatus.FAILED
    short = by_name(passive_authentication(replace(sod, signature=sod.signature[1:]), DATA_GROUPS, pki.store(), NOW))
    assert "RSA signature of 255 bytes for a 2048-bit key" in short[SOD_SIGNATURE].reason


@pytest.mark.parametrize("bits", [MAX_RSA_BITS + 8, 100_000])
def test_document_signer_key_beyond_the_limit_fails(bits: int) -> None:
    """A DS certificate whose RSA modulus is absurdly large: refused before any arithmetic on it."""
    sod = _cached_sod()
    oversized = replace(sod, certificates=(with_rsa_modulus_of(sod.certificates[0], bits),),
                        signature_algorithm_oid="1.2.840.113549.1.1.11", signature=bytes((bits + 7) // 8))  # fmt: skip
    checks = passive_authentication(oversized, DATA_GROUPS, default_pki().store(), NOW)
    assert by_name(checks)[SOD_SIGNATURE].status is CheckStatus.FAILED
    assert f"RSA key of {bits} bits is beyond any real signer" in by_name(checks)[SOD_SIGNATURE].reason
    assert decide(checks) is Verdict.FAILED


def test_bad_pss_parameters_fail() -> None:
    pki = Pki.create("rsa3072", "rsa2048")
    sod = pki.sod(rsa_pss=True)
    for params in (None, b"\x30\x03\x02\x01\x01", b"garbage"):
        checks = by_name(passive_authentication(replace(sod, signature_parameters_der=params), DATA_GROUPS,
                                                pki.store(), NOW))  # fmt: skip
        assert checks[SOD_SIGNATURE].status is CheckStatus.FAILED, params


def test_garbage_sod_file_fails_and_nothing_hanging_on_it_is_claimed() -> None:
    pki = default_pki()
    for garbage in (b"", b"\x77\x03abc", b"\x77\x82\xff\xff", b"\x30\x00", bytes(100)):
        checks = by_name(passive_authentication_of_file(garbage, DATA_GROUPS, pki.store(), NOW))
        assert decide(tuple(checks.values())) is Verdict.FAILED
        assert checks[SOD_SIGNATURE].status is CheckStatus.FAILED
        assert checks[SOD_SIGNATURE].reason.startswith("EF.SOD cannot be parsed")
        assert {checks[name].status for name in (DS_VALIDITY, DS_CHAIN, DG_HASHES)} == {CheckStatus.NOT_PERFORMED}


def test_naive_time_is_a_programming_error() -> None:
    pki = default_pki()
    with pytest.raises(ValueError, match="timezone"):
        passive_authentication(pki.sod(), DATA_GROUPS, pki.store(), dt.datetime(2026, 1, 1))


# --- revocation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("revoked", "next_update", "other_signer", "status"),
    [
        ((1, 2), VALID_TO, False, CheckStatus.PASSED),
        ((7,), VALID_TO, False, CheckStatus.FAILED),
        ((1,), dt.datetime(2025, 1, 1, tzinfo=dt.UTC), False, CheckStatus.NOT_PERFORMED),
        ((7,), dt.datetime(2025, 1, 1, tzinfo=dt.UTC), False, CheckStatus.FAILED),
        ((), VALID_TO, True, CheckStatus.FAILED),
    ],
)
def test_crl(revoked: tuple[int, ...], next_update: dt.datetime, other_signer: bool, status: CheckStatus) -> None:
    pki = default_pki()
    crl = make_crl(pki, revoked, next_update=next_update, signer=key("brainpoolP384r1", 7) if other_signer else None)
    store = TrustStore.from_der([der(pki.csca)], [crl])
    checks = passive_authentication(pki.sod(), DATA_GROUPS, store, NOW)
    assert by_name(checks)[DS_REVOCATION].status is status
    assert (decide(checks) is Verdict.VERIFIED) is (status is not CheckStatus.FAILED)


# --- fuzzing ---------------------------------------------------------------------------------------------------


@cache
def _fuzz_material() -> tuple[bytes, TrustStore]:
    pki = default_pki()
    return pki.sod_file(), pki.store()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_sod_never_raises(data: st.DataObject) -> None:
    sod_file, store = _fuzz_material()
    position = data.draw(st.integers(0, len(sod_file) - 1))
    mode = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if mode == "flip":
        corrupted = sod_file[:position] + bytes([sod_file[position] ^ data.draw(st.integers(1, 255))]) + \
            sod_file[position + 1 :]
    elif mode == "truncate":
        corrupted = sod_file[:position]
    else:
        corrupted = sod_file[:position] + data.draw(st.binary(min_size=1, max_size=8)) + sod_file[position:]
    checks = passive_authentication_of_file(corrupted, DATA_GROUPS, store, NOW)
    assert isinstance(decide(checks), Verdict)
    assert {c.name for c in checks} >= {SOD_SIGNATURE, DS_VALIDITY, DS_CHAIN, DG_HASHES}


@settings(max_examples=60, deadline=None)
@given(signature=st.binary(max_size=600), oid=st.sampled_from([
    "1.2.840.10045.4.3.2", "0.4.0.127.0.7.1.1.4.1.3", "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.10", "1.2.3",
]))
def test_arbitrary_signatures_never_verify(signature: bytes, oid: str) -> None:
    pki = default_pki()
    sod = replace(_cached_sod(), signature=signature, signature_algorithm_oid=oid)
    checks = by_name(passive_authentication(sod, DATA_GROUPS, pki.store(), NOW))
    assert checks[SOD_SIGNATURE].status is CheckStatus.FAILED


@cache
def _cached_sod() -> SodFile:
    return default_pki().sod()


def _with_explicit_parameters(cert: x509.Certificate, issuer_key: PrivateKey, template_pem: bytes) -> x509.Certificate:
    """Re-encode ``cert``'s brainpoolP512r1 key with EXPLICIT curve parameters (taken from a real certificate that
    has them) and re-sign it: cryptography cannot produce such certificates, real issuers do."""
    from asn1crypto import keys as asn1_keys
    from asn1crypto import pem as asn1_pem
    from asn1crypto import x509 as asn1_x509

    template = asn1_x509.Certificate.load(asn1_pem.unarmor(template_pem)[2])
    parsed = asn1_x509.Certificate.load(der(cert))
    tbs = parsed["tbs_certificate"]
    tbs["subject_public_key_info"] = asn1_keys.PublicKeyInfo({
        "algorithm": template["tbs_certificate"]["subject_public_key_info"]["algorithm"],
        "public_key": tbs["subject_public_key_info"]["public_key"],
    })  # fmt: skip
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    parsed["signature_value"] = issuer_key.sign(tbs.dump(force=True), ec.ECDSA(hashes.SHA256()))
    return x509.load_der_x509_certificate(parsed.dump(force=True))


def test_document_signer_with_explicit_curve_parameters() -> None:
    """Real DS certificates often spell brainpool curves out; keys.py maps them back to the named curve."""
    from tests.support.paths import VN_CSCA_PEM

    if not VN_CSCA_PEM.exists():
        pytest.skip("shared VN CSCA (explicit-parameter template) not present")
    pki = Pki.create("brainpoolP384r1", "brainpoolP512r1", slot=80)
    explicit_ds = _with_explicit_parameters(pki.ds, pki.csca_key, VN_CSCA_PEM.read_bytes())
    with pytest.raises(UnsupportedAlgorithm, match="explicit parameters"):
        explicit_ds.public_key()  # cryptography alone refuses it
    explicit = Pki(pki.csca_key, pki.csca, pki.ds_key, explicit_ds)
    checks = passive_authentication(explicit.sod(), DATA_GROUPS, explicit.store(), NOW)
    assert decide(checks) is Verdict.VERIFIED, [(c.name, c.reason) for c in checks]
    assert by_name(checks)[SOD_SIGNATURE].detail["ds_key"] == "EC brainpoolP512r1 (512 bits, explicit parameters)"
