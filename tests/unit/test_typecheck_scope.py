"""``make test`` type-checks everything shipped: each package the wheel installs is on the Makefile's mypy line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_mypy_covers_every_shipped_package() -> None:
    found = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    shipped = {pattern.rstrip("*").rstrip(".") for pattern in found["find"]["include"]}
    mypy_lines = [line.split() for line in (REPO / "Makefile").read_text(encoding="utf-8").splitlines()
                  if re.search(r"/mypy\b", line)]  # fmt: skip
    assert mypy_lines, "the Makefile runs no mypy"
    checked = {word for words in mypy_lines for word in words[1:] if not word.startswith("-")}
    assert shipped <= checked, f"shipped but not type-checked: {sorted(shipped - checked)}"
