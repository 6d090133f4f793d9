"""Shared fixtures. Stack fixtures (a private pcscd with vpcd, a private mosquitto) live in tests/fixtures/."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.fixtures.pcsc", "tests.fixtures.mqtt", "tests.fixtures.storage", "tests.fixtures.clockshift",
                  "tests.fixtures.postgres"]

# CI replays the same examples every run (a red CI must be reproducible); developers' runs explore new ones.
settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
