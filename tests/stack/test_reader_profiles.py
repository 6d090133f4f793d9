"""Every reader profile x every card quirk profile, read through pyscard -> pcscd -> vpcd -> virtual reader -> card.

The virtual reader (edge/sim/reader.py) enforces the profile's limits and fails the transport as the model says
(keeping or resetting the card); the driver is told the profile (``reader_profile``) as it would find it by name.
Readers whose model and driver start read alike (same limits, same failure effect, same start: extended, short or
probed) form one behaviour; each behaviour reads every card profile with and without DG2, every other reader of it
reads the default card with DG2 once, so each profile is read and CI time goes to what can differ.

Asserted, counted never timed: every file exactly the card's; no second authentication for a refusal the chip
answered; at most one re-authentication where the reader's failure was of unknown effect or reset the card; APDUs
within 1.2x of the best strategy the reader allows (the same card read by a driver that knows it is short-only);
the reader's failures counted, and learned for the reader's next read (no failure the second time).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest

from edge.drivers.pcsc import PcscConnection, PcscReaderDriver
from edge.protocol.access.policy import CanKey, MrzKey
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.chip import ChipRead, ReadRequest, read_chip
from edge.protocol.mrz import parse_mrz
from edge.protocol.readers import GENERIC, PROFILES, VIRTUAL, ReaderProfile
from edge.sim.builder import build_card
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import FID_SOD, SimCardSpec, dg_fid
from edge.sim.profile import list_profiles, load_profile
from edge.sim.reader import MODELS, ReaderModel
from edge.sim.stack import READER_NAMES
from tests.fixtures.pcsc import InsertCard

pytestmark = pytest.mark.stack

#: Card profiles a reader must read to the end: the default card and every quirk profile that opens.
CARDS = ["default"] + [
    name for name in list_profiles()
    if name.startswith("quirk-") and name not in ("quirk-bac-refused", "quirk-removal-mid-read")
]  # fmt: skip
#: Reader profiles: every shipped one, vpcd, and the generic driver over an ACS-like reader (refuses unsent,
#: keeps the card: the driver does not know it and must probe).
READERS: dict[str, tuple[ReaderProfile, ReaderModel]] = {
    profile.key: (profile, MODELS[profile.key]) for profile in (*PROFILES, VIRTUAL, GENERIC)
}
READERS["generic-over-acr1281u"] = (GENERIC, MODELS["acr1281u-c1"])
RATIO = 1.2


def behaviour(profile: ReaderProfile, model: ReaderModel) -> tuple[object, ...]:
    """Readers with one behaviour read every card alike: what the model enforces and how the driver starts."""
    passes = model.extended and model.max_command >= 0xFFFF and model.max_response >= 0xFFFF
    start = profile.extended_length
    return ("passes", start) if passes else (*model.signature, start)


_GROUPS: dict[tuple[object, ...], list[str]] = {}
for _key, (_profile, _model) in READERS.items():
    _GROUPS.setdefault(behaviour(_profile, _model), []).append(_key)
REPRESENTATIVES = [keys[0] for keys in _GROUPS.values()]
OTHERS = [key for keys in _GROUPS.values() for key in keys[1:]]


@pytest.fixture(scope="module")
def specs() -> dict[str, SimCardSpec]:
    return {name: build_card(load_profile(name)) for name in CARDS}


@pytest.fixture
def driver_for(pcsc_stack: Any) -> Iterator[Any]:
    drivers: list[PcscReaderDriver] = []

    def make(profile: ReaderProfile, *, extended_length: bool = True) -> PcscReaderDriver:
        drivers.append(PcscReaderDriver(reader_profile=profile.key, extended_length=extended_length))
        return drivers[-1]

    yield make
    for driver in drivers:
        driver.close()


def key_for(spec: SimCardSpec) -> CanKey | MrzKey:
    if not spec.quirks.pace_supported:
        mrz = parse_mrz(spec.image.applet_files[dg_fid(1)][5:].decode("ascii"))
        return MrzKey(mrz.document_number, mrz.date_of_birth, mrz.date_of_expiry)
    return CanKey(spec.secrets.can)


def read_on(driver: PcscReaderDriver, spec: SimCardSpec, *, photo: bool) -> ChipRead:
    with driver.connect(READER_NAMES[0]) as connection:
        return read_chip(connection, ReadRequest(key_for(spec), want_photo=photo))


def assert_exact(result: ChipRead, spec: SimCardSpec, *, photo: bool) -> None:
    files = spec.image.applet_files
    assert result.sod_raw == files[FID_SOD]
    expected = {n for n in (1, 13, 14, 15) if dg_fid(n) in files} | ({2} if photo else set())
    assert set(result.data_groups) == expected
    for number, content in result.data_groups.items():
        assert content == files[dg_fid(number)], f"DG{number}"


@pytest.mark.parametrize("card", CARDS)
@pytest.mark.parametrize("reader", REPRESENTATIVES)
def test_every_reader_behaviour_reads_every_card_with_and_without_dg2(
    reader: str, card: str, specs: dict[str, SimCardSpec], insert_card: InsertCard, driver_for: Any
) -> None:
    profile, model = READERS[reader]
    spec = specs[card]
    sim = insert_card(spec, security=SimChipSecurity(spec.secrets, spec.quirks), model=model)
    assert sim.virtual_reader is not None
    driver, best = driver_for(profile), driver_for(profile, extended_length=False)
    for photo in (False, True):
        failures_before = len(sim.virtual_reader.log.failures)
        result = read_on(driver, spec, photo=photo)
        assert_exact(result, spec, photo=photo)
        failed = len(sim.virtual_reader.log.failures) - failures_before
        # the reader fails at most the one probe of extended length, and only on the first read through it
        assert failed <= (1 if not photo and profile.extended_length is None else 0), (photo, failed)
        # a refusal the chip answered never costs an authentication; a transport failure of unknown effect (or a
        # card the reader reset) costs at most one
        assert result.access.reauthentications <= (1 if failed and model.on_failure == "resets-card" else 0)
        # (the one-short-answer card glitches once per card: only its first read pays for it, so no fair baseline)
        if not model.extended and spec.quirks.short_answer_once is None:
            baseline = read_on(best, spec, photo=photo)
            assert result.stats.apdus <= RATIO * baseline.stats.apdus, (result.stats.apdus, baseline.stats.apdus)
        if not model.extended:
            assert not result.extended_length


@pytest.mark.parametrize("reader", OTHERS)
def test_every_other_reader_profile_reads_the_default_card_with_dg2(
    reader: str, specs: dict[str, SimCardSpec], insert_card: InsertCard, driver_for: Any
) -> None:
    profile, model = READERS[reader]
    spec = specs["default"]
    sim = insert_card(spec, security=SimChipSecurity(spec.secrets, spec.quirks), model=model)
    result = read_on(driver_for(profile), spec, photo=True)
    assert_exact(result, spec, photo=True)
    assert result.access.reauthentications == 0
    assert sim.virtual_reader is not None
    assert len(sim.virtual_reader.log.failures) <= (1 if profile.extended_length is None else 0)


def test_an_acs_reader_refusing_extended_apdus_unsent_costs_the_probe_only(
    specs: dict[str, SimCardSpec], insert_card: InsertCard, driver_for: Any
) -> None:
    """A driver that does not know (generic profile) meets an ACR1281U-like reader: the first extended APDU fails at
    the transport before any session (the plain EF.CardAccess read), the reader is short-only from then on, the
    read completes without re-authentication, and the next read on the same reader sends no extended APDU."""
    spec = specs["default"]
    sim = insert_card(spec, security=SimChipSecurity(spec.secrets, spec.quirks), model=MODELS["acr1281u-c1"])
    driver = driver_for(GENERIC)
    first = read_on(driver, spec, photo=True)
    assert_exact(first, spec, photo=True)
    assert first.access.reauthentications == 0
    assert sim.virtual_reader is not None
    assert len(sim.virtual_reader.log.failures) == 1
    assert not driver.link(READER_NAMES[0]).extended
    second = read_on(driver, spec, photo=True)
    assert len(sim.virtual_reader.log.failures) == 1
    assert second.stats.apdus == first.stats.apdus - 1  # no probe the second time


@pytest.mark.parametrize("on_failure", ["keeps-card", "resets-card"])
def test_a_secured_read_failed_by_the_reader_ends_in_a_completed_read(
    on_failure: str, specs: dict[str, SimCardSpec], insert_card: InsertCard, driver_for: Any
) -> None:
    """A reader that passes extended commands but loses answers over 1 KB while the driver believes it carries them
    (vpcd's profile): the first large secured read fails at the transport mid-session, and whether the chip counted
    it cannot be known from an extended command's failure. The read re-authenticates once, resumes at the offset
    reached in short APDUs, and completes, whether the reader kept the card or reset it."""
    spec = specs["default"]
    effect: Literal["keeps-card", "resets-card"] = "keeps-card" if on_failure == "keeps-card" else "resets-card"
    model = ReaderModel("lossy", max_response=1024, on_failure=effect)
    sim = insert_card(spec, security=SimChipSecurity(spec.secrets, spec.quirks), model=model)
    result = read_on(driver_for(VIRTUAL), spec, photo=True)
    assert_exact(result, spec, photo=True)
    assert sim.virtual_reader is not None
    assert len(sim.virtual_reader.log.failures) >= 1
    assert result.access.reauthentications == 1
    assert not result.extended_length


class _ResetByAnotherParty:
    """A PC/SC connection whose card another application resets (SCardDisconnect with SCARD_RESET_CARD) just before
    the ``at``-th APDU: pcscd answers that APDU SCARD_W_RESET_CARD."""

    def __init__(self, inner: PcscConnection, at: int, other: PcscReaderDriver) -> None:
        self.inner, self.at, self.other, self.sent = inner, at, other, 0

    @property
    def supports_extended_length(self) -> bool:
        return self.inner.supports_extended_length

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        self.sent += 1
        if self.sent == self.at:
            self.other.connect(READER_NAMES[0]).close()
        return self.inner.send_and_receive(command)


@pytest.mark.parametrize("at", [8, 12])  # EF.SOD's extended read, DG2's
def test_a_card_reset_under_an_extended_read_costs_one_session_not_extended_length(
    at: int, specs: dict[str, SimCardSpec], insert_card: InsertCard, driver_for: Any
) -> None:
    """A reset is no reader limit: the read re-authenticates once and goes on in extended APDUs (it used to fall
    back to short ones: 82 APDUs for a 16-APDU read)."""
    spec = specs["default"]
    insert_card(spec, security=SimChipSecurity(spec.secrets, spec.quirks))
    driver, other = driver_for(VIRTUAL), driver_for(VIRTUAL)
    baseline = read_on(driver, spec, photo=True)
    with driver.connect(READER_NAMES[0]) as connection:
        result = read_chip(_ResetByAnotherParty(connection, at, other), ReadRequest(key_for(spec), want_photo=True))
    assert_exact(result, spec, photo=True)
    assert result.access.reauthentications == 1
    assert result.extended_length
    assert result.stats.apdus <= baseline.stats.apdus + 10  # a second PACE and CA, the SELECT and chunk it repeats
