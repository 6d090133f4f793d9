"""Profile -> virtual card: every LDS file encoded by the protocol layer's own encoders and signed by the test PKI.

Chip keys are derived from the profile name and a seed (EC) or cached in the PKI directory (RSA), so a given
profile yields the same card, and the same CAN/MRZ/keys, across runs. Forgery options change exactly one thing
each, so a verifier test can name the check that must fail.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import random
import tempfile
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from ecdsa import curves as ecdsa_curves
from PIL import Image, ImageDraw

from edge.files import private_key_pem
from edge.protocol import tlv
from edge.protocol.access.card_access import ID_CA_ECDH_AES_CBC_CMAC_128, ID_PACE_ECDH_GM_AES_CBC_CMAC_128, ID_TA
from edge.protocol.iso7816 import SW_SECURITY_STATUS
from edge.protocol.lds.com import encode_com
from edge.protocol.lds.common import encode_oid
from edge.protocol.lds.dg1 import encode_dg1
from edge.protocol.lds.dg2 import encode_dg2
from edge.protocol.lds.dg13 import EXTRA_16, Dg13, encode_dg13
from edge.protocol.lds.dg14 import encode_dg14
from edge.protocol.lds.dg15 import encode_dg15
from edge.protocol.lds.sod import encode_sod
from edge.protocol.mrz import cccd_td1, parse_mrz
from edge.sim.hostile import hostile_ca_spki
from edge.sim.model import (
    FID_CARD_ACCESS,
    FID_COM,
    FID_SOD,
    CardImage,
    ChipSecrets,
    SimCardSpec,
    dg_fid,
)
from edge.sim.pki import Signer, SimPki, load_or_create_pki
from edge.sim.profile import CardProfile, Person

#: Changing the seed changes every simulated card's chip keys.
KEY_SEED = b"cccd-edge-sim-v1"
#: The place of residence a DG13 forgery writes (before or after signing).
FORGED_RESIDENCE = "99 Đường Giả Mạo, Phường Bến Thành, Quận 1"


def card_access(*, pace_parameter_id: int = 13, pace: bool = True) -> bytes:
    """EF.CardAccess: TA, CA and (unless ``pace`` is off) PACE-ECDH-GM-AES-128 with the parameter id."""
    infos = [
        tlv.encode_constructed(0x30, encode_oid(ID_TA), tlv.encode_integer(1)),
        tlv.encode_constructed(0x30, encode_oid(ID_CA_ECDH_AES_CBC_CMAC_128), tlv.encode_integer(1)),
    ]
    if pace:
        infos.append(
            tlv.encode_constructed(
                0x30, encode_oid(ID_PACE_ECDH_GM_AES_CBC_CMAC_128), tlv.encode_integer(2),
                tlv.encode_integer(pace_parameter_id),
            )
        )
    return tlv.encode_constructed(0x31, *infos)


def derive_ec_key(profile_name: str, purpose: str, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    """A stable EC key for (profile, purpose): a scalar hashed from the seed, reduced into [1, n-1]."""
    order = next(c.order for c in ecdsa_curves.curves if c.openssl_name == curve.name)
    digest = hashlib.sha512(KEY_SEED + b"|" + profile_name.encode() + b"|" + purpose.encode()).digest()
    scalar = int.from_bytes(digest, "big") % (order - 1) + 1
    return ec.derive_private_key(scalar, curve)


def cached_rsa_key(pki: SimPki, profile_name: str, bits: int, purpose: str = "aa") -> rsa.RSAPrivateKey:
    """RSA keys cannot be derived cheaply from a seed, so they are generated once and kept (0600) per profile."""
    folder = pki.directory / "cards"
    folder.mkdir(mode=0o700, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in profile_name)
    path = folder / f"{safe}-{purpose}-rsa{bits}.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size == bits:
            return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private_key_pem(key)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")  # mkstemp creates 0600
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.replace(tmp, path)
    return key


def face_jpeg(seed: str, target_size: int) -> bytes:
    """A synthetic face placeholder (240x320 JPEG), padded with a JPEG comment to about ``target_size`` bytes."""
    rng = random.Random(seed)
    image = Image.new("RGB", (240, 320), (rng.randint(200, 240), rng.randint(200, 240), rng.randint(220, 255)))
    draw = ImageDraw.Draw(image)
    skin = (rng.randint(190, 240), rng.randint(150, 200), rng.randint(120, 170))
    draw.rectangle((50, 250, 190, 320), fill=(rng.randint(0, 90), rng.randint(0, 90), rng.randint(60, 160)))
    draw.ellipse((60, 60, 180, 230), fill=skin)
    draw.chord((55, 40, 185, 150), 180, 360, fill=(30, 25, 20))
    for x in (90, 150):
        draw.ellipse((x - 9, 125, x + 9, 137), fill="white")
        draw.ellipse((x - 4, 127, x + 4, 135), fill=(40, 30, 20))
    draw.line((120, 140, 114, 175, 124, 175), fill=(150, 100, 80), width=2)
    draw.arc((95, 170, 145, 205), 20, 160, fill=(150, 60, 60), width=3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    jpeg = buffer.getvalue()
    padding = target_size - len(jpeg) - 85  # DG2 and 19794-5 headers take 85 bytes
    segments = b""
    filler = hashlib.sha256(seed.encode()).digest()
    while padding > 4:
        size = min(padding - 4, 65533)
        body = (filler * (size // len(filler) + 1))[:size]
        segments += b"\xff\xfe" + (size + 2).to_bytes(2, "big") + body
        padding -= size + 4
    return jpeg[:2] + segments + jpeg[2:]


def _dg13(person: Person) -> Dg13:
    """The chip's DG13 of ``person``; a 2024 card's cancelled ID number goes to field 16 (15 holds the old CMND)."""
    return Dg13(
        id_number=person.id_number,
        full_name=person.full_name,
        date_of_birth=person.date_of_birth,
        sex=person.sex,
        nationality=person.nationality,
        ethnicity=person.ethnicity,
        religion=person.religion,
        place_of_origin=person.place_of_origin,
        place_of_residence=person.place_of_residence,
        identifying_marks=person.identifying_marks,
        date_of_issue=person.date_of_issue,
        date_of_expiry=person.expiry,
        father_name=person.father,
        mother_name=person.mother,
        spouse_name=person.spouse,
        old_id_number=person.old_id_number,
        place_of_birth_registration=person.place_of_birth_registration,
        raw_fields=MappingProxyType({EXTRA_16: person.cancelled_id_number} if person.cancelled_id_number else {}),
    )


def _shift_year(date: dt.date, years: int) -> dt.date:
    try:
        return date.replace(year=date.year + years)
    except ValueError:
        return date.replace(year=date.year + years, day=28)


def rogue_ds_reissued(pki: SimPki, *, key_id: Literal["csca", "none"]) -> Signer:
    """The rogue DS re-issued with the test CSCA's key identifier (``csca``) or with none, still signed by another
    key.

    ``pki.rogue_ds`` names the CSCA, but its key identifier names the key that really signed it. A careful forger
    copies the genuine identifier, or leaves it out; whichever, an installed CSCA of that name did not sign it, and
    that is what the chain check must see.
    """
    original = pki.rogue_ds.certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(original.subject)
        .issuer_name(original.issuer)
        .public_key(original.public_key())
        .serial_number(original.serial_number)
        .not_valid_before(original.not_valid_before_utc)
        .not_valid_after(original.not_valid_after_utc)
    )
    for extension in original.extensions:
        value = extension.value
        if isinstance(value, x509.AuthorityKeyIdentifier):
            if key_id == "none":
                continue
            value = x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.csca.key.public_key())
        builder = builder.add_extension(value, critical=extension.critical)
    return Signer(pki.rogue_ds.key, builder.sign(pki.untrusted_csca.key, hashes.SHA384()))


def with_flipped_key_id(signer: Signer) -> Signer:
    """``signer``'s certificate with the last bit of its authority key identifier flipped: the same key (the SOD
    still verifies), a certificate its CSCA's signature no longer covers."""
    der = signer.certificate.public_bytes(serialization.Encoding.DER)
    key_id = signer.certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    if key_id is None or der.count(key_id) != 1:
        raise ValueError("the certificate has no authority key identifier to flip")
    at = der.index(key_id) + len(key_id) - 1
    flipped = der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1:]
    return Signer(signer.key, x509.load_der_x509_certificate(flipped))


def build_card(profile: CardProfile, *, pki_dir: Path | None = None) -> SimCardSpec:
    """Every file of the profile's card, signed by the test DS (or the forgery's signer)."""
    pki = load_or_create_pki(pki_dir)
    person, card, forgery = profile.person, profile.card, profile.forgery
    quirks = profile.quirks.to_quirks()

    forged_person = person.model_copy(update={"place_of_residence": FORGED_RESIDENCE})
    dg1_birth = _shift_year(person.date_of_birth, 1) if forgery.dg1_dg13_mismatch else person.date_of_birth
    mrz_text = cccd_td1(
        person.id_number,
        full_name=person.full_name,
        date_of_birth=dg1_birth,
        sex=person.sex,
        date_of_expiry=person.expiry,
    )
    ca_key = derive_ec_key(profile.name, "chip-authentication", ec.BrainpoolP256R1())
    aa_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None
    if card.aa_key == "rsa":
        aa_key = cached_rsa_key(pki, profile.name, card.aa_rsa_bits)
    elif card.aa_key == "ec":
        aa_key = derive_ec_key(profile.name, "active-authentication", ec.BrainpoolP256R1())

    dgs: dict[int, bytes] = {
        1: encode_dg1(mrz_text),
        2: encode_dg2(face_jpeg(profile.name, card.dg2_size)),
        13: encode_dg13(_dg13(forged_person if forgery.edit_dg13_before_signing else person)),
        14: encode_dg14(ca_key.public_key()),
    }
    if aa_key is not None:
        dgs[15] = encode_dg15(aa_key.public_key())
    hostile_dg14 = None
    if forgery.hostile_dg14_curve is not None:
        hostile_dg14 = encode_dg14(hostile_ca_spki(forgery.hostile_dg14_curve, ca_key.public_key()))
        if not forgery.hostile_dg14_after_signing:
            dgs[14] = hostile_dg14

    signer = with_flipped_key_id(pki.ds) if forgery.flipped_ds_key_id else pki.ds
    if forgery.rogue_ds_claims_csca_key or forgery.rogue_ds_without_key_id:
        signer = rogue_ds_reissued(pki, key_id="csca" if forgery.rogue_ds_claims_csca_key else "none")
    elif forgery.rogue_ds:
        signer = pki.rogue_ds
    elif forgery.expired_ds:
        signer = pki.expired_ds
    elif forgery.untrusted_csca:
        signer = pki.untrusted_ds
    sod = encode_sod(dgs, hash_algorithm=card.sod_hash, signer_key=signer.key, signer_cert=signer.certificate)

    if forgery.edit_dg13_after_signing:
        dgs[13] = encode_dg13(_dg13(forged_person))
    if hostile_dg14 is not None:
        dgs[14] = hostile_dg14
    if forgery.clone_keys:  # the signed public keys stay, the chip holds other private keys
        ca_key = derive_ec_key(profile.name, "clone-chip-authentication", ec.BrainpoolP256R1())
        if isinstance(aa_key, rsa.RSAPrivateKey):
            aa_key = cached_rsa_key(pki, profile.name, card.aa_rsa_bits, purpose="clone-aa")
        elif aa_key is not None:
            aa_key = derive_ec_key(profile.name, "clone-active-authentication", ec.BrainpoolP256R1())

    applet_files = {FID_COM: encode_com(sorted(dgs)), FID_SOD: sod}
    applet_files.update({dg_fid(number): content for number, content in dgs.items()})
    image = CardImage(
        atr=bytes.fromhex(card.atr),
        mf_files={FID_CARD_ACCESS: card_access(pace_parameter_id=card.pace_parameter_id, pace=quirks.pace_supported)},
        applet_files=applet_files,
        denied_files={dg_fid(3): SW_SECURITY_STATUS},
    )
    secrets = ChipSecrets(
        can=person.id_number[-6:],
        mrz_information=parse_mrz(mrz_text).mrz_information(),
        pace_parameter_id=card.pace_parameter_id,
        ca_private_key=ca_key,
        aa_private_key=aa_key,
    )
    return SimCardSpec(name=profile.name, image=image, secrets=secrets, quirks=quirks)
