"""BER-TLV (ISO/IEC 8825-1 as used by ICAO 9303): multi-byte tags, long-form lengths, constructed objects.

Pure and strict: every structural fault raises :class:`TlvError` with the offset, so an LDS parser built on it can
name the file and offset of the damage.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from edge.errors import TlvError

#: Largest length we accept (LDS files are at most a few hundred KB; anything larger is a malformed length).
MAX_LENGTH = 1 << 24


@dataclass(frozen=True, slots=True)
class Tlv:
    """One decoded TLV object. ``tag`` is the full tag as an int (e.g. 0x5F1F, 0x7F61)."""

    tag: int
    value: bytes
    offset: int = 0  # where the object starts in the parsed buffer (for error messages)

    @property
    def constructed(self) -> bool:
        return bool(_first_tag_byte(self.tag) & 0x20)

    def children(self) -> list[Tlv]:
        """Decode the value as a sequence of TLVs (only meaningful for constructed tags)."""
        return decode_all(self.value, base_offset=self.offset + _header_length(self.tag, len(self.value)))

    def find(self, tag: int) -> Tlv | None:
        """First direct child with ``tag``, or None."""
        for child in self.children():
            if child.tag == tag:
                return child
        return None

    def require(self, tag: int) -> Tlv:
        """First direct child with ``tag``; raises TlvError if absent."""
        child = self.find(tag)
        if child is None:
            raise TlvError(f"missing tag {tag:X} inside {self.tag:X}", what="TLV", offset=self.offset)
        return child

    def to_bytes(self) -> bytes:
        return encode(self.tag, self.value)


def _first_tag_byte(tag: int) -> int:
    size = max(1, (tag.bit_length() + 7) // 8)
    return tag >> (8 * (size - 1))


def _header_length(tag: int, length: int) -> int:
    return len(encode_tag(tag)) + len(encode_length(length))


def encode_tag(tag: int) -> bytes:
    if tag < 0:
        raise ValueError("negative tag")
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def encode_length(length: int) -> bytes:
    """DER length: short form below 128, else 0x81..0x84 followed by the length bytes."""
    if length < 0:
        raise ValueError("negative length")
    if length < 0x80:
        return bytes((length,))
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(body) > 4:
        raise ValueError("length too large")
    return bytes((0x80 | len(body),)) + body


def encode(tag: int, value: bytes) -> bytes:
    return encode_tag(tag) + encode_length(len(value)) + value


def encode_constructed(tag: int, *children: bytes) -> bytes:
    return encode(tag, b"".join(children))


def read_tag(data: bytes, offset: int) -> tuple[int, int]:
    """Return (tag, offset after the tag)."""
    if offset >= len(data):
        raise TlvError("truncated: tag expected", what="TLV", offset=offset)
    first = data[offset]
    tag = first
    pos = offset + 1
    if first & 0x1F == 0x1F:  # multi-byte tag
        while True:
            if pos >= len(data):
                raise TlvError("truncated multi-byte tag", what="TLV", offset=offset)
            byte = data[pos]
            tag = (tag << 8) | byte
            pos += 1
            if not byte & 0x80:
                break
            if pos - offset > 4:
                raise TlvError("tag longer than 4 bytes", what="TLV", offset=offset)
    return tag, pos


def read_length(data: bytes, offset: int) -> tuple[int, int]:
    """Return (length, offset after the length field)."""
    if offset >= len(data):
        raise TlvError("truncated: length expected", what="TLV", offset=offset)
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    if first == 0x80:
        raise TlvError("indefinite length is not allowed", what="TLV", offset=offset)
    count = first & 0x7F
    if count > 4:
        raise TlvError(f"length field of {count} bytes", what="TLV", offset=offset)
    end = offset + 1 + count
    if end > len(data):
        raise TlvError("truncated length field", what="TLV", offset=offset)
    length = int.from_bytes(data[offset + 1 : end], "big")
    if length > MAX_LENGTH:
        raise TlvError(f"absurd length {length}", what="TLV", offset=offset)
    return length, end


def read_header(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """Return (tag, length, offset of the value) without requiring the value to be present.

    Used by the read strategy to learn a file's total size from its first chunk.
    """
    tag, pos = read_tag(data, offset)
    length, pos = read_length(data, pos)
    return tag, length, pos


def decode_one(data: bytes, offset: int = 0, *, base_offset: int = 0) -> tuple[Tlv, int]:
    """Decode the TLV at ``offset``; return it and the offset just after it."""
    tag, length, pos = read_header(data, offset)
    end = pos + length
    if end > len(data):
        raise TlvError(
            f"value of tag {tag:X} runs {end - len(data)} bytes past the end",
            what="TLV",
            offset=base_offset + offset,
        )
    return Tlv(tag, bytes(data[pos:end]), base_offset + offset), end


def decode(data: bytes) -> Tlv:
    """Decode exactly one TLV spanning all of ``data`` (trailing 00/FF padding is tolerated)."""
    tlv, end = decode_one(data)
    if any(b not in (0x00, 0xFF) for b in data[end:]):
        raise TlvError("trailing bytes after the object", what="TLV", offset=end)
    return tlv


def decode_all(data: bytes, *, base_offset: int = 0) -> list[Tlv]:
    """Decode a concatenation of TLVs."""
    return list(iter_tlv(data, base_offset=base_offset))


def iter_tlv(data: bytes, *, base_offset: int = 0) -> Iterator[Tlv]:
    pos = 0
    while pos < len(data):
        tlv, pos = decode_one(data, pos, base_offset=base_offset)
        yield tlv


# --- INTEGER and OBJECT IDENTIFIER (X.690 8.3, 8.19): shared by SecurityInfos, the LDS files and the simulator --


def encode_integer(value: int) -> bytes:
    """DER INTEGER (full TLV) of a non-negative value: version numbers, key references, parameter ids."""
    return encode(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encode_oid(dotted: str) -> bytes:
    """Dotted text to the content octets of a DER OBJECT IDENTIFIER (wrap them with ``encode(0x06, ...)``)."""
    arcs = [int(part) for part in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return bytes(body)


#: Longest arc accepted, in content octets: a 128-bit arc (UUID OIDs under 2.25) takes 19. A longer one is hostile:
#: an arc of thousands of digits cannot even be printed (Python's limit on int-to-str conversion raises ValueError).
MAX_OID_ARC_OCTETS = 20


def decode_oid(value: bytes, what: str = "OBJECT IDENTIFIER") -> str:
    """Content octets of an OBJECT IDENTIFIER to dotted text; truncated ones, and arcs longer than
    :data:`MAX_OID_ARC_OCTETS`, raise :class:`TlvError` naming ``what``."""
    if not value or value[-1] & 0x80:
        raise TlvError("truncated OBJECT IDENTIFIER", what=what)
    arcs: list[int] = []
    current = 0
    octets = 0
    for byte in value:
        current = (current << 7) | (byte & 0x7F)
        octets += 1
        if octets > MAX_OID_ARC_OCTETS:
            raise TlvError(f"OBJECT IDENTIFIER arc longer than {MAX_OID_ARC_OCTETS} octets", what=what)
        if not byte & 0x80:
            arcs.append(current)
            current = 0
            octets = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))
