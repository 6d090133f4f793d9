"""Synthetic photographs of CCCD QR codes for the decoder benchmark: run it to print what a set contains.

The generator itself lives in ``edge/sim/qr_frames.py``: the benchmarks, the virtual rig and the tests use it there.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.sim.qr_frames import HEIGHT, VIETNAMESE_LETTERS, WIDTH, diacritics_missing, samples


def main() -> int:
    generated = list(samples())
    texts = [s.payload.decode("utf-8") for s in generated]
    conditions = Counter(c for s in generated for c in s.conditions)
    print(f"{len(generated)} samples, {WIDTH}x{HEIGHT} grey; layouts {dict(Counter(s.layout for s in generated))}")
    print(f"degradations: {dict(sorted(conditions.items()))}; none: {sum(not s.conditions for s in generated)}")
    print(f"module size {min(s.module_px for s in generated):.1f}-{max(s.module_px for s in generated):.1f} px; "
          f"payload {min(map(len, texts))}-{max(len(s.payload) for s in generated)} bytes")
    missing = diacritics_missing(texts)
    print(f"Vietnamese letters covered: {2 * len(VIETNAMESE_LETTERS) - len(missing)}/{2 * len(VIETNAMESE_LETTERS)}"
          + (f" (missing {''.join(sorted(missing))})" if missing else ""))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
