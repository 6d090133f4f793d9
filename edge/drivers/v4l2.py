"""A USB webcam through OpenCV (optional extra ``v4l2``): for counters without a Pi camera, and for desks.

cv2 is imported in :meth:`V4l2Source.open` only, so the firmware runs without OpenCV installed. OpenCV's
``read()`` blocks until the next frame and has no timeout of its own: at the requested frame rate that is one
frame interval, which is what the scanner loop expects anyway.

Focus and exposure are UVC controls; :func:`v4l2_controls` maps ``[camera]`` to them by their V4L2 names (as
``v4l2-ctl --list-ctrls`` shows them), a pure function tested without a camera, and the source sets them through
OpenCV's properties, which its V4L2 backend passes to ``VIDIOC_S_CTRL`` unscaled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edge.drivers.base import Frame
from edge.errors import CameraError

if TYPE_CHECKING:
    from edge.drivers.cameras import CameraTuning

log = logging.getLogger(__name__)

#: V4L2 control -> the OpenCV property its V4L2 backend maps to it.
CV2_PROPERTIES = {
    "focus_automatic_continuous": "CAP_PROP_AUTOFOCUS",
    "focus_absolute": "CAP_PROP_FOCUS",
    "auto_exposure": "CAP_PROP_AUTO_EXPOSURE",
    "exposure_time_absolute": "CAP_PROP_EXPOSURE",
}
#: ``auto_exposure`` menu values UVC cameras offer (V4L2_EXPOSURE_MANUAL, V4L2_EXPOSURE_APERTURE_PRIORITY).
EXPOSURE_MANUAL, EXPOSURE_AUTO = 1, 3


def v4l2_controls(tuning: CameraTuning) -> tuple[tuple[str, int], ...]:
    """The V4L2 controls for ``tuning``, in the order to set them: an automatic mode is switched off before its
    manual value is set, since a camera ignores (or refuses) a manual value while the automatic mode is on."""
    controls: list[tuple[str, int]] = []
    if tuning.v4l2_focus is None:
        controls.append(("focus_automatic_continuous", 1))
    else:
        controls += [("focus_automatic_continuous", 0), ("focus_absolute", tuning.v4l2_focus)]
    if tuning.v4l2_exposure is None:
        controls.append(("auto_exposure", EXPOSURE_AUTO))
    else:
        controls += [("auto_exposure", EXPOSURE_MANUAL), ("exposure_time_absolute", tuning.v4l2_exposure)]
    return tuple(controls)


class V4l2Source:
    """Grey frames from a V4L2 device (``/dev/video<index>`` or a path). ``controls`` (``v4l2_controls``) are set
    when it opens; one the camera refuses is logged and left as it is (doctor's sharpness figure shows the focus)."""

    def __init__(self, device: int | str = 0, *, size: tuple[int, int] = (640, 480), fps: float = 10.0,
                 controls: Sequence[tuple[str, int]] = ()) -> None:  # fmt: skip
        self._device = device
        self._size = size
        self._fps = fps
        self._controls = tuple(controls)
        self._cv2: Any = None
        self._capture: Any = None

    @property
    def exhausted(self) -> bool:
        return False  # a camera never runs out of frames

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
        refused = [name for name, value in self._controls if not capture.set(getattr(cv2, CV2_PROPERTIES[name]), value)]
        if refused:  # a fixed-focus webcam has no focus controls at all
            log.info("the webcam did not take %s: left as the camera has it", ", ".join(refused))
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
