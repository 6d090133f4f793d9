"""Public keys with explicit EC parameters: the real Vietnamese CSCA and generated brainpool/NIST keys."""

from __future__ import annotations

import contextlib

import pytest
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import PublicKeyFormatError
from edge.protocol.keys import certificate_public_key, explicit_spki, load_public_key, named_curve_for
from tests.support.paths import VN_CSCA_PEM

CURVES = [ec.BrainpoolP256R1(), ec.BrainpoolP384R1(), ec.BrainpoolP512R1(), ec.SECP256R1(), ec.SECP384R1()]


@pytest.fixture(scope="module")
def vn_csca_der() -> bytes:
    if not VN_CSCA_PEM.is_file():
        pytest.skip(f"{VN_CSCA_PEM} is absent")
    _, _, der = pem.unarmor(VN_CSCA_PEM.read_bytes())
    return bytes(der)


def test_vn_csca_explicit_brainpool512(vn_csca_der: bytes) -> None:
    key = certificate_public_key(vn_csca_der)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "brainpoolP512r1"


def test_vn_csca_self_signature_verifies(vn_csca_der: bytes) -> None:
    """The rebuilt key is the real one: the certificate's own ecdsa-with-SHA512 signature verifies with it."""
    key = certificate_public_key(vn_csca_der)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    cert = asn1_x509.Certificate.load(vn_csca_der)
    assert cert["signature_algorithm"]["algorithm"].native == "sha512_ecdsa"
    key.verify(cert["signature_value"].native, cert["tbs_certificate"].dump(), ec.ECDSA(hashes.SHA512()))


def test_vn_csca_pem_accepted(vn_csca_der: bytes) -> None:
    from_pem = certificate_public_key(VN_CSCA_PEM.read_bytes())
    from_der = certificate_public_key(vn_csca_der)
    assert isinstance(from_pem, ec.EllipticCurvePublicKey)
    assert isinstance(from_der, ec.EllipticCurvePublicKey)
    assert from_pem.public_numbers() == from_der.public_numbers()


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_explicit_parameters_round_trip(curve: ec.EllipticCurve) -> None:
    public = ec.generate_private_key(curve).public_key()
    loaded = load_public_key(explicit_spki(public))
    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    assert loaded.curve.name == curve.name
    assert loaded.public_numbers() == public.public_numbers()


def test_named_rsa_and_ec_load_directly() -> None:
    rsa_public = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 (chip AA keys are 1024-bit)
    loaded = load_public_key(rsa_public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    assert isinstance(loaded, rsa.RSAPublicKey)
    ec_public = ec.generate_private_key(ec.BrainpoolP256R1()).public_key()
    assert isinstance(load_public_key(ec_public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)),
                      ec.EllipticCurvePublicKey)  # fmt: skip


def test_unknown_explicit_curve_is_rejected() -> None:
    public = ec.generate_private_key(ec.BrainpoolP256R1()).public_key()
    spki = bytearray(explicit_spki(public))
    index = spki.index(bytes.fromhex("A9FB57DBA1EEA9BC"))  # start of brainpoolP256r1's p
    spki[index + 31] ^= 0x02
    with pytest.raises(PublicKeyFormatError):
        load_public_key(bytes(spki))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_load_public_key(data: bytes) -> None:
    with contextlib.suppress(PublicKeyFormatError):
        load_public_key(data)


_EXPLICIT = explicit_spki(ec.generate_private_key(ec.BrainpoolP256R1()).public_key())


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(_EXPLICIT) - 1), st.integers(min_value=0, max_value=255))
def test_fuzz_explicit_mutations(position: int, value: int) -> None:
    with contextlib.suppress(PublicKeyFormatError):
        load_public_key(_EXPLICIT[:position] + bytes((value,)) + _EXPLICIT[position + 1 :])


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_certificate_public_key(data: bytes) -> None:
    with contextlib.suppress(PublicKeyFormatError):
        certificate_public_key(data)


@settings(max_examples=200, deadline=None)
@given(p=st.integers(0, 2**600), a=st.integers(0, 2**600), b=st.integers(0, 2**600),
       base=st.binary(max_size=140), order=st.integers(0, 2**600))  # fmt: skip
def test_hostile_explicit_parameters_end_in_a_typed_error(p: int, a: int, b: int, base: bytes, order: int) -> None:
    with pytest.raises(PublicKeyFormatError):
        named_curve_for(p, a, b, base, order)


def test_a_forged_compressed_base_point_on_a_known_curve_is_refused() -> None:
    p = 2**224 - 2**96 + 1  # P-224: p = 1 mod 4, so decoding takes Tonelli-Shanks, which fails for a non-residue
    curve_b = 0xB4050A850C04B3ABF54132565044B0B7D7BFD8BA270B39432355FFB4
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFF16A2E0B8F03E13DD29455C5C2A3D
    for x in range(2, 12):  # not the generator's abscissa; for some of these no point has it at all
        with pytest.raises(PublicKeyFormatError):
            named_curve_for(p, p - 3, curve_b, b"\x02" + x.to_bytes(28, "big"), order)


def test_an_ec_key_without_curve_parameters_is_a_typed_error() -> None:
    """Found by bench/fuzz.py (a hostile chip's DG15): id-ecPublicKey with its parameters left out made asn1crypto
    answer Void, whose missing ``name`` escaped as AttributeError through read_chip."""
    spki = bytes.fromhex(
        "304f300906072a8648ce3d0201034200044263b05f7e27c561d3d5a862acdf8aebe48a0f47bc82a2b21927d512f66cde97824ae9"
        "f8e14b0877c2f5b5e55e53ce317bda88d46bb16ec0ebc4b082765abaaa")  # fmt: skip
    with pytest.raises(PublicKeyFormatError, match="malformed public key"):
        load_public_key(spki)
