"""`cccd-edge readers` and `cccd-edge sim card` as an operator runs them: separate processes, the test's private
pcscd (they inherit PCSCLITE_CSOCK_NAME) and its vpcd port. The card the `sim card` process serves is read here
through PC/SC, and the APDUs it says it served on Ctrl-C are the ones this read sent."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from edge.drivers.base import CardPresence
from edge.drivers.pcsc import PcscReaderDriver
from edge.protocol.access.policy import CanKey
from edge.protocol.chip import ChipRead, ReadRequest, read_chip
from edge.protocol.verify.card import verify_chip
from edge.protocol.verify.checks import Verdict
from edge.protocol.verify.trust import TrustStore
from edge.sim.pki import load_or_create_pki
from edge.sim.profile import load_profile
from edge.sim.stack import READER_NAMES, PcscStack
from tests.fixtures.pcsc import wait_for_presence

pytestmark = pytest.mark.stack

NOW = datetime(2026, 6, 1, tzinfo=UTC)
#: Building a card (first run: the simulator PKI and keys) and starting Python take a while on a shared machine.
START_TIMEOUT = 120.0


def cccd_edge(*argv: str) -> list[str]:
    """The installed entry point when there is one (it is what an operator types), else the module."""
    script = Path(sys.executable).with_name("cccd-edge")
    return [str(script), *argv] if script.exists() else [sys.executable, "-m", "edge.cli", *argv]


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cccd_edge(*argv), capture_output=True, text=True, timeout=START_TIMEOUT, check=False)


@contextmanager
def sim_card(stack: PcscStack, tmp_path: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`cccd-edge sim card ARGS` on reader 0; stopped with SIGINT on the way out if the test has not stopped it."""
    with (tmp_path / "sim.log").open("w") as log:
        process = subprocess.Popen(
            cccd_edge("sim", "card", "--port", str(stack.reader_port(0)), *args),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl-C, as the operator stops it: the card leaves the reader and the process reports what it served."""
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    return process.returncode, out


def read_card(driver: PcscReaderDriver, can: str) -> ChipRead:
    connection = driver.connect(READER_NAMES[0])
    try:
        return read_chip(connection, ReadRequest(CanKey(can), want_photo=True))
    finally:
        connection.close()


@pytest.fixture(scope="module")
def trust() -> TrustStore:
    return TrustStore.from_der([load_or_create_pki().csca.certificate.public_bytes(Encoding.DER)])


def test_readers_lists_the_empty_test_readers(pcsc_stack: PcscStack, pcsc_driver: PcscReaderDriver) -> None:
    for name in READER_NAMES:
        wait_for_presence(pcsc_driver, name, CardPresence.ABSENT)
    done = run_cli("readers")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if not line.startswith(" ")] == [f"{name}: absent" for name in READER_NAMES]
    assert "  profile vpcd (vpcd virtual reader, verified from virtual)" in lines
    assert "    extended length: DG2 in one APDU" in lines


def test_sim_card_is_seen_by_readers_reads_and_stops_on_ctrl_c(
    pcsc_stack: PcscStack, pcsc_driver: PcscReaderDriver, trust: TrustStore, tmp_path: Path
) -> None:
    profile = load_profile("default")
    with sim_card(pcsc_stack, tmp_path, "--profile", "default") as process:
        wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.PRESENT, timeout=START_TIMEOUT)
        listed = run_cli("readers")
        assert listed.returncode == 0, listed.stderr
        assert f"{READER_NAMES[0]}: present  ATR {profile.card.atr.upper()}" in listed.stdout.splitlines()
        result = read_card(pcsc_driver, profile.person.id_number[-6:])
        assert verify_chip(result, trust, now=NOW, qr=None).verdict is Verdict.VERIFIED
        code, out = stop(process)
    assert code == 0
    banner, served = out.splitlines()
    assert banner == f"virtual card 'default' on 127.0.0.1:{pcsc_stack.reader_port(0)}; Ctrl-C to remove it"
    assert served.startswith(f"served {result.stats.apdus} APDUs, {result.stats.bytes_sent} bytes in, "
                             f"{result.stats.bytes_received} bytes out")  # fmt: skip
    wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.ABSENT)


def test_sim_card_takes_quirks_at_run_time(
    pcsc_stack: PcscStack, pcsc_driver: PcscReaderDriver, trust: TrustStore, tmp_path: Path
) -> None:
    """The default card told to refuse any Le above 0xA0 with 6B00: the read steps down below it and verifies."""
    profile = load_profile("default")
    quirks = ("--quirk", "max_le=0xA0", "--quirk", "le_refusal_sw=0x6B00")
    with sim_card(pcsc_stack, tmp_path, "--profile", "default", *quirks) as process:
        wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.PRESENT, timeout=START_TIMEOUT)
        result = read_card(pcsc_driver, profile.person.id_number[-6:])
        code, out = stop(process)
    assert code == 0
    assert "(quirks: max_le=160, le_refusal_sw=0x6B00)" in out
    assert re.search(rf"^served {result.stats.apdus} APDUs", out, re.MULTILINE)
    assert result.chunk_limit is not None
    assert result.chunk_limit <= 0xA0
    assert verify_chip(result, trust, now=NOW, qr=None).verdict is Verdict.VERIFIED
    wait_for_presence(pcsc_driver, READER_NAMES[0], CardPresence.ABSENT)


def test_sim_card_refuses_a_bad_quirk_before_touching_the_reader(
    pcsc_stack: PcscStack, pcsc_driver: PcscReaderDriver
) -> None:
    done = run_cli("sim", "card", "--port", str(pcsc_stack.reader_port(0)), "--quirk", "bitrate_kbps=100")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: config --quirk 'bitrate_kbps=100': ")
    assert pcsc_driver.readers()[0].presence is CardPresence.ABSENT
