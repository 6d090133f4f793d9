"""`cccd-edge demo`: the whole PC/SC path end to end on a virtual card, with nothing personal printed.

Starts a private pcscd if none runs, puts the virtual card on the reader, reads EF.CardAccess, EF.COM and DG1
through pyscard -> pcscd -> vpcd -> simulator, prints their structure, takes the card off and cleans up.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from edge.errors import NoCardError

if TYPE_CHECKING:
    from edge.drivers.base import CardPresence
    from edge.drivers.pcsc import PcscReaderDriver


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("demo", help="read a virtual card through the real PC/SC stack")
    parser.set_defaults(func=run)


def _tags(data: bytes, depth: int = 1) -> list[str]:
    """The TLV structure, tags and lengths only (values may be personal)."""
    from edge.protocol import tlv

    lines = []
    for item in tlv.decode_all(data):
        lines.append(f"{'  ' * depth}{item.tag:X} ({len(item.value)} bytes)")
        if item.constructed:
            lines.extend(_tags(item.value, depth + 1))
    return lines


def run(args: argparse.Namespace) -> int:
    from edge.drivers.base import CardPresence
    from edge.drivers.pcsc import PcscReaderDriver
    from edge.protocol import tlv
    from edge.protocol.apdu import CommandApdu
    from edge.protocol.reader import ChunkMemory, read_file
    from edge.sim.model import EMRTD_AID
    from edge.sim.runner import SimulatedCard, demo_spec
    from edge.sim.stack import SYSTEM_VPCD_PORT, PcscStack, system_pcscd_running

    stack = None if system_pcscd_running() else PcscStack().start()
    port = stack.reader_port(0) if stack is not None else SYSTEM_VPCD_PORT
    print(f"pcscd: {'private' if stack is not None else 'system'}, vpcd port {port}")
    driver = PcscReaderDriver()
    card = SimulatedCard(demo_spec(), port)
    reader: str | None = None
    try:
        card.insert()
        reader = _wait_for_card(driver, CardPresence.PRESENT)
        print(f"card on '{reader}'")
        with driver.connect(reader) as conn:
            print(f"ATR {conn.atr.hex().upper()}")
            memory = ChunkMemory()
            card_access = read_file(conn, 0x1C, memory=memory)
            print(f"EF.CardAccess ({len(card_access)} bytes): {card_access.hex().upper()}")
            conn.send_and_receive(CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)).check("SELECT eMRTD applet")
            com = read_file(conn, 0x1E, memory=memory)
            print(f"EF.COM ({len(com)} bytes): {com.hex().upper()}")
            print("\n".join(_tags(com)))
            entry = tlv.decode(com)
            tag_list = entry.require(0x5C).value.hex().upper()
            print(f"  LDS {entry.require(0x5F01).value.decode('ascii', 'replace')}, data group tags {tag_list}")
            dg1 = read_file(conn, 0x01, memory=memory)
            print(f"DG1 ({len(dg1)} bytes, MRZ not shown):")
            print("\n".join(_tags(dg1)))
            print(f"{conn.apdus} APDUs, {conn.bytes_sent} bytes sent, {conn.bytes_received} bytes received")
        counters = card.counters
        print(f"a real chip at {demo_spec().quirks.bitrate_kbps} kbit/s would need ~{counters.modelled_seconds:.2f} s")
    finally:
        card.remove()
        try:
            if reader is not None:
                _wait_for_card(driver, CardPresence.ABSENT, reader)
                print("card removed")
        except NoCardError:
            print("card removal not seen by pcscd")
        driver.close()
        if stack is not None:
            stack.stop()
    return 0


def _wait_for_card(
    driver: PcscReaderDriver, wanted: CardPresence, reader: str | None = None, timeout: float = 5.0
) -> str:
    """Name of ``reader`` (or the first virtual reader) once it shows ``wanted``, waiting on PC/SC events."""
    deadline = time.monotonic() + timeout
    states = driver.readers()
    while True:
        for state in states:
            named = state.name == reader if reader is not None else "Virtual PCD" in state.name
            if named and state.presence is wanted:
                return state.name
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoCardError(f"{reader or 'no virtual reader'} did not become {wanted.value}")
        states = driver.wait_for_change(min(remaining, 1.0))
