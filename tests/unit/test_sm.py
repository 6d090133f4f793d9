"""Secure messaging: SSC discipline, MAC checks, naked errors, session loss, DO encodings, fuzzed unwrapping."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import LdsError, SessionLostError, SmIntegrityError, SmObjectsMissingError
from edge.protocol import crypto, sm, tlv
from edge.protocol.access.card_access import (
    PaceDomainParameterInfo,
    UnknownSecurityInfo,
    parse_security_infos,
)
from edge.protocol.access.policy import CanKey, MrzKey, SecureChannel, open_secure_channel
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.crypto import CipherSuite
from edge.sim.card import SimSmFault
from tests.unit.test_access import CAN, DOB, DOC, DOE, FID_COM, ChipLink, card_access_for, make_chip
from tests.vectors import icao_9303 as v

SUITES = [crypto.TDES, crypto.AES128, crypto.AES192, crypto.AES256]
SUITE_ARC = {crypto.TDES: 1, crypto.AES128: 2, crypto.AES192: 3, crypto.AES256: 4}


def open_channel(
    suite: CipherSuite, *, naked_errors: bool = False, bac: bool = False
) -> tuple[ChipLink, SecureChannel]:
    link = ChipLink(make_chip(), naked_errors=naked_errors)
    if bac:
        return link, open_secure_channel(link, MrzKey(DOC, DOB, DOE), card_access=None)
    return link, open_secure_channel(link, CanKey(CAN), card_access=card_access_for(SUITE_ARC[suite]))


def keys_for(suite: CipherSuite) -> sm.SessionKeys:
    return sm.SessionKeys(suite, bytes(range(suite.key_length)), bytes(range(100, 100 + suite.key_length)))


# --- SSC discipline ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_ssc_moves_two_per_exchange_on_both_sides(suite: CipherSuite) -> None:
    link, channel = open_channel(suite)
    start = channel.connection.ssc
    conn = channel.connection
    conn.send_and_receive(CommandApdu(0x00, 0xA4, 0x02, 0x0C, FID_COM.to_bytes(2, "big"))).check()
    for offset in range(0, 20, 5):
        conn.send_and_receive(CommandApdu(0x00, 0xB0, 0, offset, le=5)).check()
    assert conn.ssc == start + 2 * 5
    assert link.security.ssc == conn.ssc


@pytest.mark.parametrize("naked", [False, True], ids=["secured-error", "naked-error"])
def test_error_answers_keep_ssc_in_step(naked: bool) -> None:
    link, channel = open_channel(crypto.AES128, naked_errors=naked)
    conn = channel.connection
    before = conn.ssc
    missing = conn.send_and_receive(CommandApdu(0x00, 0xA4, 0x02, 0x0C, b"\x01\x0b"))
    assert missing.sw == 0x6A82
    assert (link.log[-1][1] == b"\x6a\x82") is naked  # the naked answer carries no SM objects at all
    # a secured error moves both counters by two; a naked one by none: the chip refused it before SM (gmrtd #457)
    assert conn.ssc == before + (0 if naked else 2)
    assert link.security.ssc == conn.ssc
    conn.send_and_receive(CommandApdu(0x00, 0xA4, 0x02, 0x0C, FID_COM.to_bytes(2, "big"))).check()
    assert conn.send_and_receive(CommandApdu(0x00, 0xB0, 0, 0, le=4)).check() == v.EF_COM[:4]


def test_naked_wrong_length_with_3des_bac_keeps_ssc() -> None:
    link, channel = open_channel(crypto.TDES, naked_errors=True, bac=True)
    conn = channel.connection
    assert conn.send_and_receive(CommandApdu(0x00, 0x2A, 0, 0, le=4)).sw == 0x6D00
    assert link.security.ssc == conn.ssc


# --- integrity -----------------------------------------------------------------------------------------------------


def test_bad_response_mac_rejected_and_channel_closed() -> None:
    link, channel = open_channel(crypto.AES128)

    def flip_mac(command: CommandApdu, response: ResponseApdu) -> ResponseApdu:
        if command.cla & 0x0C and response.data:
            return ResponseApdu(response.data[:-1] + bytes((response.data[-1] ^ 0x01,)), response.sw)
        return response

    link.tamper = flip_mac
    with pytest.raises(SmIntegrityError):
        channel.connection.send_and_receive(CommandApdu(0x00, 0xA4, 0x02, 0x0C, FID_COM.to_bytes(2, "big")))
    link.tamper = None
    with pytest.raises(SmIntegrityError):  # no further use of a channel that failed once
        channel.connection.send_and_receive(CommandApdu(0x00, 0xA4, 0x02, 0x0C, FID_COM.to_bytes(2, "big")))


def test_success_without_sm_objects_is_rejected() -> None:
    link, channel = open_channel(crypto.AES128)
    link.tamper = lambda command, response: ResponseApdu(b"", 0x9000)
    with pytest.raises(SmObjectsMissingError):
        channel.connection.send_and_receive(CommandApdu(0x00, 0xB0, 0, 0, le=4))


@pytest.mark.parametrize("sw", [0x6987, 0x6988])
def test_session_lost_status_words(sw: int) -> None:
    link, channel = open_channel(crypto.AES128)
    link.tamper = lambda command, response: ResponseApdu(b"", sw)
    with pytest.raises(SessionLostError) as caught:
        channel.connection.send_and_receive(CommandApdu(0x00, 0xB0, 0, 0, le=4))
    assert caught.value.sw == sw


def test_chip_rejects_tampered_command_and_drops_session() -> None:
    link, channel = open_channel(crypto.AES128)
    keys = channel.result.keys
    forged = sm.protect_command(keys, channel.connection.ssc + 1, CommandApdu(0x00, 0xB0, 0, 0, le=4))
    tampered = CommandApdu(forged.cla, forged.ins, forged.p1, 0x01, forged.data, forged.le)
    with pytest.raises(SimSmFault) as caught:
        link.security.unwrap(tampered)
    assert caught.value.sw == 0x6988
    assert not link.security.session_active


def test_chip_answers_6987_to_a_plain_command_under_sm() -> None:
    link, _ = open_channel(crypto.AES128)
    with pytest.raises(SimSmFault) as caught:
        link.security.unwrap(CommandApdu(0x0C, 0xB0, 0, 0, b"\x97\x01\x04", le=256))
    assert caught.value.sw == 0x6987
    assert not link.security.session_active


# --- data-object encodings ---------------------------------------------------------------------------------------


def test_odd_ins_uses_do85_and_even_ins_do87() -> None:
    keys = keys_for(crypto.AES128)
    odd = sm.protect_command(keys, 1, CommandApdu(0x00, 0xB1, 0, 0, b"\x54\x01\x00", le=256))
    even = sm.protect_command(keys, 1, CommandApdu(0x00, 0xA4, 2, 0x0C, b"\x01\x1e"))
    assert odd.data[0] == 0x85
    assert even.data[:3] == b"\x87\x11\x01"
    assert sm.unprotect_command(keys, 1, odd).data == b"\x54\x01\x00"


def test_le_encodings_short_and_extended() -> None:
    keys = keys_for(crypto.AES128)
    short = sm.protect_command(keys, 1, CommandApdu(0x00, 0xB0, 0, 0, le=256))
    assert tlv.decode_all(short.data)[0].to_bytes() == b"\x97\x01\x00"
    assert short.to_bytes()[-1:] == b"\x00"
    extended = sm.protect_command(keys, 1, CommandApdu(0x00, 0xB0, 0, 0, le=1000, extended=True))
    assert tlv.decode_all(extended.data)[0].to_bytes() == b"\x97\x02\x03\xe8"
    assert extended.extended
    assert extended.to_bytes()[-2:] == b"\x00\x00"
    back = sm.unprotect_command(keys, 1, extended)
    assert (back.le, back.extended) == (1000, True)
    assert sm.unprotect_command(keys, 1, short).le == 256


def test_max_read_chunk_fits_exactly() -> None:
    for suite, short in ((crypto.TDES, 231), (crypto.AES128, 223), (crypto.AES256, 223)):
        keys = keys_for(suite)
        assert sm.max_plain_response(suite, 256) == short
        fits = sm.protect_response(keys, 1, ResponseApdu(bytes(short), 0x9000))
        assert len(fits.data) <= 256
        too_big = sm.protect_response(keys, 1, ResponseApdu(bytes(short + 1), 0x9000))
        assert len(too_big.data) > 256
    assert 65000 < sm.max_plain_response(crypto.AES128, 65536) < 65536
    _, channel = open_channel(crypto.AES128)
    assert channel.connection.max_read_chunk(extended=False) == 223
    assert channel.connection.max_read_chunk(extended=True) == sm.max_plain_response(crypto.AES128, 65536)


def test_session_keys_repr_hides_keys() -> None:
    keys = keys_for(crypto.AES128)
    assert keys.ks_enc.hex() not in repr(keys)


# --- property tests and fuzzing ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    ssc=st.integers(min_value=0, max_value=2**64 - 2),
    ins=st.sampled_from([0xA4, 0xB0, 0xB1, 0x88]),
    data=st.binary(max_size=200),
    le=st.integers(min_value=0, max_value=256),
    answer=st.binary(max_size=231),
    sw=st.sampled_from([0x9000, 0x6282, 0x6A82, 0x6982]),
)
def test_roundtrip_both_directions(
    suite: CipherSuite, ssc: int, ins: int, data: bytes, le: int, answer: bytes, sw: int
) -> None:
    keys = keys_for(suite)
    command = CommandApdu(0x00, ins, 0x01, 0x02, data, le)
    assert sm.unprotect_command(keys, ssc, sm.protect_command(keys, ssc, command)) == command
    response = ResponseApdu(answer, sw)
    assert sm.unprotect_response(keys, ssc, sm.protect_response(keys, ssc, response)) == response


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=80), sw=st.integers(min_value=0, max_value=0xFFFF))
def test_fuzzed_responses_only_raise_sm_integrity_errors(data: bytes, sw: int) -> None:
    keys = keys_for(crypto.AES128)
    with pytest.raises(SmIntegrityError):
        sm.unprotect_response(keys, 7, ResponseApdu(data, sw))


@settings(max_examples=100, deadline=None)
@given(suite=st.sampled_from(SUITES), answer=st.binary(max_size=40), position=st.integers(min_value=0))
def test_any_single_bit_flip_is_caught(suite: CipherSuite, answer: bytes, position: int) -> None:
    keys = keys_for(suite)
    wrapped = sm.protect_response(keys, 3, ResponseApdu(answer, 0x9000)).data
    index = position % (len(wrapped) * 8)
    flipped = bytearray(wrapped)
    flipped[index // 8] ^= 1 << (index % 8)
    with pytest.raises(SmIntegrityError):
        sm.unprotect_response(keys, 3, ResponseApdu(bytes(flipped), 0x9000))


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=80))
def test_fuzzed_security_infos_only_raise_lds_errors(data: bytes) -> None:
    with contextlib.suppress(LdsError):
        parse_security_infos(data)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(v.CCCD_CARD_ACCESS) - 1), byte=st.integers(0, 255))
def test_mutated_cccd_card_access_only_raises_lds_errors(cut: int, byte: int) -> None:
    mutated = bytearray(v.CCCD_CARD_ACCESS)
    mutated[cut] = byte
    with contextlib.suppress(LdsError):
        parse_security_infos(bytes(mutated))


@pytest.mark.parametrize("suite", [crypto.TDES, crypto.AES128], ids=lambda s: s.name)
def test_extended_length_read_in_one_exchange(suite: CipherSuite) -> None:
    link, channel = open_channel(suite)
    conn = channel.connection
    conn.send_and_receive(CommandApdu(0x00, 0xA4, 0x02, 0x0C, (0x0101).to_bytes(2, "big"))).check()
    before = link.apdus
    data = conn.send_and_receive(CommandApdu(0x00, 0xB0, 0, 0, le=768, extended=True)).check()
    assert len(data) == 768
    assert link.apdus == before + 1
    sent = link.log[-1][0]
    assert sent[4] == 0x00  # extended Lc
    assert b"\x97\x02\x03\x00" in sent
    assert link.security.ssc == conn.ssc


def test_security_infos_of_every_kind() -> None:
    def seq(*parts: bytes) -> bytes:
        return tlv.encode_constructed(0x30, *parts)

    def oid(dotted: str) -> bytes:
        return tlv.encode(0x06, tlv.encode_oid(dotted))

    one, thirteen = tlv.encode(0x02, b"\x01"), tlv.encode(0x02, b"\x0d")
    der = tlv.encode(
        0x6E,
        tlv.encode_constructed(
            0x31,
            seq(oid("0.4.0.127.0.7.2.2.4.2.4"), tlv.encode(0x02, b"\x02"), thirteen),  # PACEInfo AES-256
            seq(oid("0.4.0.127.0.7.2.2.4.2"), seq(oid("0.4.0.127.0.7.1.2"), thirteen), one),  # domain parameters
            seq(oid("2.23.136.1.1.5"), one, oid("0.4.0.127.0.7.1.1.4.1.3")),  # AA with ecdsa-plain-SHA256
            seq(oid("1.2.3.4"), one),  # proprietary: kept raw
            seq(oid("0.4.0.127.0.7.2.2.3.2"), seq(oid("0.4.0.127.0.7.1.2"))),  # CA domain parameters: kept raw
        ),
    )
    infos = parse_security_infos(der, what="DG14")
    assert infos.pace[0].suite == crypto.AES256
    domain = infos.of_type(PaceDomainParameterInfo)[0]
    assert (domain.algorithm, domain.parameter_id) == ("0.4.0.127.0.7.1.2", 1)
    assert infos.active_authentication[0].signature_algorithm == "0.4.0.127.0.7.1.1.4.1.3"
    unknown = infos.of_type(UnknownSecurityInfo)
    assert [u.protocol for u in unknown] == ["1.2.3.4", "0.4.0.127.0.7.2.2.3.2"]
    assert unknown[0].raw == seq(oid("1.2.3.4"), one)


@pytest.mark.parametrize("dotted", ["0.4.0.127.0.7.2.2.4.2.2", "2.23.136.1.1.5", "1.2.840.10045.3.1.7", "2.999.1"])
def test_oid_round_trip(dotted: str) -> None:
    assert tlv.decode_oid(tlv.encode_oid(dotted)) == dotted
