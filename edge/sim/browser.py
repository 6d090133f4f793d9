"""A headless Chromium for the officers' pages' tests and bench: Debian's chromium driven through its chromedriver.

Selenium is told where the driver is (``/usr/bin/chromedriver``) and Selenium Manager is kept offline, so nothing
is ever downloaded: a missing browser is an :class:`~edge.errors.ConfigError` naming the apt packages. Chromium runs
with what a closed network needs (no background networking, no component updates, no sync: otherwise it tries
Google's hosts at every start) and with Chrome's performance log on, from which :func:`network_summary` reads what
a page fetched (bytes, and any request that left the page's origin).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.errors import ConfigError

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1366, 768)  # the office PC the pages are made for


def browser_available() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


@contextlib.contextmanager
def headless_chromium(*, window: tuple[int, int] = WINDOW, lang: str = "vi-VN") -> Iterator[Any]:
    """A started ``selenium.webdriver.Chrome`` (headless, a ``window``-sized viewport, performance log on); quit,
    and its profile directory removed, when the block ends."""
    if not browser_available():
        raise ConfigError(f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)",
                          key="browser")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cccd-chromium-")
    try:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--no-default-browser-check",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-extensions", "--disable-features=Translate,MediaRouter,OptimizationHints",
                         "--hide-scrollbars", "--force-device-scale-factor=1", f"--lang={lang}",
                         f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile}"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        try:
            inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
            # --window-size is the outer size: make the page itself (the viewport) the office PC's size.
            driver.set_window_size(2 * window[0] - inner[0], 2 * window[1] - inner[1])
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class NetworkSummary:
    requests: int
    bytes: int  # encoded (on the wire) bytes of every response
    foreign: tuple[str, ...]  # URLs outside the page's origin (must stay empty: no CDN)


def network_summary(driver: Any, origin: str) -> NetworkSummary:
    """What the browser fetched since the performance log was last read (the log is read and emptied)."""
    base = urlsplit(origin)
    pages: set[str] = set()  # request ids of what the page asked for (not the browser's own chrome:// pages)
    requests, total, foreign = 0, 0, []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about", "chrome", "chrome-extension", "devtools"):
                continue
            pages.add(params.get("requestId", ""))
            requests += 1
            if (parts.scheme, parts.hostname, parts.port) != (base.scheme, base.hostname, base.port):
                foreign.append(url)
        elif method == "Network.loadingFinished" and params.get("requestId") in pages:
            total += int(params.get("encodedDataLength", 0))
    return NetworkSummary(requests, total, tuple(foreign))
