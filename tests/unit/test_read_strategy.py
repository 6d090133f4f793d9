"""The read strategy (edge/protocol/reader.py) against the real virtual-card logic, in process (no pcscd).

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

from edge.errors import CardRemovedError, FileNotFoundOnCardError, LdsError, SecurityStatusError, StatusWordError
from edge.protocol import tlv
from edge.protocol.apdu import ApduConnection, CommandApdu, ResponseApdu
from edge.protocol.reader import (
    CHUNK_AES_SM,
    ChunkMemory,
    file_name,
    odd_room,
    read_file,
    read_file_common_strategy,
)
from edge.sim.card import VirtualCard
from edge.sim.model import EMRTD_AID, FID_COM, Quirks, SimCardSpec, dg_fid
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
