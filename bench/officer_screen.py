"""The officer's screen: from a result's arrival at the office to its appearance in the browser, and the page's weight.

Runs ``cccd-edge demo --serve`` (the whole chain: private pcscd and virtual cards, mutual-TLS mosquitto, the
terminal daemon in its own process, the gateway with its pages), logs in as the demo officer in Debian's headless
chromium (1366x768) and taps virtual cards (genuine, forged, self-made in turn) from the page's demo panel, one
after another, ``--taps`` times. For each result it takes:

* arrival: ``received``, the gateway's clock when it took the result from the broker (before verifying and storing:
  the store's own time is part of the figure);
* appearance: the browser's clock at the first animation frame after the banner changed to that result (a
  MutationObserver on the banner, then requestAnimationFrame: the frame that shows it).

Both clocks are this machine's. Goal: p95 <= 500 ms. Then the counter page's weight as the browser fetched it
(Chrome's performance log, every response's encoded bytes) and any request outside the office: goal <= 300 KB, none.

    .venv/bin/python bench/officer_screen.py [--taps 220]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edge.sim.browser import headless_chromium, network_summary

CLI = Path(sys.executable).with_name("cccd-edge")
CARDS = ("genuine", "forged", "unproven")
GOAL_P95_MS, GOAL_WEIGHT_KB = 500, 300

OBSERVE = """
window.__shown = [];
const banner = document.getElementById('banner');
new MutationObserver(() => {
  const result = banner.dataset.result, received = Number(banner.dataset.received);
  requestAnimationFrame(() => window.__shown.push([result, received, Date.now() / 1000]));
}).observe(banner, {attributes: true, attributeFilter: ['data-result']});
"""


def _start_demo() -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen([str(CLI), "demo", "--serve", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    while not any(line.startswith("Tap a virtual card") for line in lines):
        line = process.stdout.readline()
        if not line:
            raise SystemExit("the demo ended before serving:\n" + "".join(lines))
        lines.append(line)
    text = "".join(lines)
    url = re.search(r"Open the counter page: (\S+)", text)
    password = re.search(r"log in as canbo / (\S+)", text)
    if url is None or password is None:
        raise SystemExit(f"unexpected demo output:\n{text}")
    return process, url.group(1), password.group(1)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=220)
    args = parser.parse_args()
    process, url, password = _start_demo()
    try:
        with headless_chromium() as browser:
            from selenium.webdriver.common.by import By

            browser.get(url + "login")
            network_summary(browser, url)  # forget the login page's own fetches
            browser.find_element(By.ID, "username").send_keys("canbo")
            browser.find_element(By.ID, "password").send_keys(password)
            browser.find_element(By.ID, "login-button").click()
            deadline = time.monotonic() + 30
            while not browser.execute_script("return document.getElementById('banner').dataset.result"):
                if time.monotonic() > deadline:
                    raise SystemExit("the counter page never showed the demo's first result")
                time.sleep(0.05)
            time.sleep(1.0)  # the page settles (its stream open, its scripts loaded)
            weight = network_summary(browser, url)
            browser.execute_script(OBSERVE)
            latencies: list[float] = []
            slowest_tap = 0.0
            for tap in range(args.taps):
                seen = browser.execute_script("return window.__shown.length")
                started = time.monotonic()
                browser.execute_script("Office.post('/demo/tap', {card: arguments[0]})", CARDS[tap % len(CARDS)])
                while browser.execute_script("return window.__shown.length") == seen:
                    if time.monotonic() - started > 60:
                        raise SystemExit(f"tap {tap + 1}: no result on the page within 60 s")
                    time.sleep(0.02)
                slowest_tap = max(slowest_tap, time.monotonic() - started)
            shown = browser.execute_script("return window.__shown")
            latencies = [(appeared - received) * 1000 for _, received, appeared in shown]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    print(f"officer's screen: {len(latencies)} taps (genuine, forged, self-made in turn) through the whole chain")
    print(f"  arrival at the office -> appearance in the browser: p50 {statistics.median(latencies):.0f} ms, "
          f"p95 {_percentile(latencies, 0.95):.0f} ms, max {max(latencies):.0f} ms "
          f"(goal p95 <= {GOAL_P95_MS} ms)")
    print(f"  tap -> result on the page, slowest: {slowest_tap * 1000:.0f} ms (card read and verified included)")
    print(f"  counter page: {weight.requests} requests, {weight.bytes / 1024:.1f} KB "
          f"(goal <= {GOAL_WEIGHT_KB} KB), requests outside the office: {len(weight.foreign)}")
    ok = (_percentile(latencies, 0.95) <= GOAL_P95_MS and weight.bytes <= GOAL_WEIGHT_KB * 1024
          and not weight.foreign)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
