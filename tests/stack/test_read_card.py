"""The whole chip read through the real stack: read_chip over pyscard -> private pcscd -> vpcd -> the virtual CCCD
(VirtualCard + SimChipSecurity), then verify_chip against the simulator PKI's CSCA.

tests/unit/test_chip_read.py explores quirk combinations and removal points by the hundred in process; here each
genuine profile is read with PACE-CAN, PACE-MRZ and BAC, the card is lifted at named and at seeded-random points of
a read, and each quirk runs once, through the transport that production uses, so what only PC/SC does (61xx/6Cxx
answered on the wire, a removal seen as a lost reader handle) is covered. Every shipped profile file (genuine,
forgery, quirk) is also read once to the outcome it is made for. Costs are counted (APDUs on both ends), never
timed. The forgery profiles' checks in depth (with QRs, empty trust stores) are tests/stack/test_forgeries.py's.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from edge.cli import build_parser
from edge.commands import read as read_command
from edge.drivers.base import CardPresence
from edge.drivers.pcsc import PcscConnection, PcscReaderDriver
from edge.errors import AccessControlError, AccessKeyRejectedError, CardRemovedError, EdgeError
from edge.protocol.access.policy import AccessKey, AccessMethod, CanKey, MrzKey
from edge.protocol.chip import ChipRead, ReadRequest, read_chip
from edge.protocol.lds.dg13 import parse_dg13
from edge.protocol.mrz import parse_mrz
from edge.protocol.verify.card import VerificationReport, verify_chip
from edge.protocol.verify.checks import (
    ACTIVE_AUTHENTICATION,
    CHIP_AUTHENTICATION,
    DG_HASHES,
    DS_CHAIN,
    DS_VALIDITY,
    MRZ_VS_DG13,
    VERDICT_WORDS,
    CheckStatus,
    Verdict,
)
from edge.protocol.verify.trust import KNOWN_SIGNER_PREFIX, TrustStore
from edge.sim.builder import build_card, card_access
from edge.sim.card import CardCounters
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import FID_CARD_ACCESS, FID_SOD, SimCardSpec, dg_fid
from edge.sim.pki import load_or_create_pki
from edge.sim.profile import list_profiles, load_profile
from edge.sim.runner import SimulatedCard
from edge.sim.stack import READER_NAMES
from tests.fixtures.pcsc import InsertCard, wait_for_presence

pytestmark = pytest.mark.stack

NOW = datetime(2026, 6, 1, tzinfo=UTC)
#: Every shipped profile file; the genuine ones are those with neither a forgery nor a quirk.
PROFILES = list_profiles()
GENUINE = [name for name in PROFILES if not (load_profile(name).forgery.any or load_profile(name).quirks.any)]
#: EF.CardAccess + PACE (MSE + 4 GA) + SELECT applet + SOD + DG14 + CA (MSE + GA) + DG1 + DG13 + DG15 + AA.
FULL_READ_APDUS = 15


def full_read_apdus(spec: SimCardSpec, *, photo: bool = False) -> int:
    """APDUs of a PACE read of a well-behaved card: DG15 + AA only where there is a DG15, DG2 in one extended read."""
    return FULL_READ_APDUS - (0 if dg_fid(15) in spec.image.applet_files else 2) + photo


@pytest.fixture(scope="module")
def specs() -> dict[str, SimCardSpec]:
    """The profiles this file reads, built once against the shared simulator PKI (the same one `cccd-edge sim` uses)."""
    return {name: build_card(load_profile(name)) for name in PROFILES}


@pytest.fixture(scope="module")
def trust() -> TrustStore:
    return TrustStore.from_der([load_or_create_pki().csca.certificate.public_bytes(Encoding.DER)])


@pytest.fixture
def connect(pcsc_driver: PcscReaderDriver) -> Iterator[Any]:
    opened: list[PcscConnection] = []

    def open_reader(reader: int = 0) -> PcscConnection:
        opened.append(pcsc_driver.connect(READER_NAMES[reader]))
        return opened[-1]

    yield open_reader
    for connection in opened:
        connection.close()


def insert(insert_card: InsertCard, spec: SimCardSpec, reader: int = 0) -> SimulatedCard:
    return insert_card(spec, reader=reader, security=SimChipSecurity(spec.secrets, spec.quirks))


def with_quirks(spec: SimCardSpec, **quirks: Any) -> SimCardSpec:
    return dataclasses.replace(spec, quirks=dataclasses.replace(spec.quirks, **quirks))


def bac_only(spec: SimCardSpec) -> SimCardSpec:
    """No PACE: EF.CardAccess lists none and MSE:Set AT for PACE is refused, as on a first-generation card."""
    image = dataclasses.replace(spec.image, mf_files={FID_CARD_ACCESS: card_access(pace=False)})
    return dataclasses.replace(with_quirks(spec, pace_supported=False), image=image)


def mrz_key(spec: SimCardSpec) -> MrzKey:
    mrz = parse_mrz(spec.image.applet_files[dg_fid(1)][5:].decode("ascii"))
    return MrzKey(mrz.document_number, mrz.date_of_birth, mrz.date_of_expiry)


def read_on_reader(connection: PcscConnection, spec: SimCardSpec, key: AccessKey | None = None,
                   **request: Any) -> ChipRead:  # fmt: skip
    return read_chip(connection, ReadRequest(key or CanKey(spec.secrets.can), **request))


def assert_exact(result: ChipRead, spec: SimCardSpec, *, photo: bool) -> None:
    """Every file read is byte for byte the card's; DG2 only on request."""
    files = spec.image.applet_files
    expected = {n for n in (1, 13, 14, 15) if dg_fid(n) in files} | ({2} if photo else set())
    assert set(result.data_groups) == expected
    for number, content in result.data_groups.items():
        assert content == files[dg_fid(number)], f"DG{number}"
    assert (result.dg2 is not None) is photo


def failing(report: VerificationReport) -> set[str]:
    return {check.name for check in report.checks if check.status is CheckStatus.FAILED}


# --- every genuine profile, every access method ----------------------------------------------------------------


@pytest.mark.parametrize("name", GENUINE)
def test_every_genuine_profile_reads_and_verifies_with_pace_can_pace_mrz_and_bac(
    name: str, specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard, connect: Any
) -> None:
    """Issue 3's matrix: profile x {PACE-CAN, PACE-MRZ, BAC}, the MRZ key taken from the card's own DG1. BAC runs
    on the profile's BAC-only twin (same files and keys, no PACE) on the second reader. Closing a connection resets
    the card (SCARD_RESET_CARD), so each read starts as on a card just placed, from EF.CardAccess on."""
    spec, twin = specs[name], bac_only(specs[name])
    card, twin_card = insert(insert_card, spec), insert(insert_card, twin, reader=1)
    #: access -> (card, reader, key, read DG2, method, APDUs). BAC: GET CHALLENGE + EXTERNAL AUTHENTICATE instead of
    #: PACE's MSE:Set AT + 4 GENERAL AUTHENTICATE, so 3 APDUs fewer; everything else is the same read.
    reads: dict[str, tuple[SimulatedCard, int, AccessKey, bool, AccessMethod, int]] = {
        "PACE-CAN": (card, 0, CanKey(spec.secrets.can), False, AccessMethod.PACE, full_read_apdus(spec)),
        "PACE-MRZ": (card, 0, mrz_key(spec), True, AccessMethod.PACE, full_read_apdus(spec, photo=True)),
        "BAC": (twin_card, 1, mrz_key(twin), True, AccessMethod.BAC, full_read_apdus(twin, photo=True) - 3),
    }
    for access, (on, reader, key, photo, method, apdus) in reads.items():
        before = on.counters
        with connect(reader) as connection:
            result = read_on_reader(connection, on.spec, key, want_photo=photo)
        assert (result.access.method, result.access.attempts, result.access.reauthentications) == (method, 1, 0), access
        assert result.card_access_infos is not None, access  # a fresh card: EF.CardAccess was read
        assert_exact(result, on.spec, photo=photo)
        assert result.not_read == (() if photo else (2,)), access
        report = verify_chip(result, trust, now=NOW, qr=None)
        assert report.verdict is Verdict.VERIFIED, (access, failing(report))
        assert report.check(CHIP_AUTHENTICATION).passed, access
        assert result.active_auth.verified is (dg_fid(15) in on.spec.image.applet_files), access
        assert result.stats.apdus == apdus, access
        # what the terminal counted is what crossed the wire (no 61xx/6Cxx on a well-behaved card)
        after = on.counters
        assert after.apdus - before.apdus == result.stats.apdus, access
        assert (after.bytes_in - before.bytes_in, after.bytes_out - before.bytes_out) == (
            result.stats.bytes_sent, result.stats.bytes_received), access  # fmt: skip


def test_a_cloned_chip_gets_one_ca_retry_then_a_channel_without_ca(
    specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard, connect: Any
) -> None:
    """The read-layer side of the clone (its verdict and failing checks are tests/stack/test_forgeries.py's)."""
    spec = specs["cloned"]
    insert(insert_card, spec)
    result = read_on_reader(connect(), spec)
    assert result.access.reauthentications == 2  # CA retried once, then a channel without CA
    assert_exact(result, spec, photo=False)
    assert failing(verify_chip(result, trust, now=NOW, qr=None)) == {CHIP_AUTHENTICATION, ACTIVE_AUTHENTICATION}


def test_dg2_is_read_only_on_request_and_is_the_face_jpeg(
    specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard, connect: Any
) -> None:
    spec = specs["default"]
    card = insert(insert_card, spec)
    result = read_on_reader(connect(), spec, want_photo=True)
    assert_exact(result, spec, photo=True)
    assert result.dg2 is not None
    assert result.dg2.mime == "image/jpeg"
    assert result.dg2.image.startswith(b"\xff\xd8")
    assert result.not_read == ()
    assert verify_chip(result, trust, now=NOW, qr=None).verdict is Verdict.VERIFIED
    assert result.stats.apdus == FULL_READ_APDUS + 1
    assert card.counters.bytes_out >= len(spec.image.applet_files[dg_fid(2)])


# --- access denied and removal ----------------------------------------------------------------------------------


def test_wrong_can_is_access_denied_once_and_the_card_still_reads(
    specs: dict[str, SimCardSpec], insert_card: InsertCard, connect: Any
) -> None:
    spec = specs["default"]
    card = insert(insert_card, spec)
    connection = connect()
    wrong = "000000" if spec.secrets.can != "000000" else "111111"
    with pytest.raises(AccessKeyRejectedError):
        read_chip(connection, ReadRequest(CanKey(wrong)))
    assert card.counters.apdus == 6  # EF.CardAccess + MSE:Set AT + 4 GENERAL AUTHENTICATE: no second PACE run
    assert card.card.security is not None
    assert not card.card.security.session_active  # no half-open session left behind
    # the chip is not blocked by one wrong CAN: the right one works on the same connection
    result = read_on_reader(connection, spec)
    assert result.stats.apdus == FULL_READ_APDUS
    assert card.counters.apdus == 6 + FULL_READ_APDUS


@pytest.mark.parametrize("key", ["can", "mrz"])
def test_a_second_read_without_lifting_the_card_uses_pace_again(
    key: str, specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard, connect: Any
) -> None:
    """PC/SC leaves the eMRTD application selected and the CCCD cannot SELECT MF: EF.CardAccess is out of reach.
    That must not look like a BAC-only card (a CAN read would fail, an MRZ read would be downgraded to BAC)."""
    spec = specs["default"]
    card = insert(insert_card, spec)
    access_key = CanKey(spec.secrets.can) if key == "can" else mrz_key(spec)
    first = read_on_reader(connect(), spec, access_key)
    second = read_on_reader(connect(), spec, access_key)  # a new connection, as the next `cccd-edge read` makes
    assert (first.access.method, second.access.method) == (AccessMethod.PACE, AccessMethod.PACE)
    assert second.card_access is None  # not read from the card: PACE ran with the CCCD's known parameters
    assert second.stats.apdus == first.stats.apdus + 1  # EF.CardAccess 6A82 + the EF.COM probe, for one read
    assert card.counters.apdus == first.stats.apdus + second.stats.apdus
    assert verify_chip(second, trust, now=NOW, qr=None).verdict is Verdict.VERIFIED


#: A PACE-CAN read of the default card with DG2: the card answers at most this many APDUs.
FULL_READ_WITH_PHOTO = FULL_READ_APDUS + 1
#: Named removal points (answered APDUs before the card leaves): during PACE, while reading EF.SOD, right after
#: chip authentication, at active authentication.
REMOVE_AFTER = {"during PACE": 3, "reading EF.SOD": 7, "after CA": 11, "at AA": 14}
#: Plus a seeded sample of the other points of a full read (0 = gone before EF.CardAccess is answered).
REMOVAL_SEED = 9303
RANDOM_REMOVALS = sorted(
    random.Random(REMOVAL_SEED).sample(sorted(set(range(FULL_READ_WITH_PHOTO)) - set(REMOVE_AFTER.values())), 4)
)
REMOVALS = [pytest.param(after, id=label) for label, after in REMOVE_AFTER.items()] + [
    pytest.param(after, id=f"random {after}") for after in RANDOM_REMOVALS
]


@pytest.mark.parametrize("remove_after", REMOVALS)
def test_card_removed_mid_read_is_a_typed_error_and_the_next_insert_reads(
    remove_after: int, specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard,
    pcsc_driver: PcscReaderDriver, connect: Any,
) -> None:  # fmt: skip
    spec = specs["default"]
    assert full_read_apdus(spec, photo=True) == FULL_READ_WITH_PHOTO
    faulty = with_quirks(spec, remove_after_apdus=remove_after)
    card = insert(insert_card, faulty)
    result: ChipRead | None = None
    with pytest.raises(CardRemovedError):
        result = read_on_reader(connect(), faulty, want_photo=True)
    assert result is None  # never a partial result
    assert card.counters.apdus == remove_after
    assert card.wait_removed(5.0)
    wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.ABSENT)
    # the same card placed again (without the fault): a full read, nothing left over from the broken one
    again = insert(insert_card, spec)
    result = read_on_reader(connect(), spec, want_photo=True)
    assert_exact(result, spec, photo=True)
    assert result.stats.apdus == again.counters.apdus == FULL_READ_WITH_PHOTO
    assert result.access.reauthentications == 0
    assert verify_chip(result, trust, now=NOW, qr=None).verdict is Verdict.VERIFIED


# --- quirks of real chips and readers ---------------------------------------------------------------------------

#: Response chaining resends a command answered 6Cxx with Le=xx. Under secure messaging that replays a MAC'd command
#: with a used SSC (the chip's secured answer carries the inner 6Cxx as its outer status word too, ICAO 9303-11
#: 9.8.6), so the chip drops the session and the read fails. Hence edge/protocol/chaining.py never resends a
#: secured command (CLA bit 0x0C); the read layer handles 6Cxx itself.
#: "BAC refused 6A88" reads with the MRZ key, which a BAC-capable terminal could take to BAC: it must go by PACE.
QUIRKS = [
    pytest.param({"response_chunk": 64}, "can", id="T=0 61xx answers"),
    pytest.param({"wrong_le_hint": True, "extended_length": False}, "can", id="6Cxx Le hints"),
    pytest.param({"eof_warning": True, "extended_length": False}, "can", id="6282 at end of file"),
    pytest.param({"eof_warning_on_last_chunk": True, "extended_length": False}, "can", id="6282 with the last chunk"),
    pytest.param({"naked_errors": True, "extended_length": False}, "can", id="naked error answers"),
    pytest.param({"max_le": 0xA0}, "can", id="max Le A0"),
    pytest.param({"max_le": 0xA0, "le_refusal_sw": 0x6B00}, "can", id="max Le A0 refused 6B00"),
    pytest.param({"extended_length": False}, "can", id="no extended length"),
    pytest.param({"session_lost_after_apdus": 4, "extended_length": False}, "can", id="session lost once"),
    pytest.param({"bac_supported": False}, "can", id="PACE only"),
    pytest.param({"bac_supported": False}, "mrz", id="BAC refused 6A88"),
]


@pytest.mark.parametrize(("quirks", "key"), QUIRKS)
def test_quirky_cards_read_completely_and_verify(
    quirks: dict[str, Any], key: str, specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard,
    connect: Any,
) -> None:  # fmt: skip
    spec = with_quirks(specs["default"], **quirks)
    card = insert(insert_card, spec)
    result = read_on_reader(connect(), spec, mrz_key(spec) if key == "mrz" else None, want_photo=True)
    assert result.access.method is AccessMethod.PACE
    assert_exact(result, spec, photo=True)
    report = verify_chip(result, trust, now=NOW, qr=None)
    assert report.verdict is Verdict.VERIFIED, failing(report)
    assert report.check(CHIP_AUTHENTICATION).passed
    assert result.active_auth.verified
    # Upper bound: 11 fixed APDUs (PACE 5, SELECT, CA 2, AA, EF.CardAccess twice at most) + every file in chunks of
    # the size that worked, + a refused extended read and the step-downs, + one re-authentication (8) and the
    # SELECT and chunk it repeats.
    chunk = result.chunk_limit or (65536 if result.extended_length else 223)
    files = [result.sod_raw, *result.data_groups.values()]
    reauth = 10 * result.access.reauthentications
    hints = len(files) if "wrong_le_hint" in quirks else 0  # a first read past the end of a short file: one 6Cxx
    assert result.stats.apdus <= 12 + sum(-(-len(f) // chunk) for f in files) + 4 + reauth + hints
    if "response_chunk" in quirks:  # response chaining collects 61xx: the read layer never sees GET RESPONSE
        assert card.counters.apdus > result.stats.apdus
    elif "wrong_le_hint" in quirks:  # chaining resends a plain command (EF.CardAccess) answered 6Cxx, unseen above
        assert card.counters.apdus == result.stats.apdus + 1
    else:
        assert card.counters.apdus == result.stats.apdus
    assert result.access.reauthentications == (1 if "session_lost_after_apdus" in quirks else 0)
    if "max_le" in quirks:  # found by stepping down, then kept for every later file
        assert result.chunk_limit is not None
        assert result.chunk_limit <= quirks["max_le"]


#: quirk-no-sfi (a chip that reads only the file chosen by SELECT FILE), PACE-CAN with DG2: the full read, plus the
#: refused read of EF.CardAccess by SFI, plus one SELECT per file (EF.CardAccess, EF.SOD, DG14, DG1, DG13, DG15, DG2).
NO_SFI_READ_APDUS = FULL_READ_WITH_PHOTO + 1 + 7


@pytest.mark.parametrize("access", ["PACE-CAN", "BAC"])
def test_a_chip_reading_only_selected_files_verifies_with_pace_can_and_bac(
    access: str, specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard, connect: Any
) -> None:
    """One refused read by SFI (EF.CardAccess, plain), then every file by SELECT + READ BINARY by offset, under
    AES (PACE) and 3DES (BAC) secure messaging alike. BAC runs on the profile's BAC-only twin."""
    spec = specs["quirk-no-sfi"] if access == "PACE-CAN" else bac_only(specs["quirk-no-sfi"])
    key: AccessKey = CanKey(spec.secrets.can) if access == "PACE-CAN" else mrz_key(spec)
    card = insert(insert_card, spec)
    result = read_on_reader(connect(), spec, key, want_photo=True)
    assert result.access.method is (AccessMethod.PACE if access == "PACE-CAN" else AccessMethod.BAC)
    assert_exact(result, spec, photo=True)
    report = verify_chip(result, trust, now=NOW, qr=None)
    assert report.verdict is Verdict.VERIFIED, failing(report)
    assert report.check(CHIP_AUTHENTICATION).passed
    assert result.active_auth.verified
    assert result.stats.apdus == card.counters.apdus == NO_SFI_READ_APDUS - (3 if access == "BAC" else 0)


# --- every shipped profile file, to the outcome it is made for -------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What reading a shipped profile (PACE, DG2 included) must end in: a verdict with exactly ``failing`` checks
    failed, or ``error`` after the card answered ``card_apdus``; ``sign`` shows the profile's quirk was met."""

    verdict: Verdict = Verdict.VERIFIED
    failing: frozenset[str] = frozenset()
    key: str = "can"
    error: type[EdgeError] | None = None
    card_apdus: int | None = None
    sign: Callable[[ChipRead, CardCounters], bool] | None = None


def _slow_link(read: ChipRead, counters: CardCounters) -> bool:
    """The chip time is modelled at 106 kbit/s (10 bits on air per byte) over the same APDUs and bytes."""
    air_ms = counters.modelled_seconds * 1000 - counters.apdus * 10.0
    return air_ms == pytest.approx((counters.bytes_in + counters.bytes_out) * 10 / 106)


def _stepped_down_below_a0(read: ChipRead, counters: CardCounters) -> bool:
    return read.chunk_limit is not None and read.chunk_limit <= 0xA0


#: Genuine profiles default to Outcome(): verified, nothing failing. A new forgery or a failing quirk needs a line.
OUTCOMES: dict[str, Outcome] = {
    "cloned": Outcome(Verdict.FAILED, frozenset({CHIP_AUTHENTICATION, ACTIVE_AUTHENTICATION})),
    "dg1-mismatch": Outcome(Verdict.FAILED, frozenset({MRZ_VS_DG13})),
    "expired-ds": Outcome(Verdict.FAILED, frozenset({DS_VALIDITY})),
    "forged-dg13": Outcome(Verdict.FAILED, frozenset({DG_HASHES})),
    "card2024-forged-dg13": Outcome(Verdict.FAILED, frozenset({DG_HASHES})),
    "rogue-ds": Outcome(Verdict.FAILED, frozenset({DS_CHAIN})),
    # self-made Document Signers naming the installed CSCA, and a genuine DS with a flipped key id: the installed
    # namesake did not sign them (tests/stack/test_forgeries.py has the whole matrix)
    "rogue-ds-own-keyid": Outcome(Verdict.FAILED, frozenset({DS_CHAIN})),
    "rogue-ds-no-keyid": Outcome(Verdict.FAILED, frozenset({DS_CHAIN})),
    "flipped-keyid": Outcome(Verdict.FAILED, frozenset({DS_CHAIN})),
    "self-made": Outcome(Verdict.INTACT_ORIGIN_UNPROVEN),
    # hostile chips: DG14's curve is refused before any arithmetic (signed), or DG14 is not the one EF.SOD lists;
    # either way no chip authentication command is sent, and the rest of the read is as usual
    "hostile-dg14-curve": Outcome(Verdict.FAILED, frozenset({CHIP_AUTHENTICATION}),
                                  sign=lambda read, _: read.stats.apdus == FULL_READ_APDUS + 1 - 2),
    "hostile-dg14-field": Outcome(Verdict.FAILED, frozenset({DG_HASHES, CHIP_AUTHENTICATION}),
                                  sign=lambda read, _: read.stats.apdus == FULL_READ_APDUS + 1 - 2),
    "untrusted-issuer": Outcome(Verdict.INTACT_ORIGIN_UNPROVEN),
    # no PACE and BAC answered 6A88: EF.CardAccess, then SELECT + GET CHALLENGE + EXTERNAL AUTHENTICATE, retried once
    "quirk-bac-refused": Outcome(key="mrz", error=AccessControlError, card_apdus=7),
    # 6282 taught no smaller size; no extended length was learned on the plain EF.CardAccess read, so the secured
    # reads started at the chunk secure messaging fits and never stepped down
    "quirk-eof-6282": Outcome(sign=lambda read, _: read.chunk_limit is None and not read.extended_length),
    "quirk-naked-errors": Outcome(sign=lambda read, _: not read.extended_length),
    "quirk-no-sfi": Outcome(sign=lambda read, _: read.stats.apdus == NO_SFI_READ_APDUS),
    "quirk-no-extended": Outcome(sign=lambda read, _: not read.extended_length),
    # one 8-byte answer did not become the chunk size: the full secured chunk came back (tests/stack/test_hostile_reads)
    "quirk-one-short-answer": Outcome(sign=lambda read, _: read.chunk_limit is None),
    "quirk-pace-only": Outcome(key="mrz", sign=lambda read, _: read.access.method is AccessMethod.PACE),
    "quirk-removal-mid-read": Outcome(error=CardRemovedError, card_apdus=9),
    "quirk-slow-link": Outcome(sign=_slow_link),
    "quirk-small-le": Outcome(sign=_stepped_down_below_a0),
    "quirk-small-le-6b00": Outcome(sign=_stepped_down_below_a0),
}


def test_every_forgery_and_quirk_profile_has_its_outcome() -> None:
    special = {name for name in PROFILES if load_profile(name).forgery.any or load_profile(name).quirks.any}
    assert special == set(OUTCOMES)


@pytest.mark.parametrize("name", PROFILES)
def test_every_shipped_profile_reads_to_the_outcome_it_is_made_for(
    name: str, specs: dict[str, SimCardSpec], trust: TrustStore, insert_card: InsertCard, connect: Any
) -> None:
    spec, outcome = specs[name], OUTCOMES.get(name, Outcome())
    card = insert(insert_card, spec)
    key = mrz_key(spec) if outcome.key == "mrz" else None
    if outcome.error is not None:
        with pytest.raises(outcome.error):
            read_on_reader(connect(), spec, key, want_photo=True)
        assert card.counters.apdus == outcome.card_apdus
        return
    result = read_on_reader(connect(), spec, key, want_photo=True)
    assert_exact(result, spec, photo=True)
    report = verify_chip(result, trust, now=NOW, qr=None)
    assert (report.verdict, failing(report)) == (outcome.verdict, outcome.failing)
    assert card.counters.apdus == result.stats.apdus
    assert outcome.sign is None or outcome.sign(result, card.counters)


# --- `cccd-edge read`, in process (PCSCLITE_CSOCK_NAME is this process's private pcscd) -------------------------


@pytest.fixture(scope="module")
def trust_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("trust")
    (directory / "csca.pem").write_bytes(load_or_create_pki().csca.certificate.public_bytes(Encoding.PEM))
    return directory


def run_read(*argv: str) -> int:
    args = build_parser().parse_args(["read", *argv])
    code: int = args.func(args)
    return code


def garbage_sod(spec: SimCardSpec) -> SimCardSpec:
    """A chip whose EF.SOD is not a SOD (well-formed TLV, nonsense inside): a failed verification, not a bad chip
    answer (the chip did answer; what it holds proves nothing)."""
    files = {**spec.image.applet_files, FID_SOD: bytes.fromhex("7703020100")}
    return dataclasses.replace(spec, image=dataclasses.replace(spec.image, applet_files=files))


COMMAND_CASES = [
    pytest.param("default", (), read_command.EXIT_VERIFIED, id="verified"),
    pytest.param("untrusted-issuer", (), read_command.EXIT_UNPROVEN, id="issuer not proven"),
    pytest.param("forged-dg13", (), read_command.EXIT_FAILED, id="forged"),
    pytest.param("default", ("--can", "-"), read_command.EXIT_ACCESS_DENIED, id="wrong CAN"),  # 000000, stdin
    pytest.param("bac-only", (), read_command.EXIT_ACCESS_FAILED, id="CAN on a BAC-only card"),
    pytest.param("removed", (), read_command.EXIT_CARD_REMOVED, id="card removed"),
    pytest.param("garbage-sod", (), read_command.EXIT_FAILED, id="sod does not parse"),
    pytest.param(None, (), read_command.EXIT_NO_CARD, id="no card"),
    pytest.param("default", ("--reader", "No Such Reader 00 00"), read_command.EXIT_NO_READER, id="no reader"),
]


@pytest.mark.parametrize(("card", "extra", "expected"), COMMAND_CASES)
def test_read_command_exit_codes_and_one_line_errors(
    card: str | None, extra: tuple[str, ...], expected: int, specs: dict[str, SimCardSpec], trust_dir: Path,
    insert_card: InsertCard, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    spec = specs["default"]
    monkeypatch.setattr("sys.stdin", io.StringIO("000000\n"))  # piped to "--can -" (the wrong-CAN case)
    variants = {
        "bac-only": bac_only(spec),
        "removed": with_quirks(spec, remove_after_apdus=9),
        "garbage-sod": garbage_sod(spec),
    }
    if card is not None:
        spec = variants.get(card) or specs[card]
        insert(insert_card, spec)
    monkeypatch.setenv(read_command.CAN_ENV, spec.secrets.can)  # not on the command line: ps shows that
    code = run_read(*extra, "--json", "--trust-dir", str(trust_dir))
    out, err = capsys.readouterr()
    assert code == expected, err
    if expected in (read_command.EXIT_VERIFIED, read_command.EXIT_UNPROVEN, read_command.EXIT_FAILED):
        document = json.loads(out)
        no_ca = 2 if card == "garbage-sod" else 0  # DG14 cannot be checked against that SOD: no CA (MSE + GA)
        assert document["apdus"] == full_read_apdus(spec) - no_ca
        assert err == ""
    else:
        assert out == ""
        assert err.count("\n") == 1
        assert err.startswith("error (")
        assert "Traceback" not in err
    dg13 = parse_dg13(spec.image.applet_files[dg_fid(13)])
    assert dg13.id_number is not None
    assert dg13.id_number not in out + err  # masked by default, and never in an error
    assert dg13.full_name is None or dg13.full_name not in out + err


#: One exit code per rung of the verdict ladder.
RUNG_EXITS = {Verdict.VERIFIED: read_command.EXIT_VERIFIED,
              Verdict.VERIFIED_KNOWN_SIGNER: read_command.EXIT_VERIFIED_KNOWN_SIGNER,
              Verdict.INTACT_ORIGIN_UNPROVEN: read_command.EXIT_UNPROVEN, Verdict.FAILED: read_command.EXIT_FAILED}


@pytest.mark.parametrize(("card", "store", "rung"), [
    pytest.param("default", "CSCA", Verdict.VERIFIED, id="CSCA"),
    pytest.param("default", "known DS", Verdict.VERIFIED_KNOWN_SIGNER, id="known signer"),
    pytest.param("untrusted-issuer", "CSCA", Verdict.INTACT_ORIGIN_UNPROVEN, id="issuer not proven"),
    pytest.param("forged-dg13", "CSCA", Verdict.FAILED, id="failed"),
])  # fmt: skip
def test_read_command_exits_per_rung_and_says_what_was_proven(
    card: str, store: str, rung: Verdict, specs: dict[str, SimCardSpec], trust_dir: Path, tmp_path: Path,
    insert_card: InsertCard, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A pinned Document Signer (``ds-*`` in the trust directory, no CSCA) is its own rung and exit code; every
    rung prints its words, Vietnamese and English, and what it does not prove."""
    assert len(set(RUNG_EXITS.values())) == len(RUNG_EXITS)
    directory = trust_dir
    if store == "known DS":
        directory = tmp_path / "trust"
        directory.mkdir()
        ds = load_or_create_pki().ds.certificate.public_bytes(Encoding.DER)
        (directory / f"{KNOWN_SIGNER_PREFIX}pinned.der").write_bytes(ds)
    spec = specs[card]
    insert(insert_card, spec)
    code = run_read("--can", spec.secrets.can, "--trust-dir", str(directory))
    out, err = capsys.readouterr()
    assert code == RUNG_EXITS[rung], err
    assert f"verdict: {rung.value.upper()}\n" in out
    assert all(f"  {line}\n" in out for line in VERDICT_WORDS[rung].lines())


def test_read_command_writes_the_photo_private_and_shows_pii_only_on_request(
    specs: dict[str, SimCardSpec], trust_dir: Path, insert_card: InsertCard, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    spec = specs["default"]
    insert(insert_card, spec)
    photo = tmp_path / "face.jpg"
    key = mrz_key(spec)
    mrz_file = tmp_path / "mrz"
    mrz_file.write_text(f"{key.document_number},{key.date_of_birth},{key.date_of_expiry}\n")
    code = run_read("--mrz-file", str(mrz_file), "--photo", str(photo), "--show-pii",
                    "--trust-dir", str(trust_dir))  # fmt: skip
    out, err = capsys.readouterr()
    assert code == read_command.EXIT_VERIFIED, err
    assert photo.read_bytes().startswith(b"\xff\xd8")
    assert photo.stat().st_mode & 0o777 == 0o600
    dg13 = parse_dg13(spec.image.applet_files[dg_fid(13)])
    assert dg13.id_number is not None
    assert dg13.id_number in out
    assert "verdict: VERIFIED" in out
    assert f"{full_read_apdus(spec, photo=True)} APDUs" in out


@pytest.mark.parametrize(("card", "generation", "name"), [
    pytest.param("default", "2021", "CCCD (2021)", id="CCCD"),
    pytest.param("card2024", "2024", "Thẻ căn cước (2024)", id="thẻ căn cước"),
])  # fmt: skip
def test_read_command_names_each_generation_of_card(
    card: str, generation: str, name: str, specs: dict[str, SimCardSpec], trust_dir: Path,
    insert_card: InsertCard, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Both cards are valid at the counter; the desk sees which one it read, and the 2024 card's place of birth
    registration (from the provisional DG13 field 17, listed as beyond the confirmed layout) masked like the rest."""
    spec = specs[card]
    insert(insert_card, spec)
    monkeypatch.setenv(read_command.CAN_ENV, spec.secrets.can)
    code = run_read("--json", "--trust-dir", str(trust_dir))
    out, err = capsys.readouterr()
    assert code == read_command.EXIT_VERIFIED, err
    document = json.loads(out)
    assert (document["card"]["generation"], document["card"]["name"]) == (generation, name)
    person = load_profile(card).person
    if person.place_of_birth_registration is None:
        assert document["card"]["dg13_unconfirmed_fields"] == []
        assert document["citizen"]["place_of_birth_registration"] is None
    else:
        assert document["card"]["dg13_unconfirmed_fields"] == [17]
        masked = f"<{len(person.place_of_birth_registration)} chars>"
        assert document["citizen"]["place_of_birth_registration"] == masked
    assert person.id_number not in out
    monkeypatch.delenv(read_command.CAN_ENV)
    assert run_read("--can", spec.secrets.can, "--trust-dir", str(trust_dir)) == read_command.EXIT_VERIFIED
    assert f"card: {name} (" in capsys.readouterr().out
