"""CPU cost of the scanner loop: % of one core at 10 fps on 640x480 grey frames (goal <= 10 %).

A replay source paces the frames as a camera would; the scene alternates cards held for two seconds (QR in view,
decoded every frame) and empty counter. CPU is process time over wall time, so it includes the replay and the
loop, not only the decoder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.daemon.scanner import QrScanner
from edge.drivers.qrdecoders import DECODERS, make_decoder
from edge.drivers.replay import ReplaySource
from edge.sim.qr_frames import HEIGHT, WIDTH, blank_frames, samples


def scene(folder: Path, fps: float) -> list[Path]:
    """Four cards, each two seconds in view, separated by a second of empty counter."""
    empty = folder / "empty.png"
    Image.frombytes("L", (WIDTH, HEIGHT), next(blank_frames(1))).save(empty)
    frames: list[Path] = []
    for card in samples(4, seed=5):
        path = folder / f"card{card.index}.png"
        Image.frombytes("L", (WIDTH, HEIGHT), card.pixels).save(path)
        frames += [path] * int(2 * fps) + [empty] * int(fps)
    return frames


def measure(decoder_name: str, frames: list[Path], fps: float, seconds: float, subsample: int) -> None:
    source = ReplaySource(frames, fps=fps, loop=True)
    scanner = QrScanner(source, make_decoder(decoder_name), subsample=subsample)
    wall_start, cpu_start = time.monotonic(), time.process_time()
    deadline = wall_start + seconds
    events = sum(1 for _ in scanner.events(until=lambda: time.monotonic() >= deadline))
    wall, cpu = time.monotonic() - wall_start, time.process_time() - cpu_start
    print(f"{decoder_name:6s} subsample {subsample}: {100 * cpu / wall:5.1f} % of one core at {fps:g} fps "
          f"over {wall:.1f} s ({events} card events)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--backends", nargs="+", default=list(DECODERS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        frames = scene(Path(folder), args.fps)
        for name in args.backends:
            measure(name, frames, args.fps, args.seconds, subsample=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
