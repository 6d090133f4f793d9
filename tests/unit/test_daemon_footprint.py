"""What ``cccd-edge run`` carries in memory: modules it need not import, containers that must not grow per read.

Resident memory itself is measured by ``bench/daemon.py`` (at READY) and ``bench/soak.py`` (over 10,000 reads);
these tests count the causes instead, deterministically.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import gpiozero.threads
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.config import IndicatorConfig
from edge.daemon.worker import AbortMarks
from edge.drivers.leds import Indicators

REPO = Path(__file__).resolve().parents[2]

#: Everything the daemon imports with the replay camera and zxing: the CLI (which registers every subcommand), the
#: terminal and the drivers it opens lazily.
_DAEMON_IMPORTS = """
import sys
import edge.cli
edge.cli.build_parser()
import edge.commands.run, edge.daemon.terminal, edge.daemon.health
import edge.drivers.pcsc, edge.drivers.qrdecoders, edge.drivers.zxing, edge.drivers.cameras, edge.drivers.replay
print(" ".join(sorted(name for name in ("numpy", "cv2", "picamera2", "segno", "hypothesis") if name in sys.modules)))
"""


def test_the_daemon_does_not_import_numpy() -> None:
    # numpy (with its BLAS) is ~13 MB resident: most of the gap to the 80 MB budget. Frames reach zxing as a
    # memoryview and the region of interest is cut with byte slices, so nothing on the daemon's path needs it.
    result = subprocess.run([sys.executable, "-c", _DAEMON_IMPORTS], cwd=REPO, capture_output=True, text=True,
                            check=True, timeout=60)  # fmt: skip
    assert result.stdout.split() == []


def test_aborted_attempts_are_forgotten_once_the_worker_has_passed_them() -> None:
    # A counter aborts reads all day (a card lifted mid-read, an office cancel, a timeout); the worker must still
    # skip every aborted job, including a backlog of them, but the marks must not pile up one per abort.
    marks = AbortMarks()  # what the loop marks on AbortRead and the worker skips by
    for attempt in range(1, 2001, 2):
        marks.mark(attempt)  # the loop: attempt aborted; the next one starts at once
        assert marks.skip(attempt)  # the worker reaches the aborted job: skipped
        assert not marks.skip(attempt + 1)  # and the next one runs
    assert len(marks) == 0
    for attempt in (3001, 3002, 3003):  # the worker fell behind: three aborted jobs queued, then a live one
        marks.mark(attempt)
    assert [marks.skip(attempt) for attempt in (3001, 3002, 3003, 3004)] == [True, True, True, False]
    assert len(marks) == 0


def test_switching_patterns_leaves_no_threads_behind() -> None:
    # Every read switches the LEDs a few times and each blink or beep runs in a gpiozero thread: a thread (or
    # gpiozero's registry entry for it) left behind per switch would grow with every read.
    factory = MockFactory(pin_class=MockPWMPin)
    indicators = Indicators(IndicatorConfig(buzzer=5), pin_factory=factory, time_scale=0.01)
    try:
        before = threading.active_count()
        for _ in range(300):
            for name in ("scanning", "success", "ready"):
                indicators.show(name)
        assert len(gpiozero.threads._THREADS) <= 4  # at most one per device (three LEDs and the buzzer)
        assert threading.active_count() <= before + 4
    finally:
        indicators.close()
        factory.reset()
        factory.close()
