"""DG2 (tag 75): the facial image, as ISO/IEC 19794-5 ("FAC\\0" record) or ISO/IEC 39794-5 (tag-based) data.

The CCCD uses 19794-5 with a JPEG. Width and height come from the 19794-5 image information; for 39794-5 they
are read from the image itself, which is located as the first primitive value that starts like a JPEG or JP2.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from edge.errors import LdsError
from edge.protocol import tlv
from edge.protocol.lds.common import lds_errors, unwrap

TAG_DG2 = 0x75
TAG_BIOMETRIC_GROUP = 0x7F61
TAG_BIT = 0x7F60
TAG_HEADER = 0xA1
TAG_BDB = 0x5F2E
TAG_BDB_CONSTRUCTED = 0x7F2E
_WHAT = "DG2"
_JPEG_MAGIC = b"\xff\xd8"
_JP2_MAGIC = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K_MAGIC = b"\xff\x4f\xff\x51"
_FACE_RECORD_HEADER = 14
_FACE_INFO_BLOCK = 20
_FEATURE_POINT = 8
_IMAGE_INFO_BLOCK = 12

Mime = Literal["image/jpeg", "image/jp2"]


@dataclass(frozen=True, slots=True)
class FaceImage:
    image: bytes
    mime: Mime
    width: int
    height: int


def _mime_of(image: bytes) -> Mime | None:
    if image.startswith(_JPEG_MAGIC):
        return "image/jpeg"
    if image.startswith((_JP2_MAGIC, _J2K_MAGIC)):
        return "image/jp2"
    return None


def image_size(image: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG SOF marker, a JP2 ihdr box or a J2K SIZ marker."""
    with lds_errors(_WHAT):
        if image.startswith(_JPEG_MAGIC):
            pos = 2
            while pos + 4 <= len(image):
                if image[pos] != 0xFF:
                    raise LdsError("JPEG marker expected", what=_WHAT, offset=pos)
                marker = image[pos + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    pos += 2
                    continue
                length = struct.unpack(">H", image[pos + 2 : pos + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    height, width = struct.unpack(">HH", image[pos + 5 : pos + 9])
                    return int(width), int(height)
                pos += 2 + length
            raise LdsError("JPEG without a frame header", what=_WHAT)
        if image.startswith(_J2K_MAGIC):
            width, height, x_off, y_off = struct.unpack(">IIII", image[8:24])
            return int(width - x_off), int(height - y_off)
        if image.startswith(_JP2_MAGIC):
            at = image.find(b"ihdr")
            if at < 0:
                raise LdsError("JP2 without an ihdr box", what=_WHAT)
            height, width = struct.unpack(">II", image[at + 4 : at + 12])
            return int(width), int(height)
    raise LdsError("image is neither JPEG nor JPEG 2000", what=_WHAT)


def parse_dg2(data: bytes) -> FaceImage:
    """The first face image of DG2."""
    outer = unwrap(data, TAG_DG2, _WHAT)
    with lds_errors(_WHAT):
        group = outer.require(TAG_BIOMETRIC_GROUP)
        bit = group.require(TAG_BIT)
        block = bit.find(TAG_BDB) or bit.find(TAG_BDB_CONSTRUCTED)
        if block is None:
            raise LdsError("no biometric data block", what=_WHAT, offset=bit.offset)
        if block.value.startswith(b"FAC\x00"):
            return _parse_19794(block.value, block.offset)
        return _parse_39794(block)


def _parse_19794(record: bytes, base: int) -> FaceImage:
    if len(record) < _FACE_RECORD_HEADER + _FACE_INFO_BLOCK + _IMAGE_INFO_BLOCK:
        raise LdsError("face record too short", what=_WHAT, offset=base)
    count = struct.unpack(">H", record[12:14])[0]
    if count < 1:
        raise LdsError("face record holds no image", what=_WHAT, offset=base)
    pos = _FACE_RECORD_HEADER
    block_length, feature_points = struct.unpack(">IH", record[pos : pos + 6])
    image_info = pos + _FACE_INFO_BLOCK + _FEATURE_POINT * feature_points
    end = pos + block_length
    if image_info + _IMAGE_INFO_BLOCK > len(record) or end > len(record) or end < image_info + _IMAGE_INFO_BLOCK:
        raise LdsError("face record lengths are inconsistent", what=_WHAT, offset=base + pos)
    data_type = record[image_info + 1]
    width, height = struct.unpack(">HH", record[image_info + 2 : image_info + 6])
    image = record[image_info + _IMAGE_INFO_BLOCK : end]
    mime = _mime_of(image)
    if mime is None or (data_type == 0) != (mime == "image/jpeg"):
        raise LdsError("image data does not match its declared type", what=_WHAT, offset=base + image_info)
    return FaceImage(image=bytes(image), mime=mime, width=int(width), height=int(height))


def _parse_39794(block: tlv.Tlv) -> FaceImage:
    """Find the image in a 39794-5 tag-based block without modelling all of its optional structure."""
    pending = [block]
    while pending:
        node = pending.pop(0)
        mime = _mime_of(node.value)
        if mime is not None:
            width, height = image_size(node.value)
            return FaceImage(image=bytes(node.value), mime=mime, width=width, height=height)
        if node.constructed:
            pending.extend(node.children())
    raise LdsError("no JPEG or JPEG 2000 image in the biometric data block", what=_WHAT, offset=block.offset)


def encode_dg2(image: bytes, *, width: int | None = None, height: int | None = None) -> bytes:
    """DG2 with one ISO 19794-5 face record around ``image`` (JPEG or JPEG 2000)."""
    mime = _mime_of(image)
    if mime is None:
        raise LdsError("image is neither JPEG nor JPEG 2000", what=_WHAT)
    if width is None or height is None:
        width, height = image_size(image)
    face_info = struct.pack(">IHBBBBBBHBBBBBB", _FACE_INFO_BLOCK + _IMAGE_INFO_BLOCK + len(image), 0,
                            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # fmt: skip
    image_info = struct.pack(">BBHHBBHH", 1, 0 if mime == "image/jpeg" else 1, width, height, 1, 2, 0, 0)
    body = face_info + image_info + image
    record = b"FAC\x00" + b"010\x00" + struct.pack(">IH", _FACE_RECORD_HEADER + len(body), 1) + body
    header = tlv.encode_constructed(
        TAG_HEADER,
        tlv.encode(0x80, b"\x01\x01"),  # ICAO header version 1.1
        tlv.encode(0x81, b"\x02"),  # biometric type: facial features
        tlv.encode(0x87, b"\x01\x01"),  # format owner: ISO/IEC JTC 1/SC 37
        tlv.encode(0x88, b"\x00\x08"),  # format type: face image (19794-5)
    )
    bit = tlv.encode_constructed(TAG_BIT, header, tlv.encode(TAG_BDB, record))
    group = tlv.encode_constructed(TAG_BIOMETRIC_GROUP, tlv.encode(0x02, b"\x01"), bit)
    return tlv.encode(TAG_DG2, group)
