"""Open the frame source a configuration names: one place for the choice that the daemon, ``cccd-edge doctor``,
``cccd-edge qr scan`` and the hardware rig all make, so the four can never open the camera differently.

picamera2 and OpenCV are imported only when their source is asked for (they exist only on the Pi / with an extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from edge.drivers.base import FrameSource
from edge.errors import CameraError

CameraKind = Literal["picam", "v4l2", "replay"]


class CameraTuning(Protocol):
    """Focus and exposure a ``[camera]`` section asks of a real camera (``edge.config.CameraConfig`` is one); each
    driver maps them to its controls with a pure function (``picam.picamera_controls``, ``v4l2.v4l2_controls``)."""

    @property
    def af_mode(self) -> Literal["continuous", "manual"]: ...
    @property
    def af_range(self) -> Literal["macro", "normal", "full"]: ...
    @property
    def lens_position(self) -> float | None: ...
    @property
    def ae_metering(self) -> Literal["centre", "spot", "matrix"]: ...
    @property
    def ae_constraint(self) -> Literal["normal", "highlight", "shadows"]: ...
    @property
    def exposure_value(self) -> float: ...
    @property
    def v4l2_focus(self) -> int | None: ...
    @property
    def v4l2_exposure(self) -> int | None: ...


class CameraSettings(CameraTuning, Protocol):
    """What a ``[camera]`` config section says (``edge.config.CameraConfig`` is one)."""

    @property
    def source(self) -> CameraKind: ...
    @property
    def fps(self) -> float: ...
    @property
    def replay_path(self) -> Path | None: ...
    @property
    def device(self) -> str: ...


def open_camera(source: CameraKind, *, fps: float = 10.0, replay_path: Path | None = None,
                device: int | str = "/dev/video0", loop: bool = True,
                tuning: CameraTuning | None = None) -> FrameSource:  # fmt: skip
    """An opened source; ``replay_path`` (an image or a folder) for ``replay``, ``device`` for ``v4l2``; ``tuning``
    the focus and exposure for a real camera (None: the camera's own, and continuous autofocus on a Pi camera)."""
    if source == "replay":
        from edge.drivers.replay import ReplaySource

        if replay_path is None:
            raise CameraError("a replay camera needs the path of an image or a folder of images")
        return ReplaySource(replay_path, fps=fps, loop=loop)
    if source == "v4l2":
        from edge.drivers.v4l2 import V4l2Source, v4l2_controls

        return V4l2Source(device, fps=fps, controls=v4l2_controls(tuning) if tuning else ()).open()
    from edge.drivers.picam import CONTINUOUS_AUTOFOCUS, PiCameraSource, picamera_controls

    return PiCameraSource(fps=fps, controls=picamera_controls(tuning) if tuning else CONTINUOUS_AUTOFOCUS).open()


def open_configured_camera(settings: CameraSettings) -> FrameSource:
    """The camera a ``[camera]`` section names, opened as the daemon opens it (doctor checks exactly this)."""
    return open_camera(settings.source, fps=settings.fps, replay_path=settings.replay_path, device=settings.device,
                       tuning=settings)  # fmt: skip
