"""A camera made of image files: the demo, the tests and the benchmark rigs see cards through it.

Images are decoded once and kept as grey frames, so replaying costs no more CPU than a real camera delivering
frames; a path listed twice is shown twice (tests describe a presentation as a list of frames). Pacing follows an
injected clock and sleep, so tests can run it without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from edge.drivers.base import Frame
from edge.errors import CameraError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"})


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given; folders as their image files in name order."""
    expanded: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            expanded.extend(sorted(p for p in entry.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            expanded.append(entry)
    return expanded


def load_grey(path: Path) -> tuple[int, int, bytes]:
    """Width, height and 8-bit luminance of an image file."""
    try:
        with Image.open(path) as image:
            grey = image.convert("L")
    except (OSError, UnidentifiedImageError) as exc:
        raise CameraError(f"cannot read image {path.name}: {exc}") from exc
    return grey.width, grey.height, grey.tobytes()


class ReplaySource:
    """Frames from image files at ``fps`` (None: as fast as asked), looping or once through."""

    def __init__(
        self,
        paths: Sequence[Path | str] | Path | str,
        *,
        fps: float | None = 10.0,
        loop: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        files = expand_paths([paths] if isinstance(paths, Path | str) else paths)
        if not files:
            raise CameraError("no image files to replay")
        cache: dict[Path, tuple[int, int, bytes]] = {}
        for path in files:
            if path not in cache:
                cache[path] = load_grey(path)
        self._images = [cache[path] for path in files]
        self._interval = 1.0 / fps if fps else 0.0
        self._loop = loop
        self._clock = clock
        self._sleep = sleep
        self._index = 0
        self._next_due: float | None = None
        self._closed = False

    @property
    def exhausted(self) -> bool:
        """True once a non-looping replay has shown its last frame (a camera never is)."""
        return self._closed or (not self._loop and self._index >= len(self._images))

    def read(self, timeout: float) -> Frame | None:
        if self.exhausted:
            return None
        now = self._clock()
        due = now if self._next_due is None else self._next_due
        if due - now > timeout:
            self._sleep(max(timeout, 0.0))
            return None
        if due > now:
            self._sleep(due - now)
        # Keep the cadence, but never try to catch up a backlog after a slow consumer.
        self._next_due = max(due, self._clock() - self._interval) + self._interval
        width, height, pixels = self._images[self._index % len(self._images)]
        self._index += 1
        if self._loop:
            self._index %= len(self._images)
        return Frame(width=width, height=height, pixels=pixels, timestamp=self._clock())

    def close(self) -> None:
        self._closed = True
