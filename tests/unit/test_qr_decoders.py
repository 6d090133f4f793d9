"""Both QR decoders return the QR's raw bytes: Vietnamese UTF-8 survives, including the names zbar mangles when it
guesses the encoding. Images are generated here (segno + Pillow), never stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import segno
from PIL import Image

from edge.cli import main
from edge.drivers.base import Frame, QrDecoder
from edge.drivers.qrdecoders import DECODERS, DEFAULT_DECODER, make_decoder
from edge.errors import ConfigError
from edge.protocol.cccd_qr import parse_cccd_qr

CARD = "046203012345||Phạm Ngọc Thạch|01022003|Nam|Phường Phú Hội, TP. Huế|15042021"
TEXTS = [
    "Huế",
    "Phạm Ngọc Thạch",
    "Nguyễn Thị Ẩn Ỷ Ữu Đặng Ễ ỵ",
    CARD,
    "ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬĐÈÉẺẼẸÊỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢÙÚỦŨỤƯỪỨỬỮỰỲÝỶỸỴ",
    "àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ",
]


def qr_photo(text: str, *, scale: int = 4, angle: float = 0.0, size: tuple[int, int] = (640, 480)) -> Frame:
    """``text`` as a QR code on a grey 640x480 frame, optionally rotated like a card held at an angle."""
    modules = np.pad(np.array(segno.make(text, error="m", micro=False, encoding="utf-8").matrix, dtype=bool), 4)
    image = Image.fromarray(np.where(modules, 25, 225).astype(np.uint8)).resize(
        (modules.shape[1] * scale, modules.shape[0] * scale), Image.Resampling.NEAREST)
    if angle:
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=120)
    canvas = Image.new("L", size, 120)
    canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    return Frame(width=size[0], height=size[1], pixels=canvas.tobytes(), timestamp=0.0)


@pytest.fixture(params=DECODERS)
def decoder(request: pytest.FixtureRequest) -> Iterator[QrDecoder]:
    made = make_decoder(request.param)
    yield made
    made.close()


@pytest.mark.parametrize("text", TEXTS)
def test_diacritics_round_trip_as_raw_utf8(decoder: QrDecoder, text: str) -> None:
    symbols = decoder.decode(qr_photo(text))
    assert [s.raw.decode("utf-8") for s in symbols] == [text]
    assert symbols[0].decoder == decoder.name


def test_rotated_card_qr_parses(decoder: QrDecoder) -> None:
    symbols = decoder.decode(qr_photo(CARD, scale=3, angle=27))
    assert parse_cccd_qr(symbols[0].raw).full_name == "Phạm Ngọc Thạch"


def test_empty_frame_has_no_symbols(decoder: QrDecoder) -> None:
    blank = Frame(width=640, height=480, pixels=bytes([128]) * 640 * 480, timestamp=0.0)
    assert list(decoder.decode(blank)) == []


def test_zbar_guesses_shift_jis_without_binary_mode() -> None:
    """Why the zbar driver sets binary mode: zbar as pyzbar ships it returns mojibake for "Huế"."""
    from pyzbar import pyzbar

    frame = qr_photo("Huế")
    guessed = [d.data for d in pyzbar.decode((frame.pixels, frame.width, frame.height))]
    if guessed == ["Huế".encode()]:
        pytest.skip("this libzbar no longer guesses Shift-JIS")
    assert guessed != ["Huế".encode()]
    assert [s.raw for s in make_decoder("zbar").decode(frame)] == ["Huế".encode()]


def test_default_and_unknown_decoder() -> None:
    assert make_decoder().name == DEFAULT_DECODER
    with pytest.raises(ConfigError):
        make_decoder("opencv")


def test_cli_qr_decode_masks_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card, foreign = tmp_path / "card.png", tmp_path / "foreign.png"
    for path, text in ((card, CARD), (foreign, "https://example.vn/pay?id=1")):
        frame = qr_photo(text)
        Image.frombytes("L", (frame.width, frame.height), frame.pixels).save(path)

    assert main(["qr", "decode", str(card)]) == 0
    masked = json.loads(capsys.readouterr().out)
    assert masked["qr"]["full_name"] == "P. N. T."
    assert masked["qr"]["id_number"] == "046*******45"
    assert (masked["qr"]["consistent"], masked["qr"]["id_findings"]) == (True, [])
    assert "Huế" not in json.dumps(masked, ensure_ascii=False)

    assert main(["qr", "decode", "--show-pii", "--decoder", "zbar", str(card)]) == 0
    clear = json.loads(capsys.readouterr().out)
    assert clear["qr"]["full_name"] == "Phạm Ngọc Thạch"
    assert clear["qr"]["can"] == "012345"
    assert clear["qr"]["bac_keys"][0]["mrz_information"].startswith("2030123450")

    assert main(["qr", "decode", str(foreign)]) == 1
    assert "not an ID card QR code" in json.loads(capsys.readouterr().out)["error"]


CARD_2024 = ("046215000321||Hoàng Gia Bảo|15062015|Nam|Tổ 5, Phường Phú Hội, TP. Huế|10092024|046015000321|"
             "Hoàng Minh Trí|Đinh Thị Mỵ Lụa")


def test_cli_qr_decode_reads_the_2024_card_both_decoders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The 2024 QR's extras survive both decoders, masked unless asked; the CAN is the ID's last six digits."""
    card = tmp_path / "card2024.png"
    frame = qr_photo(CARD_2024)
    Image.frombytes("L", (frame.width, frame.height), frame.pixels).save(card)
    for decoder in DECODERS:
        assert main(["qr", "decode", "--decoder", decoder, str(card)]) == 0
        masked = json.loads(capsys.readouterr().out)["qr"]
        assert (masked["format"], masked["card"]) == ("2024", "Thẻ căn cước (2024)")
        assert masked["cancelled_id_numbers"] == ["046*******21"]
        assert masked["parent_names"] == ["H. M. T.", "Đ. T. M. L."]
        assert masked["unrecognised_extra_fields"] == []
        assert main(["qr", "decode", "--show-pii", "--decoder", decoder, str(card)]) == 0
        clear = json.loads(capsys.readouterr().out)["qr"]
        assert clear["parent_names"] == ["Hoàng Minh Trí", "Đinh Thị Mỵ Lụa"]
        assert (clear["cancelled_id_numbers"], clear["can"]) == (["046015000321"], "000321")
