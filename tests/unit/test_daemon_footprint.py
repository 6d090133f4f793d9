"""What ``cccd-edge run`` carries in memory: modules it need not import, containers that must not grow per read.

Resident memory itself is measured by ``bench/daemon.py`` (at READY) and ``bench/soak.py`` (over 10,000 reads);
these tests count the causes instead, deterministically.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
