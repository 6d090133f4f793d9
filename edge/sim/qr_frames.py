"""Synthetic photographs of CCCD QR codes: seeded, 640x480, grey. The decoder benchmark's hard set
(``bench/qr_bench.py``), the scanner's CPU bench, the virtual rig's camera and the QR ladder's tests all see cards
through them; moved here from ``bench/qr_synth.py`` so tests need not import ``bench``.

Each sample is a made-up citizen (Vietnamese names and addresses; together the samples use every Vietnamese letter
with every diacritic, lower and upper case) in the 2021 or 2024 QR layout, printed on a card, photographed under a
random perspective and rotation, then degraded with some of: blur, noise, glare, low contrast, JPEG artefacts,
small size. ``python bench/qr_synth.py`` prints what a set contains.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import segno
from PIL import Image, ImageDraw, ImageFilter

from edge.protocol.cccd_qr import CccdQr, encode_cccd_qr
from edge.protocol.id_number import PROVINCES

WIDTH, HEIGHT = 640, 480

#: Every Vietnamese letter that carries a diacritic (lower case; upper case is derived).
VIETNAMESE_LETTERS = frozenset(
    "àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ"
)

SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ",
            "Ngô", "Dương", "Lý", "Đinh", "Trịnh", "Lương", "Tạ")
MIDDLE_NAMES = ("Văn", "Thị", "Hữu", "Đức", "Ngọc", "Minh", "Thanh", "Quốc", "Xuân", "Thùy", "Mỹ", "Bảo", "Gia",
                "Khắc", "Thế", "Diệu", "Kỳ", "Ý")
GIVEN_NAMES = ("An", "Bình", "Cường", "Dũng", "Đạt", "Giang", "Hải", "Hạnh", "Hiếu", "Hòa", "Hưng", "Hương",
               "Huế", "Khải", "Khánh", "Lâm", "Lợi", "Lộc", "Nghĩa", "Nhã", "Phúc", "Phượng", "Quân", "Quỳnh",
               "Sơn", "Thạch", "Thảo", "Thắng", "Thủy", "Tiến", "Toản", "Trí", "Tuấn", "Uyên", "Vĩnh", "Xuyến",
               "Yến", "Ẩn", "Ánh", "Ửng", "Ỷ", "Ẵm", "Kỷ", "Lụa", "Mẫn", "Ngữ", "Sử", "Tự", "Vỹ")
STREETS = ("Lê Lợi", "Trần Hưng Đạo", "Nguyễn Huệ", "Phạm Ngọc Thạch", "Hai Bà Trưng", "Điện Biên Phủ",
           "Võ Thị Sáu", "Lý Thường Kiệt", "Đinh Tiên Hoàng", "Cách Mạng Tháng Tám", "Hoàng Diệu", "Ngô Quyền")
WARDS = ("Phường Bến Nghé", "Phường Phú Hội", "Xã Ẳng Nưa", "Thị trấn Mường Ẳng", "Phường Ỷ La", "Xã Vĩnh Hảo",
         "Phường Đông Ba", "Xã Tả Van", "Phường Cửa Nam", "Xã Ea Tu", "Phường Hàng Bạc", "Xã Kỳ Sơn",
         "Phường Thuận Lộc", "Xã Phước Lộc", "Phường Mỹ Đình", "Xã Hữu Lũng", "Khu đô thị Văn Quán")
DISTRICTS = ("Quận 1", "TP. Huế", "Huyện Mường Ẳng", "TP. Tuyên Quang", "Huyện Tuy Phong", "Quận Hoàn Kiếm",
             "Thị xã Sa Pa", "Quận Nam Từ Liêm", "Huyện Hữu Lũng", "TP. Buôn Ma Thuột", "Huyện lỵ Đông Hưng")
#: Syllables that complete the coverage of every diacritic (hamlet names: "Xóm ...", "Thôn ...").
COVERAGE_SYLLABLES = ("Thẳng", "Cẩm", "Vẽ", "Mẹ", "Trẻ", "Chè", "Bé", "Kẽ", "Vẫn", "Lẫn", "Để", "Kiểm", "Nguyễn",
                      "Nhỏ", "Cổ",
                      "Vỡ", "Mới", "Sở", "Lực", "Phù", "Thụy", "Xã", "Tỉnh", "Chí", "Ổi", "Ỏn", "Ọc", "Ừ", "Ỡm",
                      "Ỵ", "Ỹ", "Ẽo", "Ẹ", "Ĩ", "Ị", "Ũ", "Ỉ", "Ẻ", "Õ", "Ò", "Ù", "Ỳ", "Ì", "È", "Ợ", "Ộ", "Ồ",
                      "Ỗ", "Ờ", "Ớ", "Ở", "Ứ", "Ử", "Ự", "Ữ", "Ú", "Ụ", "Ủ", "Ạ", "Ả", "Ã", "À", "Á", "Ằ", "Ắ",
                      "Ẳ", "Ẵ", "Ặ", "Ầ", "Ấ", "Ẩ", "Ẫ", "Ậ", "Ề", "Ế", "Ể", "Ễ", "Ệ", "É", "Ẹn", "Ý", "Ỷ", "Í",
                      "Ó", "Ỏ", "Ọ", "Ố", "Ổ", "Ỗ", "Ơ", "Ô", "Ư", "Ê", "Â", "Ă", "Đ")

_YY, _XX = np.mgrid[0:HEIGHT, 0:WIDTH].astype(float)

DEGRADATIONS = ("blur", "noise", "glare", "low_contrast", "jpeg", "small")


@dataclass(frozen=True, slots=True)
class Sample:
    """One synthetic photograph and the exact bytes its QR code holds."""

    index: int
    payload: bytes
    pixels: bytes  # WIDTH x HEIGHT, 8-bit grey
    layout: str
    conditions: tuple[str, ...]
    module_px: float


def make_person(rng: random.Random, index: int) -> CccdQr:
    """A made-up citizen; the hamlet name walks through the coverage syllables so every diacritic appears."""
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 80))
    if index % 37 == 0:
        born = date(rng.choice((1952, 1968, 1984, 2000, 2008)), 2, 29)
    issue_start = max(born + timedelta(days=365 * 14), date(2021, 1, 1))
    issued = issue_start + timedelta(days=rng.randrange(0, max(1, (date(2026, 6, 30) - issue_start).days)))
    layout_2024 = issued >= date(2024, 7, 1)
    century_digit = 2 * ((born.year - 1900) // 100)
    female = rng.random() < 0.5
    id_number = (rng.choice(sorted(PROVINCES)) + str(century_digit + female) + f"{born.year % 100:02d}"
                 + f"{rng.randrange(10**6):06d}")
    middle = "Thị" if female and rng.random() < 0.5 else rng.choice(MIDDLE_NAMES)
    name = " ".join((rng.choice(SURNAMES), middle, rng.choice(GIVEN_NAMES)))
    hamlet = COVERAGE_SYLLABLES[index % len(COVERAGE_SYLLABLES)]
    residence = (f"Số {rng.randrange(1, 400)}, Xóm {hamlet}, Đường {rng.choice(STREETS)}, {rng.choice(WARDS)}, "
                 f"{rng.choice(DISTRICTS)}, {rng.choice(sorted(PROVINCES.values()))}")
    if rng.random() < 0.15:
        residence = residence.upper()
    extra: tuple[str, ...] = ()
    if layout_2024:
        cancelled = rng.choice(("", f"{rng.randrange(10**9):09d}"))
        parents = ("", "")
        if issued.year - born.year < 14:
            parents = (f"{rng.choice(SURNAMES)} Văn {rng.choice(GIVEN_NAMES)}",
                       f"{rng.choice(SURNAMES)} Thị {rng.choice(GIVEN_NAMES)}")
        extra = (cancelled, *parents)
    old_id = rng.choice(("", f"{rng.randrange(10**9):09d}"))
    return CccdQr(id_number=id_number, old_id_number=old_id or None, full_name=name, date_of_birth=born,
                  sex="Nữ" if female else "Nam", place_of_residence=residence, date_of_issue=issued,
                  extra_fields=extra, format="2024" if layout_2024 else "2021")


def qr_matrix(text: str) -> np.ndarray:
    """The QR modules (True = dark) with a 4-module quiet zone."""
    code = segno.make(text, error="m", micro=False, encoding="utf-8")
    return np.pad(np.array(code.matrix, dtype=bool), 4)


def _card_image(modules: np.ndarray, scale: int, rng: random.Random) -> tuple[Image.Image, tuple[int, int, int]]:
    """The QR printed on a light card with some fake text lines around it; also the QR's left, top and side."""
    qr_side = modules.shape[0] * scale
    paper = rng.randrange(205, 245)
    ink = rng.randrange(10, 60)
    card = Image.new("L", (int(qr_side * 1.9), int(qr_side * 1.35)), paper)
    draw = ImageDraw.Draw(card)
    for row in range(8):
        y = int(card.height * (0.08 + row * 0.11))
        draw.rectangle((int(card.width * 0.04), y, int(card.width * rng.uniform(0.2, 0.4)), y + scale * 2),
                       fill=ink + 40)
    qr = Image.fromarray(np.where(np.kron(modules, np.ones((scale, scale), dtype=bool)), ink, paper).astype(np.uint8))
    left, top = card.width - qr_side - int(qr_side * 0.05), (card.height - qr_side) // 2
    card.paste(qr, (left, top))
    return card, (left, top, qr_side)


def _apply(coefficients: list[float], x: float, y: float) -> tuple[float, float]:
    a, b, c, d, e, f, g, h = coefficients
    w = g * x + h * y + 1
    return (a * x + b * y + c) / w, (d * x + e * y + f) / w


def _perspective_coefficients(source: list[tuple[float, float]], target: list[tuple[float, float]]) -> list[float]:
    """PIL's PERSPECTIVE coefficients mapping each target point (output) back to its source point (input)."""
    rows = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    solution = np.linalg.solve(np.array(rows, dtype=float), np.array([c for p in source for c in p], dtype=float))
    return [float(c) for c in solution]


def _background(rng: random.Random) -> np.ndarray:
    """A desk: a smooth gradient with some texture."""
    base = rng.uniform(40, 150)
    gx, gy = rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)
    desk = base + gx * _XX + gy * _YY
    return np.asarray(desk + np.random.default_rng(rng.randrange(2**32)).normal(0, 4, (HEIGHT, WIDTH)), dtype=float)


def render(text: str, rng: random.Random, conditions: tuple[str, ...]) -> tuple[bytes, float]:
    """A 640x480 grey photograph of ``text`` as a QR on a card; returns the pixels and the module size in px."""
    modules = qr_matrix(text)
    scale = 8
    card, (left, top, qr_side) = _card_image(modules, scale, rng)
    module_px = rng.uniform(1.9, 2.4) if "small" in conditions else rng.uniform(2.6, 5.5)
    angle = rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(0.0, 0.12)
    jitter = [(rng.uniform(-tilt, tilt), rng.uniform(-tilt, tilt)) for _ in range(4)]
    source = [(0.0, 0.0), (float(card.width), 0.0), (float(card.width), float(card.height)), (0.0, float(card.height))]
    qr_corners = [(left, top), (left + qr_side, top), (left + qr_side, top + qr_side), (left, top + qr_side)]
    cos, sin = np.cos(angle), np.sin(angle)
    while True:
        # Keep the whole QR in view (the card may be cut): a QR cut by the frame is the officer's to fix.
        k = module_px / scale
        w, h = card.width * k, card.height * k
        target: list[tuple[float, float]] = []
        for (x, y), (jx, jy) in zip(((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)), jitter,
                                    strict=True):
            x, y = x + jx * max(w, h), y + jy * max(w, h)
            target.append((x * cos - y * sin, x * sin + y * cos))
        forward = _perspective_coefficients(target, source)
        mapped = [_apply(forward, x, y) for x, y in qr_corners]
        xs, ys = [p[0] for p in mapped], [p[1] for p in mapped]
        if max(xs) - min(xs) < WIDTH - 8 and max(ys) - min(ys) < HEIGHT - 8:
            break
        module_px *= 0.95
    cx = rng.uniform(4 - min(xs), WIDTH - 4 - max(xs))
    cy = rng.uniform(4 - min(ys), HEIGHT - 4 - max(ys))
    target = [(x + cx, y + cy) for x, y in target]
    coefficients = _perspective_coefficients(source, target)
    warped = card.transform((WIDTH, HEIGHT), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR)
    mask = Image.new("L", card.size, 255).transform(
        (WIDTH, HEIGHT), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR)
    alpha = np.asarray(mask, dtype=float) / 255
    photo = alpha * np.asarray(warped, dtype=float) + (1 - alpha) * _background(rng)

    noise_rng = np.random.default_rng(rng.randrange(2**32))
    if "low_contrast" in conditions:
        contrast = rng.uniform(0.3, 0.5)
        photo = photo.mean() + (photo - photo.mean()) * contrast + rng.uniform(-20, 20)
    if "glare" in conditions:
        gx, gy = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
        radius = rng.uniform(40, 110)
        photo = photo + rng.uniform(60, 130) * np.exp(-((_XX - gx) ** 2 + (_YY - gy) ** 2) / (2 * radius**2))
    image = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))
    if "blur" in conditions:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.3 * module_px)))
    if "noise" in conditions:
        noisy = np.asarray(image, dtype=float) + noise_rng.normal(0, rng.uniform(4, 12), (HEIGHT, WIDTH))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if "jpeg" in conditions:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=rng.randrange(25, 55))
        image = Image.open(buffer).convert("L")
    return image.tobytes(), module_px


def samples(count: int = 320, seed: int = 20241) -> Iterator[Sample]:
    """``count`` samples; the same seed gives the same pixels."""
    rng = random.Random(seed)
    for index in range(count):
        person = make_person(rng, index)
        text = encode_cccd_qr(person)
        conditions = tuple(sorted(rng.sample(DEGRADATIONS, rng.choice((0, 1, 1, 2, 2, 3)))))
        pixels, module_px = render(text, rng, ("perspective", "rotation", *conditions))
        yield Sample(index, text.encode("utf-8"), pixels, person.format, conditions, module_px)


def blank_frames(count: int, seed: int = 7) -> Iterator[bytes]:
    """Frames with a card but no QR code in view: what the scanner sees most of the time."""
    rng = random.Random(seed)
    for _ in range(count):
        photo = np.clip(_background(rng), 0, 255).astype(np.uint8)
        yield photo.tobytes()


def diacritics_missing(texts: list[str]) -> set[str]:
    """Vietnamese letters (lower and upper case) that no text contains."""
    present = set("".join(texts))
    wanted = set(VIETNAMESE_LETTERS) | {c.upper() for c in VIETNAMESE_LETTERS}
    return wanted - present
