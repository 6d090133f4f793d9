"""CPU cost of the scanner loop: % of one core at 10 fps on 640x480 grey frames (goal <= 10 %).

A replay source paces the frames as a camera would. Three scenes: ``cards`` alternates cards held for two seconds
(QR in view, decoded every frame) and empty counter; ``hard cards`` the same with cards zxing alone cannot read
(small, noisy modules: the QR ladder decodes every one of their frames); ``clutter`` leaves a QR-like pattern that
is no QR in view (the ladder climbs on every frame until its CPU share runs out). CPU is process time over wall
time, so it includes the replay and the loop, not only the decoder.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.daemon.scanner import QrScanner
from edge.drivers.base import Frame
from edge.drivers.qrdecoders import DECODERS, make_decoder
from edge.drivers.replay import ReplaySource
from edge.protocol.cccd_qr import encode_cccd_qr
from edge.sim.qr_frames import HEIGHT, WIDTH, blank_frames, make_person, render, samples

SCENES = ("cards", "hard cards", "clutter")


def _hard_cards(count: int) -> Iterator[bytes]:
    """Photographs of cards with small, noisy modules that zxing alone misses and the ladder reads."""
    plain, laddered = make_decoder(ladder=False), make_decoder()
    for seed in range(10_000):
        rng = random.Random(seed)
        text = encode_cccd_qr(make_person(rng, seed)).encode("utf-8")
        pixels, _ = render(text.decode("utf-8"), rng, ("perspective", "rotation", "small", "noise"))
        frame = Frame(WIDTH, HEIGHT, pixels, 0.0)
        if not plain.decode(frame) and [s.raw for s in laddered.decode(frame)] == [text]:
            yield pixels
            count -= 1
            if not count:
                return


def _clutter() -> bytes:
    """A desk with a block of random 2-px black and white squares: dense in edges like a QR, never decodable."""
    canvas = np.asarray(Image.frombytes("L", (WIDTH, HEIGHT), next(blank_frames(1)))).copy()
    modules = np.random.default_rng(5).random((70, 70)) < 0.5
    canvas[150:290, 250:390] = np.where(np.kron(modules, np.ones((2, 2), dtype=bool)), 30, 220)
    return canvas.tobytes()


def scene(folder: Path, fps: float, kind: str) -> list[Path]:
    """Four cards, each two seconds in view, separated by a second of empty counter; or the clutter alone."""
    empty = folder / "empty.png"
    Image.frombytes("L", (WIDTH, HEIGHT), next(blank_frames(1))).save(empty)
    if kind == "clutter":
        path = folder / "clutter.png"
        Image.frombytes("L", (WIDTH, HEIGHT), _clutter()).save(path)
        return [path]
    cards = _hard_cards(4) if kind == "hard cards" else (card.pixels for card in samples(4, seed=5))
    frames: list[Path] = []
    for index, pixels in enumerate(cards):
        path = folder / f"{kind.replace(' ', '-')}{index}.png"
        Image.frombytes("L", (WIDTH, HEIGHT), pixels).save(path)
        frames += [path] * int(2 * fps) + [empty] * int(fps)
    return frames


def measure(decoder_name: str, kind: str, frames: list[Path], fps: float, seconds: float, subsample: int) -> None:
    source = ReplaySource(frames, fps=fps, loop=True)
    scanner = QrScanner(source, make_decoder(decoder_name), subsample=subsample)
    wall_start, cpu_start = time.monotonic(), time.process_time()
    deadline = wall_start + seconds
    events = sum(1 for _ in scanner.events(until=lambda: time.monotonic() >= deadline))
    wall, cpu = time.monotonic() - wall_start, time.process_time() - cpu_start
    print(f"{decoder_name:6s} {kind:10s} subsample {subsample}: {100 * cpu / wall:5.1f} % of one core at {fps:g} fps "
          f"over {wall:.1f} s ({events} card events)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--backends", nargs="+", default=list(DECODERS))
    parser.add_argument("--scenes", nargs="+", default=list(SCENES), choices=SCENES)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.scenes:
            frames = scene(Path(folder), args.fps, kind)
            for name in args.backends if kind == "cards" else ["zxing"]:  # only zxing climbs the ladder
                measure(name, kind, frames, args.fps, args.seconds, subsample=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
