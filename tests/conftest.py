"""Shared fixtures. Stack fixtures (a private pcscd with vpcd, a private mosquitto) live in tests/fixtures/."""

from __future__ import annotations

import os
import signal

from hypothesis import HealthCheck, settings

# A run started in the background of a non-interactive shell (a CI job, `make test &`) inherits SIGINT ignored, and
# every process it starts would inherit that too: the Ctrl-C tests of `cccd-edge sim card` and the demo would then
# test a hang. Handled again here, SIGINT reaches those processes as Ctrl-C does (exec resets a handled signal).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

pytest_plugins = ["tests.fixtures.pcsc", "tests.fixtures.mqtt", "tests.fixtures.storage", "tests.fixtures.clockshift",
                  "tests.fixtures.postgres", "tests.fixtures.ward"]

# CI replays the same examples every run (a red CI must be reproducible); developers' runs explore new ones.
settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
