"""What a hostile chip writes to stall a terminal: chip authentication keys on explicit curves it picks itself.

A DG14 key may spell its curve out (many genuine chips do), and a chip that can write its own DG14 (a programmable
card, or a forger's) chooses those parameters. The two here are the ones that stalled a terminal that used them
unchecked: an order of 1 (drawing a scalar in [1, n-1] never ends) and a field of 4253 bits (the Mersenne prime
2^4253 - 1: every scalar multiplication is seconds of pure-Python arithmetic). Profiles ask for them with
``[forgery] hostile_dg14_curve``; ``edge.protocol.ec.explicit_parameters`` must refuse both before any arithmetic.
"""

from __future__ import annotations

from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.protocol import ec as pure_ec
from edge.protocol import tlv
from edge.protocol.access.card_access import ID_EC_PUBLIC_KEY, ID_PRIME_FIELD

HostileCurve = Literal["order-one", "huge-field"]
#: A prime of 4253 bits, far beyond any curve a chip needs (P-521 is the largest known).
HUGE_FIELD_PRIME = 2**4253 - 1


def explicit_ec_spki(params: pure_ec.DomainParameters, point: bytes) -> bytes:
    """SubjectPublicKeyInfo with ``params`` spelled out (ECParameters, uncompressed base point) and ``point``."""
    size = params.byte_length
    base = b"\x04" + params.gx.to_bytes(size, "big") + params.gy.to_bytes(size, "big")
    ec_parameters = tlv.encode_constructed(
        0x30,
        tlv.encode_integer(1),
        tlv.encode_constructed(0x30, tlv.encode(0x06, tlv.encode_oid(ID_PRIME_FIELD)), tlv.encode_integer(params.p)),
        tlv.encode_constructed(
            0x30, tlv.encode(0x04, params.a.to_bytes(size, "big")), tlv.encode(0x04, params.b.to_bytes(size, "big"))
        ),
        tlv.encode(0x04, base),
        tlv.encode_integer(params.n),
        tlv.encode_integer(params.h),
    )
    algorithm = tlv.encode_constructed(0x30, tlv.encode(0x06, tlv.encode_oid(ID_EC_PUBLIC_KEY)), ec_parameters)
    return tlv.encode_constructed(0x30, algorithm, tlv.encode(0x03, b"\x00" + point))


def hostile_ca_spki(kind: HostileCurve, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The chip authentication key a hostile DG14 carries.

    ``order-one``: the chip's real brainpoolP256r1 key, its curve spelled out with the order replaced by 1.
    ``huge-field``: y^2 = x^3 - 3x + b over :data:`HUGE_FIELD_PRIME`, b chosen so that (5, 7) is on it, with that
    point as generator and key, and the field size as order (a lie no one can check cheaply).
    """
    if kind == "order-one":
        brainpool = pure_ec.standard_parameters(13)
        params = pure_ec.DomainParameters("hostile", brainpool.p, brainpool.a, brainpool.b, brainpool.gx,
                                          brainpool.gy, n=1)  # fmt: skip
        return explicit_ec_spki(params, public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
    p, x, y = HUGE_FIELD_PRIME, 5, 7
    a = p - 3
    b = (y * y - x**3 - a * x) % p
    params = pure_ec.DomainParameters("hostile", p, a, b, x, y, n=p)
    return explicit_ec_spki(params, pure_ec.encode_point(params, params.generator))
