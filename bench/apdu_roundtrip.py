"""APDU round trips through the real stack: pyscard -> pcscd -> vpcd -> the virtual CCCD. Prints its figures.

Goal: >= 2,000 APDU/s (the stack must never be what makes a card read slow; the chip is). Also compares the read
strategy (SFI, header learnt from the first chunk) with the common one (SELECT, 4-byte header read, 223-byte
chunks) by APDU count and by the simulator's timing model of a real chip at 424 kbit/s.

Run: .venv/bin/python bench/apdu_roundtrip.py [--apdus N]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common_strategy import read_file_common_strategy
from edge.drivers.base import CardPresence
from edge.drivers.pcsc import PcscConnection, PcscReaderDriver
from edge.protocol import tlv
from edge.protocol.apdu import CommandApdu
from edge.protocol.iso7816 import EMRTD_AID
from edge.protocol.read_strategy import CHUNK_AES_SM, read_file
from edge.sim.model import dg_fid
from edge.sim.runner import SimulatedCard, demo_spec
from edge.sim.stack import READER_NAMES, PcscStack

DG2_SIZE = 15_000  # a typical face image (cccd-card.md: 5-25 KB)


def wait_present(driver: PcscReaderDriver, reader: str) -> None:
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        states = driver.wait_for_change(0.5)
        if any(s.name == reader and s.presence is CardPresence.PRESENT for s in states):
            return
    raise SystemExit(f"{reader}: no card seen")


def round_trips(conn: PcscConnection, count: int, le: int) -> list[float]:
    command = CommandApdu(0x00, 0xB0, 0x82, 0x00, le=le)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        conn.send_and_receive(command)
        times.append(time.perf_counter() - start)
    return times


def report(label: str, times: list[float]) -> None:
    median = statistics.median(times) * 1000
    p95 = sorted(times)[int(len(times) * 0.95)] * 1000
    rate = len(times) / sum(times)
    at_median = 1000 / median
    print(f"{label:<20} {rate:6.0f} APDU/s ({at_median:.0f} at the median)  median {median:.3f} ms  p95 {p95:.3f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apdus", type=int, default=3000)
    args = parser.parse_args()

    base = demo_spec()
    dg2 = tlv.encode(0x75, bytes(i & 0xFF for i in range(DG2_SIZE - 4)))
    image = dataclasses.replace(base.image, applet_files={**base.image.applet_files, dg_fid(2): dg2})
    spec = dataclasses.replace(base, image=image)
    with PcscStack() as stack:
        driver = PcscReaderDriver()
        print(f"pcscd {'private' if stack.private else 'system'}; vpcd port {stack.reader_port(0)}")
        with SimulatedCard(spec, stack.reader_port(0)) as card:
            wait_present(driver, READER_NAMES[0])
            with driver.connect(READER_NAMES[0]) as conn:
                conn.send_and_receive(CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)).check("SELECT")
                round_trips(conn, 100, 16)  # warm-up
                for le in (16, 223, 256):
                    report(f"READ BINARY Le={le}", round_trips(conn, args.apdus, le))
            # The daemon's path: a connection with the read's deadline makes its calls on a thread of its own, so a
            # chip that never answers cannot outlive the deadline (edge.drivers.pcsc); what that costs per APDU.
            with driver.connect(READER_NAMES[0], time_limit=3600.0) as conn:
                conn.send_and_receive(CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)).check("SELECT")
                round_trips(conn, 100, 16)  # warm-up
                report("... with a deadline", round_trips(conn, args.apdus, 16))
            with driver.connect(READER_NAMES[0]) as conn:
                conn.send_and_receive(CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)).check("SELECT")

                print()
                print(f"reading a {len(dg2)}-byte DG2 (chip timing model: 424 kbit/s, 10 ms per APDU):")
                for label, read in (
                    ("SFI + header from first chunk", lambda: read_file(conn, 2, chunk=CHUNK_AES_SM)),
                    ("common: SELECT, header, 223 B", lambda: read_file_common_strategy(conn, dg_fid(2))),
                    ("SFI + extended length (64 KB)", lambda: read_file(conn, 2, chunk=65536, extended_ok=True)),
                ):
                    card.card.reset_counters()
                    start = time.perf_counter()
                    assert read() == dg2
                    elapsed = time.perf_counter() - start
                    counters = card.counters
                    print(
                        f"  {label:<32} {counters.apdus:3d} APDUs  {counters.bytes_in + counters.bytes_out:6d} bytes"
                        f"  chip ~{counters.modelled_seconds * 1000:5.0f} ms  stack {elapsed * 1000:6.1f} ms"
                    )
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
