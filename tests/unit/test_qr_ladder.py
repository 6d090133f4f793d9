"""The QR ladder: frames zxing alone misses (small, noisy modules) decode through it; it never returns a payload
the CCCD parser refuses; it costs nothing on frames without anything QR-like, and its attempts are bounded per frame,
by the frame budget and by its CPU share. Frames come from edge/sim/qr_frames.py (seeded); time is a fake clock, and
the tests count attempts, never wall time.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from edge.daemon.scanner import QrScanner, ScanEventKind
from edge.drivers.base import Frame
from edge.drivers.qrdecoders import is_cccd_qr, make_decoder
from edge.drivers.qrladder import RUNGS, Box, QrLadder, likely_regions, rung_image
from edge.drivers.zxing import ZxingDecoder
from edge.protocol.cccd_qr import encode_cccd_qr
from edge.sim.qr_frames import HEIGHT, WIDTH, blank_frames, make_person, qr_matrix, render

#: Seeds whose card photograph ("small" modules, "noise") zxing alone misses; the last needs the sharpen rung.
CARD_SEEDS = (28, 52, 64, 105)
#: A QR that is no CCCD QR (a VietQR payment code), photographed so that zxing alone misses it.
PAYMENT = ("00020101021238570010A00000072701270006970436011300110123456780208QRIBFTTA53037045802VN62150811"
           "Thanh toan6304ABCD")
PAYMENT_SEEDS = (19, 49, 61)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _frame(pixels: bytes | np.ndarray) -> Frame:
    data = pixels.tobytes() if isinstance(pixels, np.ndarray) else pixels
    return Frame(width=WIDTH, height=HEIGHT, pixels=data, timestamp=0.0)


def card_photo(seed: int) -> tuple[bytes, Frame]:
    """A made-up citizen's QR, small and noisy, under perspective and rotation: its payload and the frame."""
    rng = random.Random(seed)
    text = encode_cccd_qr(make_person(rng, seed))
    pixels, _ = render(text, rng, ("perspective", "rotation", "small", "noise"))
    return text.encode("utf-8"), _frame(pixels)


def payment_photo(seed: int) -> Frame:
    pixels, _ = render(PAYMENT, random.Random(seed), ("perspective", "rotation", "small", "noise"))
    return _frame(pixels)


def _desk(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(110, 4, (HEIGHT, WIDTH)), 0, 255).astype(np.uint8)


def _paste_qr(canvas: np.ndarray, text: str, left: int, top: int, module: int = 2) -> Box:
    modules = np.kron(qr_matrix(text), np.ones((module, module), dtype=bool))
    side = modules.shape[0]
    canvas[top : top + side, left : left + side] = np.where(modules, 30, 225)
    return Box(left, top, left + side, top + side)


def _speckle(canvas: np.ndarray, left: int, top: int, side: int, seed: int = 5) -> Box:
    """Random 2-px black and white blocks: dense in edges like a QR, with no finder pattern to decode."""
    modules = np.random.default_rng(seed).random((side // 2, side // 2)) < 0.5
    canvas[top : top + side, left : left + side] = np.where(np.kron(modules, np.ones((2, 2), dtype=bool)), 30, 220)
    return Box(left, top, left + side, top + side)


@pytest.fixture(scope="module")
def cards() -> list[tuple[bytes, Frame]]:
    return [card_photo(seed) for seed in CARD_SEEDS]


def _laddered() -> ZxingDecoder:
    """The default decoder's ladder, on a clock that stands still: the time budget never cuts a climb short, so
    what is decoded does not depend on how busy the machine is."""
    return ZxingDecoder(accept=is_cccd_qr, clock=FakeClock())


def test_the_ladder_decodes_cards_zxing_alone_misses(cards: list[tuple[bytes, Frame]]) -> None:
    plain, laddered = make_decoder(ladder=False), _laddered()
    assert sum(1 for payload, frame in cards if [s.raw for s in plain.decode(frame)] == [payload]) < len(cards)
    found = [laddered.decode(frame) for _, frame in cards]
    assert [[s.raw for s in symbols] for symbols in found] == [[payload] for payload, _ in cards]
    rungs = {symbol.decoder for symbols in found for symbol in symbols}
    assert "zxing+denoise" in rungs
    assert rungs <= {f"zxing+{rung}" for rung in RUNGS}
    assert laddered.ladder is not None
    stats = laddered.ladder.stats
    assert stats.rescued == stats.frames == len(cards)
    assert stats.attempts <= 4 * len(cards)


def test_the_scanner_reports_a_laddered_card_as_a_card(cards: list[tuple[bytes, Frame]]) -> None:
    payload, frame = cards[0]
    scanner = QrScanner(_NoFrames(), _laddered(), clock=FakeClock())
    event = scanner.feed(frame)
    assert event is not None
    assert event.kind is ScanEventKind.CARD
    assert event.raw == payload
    assert event.decoder == "zxing+denoise"


class _NoFrames:
    """The scanner is fed frames directly here; its source is never read."""

    @property
    def exhausted(self) -> bool:
        return True

    def read(self, timeout: float) -> Frame | None:
        return None

    def close(self) -> None:
        """Nothing to release."""


def test_a_payload_the_cccd_parser_refuses_is_never_a_result() -> None:
    frames = [payment_photo(seed) for seed in PAYMENT_SEEDS]
    anything = ZxingDecoder(accept=lambda raw: True, clock=FakeClock())  # what an ungated ladder would return
    assert [[s.raw for s in anything.decode(frame)] for frame in frames] == [[PAYMENT.encode()]] * len(frames)
    gated = _laddered()
    assert [list(gated.decode(frame)) for frame in frames] == [[]] * len(frames)
    assert gated.ladder is not None
    assert gated.ladder.stats.refused == len(frames)
    assert gated.ladder.stats.rescued == 0


def test_frames_without_anything_qr_like_cost_no_attempt() -> None:
    decoder = _laddered()
    for pixels in blank_frames(5):
        assert list(decoder.decode(_frame(pixels))) == []
    flat = Frame(width=WIDTH, height=HEIGHT, pixels=bytes([128]) * WIDTH * HEIGHT, timestamp=0.0)
    assert list(decoder.decode(flat)) == []
    assert list(decoder.decode(Frame(width=20, height=10, pixels=bytes(200), timestamp=0.0))) == []
    assert decoder.ladder is not None
    assert (decoder.ladder.stats.frames, decoder.ladder.stats.attempts) == (0, 0)


def test_attempts_per_frame_are_bounded() -> None:
    canvas = _desk()
    _speckle(canvas, 250, 150, 120)
    _speckle(canvas, 40, 300, 100, seed=6)  # two regions, three rungs each: six steps, four taken
    decoder = _laddered()  # time stands still: only the count bounds it
    assert decoder.ladder is not None
    for _ in range(3):
        assert list(decoder.decode(_frame(canvas))) == []
    assert (decoder.ladder.stats.frames, decoder.ladder.stats.attempts) == (3, 3 * 4)


def test_the_frame_budget_stops_a_climb() -> None:
    canvas = _desk()
    _speckle(canvas, 250, 150, 120)
    clock, zxing = FakeClock(), ZxingDecoder()

    def slow(image: Image.Image) -> list[bytes]:
        clock.now += 0.015  # each attempt takes 15 ms: the second one ends past the 25 ms budget
        return zxing.decode_image(image)

    ladder = QrLadder(slow, is_cccd_qr, clock=clock, frame_budget=0.025, duty=1.0)
    assert ladder.rescue(_frame(canvas)) is None
    assert (ladder.stats.attempts, ladder.stats.cut_short) == (2, 1)


def test_the_duty_bounds_the_ladders_share_of_the_cpu() -> None:
    """Something QR-like left in view for 5 s at 10 fps: without the duty, 100 frames x 2 attempts of 20 ms each
    would take 4 s of CPU; with duty 0.1, the ladder spends at most a tenth of the time (plus one budget)."""
    canvas = _desk()
    _speckle(canvas, 250, 150, 120)
    frame, clock, zxing = _frame(canvas), FakeClock(), ZxingDecoder()

    def slow(image: Image.Image) -> list[bytes]:
        clock.now += 0.020
        return zxing.decode_image(image)

    ladder = QrLadder(slow, is_cccd_qr, clock=clock, duty=0.1)
    start = clock.now
    for index in range(50):
        clock.now = start + 0.1 * index  # frames every 100 ms, whatever the ladder spent
        ladder.rescue(frame)
    elapsed = clock.now - start
    assert 0 < ladder.stats.attempts * 0.020 <= 0.1 * elapsed + 0.025 + 0.020
    assert ladder.stats.frames < 50  # some frames found the ladder out of credit and did not climb at all


def test_likely_regions_find_the_qr_and_follow_the_decoders_hint() -> None:
    canvas = _desk()
    qr = _paste_qr(canvas, encode_cccd_qr(make_person(random.Random(1), 1)), 380, 220)
    speckle = _speckle(canvas, 40, 40, 200)  # larger than the QR: first without a hint
    image = Image.fromarray(canvas)
    first, second = likely_regions(image)
    assert first.overlaps(speckle)
    assert second.overlaps(qr)
    assert (second.left, second.top) <= (qr.left, qr.top)
    assert (second.right, second.bottom) >= (qr.right, qr.bottom)
    hinted = likely_regions(image, [Box(qr.left + 10, qr.top + 10, qr.left + 40, qr.top + 40)])
    assert hinted[0] == second
    # a hint where nothing is dense is tried itself, grown by half its size
    (lone, *_) = likely_regions(image, [Box(560, 20, 600, 60)])
    assert lone == Box(540, 0, 620, 80)
    assert likely_regions(Image.fromarray(_desk())) == []


def test_binarise_follows_the_local_mean_across_glare() -> None:
    """Dark modules on a crop brightened from left to right (glare): one global threshold would make the bright
    side's modules light; against the local mean every module stays dark and every gap light."""
    modules = np.indices((20, 40)).sum(axis=0) % 2 == 0  # a checkerboard of 4-px modules
    glare = np.linspace(0, 120, 160)[None, :]
    pixels = np.clip(np.where(np.kron(modules, np.ones((4, 4), dtype=bool)), 40, 110) + glare, 0, 255)
    binary = np.asarray(rung_image(Image.fromarray(pixels.astype(np.uint8)), "binarise"))
    assert binary.shape == (160, 320)  # upscaled x2
    assert set(np.unique(binary)) <= {0, 255}
    dark = np.kron(modules, np.ones((8, 8), dtype=bool))
    core = np.zeros_like(dark)
    core[8:-8, 8:-8] = True  # away from the crop's border, where the neighbourhood is cut
    centres = core & (np.kron(np.ones((20, 40), dtype=bool), np.pad(np.ones((4, 4), dtype=bool), 2)))
    assert (binary[centres & dark] == 0).all()
    assert (binary[centres & ~dark] == 255).all()


def test_hints_outside_the_frame_or_without_area_are_ignored() -> None:
    image = Image.fromarray(_desk())
    odd = [Box(5, 5, 5, 5), Box(-50, -50, -10, -10), Box(700, 500, 800, 600), Box(630, 470, 900, 900)]
    regions = likely_regions(image, odd)
    assert regions == [Box(415, 255, 640, 480)]  # only the last reaches into the frame: grown by half its size
    assert all(region.area for region in regions)
    decoder = _laddered()
    assert decoder.ladder is not None
    assert decoder.ladder.rescue(_frame(_desk()), odd) is None
    assert decoder.ladder.stats.attempts == len(RUNGS)
