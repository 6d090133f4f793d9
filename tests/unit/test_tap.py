"""A tap's stages (edge/daemon/tap.py) in process: the virtual card behind a reader of the test's own, the time on an
injected clock. The stack tests (tests/stack/test_terminal.py) run the same stages through pcscd, vpcd and MQTT."""

from __future__ import annotations

import ast
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from edge.daemon.state import KeyOffered, KeySource, StartRead, StartVerify
from edge.daemon.tap import key_from_command, key_from_qr, read_card, result_document
from edge.drivers.base import CardPresence, ReaderState
from edge.protocol.access.policy import CanKey
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.clock import TimeEvidence
from edge.protocol.commands import ReadCommand
from edge.protocol.id_number import can_from_id
from edge.protocol.result import ProcedureProfile, citizen_from
from edge.protocol.verify.card import verify_chip
from edge.protocol.verify.checks import CheckStatus, Verdict
from edge.protocol.verify.trust import TrustStore
from edge.sim.builder import build_card
from edge.sim.card import VirtualCard
from edge.sim.card_qr import card_qr
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import SimCardSpec
from edge.sim.pki import load_or_create_pki
from edge.sim.profile import load_profile

NOW = datetime(2026, 12, 1, tzinfo=UTC)
#: What one APDU costs on the test's clock: the read's time must be counted on it, not on the machine's.
APDU_SECONDS = 1 / 128  # a binary fraction: the sums stay exact
DAEMON = Path(__file__).resolve().parents[2] / "edge" / "daemon"
#: The modules a tap runs through: their time comes from the injected clock and the ClockState, never their own.
TAP_MODULES = ("terminal.py", "tap.py", "worker.py", "loop.py", "presence.py", "qr_camera.py", "result_store.py",
               "trust.py", "threads.py")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1024.0

    def __call__(self) -> float:
        return self.now


class ClockedCard:
    """The virtual card as a reader connection whose every APDU takes :data:`APDU_SECONDS` on ``clock``."""

    def __init__(self, card: VirtualCard, clock: ManualClock) -> None:
        self.card, self.clock, self.closed = card, clock, False

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        self.clock.now += APDU_SECONDS
        return self.card.send_and_receive(command)

    @property
    def supports_extended_length(self) -> bool:
        return self.card.supports_extended_length

    @property
    def atr(self) -> bytes:
        return self.card.atr

    @property
    def reader_name(self) -> str:
        return "test reader"

    def close(self) -> None:
        self.closed = True


class OneCardReader:
    """A reader driver holding one virtual card (the contract of edge.drivers.base.CardReaderDriver)."""

    def __init__(self, connection: ClockedCard) -> None:
        self.connection = connection
        self.asked: list[str | None] = []

    def readers(self) -> list[ReaderState]:
        return [ReaderState("test reader", CardPresence.PRESENT)]

    def wait_for_change(self, timeout: float) -> list[ReaderState]:
        return self.readers()

    def wait_for_card(self, timeout: float, reader_name: str | None = None) -> ReaderState:
        return self.readers()[0]

    def connect(self, reader_name: str | None = None, *, time_limit: float | None = None) -> ClockedCard:
        self.asked.append(reader_name)
        return self.connection

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class Ward:
    spec: SimCardSpec  # the genuine default card
    trust: TrustStore  # its CSCA installed


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Ward:
    pki = load_or_create_pki(tmp_path_factory.mktemp("sim-pki"))
    trust = TrustStore.from_der([pki.csca.certificate.public_bytes(Encoding.DER)])
    return Ward(build_card(load_profile("default"), pki_dir=pki.directory), trust)


def tap_until_verify(spec: SimCardSpec, clock: ManualClock, *, offered: KeyOffered | None = None,
                     profile: ProcedureProfile = ProcedureProfile.RESIDENCE,
                     ) -> tuple[KeyOffered, StartVerify, OneCardReader]:  # fmt: skip
    """Stages 1 and 2 as the daemon runs them (a QR's key unless ``offered``); the machine's StartVerify is built
    from what they carried."""
    card = VirtualCard(spec, SimChipSecurity(spec.secrets, spec.quirks))
    card.power_on()
    reader = OneCardReader(ClockedCard(card, clock))
    offered = offered or KeyOffered(clock(), key_from_qr(card_qr(load_profile("default").person)))
    order = StartRead(1, offered.key, offered.request_id, offered.profile, offered.challenge)
    done = read_card(reader, "test reader", order, profile=offered.profile or profile, started=clock(), timeout=30.0,
                     monotonic=clock)  # fmt: skip
    verify = StartVerify(done.attempt, done.read, done.read_ms, order.key, order.request_id, order.profile,
                         order.challenge)  # fmt: skip
    return offered, verify, reader


def test_the_qr_yields_the_can_and_is_kept_for_the_cross_check() -> None:
    qr = card_qr(load_profile("default").person)
    key = key_from_qr(qr)
    assert key == KeySource(CanKey(can_from_id(qr.id_number)), qr)


def test_a_read_is_timed_on_the_injected_clock_and_carries_the_chip_read(ward: Ward) -> None:
    clock = ManualClock()
    _, verify, reader = tap_until_verify(ward.spec, clock)
    apdus = verify.read.stats.apdus
    assert apdus > 0
    assert verify.read_ms == int(apdus * APDU_SECONDS * 1000)  # not the machine's clock: exactly the APDUs' time
    assert reader.asked == ["test reader"]
    assert reader.connection.closed  # the card is released for other readers


def test_the_document_is_the_reports_verdict_and_the_cards_citizen(ward: Ward) -> None:
    _, verify, _ = tap_until_verify(ward.spec, ManualClock())
    report = verify_chip(verify.read, ward.trust, now=TimeEvidence.trusted(NOW), qr=verify.key.qr)
    document = result_document(verify, report, terminal_id="T-01", ward_code="26734",
                               default_profile=ProcedureProfile.FULL, verify_ms=3)  # fmt: skip
    assert document.verdict is report.verdict is Verdict.VERIFIED
    assert verify.read.dg13 is not None
    assert document.citizen == citizen_from(verify.read.dg13)
    assert [check.name for check in document.checks] == [check.name for check in report.checks]
    assert (document.timing.read_ms, document.timing.verify_ms) == (verify.read_ms, 3)
    assert document.completed_at == report.verified_at == NOW
    assert document.qr.used
    assert document.qr.format == "cccd2021"


def test_a_citizen_the_document_cannot_carry_fails_the_read(ward: Ward) -> None:
    _, verify, _ = tap_until_verify(ward.spec, ManualClock())
    assert verify.read.dg13 is not None
    unusable = dataclasses.replace(verify.read.dg13, id_number="not a number")
    verify = dataclasses.replace(verify, read=dataclasses.replace(verify.read, dg13=unusable))
    report = verify_chip(verify.read, ward.trust, now=TimeEvidence.trusted(NOW), qr=verify.key.qr)
    document = result_document(verify, report, terminal_id="T-01", ward_code="26734",
                               default_profile=ProcedureProfile.IDENTITY, verify_ms=0)  # fmt: skip
    assert document.verdict is Verdict.FAILED
    assert document.citizen is None
    assert (document.checks[-1].name, document.checks[-1].status) == ("citizen_data", CheckStatus.FAILED)


@pytest.mark.parametrize("module", TAP_MODULES)
def test_a_tap_reads_no_clock_of_its_own(module: str) -> None:
    """Every time in a tap comes from the injected monotonic clock or the ClockState (trusted or not, and why)."""
    tree = ast.parse((DAEMON / module).read_text(encoding="utf-8"))
    calls = {
        f"{node.func.value.id}.{node.func.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
    }
    own = calls & {"time.time", "time.monotonic", "time.perf_counter", "datetime.now", "datetime.utcnow",
                   "date.today", "datetime.today"}  # fmt: skip
    assert not own, f"{module} reads {sorted(own)}"


def _office_request(spec: SimCardSpec, **fields: object) -> KeyOffered:
    claims = {"iss": "ward-26734", "aud": "T-01", "jti": "request-0001", "iat": 0, "exp": 60, "cmd": "read_request",
              "key": {"can": spec.secrets.can}, **fields}
    command = ReadCommand.model_validate(claims)
    return KeyOffered(0.0, key_from_command(command), command.jti, command.profile, command.challenge_bytes)


def test_an_online_check_request_carries_the_chips_files_its_consent_and_the_face_only_when_asked(ward: Ward) -> None:
    for photo in (False, True):
        offered = _office_request(ward.spec, profile="online_check", include_photo=photo, consent_ref="HS-2026-7",
                                  challenge="0011223344556677")  # fmt: skip
        _, verify, _ = tap_until_verify(ward.spec, ManualClock(), offered=offered)
        assert verify.read.com is not None
        assert (2 in verify.read.data_groups) is photo
        report = verify_chip(verify.read, ward.trust, now=TimeEvidence.trusted(NOW), qr=None)
        document = result_document(verify, report, terminal_id="T-01", ward_code="26734",
                                   default_profile=ProcedureProfile.RESIDENCE, verify_ms=1)  # fmt: skip
        assert document.procedure_profile is ProcedureProfile.ONLINE_CHECK
        assert document.processing is not None
        assert document.processing.consent_ref == "HS-2026-7"
        assert document.chip_files is not None
        assert document.chip_files.by_name() == verify.read.files
        assert ("DG2" in document.chip_files.by_name()) is photo
        assert document.active_auth is not None  # the chip answered the office's challenge


def test_the_face_is_not_read_under_a_profile_that_never_needs_it(ward: Ward) -> None:
    """Even a request that asks (the verifier refuses it first: photo_not_needed), residence never reads DG2."""
    offered = _office_request(ward.spec, profile="residence", include_photo=True)
    _, verify, _ = tap_until_verify(ward.spec, ManualClock(), offered=offered)
    assert 2 not in verify.read.data_groups
    assert verify.read.not_read == (2,)
