"""Elliptic curves for PACE generic mapping and chip authentication.

PACE maps the generator to G' = s*G + H, a point no ready-made ECDH API accepts as a base, so the arithmetic runs
here (on the ``ecdsa`` package's Jacobian points) with the standardized domain parameters of ICAO 9303-11
table 6 (ids 8-18). Every point that arrives from outside is decoded with :func:`decode_point`, which rejects
points off the curve: accepting them would leak the private key to an invalid-curve attack. Curves spelled out as
explicit parameters (DG14, DG15, CSCA keys) go through :func:`explicit_parameters` alone, which accepts only the
known curves they name and computes nothing on the parameters themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import ecdsa.curves
import ecdsa.ellipticcurve

from edge.errors import AccessControlError, CurveParametersError, InvalidPointError
from edge.protocol.crypto import Random


@dataclass(frozen=True, slots=True)
class EcPoint:
    """An affine point (never the point at infinity: operations that would yield it raise)."""

    x: int
    y: int


@dataclass(frozen=True, slots=True)
class DomainParameters:
    """Prime-field curve y^2 = x^3 + ax + b with generator (gx, gy) of prime order n."""

    name: str
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int
    h: int = 1
    parameter_id: int | None = None
    oid: str = ""  # named-curve OID, for SubjectPublicKeyInfo

    @property
    def byte_length(self) -> int:
        return (self.p.bit_length() + 7) // 8

    @property
    def generator(self) -> EcPoint:
        return EcPoint(self.gx, self.gy)

    def with_generator(self, point: EcPoint) -> DomainParameters:
        """The mapped parameters of PACE-GM: same curve and order, new generator, no standard id."""
        return DomainParameters(self.name + " (mapped)", self.p, self.a, self.b, point.x, point.y, self.n, self.h)


def _from_ecdsa(curve: Any, parameter_id: int | None, oid: str) -> DomainParameters:
    fp = curve.curve
    gen = curve.generator
    p = int(fp.p())
    return DomainParameters(
        name=str(curve.name),
        p=p,
        a=int(fp.a()) % p,  # ecdsa writes -3 for the NIST curves; explicit parameters carry the field element
        b=int(fp.b()) % p,
        gx=int(gen.x()),
        gy=int(gen.y()),
        n=int(curve.order),
        h=int(fp.cofactor()),
        parameter_id=parameter_id,
        oid=oid,
    )


#: ICAO 9303-11 table 6: standardized domain parameters usable by PACE (ids 8-18).
STANDARD_PARAMETERS: dict[int, DomainParameters] = {
    pid: _from_ecdsa(curve, pid, oid)
    for pid, curve, oid in (
        (8, ecdsa.curves.NIST192p, "1.2.840.10045.3.1.1"),
        (9, ecdsa.curves.BRAINPOOLP192r1, "1.3.36.3.3.2.8.1.1.3"),
        (10, ecdsa.curves.NIST224p, "1.3.132.0.33"),
        (11, ecdsa.curves.BRAINPOOLP224r1, "1.3.36.3.3.2.8.1.1.5"),
        (12, ecdsa.curves.NIST256p, "1.2.840.10045.3.1.7"),
        (13, ecdsa.curves.BRAINPOOLP256r1, "1.3.36.3.3.2.8.1.1.7"),
        (14, ecdsa.curves.BRAINPOOLP320r1, "1.3.36.3.3.2.8.1.1.9"),
        (15, ecdsa.curves.NIST384p, "1.3.132.0.34"),
        (16, ecdsa.curves.BRAINPOOLP384r1, "1.3.36.3.3.2.8.1.1.11"),
        (17, ecdsa.curves.BRAINPOOLP512r1, "1.3.36.3.3.2.8.1.1.13"),
        (18, ecdsa.curves.NIST521p, "1.3.132.0.35"),
    )
}


def _other_known_curves() -> tuple[DomainParameters, ...]:
    """The prime curves besides table 6 that a CSCA or chip may use (secp256k1, the other brainpool curves)."""
    standard = {params.oid for params in STANDARD_PARAMETERS.values()}
    known = []
    for curve in ecdsa.curves.curves:
        oid = ".".join(str(arc) for arc in curve.oid)
        if curve.name.startswith(("Ed", "SECP112", "SECP128", "SECP160")) or oid in standard:
            continue  # Edwards curves, and curves too small for any eMRTD
        known.append(_from_ecdsa(curve, None, oid))
    return tuple(known)


#: Every curve this terminal computes on: table 6 first, then the other NIST, SEC and brainpool prime curves.
KNOWN_CURVES: tuple[DomainParameters, ...] = (*STANDARD_PARAMETERS.values(), *_other_known_curves())
#: The largest field of any known curve (P-521): explicit parameters beyond it are refused unread.
MAX_FIELD_BITS = max(params.p.bit_length() for params in KNOWN_CURVES)
#: The largest cofactor any curve for ECDH or ECDSA needs (all known curves have 1).
MAX_COFACTOR = 4
#: Draws of :func:`generate_private_key` before it gives up (each succeeds with probability > 1/2).
MAX_SCALAR_DRAWS = 128


def standard_parameters(parameter_id: int) -> DomainParameters:
    """Parameters for a PACEInfo parameterId; ids 0-2 (MODP groups) and unknown ids are refused."""
    params = STANDARD_PARAMETERS.get(parameter_id)
    if params is None:
        raise AccessControlError(f"unsupported standardized domain parameters id {parameter_id}")
    return params


def parameters_by_oid(oid: str) -> DomainParameters | None:
    """The known curve with this named-curve OID, or None."""
    return next((params for params in KNOWN_CURVES if params.oid == oid), None)


def _refuse(message: str) -> CurveParametersError:
    return CurveParametersError(message, what="explicit EC parameters")


def _base_matches(params: DomainParameters, base: bytes) -> bool:
    """Whether ``base`` (uncompressed, or compressed) encodes the curve's generator, without any arithmetic: a
    compressed point is compared by its x and the parity of y, so no square root modulo a hostile p is taken."""
    size = params.byte_length
    if base[:1] == b"\x04" and len(base) == 1 + 2 * size:
        return (int.from_bytes(base[1 : 1 + size], "big"), int.from_bytes(base[1 + size :], "big")) == (
            params.gx, params.gy)  # fmt: skip
    if base[:1] in (b"\x02", b"\x03") and len(base) == 1 + size:
        return int.from_bytes(base[1:], "big") == params.gx and (base[0] & 1) == (params.gy & 1)
    return False


def explicit_parameters(p: int, a: int, b: int, base: bytes, n: int, h: int | None = None) -> DomainParameters:
    """The known curve that explicit domain parameters spell out; anything else raises CurveParametersError.

    Chips and CSCAs write standard curves out in full (DG14 and DG15 keys often do, and ``cryptography`` refuses
    them), so the parameters are matched against :data:`KNOWN_CURVES` by comparing integers only. A curve that no
    standard names is refused, never computed on: from a hostile chip, an order of 1 makes key generation loop for
    ever, a 4096-bit p costs minutes of pure-Python arithmetic, and a weak curve would let a forger recover the
    chip key. The bounds come first so that the refusal says what is wrong, and so nothing large is even compared.
    ``h`` is the cofactor when the parameters carry one (it is optional in ECParameters).
    """
    if p.bit_length() > MAX_FIELD_BITS:
        raise _refuse(f"a field of {p.bit_length()} bits is larger than any known curve's ({MAX_FIELD_BITS})")
    if p < 3 or p % 2 == 0:
        raise _refuse("the field size p is not an odd prime")
    if n <= 1 or n.bit_length() > p.bit_length() + 1:  # Hasse: n*h <= p + 1 + 2*sqrt(p)
        raise _refuse("the order n is not between 2 and the field size")
    if h is not None and not 1 <= h <= MAX_COFACTOR:
        raise _refuse(f"the cofactor is not between 1 and {MAX_COFACTOR}")
    if not (0 <= a < p and 0 <= b < p):
        raise _refuse("the curve coefficients a and b are not elements of the field")
    for params in KNOWN_CURVES:
        if (params.p, params.a, params.b, params.n) == (p, a, b, n) and h in (None, params.h):
            if not _base_matches(params, base):
                raise _refuse(f"the base point is not the generator of {params.name}")
            return params
    raise _refuse("the parameters match no known named curve")


# --- arithmetic ------------------------------------------------------------------------------------------------


def _jacobian(params: DomainParameters, point: EcPoint) -> Any:
    curve = ecdsa.ellipticcurve.CurveFp(params.p, params.a, params.b, params.h)
    return ecdsa.ellipticcurve.PointJacobi(curve, point.x, point.y, 1, params.n)


def _affine(result: Any) -> EcPoint:
    if result == ecdsa.ellipticcurve.INFINITY or result.x() is None:
        raise InvalidPointError("operation yielded the point at infinity", what="EC point")
    return EcPoint(int(result.x()), int(result.y()))


def is_on_curve(params: DomainParameters, point: EcPoint) -> bool:
    if not (0 <= point.x < params.p and 0 <= point.y < params.p):
        return False
    return (point.y * point.y - (point.x**3 + params.a * point.x + params.b)) % params.p == 0


def multiply(params: DomainParameters, scalar: int, point: EcPoint) -> EcPoint:
    """scalar * point; raises InvalidPointError if the result is the point at infinity."""
    if scalar % params.n == 0:
        raise InvalidPointError("scalar is a multiple of the group order", what="EC point")
    return _affine(_jacobian(params, point) * scalar)


def add(params: DomainParameters, left: EcPoint, right: EcPoint) -> EcPoint:
    return _affine(_jacobian(params, left) + _jacobian(params, right))


def encode_point(params: DomainParameters, point: EcPoint) -> bytes:
    """Uncompressed encoding 04 || X || Y, coordinates padded to the field size."""
    size = params.byte_length
    return b"\x04" + point.x.to_bytes(size, "big") + point.y.to_bytes(size, "big")


def decode_point(params: DomainParameters, data: bytes) -> EcPoint:
    """Decode an uncompressed point and check it lies on the curve (all table-6 curves have cofactor 1)."""
    size = params.byte_length
    if len(data) != 1 + 2 * size or data[0] != 0x04:
        raise InvalidPointError(f"expected an uncompressed point of {1 + 2 * size} bytes", what="EC point", offset=0)
    point = EcPoint(int.from_bytes(data[1 : 1 + size], "big"), int.from_bytes(data[1 + size :], "big"))
    if not is_on_curve(params, point):
        raise InvalidPointError("point is not on the curve", what="EC point")
    return point


def x_coordinate(params: DomainParameters, point: EcPoint) -> bytes:
    """The ECDH shared secret as ICAO uses it: the x coordinate, padded to the field size."""
    return point.x.to_bytes(params.byte_length, "big")


def generate_private_key(params: DomainParameters, rng: Random = os.urandom) -> int:
    """Uniform scalar in [1, n-1] by rejection sampling (the injected ``rng`` makes worked examples replayable).

    Bounded: for any order n > 1 a draw succeeds with probability above 1/2, so running out of draws means parameters
    (or a random source) that no known curve has."""
    size = (params.n.bit_length() + 7) // 8
    excess = size * 8 - params.n.bit_length()
    for _draw in range(MAX_SCALAR_DRAWS):
        candidate = int.from_bytes(rng(size), "big") >> excess
        if 1 <= candidate < params.n:
            return candidate
    raise _refuse(f"no scalar below the group order in {MAX_SCALAR_DRAWS} draws")
