"""Where the shared reference data lives (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
VN_CSCA_PEM = SHARED / "trust" / "VN_CSCA_ePassport_2022.pem"
