"""Public keys as eMRTDs carry them, including EC keys with EXPLICIT curve parameters.

CSCAs and chips (the Vietnamese CSCA, many DG14/DG15 files) often spell brainpool curves out as explicit
parameters, which ``cryptography`` refuses to load. We read the parameters with asn1crypto, find the named curve
with the same p, a, b, G and n, and rebuild the key on it: the key is then exactly the same mathematical object.
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
from ecdsa.numbertheory import SquareRootError, square_root_mod_prime

from edge.errors import PublicKeyFormatError

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_WHAT = "SubjectPublicKeyInfo"


def _curve_table() -> list[tuple[tuple[int, int, int, int, int, int], str]]:
    table = []
    for curve in ecdsa_curves.curves:
        if curve.name.startswith(("Ed", "SECP112", "SECP128", "SECP160")) or not hasattr(curve.curve, "a"):
            continue  # Edwards curves and curves too small for any eMRTD
        fp = curve.curve
        g = curve.generator
        params = (fp.p(), fp.a() % fp.p(), fp.b() % fp.p(), g.x(), g.y(), curve.order)
        table.append((params, ".".join(str(arc) for arc in curve.oid)))
    return table


#: (p, a, b, Gx, Gy, n) -> dotted OID for every prime curve we know (NIST, SEC, brainpool r1/t1).
_KNOWN_CURVES: list[tuple[tuple[int, int, int, int, int, int], str]] = _curve_table()


def _decode_point(encoded: bytes, size: int, p: int, a: int, b: int) -> tuple[int, int]:
    if encoded[:1] == b"\x04" and len(encoded) == 1 + 2 * size:
        return int.from_bytes(encoded[1 : 1 + size], "big"), int.from_bytes(encoded[1 + size :], "big")
    if encoded[:1] in (b"\x02", b"\x03") and len(encoded) == 1 + size:
        x = int.from_bytes(encoded[1:], "big")
        rhs = (pow(x, 3, p) + a * x + b) % p
        y = pow(rhs, (p + 1) // 4, p) if p % 4 == 3 else _sqrt_mod(rhs, p)
        if (y & 1) != (encoded[0] & 1):
            y = p - y
        return x, y
    raise PublicKeyFormatError("base point is not a valid encoded point", what=_WHAT)


def _sqrt_mod(value: int, p: int) -> int:
    """Tonelli-Shanks (only needed for curves with p = 1 mod 4, e.g. P-224)."""
    try:
        return int(square_root_mod_prime(value, p))
    except SquareRootError as exc:  # x is not the abscissa of any point: a forged base point
        raise PublicKeyFormatError("base point is not on the curve", what=_WHAT) from exc


def named_curve_for(p: int, a: int, b: int, base: bytes, order: int) -> ec.EllipticCurve:
    """The named curve whose parameters equal the explicit ones; raises if none does."""
    # Compare the cheap integers first: decoding a compressed base point takes a square root modulo p, which for
    # hostile parameters (a p that is not prime, an enormous p) can fail or burn CPU. Only a known curve gets there.
    for params, oid in _KNOWN_CURVES:
        known_p, known_a, known_b, known_gx, known_gy, known_order = params
        if known_p != p or known_order != order or (a - known_a) % p or (b - known_b) % p:
            continue
        size = (p.bit_length() + 7) // 8
        if _decode_point(base, size, p, known_a, known_b) == (known_gx, known_gy):
            try:
                return ec.get_curve_for_oid(ObjectIdentifier(oid))()
            except LookupError as exc:
                raise PublicKeyFormatError(f"curve {oid} is not supported", what=_WHAT) from exc
    raise PublicKeyFormatError("explicit curve parameters match no known named curve", what=_WHAT)


def _explicit_ec_key(spki: Any) -> ec.EllipticCurvePublicKey:
    domain = spki["algorithm"]["parameters"].chosen
    if domain["field_id"]["field_type"].native != "prime_field":
        raise PublicKeyFormatError("only prime-field curves are supported", what=_WHAT)
    p = int(domain["field_id"]["parameters"].native)
    a = int.from_bytes(domain["curve"]["a"].native, "big")
    b = int.from_bytes(domain["curve"]["b"].native, "big")
    curve = named_curve_for(p, a, b, domain["base"].native, int(domain["order"].native))
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
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
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
