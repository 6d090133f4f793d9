"""Raspberry Pi camera through picamera2: a small ``lores`` YUV420 stream whose Y plane is the grey frame.

The ISP scales the sensor image down for free, so the CPU only ever sees 640x480 luminance, and continuous
autofocus (Camera Module 3) keeps a card sharp at counter distance. picamera2 exists only in Raspberry Pi OS's apt,
so it is imported in :meth:`PiCameraSource.open` and nowhere else. Exercised by ``hil_tests/test_camera.py``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge.drivers.base import Frame
from edge.errors import CameraError


class PiCameraSource:
    """Grey frames from the Pi camera's lores stream. Call :meth:`open` first (or use it as a context manager)."""

    def __init__(self, *, size: tuple[int, int] = (640, 480), fps: float = 10.0, autofocus: bool = True) -> None:
        self._size = size
        self._fps = fps
        self._autofocus = autofocus
        self._camera: Any = None

    def open(self) -> PiCameraSource:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(f"picamera2 is not available (install python3-picamera2): {exc}") from exc
        try:
            camera = Picamera2()
            width, height = self._size
            config = camera.create_video_configuration(
                main={"size": (width * 2, height * 2), "format": "YUV420"},
                lores={"size": self._size, "format": "YUV420"},
                controls={"FrameRate": self._fps},
                buffer_count=4,
            )
            camera.configure(config)
            if self._autofocus and "AfMode" in camera.camera_controls:
                from libcamera import controls

                camera.set_controls({"AfMode": controls.AfModeEnum.Continuous})
            camera.start()
        except (RuntimeError, OSError, IndexError) as exc:  # IndexError: no camera attached
            raise CameraError(f"cannot start the Pi camera: {exc}") from exc
        self._camera = camera
        return self

    def read(self, timeout: float) -> Frame | None:
        if self._camera is None:
            raise CameraError("the Pi camera is not open")
        try:
            job = self._camera.capture_array("lores", wait=False)
            yuv = self._camera.wait(job, timeout=timeout)
        except TimeoutError:
            return None
        except RuntimeError as exc:
            raise CameraError(f"the Pi camera stopped delivering frames: {exc}") from exc
        width, height = self._size
        luminance = np.ascontiguousarray(yuv[:height, :width])  # rows may be padded to the stride
        return Frame(width=width, height=height, pixels=luminance.tobytes(), timestamp=time.monotonic())

    def close(self) -> None:
        if self._camera is not None:
            self._camera.stop()
            self._camera.close()
            self._camera = None

    def __enter__(self) -> PiCameraSource:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
