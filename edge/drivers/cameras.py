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


class CameraSettings(Protocol):
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
                device: int | str = "/dev/video0", loop: bool = True) -> FrameSource:  # fmt: skip
    """An opened source; ``replay_path`` (an image or a folder) for ``replay``, ``device`` for ``v4l2``."""
    if source == "replay":
        from edge.drivers.replay import ReplaySource

        if replay_path is None:
            raise CameraError("a replay camera needs the path of an image or a folder of images")
        return ReplaySource(replay_path, fps=fps, loop=loop)
    if source == "v4l2":
        from edge.drivers.v4l2 import V4l2Source

        return V4l2Source(device, fps=fps).open()
    from edge.drivers.picam import PiCameraSource

    return PiCameraSource(fps=fps).open()


def open_configured_camera(settings: CameraSettings) -> FrameSource:
    """The camera a ``[camera]`` section names, opened as the daemon opens it (doctor checks exactly this)."""
    return open_camera(settings.source, fps=settings.fps, replay_path=settings.replay_path, device=settings.device)
