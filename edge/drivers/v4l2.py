"""A USB webcam through OpenCV (optional extra ``v4l2``): for counters without a Pi camera, and for desks.

cv2 is imported in :meth:`V4l2Source.open` only, so the firmware runs without OpenCV installed. OpenCV's
``read()`` blocks until the next frame and has no timeout of its own: at the requested frame rate that is one
frame interval, which is what the scanner loop expects anyway.
"""

from __future__ import annotations

import time
from typing import Any

from edge.drivers.base import Frame
from edge.errors import CameraError


class V4l2Source:
    """Grey frames from a V4L2 device (``/dev/video<index>`` or a path)."""

    def __init__(self, device: int | str = 0, *, size: tuple[int, int] = (640, 480), fps: float = 10.0) -> None:
        self._device = device
        self._size = size
        self._fps = fps
        self._cv2: Any = None
        self._capture: Any = None

    def open(self) -> V4l2Source:
        try:
            import cv2
        except ImportError as exc:
            raise CameraError(f"OpenCV is not installed (pip install 'cccd-edge[v4l2]'): {exc}") from exc
        capture = cv2.VideoCapture(self._device, cv2.CAP_V4L2)
        if not capture.isOpened():
            raise CameraError(f"cannot open the webcam {self._device!r}")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        capture.set(cv2.CAP_PROP_FPS, self._fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a stale queue
        self._cv2, self._capture = cv2, capture
        return self

    def read(self, timeout: float) -> Frame | None:
        if self._capture is None:
            raise CameraError("the webcam is not open")
        ok, image = self._capture.read()
        if not ok:
            return None
        grey = image if image.ndim == 2 else self._cv2.cvtColor(image, self._cv2.COLOR_BGR2GRAY)
        height, width = grey.shape
        return Frame(width=width, height=height, pixels=grey.tobytes(), timestamp=time.monotonic())

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> V4l2Source:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
