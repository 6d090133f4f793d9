"""SecurityInfos (ICAO 9303-11 9.2): the SET found in EF.CardAccess and, wrapped in tag 6E, in DG14.

One parser for both files so PACE (EF.CardAccess) and chip authentication (DG14) read the same objects. Unknown
SecurityInfos are kept raw rather than rejected: chips add proprietary entries, and a reader that refused them
would refuse the card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from edge.errors import AccessControlError, CurveParametersError, InvalidPointError, LdsError, TlvError
from edge.protocol import crypto, ec, tlv
from edge.protocol.crypto import CipherSuite
from edge.protocol.iso7816 import (
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_FUNC_NOT_SUPPORTED,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_NO_CURRENT_EF,
    SW_SECURITY_STATUS,
)

ID_BSI = "0.4.0.127.0.7"
ID_PK = ID_BSI + ".2.2.1"
ID_PK_DH = ID_PK + ".1"
ID_PK_ECDH = ID_PK + ".2"
ID_TA = ID_BSI + ".2.2.2"
ID_CA = ID_BSI + ".2.2.3"
ID_CA_DH = ID_CA + ".1"
ID_CA_ECDH = ID_CA + ".2"
ID_CA_ECDH_AES_CBC_CMAC_128 = ID_CA_ECDH + ".2"
ID_PACE = ID_BSI + ".2.2.4"
ID_PACE_DH_GM = ID_PACE + ".1"
ID_PACE_ECDH_GM = ID_PACE + ".2"
ID_PACE_ECDH_GM_AES_CBC_CMAC_128 = ID_PACE_ECDH_GM + ".2"
ID_PACE_DH_IM = ID_PACE + ".3"
ID_PACE_ECDH_IM = ID_PACE + ".4"
ID_PACE_ECDH_CAM = ID_PACE + ".6"
ID_AA = "2.23.136.1.1.5"
ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
ID_PRIME_FIELD = "1.2.840.10045.1.1"

#: Last arc of the PACE / CA protocol OIDs -> cipher suite (ICAO 9303-11 9.2.3, 9.2.5).
_SUITE_ARC = {1: crypto.TDES, 2: crypto.AES128, 3: crypto.AES192, 4: crypto.AES256}
_PACE_FAMILIES = {ID_PACE_DH_GM, ID_PACE_ECDH_GM, ID_PACE_DH_IM, ID_PACE_ECDH_IM, ID_PACE_ECDH_CAM}

WHAT = "SecurityInfos"

#: Answers to a plain read of EF.CardAccess meaning the card has none this terminal can read, so no PACE (BAC is
#: the way in): absent (6A82), not readable without access control (6982, 6985), not addressable this way (6986,
#: 6A81, 6A86), or READ BINARY unknown where the card starts (6D00, 6E00: a JavaCard's card manager).
NO_CARD_ACCESS: Mapping[int, str] = MappingProxyType({
    SW_FILE_NOT_FOUND: "the card has no EF.CardAccess",
    SW_SECURITY_STATUS: "EF.CardAccess needs access control",
    SW_CONDITIONS_NOT_SATISFIED: "EF.CardAccess cannot be read in the card's state",
    SW_NO_CURRENT_EF: "EF.CardAccess cannot be read here",
    SW_FUNC_NOT_SUPPORTED: "the card does not read EF.CardAccess",
    SW_INCORRECT_P1P2: "the card does not address EF.CardAccess this way",
    SW_INS_NOT_SUPPORTED: "the card does not know READ BINARY where it starts",
    SW_CLA_NOT_SUPPORTED: "the card does not know the plain class where it starts",
})
_T = TypeVar("_T")


def no_card_access_reason(sw: int) -> str | None:
    """Why a status word to reading EF.CardAccess means no PACE (for the result and the log); None: a real error."""
    reason = NO_CARD_ACCESS.get(sw)
    return None if reason is None else f"{reason} ({sw:04X}), so no PACE"


# --- OID and INTEGER helpers -----------------------------------------------------------------------------------


def _integer(obj: tlv.Tlv) -> int:
    if obj.tag != 0x02 or not obj.value:
        raise TlvError(f"INTEGER expected, found tag {obj.tag:X}", what=WHAT, offset=obj.offset)
    return int.from_bytes(obj.value, "big", signed=True)


def _oid(obj: tlv.Tlv) -> str:
    if obj.tag != 0x06:
        raise TlvError(f"OBJECT IDENTIFIER expected, found tag {obj.tag:X}", what=WHAT, offset=obj.offset)
    return tlv.decode_oid(obj.value, WHAT)


# --- SecurityInfo kinds ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaceInfo:
    protocol: str
    version: int
    parameter_id: int | None

    @property
    def suite(self) -> CipherSuite:
        return _SUITE_ARC[int(self.protocol.rsplit(".", 1)[1])]

    @property
    def family(self) -> str:
        """The protocol without the cipher arc, e.g. id-PACE-ECDH-GM."""
        return self.protocol.rsplit(".", 1)[0]

    @property
    def is_ecdh_gm(self) -> bool:
        return self.family == ID_PACE_ECDH_GM


@dataclass(frozen=True, slots=True)
class PaceDomainParameterInfo:
    protocol: str
    algorithm: str
    parameters: bytes  # raw DER of the algorithm parameters
    parameter_id: int | None


@dataclass(frozen=True, slots=True)
class ChipAuthenticationInfo:
    protocol: str
    version: int
    key_id: int | None

    @property
    def suite(self) -> CipherSuite:
        return _SUITE_ARC[int(self.protocol.rsplit(".", 1)[1])]

    @property
    def is_ecdh(self) -> bool:
        return self.protocol.rsplit(".", 1)[0] == ID_CA_ECDH


@dataclass(frozen=True, slots=True)
class ChipAuthenticationPublicKeyInfo:
    protocol: str
    subject_public_key_info: bytes  # raw DER, for hashing and re-encoding
    key_id: int | None

    def ec_public_key(self) -> tuple[ec.DomainParameters, ec.EcPoint]:
        """The chip's static ECDH key with its curve (named, or spelled out as a known one); validated on the curve."""
        try:
            return _parse_ec_spki(self.subject_public_key_info)
        except (InvalidPointError, CurveParametersError, AccessControlError):
            raise
        except (TlvError, IndexError, ValueError) as exc:
            raise LdsError(f"chip authentication public key: {exc}", what=WHAT) from exc


@dataclass(frozen=True, slots=True)
class TerminalAuthenticationInfo:
    protocol: str
    version: int


@dataclass(frozen=True, slots=True)
class ActiveAuthenticationInfo:
    protocol: str
    version: int
    signature_algorithm: str | None


@dataclass(frozen=True, slots=True)
class UnknownSecurityInfo:
    protocol: str
    raw: bytes


SecurityInfo = (
    PaceInfo
    | PaceDomainParameterInfo
    | ChipAuthenticationInfo
    | ChipAuthenticationPublicKeyInfo
    | TerminalAuthenticationInfo
    | ActiveAuthenticationInfo
    | UnknownSecurityInfo
)


@dataclass(frozen=True, slots=True)
class SecurityInfos:
    infos: tuple[SecurityInfo, ...]

    def of_type(self, kind: type[_T]) -> tuple[_T, ...]:
        return tuple(info for info in self.infos if isinstance(info, kind))

    @property
    def pace(self) -> tuple[PaceInfo, ...]:
        return self.of_type(PaceInfo)

    @property
    def chip_authentication(self) -> tuple[ChipAuthenticationInfo, ...]:
        return self.of_type(ChipAuthenticationInfo)

    @property
    def chip_authentication_keys(self) -> tuple[ChipAuthenticationPublicKeyInfo, ...]:
        return self.of_type(ChipAuthenticationPublicKeyInfo)

    @property
    def terminal_authentication(self) -> tuple[TerminalAuthenticationInfo, ...]:
        return self.of_type(TerminalAuthenticationInfo)

    @property
    def active_authentication(self) -> tuple[ActiveAuthenticationInfo, ...]:
        return self.of_type(ActiveAuthenticationInfo)


def _parse_one(obj: tlv.Tlv) -> SecurityInfo:
    if obj.tag != 0x30:
        raise TlvError(f"SecurityInfo must be a SEQUENCE, found tag {obj.tag:X}", what=WHAT, offset=obj.offset)
    parts = obj.children()
    if not parts:
        raise TlvError("empty SecurityInfo", what=WHAT, offset=obj.offset)
    protocol = _oid(parts[0])
    rest = parts[1:]
    family, last_arc = protocol.rsplit(".", 1)
    with_suite = int(last_arc) in _SUITE_ARC
    if not rest:
        return UnknownSecurityInfo(protocol, obj.to_bytes())
    if family in _PACE_FAMILIES and with_suite:
        return PaceInfo(protocol, _integer(rest[0]), _integer(rest[1]) if len(rest) > 1 else None)
    if protocol in _PACE_FAMILIES:
        algorithm = rest[0].children()
        return PaceDomainParameterInfo(
            protocol,
            _oid(algorithm[0]),
            algorithm[1].to_bytes() if len(algorithm) > 1 else b"",
            _integer(rest[1]) if len(rest) > 1 else None,
        )
    if family in (ID_CA_DH, ID_CA_ECDH) and with_suite:
        return ChipAuthenticationInfo(protocol, _integer(rest[0]), _integer(rest[1]) if len(rest) > 1 else None)
    if protocol in (ID_PK_DH, ID_PK_ECDH):
        return ChipAuthenticationPublicKeyInfo(
            protocol, rest[0].to_bytes(), _integer(rest[1]) if len(rest) > 1 else None
        )
    if protocol == ID_TA:
        return TerminalAuthenticationInfo(protocol, _integer(rest[0]))
    if protocol == ID_AA:
        return ActiveAuthenticationInfo(protocol, _integer(rest[0]), _oid(rest[1]) if len(rest) > 1 else None)
    return UnknownSecurityInfo(protocol, obj.to_bytes())


def parse_security_infos(der: bytes, *, what: str = WHAT) -> SecurityInfos:
    """Parse a SET OF SecurityInfo (EF.CardAccess), or DG14 whole (tag 6E around the SET)."""
    try:
        outer = tlv.decode(der)
        if outer.tag == 0x6E:
            outer = tlv.decode(outer.value)
        if outer.tag != 0x31:
            raise TlvError(f"SET expected, found tag {outer.tag:X}", what=what, offset=outer.offset)
        return SecurityInfos(tuple(_parse_one(child) for child in outer.children()))
    except TlvError as exc:
        raise LdsError(f"malformed SecurityInfos: {exc}", what=what, offset=exc.offset) from exc
    except (IndexError, KeyError, ValueError) as exc:
        raise LdsError(f"malformed SecurityInfos: {exc}", what=what) from exc


# --- SubjectPublicKeyInfo for EC keys --------------------------------------------------------------------------


def _parse_ec_spki(der: bytes) -> tuple[ec.DomainParameters, ec.EcPoint]:
    spki = tlv.decode(der)
    algorithm, key_bits = spki.children()[:2]
    alg_parts = algorithm.children()
    if _oid(alg_parts[0]) != ID_EC_PUBLIC_KEY:
        raise AccessControlError("chip authentication key is not an EC key")
    params_obj = alg_parts[1]
    if params_obj.tag == 0x06:
        named = ec.parameters_by_oid(tlv.decode_oid(params_obj.value, WHAT))
        if named is None:
            raise AccessControlError(f"unsupported named curve {tlv.decode_oid(params_obj.value, WHAT)}")
        params = named
    else:
        params = _explicit_parameters(params_obj)
    if key_bits.tag != 0x03 or not key_bits.value or key_bits.value[0] != 0:
        raise TlvError("public key BIT STRING expected", what=WHAT, offset=key_bits.offset)
    return params, ec.decode_point(params, key_bits.value[1:])


def _explicit_parameters(obj: tlv.Tlv) -> ec.DomainParameters:
    """ECParameters spelled out: only a known curve is accepted (see :func:`ec.explicit_parameters`)."""
    parts = obj.children()
    field_id = parts[1].children()
    if _oid(field_id[0]) != ID_PRIME_FIELD:
        raise AccessControlError("only prime-field curves are supported")
    curve = parts[2].children()
    return ec.explicit_parameters(
        _integer(field_id[1]),
        int.from_bytes(curve[0].value, "big"),
        int.from_bytes(curve[1].value, "big"),
        parts[3].value,
        _integer(parts[4]),
        _integer(parts[5]) if len(parts) > 5 else None,
    )
