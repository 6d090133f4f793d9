"""The real camera on a rig: frames arrive grey at the lores size, in order, not blank; a QR in view decodes.

Uses the rig from hil_tests/conftest.py (``CCCD_EDGE_RIG``). Its ``[camera]`` table picks the driver
(``source = "picam"`` or ``"v4l2"``, optional ``device`` for v4l2) and says whether a printed QR is in view
(``qr_in_view``). A virtual rig has no camera: the replay source stands in for it in tests/unit/test_scanner.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from edge.drivers.base import FrameSource
from edge.drivers.qrdecoders import make_decoder

pytestmark = pytest.mark.hil


@pytest.fixture(scope="module")
def camera_settings(rig: Any) -> dict[str, Any]:
    if not rig.has_camera or rig.virtual:
        pytest.skip(f"rig {rig.name} has no [camera]")
    settings: dict[str, Any] = rig.camera
    return settings


@pytest.fixture
def camera(camera_settings: dict[str, Any]) -> Iterator[FrameSource]:
    source: FrameSource
    if camera_settings.get("source", "picam") == "v4l2":
        from edge.drivers.v4l2 import V4l2Source

        source = V4l2Source(camera_settings.get("device", 0)).open()
    else:
        from edge.drivers.picam import PiCameraSource

        source = PiCameraSource().open()
    yield source
    source.close()


def test_frames_arrive_grey_at_lores_size(camera: FrameSource) -> None:
    frames = [camera.read(timeout=2.0) for _ in range(10)]
    assert all(frame is not None for frame in frames)
    frame = frames[-1]
    assert frame is not None
    assert (frame.width, frame.height) == (640, 480)
    assert len(frame.pixels) == frame.width * frame.height
    assert len(set(frame.pixels[::997])) > 4, "the frame is flat: lens cap on, or no light"
    stamps = [f.timestamp for f in frames if f is not None]
    assert stamps == sorted(stamps)


def test_a_qr_in_view_decodes(camera: FrameSource, camera_settings: dict[str, Any]) -> None:
    if not camera_settings.get("qr_in_view", False):
        pytest.skip("no printed QR in view (camera.qr_in_view = true)")
    decoder = make_decoder()
    found: list[bytes] = []
    for _ in range(30):
        frame = camera.read(timeout=2.0)
        if frame is not None:
            found = [symbol.raw for symbol in decoder.decode(frame)]
            if found:
                break
    assert found, "no QR decoded in 30 frames"
