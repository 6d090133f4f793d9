"""Shared fixtures. Stack fixtures (a private pcscd with vpcd, a private mosquitto) live in tests/fixtures/."""

from __future__ import annotations

pytest_plugins = ["tests.fixtures.pcsc", "tests.fixtures.mqtt"]
