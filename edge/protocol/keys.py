"""Public keys as eMRTDs carry them, including EC keys with EXPLICIT curve parameters.

CSCAs and chips (the Vietnamese CSCA, many DG14/DG15 files) often spell brainpool curves out as explicit
parameters, which ``cryptography`` refuses to load. We read the parameters with asn1crypto, find the named curve
with the same p, a, b, G and n (``edge.protocol.ec.explicit_parameters``, the one place that judges explicit
parameters), and rebuild the key on it: the key is then exactly the same mathematical object.
"""

from __future__ import annotations

from typing import Any

from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key
from cryptography.x509 import ObjectIdentifier
from ecdsa import curves as ecdsa_curves

from edge.errors import PublicKeyFormatError
from edge.protocol.ec import explicit_parameters

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_WHAT = "SubjectPublicKeyInfo"


def named_curve_for(p: int, a: int, b: int, base: bytes, order: int, cofactor: int | None = None) -> ec.EllipticCurve:
    """The named curve whose parameters equal the explicit ones; raises if none does (``edge.protocol.ec`` decides,
    for DG14's chip authentication key and every other explicit key alike)."""
    known = explicit_parameters(p, a, b, base, order, cofactor)
    try:
        return ec.get_curve_for_oid(ObjectIdentifier(known.oid))()
    except LookupError as exc:
        raise PublicKeyFormatError(f"curve {known.oid} is not supported", what=_WHAT) from exc


def _explicit_ec_key(spki: Any) -> ec.EllipticCurvePublicKey:
    domain = spki["algorithm"]["parameters"].chosen
    if domain["field_id"]["field_type"].native != "prime_field":
        raise PublicKeyFormatError("only prime-field curves are supported", what=_WHAT)
    p = int(domain["field_id"]["parameters"].native)
    a = int.from_bytes(domain["curve"]["a"].native, "big")
    b = int.from_bytes(domain["curve"]["b"].native, "big")
    cofactor = domain["cofactor"].native
    curve = named_curve_for(p, a, b, domain["base"].native, int(domain["order"].native),
                            None if cofactor is None else int(cofactor))  # fmt: skip
    point = bytes(spki["public_key"].native)
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError as exc:
        raise PublicKeyFormatError("public point is not on the curve", what=_WHAT) from exc


def load_public_key(spki_der: bytes) -> PublicKey:
    """Load an RSA or EC SubjectPublicKeyInfo (named or explicit curve parameters)."""
    try:
        key = load_der_public_key(bytes(spki_der))
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return key
    if key is not None:
        raise PublicKeyFormatError(f"unsupported key type {type(key).__name__}", what=_WHAT)
    try:
        spki = asn1_keys.PublicKeyInfo.load(bytes(spki_der))
        if spki["algorithm"]["algorithm"].native != "ec" or spki["algorithm"]["parameters"].name != "specified":
            raise PublicKeyFormatError("not a loadable RSA or EC public key", what=_WHAT)
        return _explicit_ec_key(spki)
    except PublicKeyFormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError) as exc:
        # AttributeError: asn1crypto's Void where parameters are missing (an EC key with no curve at all)
        raise PublicKeyFormatError(f"malformed public key ({type(exc).__name__})", what=_WHAT) from exc


def certificate_spki(cert: bytes) -> bytes:
    """DER of the certificate's SubjectPublicKeyInfo; accepts DER or PEM."""
    try:
        der = bytes(cert)
        if asn1_pem.detect(der):
            _, _, der = asn1_pem.unarmor(der)
        parsed = asn1_x509.Certificate.load(der)
        return bytes(parsed["tbs_certificate"]["subject_public_key_info"].dump())
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise PublicKeyFormatError(f"malformed certificate ({type(exc).__name__})", what="certificate") from exc


def certificate_public_key(cert_der: bytes) -> PublicKey:
    """The public key of a certificate, even when ``cryptography`` refuses it (explicit EC parameters)."""
    return load_public_key(certificate_spki(cert_der))


def explicit_spki(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """SubjectPublicKeyInfo with the curve spelled out as explicit parameters, as many CSCAs and chips write it."""
    name = {"secp256r1": "prime256v1", "secp192r1": "prime192v1"}.get(public_key.curve.name, public_key.curve.name)
    for curve in ecdsa_curves.curves:
        if curve.openssl_name == name:
            break
    else:
        raise PublicKeyFormatError(f"no parameters known for {public_key.curve.name}", what=_WHAT)
    fp, g = curve.curve, curve.generator
    size = (fp.p().bit_length() + 7) // 8

    def octets(value: int) -> bytes:
        return int(value).to_bytes(size, "big")

    domain = {
        "version": "ecdpVer1",
        "field_id": {"field_type": "prime_field", "parameters": fp.p()},
        "curve": {"a": octets(fp.a() % fp.p()), "b": octets(fp.b())},
        "base": b"\x04" + octets(g.x()) + octets(g.y()),
        "order": curve.order,
        "cofactor": 1,
    }
    point = public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    info = asn1_keys.PublicKeyInfo(
        {
            "algorithm": {"algorithm": "ec", "parameters": asn1_keys.ECDomainParameters("specified", domain)},
            "public_key": point,
        }
    )
    return bytes(info.dump())
