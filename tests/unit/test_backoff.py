"""Retry pacing in fake time: capped, jittered backoff, and the reconnect wait a probe cuts short."""

from __future__ import annotations

import inspect
import random
import threading
from collections import Counter

import paho.mqtt.client as mqtt

from edge.config import parse_config
from edge.daemon.backoff import PROBE_SPREAD, Backoff, ReconnectWait, RetryClock
from edge.daemon.mqtt import MqttSettings


class FakeClock(RetryClock):
    """Time that passes only when someone waits."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waited: list[float] = []

    def now(self) -> float:
        return self.t

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waited.append(seconds)
        self.t += seconds
        return event.is_set()


def test_backoff_doubles_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == 10  # jittered: no two equal
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_a_fleet_that_failed_together_retries_spread_out() -> None:
    """200 terminals whose broker went away at once, each after its 6th failure: no thundering herd."""
    delays = []
    for seed in range(200):
        backoff = Backoff(1.0, 8.0, rng=random.Random(seed))
        for _ in range(5):
            backoff.next_delay()
        delays.append(backoff.next_delay())
    assert min(delays) >= 4.0
    assert max(delays) <= 8.0
    per_half_second = Counter(int(d * 2) for d in delays)
    assert max(per_half_second.values()) <= 200 * 0.2  # about 1/8 each; never most of the fleet in one slot


def test_the_default_settings_reconnect_within_ten_seconds_of_the_broker() -> None:
    config = parse_config({"terminal_id": "T-01", "ward_code": "26734"})
    settings = MqttSettings.from_config(config)
    assert settings.reconnect_max_delay <= 8.0  # the longest wait after any outage, before the probe even helps
    assert config.mqtt.reconnect_max_delay == settings.reconnect_max_delay


def _waiter(clock: FakeClock, reachable: list[bool], seed: int = 0, failures: int = 20) -> ReconnectWait:
    backoff = Backoff(1.0, 8.0, rng=random.Random(seed))
    backoff.failures = failures  # a long outage: the backoff is at its cap

    def probe() -> bool:
        return reachable.pop(0) if len(reachable) > 1 else reachable[0]

    return ReconnectWait(backoff, probe, threading.Event(), clock=clock, rng=random.Random(seed))


def test_the_probe_ends_a_long_wait_soon_after_the_broker_is_back() -> None:
    clock = FakeClock()
    wait = _waiter(clock, [False, False, True])  # unreachable at the start and at the first probe, then back
    wait()
    assert wait.cut_short == 1
    assert clock.t < 2 * 1.5 + PROBE_SPREAD  # two probe steps and the spread, not the 4-8 s of the backoff


def test_a_broker_reachable_at_the_start_of_the_wait_is_not_hammered() -> None:
    """The attempt failed beyond TCP (TLS refused, broker still starting): the whole backoff is waited."""
    clock = FakeClock()
    wait = _waiter(clock, [True])
    wait()
    assert wait.cut_short == 0
    assert 4.0 <= clock.t <= 8.0


def test_after_the_probe_a_fleet_connects_spread_over_seconds() -> None:
    ends = []
    for seed in range(200):
        clock = FakeClock()
        _waiter(clock, [False, True], seed=seed)()
        ends.append(clock.t - clock.waited[0])  # from the probe that saw the broker back
    assert max(ends) <= PROBE_SPREAD
    assert max(Counter(int(end * 4) for end in ends).values()) <= 200 * 0.25  # 8 quarter-second slots


def test_a_stop_ends_the_wait_at_once() -> None:
    clock = FakeClock()
    stop = threading.Event()
    stop.set()
    ReconnectWait(Backoff(1.0, 8.0), lambda: False, stop, clock=clock)()
    assert len(clock.waited) == 1


def test_the_paho_in_use_still_waits_through_the_method_we_replace() -> None:
    """The publisher paces reconnects by overriding paho's ``_reconnect_wait``: a paho that stopped calling it would
    silently fall back to its own 1-2-4... doubling without jitter or probe."""
    assert "self._reconnect_wait()" in inspect.getsource(mqtt.Client.loop_forever)
