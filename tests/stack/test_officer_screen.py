"""The officer's screen in a real browser (Debian's chromium, headless, through chromedriver) against the whole chain
as a newcomer starts it: ``cccd-edge demo --serve`` (private pcscd + virtual cards, mutual-TLS mosquitto with the
ward's ACL, the terminal daemon in its own process, the office gateway with its pages).

One demo and one browser for the module; the tests run in order, as an officer's morning would: log in, a citizen
taps a card, the officer reveals the data (the auditor finds the entry), reads a card from the desk, a forged card
fails, a terminal's daemon dies and the fleet page shows it offline. The screenshots of the README are taken here
(docs/screenshots/). Nothing is timed: each step waits (bounded) for what the page shows.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge import __version__
from edge.sim.broker import MOSQUITTO
from edge.sim.browser import browser_available, headless_chromium, network_summary
from edge.sim.stack import VPCD_DRIVER

pytestmark = [pytest.mark.stack, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
CLI = Path(sys.executable).with_name("cccd-edge")
TERMINAL = "DEMO-01"
#: The demo citizen in clear: only a reveal may put it on the screen, and never in a URL, a log or storage.
NAME, ID_NUMBER = "Nguyễn Văn An", "079203012345"
WAIT = 45.0


@dataclass
class Demo:
    process: subprocess.Popen[str]
    url: str
    accounts: dict[str, str]
    daemon_pid: int
    output: list[str]


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    if shutil.which("pcscd") is None or not VPCD_DRIVER.exists() or not os.path.exists(MOSQUITTO):
        pytest.skip("pcscd, vsmartcard-vpcd or mosquitto not installed")
    if not browser_available():
        pytest.skip("chromium / chromium-driver not installed (scripts/bootstrap.sh installs them)")
    process = subprocess.Popen([str(CLI), "demo", "--serve", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while not any(line.startswith("Tap a virtual card") for line in lines):
        line = process.stdout.readline()
        if not line:
            pytest.fail("the demo ended before serving:\n" + "".join(lines))
        lines.append(line)
        assert time.monotonic() < deadline, "the demo did not start serving:\n" + "".join(lines)
    text = "".join(lines)
    url = re.search(r"Open the counter page: (\S+)", text)
    pid = re.search(r"terminal daemon pid (\d+)", text)
    assert url is not None, text
    assert pid is not None, text
    accounts = dict(re.findall(r"log in as (\S+) / (\S+)", text))
    try:
        yield Demo(process, url.group(1), accounts, int(pid.group(1)), lines)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            rest, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
        lines.append(rest)


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Any]:
    with headless_chromium() as driver:
        yield driver


def _wait(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = WAIT) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # A form post (language, reveal) replaces the page while the condition polls it: an element found on the old
    # page is stale, or not there yet on the new one; both mean "not yet", not a failure.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=ignored).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}") from None


def _by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def _log_in(driver: Any, demo: Demo, username: str) -> None:
    driver.get(demo.url + "login")
    _by_id(driver, "username").send_keys(username)
    _by_id(driver, "password").send_keys(demo.accounts[username])
    _by_id(driver, "login-button").click()
    _wait(driver, lambda d: "/login" not in d.current_url, "the login to go through")


def _banner(driver: Any) -> tuple[str, str, str]:
    banner = _by_id(driver, "banner")
    return banner.get_attribute("data-result") or "", banner.get_attribute("data-verdict") or "", banner.text


def _tap(driver: Any, card: str) -> str:
    """Tap ``card`` from the demo panel; returns the result shown before it."""
    before = _banner(driver)[0]
    _by_id(driver, f"tap-{card}").click()
    return before


def _new_result(driver: Any, before: str) -> tuple[str, str, str]:
    _wait(driver, lambda d: _banner(d)[0] not in ("", before), "a new result on the counter page")
    return _banner(driver)


def _no_personal_data_outside_the_page(driver: Any) -> None:
    assert NAME not in driver.current_url
    assert ID_NUMBER not in driver.current_url
    stored = driver.execute_script("return [window.localStorage.length, window.sessionStorage.length, "
                                   "document.cookie]")
    assert stored[:2] == [0, 0]
    assert NAME not in stored[2]
    assert ID_NUMBER not in stored[2]


def test_log_in_and_a_tapped_card_appears_by_itself(demo: Demo, browser: Any) -> None:
    _log_in(browser, demo, "canbo")
    assert browser.current_url.endswith(f"/counter/{TERMINAL}")  # an officer with one counter lands on it
    _wait(browser, lambda d: _banner(d)[0] != "", "the first card's result (tapped by the demo at start)")
    network = network_summary(browser, demo.url)
    assert network.foreign == ()  # every asset from the office itself: no CDN, nothing outside
    before = _tap(browser, "genuine")
    _result, verdict, text = _new_result(browser, before)
    assert verdict == "verified"
    assert "Thẻ thật, đã xác minh nguồn phát hành" in text
    assert "ok" in _by_id(browser, "banner").get_attribute("class").split()
    assert NAME not in browser.page_source
    assert ID_NUMBER not in browser.page_source
    assert "079*******45" in _by_id(browser, "fields").text
    _no_personal_data_outside_the_page(browser)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "counter-verified.png"))
    _by_id(browser, "lang-toggle").click()  # English, then back: the same result in the other words
    _wait(browser, lambda d: "Genuine card: issuer proven" in _banner(d)[2], "the banner in English")
    _by_id(browser, "lang-toggle").click()
    _wait(browser, lambda d: "Thẻ thật" in _banner(d)[2], "the banner in Vietnamese again")


def test_reveal_shows_the_data_with_todays_units_and_the_auditor_finds_the_entry(demo: Demo, browser: Any) -> None:
    result = _banner(browser)[0]
    _by_id(browser, "reveal-reason").send_keys("Đăng ký thường trú")
    _by_id(browser, "reveal").click()
    _wait(browser, lambda d: NAME in _by_id(d, "fields").text, "the revealed name")
    fields = _by_id(browser, "fields").text
    assert ID_NUMBER in fields
    assert "Đơn vị hành chính hiện nay" in fields or "Đã chia tách" in fields  # the residence's today's units
    _no_personal_data_outside_the_page(browser)
    browser.save_screenshot(str(SCREENSHOTS / "counter-revealed.png"))
    _by_id(browser, "hide").click()
    _wait(browser, lambda d: NAME not in _by_id(d, "fields").text, "the data masked again")

    _by_id(browser, "logout").click()
    _log_in(browser, demo, "kiemtra")
    assert browser.current_url.endswith("/audit")  # an auditor sees the log, no counter
    rows = _by_id(browser, "audit").text
    assert "canbo" in rows
    assert result in rows
    assert "Đăng ký thường trú" in rows
    assert NAME not in browser.page_source
    assert ID_NUMBER not in browser.page_source
    browser.get(demo.url + f"counter/{TERMINAL}")
    assert NAME not in browser.page_source  # the auditor cannot open a counter
    _log_in(browser, demo, "canbo")  # a new login replaces the auditor's session


def test_read_card_from_the_desk_shows_the_progress_and_a_result_that_proves_this_read(demo: Demo,
                                                                                       browser: Any) -> None:
    before = _banner(browser)[0]
    _by_id(browser, "can").send_keys("012345")
    _by_id(browser, "read-card").click()
    _wait(browser, lambda d: len(_by_id(d, "progress").find_elements("tag name", "li")) >= 2,
          "the terminal's progress (sent, then accepted or waiting)")
    _tap(browser, "genuine")  # the citizen places the card
    _, verdict, _ = _new_result(browser, before)
    assert verdict == "verified"
    _wait(browser, lambda d: "Đã đọc xong" in _by_id(d, "progress").text, "the request closed by its result")
    progress = _by_id(browser, "progress").text
    assert "Đã gửi yêu cầu đọc tới thiết bị" in progress
    note = _by_id(browser, "request-note")
    assert note.is_displayed()
    assert "Kết quả trả lời yêu cầu từ bàn" in note.text
    assert "KHÔNG" not in note.text  # the chip answered the office's own challenge (or has no AA): never a mismatch


def test_a_forged_card_shows_the_failure_banner_naming_the_check(demo: Demo, browser: Any) -> None:
    before = _banner(browser)[0]
    browser.find_element("tag name", "body").send_keys("2")  # the demo's keyboard: 2 is the forged card
    _, verdict, text = _new_result(browser, before)
    assert verdict == "failed"
    assert text.startswith("✖") or "failed" in _by_id(browser, "banner").get_attribute("class")
    assert "Không đạt: Nguồn phát hành (chuỗi tin cậy CSCA)" in text  # rogue-ds: its chain fails, named
    assert _by_id(browser, "checks-box").get_attribute("open") is not None  # the checks open by themselves
    browser.save_screenshot(str(SCREENSHOTS / "counter-failed.png"))
    before = _tap(browser, "unproven")
    _, verdict, text = _new_result(browser, before)
    assert verdict == "intact_origin_unproven"
    assert "Dữ liệu nguyên vẹn, chưa xác minh được nguồn phát hành" in text
    assert "unproven" in _by_id(browser, "banner").get_attribute("class").split()


def test_a_killed_daemon_goes_offline_on_the_fleet_page(demo: Demo, browser: Any) -> None:
    browser.get(demo.url + "fleet")
    row = f'tr[data-terminal="{TERMINAL}"]'

    def showing_version(state: str) -> Callable[[Any], bool]:
        """The row in ``state`` with the terminal's software version (what ``cccd-edge --version`` says) last."""
        cells = f'{row}[data-state="{state}"] td:last-child'
        return lambda d: any(cell.text == __version__ for cell in d.find_elements("css selector", cells))

    _wait(browser, showing_version("online"), "the terminal online, its software version shown")
    lights = browser.find_element("css selector", f'{row}[data-state="online"] td.indicator')
    assert lights.get_attribute("data-indicator")  # the terminal's lights, in words (its state in the tooltip)
    assert lights.text not in ("", "—", lights.get_attribute("data-indicator"))
    os.kill(demo.daemon_pid, signal.SIGKILL)  # no goodbye: the broker publishes its last will
    _wait(browser, showing_version("offline"),  # the will names the software too
          "the killed terminal offline on the fleet page, its version still shown")
    first = browser.find_element("css selector", "#fleet-rows tr")
    assert first.get_attribute("data-terminal") == TERMINAL
    assert "problem" in first.get_attribute("class")
    assert "Mất kết nối" in first.text
    browser.save_screenshot(str(SCREENSHOTS / "fleet-offline.png"))
    # The demo restarts its daemon (as systemd would): the same row comes back online.
    _wait(browser, lambda d: d.find_elements("css selector", f'{row}[data-state="online"]'), "the terminal back")
    browser.save_screenshot(str(SCREENSHOTS / "fleet.png"))


def test_the_demo_printed_nothing_personal(demo: Demo) -> None:
    text = "".join(demo.output)
    assert NAME not in text
    assert ID_NUMBER not in text
