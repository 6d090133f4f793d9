"""The CSCA trust store: the real Vietnamese CSCA (explicit brainpool parameters), master lists built here with
throw-away keys (good signature anchored in the store accepted, self-anchored only with consent, anything else
refused), link certificates, CRL import, size limits, and fuzzed input that must be refused, never raise."""

from __future__ import annotations

import datetime as dt
import hashlib
import stat
import tempfile
from functools import cache
from pathlib import Path

import pytest
from asn1crypto import pem as asn1_pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import TrustStoreError
from edge.protocol.verify.certs import MAX_SIGNATURE_CHECKS, build_chain, parse_certificate
from edge.protocol.verify.checks import DS_CHAIN, CheckStatus, Verdict, decide
from edge.protocol.verify.masterlist import ID_CSCA_MASTER_LIST, ID_MASTER_LIST_SIGNING_KEY, encode_master_list
from edge.protocol.verify.passive import passive_authentication
from edge.protocol.verify.signatures import MAX_RSA_BITS
from edge.protocol.verify.trust import MAX_IMPORT_BYTES, ImportReport, TrustStore
from edge.sim.hostile_pki import LinkLoop, link_loop
from tests.support.hostile_certificates import with_rsa_modulus_of
from tests.support.paths import VN_CSCA_PEM
from tests.support.pki import (
    DATA_GROUPS,
    NOW,
    VALID_FROM,
    VALID_TO,
    Pki,
    PrivateKey,
    by_name,
    der,
    key,
    make_cert,
    make_crl,
    name,
)

VN_FINGERPRINT = "6B5FA6FE45CC4E855A73760413E08B7A9AC50A27722C702F3909A90FACC991BD"
needs_vn_csca = pytest.mark.skipif(not VN_CSCA_PEM.exists(), reason="shared VN CSCA not present")


def empty_store(tmp_path: Path) -> TrustStore:
    return TrustStore.load(tmp_path / "store")


def _refused(tmp_path: Path, data: bytes, match: str, *, file_name: str = "bad.ml", store: TrustStore | None = None,
             accept_self_anchored: bool = False) -> TrustStoreError:  # fmt: skip
    """Import ``data`` as ``file_name``: refused with a reason naming the file, and nothing new in the store."""
    path = tmp_path / file_name
    path.write_bytes(data)
    before = sorted((tmp_path / "store").glob("*"))
    with pytest.raises(TrustStoreError, match=match) as refusal:
        (store or empty_store(tmp_path)).import_file(path, at=NOW, accept_self_anchored=accept_self_anchored)
    assert str(refusal.value).startswith(f"{path}: ")
    assert sorted((tmp_path / "store").glob("*")) == before
    return refusal.value


# --- the real Vietnamese CSCA ----------------------------------------------------------------------------------


@needs_vn_csca
def test_import_real_vn_csca(tmp_path: Path) -> None:
    report = empty_store(tmp_path).import_file(VN_CSCA_PEM, at=NOW)
    assert report.kind == "certificate"
    assert [e.fingerprint for e in report.added] == [VN_FINGERPRINT]
    stored = tmp_path / "store" / f"csca-{VN_FINGERPRINT.lower()}.der"
    assert hashlib.sha256(stored.read_bytes()).hexdigest().upper() == VN_FINGERPRINT
    assert stat.S_IMODE(stored.stat().st_mode) == 0o644

    (entry,) = TrustStore.load(tmp_path / "store").entries()
    assert "CSCA ePassport Vietnam" in entry.subject
    assert entry.key == "EC brainpoolP512r1 (512 bits, explicit parameters)"
    assert entry.kind == "CSCA"
    assert (entry.not_before.date(), entry.not_after.date()) == (dt.date(2022, 6, 29), dt.date(2037, 10, 1))
    assert entry.fingerprint == VN_FINGERPRINT

    again = TrustStore.load(tmp_path / "store").import_file(VN_CSCA_PEM, at=NOW)
    assert (again.added, again.already_present) == ((), 1)


@needs_vn_csca
def test_vn_csca_key_identifier_and_self_signature() -> None:
    from asn1crypto import pem

    cert = parse_certificate(pem.unarmor(VN_CSCA_PEM.read_bytes())[2])
    assert cert.subject_key_id is not None
    assert cert.subject_key_id.hex() == "88918f5a25ece37a3e04c52d38a4f2b5123c85c7"
    assert TrustStore.from_der([cert.der]).anchors == frozenset({VN_FINGERPRINT})  # ECDSA-SHA512 self-signature


@cache
def _genuine_csca(source: str) -> bytes:
    if source == "generated":
        return der(Pki.create(slot=90).csca)
    if not VN_CSCA_PEM.exists():
        pytest.skip("shared VN CSCA not present")
    return bytes(asn1_pem.unarmor(VN_CSCA_PEM.read_bytes())[2])


@pytest.mark.parametrize("source", ["generated", "vietnam"])
def test_csca_with_a_damaged_self_signature_is_refused(tmp_path: Path, source: str) -> None:
    """One flipped byte in the signature (the certificate's last byte): not a CSCA, and not a "link" either."""
    genuine = _genuine_csca(source)
    damaged = genuine[:-1] + bytes([genuine[-1] ^ 0x01])
    _refused(tmp_path, damaged, r"names its own key as its signer, but its self-signature does not hold "
                                r"\(the signature does not verify\)", file_name="damaged.der")  # fmt: skip


def test_import_refuses_garbage_and_non_ca(tmp_path: Path) -> None:
    store = empty_store(tmp_path)
    garbage = tmp_path / "garbage.der"
    garbage.write_bytes(b"\x30\x82\x01\x00 not a certificate")
    with pytest.raises(TrustStoreError, match="not a certificate, CSCA master list or CRL"):
        store.import_file(garbage, at=NOW)
    ds = tmp_path / "ds.der"
    ds.write_bytes(der(Pki.create().ds))
    with pytest.raises(TrustStoreError, match="not a CA certificate"):
        store.import_file(ds, at=NOW)
    with pytest.raises(TrustStoreError, match="cannot read"):
        store.import_file(tmp_path / "missing.pem", at=NOW)
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").iterdir())


def test_import_pem_bundle_and_load_reports_problems(tmp_path: Path) -> None:
    pki_a, pki_b = Pki.create(slot=0), Pki.create("secp384r1", "secp256r1", slot=2)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki_a.csca.public_bytes(Encoding.PEM) + pki_b.csca.public_bytes(Encoding.PEM))
    store = empty_store(tmp_path)
    assert len(store.import_file(bundle, at=NOW).added) == 2
    (tmp_path / "store" / "broken.der").write_bytes(b"junk")
    loaded = TrustStore.load(tmp_path / "store")
    assert len(loaded.entries()) == 2
    assert len(loaded.problems) == 1


# --- master lists ----------------------------------------------------------------------------------------------


def make_master_list(signer_key: PrivateKey, signer_cert: x509.Certificate, listed: list[x509.Certificate],
                     *, content_type: str = ID_CSCA_MASTER_LIST) -> bytes:  # fmt: skip
    assert isinstance(signer_key, ec.EllipticCurvePrivateKey)
    return encode_master_list(signer_key, der(signer_cert), [der(c) for c in listed], content_type=content_type)


ML_EKU = (x509.ObjectIdentifier(ID_MASTER_LIST_SIGNING_KEY),)


def ml_material() -> tuple[Pki, Pki, PrivateKey, x509.Certificate]:
    """Country A's CSCA issues the master-list signer; the list carries A's and B's CSCAs."""
    country_a, country_b = Pki.create(slot=20), Pki.create("secp384r1", "secp256r1", slot=22)
    signer_key = key("secp256r1", 24)
    signer = make_cert(name("Master List Signer A"), signer_key, country_a.csca.subject, country_a.csca_key,
                       ca=False, serial=99, extended_key_usage=ML_EKU)  # fmt: skip
    return country_a, country_b, signer_key, signer


def test_self_anchored_master_list_is_refused_by_default(tmp_path: Path) -> None:
    """Signer and anchor both come from the list: anyone can build such a list."""
    country_a, country_b, signer_key, signer = ml_material()
    refusal = _refused(tmp_path, make_master_list(signer_key, signer, [country_a.csca, country_b.csca]),
                       "chains only to a CSCA the list carries itself")  # fmt: skip
    assert parse_certificate(der(country_a.csca)).fingerprint in str(refusal)
    assert "--accept-self-anchored" in refusal.hint


def test_self_anchored_master_list_with_explicit_consent(tmp_path: Path) -> None:
    country_a, country_b, signer_key, signer = ml_material()
    ml = tmp_path / "list.ml"
    ml.write_bytes(make_master_list(signer_key, signer, [country_a.csca, country_b.csca]))
    report = empty_store(tmp_path).import_file(ml, at=NOW, accept_self_anchored=True)
    assert report.kind == "master list"
    assert len(report.added) == 2
    assert report.anchored_in == "list"
    assert report.anchor_fingerprint == parse_certificate(der(country_a.csca)).fingerprint
    store = TrustStore.load(tmp_path / "store")
    checks = passive_authentication(country_b.sod(), DATA_GROUPS, store, NOW)
    assert decide(checks) is Verdict.VERIFIED


def test_master_list_anchored_in_the_store(tmp_path: Path) -> None:
    country_a, country_b, signer_key, signer = ml_material()
    csca = tmp_path / "a.der"
    csca.write_bytes(der(country_a.csca))
    empty_store(tmp_path).import_file(csca, at=NOW)
    ml = tmp_path / "list.ml"
    ml.write_bytes(make_master_list(signer_key, signer, [country_a.csca, country_b.csca]))
    report = TrustStore.load(tmp_path / "store").import_file(ml, at=NOW)
    assert (report.anchored_in, len(report.added), report.already_present) == ("store", 1, 1)


def test_master_list_reaches_the_store_through_its_link_certificate(tmp_path: Path) -> None:
    """CSCA rollover: the store holds the old CSCA; the list carries the new one and the link certificate, and
    its signer was issued by the new key. The path new -> link -> old ends in the store: no consent needed."""
    old_key, new_key, signer_key = key("secp256r1", 110), key("secp256r1", 111), key("secp256r1", 112)
    csca_name = name("CSCA ML ROLLOVER")
    old = make_cert(csca_name, old_key, csca_name, old_key, ca=True, serial=1)
    link = make_cert(csca_name, new_key, csca_name, old_key, ca=True, serial=2)
    new = make_cert(csca_name, new_key, csca_name, new_key, ca=True, serial=3)
    signer = make_cert(name("ML signer rollover"), signer_key, csca_name, new_key, ca=False, serial=4,
                       extended_key_usage=ML_EKU)  # fmt: skip
    (tmp_path / "old.der").write_bytes(der(old))
    empty_store(tmp_path).import_file(tmp_path / "old.der", at=NOW)
    ml = tmp_path / "list.ml"
    ml.write_bytes(make_master_list(signer_key, signer, [new, link]))
    report = TrustStore.load(tmp_path / "store").import_file(ml, at=NOW)
    assert (report.anchored_in, report.anchor_fingerprint) == ("store", parse_certificate(der(old)).fingerprint)
    assert sorted(e.kind for e in report.added) == ["CSCA", "link"]


def test_master_list_contradicting_an_installed_csca_is_refused_even_with_consent(tmp_path: Path) -> None:
    """The list carries a forged CSCA with the installed CSCA's name and key identifier; its signer names that
    key identifier. Self-anchored consent must not let it past the installed CSCA that did not sign it."""
    country_a, _, signer_key, _ = ml_material()
    (tmp_path / "a.der").write_bytes(der(country_a.csca))
    empty_store(tmp_path).import_file(tmp_path / "a.der", at=NOW)
    a_key_id = country_a.csca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    rogue_key = key("brainpoolP384r1", 113)
    assert isinstance(rogue_key, ec.EllipticCurvePrivateKey)
    assert isinstance(signer_key, ec.EllipticCurvePrivateKey)

    def claiming_a(subject: x509.Name, public_key: ec.EllipticCurvePublicKey,
                   *extensions: tuple[x509.ExtensionType, bool]) -> x509.Certificate:  # fmt: skip
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(country_a.csca.subject)
            .public_key(public_key).serial_number(3).not_valid_before(VALID_FROM).not_valid_after(VALID_TO)
            .add_extension(x509.AuthorityKeyIdentifier(a_key_id, None, None), critical=False)
        )  # fmt: skip
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(rogue_key, hashes.SHA256())

    forged_a = claiming_a(country_a.csca.subject, rogue_key.public_key(), (x509.SubjectKeyIdentifier(a_key_id), False),
                          (x509.BasicConstraints(ca=True, path_length=0), True))  # fmt: skip
    signer = claiming_a(name("ML signer claiming A"), signer_key.public_key(),
                        (x509.ExtendedKeyUsage(list(ML_EKU)), False))  # fmt: skip
    _refused(tmp_path, make_master_list(signer_key, signer, [forged_a]), "path to an installed CSCA is broken",
             store=TrustStore.load(tmp_path / "store"), accept_self_anchored=True)  # fmt: skip


def test_master_list_with_bad_signature_is_refused(tmp_path: Path) -> None:
    country_a, country_b, _signer_key, signer = ml_material()
    forged = make_master_list(key("secp256r1", 30), signer, [country_a.csca, country_b.csca])  # wrong key
    _refused(tmp_path, forged, "signature does not hold")


def test_master_list_with_changed_content_is_refused(tmp_path: Path) -> None:
    country_a, country_b, signer_key, signer = ml_material()
    good = make_master_list(signer_key, signer, [country_a.csca, country_b.csca])
    b_der = der(country_b.csca)
    start = good.index(b_der)
    tampered = bytearray(good)
    tampered[start + 200] ^= 0x01  # inside country B's certificate, inside the signed content
    _refused(tmp_path, bytes(tampered), "content was changed")


def test_master_list_signer_without_chain_is_refused(tmp_path: Path) -> None:
    country_a, country_b, signer_key, _ = ml_material()
    rogue = Pki.create(slot=40)
    signer = make_cert(name("Master List Signer X"), signer_key, rogue.csca.subject, rogue.csca_key,
                       ca=False, serial=5, extended_key_usage=ML_EKU)  # fmt: skip
    _refused(tmp_path, make_master_list(signer_key, signer, [country_a.csca, country_b.csca]),
             "does not chain to a CSCA")  # fmt: skip


def test_master_list_signer_without_ml_usage_is_refused(tmp_path: Path) -> None:
    country_a, _country_b, signer_key, _ = ml_material()
    signer = make_cert(name("Not a ML signer"), signer_key, country_a.csca.subject, country_a.csca_key,
                       ca=False, serial=6, extended_key_usage=(x509.ObjectIdentifier("1.3.6.1.5.5.7.3.4"),))
    _refused(tmp_path, make_master_list(signer_key, signer, [country_a.csca]), "not allowed to sign master lists")


def test_expired_master_list_signer_is_refused(tmp_path: Path) -> None:
    country_a, _, signer_key, _ = ml_material()
    signer = make_cert(name("Old ML signer"), signer_key, country_a.csca.subject, country_a.csca_key, ca=False,
                       serial=7, extended_key_usage=ML_EKU, not_after=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    _refused(tmp_path, make_master_list(signer_key, signer, [country_a.csca]), "valid only from")


def test_other_cms_content_is_not_a_master_list(tmp_path: Path) -> None:
    country_a, _, signer_key, signer = ml_material()
    _refused(tmp_path, make_master_list(signer_key, signer, [country_a.csca], content_type="2.23.136.1.1.1"),
             "is not a CSCA master list")  # fmt: skip


# --- link certificates -----------------------------------------------------------------------------------------


def test_link_certificate_chain() -> None:
    """CSCA key rollover: the store trusts the old CSCA and holds the link certificate (new key signed by the
    old one); a DS signed by the new key chains through it."""
    old_key, new_key = key("brainpoolP384r1", 50), key("brainpoolP384r1", 51)
    csca_name = name("CSCA ROLLOVER")
    old = make_cert(csca_name, old_key, csca_name, old_key, ca=True, serial=1)
    link = make_cert(csca_name, new_key, csca_name, old_key, ca=True, serial=2)
    new_self = make_cert(csca_name, new_key, csca_name, new_key, ca=True, serial=3)
    ds_key = key("brainpoolP256r1", 52)
    ds = make_cert(name("DS ROLLOVER"), ds_key, csca_name, new_key, ca=False, serial=8)
    pki = Pki(new_key, new_self, ds_key, ds)

    with_link = TrustStore.from_der([der(old), der(link)])
    assert {e.kind for e in with_link.entries()} == {"CSCA", "link"}
    checks = by_name(passive_authentication(pki.sod(), DATA_GROUPS, with_link, NOW))
    assert checks[DS_CHAIN].status is CheckStatus.PASSED
    assert checks[DS_CHAIN].detail["path_length"] == "2"
    assert checks[DS_CHAIN].detail["csca_fingerprint"] == parse_certificate(der(old)).fingerprint

    # The old key alone bears the DS's issuer name but did not sign it: failed, never "untrusted" (a forger can
    # claim any name); the reason says the link certificate may be what is missing.
    only_old = TrustStore.from_der([der(old)])
    chain = by_name(passive_authentication(pki.sod(), DATA_GROUPS, only_old, NOW))[DS_CHAIN]
    assert chain.status is CheckStatus.FAILED
    assert "link certificate is not installed" in chain.reason
    only_link = TrustStore.from_der([der(link)])  # a link certificate alone is no anchor
    assert by_name(passive_authentication(pki.sod(), DATA_GROUPS, only_link, NOW))[DS_CHAIN].status is (
        CheckStatus.ISSUER_NOT_TRUSTED
    )


def test_forged_link_certificate_is_refused_on_import(tmp_path: Path) -> None:
    old_key, new_key, rogue_key = key("secp256r1", 60), key("secp256r1", 61), key("secp256r1", 62)
    csca_name = name("CSCA LINK")
    old = tmp_path / "old.der"
    old.write_bytes(der(make_cert(csca_name, old_key, csca_name, old_key, ca=True)))
    store = empty_store(tmp_path)
    store.import_file(old, at=NOW)
    forged = tmp_path / "link.der"
    forged_cert = (
        x509.CertificateBuilder().subject_name(csca_name).issuer_name(csca_name).public_key(new_key.public_key())
        .serial_number(2).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(old_key.public_key()), critical=False)
        .sign(rogue_key, hashes.SHA256())
    )  # fmt: skip
    forged.write_bytes(der(forged_cert))
    with pytest.raises(TrustStoreError, match="did not"):
        TrustStore.load(tmp_path / "store").import_file(forged, at=NOW)


def test_genuine_link_certificate_is_imported_once_its_signer_is_there(tmp_path: Path) -> None:
    """Self-issued (subject == issuer name) but signed by the old CSCA's key: a link certificate, not a damaged
    self-signature. It needs the CSCA that signed it installed, or in the same file."""
    old_key, new_key = key("secp256r1", 63), key("secp256r1", 64)
    csca_name = name("CSCA LINK OK")
    old = make_cert(csca_name, old_key, csca_name, old_key, ca=True, serial=1)
    link = make_cert(csca_name, new_key, csca_name, old_key, ca=True, serial=2)
    _refused(tmp_path, der(link), "signed by .* which is not installed: import that CSCA first", file_name="link.der")

    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(old.public_bytes(Encoding.PEM) + link.public_bytes(Encoding.PEM))
    assert sorted(e.kind for e in empty_store(tmp_path / "together").import_file(bundle, at=NOW).added) == [
        "CSCA", "link"
    ]  # fmt: skip

    (tmp_path / "old.der").write_bytes(der(old))
    empty_store(tmp_path).import_file(tmp_path / "old.der", at=NOW)
    report = TrustStore.load(tmp_path / "store").import_file(tmp_path / "link.der", at=NOW)
    assert [(e.kind, e.fingerprint) for e in report.added] == [("link", parse_certificate(der(link)).fingerprint)]


# --- size limits -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [MAX_RSA_BITS + 8, 100_000])
def test_rsa_key_beyond_the_limit_is_refused(tmp_path: Path, bits: int) -> None:
    """The modulus is any odd number of that size: no key is generated, and none is ever used."""
    oversized = with_rsa_modulus_of(der(Pki.create(slot=92).csca), bits)
    assert parse_certificate(oversized).key_description == f"RSA {bits}"
    _refused(tmp_path, oversized, f"RSA key of {bits} bits is beyond any real signer", file_name="big-rsa.der")


@pytest.mark.parametrize("source", ["sparse", "endless"])
def test_file_beyond_the_size_limit_is_refused(tmp_path: Path, source: str) -> None:
    """A sparse file (no 16 MB written) and a device with no size at all: both stop one byte past the limit."""
    path = tmp_path / "huge.der"
    if source == "sparse":
        with path.open("wb") as handle:
            handle.truncate(MAX_IMPORT_BYTES + 1)
    else:
        path = Path("/dev/zero")
    with pytest.raises(TrustStoreError, match=f"{path}: larger than any trust-store file"):
        empty_store(tmp_path).import_file(path, at=NOW)
    assert not (tmp_path / "store").exists()


# --- CRLs ------------------------------------------------------------------------------------------------------


def test_crl_import_needs_its_csca(tmp_path: Path) -> None:
    pki = Pki.create(slot=70)
    crl = tmp_path / "list.crl"
    crl.write_bytes(make_crl(pki, (7,)))
    with pytest.raises(TrustStoreError, match="no installed CSCA signed this CRL"):
        empty_store(tmp_path).import_file(crl, at=NOW)
    csca = tmp_path / "csca.der"
    csca.write_bytes(der(pki.csca))
    empty_store(tmp_path).import_file(csca, at=NOW)
    assert TrustStore.load(tmp_path / "store").import_file(crl, at=NOW).kind == "CRL"
    store = TrustStore.load(tmp_path / "store")
    assert len(store.crls) == 1
    assert decide(passive_authentication(pki.sod(), DATA_GROUPS, store, NOW)) is Verdict.FAILED  # DS revoked




# --- fuzzing: refused with a reason, never an exception, never anything but genuine certificates added -----------


@cache
def _fuzz_material() -> tuple[bytes, bytes, frozenset[str]]:
    """A genuine master list, the CSCA its signer chains to, and the fingerprints the list may add."""
    country_a, country_b, signer_key, signer = ml_material()
    listed = [country_a.csca, country_b.csca]
    genuine = frozenset(parse_certificate(der(c)).fingerprint for c in listed)
    return make_master_list(signer_key, signer, listed), der(country_a.csca), genuine


def _import_outcome(data: bytes, *, suffix: str = ".der", installed: bytes | None = None,
                    accept_self_anchored: bool = False) -> ImportReport | None:  # fmt: skip
    """Import ``data`` into a fresh store (already holding ``installed``): the report, or None when refused."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if installed is not None:
            (directory / "installed.der").write_bytes(installed)
            TrustStore.load(directory / "store").import_file(directory / "installed.der", at=NOW)
        path = directory / f"input{suffix}"
        path.write_bytes(data)
        try:
            return TrustStore.load(directory / "store").import_file(path, at=NOW,
                                                                     accept_self_anchored=accept_self_anchored)
        except TrustStoreError:
            return None


def _corrupted(data: st.DataObject, genuine: bytes) -> bytes:
    position = data.draw(st.integers(0, len(genuine) - 1))
    mode = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if mode == "flip":
        return genuine[:position] + bytes([genuine[position] ^ data.draw(st.integers(1, 255))]) + \
            genuine[position + 1 :]
    if mode == "truncate":
        return genuine[:position]
    return genuine[:position] + data.draw(st.binary(min_size=1, max_size=8)) + genuine[position:]


@settings(max_examples=100, deadline=None)
@given(garbage=st.binary(max_size=300), suffix=st.sampled_from([".der", ".pem", ".crl", ".ml"]),
       armour=st.sampled_from([None, "CERTIFICATE", "CMS", "PKCS7", "X509 CRL"]))  # fmt: skip
def test_garbage_is_refused(garbage: bytes, suffix: str, armour: str | None) -> None:
    data = asn1_pem.armor(armour, garbage) if armour else garbage
    assert _import_outcome(data, suffix=suffix) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_master_list_adds_nothing_but_genuine_certificates(data: st.DataObject) -> None:
    master_list, anchor, genuine = _fuzz_material()
    in_store = data.draw(st.booleans())  # or self-anchored, with consent
    report = _import_outcome(_corrupted(data, master_list), installed=anchor if in_store else None,
                             accept_self_anchored=not in_store)  # fmt: skip
    assert report is None or {e.fingerprint for e in report.added} <= genuine


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_csca_is_refused(data: st.DataObject) -> None:
    """Any change to a self-signed CSCA (generated, or the real Vietnamese one with explicit parameters)."""
    sources = ["generated", "vietnam"] if VN_CSCA_PEM.exists() else ["generated"]
    genuine = _genuine_csca(data.draw(st.sampled_from(sources)))
    assert _import_outcome(_corrupted(data, genuine)) is None


# --- the command line ------------------------------------------------------------------------------------------


@needs_vn_csca
def test_cli_import_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from edge.cli import main

    monkeypatch.setenv("CCCD_EDGE_TRUST_DIR", str(tmp_path / "store"))
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    assert main(["trust", "import", str(VN_CSCA_PEM), str(junk)]) == 1
    out = capsys.readouterr().out
    assert f"+ CSCA {VN_FINGERPRINT}" in out
    assert f"REFUSED {junk}" in out
    assert main(["trust", "list"]) == 0
    out = capsys.readouterr().out
    assert "1 certificates" in out
    assert "EC brainpoolP512r1 (512 bits, explicit parameters); 2022-06-29 .. 2037-10-01" in out
    assert main(["trust", "list", "--store", str(tmp_path / "elsewhere")]) == 0
    assert "0 certificates" in capsys.readouterr().out


def test_cli_self_anchored_master_list_needs_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main

    country_a, country_b, signer_key, signer = ml_material()
    ml = tmp_path / "list.ml"
    ml.write_bytes(make_master_list(signer_key, signer, [country_a.csca, country_b.csca]))
    store = str(tmp_path / "store")
    assert main(["trust", "import", "--store", store, str(ml)]) == 1
    out = capsys.readouterr().out
    assert f"REFUSED {ml}: the master list signer chains only to a CSCA the list carries itself" in out
    assert "import the list as self-anchored (cccd-edge trust import --accept-self-anchored)" in out
    assert not (tmp_path / "store").exists()

    assert main(["trust", "import", "--store", store, "--accept-self-anchored", str(ml)]) == 0
    out = capsys.readouterr().out
    anchor = parse_certificate(der(country_a.csca)).fingerprint
    assert f"WARNING {ml} is SELF-ANCHORED" in out
    assert f"compare its anchor CSCA SHA-256 {anchor}" in out
    assert out.count("+ CSCA") == 2


# --- hostile path constructions: bounded work, counted in signature checks ---------------------------------------


@cache
def loop_of(count: int) -> LinkLoop:
    return link_loop(count)


@pytest.mark.parametrize("count", [3, 28, 120])
def test_link_certificates_in_a_loop_are_refused_at_import(tmp_path: Path, count: int) -> None:
    """Each verifies under another, none reaches a CSCA: a master list of them and a PEM bundle of them are both
    refused, and nothing enters the store (admission grows from anchors, so a loop costs no signature check)."""
    loop = loop_of(count)
    _refused(tmp_path, loop.master_list(), "does not chain|broken|none led to a CSCA")
    bundle = b"".join(asn1_pem.armor("CERTIFICATE", der) for der in loop.links)
    _refused(tmp_path, bundle, "reaches no CSCA|not installed", file_name="loop.pem")


@pytest.mark.parametrize("count", [3, 28, 400])
def test_path_search_through_a_loop_is_bounded(count: int) -> None:
    """A store that holds a loop (written there by hand: import refuses it) costs at most the search budget, and
    each (certificate, issuer) pair is checked once: 3 links cost 3 checks, not a walk round and round."""
    loop = loop_of(count)
    authorities = tuple(parse_certificate(der) for der in loop.links)
    result = build_chain(parse_certificate(loop.signer_der), authorities, frozenset(), NOW)
    # untrusted when the search saw that a loop member signed it, broken when the budget ran out first
    assert result.status in ("untrusted", "broken")
    assert result.signature_checks <= min(count * count, MAX_SIGNATURE_CHECKS)


def test_a_key_identifier_never_hides_the_installed_namesake() -> None:
    """A DS naming the installed CSCA but carrying its own key identifier, or none, is checked against that CSCA
    all the same: failed, not 'issuer unknown'."""
    pki = Pki.create(slot=130)
    rogue_key = key("brainpoolP384r1", 132)
    for key_id in ("own", "none"):
        builder = (
            x509.CertificateBuilder().subject_name(name("DS ROGUE")).issuer_name(pki.csca.subject)
            .public_key(pki.ds_key.public_key()).serial_number(9).not_valid_before(VALID_FROM)
            .not_valid_after(VALID_TO)
        )  # fmt: skip
        if key_id == "own":
            builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                rogue_key.public_key()), critical=False)
        rogue = parse_certificate(der(builder.sign(rogue_key, hashes.SHA256())))
        result = pki.store().chain(rogue, NOW)
        assert result.status == "broken", key_id
        assert "did not sign this certificate" in result.reason
