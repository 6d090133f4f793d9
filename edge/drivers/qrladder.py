"""The QR ladder: a few more tries at a frame on which the decoder found nothing, but something QR-like is in view.

zxing gives up on QR codes whose modules are under ~2.5 px (a card held far from the lens, a cheap webcam), and on
noise, blur and glare that break the modules' edges. Each rung decodes a crop of the likely QR region upscaled x2
(small modules), then smoothed (sensor noise, JPEG blocks), or sharpened (blur), or binarised against the local mean
(glare, low contrast); ``bench/qr_bench.py`` counts what each rung rescues.

Bounded three ways, so the scanner's CPU stays low: the ladder runs only when the frame holds a region dense in
edges (or zxing reported a symbol it could not decode there), makes at most ``max_attempts`` decodes per frame, and
starts none past ``frame_budget`` seconds nor beyond its share of the CPU (``duty``: a token bucket, so a
QR-looking object left in view, e.g. a printed form, costs at most that fraction of a core, not every frame's full
budget). And it never invents a result: every extra attempt is one more chance of a misread, so only payloads the
caller's ``accept`` takes (the strict CCCD QR parser) are returned; anything else is no result.

Pillow only (no numpy, no OpenCV): the daemon already carries Pillow for the replay camera, numpy would cost it
~13 MB resident (``tests/unit/test_daemon_footprint.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageFilter

from edge.drivers.base import Frame

#: Edge map: a pixel at half scale is an edge where it differs from a neighbour by more than this many grey levels.
EDGE_LEVEL = 28
#: A cell (16x16 frame pixels) is dense where more than this share of its pixels are edges (out of 255):
#: QR modules make edges everywhere, a desk's texture, a card's plain areas and even its print lines far fewer.
DENSE_LEVEL = 60
CELL = 16
#: The smallest QR worth a try: a version-1 code at 2 px per module spans ~3x3 cells; CCCD codes are larger.
MIN_CELLS = 6
#: Regions tried per frame: the likeliest two (a card's print lines can form a second dense region).
MAX_REGIONS = 2
#: Upscaled crops stay below this many pixels a side: zxing's time grows with the area.
MAX_SIDE = 720
#: Grey levels a pixel must be darker than its neighbourhood to be dark once binarised: sensor noise stays light.
BINARISE_MARGIN = 4


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle in frame pixels (right and bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def area(self) -> int:
        return max(0, self.right - self.left) * max(0, self.bottom - self.top)

    def overlaps(self, other: Box) -> bool:
        return (self.left < other.right and other.left < self.right
                and self.top < other.bottom and other.top < self.bottom)  # fmt: skip

    def grown(self, margin: int, width: int, height: int) -> Box:
        """This box ``margin`` pixels larger on every side, clipped to a ``width`` x ``height`` frame."""
        return Box(max(0, self.left - margin), max(0, self.top - margin),
                   min(width, self.right + margin), min(height, self.bottom + margin))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rescue:
    """A payload the ladder decoded and ``accept`` took, and the rung that found it."""

    raw: bytes
    rung: str


@dataclass(slots=True)
class LadderStats:
    """Counts since the ladder was made: what it cost and what it found (bench and tests read them)."""

    frames: int = 0  # frames on which it climbed (something QR-like, nothing decoded)
    attempts: int = 0  # decodes it made
    rescued: int = 0  # frames it turned into an accepted payload
    refused: int = 0  # payloads it decoded that ``accept`` refused: never returned
    cut_short: int = 0  # climbs stopped by the frame budget or the CPU share before their last attempt


def _lut(threshold: int) -> list[int]:
    return [255 if level > threshold else 0 for level in range(256)]


_EDGE_LUT = _lut(EDGE_LEVEL)
_DENSE_LUT = _lut(DENSE_LEVEL)


def _dense_cells(image: Image.Image) -> tuple[bytes, int, int]:
    """The cell grid (1 byte per CELL x CELL square, non-zero = dense in edges), its width and height.

    Half scale by sampling, then the larger of the horizontal and vertical neighbour differences: a few hundred
    microseconds for a 640x480 frame, paid on every frame where nothing decoded."""
    half = image.resize((image.width // 2, image.height // 2), Image.Resampling.NEAREST)
    width, height = half.width - 1, half.height - 1
    base = half.crop((0, 0, width, height))
    across = ImageChops.difference(base, half.crop((1, 0, width + 1, height)))
    down = ImageChops.difference(base, half.crop((0, 1, width, height + 1)))
    edges = ImageChops.lighter(across, down).point(_EDGE_LUT)
    half_cell = CELL // 2
    cells = edges.crop((0, 0, width - width % half_cell, height - height % half_cell)).reduce(half_cell)
    return cells.point(_DENSE_LUT).tobytes(), cells.width, cells.height


def _components(cells: bytes, width: int, height: int) -> list[tuple[int, Box]]:
    """8-connected groups of dense cells with at least MIN_CELLS cells: (cell count, box in frame pixels)."""
    seen = bytearray(len(cells))
    found: list[tuple[int, Box]] = []
    for start, dense in enumerate(cells):
        if not dense or seen[start]:
            continue
        seen[start] = 1
        stack, count = [start], 0
        left, top, right, bottom = width, height, 0, 0
        while stack:
            index = stack.pop()
            count += 1
            x, y = index % width, index // width
            left, top, right, bottom = min(left, x), min(top, y), max(right, x), max(bottom, y)
            for ny in range(max(0, y - 1), min(height, y + 2)):
                for nx in range(max(0, x - 1), min(width, x + 2)):
                    neighbour = ny * width + nx
                    if cells[neighbour] and not seen[neighbour]:
                        seen[neighbour] = 1
                        stack.append(neighbour)
        if count >= MIN_CELLS:
            found.append((count, Box(left * CELL, top * CELL, (right + 1) * CELL, (bottom + 1) * CELL)))
    return found


def likely_regions(image: Image.Image, hints: Sequence[Box] = (), *, limit: int = MAX_REGIONS) -> list[Box]:
    """Where a QR code probably is, likeliest first (at most ``limit``); empty when nothing looks like one.

    ``hints`` are where the decoder found a symbol it could not read: a dense region under a hint comes first, a
    hint under no dense region is tried itself, grown by half its size (the decoder may have seen part of it)."""
    if image.width < 2 * CELL or image.height < 2 * CELL:
        return []
    components = _components(*_dense_cells(image))
    components.sort(key=lambda item: (not any(item[1].overlaps(hint) for hint in hints), -item[0]))
    regions = [box.grown(CELL, image.width, image.height) for _, box in components]
    for hint in hints:
        if hint.grown(0, image.width, image.height).area and not any(hint.overlaps(box) for box in regions):
            margin = max(CELL, (hint.right - hint.left) // 2, (hint.bottom - hint.top) // 2)
            regions.insert(0, hint.grown(margin, image.width, image.height))
    return regions[:limit]


def _upscaled(crop: Image.Image) -> Image.Image:
    """``crop`` upscaled x2 with bicubic interpolation, less when that would pass MAX_SIDE."""
    factor = min(2.0, MAX_SIDE / max(crop.width, crop.height, 1))
    if factor <= 1.0:
        return crop
    return crop.resize((round(crop.width * factor), round(crop.height * factor)), Image.Resampling.BICUBIC)


def _smoothed(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(1))


def _binarised(image: Image.Image) -> Image.Image:
    """Each pixel against the mean of its neighbourhood (~25 px across, a few modules at 2x), light if not darker
    by BINARISE_MARGIN: glare leaves a gradient across the crop that one global (Otsu) threshold cannot cut."""
    local_mean = image.filter(ImageFilter.BoxBlur(12))
    return ImageChops.subtract(image, local_mean, scale=1.0, offset=128).point(_lut(128 - BINARISE_MARGIN))


#: What each rung does to the upscaled crop, in the order the rungs are tried on a region. Of the 114 frames zxing
#: alone missed among 4,820 synthetic ones (three seeds), denoise rescued 107, sharpen 5 more, binarise 1 more; the
#: bare upscale none beyond these, global Otsu thresholding none beyond the three.
_TREATMENTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "denoise": _smoothed,  # small modules under sensor noise and JPEG blocks
    "sharpen": lambda image: image.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=0)),  # blur
    "binarise": lambda image: _binarised(_smoothed(image)),  # glare and low contrast
}
RUNGS = tuple(_TREATMENTS)


def rung_image(crop: Image.Image, rung: str) -> Image.Image:
    """``crop`` as ``rung`` prepares it (one of RUNGS): upscaled, then treated."""
    return _TREATMENTS[rung](_upscaled(crop))


class QrLadder:
    """Climbs the rungs on the likely QR regions of a frame the decoder found nothing in. One per decoder.

    ``decode`` reads an image as the decoder would (raw payloads of the symbols it decoded), ``accept`` says
    whether a payload may be a result; ``clock`` is injected so tests count attempts without waiting."""

    def __init__(
        self,
        decode: Callable[[Image.Image], Sequence[bytes]],
        accept: Callable[[bytes], bool],
        *,
        max_attempts: int = 4,
        frame_budget: float = 0.025,
        duty: float = 0.05,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``max_attempts`` 4: both regions' first rung and the likeliest region's other two, ~2-6 ms each on
        640x480 frames; ``frame_budget`` 25 ms: a quarter of a 10 fps frame interval; ``duty`` 0.05: the ladder
        averages at most 5 % of a core however long something QR-like stays in view, which still pays for a
        rescue on most frames of a hard card (one attempt, a few ms, per 100 ms frame)."""
        self._decode = decode
        self._accept = accept
        self._max_attempts = max_attempts
        self._frame_budget = frame_budget
        self._duty = duty
        self._clock = clock
        self._credit = frame_budget  # seconds of decoding the ladder may spend now (the token bucket)
        self._credited_at: float | None = None
        self.stats = LadderStats()

    def _refill(self, now: float) -> None:
        if self._credited_at is not None:
            self._credit = min(self._frame_budget, self._credit + (now - self._credited_at) * self._duty)
        self._credited_at = now

    def rescue(self, frame: Frame, hints: Sequence[Box] = ()) -> Rescue | None:
        """An accepted payload from the likely QR regions of ``frame``, or None (nothing QR-like, out of budget,
        or nothing decoded that ``accept`` takes)."""
        if not frame.width or not frame.height:
            return None
        start = self._clock()
        self._refill(start)
        if self._credit <= 0:
            return None
        image = Image.frombuffer("L", (frame.width, frame.height), frame.pixels, "raw", "L", 0, 1)  # no copy
        regions = likely_regions(image, hints)
        if not regions:
            return None
        self.stats.frames += 1
        plan = [(region, rung) for region in regions for rung in RUNGS]
        ordered = plan[:: len(RUNGS)] + [step for step in plan if step[1] != RUNGS[0]]  # every region's first rung
        foreign: set[Box] = set()  # regions that decoded to a QR ``accept`` refuses: no more rungs there
        attempts = 0
        try:
            for region, rung in ordered:
                if region in foreign:
                    continue
                if attempts == self._max_attempts:
                    return None
                spent = self._clock() - start
                if attempts and (spent >= self._frame_budget or spent >= self._credit):
                    self.stats.cut_short += 1
                    return None
                attempts += 1
                self.stats.attempts += 1
                crop = image.crop((region.left, region.top, region.right, region.bottom))
                for raw in self._decode(rung_image(crop, rung)):
                    if self._accept(raw):
                        self.stats.rescued += 1
                        return Rescue(raw, rung)
                    self.stats.refused += 1
                    foreign.add(region)
            return None
        finally:
            now = self._clock()
            self._credit -= now - start
            self._credited_at = now
