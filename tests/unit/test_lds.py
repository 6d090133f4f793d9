"""LDS files other than DG13: EF.COM, DG1, DG2, DG14, DG15 and EF.SOD, encoded, parsed and fuzzed."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edge.errors import LdsError, PublicKeyFormatError
from edge.protocol import tlv
from edge.protocol.keys import explicit_spki, load_public_key
from edge.protocol.lds.com import encode_com, parse_com
from edge.protocol.lds.dg1 import encode_dg1, parse_dg1
from edge.protocol.lds.dg2 import encode_dg2, image_size, parse_dg2
from edge.protocol.lds.dg11 import Dg11, encode_dg11, parse_dg11
from edge.protocol.lds.dg12 import Dg12, encode_dg12, parse_dg12
from edge.protocol.lds.dg14 import ID_CA_ECDH_AES_CBC_CMAC_128, ID_PK_ECDH, ID_TA, encode_dg14, parse_dg14
from edge.protocol.lds.dg15 import encode_dg15, parse_dg15
from edge.protocol.lds.sod import LDS_SECURITY_OBJECT_OID, encode_sod, parse_sod
from tests.vectors import bsi_tr03105 as bsi

CCCD_MRZ = "IDVNM2030123450079203012345<<00302014M2802013VNM<<<<<<<<<<<4NGUYEN<<VAN<AN<<<<<<<<<<<<<<<<"
TD3_MRZ = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<L898902C36UTO7408122F1204159ZE184226B<<<<<10"


def _jpeg(width: int = 60, height: int = 80) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 150, 120)).save(buffer, "JPEG")
    return buffer.getvalue()


def _signer(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"), x509.NameAttribute(NameOID.COMMON_NAME, "DS")])
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(4242).not_valid_before(dt.datetime(2020, 1, 1)).not_valid_after(dt.datetime(2040, 1, 1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip


# --- EF.COM ----------------------------------------------------------------------------------------------------


def test_com_icao_vector() -> None:
    com = parse_com(bytes.fromhex("60145F0104303130365F36063034303030305C026175"))
    assert (com.lds_version, com.unicode_version, com.data_groups) == ("0106", "040000", (1, 2))


def test_com_round_trip() -> None:
    com = parse_com(encode_com([1, 2, 13, 14, 15]))
    assert com.data_groups == (1, 2, 13, 14, 15)
    assert com.lds_version == "0107"


# --- DG1 -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [CCCD_MRZ, TD3_MRZ])
def test_dg1_round_trip(text: str) -> None:
    encoded = encode_dg1(text)
    assert encoded[:1] == b"\x61"
    dg1 = parse_dg1(encoded)
    assert dg1.mrz.text == text
    assert encode_dg1(dg1.mrz.text) == encoded


def test_dg1_bad_check_digit_is_lds_error() -> None:
    broken = tlv.encode(0x61, tlv.encode(0x5F1F, (CCCD_MRZ[:14] + "9" + CCCD_MRZ[15:]).encode()))
    with pytest.raises(LdsError, match="document number") as info:
        parse_dg1(broken)
    assert info.value.what == "DG1"


# --- DG2 -------------------------------------------------------------------------------------------------------


def test_dg2_round_trip_jpeg() -> None:
    jpeg = _jpeg(60, 80)
    face = parse_dg2(encode_dg2(jpeg))
    assert (face.image, face.mime, face.width, face.height) == (jpeg, "image/jpeg", 60, 80)


def test_dg2_jpeg2000() -> None:
    jp2 = (
        b"\x00\x00\x00\x0cjP  \r\n\x87\n"
        + b"\x00\x00\x00\x2djp2h\x00\x00\x00\x16ihdr"
        + ((120).to_bytes(4, "big") + (90).to_bytes(4, "big") + b"\x00\x03\x07\x07\x00\x00")
    )
    face = parse_dg2(encode_dg2(jp2))
    assert (face.mime, face.width, face.height) == ("image/jp2", 90, 120)


def test_dg2_iso39794_tag_based() -> None:
    """39794-5 nests the image deep in context-specific tags; the parser finds it without the full schema."""
    jpeg = _jpeg(32, 48)
    representation = tlv.encode_constructed(0xA1, tlv.encode_constructed(0xA0, tlv.encode(0x80, jpeg)))
    block = tlv.encode_constructed(0x7F2E, tlv.encode_constructed(0xA0, tlv.encode(0x80, b"\x00")), representation)
    bit = tlv.encode_constructed(0x7F60, tlv.encode_constructed(0xA1, tlv.encode(0x87, b"\x01\x01")), block)
    dg2 = tlv.encode(0x75, tlv.encode_constructed(0x7F61, tlv.encode(0x02, b"\x01"), bit))
    face = parse_dg2(dg2)
    assert (face.image, face.width, face.height) == (jpeg, 32, 48)


def test_image_size_rejects_other_formats() -> None:
    with pytest.raises(LdsError):
        image_size(b"GIF89a....")


# --- DG14 / DG15 -----------------------------------------------------------------------------------------------


def test_dg14_round_trip() -> None:
    public = ec.generate_private_key(ec.BrainpoolP256R1()).public_key()
    dg14 = parse_dg14(encode_dg14(public))
    assert set(dg14.protocol_oids) == {ID_CA_ECDH_AES_CBC_CMAC_128, ID_PK_ECDH, ID_TA}
    assert dg14.security_infos_der[:1] == b"\x31"
    explicit = parse_dg14(encode_dg14(explicit_spki(public), key_id=1))
    assert len(explicit.protocol_oids) == 3


@pytest.mark.parametrize("kind", ["rsa", "ec", "ec-explicit"])
def test_dg15_round_trip(kind: str) -> None:
    public: Any
    if kind == "rsa":
        public = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 (chip AA keys are 1024-bit)
        encoded = encode_dg15(public)
    else:
        public = ec.generate_private_key(ec.BrainpoolP256R1()).public_key()
        encoded = encode_dg15(explicit_spki(public) if kind == "ec-explicit" else public)
    assert parse_dg15(encoded).public_key.public_numbers() == public.public_numbers()


# --- DG11 / DG12 ----------------------------------------------------------------------------------------------

DG11 = Dg11(
    full_name="ERIKSSON<<ANNA<MARIA",
    other_names=("ERIKSSON<<ANNA", "SVENSSON<<ANNA<MARIA"),
    personal_number="ZE184226B",
    full_date_of_birth="19740812",
    place_of_birth="ZENITH,UTOPIA",
    permanent_address="123 MAPLE RD<ANYTOWN<MN",
    proof_of_citizenship=b"\xff\xd8\xff\xd9",
    unknown={0x5F50: b"x"},
)
DG12 = Dg12(issuing_authority="UTOPIA", date_of_issue="20020531", other_names=("SMITH<<JOHN",),
            image_of_front=b"\x00\x01", personalization_time="20020531123000")  # fmt: skip


def test_dg11_dg12_round_trip() -> None:
    encoded = encode_dg11(DG11)
    assert encoded[:1] == b"\x6b"
    assert parse_dg11(encoded) == DG11
    assert parse_dg12(encode_dg12(DG12)) == DG12


def test_dg11_other_names_count_mismatch() -> None:
    names = tlv.encode_constructed(0xA0, tlv.encode(0x02, b"\x02"), tlv.encode(0x5F0F, b"A<<B"))
    with pytest.raises(LdsError, match="count"):
        parse_dg11(tlv.encode_constructed(0x6B, tlv.encode(0x5C, b"\xa0"), names))


# --- EF.SOD ----------------------------------------------------------------------------------------------------

DGS = {1: encode_dg1(CCCD_MRZ), 13: b"\x6d\x03\x30\x01\x00", 14: b"\x6e\x02\x31\x00"}


@pytest.mark.parametrize(
    ("key_kind", "hash_algorithm", "pss"),
    [("ec", "sha256", False), ("ec", "sha1", False), ("ec", "sha512", False), ("rsa", "sha256", False),
     ("rsa", "sha384", True)],
)  # fmt: skip
def test_sod_round_trip_and_signature(key_kind: str, hash_algorithm: str, pss: bool) -> None:
    key: Any = (
        ec.generate_private_key(ec.BrainpoolP256R1())
        if key_kind == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (chip AA keys are 1024-bit)
    )
    cert = _signer(key)
    sod = parse_sod(encode_sod(DGS, hash_algorithm=hash_algorithm, signer_key=key, signer_cert=cert, rsa_pss=pss))
    assert sod.hash_algorithm == sod.digest_algorithm == hash_algorithm
    assert dict(sod.dg_hashes) == {n: hashlib.new(hash_algorithm, c).digest() for n, c in DGS.items()}
    assert sod.message_digest == hashlib.new(hash_algorithm, sod.encap_content).digest()
    assert sod.signed_attrs_der is not None
    assert sod.signed_attrs_der[:1] == b"\x31"
    assert sod.certificates == (cert.public_bytes(Encoding.DER),)
    assert sod.signer_serial == 4242
    assert sod.signer_issuer_der == cert.issuer.public_bytes()
    assert sod.lds_version is None
    hash_cls = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
    algorithm = hash_cls[hash_algorithm]()
    if key_kind == "ec":
        assert sod.signature_algorithm_oid.startswith("1.2.840.10045.4.")
        key.public_key().verify(sod.signature, sod.signed_attrs_der, ec.ECDSA(algorithm))
    elif pss:
        assert sod.signature_algorithm_oid == "1.2.840.113549.1.1.10"
        assert sod.signature_parameters_der is not None
        key.public_key().verify(
            sod.signature, sod.signed_attrs_der, padding.PSS(padding.MGF1(algorithm), algorithm.digest_size), algorithm
        )
    else:
        assert sod.signature_parameters_der is None
        key.public_key().verify(sod.signature, sod.signed_attrs_der, padding.PKCS1v15(), algorithm)


def test_sod_lds_version_and_content_type() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = encode_sod(DGS, signer_key=key, signer_cert=_signer(key), lds_version="0108")
    assert parse_sod(raw).lds_version == "0108"
    assert bytes.fromhex("0606678108010101") in raw  # eContentType 2.23.136.1.1.1
    assert LDS_SECURITY_OBJECT_OID == "2.23.136.1.1.1"


def test_sod_wrong_outer_tag() -> None:
    with pytest.raises(LdsError, match="outer tag"):
        parse_sod(tlv.encode(0x76, b"\x30\x00"))


# --- BSI TR-03105-5 reference data set (tests/vectors/bsi_tr03105.py): someone else's encoder -----------------


def test_bsi_reference_sod() -> None:
    sod = parse_sod(bsi.SOD)
    assert (sod.hash_algorithm, sod.digest_algorithm, sod.lds_version) == ("sha256", "sha256", None)
    assert sorted(sod.dg_hashes) == [1, 2, 3, 4, 14]
    assert sod.dg_hashes[1] == hashlib.sha256(bsi.DG1).digest()
    assert sod.dg_hashes[14] == hashlib.sha256(bsi.DG14).digest()
    assert sod.message_digest == hashlib.sha256(sod.encap_content).digest()
    assert sod.signature_algorithm_oid == "1.2.840.113549.1.1.10"  # RSASSA-PSS
    assert sod.signer_serial == 0x0142FD5CF927
    assert sod.signed_attrs_der is not None
    public = x509.load_der_x509_certificate(sod.certificates[0]).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(sod.signature, sod.signed_attrs_der, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


def test_bsi_reference_data_groups() -> None:
    mrz = parse_dg1(bsi.DG1).mrz
    assert (mrz.format, mrz.document_number, mrz.primary_identifier, mrz.secondary_identifier) == (
        "TD3", "C11T002JM", "MUSTERMANN", "ERIKA")  # fmt: skip
    assert mrz.mrz_information() == "C11T002JM496081222310314"
    dg14 = parse_dg14(bsi.DG14)
    assert dg14.protocol_oids == (ID_PK_ECDH, "0.4.0.127.0.7.2.2.3.2.1", ID_TA)
    (ca_key,) = dg14.security_infos.chip_authentication_keys
    with pytest.raises(PublicKeyFormatError, match=r"1\.3\.36\.3\.3\.2\.8\.1\.1\.5 is not supported"):
        load_public_key(ca_key.subject_public_key_info)  # brainpoolP224r1: recognised, but not in `cryptography`
    dg15 = parse_dg15(bsi.DG15).public_key
    assert isinstance(dg15, rsa.RSAPublicKey)
    assert dg15.key_size == 1024


# --- fuzzing ---------------------------------------------------------------------------------------------------

_EC_KEY = ec.generate_private_key(ec.BrainpoolP256R1())
_VALID: dict[str, tuple[Callable[[bytes], object], bytes]] = {
    "com": (parse_com, encode_com([1, 2, 13, 14])),
    "dg1": (parse_dg1, encode_dg1(CCCD_MRZ)),
    "dg2": (parse_dg2, encode_dg2(_jpeg(16, 16))),
    "dg11": (parse_dg11, encode_dg11(DG11)),
    "dg12": (parse_dg12, encode_dg12(DG12)),
    "dg14": (parse_dg14, encode_dg14(_EC_KEY.public_key())),
    "dg15": (parse_dg15, encode_dg15(explicit_spki(_EC_KEY.public_key()))),
    "sod-bsi": (parse_sod, bsi.SOD),
    "dg14-bsi": (parse_dg14, bsi.DG14),
    "sod": (parse_sod, encode_sod(DGS, signer_key=_EC_KEY, signer_cert=_signer(_EC_KEY))),
}


@pytest.mark.parametrize("name", sorted(_VALID))
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=120))
def test_fuzz_random_bytes(name: str, data: bytes) -> None:
    parser, valid = _VALID[name]
    for candidate in (data, valid[:2] + data):
        with contextlib.suppress(LdsError):
            parser(candidate)


@pytest.mark.parametrize("name", sorted(_VALID))
@settings(max_examples=120, deadline=None)
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255), cut=st.integers(min_value=1))
def test_fuzz_mutations(name: str, position: int, value: int, cut: int) -> None:
    parser, valid = _VALID[name]
    position %= len(valid)
    mutated = (valid[:position] + bytes((value,)) + valid[position + 1 :])[: cut % (len(valid) + 1) or 1]
    with contextlib.suppress(LdsError):
        parser(mutated)
