"""The file-read strategy most open-source readers use, kept as the benchmarks' baseline (never shipped).

SELECT the EF by FID, READ BINARY its 4-byte header, then the rest in fixed chunks (0xDF bytes: what fits a secured
answer under AES). ``edge.protocol.read_strategy.read_file`` saves the SELECT and the header read of each file;
bench/read_card.py and bench/apdu_roundtrip.py measure by how much.
"""

from __future__ import annotations

from edge.errors import LdsError, StatusWordError, TlvError
from edge.protocol import tlv
from edge.protocol.apdu import ApduConnection, CommandApdu
from edge.protocol.iso7816 import INS_READ_BINARY, INS_SELECT, SW_WARNING_EOF
from edge.protocol.read_strategy import CHUNK_AES_SM, MAX_B0_OFFSET


def read_file_common_strategy(conn: ApduConnection, fid: int, *, chunk: int = CHUNK_AES_SM) -> bytes:
    """SELECT by FID, READ the 4-byte header, then fixed chunks (one SELECT and one header read more per file)."""
    name = f"EF {fid:04X}"
    select = CommandApdu(0x00, INS_SELECT, 0x02, 0x0C, fid.to_bytes(2, "big"))
    conn.send_and_receive(select).check(f"SELECT {name}")
    header = _read_plain(conn, 0, 4, name)
    try:
        _tag, length, value_offset = tlv.read_header(header)
    except TlvError as exc:
        raise LdsError(f"no valid TLV header: {exc}", what=name, offset=exc.offset) from exc
    total = value_offset + length
    buffer = bytearray(header[:total])
    while len(buffer) < total:
        buffer += _read_plain(conn, len(buffer), min(chunk, total - len(buffer)), name)
    return bytes(buffer)


def _read_plain(conn: ApduConnection, offset: int, le: int, name: str) -> bytes:
    if offset > MAX_B0_OFFSET:
        raise LdsError("offset beyond READ BINARY B0", what=name, offset=offset)
    command = CommandApdu(0x00, INS_READ_BINARY, offset >> 8, offset & 0xFF, le=le)
    data = conn.send_and_receive(command).check(f"READ BINARY {name} offset {offset}", allow=(SW_WARNING_EOF,))
    if not data:
        raise StatusWordError(SW_WARNING_EOF, f"READ BINARY {name} offset {offset}", message="no data before EOF")
    return data
