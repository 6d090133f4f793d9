"""The ICAO 9303-11 worked examples, reproduced by the reader side and by the simulated chip (outside truth)."""

from __future__ import annotations

import hashlib

import pytest

from edge.protocol import crypto, ec, sm
from edge.protocol.access import pace
from edge.protocol.access.bac import BacKeys, perform_bac
from edge.protocol.access.card_access import parse_security_infos
from edge.protocol.access.pace import PacePassword, perform_pace
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.mrz import check_digit
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import ChipSecrets
from tests.unit.test_access import ChipLink, FixedRandom
from tests.vectors import icao_9303 as v


class Script:
    """A connection that answers from a recorded exchange and checks every command byte for byte."""

    def __init__(self, exchanges: list[tuple[bytes, bytes]]) -> None:
        self._exchanges = list(exchanges)

    @property
    def supports_extended_length(self) -> bool:
        return False

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        expected, response = self._exchanges.pop(0)
        assert command.to_bytes().hex().upper() == expected.hex().upper()
        return ResponseApdu.from_bytes(response)


# --- check digits, MRZ information, BAC keys -------------------------------------------------------------------


@pytest.mark.parametrize(("field", "digit"), v.CHECK_DIGITS)
def test_check_digits(field: str, digit: str) -> None:
    assert check_digit(field) == digit


@pytest.mark.parametrize(("fields", "expected"), v.MRZ_INFORMATION)
def test_mrz_information(fields: tuple[str, str, str], expected: str) -> None:
    assert crypto.mrz_information(*fields) == expected


def test_td1_long_document_number_key_seed() -> None:
    assert crypto.bac_key_seed("D23145890734934071279507122") == v.TD1_LONG_KSEED


def test_bac_key_derivation_d1_d2() -> None:
    assert hashlib.sha1(v.BAC_MRZ_INFORMATION.encode()).digest() == v.BAC_SHA1  # noqa: S324 - ICAO vector
    assert crypto.bac_key_seed(v.BAC_MRZ_INFORMATION) == v.BAC_KSEED
    keys = BacKeys.from_mrz_information(v.BAC_MRZ_INFORMATION)
    assert keys.k_enc == v.BAC_KENC
    assert keys.k_mac == v.BAC_KMAC
    assert "AB94" not in repr(keys)  # keys never reach a repr / log


def test_parity_adjustment_sets_odd_parity() -> None:
    adjusted = crypto.adjust_parity(bytes(range(256)))
    assert all(bin(b).count("1") % 2 == 1 for b in adjusted)
    assert crypto.adjust_parity(v.BAC_KENC) == v.BAC_KENC


def test_kdf_hash_choice_per_suite() -> None:
    secret = b"\x01" * 32
    assert crypto.kdf(secret, 1, crypto.AES128) == hashlib.sha1(secret + b"\0\0\0\1").digest()[:16]  # noqa: S324
    assert crypto.kdf(secret, 2, crypto.AES192) == hashlib.sha256(secret + b"\0\0\0\2").digest()[:24]
    assert crypto.kdf(secret, 3, crypto.AES256) == hashlib.sha256(secret + b"\0\0\0\3").digest()


# --- D.3 mutual authentication: reader against the recorded chip, and chip against the recorded reader -----------


def test_bac_d3_reader_side_reproduces_the_example() -> None:
    script = Script([
        (v.GET_CHALLENGE, v.RND_IC + b"\x90\x00"),
        (v.EXTERNAL_AUTHENTICATE, v.EXTERNAL_AUTHENTICATE_RESPONSE + b"\x90\x00"),
    ])
    result = perform_bac(script, v.BAC_MRZ_INFORMATION, rng=FixedRandom(v.RND_IFD, v.K_IFD))
    assert result.keys.ks_enc == v.KS_ENC
    assert result.keys.ks_mac == v.KS_MAC
    assert result.ssc == int.from_bytes(v.SSC, "big")
    assert result.apdu_count == 2


def test_bac_d3_chip_side_reproduces_the_example() -> None:
    chip = SimChipSecurity(ChipSecrets("000000", v.BAC_MRZ_INFORMATION), rng=FixedRandom(v.RND_IC, v.K_IC))
    assert chip.process(CommandApdu.from_bytes(v.GET_CHALLENGE)).data == v.RND_IC
    answer = chip.process(CommandApdu.from_bytes(v.EXTERNAL_AUTHENTICATE))
    assert answer.to_bytes() == v.EXTERNAL_AUTHENTICATE_RESPONSE + b"\x90\x00"
    assert chip.session_active
    assert chip.ssc == int.from_bytes(v.SSC, "big")


# --- D.4 secure messaging: EF.COM --------------------------------------------------------------------------------


def test_d4_reader_side_unwraps_ef_com_from_the_documented_responses() -> None:
    script = Script([(protected, response) for _, protected, response in v.SM_EXCHANGES])
    channel = sm.SecureMessaging(script, sm.SessionKeys(crypto.TDES, v.KS_ENC, v.KS_MAC), int.from_bytes(v.SSC, "big"))
    plain = [CommandApdu.from_bytes(raw) for raw, _, _ in v.SM_EXCHANGES]
    assert channel.send_and_receive(plain[0]).sw == 0x9000
    head = channel.send_and_receive(plain[1]).check()
    tail = channel.send_and_receive(plain[2]).check()
    assert head + tail == v.EF_COM
    assert channel.ssc == int.from_bytes(v.SSC, "big") + 6


def test_d4_chip_side_produces_the_documented_responses() -> None:
    keys = sm.SessionKeys(crypto.TDES, v.KS_ENC, v.KS_MAC)
    ssc = int.from_bytes(v.SSC, "big")
    answers = (ResponseApdu(b"", 0x9000), ResponseApdu(v.EF_COM[:4], 0x9000), ResponseApdu(v.EF_COM[4:], 0x9000))
    for (raw, protected, response), answer in zip(v.SM_EXCHANGES, answers, strict=True):
        ssc += 1
        assert sm.unprotect_command(keys, ssc, CommandApdu.from_bytes(protected)) == CommandApdu.from_bytes(raw)
        ssc += 1
        assert sm.protect_response(keys, ssc, answer).to_bytes() == response


# --- G.1 PACE ECDH-GM, AES-128, brainpoolP256r1 ------------------------------------------------------------------


def test_g1_primitives() -> None:
    password = PacePassword.mrz(crypto.mrz_information(*v.PACE_MRZ))
    assert crypto.mrz_information(*v.PACE_MRZ) == v.PACE_MRZ_INFORMATION
    assert crypto.pace_password_key(password.secret, crypto.AES128) == v.PACE_K_PI
    assert crypto.decrypt_cbc(crypto.AES128, v.PACE_K_PI, v.PACE_ENCRYPTED_NONCE) == v.PACE_NONCE
    params = ec.standard_parameters(13)
    chip_map = ec.multiply(params, int.from_bytes(v.PACE_CHIP_MAP_SK, "big"), params.generator)
    assert ec.encode_point(params, chip_map) == v.PACE_CHIP_MAP_PK
    terminal_sk = int.from_bytes(v.PACE_TERMINAL_MAP_SK, "big")
    assert ec.encode_point(params, ec.multiply(params, terminal_sk, params.generator)) == v.PACE_TERMINAL_MAP_PK
    shared = ec.multiply(params, terminal_sk, chip_map)
    assert (shared.x, shared.y) == v.PACE_H
    mapped = ec.add(params, ec.multiply(params, int.from_bytes(v.PACE_NONCE, "big"), params.generator), shared)
    assert (mapped.x, mapped.y) == v.PACE_MAPPED_G


def test_g1_end_to_end_reader_and_chip_reproduce_every_apdu() -> None:
    secrets = ChipSecrets("000000", v.PACE_MRZ_INFORMATION, 13)
    chip = SimChipSecurity(secrets, rng=FixedRandom(v.PACE_NONCE, v.PACE_CHIP_MAP_SK, v.PACE_CHIP_EPH_SK))
    link = ChipLink(chip)
    info = parse_security_infos(v.PACE_CARD_ACCESS).pace[0]
    password = PacePassword.mrz(v.PACE_MRZ_INFORMATION)
    result = perform_pace(
        link, password, info, rng=FixedRandom(v.PACE_TERMINAL_MAP_SK, v.PACE_TERMINAL_EPH_SK)
    )
    commands = [raw for raw, _ in link.log]
    responses = [raw for _, raw in link.log]
    assert commands[0] == v.PACE_MSE_SET_AT
    assert commands[1] == v.PACE_GA1
    assert responses[1] == v.PACE_GA1_RESPONSE
    assert commands[2] == bytes.fromhex("10860000457C438141") + v.PACE_TERMINAL_MAP_PK + b"\x00"
    assert responses[2] == bytes.fromhex("7C438241") + v.PACE_CHIP_MAP_PK + b"\x90\x00"
    x, y = v.PACE_TERMINAL_EPH_PK
    terminal_eph = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    assert commands[3] == bytes.fromhex("10860000457C438341") + terminal_eph + b"\x00"
    assert responses[3] == bytes.fromhex("7C438441") + v.PACE_CHIP_EPH_PK + b"\x90\x00"
    assert commands[4] == v.PACE_GA4
    assert responses[4] == v.PACE_GA4_RESPONSE
    assert result.keys.ks_enc == v.PACE_KS_ENC
    assert result.keys.ks_mac == v.PACE_KS_MAC
    assert result.ssc == 0
    assert result.chip_ephemeral_public_key == v.PACE_CHIP_EPH_PK
    assert chip.session_active
    assert result.apdu_count == len(link.log) == 5


def test_g1_tokens_and_shared_secret() -> None:
    params = ec.standard_parameters(13)
    mapped = params.with_generator(ec.EcPoint(*v.PACE_MAPPED_G))
    chip_eph = ec.decode_point(mapped, v.PACE_CHIP_EPH_PK)
    secret = ec.x_coordinate(mapped, ec.multiply(mapped, int.from_bytes(v.PACE_TERMINAL_EPH_SK, "big"), chip_eph))
    assert secret == v.PACE_SHARED_SECRET
    keys = pace.session_keys(crypto.AES128, secret)
    x, y = v.PACE_TERMINAL_EPH_PK
    terminal_eph = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    protocol = parse_security_infos(v.PACE_CARD_ACCESS).pace[0].protocol
    assert pace.authentication_token(keys, protocol, v.PACE_CHIP_EPH_PK) == v.PACE_T_IFD
    assert pace.authentication_token(keys, protocol, terminal_eph) == v.PACE_T_IC


# --- EF.CardAccess of a real CCCD -------------------------------------------------------------------------------


def test_cccd_card_access_parses() -> None:
    infos = parse_security_infos(v.CCCD_CARD_ACCESS, what="EF.CardAccess")
    (pace_info,) = infos.pace
    assert pace_info.protocol == "0.4.0.127.0.7.2.2.4.2.2"
    assert pace_info.version == 2
    assert pace_info.parameter_id == 13
    assert pace_info.suite == crypto.AES128
    assert pace_info.is_ecdh_gm
    (ca_info,) = infos.chip_authentication
    assert ca_info.protocol == "0.4.0.127.0.7.2.2.3.2.2"
    assert ca_info.suite == crypto.AES128
    assert len(infos.terminal_authentication) == 1
    assert len(infos.infos) == 3
