"""A whole chip read through the real stack (pyscard -> private pcscd -> vpcd -> virtual CCCD). Prints its figures.

For a PACE-CAN read without and with DG2 (the profile's card with a DG2 of ``--dg2-size`` bytes, 15 KB by default),
and for the "common strategy" most readers use (SELECT each file, read its 4-byte header, then READ BINARY in
0xDF-byte chunks; same access control, CA and AA, plus EF.COM first): APDUs, bytes each way, wall time (median of
N), CPU time of the reader side (this thread: the card's vpcd thread and pcscd are not counted), and the time a real
chip would need, modelled from the counted APDUs and bytes at 106/212/424/848 kbit/s with 5 and 10 ms per APDU.

Goals: APDUs <= 0.8x the common strategy; modelled at 424 kbit/s + 10 ms <= 0.6 s without DG2, <= 1.5 s with DG2;
reader CPU <= 50 ms.

With ``--profiles``: one row per reader profile (edge/protocol/readers.py; the default card behind the simulator's
model of that reader, edge/sim/reader.py) and one per card quirk profile (on vpcd and on an ACR122U, short APDUs
only): APDUs and modelled seconds (424 kbit/s + 10 ms) without and with DG2, re-authentications, the reader's
transport failures, and the ratio to the best strategy that reader and card allow (a second read whose driver and
chunk memory already know both). Goals: no row above 1.2x, no re-authentication for a refusal the chip answered.

Run: .venv/bin/python bench/read_card.py [--runs N] [--profile NAME] [--dg2-size BYTES] [--profiles]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.sim.stack import READER_NAMES, PcscStack  # nothing here may open a PC/SC context before the stack runs

if TYPE_CHECKING:
    from edge.drivers.pcsc import PcscConnection
    from edge.protocol.chip import ApduStats

#: The links the model covers: ISO 14443 at 106-848 kbit/s, ~10 bits on the air per byte (framing, parity, CRC; as
#: the simulator's CardCounters), and a fixed cost per APDU for reader turnaround and chip processing.
LINK_KBPS = (106, 212, 424, 848)
MS_PER_APDU = (5.0, 10.0)
BITS_PER_BYTE = 10
#: The goals are stated on this link.
GOAL_LINK = (424, 10.0)
GOAL_APDU_RATIO = 0.8
GOAL_MODELLED_S = {False: 0.6, True: 1.5}
GOAL_CPU_MS = 50.0
DG2_SIZE = 15_000


def modelled_seconds(apdus: int, byte_count: int, kbps: int, ms_per_apdu: float) -> float:
    return apdus * ms_per_apdu / 1000 + byte_count * BITS_PER_BYTE / (kbps * 1000)


@dataclass(frozen=True, slots=True)
class Figures:
    apdus: int
    bytes_sent: int
    bytes_received: int
    wall_ms: float  # median
    cpu_ms: float  # median

    def modelled_s(self, kbps: int = GOAL_LINK[0], ms_per_apdu: float = GOAL_LINK[1]) -> float:
        return modelled_seconds(self.apdus, self.bytes_sent + self.bytes_received, kbps, ms_per_apdu)


def measure(read_once: Callable[[], tuple[int, int, int]], place_card: Callable[[], object], runs: int) -> Figures:
    """Run ``read_once`` (returns apdus, bytes sent, bytes received) ``runs`` times after one warm-up, each on a
    card just placed on the reader (``place_card``, untimed: MF selected, no session)."""
    place_card()
    read_once()
    walls, cpus, costs = [], [], set()
    for _ in range(runs):
        place_card()
        wall, cpu = time.perf_counter(), time.thread_time()
        costs.add(read_once())
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    if len(costs) != 1:
        raise SystemExit(f"APDU counts differ between runs: {sorted(costs)}")
    apdus, sent, received = costs.pop()
    return Figures(apdus, sent, received, statistics.median(walls) * 1000, statistics.median(cpus) * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--dg2-size", type=int, default=DG2_SIZE, help="approximate DG2 bytes (the face image)")
    parser.add_argument("--profiles", action="store_true", help="rows per reader profile and card quirk profile")
    args = parser.parse_args()
    if args.profiles:
        return profile_rows()

    with PcscStack() as stack:
        # Imported only now: nothing may open a PC/SC context before PCSCLITE_CSOCK_NAME points at this stack.
        from edge.drivers.base import CardPresence
        from edge.drivers.pcsc import PcscReaderDriver
        from edge.sim.builder import build_card
        from edge.sim.chip_security import SimChipSecurity
        from edge.sim.model import dg_fid
        from edge.sim.profile import load_profile
        from edge.sim.runner import SimulatedCard

        profile = load_profile(args.profile)
        # Same name, so the same chip keys: only the face image grows (padded JPEG, as the builder makes it).
        profile = profile.model_copy(update={"card": profile.card.model_copy(update={"dg2_size": args.dg2_size})})
        spec = build_card(profile)
        driver = PcscReaderDriver()
        print(f"pcscd {'private' if stack.private else 'system'}; vpcd port {stack.reader_port(0)}; "
              f"profile {args.profile}, DG2 {len(spec.image.applet_files[dg_fid(2)])} bytes; "
              f"median of {args.runs} runs")  # fmt: skip
        with SimulatedCard(spec, stack.reader_port(0), security=SimChipSecurity(spec.secrets, spec.quirks)) as card:
            deadline = time.monotonic() + 5.0
            while not any(s.presence is CardPresence.PRESENT for s in driver.wait_for_change(0.5)):
                if time.monotonic() > deadline:
                    raise SystemExit("the virtual card never showed up")
            with driver.connect(READER_NAMES[0]) as conn:
                results = {
                    photo: _run_pair(conn, spec.secrets.can, photo, card.card.power_on, args.runs)
                    for photo in (False, True)
                }
        driver.close()

    ok = True
    for photo, (ours, common) in results.items():
        ok &= _report(photo, ours, common)
    print("all goals met" if ok else "SOME GOALS MISSED")
    return 0 if ok else 1


def _run_pair(conn: PcscConnection, can: str, photo: bool, place_card: Callable[[], object], runs: int
              ) -> tuple[Figures, Figures]:  # fmt: skip
    from edge.protocol.access.policy import CanKey
    from edge.protocol.chip import ReadRequest, read_chip

    request = ReadRequest(CanKey(can), want_photo=photo)

    def ours() -> tuple[int, int, int]:
        stats = read_chip(conn, request).stats
        return stats.apdus, stats.bytes_sent, stats.bytes_received

    def common() -> tuple[int, int, int]:
        stats = common_strategy_read(conn, can, photo)
        return stats.apdus, stats.bytes_sent, stats.bytes_received

    return measure(ours, place_card, runs), measure(common, place_card, runs)


def common_strategy_read(conn: PcscConnection, can: str, photo: bool) -> ApduStats:
    """The baseline: what most open-source readers send for the same result (files by SELECT + header + 0xDF)."""
    from bench.common_strategy import read_file_common_strategy
    from edge.protocol.access.active_auth import active_authenticate
    from edge.protocol.access.chip_auth import perform_chip_auth
    from edge.protocol.access.policy import CanKey, open_secure_channel
    from edge.protocol.chaining import ResponseChaining
    from edge.protocol.chip import CountingConnection
    from edge.protocol.lds.dg14 import parse_dg14
    from edge.protocol.lds.dg15 import parse_dg15
    from edge.protocol.lds.sod import parse_sod
    from edge.sim.model import FID_CARD_ACCESS, FID_COM, FID_SOD, dg_fid

    counting = CountingConnection(ResponseChaining(conn))  # the chain read_chip builds under secure messaging
    card_access = read_file_common_strategy(counting, FID_CARD_ACCESS)
    sm = open_secure_channel(counting, CanKey(can), card_access=card_access).connection
    read_file_common_strategy(sm, FID_COM)
    listed = set(parse_sod(read_file_common_strategy(sm, FID_SOD)).dg_hashes)
    dg14 = parse_dg14(read_file_common_strategy(sm, dg_fid(14)))
    perform_chip_auth(sm, dg14.security_infos)
    for number in (1, 13, *((2,) if photo else ())):
        read_file_common_strategy(sm, dg_fid(number))
    if 15 in listed:
        dg15 = parse_dg15(read_file_common_strategy(sm, dg_fid(15)))
        active_authenticate(sm, dg15.public_key)
    return counting.stats()


def _report(photo: bool, ours: Figures, common: Figures) -> bool:
    title = "PACE-CAN read " + ("with DG2 (face image)" if photo else "without DG2")
    print(f"\n{title}")
    print(f"  {'':<22}{'APDUs':>6}{'sent':>8}{'received':>10}{'wall ms':>10}{'CPU ms':>9}")
    for label, figures in (("cccd-edge read_chip", ours), ("common strategy", common)):
        print(f"  {label:<22}{figures.apdus:>6}{figures.bytes_sent:>8}{figures.bytes_received:>10}"
              f"{figures.wall_ms:>10.1f}{figures.cpu_ms:>9.1f}")  # fmt: skip
    print(f"  modelled {'kbit/s':>8}{'ms/APDU':>9}{'cccd-edge s':>13}{'common s':>10}{'ratio':>7}")
    for kbps in LINK_KBPS:
        for ms in MS_PER_APDU:
            mine, theirs = ours.modelled_s(kbps, ms), common.modelled_s(kbps, ms)
            print(f"  {'':<8} {kbps:>8}{ms:>9.0f}{mine:>13.3f}{theirs:>10.3f}{mine / theirs:>7.2f}")
    ratio = ours.apdus / common.apdus
    modelled, modelled_goal = ours.modelled_s(), GOAL_MODELLED_S[photo]
    link = f"{GOAL_LINK[0]} kbit/s + {GOAL_LINK[1]:.0f} ms"
    goals = [
        (f"APDUs {ratio:.2f}x the common strategy", f"<= {GOAL_APDU_RATIO}x", ratio <= GOAL_APDU_RATIO),
        (f"modelled {modelled:.3f} s at {link}", f"<= {modelled_goal} s", modelled <= modelled_goal),
        (f"reader CPU {ours.cpu_ms:.1f} ms", f"<= {GOAL_CPU_MS:.0f} ms", ours.cpu_ms <= GOAL_CPU_MS),
    ]  # fmt: skip
    for figure, goal, met in goals:
        print(f"  goal {goal:<10} {figure:<44} {'met' if met else 'MISSED'}")
    return all(met for _, _, met in goals)


GOAL_PROFILE_RATIO = 1.2
#: Card profiles a reader must read to the end (the others are made to fail).
_FAILING_CARDS = ("quirk-bac-refused", "quirk-removal-mid-read")


@dataclass(frozen=True, slots=True)
class ProfileRow:
    label: str
    apdus: tuple[int, int]  # without, with DG2
    modelled: tuple[float, float]
    best: tuple[int, int]
    reauthentications: int
    failures: int

    @property
    def ratio(self) -> float:
        return max(self.apdus[i] / self.best[i] for i in (0, 1))


def profile_rows() -> int:
    """The rows of ``--profiles`` (see the module docstring)."""
    with PcscStack() as stack:
        from edge.protocol.readers import GENERIC, PROFILES, VIRTUAL
        from edge.sim.profile import list_profiles
        from edge.sim.reader import MODELS

        readers = [(p.key, p.key, MODELS[p.key]) for p in (*PROFILES, VIRTUAL, GENERIC)]
        readers.append(("generic over ACR1281U", GENERIC.key, MODELS["acr1281u-c1"]))
        cards = [n for n in list_profiles() if n.startswith("quirk-") and n not in _FAILING_CARDS]
        reader_rows = [_profile_row(stack, label, key, model, "default") for label, key, model in readers]
        card_rows = [_profile_row(stack, f"{card} on {key}", key, MODELS[key], card)
                     for card in ["default", *cards] for key in ("vpcd", "acr122u")]  # fmt: skip
    ok = True
    for title, rows in (("reader profiles (default card)", reader_rows), ("card quirk profiles", card_rows)):
        print(f"\n{title}")
        print(f"  {'':<34}{'APDUs':>12}{'modelled s':>14}{'best APDUs':>12}{'ratio':>7}{'re-auth':>8}{'failed':>7}")
        for row in rows:
            met = row.ratio <= GOAL_PROFILE_RATIO and row.reauthentications <= (1 if row.failures else 0)
            ok &= met
            print(f"  {row.label:<34}{row.apdus[0]:>5} / {row.apdus[1]:<5}{row.modelled[0]:>6.2f} / "
                  f"{row.modelled[1]:<5.2f}{row.best[0]:>5} / {row.best[1]:<5}{row.ratio:>6.2f}"
                  f"{row.reauthentications:>8}{row.failures:>7}{'' if met else '  MISSED'}")  # fmt: skip
    print("\nall goals met" if ok else "\nSOME GOALS MISSED")
    return 0 if ok else 1


def _profile_row(stack: PcscStack, label: str, profile_key: str, model: object, card: str) -> ProfileRow:
    from edge.drivers.base import CardPresence
    from edge.drivers.pcsc import PcscReaderDriver
    from edge.protocol.access.policy import CanKey, MrzKey
    from edge.protocol.chip import ReadRequest, read_chip
    from edge.protocol.mrz import parse_mrz
    from edge.protocol.read_strategy import ChunkMemory
    from edge.sim.builder import build_card
    from edge.sim.chip_security import SimChipSecurity
    from edge.sim.model import dg_fid
    from edge.sim.profile import load_profile
    from edge.sim.reader import ReaderModel
    from edge.sim.runner import SimulatedCard

    assert isinstance(model, ReaderModel)
    spec = build_card(load_profile(card))
    if spec.quirks.pace_supported:
        key: CanKey | MrzKey = CanKey(spec.secrets.can)
    else:
        mrz = parse_mrz(spec.image.applet_files[dg_fid(1)][5:].decode("ascii"))
        key = MrzKey(mrz.document_number, mrz.date_of_birth, mrz.date_of_expiry)
    apdus, modelled, best, reauth, failures = [], [], [], 0, 0
    for photo in (False, True):
        # a fresh card per read (a glitch of the card happens once per card) and a fresh driver (nothing learned)
        with SimulatedCard(spec, stack.reader_port(0), security=SimChipSecurity(spec.secrets, spec.quirks),
                           reader=model) as sim:  # fmt: skip
            driver = PcscReaderDriver(reader_profile=profile_key)
            _wait_for(driver, CardPresence.PRESENT)
            memory = ChunkMemory()
            with driver.connect(READER_NAMES[0]) as conn:
                result = read_chip(conn, ReadRequest(key, want_photo=photo), memory=memory)
            with driver.connect(READER_NAMES[0]) as conn:  # knowing reader and card: the best they allow
                knowing = read_chip(conn, ReadRequest(key, want_photo=photo), memory=memory)
            assert sim.virtual_reader is not None
            failures += len(sim.virtual_reader.log.failures)
        _wait_for(driver, CardPresence.ABSENT)  # pcscd saw the card go: the next one is a new insertion
        driver.close()
        stats = result.stats
        apdus.append(stats.apdus)
        modelled.append(modelled_seconds(stats.apdus, stats.bytes_sent + stats.bytes_received, *GOAL_LINK))
        best.append(min(knowing.stats.apdus, stats.apdus))
        reauth = max(reauth, result.access.reauthentications)
    return ProfileRow(label, (apdus[0], apdus[1]), (modelled[0], modelled[1]), (best[0], best[1]), reauth, failures)


def _wait_for(driver: object, wanted: object) -> None:
    """Block on card events until reader 0 shows ``wanted`` (a card present, or gone)."""
    from edge.drivers.pcsc import PcscReaderDriver

    assert isinstance(driver, PcscReaderDriver)
    deadline = time.monotonic() + 5.0
    states = driver.readers()
    while not any(s.name == READER_NAMES[0] and s.presence is wanted for s in states):
        if time.monotonic() > deadline:
            raise SystemExit(f"reader never became {wanted}")
        states = driver.wait_for_change(0.5)


if __name__ == "__main__":
    sys.exit(main())
