"""``cccd-edge doctor`` on the rig: its device checks report what the rig has, read back where the rig can tell.

The reader check must list the rig's reader and the ATR of each test card; the camera check must get frames from
the rig's camera (and, with a test card's QR in view, decode it); the LED check must blink every wired light, seen
as edges on the inputs the LEDs are wired to. On hardware the blinks run at the officer's pace, on a virtual rig at
its ``time_scale``. Nothing here asserts a duration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import IndicatorConfig, parse_config
from edge.daemon import doctor
from hil_tests.readback import Probe, wired_indicators
from hil_tests.rig import Rig

pytestmark = pytest.mark.hil

#: Bounds an edge that is late to arrive; not an expectation.
SETTLE_TIMEOUT = 1.0


def test_readers_and_the_test_cards_atr(reader_rig: Rig) -> None:
    results = doctor.check_readers(doctor.default_reader_driver, reader_rig.reader_name)
    failed = [r.line() for r in results if not r.ok]
    assert not failed, failed
    atrs = " ".join(r.detail for r in results if r.name == "card")
    for card in reader_rig.cards:
        if card.atr is not None:
            assert card.atr.hex(" ").upper() in atrs, f"{card.profile}: its ATR is not reported"


@pytest.fixture
def camera_section(rig: Rig, tmp_path: Path) -> dict[str, Any]:
    """``[camera]`` of config.toml for the rig's camera; a virtual rig replays photos of its cards' QR."""
    spec = rig.camera
    if spec is None:
        pytest.skip(f"rig {rig.name} has no [camera]")
    if spec.source == "v4l2":
        device = spec.device if isinstance(spec.device, str) else f"/dev/video{spec.device}"
        return {"source": "v4l2", "device": device, "fps": spec.fps}
    if spec.source == "picam":
        return {"source": "picam", "fps": spec.fps}
    if spec.path is not None:
        return {"source": "replay", "replay_path": str(spec.path), "fps": spec.fps}
    if not rig.virtual:
        pytest.skip("camera.source = 'replay' needs a path on a hardware rig")
    from hil_tests.virtual import qr_photos

    qr_photos([card.profile for card in rig.cards] or ["default"], tmp_path)
    return {"source": "replay", "replay_path": str(tmp_path), "fps": spec.fps}


def test_camera_frames_and_qr_decoder(rig: Rig, camera_section: dict[str, Any]) -> None:
    config = parse_config({"terminal_id": "hil-terminal", "ward_code": "hil", "camera": camera_section})
    camera, decoder = doctor.check_camera(config)
    assert camera.ok, camera.line()
    assert not camera.warning, camera.line()
    assert decoder.ok, decoder.line()
    if rig.camera is not None and rig.camera.qr_in_view:
        assert not decoder.detail.endswith(" 0 QR code(s) in view"), decoder.line()


@pytest.fixture
def rig_indicators(led_rig: Rig, pin_factory: Any) -> Iterator[tuple[IndicatorConfig, dict[str, Probe]]]:
    with wired_indicators(led_rig, pin_factory) as wired:
        yield wired


def test_leds_blink_each_wired_light(
    led_rig: Rig, pin_factory: Any, rig_indicators: tuple[IndicatorConfig, dict[str, Probe]]
) -> None:
    config, probes = rig_indicators
    marks = {name: probe.mark() for name, probe in probes.items()}
    blink = doctor.LED_BLINK_SECONDS * led_rig.led_time_scale
    result = doctor.check_leds(config, pin_factory=pin_factory, blink_seconds=blink)
    assert result.ok, result.line()
    for name, probe in probes.items():
        blinks = 1 if name == "buzzer" else doctor.LED_BLINKS
        # Edge callbacks may trail the blinking thread on real pins: wait (bounded) for the edges, then count.
        assert probe.wait_for(marks[name], ons=blinks, offs=blinks, timeout=SETTLE_TIMEOUT), f"{name} did not blink"
        assert probe.edges_since(marks[name]).count(True) == blinks, f"{name}: more than {blinks} blinks"
        assert not probe.device.is_active, f"{name} is left on"
