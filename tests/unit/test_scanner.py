"""The scanner loop with a replay camera and a real decoder: one event per card presentation, re-arming when the
QR leaves the view (for N frames, or for some time) or stays in view for ``repeat_after``, one "not an ID card" event
per foreign QR presentation, never a CARD event for a QR whose ID contradicts it.
Images are generated in tmp_path; time is a fake clock.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import segno
from PIL import Image

from edge.cli import main
from edge.daemon.scanner import QrScanner, Roi, ScanEvent, ScanEventKind, prepare
from edge.drivers.base import Frame, FrameSource
from edge.drivers.picam import PiCameraSource
from edge.drivers.qrdecoders import make_decoder
from edge.drivers.replay import ReplaySource
from edge.drivers.v4l2 import V4l2Source
from edge.errors import CameraError

CARD_A = "079203012345|123456789|Nguyễn Văn An|01022003|Nam|12 Đường Số 3, Phường Bến Nghé, Quận 1|15042021"
CARD_B = "046185000001||Phạm Thị Huế|17051985|Nữ|Phường Phú Hội, TP. Huế|01082024|"
PAYMENT = "00020101021238570010A000000727012700069704360113001101234567802"
CARD_A_AS_WOMAN = CARD_A.replace("|Nam|", "|Nữ|")  # the ID number's sex digit says male


class FakeClock:
    """Advances by ``step`` each time a frame is read, as a 10 fps camera would; ``sleep`` moves it too."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _save(path: Path, text: str | None) -> Path:
    canvas = Image.new("L", (640, 480), 110)
    if text is not None:
        modules = np.pad(np.array(segno.make(text, error="m", micro=False, encoding="utf-8").matrix, dtype=bool), 4)
        qr = Image.fromarray(np.where(modules, 20, 230).astype(np.uint8))
        qr = qr.resize((qr.width * 4, qr.height * 4), Image.Resampling.NEAREST)
        canvas.paste(qr, (200, 60))
    canvas.save(path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("frames")
    texts = {"a": CARD_A, "b": CARD_B, "pay": PAYMENT, "empty": None}
    return {name: _save(folder / f"{name}.png", text) for name, text in texts.items()}


def _frame(path: Path) -> Frame:
    frame = ReplaySource([path], fps=None).read(1.0)
    assert frame is not None
    return frame


def _run(frames: list[Path], clock: FakeClock, **options: float) -> list[ScanEvent]:
    source = ReplaySource(frames, fps=10, loop=False, clock=clock, sleep=clock.sleep)
    scanner = QrScanner(source, make_decoder(), clock=clock, **options)  # type: ignore[arg-type]
    return list(scanner.events(until=lambda: source.exhausted))


def test_one_event_per_presentation(images: dict[str, Path]) -> None:
    clock = FakeClock()
    frames = [images["empty"]] * 2 + [images["a"]] * 6 + [images["empty"]] + [images["a"]] * 3
    events = _run(frames, clock, absent_frames=3)
    assert [e.kind for e in events] == [ScanEventKind.CARD]
    assert events[0].qr is not None
    assert events[0].qr.full_name == "Nguyễn Văn An"
    assert events[0].decoder == "zxing"


def test_rearms_after_n_frames_without_the_qr(images: dict[str, Path]) -> None:
    clock = FakeClock()
    frames = [images["a"]] * 3 + [images["empty"]] * 3 + [images["a"]] * 3
    assert len(_run(frames, clock, absent_frames=3)) == 2
    assert len(_run(frames, FakeClock(), absent_frames=4)) == 1


def test_rearms_after_a_timeout_without_frames(images: dict[str, Path]) -> None:
    clock = FakeClock()
    source = ReplaySource([images["a"]], fps=None, loop=True, clock=clock, sleep=clock.sleep)
    scanner = QrScanner(source, make_decoder(), absent_frames=100, absent_seconds=2.0, clock=clock)
    frame = source.read(1.0)
    assert frame is not None
    assert scanner.feed(frame) is not None
    clock.now += 1.0
    assert scanner.feed(frame) is None  # still the same presentation
    clock.now += 1.9
    scanner.idle()  # the camera stalled; nothing seen for 1.9 s
    assert scanner.feed(frame) is None
    clock.now += 2.1
    scanner.idle()
    assert scanner.feed(frame) is not None


def test_a_new_card_is_a_new_event_at_once(images: dict[str, Path]) -> None:
    events = _run([images["a"]] * 3 + [images["b"]] * 3, FakeClock())
    assert [e.qr.format if e.qr else None for e in events] == ["2021", "2024"]


def test_foreign_qr_gives_one_not_id_card_event(images: dict[str, Path]) -> None:
    frames = [images["pay"]] * 5 + [images["empty"]] * 5 + [images["pay"]] * 2 + [images["a"]] * 2
    events = _run(frames, FakeClock(), absent_frames=5)
    assert [e.kind for e in events] == [ScanEventKind.NOT_ID_CARD, ScanEventKind.NOT_ID_CARD, ScanEventKind.CARD]
    assert "not an ID card QR code" in events[0].reason
    assert events[0].qr is None


def test_event_repr_has_no_personal_data(images: dict[str, Path]) -> None:
    (event,) = _run([images["a"]], FakeClock())
    assert "Nguyễn" not in repr(event)
    assert "079203012345" not in repr(event)


def test_roi_and_subsample_bound_the_pixels_decoded(images: dict[str, Path]) -> None:
    source = ReplaySource([images["a"]], fps=None)
    frame = source.read(1.0)
    assert frame is not None
    small = prepare(frame, Roi(left=180, top=40, width=420, height=420), subsample=2)
    assert (small.width, small.height, len(small.pixels)) == (210, 210, 210 * 210)
    scanner = QrScanner(source, make_decoder(), roi=Roi(left=180, top=40, width=420, height=420), subsample=1)
    event = scanner.feed(frame)
    assert event is not None
    assert event.kind is ScanEventKind.CARD


def test_replay_paces_frames_on_the_clock(images: dict[str, Path]) -> None:
    clock = FakeClock()
    source = ReplaySource(images["a"].parent, fps=10, loop=True, clock=clock, sleep=clock.sleep)
    stamps = [frame.timestamp for frame in (source.read(1.0) for _ in range(9)) if frame is not None]
    assert np.allclose(np.diff(stamps), 0.1)
    assert source.read(0.01) is None  # the next frame is due in 0.1 s: a shorter timeout returns empty-handed
    later = source.read(1.0)
    assert later is not None
    assert later.timestamp == pytest.approx(stamps[-1] + 0.1)
    assert not source.exhausted  # looping never ends


def test_replay_once_ends_and_folder_is_sorted(images: dict[str, Path]) -> None:
    source = ReplaySource(images["a"].parent, fps=None, loop=False)
    frames = [source.read(0.1) for _ in range(4)]
    assert all(frames)
    assert source.exhausted
    assert source.read(0.1) is None


def test_every_frame_source_says_whether_frames_can_still_come(images: dict[str, Path]) -> None:
    """The daemon's camera thread and ``qr scan`` ask the interface, never probe which driver they hold."""
    sources: list[FrameSource] = [V4l2Source(), PiCameraSource(), ReplaySource([images["a"]], fps=None, loop=False)]
    assert [source.exhausted for source in sources] == [False, False, False]  # nothing opened: none is read here
    assert sources[2].read(0.1) is not None
    assert [source.exhausted for source in sources] == [False, False, True]  # a camera never runs out


def test_replay_without_images_is_a_camera_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError):
        ReplaySource(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CameraError):
        ReplaySource(tmp_path / "broken.png")


def test_frame_dimensions_are_grey_8_bit(images: dict[str, Path]) -> None:
    frame = ReplaySource([images["b"]], fps=None).read(0.1)
    assert isinstance(frame, Frame)
    assert len(frame.pixels) == frame.width * frame.height == 640 * 480


def test_cli_qr_scan_prints_one_event_per_presentation(images: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = images["a"].parent  # a.png, b.png, empty.png, pay.png: one pass, in name order
    assert main(["qr", "scan", "--replay", str(folder), "--fps", "0"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["card", "card", "not_id_card"]
    assert events[0]["qr"]["full_name"] == "N. V. A."


def _keep_in_view(scanner: QrScanner, frame: Frame, clock: FakeClock, seconds: float) -> list[ScanEvent]:
    """Feed ``frame`` every 0.5 s (exact in binary, well inside ``absent_seconds``) for ``seconds``."""
    events: list[ScanEvent] = []
    for _ in range(int(seconds / 0.5)):
        clock.now += 0.5
        event = scanner.feed(frame)
        if event is not None:
            events.append(event)
    return events


def test_a_card_left_in_view_fires_again_after_repeat_after(images: dict[str, Path]) -> None:
    clock, card = FakeClock(), _frame(images["a"])
    scanner = QrScanner(ReplaySource([images["a"]], fps=None), make_decoder(), repeat_after=30.0, clock=clock)
    first = scanner.feed(card)
    assert first is not None
    assert not first.repeat
    repeats = _keep_in_view(scanner, card, clock, 70.0)
    assert [(e.timestamp - first.timestamp, e.kind, e.repeat) for e in repeats] == [
        (30.0, ScanEventKind.CARD, True), (60.0, ScanEventKind.CARD, True)]


def test_a_new_presentation_restarts_the_repeat_interval(images: dict[str, Path]) -> None:
    clock, card, empty = FakeClock(), _frame(images["a"]), _frame(images["empty"])
    scanner = QrScanner(ReplaySource([images["a"]], fps=None), make_decoder(), absent_frames=1, repeat_after=30.0,
                        clock=clock)
    assert scanner.feed(card) is not None
    assert _keep_in_view(scanner, card, clock, 10.0) == []
    assert scanner.feed(empty) is None  # the card left: re-armed
    shown_again = scanner.feed(card)
    assert shown_again is not None
    assert not shown_again.repeat
    (repeated,) = _keep_in_view(scanner, card, clock, 30.0)  # 40 s after the first event, 30 s after the second
    assert repeated.repeat
    assert repeated.timestamp - shown_again.timestamp == 30.0


def test_repeat_after_none_fires_once_per_presentation(images: dict[str, Path]) -> None:
    clock, card = FakeClock(), _frame(images["a"])
    scanner = QrScanner(ReplaySource([images["a"]], fps=None), make_decoder(), repeat_after=None, clock=clock)
    assert scanner.feed(card) is not None
    assert _keep_in_view(scanner, card, clock, 90.0) == []


def test_a_foreign_qr_left_in_view_is_reported_once(images: dict[str, Path]) -> None:
    """Only a card's QR repeats (a retry of its read); a payment code on the desk must not flash red every 5 s."""
    clock, payment = FakeClock(), _frame(images["pay"])
    scanner = QrScanner(ReplaySource([images["pay"]], fps=None), make_decoder(), repeat_after=5.0, clock=clock)
    first = scanner.feed(payment)
    assert first is not None
    assert first.kind is ScanEventKind.NOT_ID_CARD
    assert _keep_in_view(scanner, payment, clock, 5.0) == []


def test_a_qr_contradicting_its_id_is_never_a_card_event(tmp_path: Path) -> None:
    events = _run([_save(tmp_path / "woman.png", CARD_A_AS_WOMAN)] * 3, FakeClock())
    assert [e.kind for e in events] == [ScanEventKind.INCONSISTENT_CARD]
    (event,) = events
    assert event.qr is not None
    assert not event.qr.consistent
    assert "sex_mismatch" in event.reason
    assert "079203012345" not in repr(event) + event.reason
    assert "Nguyễn" not in repr(event) + event.reason


def test_cli_qr_scan_reports_the_inconsistent_qr_with_its_findings(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    frame = _save(tmp_path / "woman.png", CARD_A_AS_WOMAN)
    assert main(["qr", "scan", "--replay", str(frame), "--fps", "0"]) == 0
    (event,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert event["event"] == "inconsistent_card"
    assert event["qr"]["consistent"] is False
    assert [f["code"] for f in event["qr"]["id_findings"]] == ["sex_mismatch"]


@pytest.mark.parametrize("profile", ["card2024", "child"])
def test_a_2024_card_qr_is_a_key_source(profile: str, tmp_path: Path) -> None:
    """The 2024 QR (on the back, cancelled ID, a child's parents) gives a CARD event whose ID yields the CAN."""
    from edge.protocol.id_number import can_from_id
    from edge.sim.card_qr import card_qr_text
    from edge.sim.profile import load_profile

    person = load_profile(profile).person
    events = _run([_save(tmp_path / "card.png", card_qr_text(person))] * 3, FakeClock())
    assert [e.kind for e in events] == [ScanEventKind.CARD]
    qr = events[0].qr
    assert qr is not None
    assert (qr.format, qr.generation, qr.unrecognised_extra_fields) == ("2024", "2024", ())
    assert can_from_id(qr.id_number) == person.id_number[-6:]
    assert qr.cancelled_id_numbers == ((person.cancelled_id_number,) if person.cancelled_id_number else ())
