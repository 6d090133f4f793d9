"""QR decoder benchmark: decode rate, wrong texts and latency per 640x480 grey frame, per backend.

Samples come from ``edge/sim/qr_frames.py`` (seeded). "Wrong" means a decoder returned bytes other than the QR's: the
one failure that must never happen (zbar without binary mode is shown for contrast). Latency is also measured on
frames without a QR code, which is what the scanner loop sees most of the time.
Goals for the default backend: >= 97 % decoded, median <= 5 ms, zero wrong texts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.drivers.base import Frame
from edge.drivers.qrdecoders import DECODERS, make_decoder
from edge.sim.qr_frames import GIVEN_NAMES, HEIGHT, MIDDLE_NAMES, SURNAMES, WIDTH, Sample, blank_frames, qr_matrix
from edge.sim.qr_frames import samples as synthetic_samples

Decode = Callable[[Frame], list[bytes]]


def _backend(name: str) -> Decode:
    if name == "zbar-text":  # pyzbar as shipped: zbar guesses the encoding
        from pyzbar import pyzbar

        def zbar_text(frame: Frame) -> list[bytes]:
            found = pyzbar.decode((frame.pixels, frame.width, frame.height), symbols=[pyzbar.ZBarSymbol.QRCODE])
            return [d.data for d in found]

        return zbar_text
    decoder = make_decoder(name)
    return lambda frame: [s.raw for s in decoder.decode(frame)]


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def name_frames() -> list[tuple[bytes, bytes]]:
    """Short texts (bare names, as in a name-only QR), cleanly printed: where zbar's encoding guess goes wrong."""
    frames = []
    triples = zip(SURNAMES, MIDDLE_NAMES, reversed(GIVEN_NAMES), strict=False)
    names = [*GIVEN_NAMES, *(f"{s} {m} {g}" for s, m, g in triples)]
    for text in names:
        modules = qr_matrix(text).repeat(4, axis=0).repeat(4, axis=1)
        canvas = np.full((HEIGHT, WIDTH), 200, dtype=np.uint8)
        canvas[40 : 40 + modules.shape[0], 40 : 40 + modules.shape[1]] = np.where(modules, 20, 230)
        frames.append((text.encode("utf-8"), canvas.tobytes()))
    return frames


def short_texts(name: str, frames: list[tuple[bytes, bytes]]) -> None:
    decode = _backend(name)
    results = [decode(Frame(WIDTH, HEIGHT, pixels, 0.0)) for _, pixels in frames]
    wrong = sum(1 for (payload, _), found in zip(frames, results, strict=True) if found and payload not in found)
    right = sum(1 for (payload, _), found in zip(frames, results, strict=True) if payload in found)
    print(f"{name:10s} short names: right {right:3d}/{len(frames)}   wrong {wrong:3d}")


def run(name: str, corpus: list[Sample], blanks: list[bytes]) -> dict[str, float]:
    decode = _backend(name)
    decoded = wrong = 0
    latencies: list[float] = []
    missed: Counter[str] = Counter()
    for sample in corpus:
        frame = Frame(WIDTH, HEIGHT, sample.pixels, 0.0)
        start = time.perf_counter()
        found = decode(frame)
        latencies.append(time.perf_counter() - start)
        if sample.payload in found:
            decoded += 1
        elif found:
            wrong += 1
        else:
            missed.update(sample.conditions or ("none",))
    blank_latencies = []
    for pixels in blanks:
        start = time.perf_counter()
        decode(Frame(WIDTH, HEIGHT, pixels, 0.0))
        blank_latencies.append(time.perf_counter() - start)
    count = len(corpus)
    print(f"{name:10s} decoded {decoded:4d}/{count} = {100 * decoded / count:5.1f} %   wrong {wrong:3d}   "
          f"median {1000 * statistics.median(latencies):5.2f} ms   p95 {1000 * _percentile(latencies, 0.95):6.2f} ms"
          f"   empty frame median {1000 * statistics.median(blank_latencies):5.2f} ms")
    if missed:
        print(f"{'':10s} misses by condition: {dict(sorted(missed.items()))}")
    return {"rate": decoded / count, "wrong": wrong, "median": statistics.median(latencies)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=320)
    parser.add_argument("--seed", type=int, default=20241)
    parser.add_argument("--backends", nargs="+", default=[*DECODERS, "zbar-text"])
    args = parser.parse_args(argv)
    corpus = list(synthetic_samples(args.count, args.seed))
    blanks = list(blank_frames(30))
    print(f"{len(corpus)} synthetic CCCD QR photographs, {WIDTH}x{HEIGHT} grey, seed {args.seed}")
    results = {name: run(name, corpus, blanks) for name in args.backends}
    names = name_frames()
    for name in args.backends:
        short_texts(name, names)
    default = results.get(DECODERS[0])
    if default is None:
        return 0
    ok = default["rate"] >= 0.97 and default["wrong"] == 0 and default["median"] <= 0.005
    print(f"default backend {DECODERS[0]}: goals (>= 97 %, 0 wrong, median <= 5 ms) {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
