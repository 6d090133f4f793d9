"""A hostile chip never stalls the terminal (issue 12, part 3), in process against the virtual card.

Explicit curve parameters are judged in one place (``edge.protocol.ec.explicit_parameters``) before any arithmetic,
and DG14 is compared with EF.SOD's hash list before chip authentication uses it; the chunk-size memory recovers from
a glitch, 6Cxx retries are capped, and a read ends at its deadline. Nothing here is timed: loops are bounded by
counting the random draws, APDUs and deadline checks they take. tests/stack/test_hostile_reads.py reads the same
chips through pcscd.
"""

from __future__ import annotations

import dataclasses
import math
import os
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec as crypto_ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.errors import CurveParametersError, ReadDeadlineError, StatusWordError
from edge.protocol import ec, tlv
from edge.protocol.access.policy import CanKey
from edge.protocol.apdu import CommandApdu
from edge.protocol.chip import ChipRead, ReadRequest, read_chip
from edge.protocol.iso7816 import EMRTD_AID
from edge.protocol.keys import load_public_key
from edge.protocol.lds.dg14 import encode_dg14
from edge.protocol.lds.sod import encode_sod
from edge.protocol.read_strategy import (
    MAX_WRONG_LE_HINTS,
    PROBE_AFTER_REFUSALS,
    PROBE_AFTER_SHORT_ANSWERS,
    ChunkMemory,
    read_file,
)
from edge.protocol.verify.card import verify_chip
from edge.protocol.verify.checks import CHIP_AUTHENTICATION, DG_HASHES, CheckStatus, Verdict
from edge.protocol.verify.trust import TrustStore
from edge.sim.builder import build_card
from edge.sim.card import VirtualCard
from edge.sim.chip_security import SimChipSecurity
from edge.sim.hostile import HUGE_FIELD_PRIME, HostileCurve, explicit_ec_spki, hostile_ca_spki
from edge.sim.model import FID_SOD, Quirks, SimCardSpec, dg_fid
from edge.sim.pki import SimPki, load_or_create_pki
from edge.sim.profile import load_profile
from edge.sim.runner import demo_spec
from tests.support import apdu as apdu_support

NOW = datetime(2026, 6, 1, tzinfo=UTC)
#: Far more random draws than any honest read takes (PACE 2, CA 1, AA 1 challenge), far fewer than a loop.
MAX_DRAWS = 1000


class BoundedRandom:
    """os.urandom that counts its draws and stops a read that keeps drawing (an unbounded loop) with an error."""

    def __init__(self) -> None:
        self.draws = 0

    def __call__(self, size: int) -> bytes:
        self.draws += 1
        if self.draws > MAX_DRAWS:
            raise AssertionError(f"more than {MAX_DRAWS} random draws: an unbounded loop")
        return os.urandom(size)


class Recorder(apdu_support.Recorder):
    def chip_authentication_commands(self) -> list[CommandApdu]:
        """MSE:Set AT for CA (22 41 A4) and MSE:Set KAT (22 41 A6): PACE's MSE is 22 C1 A4."""
        return [c for c in self.commands if c.ins == 0x22 and c.p1 == 0x41]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimPki:
    return load_or_create_pki(tmp_path_factory.mktemp("sim-pki"))


@pytest.fixture(scope="module")
def default(pki: SimPki) -> SimCardSpec:
    return build_card(load_profile("default"), pki_dir=pki.directory)


@pytest.fixture(scope="module")
def trust(pki: SimPki) -> TrustStore:
    return TrustStore.from_der([pki.csca.certificate.public_bytes(Encoding.DER)])


def read(spec: SimCardSpec) -> tuple[ChipRead, Recorder, BoundedRandom]:
    card = VirtualCard(spec, SimChipSecurity(spec.secrets, spec.quirks))
    card.power_on()
    recorder, rng = Recorder(card), BoundedRandom()
    result = read_chip(recorder, ReadRequest(CanKey(spec.secrets.can)), rng=rng, memory=ChunkMemory())
    return result, recorder, rng


def with_dg14(spec: SimCardSpec, dg14: bytes, pki: SimPki, *, signed: bool) -> SimCardSpec:
    """``spec`` with DG14 replaced; ``signed``: EF.SOD re-signed over it by the genuine test DS (a valid signature)."""
    applet = {**spec.image.applet_files, dg_fid(14): dg14}
    if signed:
        groups = {fid - 0x0100: content for fid, content in applet.items() if 0x0101 <= fid <= 0x0110}
        applet[FID_SOD] = encode_sod(groups, signer_key=pki.ds.key, signer_cert=pki.ds.certificate)
    return dataclasses.replace(spec, image=dataclasses.replace(spec.image, applet_files=applet))


# --- explicit domain parameters: one judge, before any arithmetic ----------------------------------------------


def _encoded_base(params: ec.DomainParameters, *, compressed: bool) -> bytes:
    size = params.byte_length
    if compressed:
        return bytes((0x02 | (params.gy & 1),)) + params.gx.to_bytes(size, "big")
    return b"\x04" + params.gx.to_bytes(size, "big") + params.gy.to_bytes(size, "big")


@pytest.mark.parametrize("params", ec.KNOWN_CURVES, ids=lambda params: params.name)
@pytest.mark.parametrize("compressed", [False, True], ids=["uncompressed", "compressed"])
def test_every_known_curve_spelled_out_is_that_curve(params: ec.DomainParameters, compressed: bool) -> None:
    base = _encoded_base(params, compressed=compressed)
    assert ec.explicit_parameters(params.p, params.a, params.b, base, params.n, params.h) is params
    assert ec.explicit_parameters(params.p, params.a, params.b, base, params.n) is params  # cofactor is optional


BP256 = ec.standard_parameters(13)
BP256_BASE = _encoded_base(BP256, compressed=False)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"n": 1}, "order"),
        ({"n": 0}, "order"),
        ({"n": -BP256.n}, "order"),
        ({"n": 2**300}, "order"),
        ({"p": HUGE_FIELD_PRIME}, "4253 bits"),
        ({"p": 2**4096 + 1, "n": 2**4096}, "4097 bits"),
        ({"p": BP256.p + 1}, "odd prime"),
        ({"p": 2}, "odd prime"),
        ({"h": 0}, "cofactor"),
        ({"h": 2**256}, "cofactor"),
        ({"a": BP256.a + BP256.p}, "coefficients"),
        ({"b": BP256.b ^ 1}, "no known"),
        ({"base": BP256_BASE[:-1] + bytes((BP256_BASE[-1] ^ 1,))}, "base point"),
        ({"base": bytes((0x05 - (BP256.gy & 1),)) + BP256_BASE[1:33]}, "base point"),  # the other y
        ({"base": b""}, "base point"),
    ],
)
def test_hostile_explicit_parameters_are_refused_with_the_reason(change: dict[str, object], reason: str) -> None:
    values: dict[str, object] = {"p": BP256.p, "a": BP256.a, "b": BP256.b, "base": BP256_BASE, "n": BP256.n,
                                 "h": BP256.h, **change}  # fmt: skip
    with pytest.raises(CurveParametersError, match=reason):
        ec.explicit_parameters(**values)  # type: ignore[arg-type]


def test_key_generation_on_an_order_of_one_stops_after_bounded_draws() -> None:
    rng = BoundedRandom()
    with pytest.raises(CurveParametersError, match="draws"):
        ec.generate_private_key(dataclasses.replace(BP256, n=1), rng)
    assert rng.draws == ec.MAX_SCALAR_DRAWS


@pytest.mark.parametrize("kind", ["order-one", "huge-field"])
def test_a_hostile_curve_is_refused_when_loaded_as_any_public_key(kind: HostileCurve) -> None:
    """DG15, CSCA and DS keys go through edge.protocol.keys, which asks the same judge."""
    spki = hostile_ca_spki(kind, crypto_ec.generate_private_key(crypto_ec.BrainpoolP256R1()).public_key())
    with pytest.raises(CurveParametersError):
        load_public_key(spki)


def test_a_known_curve_spelled_out_still_loads_as_a_public_key() -> None:
    key = crypto_ec.generate_private_key(crypto_ec.SECP256R1()).public_key()
    params = ec.parameters_by_oid("1.2.840.10045.3.1.7")
    assert params is not None
    loaded = load_public_key(explicit_ec_spki(params, key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)))
    assert isinstance(loaded, crypto_ec.EllipticCurvePublicKey)
    assert loaded.public_numbers() == key.public_numbers()


# --- a hostile DG14 on the card: a failed verdict in bounded work -----------------------------------------------


@pytest.mark.parametrize("kind", ["order-one", "huge-field"])
@pytest.mark.parametrize("signed", [True, False], ids=["signed into a valid SOD", "not in the SOD"])
def test_a_hostile_dg14_ends_in_a_failed_ca_without_arithmetic_or_ca_commands(
    kind: HostileCurve, signed: bool, default: SimCardSpec, pki: SimPki, trust: TrustStore
) -> None:
    assert default.secrets.ca_private_key is not None
    dg14 = encode_dg14(hostile_ca_spki(kind, default.secrets.ca_private_key.public_key()))
    genuine, _, _ = read(default)
    result, recorder, _ = read(with_dg14(default, dg14, pki, signed=signed))  # BoundedRandom: no endless draws
    assert result.chip_auth.status is CheckStatus.FAILED
    assert recorder.chip_authentication_commands() == []  # refused before anything was computed or sent
    assert result.stats.apdus == genuine.stats.apdus - 2  # everything else is read as usual
    if signed:
        assert "explicit EC parameters" in result.chip_auth.reason
    else:
        assert "DG14 does not hash to the value EF.SOD lists" in result.chip_auth.reason
    report = verify_chip(result, trust, now=NOW, qr=None)
    assert report.verdict is Verdict.FAILED
    assert report.check(CHIP_AUTHENTICATION).status is CheckStatus.FAILED
    assert report.check(DG_HASHES).passed is signed


def test_a_genuine_dg14_that_the_sod_does_not_list_is_not_used(default: SimCardSpec, pki: SimPki) -> None:
    """The chip's own, genuine DG14 with a changed key id: still a real key, but not the one that was signed."""
    assert default.secrets.ca_private_key is not None
    resent = encode_dg14(default.secrets.ca_private_key.public_key(), key_id=7)
    result, recorder, _ = read(with_dg14(default, resent, pki, signed=False))
    assert result.chip_auth.status is CheckStatus.FAILED
    assert recorder.chip_authentication_commands() == []


@pytest.mark.parametrize("name", ["hostile-dg14-curve", "hostile-dg14-field"])
def test_the_hostile_profiles_read_to_a_failed_verdict(name: str, pki: SimPki, trust: TrustStore) -> None:
    spec = build_card(load_profile(name), pki_dir=pki.directory)
    result, recorder, _ = read(spec)
    assert recorder.chip_authentication_commands() == []
    assert verify_chip(result, trust, now=NOW, qr=None).verdict is Verdict.FAILED


# --- chunk-size memory that recovers; 6Cxx retries capped -------------------------------------------------------


def plain_card(files: dict[int, bytes], **quirks: object) -> tuple[VirtualCard, Recorder]:
    """A card with the eMRTD application selected and plain reads allowed (the read strategy alone)."""
    base = demo_spec()
    image = dataclasses.replace(base.image, applet_files={**base.image.applet_files, **files})
    card = VirtualCard(SimCardSpec("hostile", image, base.secrets, Quirks(plain_reads=True, **quirks)))  # type: ignore[arg-type]
    card.power_on()
    assert card.send_and_receive(CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)).ok
    return card, Recorder(card)


def a_file(tag: int, size: int) -> bytes:
    header = len(tlv.encode(tag, bytes(size))) - size
    return tlv.encode(tag, bytes(i & 0xFF for i in range(size - header)))


def reads(recorder: Recorder) -> list[CommandApdu]:
    return [c for c in recorder.commands if c.ins in (0xB0, 0xB1)]


def test_one_short_answer_does_not_shrink_every_later_read() -> None:
    """The chip answers 8 bytes once (a glitch), then in full: after a few reads at 8 bytes the full size is tried
    again and kept. Before, the 8 bytes were the chunk size for the rest of the card: 3000 bytes in 375 reads."""
    dg2, dg13 = a_file(0x75, 3000), a_file(0x6D, 600)
    _card, conn = plain_card({dg_fid(2): dg2, dg_fid(13): dg13}, short_answer_once=8)
    memory = ChunkMemory()
    assert read_file(conn, 2, chunk=256, memory=memory) == dg2
    assert len(reads(conn)) <= math.ceil(3000 / 256) + PROBE_AFTER_SHORT_ANSWERS + 1
    assert memory.limit is None
    conn.commands.clear()
    assert read_file(conn, 13, chunk=256, memory=memory) == dg13
    assert len(reads(conn)) == math.ceil(600 / 256)  # the next file in full chunks


def test_a_chip_that_really_caps_its_le_costs_one_probe_per_read() -> None:
    """A chip refusing any Le above 0xA0: 4 refusals to find 160, then one probe of 192 after a run of full answers,
    refused again: 160 is settled, and no later read of the card asks for more."""
    dg2, dg13 = a_file(0x75, 6000), a_file(0x6D, 2000)
    _card, conn = plain_card({dg_fid(2): dg2, dg_fid(13): dg13}, max_le=0xA0)
    memory = ChunkMemory()
    assert read_file(conn, 2, chunk=256, memory=memory) == dg2
    assert math.ceil(6000 / 160) > PROBE_AFTER_REFUSALS
    assert len(reads(conn)) == 4 + math.ceil(6000 / 160) + 1
    assert (memory.limit, memory.settled) == (160, True)
    conn.commands.clear()
    assert read_file(conn, 13, chunk=256, memory=memory) == dg13
    asked = [c.le for c in reads(conn)]
    assert (len(asked), max(asked)) == (math.ceil(2000 / 160), 160)  # no refusal, no probe


def test_a_chip_that_refuses_each_size_once_gets_back_to_the_full_size() -> None:
    memory = ChunkMemory()
    size: int | None = 256
    while size is not None and size > 8:  # refused at every step down to 8
        size = memory.step_down(size)
    assert memory.size_for(256) == 8
    for _ in range(PROBE_AFTER_REFUSALS):
        memory.answered_in_full(8)
    assert memory.size_for(256) == 16  # the size refused last is tried again
    memory.answered_in_full(16)
    assert memory.size_for(256) == 256
    assert memory.limit is None


def test_a_chip_that_keeps_changing_its_le_ends_after_bounded_retries() -> None:
    """6Cxx with a smaller length each time: followed twice, then a typed error (before: Le by Le down to 1)."""
    _card, conn = plain_card({}, wrong_le_loop=True)
    with pytest.raises(StatusWordError) as raised:
        read_file(conn, 0x1E, chunk=256)
    assert raised.value.sw >> 8 == 0x6C
    assert [c.le for c in reads(conn)] == [256, 255, 254][: 1 + MAX_WRONG_LE_HINTS]


# --- a read has a deadline ----------------------------------------------------------------------------------------


class Deadline:
    """Expires after ``checks`` questions: a deadline counted in APDUs, not seconds (the protocol has no clock)."""

    def __init__(self, checks: int) -> None:
        self.left = checks
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        self.left -= 1
        return self.left < 0


@pytest.mark.parametrize("allowed", [0, 1, 6, 12])
def test_a_read_past_its_deadline_ends_before_the_next_apdu(allowed: int, default: SimCardSpec) -> None:
    card = VirtualCard(default, SimChipSecurity(default.secrets, default.quirks))
    card.power_on()
    deadline = Deadline(allowed)
    with pytest.raises(ReadDeadlineError, match=f"after {allowed} APDUs"):
        read_chip(card, ReadRequest(CanKey(default.secrets.can)), memory=ChunkMemory(), expired=deadline)
    assert card.counters.apdus == allowed
    assert deadline.asked == allowed + 1  # asked before every APDU


def test_a_read_within_its_deadline_is_not_touched(default: SimCardSpec) -> None:
    card = VirtualCard(default, SimChipSecurity(default.secrets, default.quirks))
    card.power_on()
    deadline = Deadline(1000)
    result = read_chip(card, ReadRequest(CanKey(default.secrets.can)), memory=ChunkMemory(), expired=deadline)
    assert deadline.asked == result.stats.apdus == card.counters.apdus
