"""The JMRTD applet personalisation plan rebuilds the profile's card exactly, and refuses cards the applet cannot hold.

The plan is replayed here by an interpreter of the applet's personalisation commands (create, select, write, put
data, lock), so each test checks what the applet would end up holding, not the bytes of one APDU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import ConfigError, StatusWordError
from edge.protocol import tlv
from edge.protocol.apdu import CommandApdu
from edge.protocol.crypto import bac_key_seed
from edge.protocol.iso7816 import EMRTD_AID, SW_INS_NOT_SUPPORTED
from edge.protocol.mrz import mrz_information
from edge.sim.builder import build_card
from edge.sim.card import VirtualCard
from edge.sim.model import FID_CARD_ACCESS, SimCardSpec, dg_fid
from edge.sim.profile import load_profile
from hil_tests.personalise import (
    APPLET_FIDS,
    MAX_UPDATE_CHUNK,
    PersoStep,
    main,
    personalisation_apdus,
    personalisation_plan,
    send_plan,
)

LOCK = CommandApdu(0x00, 0xDA, 0xDE, 0xAD)


@dataclass
class Applet:
    """What a blank passportapplet holds after a plan: created sizes, written bytes, PUT DATA objects, lock."""

    sizes: dict[int, int] = field(default_factory=dict)
    files: dict[int, bytearray] = field(default_factory=dict)
    put_data: dict[int, bytes] = field(default_factory=dict)
    locked: bool = False

    def replay(self, apdus: list[CommandApdu]) -> Applet:
        assert apdus[0] == CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)
        selected: int | None = None
        for apdu in apdus[1:]:
            assert not self.locked, "a command after the lock"
            assert not apdu.extended
            assert apdu.le == 0
            assert apdu.cla == 0x00
            if apdu.ins == 0xE0:
                assert (apdu.p1, apdu.p2, apdu.data[:2], len(apdu.data)) == (0, 0, b"\x63\x04", 6)
                size, fid = int.from_bytes(apdu.data[2:4], "big"), int.from_bytes(apdu.data[4:], "big")
                assert fid in APPLET_FIDS
                assert fid not in self.sizes
                self.sizes[fid], self.files[fid] = size, bytearray(size)
            elif apdu.ins == 0xA4:
                assert (apdu.p1, apdu.p2) == (0x02, 0x0C)
                selected = int.from_bytes(apdu.data, "big")
                assert selected in self.sizes, "SELECT FILE before CREATE FILE"
            elif apdu.ins == 0xD6:
                assert selected is not None
                offset = apdu.p1 << 8 | apdu.p2
                assert 0 < len(apdu.data) <= MAX_UPDATE_CHUNK
                assert offset + len(apdu.data) <= self.sizes[selected], "UPDATE BINARY past the created size"
                self.files[selected][offset : offset + len(apdu.data)] = apdu.data
            elif apdu.ins == 0xDA and (apdu.p1, apdu.p2) == (0xDE, 0xAD):
                assert apdu == LOCK
                self.locked = True
            elif apdu.ins == 0xDA:
                assert apdu.p1 == 0
                assert apdu.p2 not in self.put_data
                self.put_data[apdu.p2] = apdu.data
            else:
                pytest.fail(f"unexpected command {apdu.describe()}")
        return self


@pytest.fixture(scope="module")
def default_card() -> SimCardSpec:
    return build_card(load_profile("default"))


def test_replay_rebuilds_every_file_of_the_card_image_at_its_created_size(default_card: SimCardSpec) -> None:
    applet = Applet().replay(personalisation_apdus(default_card))
    expected = default_card.image.applet_files
    assert {fid: bytes(content) for fid, content in applet.files.items()} == expected
    assert applet.sizes == {fid: len(content) for fid, content in expected.items()}
    assert FID_CARD_ACCESS not in applet.sizes  # the applet has no MF and no PACE: EF.CardAccess is not written


def outside_sod(steps: list[PersoStep]) -> list[CommandApdu]:
    """The plan less EF.SOD: each build signs the SOD afresh (ECDSA is randomised: other bytes, even length)."""
    return [step.apdu for step in steps if "EF.SOD" not in step.label]


def test_profile_name_gives_the_plan_of_its_built_card(default_card: SimCardSpec) -> None:
    assert outside_sod(personalisation_plan("default")) == outside_sod(personalisation_plan(default_card))


def test_every_command_is_a_short_apdu_and_every_write_a_bounded_chunk(default_card: SimCardSpec) -> None:
    apdus = personalisation_apdus(default_card)
    writes = [apdu for apdu in apdus if apdu.ins == 0xD6]
    assert all(0 < len(apdu.data) <= MAX_UPDATE_CHUNK for apdu in writes)
    assert all(len(apdu.to_bytes()) <= 5 + 255 for apdu in apdus)
    total = sum(len(content) for content in default_card.image.applet_files.values())
    assert sum(len(apdu.data) for apdu in writes) == total  # every byte written once


def test_bac_mrz_form_carries_the_chips_mrz_key(default_card: SimCardSpec) -> None:
    data = Applet().replay(personalisation_apdus(default_card)).put_data[0x62]
    outer = tlv.decode(data)
    children = tlv.decode_all(outer.value)
    assert outer.tag == 0x62
    assert [child.tag for child in children] == [0x04, 0x04, 0x04]
    number, birth, expiry = (child.value.decode("ascii") for child in children)
    assert mrz_information(number, birth, expiry) == default_card.secrets.mrz_information


def test_bac_key_seed_form_carries_the_seed_of_the_chips_mrz_key(default_card: SimCardSpec) -> None:
    data = Applet().replay(personalisation_apdus(default_card, mrz_form="key-seed")).put_data[0x62]
    assert data == bac_key_seed(default_card.secrets.mrz_information)


def test_active_authentication_key_is_the_profiles(default_card: SimCardSpec) -> None:
    key = default_card.secrets.aa_private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    put_data = Applet().replay(personalisation_apdus(default_card)).put_data

    def value(tag: int) -> int:
        outer = tlv.decode(put_data[tag])
        inner = tlv.decode(outer.value)
        assert (outer.tag, inner.tag) == (tag, 0x04)
        return int.from_bytes(inner.value, "big")

    assert value(0x60) == key.private_numbers().public_numbers.n
    assert value(0x61) == key.private_numbers().d
    assert 0x63 not in put_data  # the profile's CA key does not fit the applet's binary-field EAC key


def test_lock_is_last_and_left_out_on_request(default_card: SimCardSpec) -> None:
    locked = personalisation_apdus(default_card)
    assert locked[-1] == LOCK
    assert locked.count(LOCK) == 1
    unlocked = personalisation_apdus(default_card, lock=False)
    assert LOCK not in unlocked
    assert unlocked == locked[:-1]


def test_profile_without_aa_key_gets_no_aa_key_and_no_dg15() -> None:
    applet = Applet().replay(personalisation_apdus("child"))
    assert 0x60 not in applet.put_data
    assert 0x61 not in applet.put_data
    assert dg_fid(15) not in applet.files
    assert 0x62 in applet.put_data


@pytest.mark.parametrize(("profile", "reason"), [("young", "EC"), ("elderly", "RSA-2048")])
def test_aa_key_the_applet_cannot_hold_is_refused(profile: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=f"Active Authentication key is {reason}") as refused:
        personalisation_apdus(profile)
    assert profile in str(refused.value)
    assert "aa_rsa_bits = 1024" in str(refused.value)


@pytest.mark.parametrize(
    ("fid", "size", "message"),
    [(dg_fid(2), 0x8000, "DG2 is 32768 bytes"), (dg_fid(16), 10, "no slot for file 0110")],
)
def test_file_the_applet_cannot_hold_is_refused(default_card: SimCardSpec, fid: int, size: int, message: str) -> None:
    files = {**default_card.image.applet_files, fid: b"\x42" * size}
    card = dataclasses.replace(default_card, image=dataclasses.replace(default_card.image, applet_files=files))
    with pytest.raises(ConfigError, match=message):
        personalisation_apdus(card)


@settings(max_examples=25)
@given(sizes=st.dictionaries(st.sampled_from(sorted(APPLET_FIDS)), st.integers(0, 3 * MAX_UPDATE_CHUNK + 1)))
def test_any_file_set_is_rebuilt_exactly(default_card: SimCardSpec, sizes: dict[int, int]) -> None:
    files = {fid: bytes((fid + index) & 0xFF for index in range(size)) for fid, size in sizes.items()}
    card = dataclasses.replace(default_card, image=dataclasses.replace(default_card.image, applet_files=files))
    applet = Applet().replay(personalisation_apdus(card))
    assert {fid: bytes(content) for fid, content in applet.files.items()} == files


def test_sending_stops_at_the_first_refusal_and_names_the_step(default_card: SimCardSpec) -> None:
    """The virtual CCCD is no blank passportapplet: it selects the eMRTD AID but knows no CREATE FILE."""
    card = VirtualCard(default_card)
    with pytest.raises(StatusWordError, match=r"step 2/\d+ \(CREATE FILE EF\.COM \(\d+ bytes\)\) answered 6D00") as e:
        send_plan(card, personalisation_plan(default_card))
    assert e.value.sw == SW_INS_NOT_SUPPORTED
    assert card.counters.apdus == 2


def test_dry_run_prints_one_hex_line_per_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profile", "default", "--dry-run", "--no-lock"]) == 0
    lines = capsys.readouterr().out.splitlines()
    printed = [PersoStep(label, CommandApdu.from_bytes(bytes.fromhex(hex_apdu)))
               for hex_apdu, label in (line.split("  # ") for line in lines)]  # fmt: skip
    assert outside_sod(printed) == outside_sod(personalisation_plan("default", lock=False))


def test_sending_needs_a_reader() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--profile", "default"])
    assert exited.value.code == 2


def test_refused_profile_ends_as_one_line_and_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profile", "young", "--dry-run"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "EC" in captured.err
