"""Raspberry Pi camera through picamera2: a small ``lores`` YUV420 stream whose Y plane is the grey frame.

The ISP scales the sensor image down for free, so the CPU only ever sees 640x480 luminance. Camera Module 3 focuses
at counter distance (continuous autofocus over the macro range, or a fixed lens position for a card rest) and the
exposure keeps the laminate's glare from saturating (``[camera]`` in the config; :func:`picamera_controls` maps it
to libcamera controls, a pure function so it is tested where picamera2 cannot be installed). picamera2 exists only
in Raspberry Pi OS's apt, so it is imported in :meth:`PiCameraSource.open` and nowhere else. Exercised by
``hil_tests/test_camera.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.drivers.base import Frame
from edge.errors import CameraError

if TYPE_CHECKING:
    from edge.drivers.cameras import CameraTuning

log = logging.getLogger(__name__)

# libcamera's control enums (control_ids.yaml); picamera2 takes their integer values.
_AF_MODE = {"manual": 0, "continuous": 2}  # AfModeManual, AfModeContinuous (AfModeAuto needs a trigger per focus)
_AF_RANGE = {"normal": 0, "macro": 1, "full": 2}
_AE_METERING = {"centre": 0, "spot": 1, "matrix": 2}  # MeteringCentreWeighted, MeteringSpot, MeteringMatrix
_AE_CONSTRAINT = {"normal": 0, "highlight": 1, "shadows": 2}

#: What the camera gets without a ``[camera]`` section (``cccd-edge qr scan``): continuous autofocus, as before.
CONTINUOUS_AUTOFOCUS: Mapping[str, int | float] = {"AfMode": _AF_MODE["continuous"]}


def picamera_controls(tuning: CameraTuning) -> dict[str, int | float]:
    """The libcamera controls for ``tuning``: focus (AfMode with AfRange, or LensPosition) and exposure
    (AeMeteringMode, AeConstraintMode, ExposureValue). Controls a camera lacks are dropped when it opens."""
    controls: dict[str, int | float] = {
        "AeMeteringMode": _AE_METERING[tuning.ae_metering],
        "AeConstraintMode": _AE_CONSTRAINT[tuning.ae_constraint],
        "ExposureValue": float(tuning.exposure_value),
    }
    if tuning.af_mode == "manual" and tuning.lens_position is not None:
        controls |= {"AfMode": _AF_MODE["manual"], "LensPosition": float(tuning.lens_position)}
    else:
        controls |= {"AfMode": _AF_MODE["continuous"], "AfRange": _AF_RANGE[tuning.af_range]}
    return controls


class PiCameraSource:
    """Grey frames from the Pi camera's lores stream. Call :meth:`open` first (or use it as a context manager).

    ``controls``: libcamera controls set with the stream (``picamera_controls``); those this camera does not
    advertise (a Camera Module 2 has no autofocus) are left out and logged, picamera2 would refuse them all."""

    def __init__(self, *, size: tuple[int, int] = (640, 480), fps: float = 10.0,
                 controls: Mapping[str, int | float] = CONTINUOUS_AUTOFOCUS) -> None:  # fmt: skip
        self._size = size
        self._fps = fps
        self._controls = dict(controls)
        self._camera: Any = None

    @property
    def exhausted(self) -> bool:
        return False  # a camera never runs out of frames

    def open(self) -> PiCameraSource:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(f"picamera2 is not available (install python3-picamera2): {exc}") from exc
        try:
            camera = Picamera2()
            supported = {name: value for name, value in self._controls.items() if name in camera.camera_controls}
            if missing := sorted(set(self._controls) - set(supported)):
                log.info("the Pi camera has no %s control: left as the camera has it", ", ".join(missing))
            width, height = self._size
            config = camera.create_video_configuration(
                main={"size": (width * 2, height * 2), "format": "YUV420"},
                lores={"size": self._size, "format": "YUV420"},
                controls={"FrameRate": self._fps, **supported},  # set with the stream: configure() resets controls
                buffer_count=4,
            )
            camera.configure(config)
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
