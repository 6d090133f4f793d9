"""The ICAO 9303-11 worked examples through the real stack: pyscard -> private pcscd -> vpcd -> the virtual card.

tests/unit/test_crypto_vectors.py replays the examples in process; here the same fixed randoms drive both ends of
a real PC/SC session (the chip's through ``SimChipSecurity(rng=...)``, the reader's through the protocol functions'
``rng``), so the bytes the terminal sends and receives through pcscd must be the published ones, and the
intermediate values recomputed from those wire bytes must be the example's. Outside truth: a reader and a chip
written by the same hands could agree with each other and both be wrong.
"""

from __future__ import annotations

import pytest

from edge.drivers.pcsc import PcscConnection, PcscReaderDriver
from edge.protocol import crypto, ec, sm
from edge.protocol.access import pace
from edge.protocol.access.bac import BacKeys, perform_bac
from edge.protocol.access.card_access import parse_security_infos
from edge.protocol.access.policy import MrzKey
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.read_strategy import CHUNK_AES_SM, read_file
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import FID_CARD_ACCESS, FID_COM, CardImage, ChipSecrets, SimCardSpec
from edge.sim.runner import DEMO_ATR, SimulatedCard
from edge.sim.stack import READER_NAMES
from tests.fixtures.pcsc import InsertCard
from tests.unit.test_access import FixedRandom
from tests.vectors import icao_9303 as v

pytestmark = pytest.mark.stack

#: Appendix D's document: number L898902C (filler-padded), born 690806, expires 940623.
BAC_KEY = MrzKey("L898902C", "690806", "940623")
SFI_CARD_ACCESS = FID_CARD_ACCESS & 0x1F
SFI_COM = FID_COM & 0x1F
#: Neither example gives a CAN; the chip needs one, and no test uses it.
UNUSED_CAN = "000000"


class RecordingConnection:
    """An ApduConnection in front of the real PcscConnection that keeps every exchange as raw bytes."""

    def __init__(self, inner: PcscConnection) -> None:
        self._inner = inner
        self.log: list[tuple[bytes, bytes]] = []

    @property
    def supports_extended_length(self) -> bool:
        return self._inner.supports_extended_length

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        response = self._inner.send_and_receive(command)
        self.log.append((command.to_bytes(), response.to_bytes()))
        return response


def vector_card(name: str, mrz_information: str, *, card_access: bytes | None = None) -> SimCardSpec:
    """A card holding the examples' EF.COM (and EF.CardAccess for G.1); no plain reads, so EF.COM needs SM."""
    mf_files = {FID_CARD_ACCESS: card_access} if card_access is not None else {}
    image = CardImage(atr=DEMO_ATR, mf_files=mf_files, applet_files={FID_COM: v.EF_COM})
    return SimCardSpec(name, image, ChipSecrets(UNUSED_CAN, mrz_information))


def assert_card_saw_the_wire(card: SimulatedCard, wire: RecordingConnection) -> None:
    """What reached the chip is what left the terminal: same APDU count and bytes each way (no hidden retries)."""
    counters = card.counters
    assert counters.apdus == len(wire.log)
    assert counters.bytes_in == sum(len(command) for command, _ in wire.log)
    assert counters.bytes_out == sum(len(response) for _, response in wire.log)


def uncompressed(point: tuple[int, int]) -> bytes:
    x, y = point
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


# --- Appendix D: BAC keys, mutual authentication, EF.COM under secure messaging --------------------------------


def test_appendix_d_bac_and_ef_com_under_sm_are_the_published_bytes_on_the_wire(
    insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    spec = vector_card("ICAO 9303-11 D", v.BAC_MRZ_INFORMATION)
    chip = SimChipSecurity(spec.secrets, spec.quirks, rng=FixedRandom(v.RND_IC, v.K_IC))
    card = insert_card(spec, security=chip)
    mrz_information = BAC_KEY.mrz_information()
    with pcsc_driver.connect(READER_NAMES[0]) as connection:
        wire = RecordingConnection(connection)
        wire.send_and_receive(CommandApdu.from_bytes(v.SELECT_APPLET)).check("SELECT applet")
        result = perform_bac(wire, mrz_information, rng=FixedRandom(v.RND_IFD, v.K_IFD))
        channel = sm.SecureMessaging(wire, result.keys, result.ssc)
        answers = [channel.send_and_receive(CommandApdu.from_bytes(plain)) for plain, _, _ in v.SM_EXCHANGES]
        chip_ssc, chip_in_session = chip.ssc, chip.session_active  # closing the connection resets the card

    assert wire.log == [
        (v.SELECT_APPLET, b"\x90\x00"),
        (v.GET_CHALLENGE, v.RND_IC + b"\x90\x00"),
        (v.EXTERNAL_AUTHENTICATE, v.EXTERNAL_AUTHENTICATE_RESPONSE + b"\x90\x00"),
        *((protected, response) for _, protected, response in v.SM_EXCHANGES),
    ]
    assert_card_saw_the_wire(card, wire)
    # D.1 / D.2: the document keys behind those cryptograms
    assert mrz_information == v.BAC_MRZ_INFORMATION
    keys = BacKeys.from_mrz_information(mrz_information)
    assert (keys.k_enc, keys.k_mac) == (v.BAC_KENC, v.BAC_KMAC)
    # D.3: S as the terminal sent it, K.IC as the chip answered it, and the session both sides derived
    external_authenticate, chip_answer = wire.log[2]
    assert crypto.decrypt_cbc(crypto.TDES, v.BAC_KENC, CommandApdu.from_bytes(external_authenticate).data[:32]) == v.S
    chip_plain = crypto.decrypt_cbc(crypto.TDES, v.BAC_KENC, chip_answer[:32])
    assert chip_plain == v.RND_IC + v.RND_IFD + v.K_IC
    assert (result.keys.ks_enc, result.keys.ks_mac) == (v.KS_ENC, v.KS_MAC)
    assert result.ssc.to_bytes(8, "big") == v.SSC
    # D.4: EF.COM from the 4-byte head and the 18-byte tail, both counters moved by 2 per exchange
    assert answers[0].sw == 0x9000
    assert answers[1].check() + answers[2].check() == v.EF_COM
    assert channel.ssc == chip_ssc == int.from_bytes(v.SSC, "big") + 2 * len(v.SM_EXCHANGES)
    assert chip_in_session


# --- Appendix G.1: PACE ECDH generic mapping, AES-128, brainpoolP256r1 -----------------------------------------


def test_g1_pace_end_to_end_through_pcscd_reproduces_every_apdu_and_intermediate_value(
    insert_card: InsertCard, pcsc_driver: PcscReaderDriver
) -> None:
    spec = vector_card("ICAO 9303-11 G.1", v.PACE_MRZ_INFORMATION, card_access=v.PACE_CARD_ACCESS)
    chip = SimChipSecurity(spec.secrets, spec.quirks, rng=FixedRandom(v.PACE_NONCE, v.PACE_CHIP_MAP_SK,
                                                                         v.PACE_CHIP_EPH_SK))  # fmt: skip
    card = insert_card(spec, security=chip)
    mrz_information = crypto.mrz_information(*v.PACE_MRZ)
    password = pace.PacePassword.mrz(mrz_information)
    with pcsc_driver.connect(READER_NAMES[0]) as connection:
        wire = RecordingConnection(connection)
        card_access = read_file(wire, SFI_CARD_ACCESS)
        info = parse_security_infos(card_access, what="EF.CardAccess").pace[0]
        terminal_rng = FixedRandom(v.PACE_TERMINAL_MAP_SK, v.PACE_TERMINAL_EPH_SK)
        result = pace.perform_pace(wire, password, info, rng=terminal_rng)
        pace_log = wire.log[1:]
        channel = sm.SecureMessaging(wire, result.keys, result.ssc)
        channel.send_and_receive(CommandApdu.from_bytes(v.SELECT_APPLET)).check("SELECT applet")
        ef_com = read_file(channel, SFI_COM, chunk=CHUNK_AES_SM)
        chip_ssc, chip_in_session = chip.ssc, chip.session_active  # closing the connection resets the card

    # the card's EF.CardAccess is the example's, and PACE ran exactly as printed
    assert card_access == v.PACE_CARD_ACCESS
    terminal_eph_raw = uncompressed(v.PACE_TERMINAL_EPH_PK)
    assert pace_log == [
        (v.PACE_MSE_SET_AT, b"\x90\x00"),
        (v.PACE_GA1, v.PACE_GA1_RESPONSE),
        (bytes.fromhex("10860000457C438141") + v.PACE_TERMINAL_MAP_PK + b"\x00",
         bytes.fromhex("7C438241") + v.PACE_CHIP_MAP_PK + b"\x90\x00"),
        (bytes.fromhex("10860000457C438341") + terminal_eph_raw + b"\x00",
         bytes.fromhex("7C438441") + v.PACE_CHIP_EPH_PK + b"\x90\x00"),
        (v.PACE_GA4, v.PACE_GA4_RESPONSE),
    ]  # fmt: skip
    commands = [CommandApdu.from_bytes(command).data for command, _ in pace_log]
    responses = [ResponseApdu.from_bytes(response).data for _, response in pace_log]

    # the intermediate values, recomputed from what crossed pcscd
    assert mrz_information == v.PACE_MRZ_INFORMATION
    assert crypto.pace_password_key(password.secret, info.suite) == v.PACE_K_PI
    assert pace.parse_dynamic_auth_data(responses[1], pace.TAG_ENCRYPTED_NONCE) == v.PACE_ENCRYPTED_NONCE
    nonce = pace.decrypt_nonce(info.suite, password, v.PACE_ENCRYPTED_NONCE)
    assert nonce == v.PACE_NONCE
    params = ec.standard_parameters(13)
    chip_map = ec.decode_point(params, pace.parse_dynamic_auth_data(responses[2], pace.TAG_MAP_IC))
    terminal_map_key = int.from_bytes(v.PACE_TERMINAL_MAP_SK, "big")
    shared_point = ec.multiply(params, terminal_map_key, chip_map)
    assert (shared_point.x, shared_point.y) == v.PACE_H
    mapped = pace.map_generator(params, nonce, terminal_map_key, chip_map)
    assert (mapped.generator.x, mapped.generator.y) == v.PACE_MAPPED_G
    assert pace.parse_dynamic_auth_data(commands[3], pace.TAG_EPH_IFD) == terminal_eph_raw
    chip_eph_raw = pace.parse_dynamic_auth_data(responses[3], pace.TAG_EPH_IC)
    chip_eph = ec.decode_point(mapped, chip_eph_raw)
    terminal_eph_key = int.from_bytes(v.PACE_TERMINAL_EPH_SK, "big")
    shared_secret = ec.x_coordinate(mapped, ec.multiply(mapped, terminal_eph_key, chip_eph))
    assert shared_secret == v.PACE_SHARED_SECRET
    assert pace.session_keys(info.suite, shared_secret) == result.keys
    assert (result.keys.ks_enc, result.keys.ks_mac, result.ssc) == (v.PACE_KS_ENC, v.PACE_KS_MAC, 0)
    assert result.chip_ephemeral_public_key == chip_eph_raw == v.PACE_CHIP_EPH_PK
    token_ifd = pace.parse_dynamic_auth_data(commands[4], pace.TAG_TOKEN_IFD)
    token_ic = pace.parse_dynamic_auth_data(responses[4], pace.TAG_TOKEN_IC)
    assert token_ifd == v.PACE_T_IFD == pace.authentication_token(result.keys, info.protocol, chip_eph_raw)
    assert token_ic == v.PACE_T_IC == pace.authentication_token(result.keys, info.protocol, terminal_eph_raw)

    # the session works through pcscd: the applet reselected and EF.COM read under AES secure messaging
    assert ef_com == v.EF_COM
    assert chip_in_session
    assert channel.ssc == chip_ssc == 4
    assert_card_saw_the_wire(card, wire)
