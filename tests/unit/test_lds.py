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

# --- BSI TR-03105-5 reference data set (fictitious test passport "ERIKA MUSTERMANN"), public test data --------
# An outside truth for the parsers: a real RSASSA-PSS SOD, a TD3 DG1, a DG14 with explicit brainpoolP224r1
# parameters and an RSA DG15, all produced by someone else's encoder.

BSI_SOD = bytes.fromhex(
    "7782078A3082078606092A864886F70D010702A082077730820773020103310F300D060960864801650304020105003081E9060667810801"
    "0101A081DE0481DB3081D8020100300D060960864801650304020105003081C3302502010104204170CA879FCE6A22FFEF1567FF88079F41"
    "5C66EAD250AB5F23781AC2CDBF42B630250201020420A9A1B09DFD598087AB3FCE4AE2EC65B1A1525BD258BFC27DF4419F8A65E547453025"
    "0201030420403E4D17C26EBC832411898161D8FD5D99C58EE865CB3759B529AA782C7EDE00302502010E0420CF5004FFCCD64E1A8BD3A42F"
    "D53814EC3D4481640BE1906D0ECFEB016EF6A6AE302502010404204C7A0F0DDAA473123834F1B0713ED9453D1D1D58BCE447FB1736D40A07"
    "61C17BA08204653082046130820295A00302010202060142FD5CF927304106092A864886F70D01010A3034A00F300D060960864801650304"
    "02010500A11C301A06092A864886F70D010108300D06096086480165030402010500A2030201203053310B30090603550406130244453117"
    "3015060355040A0C0E484A5020436F6E73756C74696E6731173015060355040B0C0E436F756E747279205369676E65723112301006035504"
    "030C09484A50205042204353301E170D3133313231363231343331385A170D3134313231313231343331385A3054310B3009060355040613"
    "02444531173015060355040A0C0E484A5020436F6E73756C74696E6731183016060355040B0C0F446F63756D656E74205369676E65723112"
    "301006035504030C09484A5020504220445330820122300D06092A864886F70D01010105000382010F003082010A02820101009E7CBB0653"
    "77041232915A044DD3ADC2199AD4C14BC8E58C24A899DBD62A984EEAE2A0006C1D53439246A67A9964D759BC7B9426CE6C4C078363306CF6"
    "6645F12F39D950FE2C04100E6FF53C310B52F74CD1ED89931496F376D384AB604A570129445F015FCC3595E161B7C591CB5206BC16477D8C"
    "DEC09480DBF6262696F62970DA0978807DBA330EE777BF54D471AE1EB257090F1379E198A2D1503344847347BE46764FA00C4E93BACD3214"
    "3B2E04C6C369CECE7943FD414521849533F9CDB985E42767F1DD792E7EFED3651E3C75DF868FA2101DF45CD5D3D955B23A88DD30A752F4FB"
    "9F4E84B518E0CA0F8F2BACE65D61F98115A0EA88DD3A3416017CA30203010001A3523050301F0603551D230418301680141E4D57560C1290"
    "2366A8FDE11408A37F70EB7D65301D0603551D0E04160414831C30BE878FDF57273010E5B38950E576F7B08A300E0603551D0F0101FF0404"
    "03020780304106092A864886F70D01010A3034A00F300D06096086480165030402010500A11C301A06092A864886F70D010108300D060960"
    "86480165030402010500A20302012003820181002984DC43028839BB24786A4C9C9C37E76368FF6264707970E5B00F7934840904ED90E34B"
    "018D5D634D7536E49AFE7B0E872F5D093E6D11BF31C910686A9106F9F773F59C57AEFF983DE6335B5CB403E0FF7D3055F09948878F8BE1BC"
    "184F2A03C82C14097FC19DEDDCCF61A2EAE6F8BF1A64BE4C0253CE0BC35AD41E10D6FF08C1EE872349E8D02A722F48144CAB665D0FADF9DB"
    "3B36BFB2B15AE4A3B13DC4CF64133B599CDB3AF8A365AC6228096899FEA8D56A24F90DA72B3E95B97FD82C4B8EF9CBB499C3D9F09053A5FD"
    "DD51E94A13A004530D74F7DD1B0C88163F9BFA098923DC81D247D75E33CAC3C7E27AEAC627B99AB18E6B03D38260E2DCCFA1D638D1761477"
    "3BC13EBA0D53E2E3E9A202E0742C25DF471072CDA2A88BA2B25648970BC31132DE84F702ABBC98740B4FEE7C66CD149755A763B801DCF9DC"
    "1B52191A3ACC514244C51D297F35E5AEA328B8641B33D54DC7C50D2466F9DDDCE98A75F276D48D614B6C4FA675C2017824BED7CC27B46FCB"
    "E5B82CE4B433E34AAED2EBEE3182020630820202020101305D3053310B300906035504061302444531173015060355040A0C0E484A502043"
    "6F6E73756C74696E6731173015060355040B0C0E436F756E747279205369676E65723112301006035504030C09484A502050422043530206"
    "0142FD5CF927300D06096086480165030402010500A048301506092A864886F70D01090331080606678108010101302F06092A864886F70D"
    "01090431220420B46A0D05E280F398EFEEEBFF67E78C736ADD15E75670B1AD4C6C534E8187B9D6304106092A864886F70D01010A3034A00F"
    "300D06096086480165030402010500A11C301A06092A864886F70D010108300D06096086480165030402010500A203020120048201007611"
    "06E9FBD2ED1B2F75027DAF13975A4C7ADFC54D675D2DD2BBA762BC073D9288AF4B1B87BA7987D53FA1D321D1943F58573F4913424E2BCDD0"
    "80C2D8927A985BE2BDCAF6B8FE21EC99D8227F052ED118B7EAE6029F57889CA723912076916355068EBBCF46F19C3FBB49DCF1E9F3B10DF1"
    "1E270FAC11BC6D1E3C5ADF68E0E46381A45F737E91EE9F889DB6D418AA2C6C3213C47FBC2787F0134384B343CC921A9A03878EBA79BA0090"
    "1115495942C3E7B0E4DA09E0916C172228AD28D9DBEC915F32E58D7431480443030C2C3D1DEF840223FED41A92C5B30AA2CE9ED346CBB8BB"
    "172A2EFF73E0B8CFEC89071A07DC62627421F808DA541A58A1A572E7583F"
)
BSI_DG1 = bytes.fromhex(
    "615B5F1F58503C443C3C4D55535445524D414E4E3C3C4552494B413C3C3C3C3C3C3C3C3C3C3C3C3C3C3C3C3C3C3C3C3C3C43313154303032"
    "4A4D34443C3C3936303831323246323331303331343C3C3C3C3C3C3C3C3C3C3C3C3C3C3C34"
)
BSI_DG14 = bytes.fromhex(
    "6E82014A3182014630820122060904007F000702020102308201133081D406072A8648CE3D02013081C8020101302806072A8648CE3D0101"
    "021D00D7C134AA264366862A18302575D1D787B09F075797DA89F57EC8C0FF303C041C68A5E62CA9CE6C1C299803A6C1530B514E182AD8B0"
    "042A59CAD29F43041C2580F63CCFE44138870713B1A92369E33E2135D266DBB372386C400B0439040D9029AD2C7E5CF4340823B2A87DC68C"
    "9E4CE3174C1E6EFDEE12C07D58AA56F772C0726F24C6B89E4ECDAC24354B9E99CAA3F6D3761402CD021D00D7C134AA264366862A18302575"
    "D0FB98D116BC4B6DDEBCA3A5A7939F020101033A0004A847F020F71DF33D386BE7C9223A354D6AC7727018B26E281C6FFB96A83B142AAF30"
    "3C23F2BCF2CDE4706C14E45914A9BE42C15BCB67A01F300F060A04007F00070202030201020101300D060804007F0007020202020101"
)
BSI_DG15 = bytes.fromhex(
    "6F81A230819F300D06092A864886F70D010101050003818D00308189028181008130E120BB785A45D8D87E6F1A89EF4C6B655A555F58887D"
    "C6F78C293E71B028621B464C7B3123DF8896449ACB2A6E0219B7A43141BA617AE0E94CB5372EB6D964A1DBF2A43BD0CE659E962AC2CE9CED"
    "F681CA1E3C74EA23C62D9ABFB81371D2602E39162EB578F9DED459C758EFD6A27A755B8C0E0E31E040D4D37A276939090203010001"
)


def test_bsi_reference_sod() -> None:
    sod = parse_sod(BSI_SOD)
    assert (sod.hash_algorithm, sod.digest_algorithm, sod.lds_version) == ("sha256", "sha256", None)
    assert sorted(sod.dg_hashes) == [1, 2, 3, 4, 14]
    assert sod.dg_hashes[1] == hashlib.sha256(BSI_DG1).digest()
    assert sod.dg_hashes[14] == hashlib.sha256(BSI_DG14).digest()
    assert sod.message_digest == hashlib.sha256(sod.encap_content).digest()
    assert sod.signature_algorithm_oid == "1.2.840.113549.1.1.10"  # RSASSA-PSS
    assert sod.signer_serial == 0x0142FD5CF927
    assert sod.signed_attrs_der is not None
    public = x509.load_der_x509_certificate(sod.certificates[0]).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(sod.signature, sod.signed_attrs_der, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


def test_bsi_reference_data_groups() -> None:
    mrz = parse_dg1(BSI_DG1).mrz
    assert (mrz.format, mrz.document_number, mrz.primary_identifier, mrz.secondary_identifier) == (
        "TD3", "C11T002JM", "MUSTERMANN", "ERIKA")  # fmt: skip
    assert mrz.mrz_information() == "C11T002JM496081222310314"
    dg14 = parse_dg14(BSI_DG14)
    assert dg14.protocol_oids == (ID_PK_ECDH, "0.4.0.127.0.7.2.2.3.2.1", ID_TA)
    (ca_key,) = dg14.security_infos.chip_authentication_keys
    with pytest.raises(PublicKeyFormatError, match=r"1\.3\.36\.3\.3\.2\.8\.1\.1\.5 is not supported"):
        load_public_key(ca_key.subject_public_key_info)  # brainpoolP224r1: recognised, but not in `cryptography`
    dg15 = parse_dg15(BSI_DG15).public_key
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
    "sod-bsi": (parse_sod, BSI_SOD),
    "dg14-bsi": (parse_dg14, BSI_DG14),
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
