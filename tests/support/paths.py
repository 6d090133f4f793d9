"""Where the shared reference data lives (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: ``../shared`` beside the checkout; CCCD_EDGE_SHARED points elsewhere (a CI clone in another directory).
SHARED = Path(os.environ.get("CCCD_EDGE_SHARED") or REPO.parent / "shared")
VN_CSCA_PEM = SHARED / "trust" / "VN_CSCA_ePassport_2022.pem"
