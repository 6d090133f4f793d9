"""The read strategy (edge/protocol/read_strategy.py) against the real virtual-card logic, in process (no pcscd).

The VirtualCard *is* an ApduConnection (its ``send_and_receive`` runs the ISO 7816-4 file system), so these tests
exercise the same card code the stack tests reach through pyscard -> pcscd -> vpcd. Counting is done by a thin
processor in the chain, the way secure messaging will sit in it.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.common_strategy import read_file_common_strategy
from edge.errors import CardRemovedError, FileNotFoundOnCardError, LdsError, SecurityStatusError, StatusWordError
from edge.protocol import crypto, tlv
from edge.protocol.access.policy import AccessKey, CanKey, MrzKey, open_secure_channel
from edge.protocol.apdu import ApduConnection, CommandApdu, ResponseApdu
from edge.protocol.crypto import CipherSuite
from edge.protocol.iso7816 import EMRTD_AID
from edge.protocol.read_strategy import (
    CHUNK_AES_SM,
    ChunkMemory,
    file_id,
    file_name,
    odd_room,
    read_file,
)
from edge.protocol.sm import SecureMessaging
from edge.sim.card import VirtualCard
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import FID_CARD_ACCESS, FID_COM, Quirks, SimCardSpec, dg_fid
from edge.sim.runner import DEMO_COM, demo_spec


class Recorder:
    """A processor in the chain that records the commands passing through (and can cap answers like a reader)."""

    def __init__(self, inner: ApduConnection, *, cap: int | None = None) -> None:
        self.inner = inner
        self.cap = cap
        self.commands: list[CommandApdu] = []
        self.status_words: list[int] = []

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        self.commands.append(command)
        response = self.inner.send_and_receive(command)
        self.status_words.append(response.sw)
        if self.cap is not None and len(response.data) > self.cap:
            return ResponseApdu(response.data[: self.cap], response.sw)
        return response

    @property
    def supports_extended_length(self) -> bool:
        return self.inner.supports_extended_length

    @property
    def reads(self) -> list[CommandApdu]:
        return [c for c in self.commands if c.ins in (0xB0, 0xB1)]

    @property
    def sfi_reads(self) -> list[CommandApdu]:
        return [c for c in self.commands if c.ins == 0xB0 and c.p1 & 0x80]

    @property
    def selects(self) -> list[CommandApdu]:
        return [c for c in self.commands if c.ins == 0xA4]


def make_file(tag: int, size: int) -> bytes:
    """A TLV file of ``size`` bytes (one less where the length field's growth makes ``size`` impossible)."""
    body_len = next(n for n in range(size, -1, -1) if len(tlv.encode(tag, bytes(n))) <= size)
    return tlv.encode(tag, bytes((i * 7 + i // 251) & 0xFF for i in range(body_len)))


def card_with(files: dict[int, bytes], **quirks: object) -> tuple[VirtualCard, Recorder]:
    base = demo_spec()
    image = dataclasses.replace(base.image, applet_files={**base.image.applet_files, **files})
    spec = SimCardSpec("test", image, base.secrets, Quirks(plain_reads=True, **quirks))  # type: ignore[arg-type]
    card = VirtualCard(spec)
    card.power_on()
    assert card.send_and_receive(CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID)).ok
    return card, Recorder(card)


def test_small_file_takes_one_apdu() -> None:
    _card, conn = card_with({})
    assert read_file(conn, 0x1E) == DEMO_COM
    assert len(conn.reads) == 1
    assert conn.reads[0].p1 == 0x9E  # by short file id: no SELECT round trip


@pytest.mark.parametrize(("size", "chunk"), [(1000, 256), (1000, 223), (5000, 231), (256, 256), (257, 256)])
def test_chunked_read_uses_the_minimum_number_of_apdus(size: int, chunk: int) -> None:
    content = make_file(0x75, size)
    _card, conn = card_with({dg_fid(2): content})
    assert read_file(conn, 2, chunk=chunk) == content
    assert len(conn.reads) == math.ceil(size / chunk)


def test_extended_length_reads_a_large_file_in_one_apdu() -> None:
    content = make_file(0x75, 20_000)
    _card, conn = card_with({dg_fid(2): content})
    assert read_file(conn, 2, chunk=65536, extended_ok=True) == content
    assert len(conn.reads) == 1
    assert conn.reads[0].extended


def test_without_extended_ok_the_chunk_stays_short() -> None:
    content = make_file(0x75, 2000)
    _card, conn = card_with({dg_fid(2): content})
    assert read_file(conn, 2, chunk=4096) == content
    assert all(not c.extended and c.le <= 256 for c in conn.reads)


def test_offsets_beyond_7fff_use_odd_ins_b1() -> None:
    content = make_file(0x75, 0x8000 + 3000)
    _card, conn = card_with({dg_fid(2): content})
    assert read_file(conn, 2, chunk=4096, extended_ok=True) == content
    odd = [c for c in conn.reads if c.ins == 0xB1]
    assert odd, "no B1 read issued"
    assert all(c.ins == 0xB0 for c in conn.reads[: len(conn.reads) - len(odd)])
    first_odd_offset = int.from_bytes(tlv.decode(odd[0].data).value, "big")
    assert first_odd_offset > 0x7FFF


@pytest.mark.parametrize("chunk", [CHUNK_AES_SM, 256, 1000])
def test_b1_answers_fit_the_chunk_with_their_do53_header(chunk: int) -> None:
    content = make_file(0x75, 0x8000 + 1000)
    _card, conn = card_with({dg_fid(2): content}, max_le=chunk)  # a chip refusing any Le above the chunk
    memory = ChunkMemory()
    assert read_file(conn, 2, chunk=chunk, extended_ok=True, memory=memory) == content
    assert memory.limit is None  # no refusal and no short answer
    odd = [c for c in conn.reads if c.ins == 0xB1]
    assert all(c.le <= chunk for c in odd)
    first_odd = math.ceil(0x8000 / chunk) * chunk  # B0 reads run while their offset is at most 0x7FFF
    assert len(odd) == math.ceil((len(content) - first_odd) / odd_room(chunk))


@pytest.mark.parametrize("refusal", [0x6700, 0x6B00])
def test_step_down_on_a_refused_le_is_remembered_for_the_next_file(refusal: int) -> None:
    """A chip capping Le at 0xA0 (6700, or 6B00 on some chips): 256, 231, 223 and 192 are refused, 160 answers."""
    dg2, dg13 = make_file(0x75, 1000), make_file(0x6D, 600)
    _card, conn = card_with({dg_fid(2): dg2, dg_fid(13): dg13}, max_le=0xA0, le_refusal_sw=refusal)
    memory = ChunkMemory()
    assert read_file(conn, 2, chunk=256, memory=memory) == dg2
    assert memory.limit == 160
    assert [c.le for c in conn.reads[:5]] == [256, 231, 223, 192, 160]
    assert conn.status_words[:4] == [refusal] * 4
    assert len(conn.reads) == 4 + math.ceil(1000 / 160)
    conn.commands.clear()
    assert read_file(conn, 13, chunk=256, memory=memory) == dg13
    assert len(conn.reads) == math.ceil(600 / 160)  # no refusals the second time


def test_extended_refused_falls_back_to_short_and_remembers() -> None:
    content = make_file(0x75, 3000)
    _card, conn = card_with({dg_fid(2): content}, extended_length=False)
    memory = ChunkMemory()
    assert read_file(conn, 2, chunk=65536, extended_ok=True, memory=memory) == content
    assert memory.extended_refused
    assert sum(c.extended for c in conn.reads) == 1
    assert len(conn.reads) == 1 + math.ceil(3000 / 256)


def test_short_answers_set_the_chunk_size() -> None:
    content = make_file(0x75, 1000)
    card, _ = card_with({dg_fid(2): content})
    conn = Recorder(card, cap=100)  # a reader whose buffer holds 100 data bytes
    memory = ChunkMemory()
    assert read_file(conn, 2, chunk=256, memory=memory) == content
    assert memory.limit == 100
    assert len(conn.reads) == 10


def test_eof_warning_on_the_first_read_is_fine() -> None:
    _card, conn = card_with({}, eof_warning=True)
    assert read_file(conn, 0x1E) == DEMO_COM
    assert len(conn.reads) == 1


@pytest.mark.parametrize(
    ("size", "chunk", "extended"),
    [(1000, 256, False), (1000, CHUNK_AES_SM, False), (257, 256, False), (0x8000 + 3000, 4096, True)],
)
def test_6282_with_the_last_chunk_costs_no_apdu_and_teaches_no_limit(size: int, chunk: int, extended: bool) -> None:
    """A chip answering 6282 (end of file) with the data of the chunk that reaches the end, B0 or B1 alike: the
    file is whole, no chunk is asked twice and no size is learned from the warning."""
    content = make_file(0x75, size)
    _card, plain = card_with({dg_fid(2): content})
    assert read_file(plain, 2, chunk=chunk, extended_ok=extended) == content
    _card, warned = card_with({dg_fid(2): content}, eof_warning_on_last_chunk=True)
    memory = ChunkMemory()
    assert read_file(warned, 2, chunk=chunk, extended_ok=extended, memory=memory) == content
    assert len(warned.reads) == len(plain.reads) > 1
    assert warned.status_words[-1] == 0x6282
    assert set(warned.status_words[:-1]) <= {0x9000}
    assert memory == ChunkMemory()


def test_6282_on_a_file_read_in_one_apdu() -> None:
    _card, conn = card_with({}, eof_warning_on_last_chunk=True)
    assert read_file(conn, 0x1E, chunk=len(DEMO_COM)) == DEMO_COM  # Le exactly the file: the answer reaches the end
    assert (len(conn.reads), conn.status_words) == (1, [0x6282])


def test_wrong_le_hint_6cxx_is_followed() -> None:
    _card, conn = card_with({}, wrong_le_hint=True)
    assert read_file(conn, 0x1E) == DEMO_COM
    assert [c.le for c in conn.reads] == [256, len(DEMO_COM)]


def test_denied_and_absent_files_raise_typed_errors() -> None:
    _card, conn = card_with({})
    with pytest.raises(SecurityStatusError) as denied:
        read_file(conn, 3)
    assert denied.value.sw == 0x6982
    assert "DG3" in denied.value.command
    with pytest.raises(FileNotFoundOnCardError) as absent:
        read_file(conn, 11)
    assert "DG11" in absent.value.command


def test_applet_files_need_access_without_plain_reads() -> None:
    card = VirtualCard(dataclasses.replace(demo_spec(), quirks=Quirks()))
    card.power_on()
    card.send_and_receive(CommandApdu(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID))
    with pytest.raises(SecurityStatusError):
        read_file(card, 0x1E)


def test_removal_mid_file_raises_and_returns_nothing() -> None:
    content = make_file(0x75, 2000)
    _card, conn = card_with({dg_fid(2): content}, remove_after_apdus=4)  # SELECT + 3 reads, then gone
    with pytest.raises(CardRemovedError):
        read_file(conn, 2, chunk=256)
    assert len(conn.reads) == 4  # the fourth read met an empty field


def test_garbage_header_is_an_lds_error_with_file_and_offset() -> None:
    _card, conn = card_with({dg_fid(2): b"\x7f" + b"\xff" * 40})
    with pytest.raises(LdsError) as error:
        read_file(conn, 2)
    assert error.value.what == "DG2"
    assert error.value.offset is not None


def test_file_shorter_than_its_header_is_never_returned() -> None:
    truncated = tlv.encode(0x75, bytes(1000))[:600]
    _card, conn = card_with({dg_fid(2): truncated}, eof_warning=True)
    with pytest.raises(LdsError, match="ends before"):
        read_file(conn, 2)
    _card, conn = card_with({dg_fid(2): truncated})
    with pytest.raises(StatusWordError) as error:
        read_file(conn, 2)
    assert error.value.sw == 0x6B00


def test_common_strategy_needs_two_more_apdus_per_file() -> None:
    content = make_file(0x75, 1000)
    _card, conn = card_with({dg_fid(2): content})
    assert read_file_common_strategy(conn, dg_fid(2)) == content
    common = len(conn.commands)
    conn.commands.clear()
    assert read_file(conn, 2, chunk=CHUNK_AES_SM) == content
    assert common == len(conn.commands) + 2


def test_common_strategy_reads_ef_com() -> None:
    _card, conn = card_with({})
    assert read_file_common_strategy(conn, FID_COM) == DEMO_COM


# --- chips that read only the file chosen by SELECT FILE (JMRTD's passport applet) ------------------------------


def select_of(sfi: int) -> CommandApdu:
    return CommandApdu(0x00, 0xA4, 0x02, 0x0C, file_id(sfi).to_bytes(2, "big"))


@pytest.mark.parametrize("refusal", [0x6A86, 0x6A81, 0x6986])
def test_refused_sfi_read_selects_and_the_chip_is_remembered(refusal: int) -> None:
    dg2 = make_file(0x75, 1000)
    _card, conn = card_with({dg_fid(2): dg2}, no_sfi=True, sfi_refusal_sw=refusal)
    memory = ChunkMemory()
    assert read_file(conn, 0x1E, memory=memory) == DEMO_COM
    by_sfi, by_offset = CommandApdu(0x00, 0xB0, 0x9E, 0, le=256), CommandApdu(0x00, 0xB0, 0, 0, le=256)
    assert conn.commands == [by_sfi, select_of(0x1E), by_offset]  # refused by SFI, SELECT, one read by offset
    assert conn.status_words == [refusal, 0x9000, 0x9000]
    assert memory == ChunkMemory(select_files=True)
    conn.commands.clear()
    assert read_file(conn, 2, chunk=256, memory=memory) == dg2
    assert conn.commands[0] == select_of(2)  # straight to SELECT: no refused attempt any more
    assert len(conn.commands) == 1 + math.ceil(1000 / 256)
    assert not conn.sfi_reads


def test_6b00_counts_as_a_refused_sfi_only_once_no_le_helps() -> None:
    """6B00 is also some chips' answer to a large Le: the ladder runs down first, then SELECT; nothing is learned
    about chunk sizes from it, so the next file reads in full chunks."""
    dg2 = make_file(0x75, 1000)
    _card, conn = card_with({dg_fid(2): dg2}, no_sfi=True, sfi_refusal_sw=0x6B00)
    memory = ChunkMemory()
    assert read_file(conn, 0x1E, chunk=256, memory=memory) == DEMO_COM
    refused = [c.le for c in conn.sfi_reads]
    assert refused == [256, 231, 223, 192, 160, 128, 64, 32, 16, 8, 4, 1]
    assert len(conn.commands) == len(refused) + 2  # + SELECT + one read by offset
    assert memory == ChunkMemory(select_files=True)
    conn.commands.clear()
    assert read_file(conn, 2, chunk=256, memory=memory) == dg2
    assert len(conn.commands) == 1 + math.ceil(1000 / 256)


def test_absent_and_denied_files_never_fall_back_to_select() -> None:
    _card, conn = card_with({})
    memory = ChunkMemory()
    with pytest.raises(FileNotFoundOnCardError):
        read_file(conn, 11, memory=memory)
    with pytest.raises(SecurityStatusError):
        read_file(conn, 3, memory=memory)
    assert not conn.selects
    assert not memory.select_files


def test_an_absent_file_on_a_select_only_chip_is_file_not_found() -> None:
    _card, conn = card_with({}, no_sfi=True)
    memory = ChunkMemory(select_files=True)
    with pytest.raises(FileNotFoundOnCardError) as absent:
        read_file(conn, 11, memory=memory)
    assert "DG11" in absent.value.command
    assert conn.commands == [select_of(11)]


def test_select_only_chip_reads_past_7fff_with_odd_ins_on_the_selected_file() -> None:
    content = make_file(0x75, 0x8000 + 3000)
    _card, conn = card_with({dg_fid(2): content}, no_sfi=True)
    assert read_file(conn, 2, chunk=4096, extended_ok=True, memory=ChunkMemory()) == content
    odd = [c for c in conn.reads if c.ins == 0xB1]
    assert odd
    assert all((c.p1, c.p2) == (0, 0) for c in odd)  # the current EF, not a short file id


def sm_card(key_kind: str, *, naked_errors: bool) -> tuple[SecureMessaging, Recorder, SimChipSecurity]:
    """A select-only demo card behind secure messaging: BAC (3DES) or PACE with the CAN (AES-128)."""
    base = demo_spec()
    dg2 = make_file(0x75, 1000)
    image = dataclasses.replace(base.image, applet_files={**base.image.applet_files, dg_fid(2): dg2})
    spec = SimCardSpec("test", image, base.secrets, Quirks(no_sfi=True, naked_errors=naked_errors))
    security = SimChipSecurity(spec.secrets, spec.quirks)
    card = VirtualCard(spec, security)
    card.power_on()
    conn = Recorder(card)
    info = spec.secrets.mrz_information
    key: AccessKey = MrzKey(info[:9], info[10:16], info[17:23]) if key_kind == "BAC" else CanKey(spec.secrets.can)
    access = None if key_kind == "BAC" else spec.image.mf_files[FID_CARD_ACCESS]
    channel = open_secure_channel(conn, key, card_access=access)
    conn.commands.clear()
    conn.status_words.clear()
    return channel.connection, conn, security


@pytest.mark.parametrize("naked", [False, True], ids=["secured-errors", "naked-errors"])
@pytest.mark.parametrize(("key_kind", "suite"), [("BAC", crypto.TDES), ("PACE", crypto.AES128)], ids=["3DES", "AES"])
def test_select_fallback_under_secure_messaging_keeps_the_ssc_in_step(
    key_kind: str, suite: CipherSuite, naked: bool
) -> None:
    sm, wire, chip_side = sm_card(key_kind, naked_errors=naked)
    assert sm.suite is suite
    chunk = sm.max_read_chunk(False)
    memory = ChunkMemory()
    assert read_file(sm, 0x1E, chunk=chunk, memory=memory) == DEMO_COM
    assert len(wire.commands) == 3  # the refused read by SFI, SELECT, one read
    assert wire.status_words[0] == 0x6A86
    assert (len(wire.commands[0].data) > 0, wire.commands[0].p1) == (True, 0x9E)  # it went out secured
    assert memory.select_files
    assert chip_side.ssc == sm.ssc
    wire.commands.clear()
    dg2 = read_file(sm, 2, chunk=chunk, memory=memory)
    assert len(dg2) == 1000
    assert len(wire.commands) == 1 + math.ceil(1000 / chunk)  # SELECT + reads, no refused attempt
    assert not wire.sfi_reads
    assert chip_side.ssc == sm.ssc


def test_file_names() -> None:
    assert [file_name(s) for s in (0x1E, 0x1D, 0x1C, 1, 16, 0x1A)] == [
        "EF.COM", "EF.SOD", "EF.CardAccess", "DG1", "DG16", "SFI 1A"
    ]


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(min_value=3, max_value=5000),
    chunk=st.integers(min_value=1, max_value=1024),
    max_le=st.sampled_from([65536, 256, 231, 200, 0xA0, 64]),
    refusal=st.sampled_from([0x6700, 0x6B00]),
    eof_warning=st.booleans(),
    last_chunk_warning=st.booleans(),
    extended=st.booleans(),
)
def test_any_file_reads_back_exactly(
    size: int, chunk: int, max_le: int, refusal: int, eof_warning: bool, last_chunk_warning: bool, extended: bool
) -> None:
    content = make_file(0x75, size)
    _card, conn = card_with({dg_fid(2): content}, max_le=max_le, le_refusal_sw=refusal, eof_warning=eof_warning,
                            eof_warning_on_last_chunk=last_chunk_warning)  # fmt: skip
    assert read_file(conn, 2, chunk=chunk, extended_ok=extended) == content
