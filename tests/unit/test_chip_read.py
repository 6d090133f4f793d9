"""The chip read session (edge/protocol/chip.py) against the virtual card in process: VirtualCard + SimChipSecurity
driven directly (no pcscd), so quirk combinations and removal points can be explored by the hundred.

The stack tests (tests/stack/test_read_card.py) run the same reads through pyscard -> pcscd -> vpcd.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import (
    AccessControlError,
    AccessKeyRejectedError,
    CardRemovedError,
    SessionLostError,
    StatusWordError,
)
from edge.protocol import tlv
from edge.protocol.access.card_access import ID_PK_DH, ID_TA
from edge.protocol.access.chip_auth import DH_ONLY
from edge.protocol.access.policy import AccessKey, AccessMethod, CanKey, MrzKey
from edge.protocol.apdu import ApduConnection, CommandApdu, ResponseApdu
from edge.protocol.chip import DEFAULT_DATA_GROUPS, ChipRead, ReadRequest, read_chip
from edge.protocol.lds.common import encode_oid
from edge.protocol.lds.dg11 import Dg11, encode_dg11
from edge.protocol.lds.dg12 import Dg12, encode_dg12
from edge.protocol.lds.dg14 import TAG_DG14
from edge.protocol.lds.sod import encode_sod
from edge.protocol.mrz import parse_mrz
from edge.protocol.read_strategy import ChunkMemory
from edge.protocol.verify.card import verify_chip
from edge.protocol.verify.checks import (
    CHIP_AUTHENTICATION,
    DG_HASHES,
    DS_CHAIN,
    DS_REVOCATION,
    DS_VALIDITY,
    ID_NUMBER_STRUCTURE,
    MRZ_VS_DG13,
    QR_VS_DG13,
    SOD_SIGNATURE,
    CheckStatus,
    Verdict,
)
from edge.protocol.verify.trust import TrustStore
from edge.sim.builder import build_card, card_access
from edge.sim.card import VirtualCard
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import FID_CARD_ACCESS, FID_SOD, SimCardSpec, dg_fid
from edge.sim.pki import SimPki, load_or_create_pki
from edge.sim.profile import list_profiles, load_profile
from tests.support import apdu as apdu_support


def _opens_with_can(name: str, *, bac: bool = False) -> bool:
    """Whether a profile's chip can be read to the end with its CAN (and, with ``bac``, also over BAC)."""
    quirks = load_profile(name).quirks.to_quirks()
    return quirks.pace_supported and quirks.remove_after_apdus is None and (quirks.bac_supported or not bac)


PROFILES = [name for name in list_profiles() if _opens_with_can(name)]
GENUINE = [name for name in PROFILES if not load_profile(name).forgery.any]
GENUINE_WITH_BAC = [name for name in GENUINE if _opens_with_can(name, bac=True)]
NOW = datetime(2026, 6, 1, tzinfo=UTC)


class Recorder(apdu_support.Recorder):
    """Records the commands on the wire (SM keeps CLA/INS/P1/P2 in clear, so SFIs stay visible)."""

    def read_sfis(self) -> list[int]:
        """SFIs named by READ BINARY B0 (P1 bit 8), in order, without repeats in a row."""
        sfis: list[int] = []
        for command in self.commands:
            if command.ins == 0xB0 and command.p1 & 0x80 and (not sfis or sfis[-1] != command.p1 & 0x1F):
                sfis.append(command.p1 & 0x1F)
        return sfis

    def ef_selects(self) -> int:
        """SELECT EF commands (by FID, P1 00 or 02); under SM their FID is encrypted, so only counted."""
        return sum(c.ins == 0xA4 and c.p1 in (0x00, 0x02) for c in self.commands)


class Specs(dict[str, SimCardSpec]):
    def __repr__(self) -> str:  # hypothesis prints its arguments: keep failure reports short
        return f"Specs({', '.join(self)})"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    return load_or_create_pki(tmp_path_factory.mktemp("sim-pki"))


@pytest.fixture(scope="module")
def specs(pki: SimPki) -> dict[str, SimCardSpec]:
    return Specs({name: build_card(load_profile(name), pki_dir=pki.directory) for name in PROFILES})


@pytest.fixture(scope="module")
def trust(pki: SimPki) -> TrustStore:
    return TrustStore.from_der([pki.csca.certificate.public_bytes(Encoding.DER)])


def with_quirks(spec: SimCardSpec, **quirks: Any) -> SimCardSpec:
    return dataclasses.replace(spec, quirks=dataclasses.replace(spec.quirks, **quirks))


def without_pace(spec: SimCardSpec, **quirks: Any) -> SimCardSpec:
    """A BAC-only card: EF.CardAccess lists no PACE, MSE:Set AT for PACE is refused."""
    image = dataclasses.replace(spec.image, mf_files={FID_CARD_ACCESS: card_access(pace=False)})
    return dataclasses.replace(with_quirks(spec, pace_supported=False, **quirks), image=image)


def chip(spec: SimCardSpec) -> VirtualCard:
    card = VirtualCard(spec, SimChipSecurity(spec.secrets, spec.quirks))
    card.power_on()
    return card


def mrz_key(spec: SimCardSpec) -> MrzKey:
    mrz = parse_mrz(spec.image.applet_files[dg_fid(1)][5:].decode("ascii"))
    return MrzKey(mrz.document_number, mrz.date_of_birth, mrz.date_of_expiry)


def can_key(spec: SimCardSpec) -> CanKey:
    return CanKey(spec.secrets.can)


def assert_complete(result: ChipRead, spec: SimCardSpec, *, photo: bool) -> None:
    """Every file read is exactly the card's, and every file the request needs is there."""
    files = spec.image.applet_files
    assert result.sod_raw == files[FID_SOD]
    expected = {n for n in (1, 13, 14, 15) if dg_fid(n) in files} | ({2} if photo else set())
    assert set(result.data_groups) == expected
    for number, content in result.data_groups.items():
        assert content == files[dg_fid(number)]
    assert result.dg1 is not None
    assert result.dg13 is not None
    assert result.dg14 is not None
    assert (result.dg2 is not None) is photo
    assert (result.dg15 is not None) is (dg_fid(15) in files)


def read(spec: SimCardSpec, key: AccessKey | None = None, **request: Any) -> tuple[ChipRead, Recorder]:
    recorder = Recorder(chip(spec))
    result = read_chip(recorder, ReadRequest(key or can_key(spec), **request), memory=ChunkMemory())
    return result, recorder


# --- full reads -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROFILES)
def test_pace_can_reads_every_profile_sod_first_and_only_what_is_needed(
    name: str, specs: dict[str, SimCardSpec]
) -> None:
    spec = specs[name]
    result, recorder = read(spec)
    assert_complete(result, spec, photo=False)
    assert result.access.method is AccessMethod.PACE
    assert result.access.attempts == 1
    sfis = recorder.read_sfis()
    if spec.quirks.no_sfi:  # the refused read of EF.CardAccess, then every file by SELECT: 5 secured, 1 plain
        assert (sfis, recorder.ef_selects()) == ([0x1C], 1 + len(result.data_groups) + 1)
    else:
        assert sfis[:3] == [0x1C, 0x1D, 14]  # EF.CardAccess (plain), then EF.SOD, then DG14 for chip authentication
        assert not {2, 3, 11} & set(sfis)
        assert recorder.ef_selects() == 0  # never SELECT MF / SELECT EF
    assert result.not_read == (2,)
    assert result.stats.apdus == len(recorder.commands)
    forgery = load_profile(name).forgery
    genuine = name in GENUINE or not (forgery.clone_keys or forgery.hostile_dg14_curve)
    assert result.chip_auth.status is (CheckStatus.PASSED if genuine else CheckStatus.FAILED)


def test_default_card_costs_fifteen_apdus(specs: dict[str, SimCardSpec]) -> None:
    # 1 EF.CardAccess + 5 PACE (MSE + 4 GA) + SELECT applet + SOD + DG14 + 2 CA + DG1 + DG13 + DG15 + AA
    result, _ = read(specs["default"])
    assert result.stats.apdus == 15
    assert result.active_auth.status is CheckStatus.PASSED
    photo, _ = read(specs["default"], want_photo=True)
    assert photo.stats.apdus == 16  # DG2 in one extended READ BINARY
    assert photo.dg2 is not None
    assert photo.dg2.mime == "image/jpeg"


@pytest.mark.parametrize("name", GENUINE_WITH_BAC)
def test_pace_mrz_and_bac(name: str, specs: dict[str, SimCardSpec]) -> None:
    spec = specs[name]
    result, _ = read(spec, mrz_key(spec))
    assert result.access.method is AccessMethod.PACE
    assert_complete(result, spec, photo=False)
    bac_card = without_pace(spec)
    result, recorder = read(bac_card, mrz_key(spec), want_photo=True)
    assert result.access.method is AccessMethod.BAC
    assert result.access.protocol == "BAC"
    assert_complete(result, bac_card, photo=True)
    assert result.chip_auth.status is CheckStatus.PASSED
    assert not any(c.ins == 0x22 and c.p2 == 0xA4 and c.cla == 0 for c in recorder.commands)  # no PACE attempt


def test_cloned_chip_fails_ca_and_aa_but_the_read_is_complete(specs: dict[str, SimCardSpec]) -> None:
    spec = specs["cloned"]
    result, _ = read(spec, want_photo=True)
    assert_complete(result, spec, photo=True)
    assert result.chip_auth.status is CheckStatus.FAILED
    assert "copy" in result.chip_auth.reason
    assert result.active_auth.status is CheckStatus.FAILED
    assert result.access.reauthentications == 2  # CA retried once, then a channel without CA


def test_ca_and_aa_can_be_skipped(specs: dict[str, SimCardSpec]) -> None:
    result, _ = read(specs["default"], do_chip_auth=False, do_active_auth=False)
    assert result.chip_auth.status is CheckStatus.NOT_PERFORMED
    assert result.active_auth.status is CheckStatus.NOT_PERFORMED
    assert result.stats.apdus == 12


def test_aa_challenge_from_request(specs: dict[str, SimCardSpec]) -> None:
    result, _ = read(specs["default"], aa_challenge=bytes(range(8)))
    assert result.active_auth.verified
    with pytest.raises(ValueError, match="8 bytes"):
        ReadRequest(can_key(specs["default"]), aa_challenge=b"short")


# --- access failures --------------------------------------------------------------------------------------------


def test_wrong_can_is_rejected_without_retry(specs: dict[str, SimCardSpec]) -> None:
    recorder = Recorder(chip(specs["default"]))
    with pytest.raises(AccessKeyRejectedError):
        read_chip(recorder, ReadRequest(CanKey("000000")))
    assert sum(1 for c in recorder.commands if c.ins == 0x22) == 1  # one MSE:Set AT: no second PACE run
    assert len(recorder.commands) == 6  # EF.CardAccess + MSE:Set AT + 4 GENERAL AUTHENTICATE


def test_wrong_mrz_key_on_bac_card_is_rejected_without_retry(specs: dict[str, SimCardSpec]) -> None:
    spec = without_pace(specs["default"])
    recorder = Recorder(chip(spec))
    with pytest.raises(AccessKeyRejectedError):
        read_chip(recorder, ReadRequest(MrzKey("123456789", "010101", "300101")))
    assert sum(1 for c in recorder.commands if c.ins == 0x82) == 1


def test_pace_only_card_reads_with_mrz_key(specs: dict[str, SimCardSpec]) -> None:
    spec = with_quirks(specs["default"], bac_supported=False)
    result, _ = read(spec, mrz_key(spec))
    assert result.access.method is AccessMethod.PACE
    assert_complete(result, spec, photo=False)


def test_bac_refused_6a88_and_no_pace_fails_closed(specs: dict[str, SimCardSpec]) -> None:
    spec = without_pace(specs["default"], bac_supported=False)
    recorder = Recorder(chip(spec))
    with pytest.raises(AccessControlError) as info:
        read_chip(recorder, ReadRequest(mrz_key(spec)))
    assert type(info.value) is AccessControlError  # not PaceNotSupportedError, not a key rejection
    assert "6A88" in str(info.value)
    assert sum(1 for c in recorder.commands if c.ins == 0x82) == 2  # the policy's one retry, then no more


def test_can_alone_cannot_open_a_bac_only_card(specs: dict[str, SimCardSpec]) -> None:
    with pytest.raises(AccessControlError):
        read(without_pace(specs["default"]))


class NoCardAccess(Recorder):
    """A card answering ``sw`` to every plain command naming EF.CardAccess (by SFI, or SELECT 011C)."""

    def __init__(self, inner: ApduConnection, sw: int) -> None:
        super().__init__(inner)
        self.sw = sw

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        by_sfi = command.ins == 0xB0 and command.p1 == 0x9C
        if command.cla == 0 and (by_sfi or (command.ins == 0xA4 and command.data == b"\x01\x1c")):
            self.commands.append(command)
            return ResponseApdu(b"", self.sw)
        return super().send_and_receive(command)


@pytest.mark.parametrize("sw", [0x6982, 0x6985, 0x6986, 0x6D00, 0x6E00, 0x6A86, 0x6A81, 0x6A82], ids=hex)
def test_an_unreadable_card_access_means_bac_and_says_why(sw: int, specs: dict[str, SimCardSpec]) -> None:
    spec = specs["default"]
    link = NoCardAccess(chip(spec), sw)
    result = read_chip(link, ReadRequest(mrz_key(spec)))
    assert result.access.method is AccessMethod.BAC
    assert result.card_access is None
    assert f"{sw:04X}" in (result.no_card_access_reason or "")
    assert_complete(result, spec, photo=False)
    # EF.CardAccess refused, the plain probe of EF.COM, then by SFI as ever: the refusal taught nothing about SFI
    assert link.read_sfis()[:4] == [0x1C, 0x1E, 0x1D, 14]
    with pytest.raises(AccessControlError, match="only BAC"):
        read_chip(NoCardAccess(chip(spec), sw), ReadRequest(can_key(spec)))


def test_other_errors_on_card_access_are_not_taken_for_no_pace(specs: dict[str, SimCardSpec]) -> None:
    with pytest.raises(StatusWordError) as info:
        read_chip(NoCardAccess(chip(specs["default"]), 0x6F00), ReadRequest(mrz_key(specs["default"])))
    assert info.value.sw == 0x6F00
    assert any("EF.CardAccess" in note for note in info.value.__notes__)


@pytest.mark.parametrize(("name", "refusal"), [("default", None), ("quirk-no-sfi", None), ("quirk-no-sfi", 0x6B00)])
def test_a_second_read_without_lifting_the_card_runs_pace(name: str, refusal: int | None,
                                                          specs: dict[str, SimCardSpec]) -> None:  # fmt: skip
    """The eMRTD application is still selected: EF.CardAccess is out of reach, EF.COM answers (by SFI, or to
    SELECT on a chip refusing reads by SFI, with 6B00 too), so PACE runs with the CCCD's parameters."""
    spec = specs[name] if refusal is None else with_quirks(specs[name], sfi_refusal_sw=refusal)
    card = chip(spec)
    read_chip(card, ReadRequest(can_key(spec)))
    again = read_chip(card, ReadRequest(can_key(spec)))
    assert again.access.method is AccessMethod.PACE
    assert again.card_access is None
    assert "still selected" in (again.no_card_access_reason or "")
    assert_complete(again, spec, photo=False)


# --- quirks -----------------------------------------------------------------------------------------------------

QUIRKS: dict[str, dict[str, Any]] = {
    "small max Le A0": {"max_le": 0xA0},
    "no extended length": {"extended_length": False},
    "6282 at end of file": {"eof_warning": True, "extended_length": False},
    "naked error answers": {"naked_errors": True, "extended_length": False},
    "6Cxx hints": {"wrong_le_hint": True, "extended_length": False},
    "no SFI, naked 6986": {"no_sfi": True, "sfi_refusal_sw": 0x6986, "naked_errors": True},
    "no SFI 6B00, small Le": {"no_sfi": True, "sfi_refusal_sw": 0x6B00, "max_le": 0xA0, "le_refusal_sw": 0x6B00},
}


@pytest.mark.parametrize("quirks", QUIRKS.values(), ids=QUIRKS.keys())
def test_quirky_cards_read_completely(quirks: dict[str, Any], specs: dict[str, SimCardSpec]) -> None:
    spec = with_quirks(specs["default"], **quirks)
    result, recorder = read(spec, want_photo=True)
    assert_complete(result, spec, photo=True)
    assert result.chip_auth.status is CheckStatus.PASSED
    assert result.active_auth.verified
    if not spec.quirks.extended_length:
        assert not result.extended_length
        assert all(not c.extended for c in recorder.commands[result.stats.apdus - 1 :])


def test_no_extended_length_reads_in_223_byte_chunks(specs: dict[str, SimCardSpec]) -> None:
    spec = with_quirks(specs["default"], extended_length=False)
    memory = ChunkMemory()
    recorder = Recorder(chip(spec))
    result = read_chip(recorder, ReadRequest(can_key(spec), want_photo=True), memory=memory)
    assert memory.extended_refused
    assert memory.limit is None  # learned on the plain EF.CardAccess read: the secured reads start at 223
    assert sum(c.extended for c in recorder.commands) == 1  # that one plain read, before any session
    files = [result.sod_raw, *result.data_groups.values()]
    # one refused extended EF.CardAccess read, EF.CardAccess, then every file in ceil(size / 223) secured reads
    assert _reads_of(recorder) == 1 + 1 + sum(math.ceil(len(f) / 223) for f in files)
    # the memory carries over to the next read of the same card: no extended attempt, no step-down
    again = Recorder(chip(spec))
    read_chip(again, ReadRequest(can_key(spec), want_photo=True), memory=memory)
    assert all(not c.extended for c in again.commands)
    assert len(again.commands) < len(recorder.commands)


@pytest.mark.parametrize("access", ["PACE", "BAC"])
def test_no_extended_length_is_learned_before_the_session(access: str, specs: dict[str, SimCardSpec]) -> None:
    """The first EF.CardAccess read asks an extended Le: a chip without extended length refuses it in plain, so no
    secured read is ever refused for it (quirk-naked-errors: 28 APDUs and a second PACE before issue 18, 21 now)."""
    spec = specs["quirk-naked-errors"]
    spec, key = (spec, can_key(spec)) if access == "PACE" else (without_pace(spec), mrz_key(spec))
    result, recorder = read(spec, key)
    assert_complete(result, spec, photo=False)
    assert result.access.reauthentications == 0
    extended = [c for c in recorder.commands if c.extended]
    assert len(extended) == 1
    assert not extended[0].cla & 0x0C  # plain: before any session
    knowing = read_chip(chip(spec), ReadRequest(key), memory=ChunkMemory(extended_refused=True))
    assert result.stats.apdus == knowing.stats.apdus + 1


@pytest.mark.parametrize("access", ["PACE", "BAC"])
def test_a_naked_refusal_of_a_secured_extended_read_costs_one_apdu(access: str, specs: dict[str, SimCardSpec]) -> None:
    """Issue 18's card: extended length in plain (EF.CardAccess's 1 KB read passes), a naked 6700 to the first
    secured extended read. The SSC goes back (gmrtd #457): no second PACE/BAC, one APDU more than a read that
    knew, and the refusal is the only secured extended command."""
    spec = with_quirks(specs["default"], naked_errors=True, max_le=1024)
    spec, key = (spec, can_key(spec)) if access == "PACE" else (without_pace(spec), mrz_key(spec))
    result, recorder = read(spec, key)
    assert_complete(result, spec, photo=False)
    assert result.access.reauthentications == 0
    assert [c.ins for c in recorder.commands if c.extended and c.cla & 0x0C] == [0xB0]
    knowing = read_chip(chip(spec), ReadRequest(key), memory=ChunkMemory(extended_refused=True))
    assert result.stats.apdus == knowing.stats.apdus + 1


def test_a_chip_that_counts_its_naked_refusal_costs_one_session_never_the_read(specs: dict[str, SimCardSpec]) -> None:
    """The opposite reading (no chip is known to count a naked answer): the next command's MAC fails at the chip,
    which ends the session; the read re-authenticates once and completes."""
    spec = with_quirks(specs["quirk-naked-errors"], naked_errors_counted=True, max_le=0xA0)
    result, _recorder = read(spec, want_photo=True)
    assert_complete(result, spec, photo=True)
    assert result.access.reauthentications == 1
    assert result.chip_auth.status is CheckStatus.PASSED


# --- session loss and removal -----------------------------------------------------------------------------------


def _reads_of(recorder: Recorder) -> int:
    return sum(1 for c in recorder.commands if c.ins in (0xB0, 0xB1))


@pytest.mark.parametrize("lost_after", range(1, 11))
def test_session_lost_mid_read_reauthenticates_once_and_resumes(lost_after: int, specs: dict[str, SimCardSpec]) -> None:
    spec = with_quirks(specs["default"], session_lost_after_apdus=lost_after, extended_length=False)
    baseline, base_recorder = read(with_quirks(specs["default"], extended_length=False), want_photo=True)
    result, recorder = read(spec, want_photo=True)
    assert_complete(result, spec, photo=True)
    assert result.access.reauthentications <= 1
    assert result.chip_auth.status is CheckStatus.PASSED
    assert result.active_auth.verified
    # resumed at the offset reached: at most the lost chunk is read again (plus one SELECT of the file)
    assert _reads_of(recorder) <= _reads_of(base_recorder) + 1
    assert result.stats.apdus <= baseline.stats.apdus + 10


@pytest.mark.parametrize("lost_after", [1, 3, 6, 9])
def test_session_lost_on_a_select_only_chip_resumes_on_the_selected_file(
    lost_after: int, specs: dict[str, SimCardSpec]
) -> None:
    spec = with_quirks(specs["quirk-no-sfi"], session_lost_after_apdus=lost_after, extended_length=False)
    result, recorder = read(spec, want_photo=True)
    assert_complete(result, spec, photo=True)
    assert result.access.reauthentications == 1
    assert result.chip_auth.status is CheckStatus.PASSED
    assert recorder.read_sfis() == [0x1C]  # after the first refusal, every file (and the resume) by SELECT


class DropSessionAt(Recorder):
    """Also erases the chip's session keys just before command number ``at`` (a second loss)."""

    def __init__(self, card: VirtualCard, at: int) -> None:
        super().__init__(card)
        self.card, self.at = card, at

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        if len(self.commands) + 1 == self.at and self.card.security is not None:
            self.card.security.reset()
        return super().send_and_receive(command)


def test_session_lost_twice_is_an_error_not_a_loop(specs: dict[str, SimCardSpec]) -> None:
    spec = with_quirks(specs["default"], session_lost_after_apdus=8)
    link = DropSessionAt(chip(spec), 25)  # AA, after re-authentication and CA were redone
    with pytest.raises(SessionLostError) as info:
        read_chip(link, ReadRequest(can_key(spec), want_photo=True))
    assert any("offset" in note for note in info.value.__notes__)
    assert len(link.commands) == 25


@pytest.mark.parametrize("remove_after", range(0, 16))
def test_removal_at_every_apdu_raises_card_removed_and_returns_nothing(
    remove_after: int, specs: dict[str, SimCardSpec]
) -> None:
    spec = with_quirks(specs["default"], remove_after_apdus=remove_after)
    result: ChipRead | None = None
    with pytest.raises(CardRemovedError):
        result, _ = read(spec, want_photo=True)
    assert result is None


@settings(max_examples=60)
@given(
    max_le=st.sampled_from([0xA0, 0xDF, 0xE7, 256, 65536]),
    extended=st.booleans(),
    eof=st.booleans(),
    naked=st.booleans(),
    hint=st.booleans(),
    lost_after=st.none() | st.integers(0, 30),
    remove_after=st.none() | st.integers(0, 120),
    photo=st.booleans(),
    profile=st.sampled_from(["default", "elderly", "child", "cloned"]),
)
def test_never_a_partial_read(
    specs: dict[str, SimCardSpec], max_le: int, extended: bool, eof: bool, naked: bool, hint: bool,
    lost_after: int | None, remove_after: int | None, photo: bool, profile: str,
) -> None:  # fmt: skip
    """Whatever the quirks and wherever the card leaves: a complete, correct read or a typed error."""
    spec = with_quirks(
        specs[profile],
        max_le=max_le,
        extended_length=extended,
        eof_warning=eof,
        naked_errors=naked,
        wrong_le_hint=hint,
        session_lost_after_apdus=lost_after,
        remove_after_apdus=remove_after,
    )
    try:
        result, _ = read(spec, want_photo=photo)
    except CardRemovedError:
        assert remove_after is not None
        return
    except SessionLostError:
        assert lost_after is not None
        assert profile == "cloned"
        return
    assert_complete(result, spec, photo=photo)
    assert remove_after is None or result.stats.apdus <= remove_after
    genuine = profile != "cloned"
    assert result.chip_auth.status is (CheckStatus.PASSED if genuine else CheckStatus.FAILED)
    if result.dg15 is None:
        assert result.active_auth.status is CheckStatus.NOT_SUPPORTED
    else:
        assert result.active_auth.status is (CheckStatus.PASSED if genuine else CheckStatus.FAILED)


@pytest.mark.parametrize(
    ("name", "error"),
    [(name, AccessControlError if not load_profile(name).quirks.to_quirks().pace_supported else CardRemovedError)
     for name in list_profiles() if not _opens_with_can(name)],
)  # fmt: skip
def test_profiles_that_cannot_be_read_with_the_can_end_in_their_error(
    name: str, error: type[Exception], pki: SimPki
) -> None:
    with pytest.raises(error):
        read(build_card(load_profile(name), pki_dir=pki.directory))


# --- an EF.SOD that does not parse ------------------------------------------------------------------------------

GARBAGE_SOD = bytes.fromhex("7703020100")  # well-formed TLV, nonsense inside (as tests/stack/test_read_card.py)


def with_files(spec: SimCardSpec, files: dict[int, bytes], *, resign: SimPki | None = None) -> SimCardSpec:
    """``spec`` with data groups (number -> content) replaced or added; ``resign``: a new SOD by that PKI's DS."""
    applet = {**spec.image.applet_files, **{dg_fid(number): content for number, content in files.items()}}
    if resign is not None:
        groups = {fid - 0x0100: content for fid, content in applet.items() if 0x0101 <= fid <= 0x0110}
        applet[FID_SOD] = encode_sod(groups, signer_key=resign.ds.key, signer_cert=resign.ds.certificate)
    return dataclasses.replace(spec, image=dataclasses.replace(spec.image, applet_files=applet))


def with_sod(spec: SimCardSpec, sod: bytes) -> SimCardSpec:
    applet = {**spec.image.applet_files, FID_SOD: sod}
    return dataclasses.replace(spec, image=dataclasses.replace(spec.image, applet_files=applet))


@pytest.mark.parametrize("name", ["default", "child"])  # child: no DG15, so its read answers 6A82 once
def test_garbage_sod_completes_the_read_and_fails_verification(
    name: str, specs: dict[str, SimCardSpec], trust: TrustStore
) -> None:
    spec = with_sod(specs[name], GARBAGE_SOD)
    result, recorder = read(spec)
    genuine, _ = read(specs[name])
    assert result.sod is None
    assert result.sod_raw == GARBAGE_SOD
    assert result.sod_error is not None
    assert "EF.SOD" in result.sod_error
    assert result.not_read == ()  # nothing is known to be listed
    files = spec.image.applet_files
    assert set(result.data_groups) == {n for n in DEFAULT_DATA_GROUPS if dg_fid(n) in files}
    assert all(content == files[dg_fid(n)] for n, content in result.data_groups.items())
    has_dg15 = dg_fid(15) in files
    # the same APDUs as a genuine read, plus the one 6A82 for a DG15 the card does not have, less CA's two: DG14
    # cannot be checked against a SOD that does not parse, so its key is not used
    assert result.stats.apdus == genuine.stats.apdus + (0 if has_dg15 else 1) - 2
    assert recorder.read_sfis()[:3] == [0x1C, 0x1D, 14]
    assert result.chip_auth.status is CheckStatus.FAILED
    assert "DG14 cannot be checked" in result.chip_auth.reason
    assert result.active_auth.status is (CheckStatus.PASSED if has_dg15 else CheckStatus.NOT_SUPPORTED)

    report = verify_chip(result, trust, now=NOW, qr=None)
    assert report.verdict is Verdict.FAILED
    sod_check = report.check(SOD_SIGNATURE)
    assert sod_check.status is CheckStatus.FAILED
    assert sod_check.reason == f"EF.SOD cannot be parsed: {result.sod_error}"
    for name_ in (DS_VALIDITY, DS_CHAIN, DS_REVOCATION, DG_HASHES):
        assert report.check(name_).status is CheckStatus.NOT_PERFORMED, name_
    assert dict(report.check(DG_HASHES).detail) == {f"DG{n}": "read, not compared" for n in sorted(result.data_groups)}
    assert report.check(CHIP_AUTHENTICATION).status is CheckStatus.FAILED
    assert report.check(MRZ_VS_DG13).passed


@settings(max_examples=25, deadline=None)
@given(content=st.binary(max_size=300), remove_after=st.none() | st.integers(0, 16))
def test_any_sod_that_does_not_parse_is_a_failed_verdict_and_removal_stays_removal(
    specs: dict[str, SimCardSpec], trust: TrustStore, content: bytes, remove_after: int | None
) -> None:
    """Whatever a whole EF.SOD holds, a read that completes is never verified; a card that leaves (also while the
    SOD is on its way) is a card-removed error, never a SOD cut short and judged as malformed."""
    spec = with_quirks(with_sod(specs["default"], tlv.encode(0x77, content)), remove_after_apdus=remove_after)
    try:
        result, _ = read(spec)
    except CardRemovedError:
        assert remove_after is not None
        return
    assert remove_after is None or result.stats.apdus <= remove_after
    assert result.sod is None
    assert verify_chip(result, trust, now=NOW, qr=None).verdict is Verdict.FAILED


# --- chip authentication the terminal cannot run ----------------------------------------------------------------


DH_PUBLIC_NUMBER = "1.2.840.10046.2.1"  # X9.42 dhpublicnumber, as BSI TR-03110 uses for DH keys


def dh_only_dg14() -> bytes:
    """DG14 whose only chip authentication key is DH (ICAO 9303-11 still allows it; this terminal does ECDH only)."""
    p, g, y = (1 << 127) - 1, 2, 0x1234567890ABCDEF  # any group: only the SPKI's shape matters here
    algorithm = tlv.encode_constructed(
        0x30, encode_oid(DH_PUBLIC_NUMBER), tlv.encode_constructed(0x30, tlv.encode_integer(p), tlv.encode_integer(g))
    )
    spki = tlv.encode_constructed(0x30, algorithm, tlv.encode(0x03, b"\x00" + tlv.encode_integer(y)))
    pk_info = tlv.encode_constructed(0x30, encode_oid(ID_PK_DH), spki)
    ta_info = tlv.encode_constructed(0x30, encode_oid(ID_TA), tlv.encode_integer(1))
    return tlv.encode(TAG_DG14, tlv.encode_constructed(0x31, *sorted((pk_info, ta_info))))


def test_dh_only_chip_authentication_is_not_supported_and_the_verdict_follows_the_rest(
    specs: dict[str, SimCardSpec], pki: SimPki, trust: TrustStore
) -> None:
    spec = with_files(specs["default"], {14: dh_only_dg14()}, resign=pki)
    result, recorder = read(spec)
    assert result.chip_auth.status is CheckStatus.NOT_SUPPORTED
    assert result.chip_auth.reason == DH_ONLY
    assert not any(c.ins == 0x22 and c.p1 == 0x41 for c in recorder.commands)  # no MSE:Set for CA was sent
    assert result.active_auth.verified
    report = verify_chip(result, trust, now=NOW, qr=None)
    # not_supported is "not offered", not "went wrong": passive and active authentication decide
    assert report.check(CHIP_AUTHENTICATION).status is CheckStatus.NOT_SUPPORTED
    assert report.verdict is Verdict.VERIFIED


# --- which data groups --------------------------------------------------------------------------------------------


def test_fewer_data_groups_skip_ca_and_aa_and_say_so(specs: dict[str, SimCardSpec], trust: TrustStore) -> None:
    result, recorder = read(specs["default"], data_groups=frozenset({1, 13}))
    assert recorder.read_sfis() == [0x1C, 0x1D, 1, 13]
    assert set(result.data_groups) == {1, 13}
    assert result.not_read == (2, 14, 15)
    # EF.CardAccess + 5 PACE + SELECT applet + SOD + DG1 + DG13
    assert result.stats.apdus == 10
    assert result.chip_auth.status is CheckStatus.NOT_PERFORMED
    assert "DG14 was not requested" in result.chip_auth.reason
    assert result.active_auth.status is CheckStatus.NOT_PERFORMED
    assert "DG15 was not requested" in result.active_auth.reason
    report = verify_chip(result, trust, now=NOW, qr=None)
    assert report.check(DG_HASHES).passed
    assert report.verdict is Verdict.VERIFIED  # what was read is genuine; CA and AA were not asked for


def test_without_dg13_the_cross_checks_are_not_performed(specs: dict[str, SimCardSpec], trust: TrustStore) -> None:
    result, _ = read(specs["default"], data_groups=frozenset({14, 15}))
    assert result.chip_auth.status is CheckStatus.PASSED
    assert result.active_auth.verified
    report = verify_chip(result, trust, now=NOW, qr=None)
    for name in (MRZ_VS_DG13, QR_VS_DG13, ID_NUMBER_STRUCTURE):
        assert report.check(name).status is CheckStatus.NOT_PERFORMED
        assert report.check(name).reason == "DG13 was not requested"


def test_aa_left_out_on_a_card_without_dg15_is_not_supported(specs: dict[str, SimCardSpec]) -> None:
    result, _ = read(specs["child"], data_groups=frozenset({1, 13, 14}))
    assert result.active_auth.status is CheckStatus.NOT_SUPPORTED


def test_dg11_and_dg12_are_read_when_requested_and_listed(
    specs: dict[str, SimCardSpec], pki: SimPki, trust: TrustStore
) -> None:
    dg11, dg12 = Dg11(place_of_birth="HA NOI"), Dg12(issuing_authority="CUC CANH SAT QLHC VE TTXH")
    spec = with_files(specs["default"], {11: encode_dg11(dg11), 12: encode_dg12(dg12)}, resign=pki)
    result, recorder = read(spec, data_groups=DEFAULT_DATA_GROUPS | {11, 12})
    assert recorder.read_sfis()[2:] == [14, 1, 11, 12, 13, 15]
    assert (result.dg11, result.dg12) == (dg11, dg12)
    report = verify_chip(result, trust, now=NOW, qr=None)
    assert report.check(DG_HASHES).reason == "all 6 data groups read match the SOD"
    assert report.verdict is Verdict.VERIFIED
    # on a card whose SOD lists no DG11/DG12, asking costs nothing: no READ BINARY for them
    plain, plain_recorder = read(specs["default"], data_groups=DEFAULT_DATA_GROUPS | {11, 12})
    assert not {11, 12} & set(plain_recorder.read_sfis())
    assert plain.dg11 is None
    assert plain.dg12 is None


@pytest.mark.parametrize("groups", [{3}, {4, 1}, {0}, {17}])
def test_unreadable_data_groups_are_refused_in_the_request(groups: set[int], specs: dict[str, SimCardSpec]) -> None:
    with pytest.raises(ValueError, match=r"DG3|numbered"):
        ReadRequest(can_key(specs["default"]), data_groups=frozenset(groups))
