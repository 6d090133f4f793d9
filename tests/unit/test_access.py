"""Reader-side access control against the real chip-side logic (edge.sim.chip_security), in process.

``ChipLink`` routes APDUs the way the virtual card does (secured commands through unwrap/process/wrap, plain
access-control commands straight to process, a plain file command ending the session) over a two-file applet,
so these tests exercise the real chip code without pcscd. Full-stack tests over vpcd live in tests/stack.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec as crypto_ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.errors import (
    AccessControlError,
    AccessKeyRejectedError,
    InvalidPointError,
    LdsError,
    PaceNotSupportedError,
    SessionLostError,
    SmIntegrityError,
)
from edge.protocol import crypto, ec, tlv
from edge.protocol.access.active_auth import active_authenticate
from edge.protocol.access.card_access import (
    ID_CA_ECDH,
    ID_PACE_ECDH_GM,
    ID_PK_DH,
    ID_PK_ECDH,
    parse_security_infos,
)
from edge.protocol.access.chip_auth import (
    DH_ONLY,
    NO_CHIP_AUTHENTICATION,
    chip_auth_unsupported,
    perform_chip_auth,
)
from edge.protocol.access.policy import AccessMethod, CanKey, MrzKey, SecureChannel, open_secure_channel
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.sim.card import SimSmFault
from edge.sim.chip_security import SimChipSecurity
from edge.sim.hostile import explicit_ec_spki
from edge.sim.model import ChipSecrets, Quirks
from tests.vectors import icao_9303 as v

EF_COM = v.EF_COM
FID_COM = 0x011E
FID_DG1 = 0x0101
DG1 = bytes(range(256)) * 3  # long enough for several chunks
CAN = "012345"
DOC, DOB, DOE = "203012345", "030201", "280201"
MRZ_INFO = crypto.mrz_information(DOC, DOB, DOE)


class FixedRandom:
    """Replays given byte strings in order, then falls back to a deterministic stream."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)
        self._counter = 0

    def __call__(self, size: int) -> bytes:
        if self._chunks:
            chunk = self._chunks.pop(0)
            assert len(chunk) == size
            return chunk
        self._counter += 1
        return hashlib.sha512(self._counter.to_bytes(4, "big")).digest()[:size].rjust(size, b"\x01")


class ChipLink:
    """An ApduConnection in front of SimChipSecurity plus a tiny eMRTD applet (EF.COM, DG1)."""

    def __init__(self, security: SimChipSecurity, *, naked_errors: bool = False) -> None:
        self.security = security
        self.naked_errors = naked_errors
        self.files = {FID_COM: EF_COM, FID_DG1: DG1}
        self.current: int | None = None
        self.log: list[tuple[bytes, bytes]] = []
        self.tamper: Callable[[CommandApdu, ResponseApdu], ResponseApdu] | None = None

    @property
    def supports_extended_length(self) -> bool:
        return True

    @property
    def apdus(self) -> int:
        return len(self.log)

    def ins_sent(self) -> list[int]:
        return [raw[1] for raw, _ in self.log]

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        response = self._dispatch(command)
        if self.tamper is not None:
            response = self.tamper(command, response)
        self.log.append((command.to_bytes(), response.to_bytes()))
        return response

    def _dispatch(self, command: CommandApdu) -> ResponseApdu:
        sec = self.security
        if command.cla & 0x0C == 0x0C:
            if not sec.session_active:
                return ResponseApdu(b"", 0x6988)
            try:
                inner = sec.unwrap(command)
            except SimSmFault as fault:
                return ResponseApdu(b"", fault.sw)
            response = sec.process(inner) if sec.handles(inner) else self._execute(inner)
            if self.naked_errors and response.sw >> 8 not in (0x90, 0x61, 0x62, 0x63):
                sec.refuse()  # a naked answer: refused before secure messaging, not counted
                return response
            return sec.wrap(response)
        if sec.handles(command):
            return sec.process(command)
        if sec.session_active:
            sec.reset()
        return self._execute(command)

    def _execute(self, command: CommandApdu) -> ResponseApdu:
        if command.ins == 0xA4:
            if command.p1 == 0x04:
                return ResponseApdu(b"", 0x9000)
            fid = int.from_bytes(command.data, "big")
            if fid not in self.files:
                return ResponseApdu(b"", 0x6A82)
            self.current = fid
            return ResponseApdu(b"", 0x9000)
        if command.ins == 0xB0:
            if not self.security.session_active:
                return ResponseApdu(b"", 0x6982)
            if self.current is None:
                return ResponseApdu(b"", 0x6986)
            offset = (command.p1 << 8) | command.p2
            return ResponseApdu(self.files[self.current][offset : offset + command.le], 0x9000)
        return ResponseApdu(b"", 0x6D00)


def card_access_for(suite_arc: int = 2, parameter_id: int = 13) -> bytes:
    pace_info = tlv.encode_constructed(
        0x30,
        tlv.encode(0x06, tlv.encode_oid(f"{ID_PACE_ECDH_GM}.{suite_arc}")),
        tlv.encode(0x02, b"\x02"),
        tlv.encode(0x02, bytes((parameter_id,))),
    )
    return tlv.encode(0x31, pace_info)


def make_chip(
    *, parameter_id: int = 13, quirks: Quirks | None = None, rng: Callable[[int], bytes] | None = None,
    ca_key: crypto_ec.EllipticCurvePrivateKey | None = None,
    aa_key: rsa.RSAPrivateKey | crypto_ec.EllipticCurvePrivateKey | None = None,
) -> SimChipSecurity:
    secrets = ChipSecrets(CAN, MRZ_INFO, parameter_id, ca_private_key=ca_key, aa_private_key=aa_key)
    return SimChipSecurity(secrets, quirks or Quirks(), rng=rng or FixedRandom())


def read_file(channel: SecureChannel, fid: int, size: int, chunk: int) -> bytes:
    conn = channel.connection
    conn.send_and_receive(CommandApdu(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big"))).check("SELECT")
    out = b""
    while len(out) < size:
        want = min(chunk, size - len(out))
        out += conn.send_and_receive(
            CommandApdu(0x00, 0xB0, len(out) >> 8, len(out) & 0xFF, le=want)
        ).check("READ BINARY")
    return out


# --- PACE --------------------------------------------------------------------------------------------------------


def test_pace_can_aes128_brainpool256_reads_ef_com() -> None:
    link = ChipLink(make_chip())
    channel = open_secure_channel(link, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS, rng=FixedRandom())
    assert channel.method is AccessMethod.PACE
    assert channel.attempts == 1
    assert link.apdus == 6  # MSE, GA x4, SELECT applet under SM
    assert link.ins_sent() == [0x22, 0x86, 0x86, 0x86, 0x86, 0xA4]
    assert read_file(channel, FID_COM, len(EF_COM), 223) == EF_COM
    assert channel.connection.ssc == link.security.ssc == 2 * (1 + 2)


@pytest.mark.parametrize("parameter_id", range(8, 19))
def test_pace_over_every_standard_curve(parameter_id: int) -> None:
    link = ChipLink(make_chip(parameter_id=parameter_id))
    channel = open_secure_channel(link, CanKey(CAN), card_access=card_access_for(2, parameter_id))
    assert read_file(channel, FID_COM, len(EF_COM), 223) == EF_COM


@pytest.mark.parametrize(("suite_arc", "chunk"), [(1, 231), (2, 223), (3, 223), (4, 223)])
def test_pace_every_cipher_suite_reads_long_file(suite_arc: int, chunk: int) -> None:
    link = ChipLink(make_chip())
    channel = open_secure_channel(link, CanKey(CAN), card_access=card_access_for(suite_arc))
    assert channel.connection.max_read_chunk(extended=False) == chunk
    assert read_file(channel, FID_DG1, len(DG1), chunk) == DG1
    assert channel.connection.ssc == link.security.ssc


def test_pace_with_mrz_password() -> None:
    link = ChipLink(make_chip())
    channel = open_secure_channel(link, MrzKey(DOC, DOB, DOE), card_access=v.CCCD_CARD_ACCESS)
    assert channel.method is AccessMethod.PACE
    assert link.log[0][0].endswith(b"\x83\x01\x01")  # password reference 1 = MRZ


def test_wrong_can_is_rejected_once_without_retry_or_session() -> None:
    link = ChipLink(make_chip())
    with pytest.raises(AccessKeyRejectedError):
        open_secure_channel(link, CanKey("999999"), card_access=v.CCCD_CARD_ACCESS)
    assert link.apdus == 5  # one PACE run: no retry storm
    assert link.log[-1][1] == bytes.fromhex("6300")
    assert not link.security.session_active


def test_pace_failure_other_than_not_supported_fails_closed() -> None:
    link = ChipLink(make_chip())

    def corrupt_chip_token(command: CommandApdu, response: ResponseApdu) -> ResponseApdu:
        if command.ins == 0x86 and command.cla == 0x00 and response.sw == 0x9000:
            return ResponseApdu(response.data[:-1] + bytes((response.data[-1] ^ 1,)), response.sw)
        return response

    link.tamper = corrupt_chip_token
    with pytest.raises(AccessControlError) as caught:
        open_secure_channel(
            link, MrzKey(DOC, DOB, DOE), card_access=v.CCCD_CARD_ACCESS, allow_bac_fallback=True
        )
    assert not isinstance(caught.value, AccessKeyRejectedError)
    assert link.apdus == 10  # two PACE runs (one retry), never BAC
    assert 0x84 not in link.ins_sent()


def test_pace_refused_by_chip_fails_closed_without_fallback() -> None:
    link = ChipLink(make_chip(quirks=Quirks(pace_supported=False)))
    with pytest.raises(PaceNotSupportedError):
        open_secure_channel(link, MrzKey(DOC, DOB, DOE), card_access=v.CCCD_CARD_ACCESS)
    assert link.apdus == 1


def test_pace_refused_by_chip_falls_back_to_bac_when_allowed() -> None:
    link = ChipLink(make_chip(quirks=Quirks(pace_supported=False)))
    channel = open_secure_channel(
        link, MrzKey(DOC, DOB, DOE), card_access=v.CCCD_CARD_ACCESS, allow_bac_fallback=True
    )
    assert channel.method is AccessMethod.BAC
    assert channel.attempts == 1
    assert link.ins_sent() == [0x22, 0xA4, 0x84, 0x82]
    assert read_file(channel, FID_COM, len(EF_COM), 231) == EF_COM


# --- BAC ---------------------------------------------------------------------------------------------------------


def test_bac_when_no_card_access() -> None:
    link = ChipLink(make_chip())
    channel = open_secure_channel(link, MrzKey(DOC, DOB, DOE), card_access=None)
    assert channel.method is AccessMethod.BAC
    assert read_file(channel, FID_DG1, len(DG1), 231) == DG1
    assert channel.connection.ssc == link.security.ssc


def test_bac_wrong_mrz_key_rejected_with_6300() -> None:
    link = ChipLink(make_chip())
    with pytest.raises(AccessKeyRejectedError):
        open_secure_channel(link, MrzKey(DOC, DOB, "280202"), card_access=None)
    assert link.apdus == 3
    assert link.log[-1][1] == bytes.fromhex("6300")
    assert not link.security.session_active


def test_bac_refused_with_6a88_when_chip_has_no_bac() -> None:
    link = ChipLink(make_chip(quirks=Quirks(bac_supported=False)))
    with pytest.raises(AccessControlError):
        open_secure_channel(link, MrzKey(DOC, DOB, DOE), card_access=None)
    assert link.log[2][1] == bytes.fromhex("6A88")
    assert link.apdus == 6  # at most one retry


def test_can_cannot_open_a_bac_only_chip() -> None:
    link = ChipLink(make_chip())
    with pytest.raises(AccessControlError):
        open_secure_channel(link, CanKey(CAN), card_access=None)
    assert 0x82 not in link.ins_sent()


# --- session loss and re-authentication --------------------------------------------------------------------------


def test_session_lost_then_reauthenticate_and_resume() -> None:
    link = ChipLink(make_chip())
    channel = open_secure_channel(link, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS)
    first = read_file(channel, FID_DG1, 223, 223)
    link.security.reset()  # the chip lost its keys (e.g. a field dip)
    with pytest.raises(SessionLostError):
        channel.connection.send_and_receive(CommandApdu(0x00, 0xB0, 0x00, 223, le=223))
    with pytest.raises(SessionLostError):  # the dead channel stays dead
        channel.connection.send_and_receive(CommandApdu(0x00, 0xB0, 0x00, 223, le=223))
    again = open_secure_channel(channel.connection.inner, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS)
    again.connection.send_and_receive(CommandApdu(0x00, 0xA4, 0x02, 0x0C, FID_DG1.to_bytes(2, "big"))).check()
    rest = again.connection.send_and_receive(CommandApdu(0x00, 0xB0, 0x00, 223, le=223)).check()
    assert first + rest == DG1[:446]


# --- chip authentication -----------------------------------------------------------------------------------------


def dg14_for(public_key: crypto_ec.EllipticCurvePublicKey, suite_arc: int = 2) -> bytes:
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ca_info = tlv.encode_constructed(
        0x30, tlv.encode(0x06, tlv.encode_oid(f"{ID_CA_ECDH}.{suite_arc}")), tlv.encode(0x02, b"\x01")
    )
    key_info = tlv.encode_constructed(0x30, tlv.encode(0x06, tlv.encode_oid(ID_PK_ECDH)), spki)
    return tlv.encode(0x6E, tlv.encode(0x31, ca_info + key_info))


@pytest.mark.parametrize("suite_arc", [1, 2, 4])
def test_chip_authentication_switches_keys(suite_arc: int) -> None:
    ca_key = crypto_ec.generate_private_key(crypto_ec.BrainpoolP256R1())
    link = ChipLink(make_chip(ca_key=ca_key))
    channel = open_secure_channel(link, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS)
    dg14 = parse_security_infos(dg14_for(ca_key.public_key(), suite_arc))
    result = perform_chip_auth(channel.connection, dg14, rng=FixedRandom())
    assert result.apdu_count == (1 if suite_arc == 1 else 2)  # 3DES: MSE:Set KAT; AES: MSE:Set AT + GA
    assert channel.connection.ssc == link.security.ssc == 0
    assert read_file(channel, FID_COM, len(EF_COM), 223) == EF_COM


def test_chip_authentication_with_cloned_dg14_fails_on_next_read() -> None:
    ca_key = crypto_ec.generate_private_key(crypto_ec.SECP256R1())
    other = crypto_ec.generate_private_key(crypto_ec.SECP256R1())
    link = ChipLink(make_chip(ca_key=ca_key))
    channel = open_secure_channel(link, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS)
    perform_chip_auth(channel.connection, parse_security_infos(dg14_for(other.public_key())))
    with pytest.raises((SmIntegrityError, SessionLostError)):
        read_file(channel, FID_COM, len(EF_COM), 223)


def dh_key_info() -> bytes:
    """A ChipAuthenticationPublicKeyInfo for a DH key (its SPKI is never parsed: only the protocol OID counts)."""
    return tlv.encode_constructed(0x30, tlv.encode(0x06, tlv.encode_oid(ID_PK_DH)), tlv.encode(0x30, b""))


def test_dh_only_chip_authentication_is_not_supported_and_sends_nothing() -> None:
    infos = parse_security_infos(tlv.encode(0x31, dh_key_info()))
    link = ChipLink(make_chip())
    channel = open_secure_channel(link, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS)
    sent = channel.connection.ssc
    with pytest.raises(AccessControlError, match="only DH"):
        perform_chip_auth(channel.connection, infos)
    assert channel.connection.ssc == sent  # refused before any APDU


def ecdh_key_info() -> bytes:
    key = crypto_ec.generate_private_key(crypto_ec.SECP256R1()).public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return tlv.encode_constructed(0x30, tlv.encode(0x06, tlv.encode_oid(ID_PK_ECDH)), spki)


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        pytest.param((), NO_CHIP_AUTHENTICATION, id="no key"),
        pytest.param((dh_key_info,), DH_ONLY, id="DH only"),
        pytest.param((dh_key_info, ecdh_key_info), None, id="DH and ECDH: ECDH is used"),
        pytest.param((ecdh_key_info,), None, id="ECDH"),
    ],
)
def test_chip_auth_support_by_the_keys_dg14_offers(keys: tuple[Callable[[], bytes], ...], reason: str | None) -> None:
    infos = parse_security_infos(tlv.encode(0x31, b"".join(sorted(key() for key in keys))))
    assert chip_auth_unsupported(infos) == reason


# --- active authentication: the chip side against the reader's verifier -----------------------------------------


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: crypto_ec.generate_private_key(crypto_ec.SECP256R1()),
        lambda: crypto_ec.generate_private_key(crypto_ec.SECP384R1()),
        lambda: crypto_ec.generate_private_key(crypto_ec.BrainpoolP256R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["P-256", "P-384", "brainpoolP256r1", "RSA-2048"],
)
def test_active_authentication_signature_verifies(
    make_key: Callable[[], rsa.RSAPrivateKey | crypto_ec.EllipticCurvePrivateKey],
) -> None:
    aa_key = make_key()
    link = ChipLink(make_chip(aa_key=aa_key))
    channel = open_secure_channel(link, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS)
    result = active_authenticate(channel.connection, aa_key.public_key(), rng=FixedRandom(bytes(range(8))))
    assert result.verified, result.reason
    assert channel.connection.ssc == link.security.ssc


# --- DG14 keys with explicit curve parameters, invalid points ----------------------------------------------------


def test_chip_authentication_with_explicit_parameters_in_dg14() -> None:
    ca_key = crypto_ec.generate_private_key(crypto_ec.BrainpoolP256R1())
    point = ca_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    spki = explicit_ec_spki(ec.standard_parameters(13), point)
    key_info = tlv.encode_constructed(0x30, tlv.encode(0x06, tlv.encode_oid(ID_PK_ECDH)), spki, tlv.encode_integer(1))
    ca_info = tlv.encode_constructed(
        0x30, tlv.encode(0x06, tlv.encode_oid(f"{ID_CA_ECDH}.2")), tlv.encode_integer(1), tlv.encode_integer(1)
    )
    dg14 = parse_security_infos(tlv.encode(0x6E, tlv.encode(0x31, key_info + ca_info)))
    params, _ = dg14.chip_authentication_keys[0].ec_public_key()
    assert params.parameter_id == 13
    link = ChipLink(make_chip(ca_key=ca_key))
    channel = open_secure_channel(link, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS)
    result = perform_chip_auth(channel.connection, dg14)
    assert result.key_id == 1
    assert read_file(channel, FID_COM, len(EF_COM), 223) == EF_COM


def test_points_off_the_curve_are_rejected() -> None:
    params = ec.standard_parameters(13)
    good = ec.encode_point(params, params.generator)
    with pytest.raises(InvalidPointError):
        ec.decode_point(params, good[:-1] + bytes((good[-1] ^ 1,)))
    with pytest.raises(InvalidPointError):
        ec.decode_point(params, good[:-1])
    with pytest.raises(InvalidPointError):
        ec.decode_point(params, b"\x02" + good[1:33])


def test_reader_rejects_an_invalid_mapping_point_from_the_chip() -> None:
    link = ChipLink(make_chip())

    def off_curve(command: CommandApdu, response: ResponseApdu) -> ResponseApdu:
        if command.ins == 0x86 and response.data[2:3] == b"\x82":
            return ResponseApdu(response.data[:-1] + bytes((response.data[-1] ^ 1,)), response.sw)
        return response

    link.tamper = off_curve
    with pytest.raises(AccessControlError, match="not on the curve"):
        open_secure_channel(link, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS)
    assert link.apdus == 6  # two attempts of MSE + GA1 + GA2, then fail closed


def test_chip_rejects_an_invalid_mapping_point_from_the_terminal() -> None:
    chip = make_chip()
    assert chip.process(CommandApdu.from_bytes(v.PACE_MSE_SET_AT[:-1] + b"\x02")).sw == 0x9000
    assert chip.process(CommandApdu.from_bytes(v.PACE_GA1)).sw == 0x9000
    bad = v.PACE_TERMINAL_MAP_PK[:-1] + bytes((v.PACE_TERMINAL_MAP_PK[-1] ^ 1,))
    answer = chip.process(CommandApdu(0x10, 0x86, 0, 0, bytes.fromhex("7C438141") + bad, le=256))
    assert answer.sw == 0x6A80
    assert not chip.session_active


# --- policy corner cases -----------------------------------------------------------------------------------------


def test_only_unimplemented_pace_variants_listed() -> None:
    pace_im = tlv.encode(
        0x31,
        tlv.encode_constructed(
            0x30,
            tlv.encode(0x06, tlv.encode_oid("0.4.0.127.0.7.2.2.4.4.2")),
            tlv.encode_integer(2),
            tlv.encode_integer(13),
        ),
    )
    link = ChipLink(make_chip())
    with pytest.raises(PaceNotSupportedError):
        open_secure_channel(link, MrzKey(DOC, DOB, DOE), card_access=pace_im)
    assert link.apdus == 0
    channel = open_secure_channel(link, MrzKey(DOC, DOB, DOE), card_access=pace_im, allow_bac_fallback=True)
    assert channel.method is AccessMethod.BAC


def test_malformed_card_access_fails_closed() -> None:
    link = ChipLink(make_chip())
    with pytest.raises(LdsError):
        open_secure_channel(link, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS[:-3], allow_bac_fallback=True)
    assert link.apdus == 0


@pytest.mark.parametrize("can", ["12345", "1234567", "12a456", ""])
def test_malformed_can_is_refused_before_any_apdu(can: str) -> None:
    with pytest.raises(AccessKeyRejectedError):
        CanKey(can)


def test_keys_never_appear_in_reprs() -> None:
    assert CAN not in repr(CanKey(CAN))
    assert DOC not in repr(MrzKey(DOC, DOB, DOE))
    link = ChipLink(make_chip())
    channel = open_secure_channel(link, CanKey(CAN), card_access=v.CCCD_CARD_ACCESS)
    assert channel.result.keys.ks_enc.hex() not in repr(channel)
