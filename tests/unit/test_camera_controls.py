"""Camera at counter distance: ``[camera]`` focus and exposure keys map to picamera2 (libcamera) and V4L2 controls by
pure functions, checked here without either library; bad combinations end in a ConfigError naming the section.
"""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import CameraConfig, parse_config
from edge.drivers.cameras import CameraSettings
from edge.drivers.picam import CONTINUOUS_AUTOFOCUS, picamera_controls
from edge.drivers.v4l2 import CV2_PROPERTIES, EXPOSURE_AUTO, EXPOSURE_MANUAL, v4l2_controls
from edge.errors import ConfigError


def camera(**keys: Any) -> CameraConfig:
    return parse_config({"terminal_id": "T-01", "ward_code": "26734", "camera": keys}).camera


def test_defaults_focus_close_and_keep_glare_below_saturation() -> None:
    # libcamera control_ids: AfModeContinuous 2, AfRangeMacro 1, MeteringCentreWeighted 0, ConstraintHighlight 1
    assert picamera_controls(camera()) == {"AfMode": 2, "AfRange": 1, "AeMeteringMode": 0, "AeConstraintMode": 1,
                                           "ExposureValue": 0.0}  # fmt: skip
    assert CONTINUOUS_AUTOFOCUS == {"AfMode": 2}  # what `qr scan` asks without a config, as before


def test_a_fixed_lens_position_is_manual_focus_without_a_range() -> None:
    controls = picamera_controls(camera(af_mode="manual", lens_position=5))
    assert (controls["AfMode"], controls["LensPosition"]) == (0, 5.0)  # AfModeManual; 5 dioptres = 20 cm
    assert "AfRange" not in controls
    assert isinstance(controls["LensPosition"], float)


@pytest.mark.parametrize(("keys", "control", "value"), [
    ({"af_range": "normal"}, "AfRange", 0),
    ({"af_range": "full"}, "AfRange", 2),
    ({"ae_metering": "spot"}, "AeMeteringMode", 1),
    ({"ae_metering": "matrix"}, "AeMeteringMode", 2),
    ({"ae_constraint": "normal"}, "AeConstraintMode", 0),
    ({"ae_constraint": "shadows"}, "AeConstraintMode", 2),
    ({"exposure_value": -1.5}, "ExposureValue", -1.5),
])  # fmt: skip
def test_each_key_maps_to_its_libcamera_value(keys: dict[str, object], control: str, value: float) -> None:
    assert picamera_controls(camera(**keys))[control] == value


def test_v4l2_defaults_leave_focus_and_exposure_to_the_camera() -> None:
    assert v4l2_controls(camera()) == (("focus_automatic_continuous", 1), ("auto_exposure", EXPOSURE_AUTO))


def test_v4l2_manual_values_follow_their_automatic_mode_switched_off() -> None:
    assert v4l2_controls(camera(source="v4l2", v4l2_focus=250, v4l2_exposure=80)) == (
        ("focus_automatic_continuous", 0), ("focus_absolute", 250),
        ("auto_exposure", EXPOSURE_MANUAL), ("exposure_time_absolute", 80))  # fmt: skip


def test_every_v4l2_control_has_an_opencv_property() -> None:
    names = {name for name, _ in v4l2_controls(camera(v4l2_focus=1, v4l2_exposure=1)) + v4l2_controls(camera())}
    assert names == set(CV2_PROPERTIES)
    cv2 = pytest.importorskip("cv2")  # the optional extra: where it is installed, the properties exist
    assert all(isinstance(getattr(cv2, prop), int) for prop in CV2_PROPERTIES.values())


@pytest.mark.parametrize(("keys", "key", "fragment"), [
    ({"af_mode": "manual"}, "camera", "lens_position"),
    ({"lens_position": 4.0}, "camera", "af_mode = 'manual'"),
    ({"af_mode": "manual", "lens_position": 40}, "camera.lens_position", "less than or equal"),
    ({"af_range": "near"}, "camera.af_range", "'macro'"),
    ({"ae_constraint": "glare"}, "camera.ae_constraint", "'highlight'"),
    ({"exposure_value": 9}, "camera.exposure_value", "less than or equal"),
    ({"v4l2_focus": -1}, "camera.v4l2_focus", "greater than or equal"),
    ({"v4l2_exposure": 0}, "camera.v4l2_exposure", "greater than or equal"),
])  # fmt: skip
def test_bad_camera_keys_name_themselves(keys: dict[str, object], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        camera(**keys)
    assert caught.value.key == key
    assert fragment in str(caught.value)


def test_the_config_section_is_what_the_camera_factory_reads() -> None:
    settings: CameraSettings = camera(source="v4l2", device="/dev/video2", v4l2_focus=30)
    assert (settings.source, settings.device, settings.v4l2_focus) == ("v4l2", "/dev/video2", 30)
