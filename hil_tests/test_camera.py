"""The rig's camera: frames arrive grey at the lores size, in order, not blank; the test QR in view decodes.

Uses the rig from hil_tests/conftest.py (``CCCD_EDGE_RIG``). Its ``[camera]`` table picks the driver
(``source = "picam"``, ``"v4l2"`` with optional ``device``, or ``"replay"`` with ``path``) and says whether a
printed QR is in view (``qr_in_view``). A virtual rig replays synthetic photos of its test cards' QR codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.drivers.base import FrameSource
from edge.drivers.qrdecoders import make_decoder
from edge.drivers.replay import ReplaySource
from edge.protocol.cccd_qr import parse_cccd_qr
from edge.protocol.id_number import can_from_id
from hil_tests.rig import CameraSpec, Rig

pytestmark = pytest.mark.hil


@pytest.fixture(scope="module")
def camera_rig(rig: Rig) -> Rig:
    if rig.camera is None:
        pytest.skip(f"rig {rig.name} has no [camera]")
    return rig


@pytest.fixture(scope="module")
def replay_paths(camera_rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """What a replay camera shows: the rig's ``path``, or on a virtual rig photos of its cards' QR."""
    spec = camera_rig.camera
    assert spec is not None
    if spec.path is not None:
        return [spec.path]
    if not camera_rig.virtual:
        pytest.skip("camera.source = 'replay' needs a path on a hardware rig")
    from hil_tests.virtual import qr_photos

    return qr_photos([card.profile for card in camera_rig.cards], tmp_path_factory.mktemp("qr-photos"))


@pytest.fixture
def camera(camera_rig: Rig, request: pytest.FixtureRequest) -> Iterator[FrameSource]:
    spec: CameraSpec | None = camera_rig.camera
    assert spec is not None
    source: FrameSource
    if spec.source == "replay":
        source = ReplaySource(request.getfixturevalue("replay_paths"), fps=spec.fps)
    elif spec.source == "v4l2":
        from edge.drivers.v4l2 import V4l2Source

        source = V4l2Source(spec.device).open()
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


def test_a_qr_in_view_decodes_to_a_test_card(camera: FrameSource, camera_rig: Rig) -> None:
    """The QR in view decodes, is a CCCD QR, and (when the rig lists cards) is one of the rig's test cards."""
    assert camera_rig.camera is not None
    if not camera_rig.camera.qr_in_view:
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
    qr = parse_cccd_qr(found[0])
    if camera_rig.cards:  # the QR's key opens a test card's chip: the CAN is the ID number's last six digits
        assert can_from_id(qr.id_number) in {card.can for card in camera_rig.cards}, "the QR in view is no test card's"
