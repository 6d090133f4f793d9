"""`cccd-edge demo` as a user runs it: a subprocess that starts its own pcscd and mutual-TLS mosquitto, provisions
keys, runs the daemon on a virtual card and the office gateway (stored, then a receipt the terminal believes, then
the stored result served by the REST API), then leaves nothing behind.

"Nothing behind" is checked from outside: after the demo exits, no process mentions its temporary directory in its
command line (its pcscd and mosquitto are started with config files in there) and the directory is gone. Nothing is
timed; the timings the demo prints are only checked for order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge.sim.broker import MOSQUITTO
from edge.sim.stack import VPCD_DRIVER

pytestmark = [pytest.mark.stack, pytest.mark.slow]

CLI = Path(sys.executable).with_name("cccd-edge")
WORKDIR_PREFIX = "cccd-edge-demo-"
#: What the default profile's citizen is called and numbered: must never appear in clear.
PERSONAL = ("079203012345", "Nguyễn Văn An", "Bến Nghé", "123456789")


@pytest.fixture(scope="module", autouse=True)
def _stack_installed() -> None:
    if shutil.which("pcscd") is None or not VPCD_DRIVER.exists():
        pytest.skip("pcscd / vsmartcard-vpcd not installed")
    if not os.path.exists(MOSQUITTO):
        pytest.skip("mosquitto is not installed")
    if not CLI.exists():
        pytest.skip(f"{CLI} not installed (pip install -e .)")


def _cmdlines() -> dict[int, str]:
    """Command line of every process we can see."""
    lines = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return lines


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _left_behind(workdir: str) -> list[str]:
    return [line for line in _cmdlines().values() if workdir in line]


def _demo(*options: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([str(CLI), "demo", "--json", *options], capture_output=True, text=True, timeout=180,
                          check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary; stderr:\n{proc.stderr}"
    return proc.returncode, json.loads(lines[-1]), proc.stdout + proc.stderr


def _assert_cleaned_up(summary: dict[str, Any]) -> None:
    workdir = summary["workdir"]
    assert Path(workdir).name.startswith(WORKDIR_PREFIX)
    assert not Path(workdir).exists()
    assert _left_behind(workdir) == []


def test_default_card_is_verified_end_to_end_and_nothing_is_left_running() -> None:
    code, summary, output = _demo()
    assert code == 0, output
    assert summary["ok"] is True
    assert summary["verdict"] == "verified"
    assert summary["indicator"] == "success"
    assert summary["delivery"]["status"] == "stored"
    assert summary["delivery"]["receipt"] is True  # terminal -> broker -> gateway -> stored -> receipt
    assert summary["api"]["answer"].startswith("GET /v1/results/DEMO-01/")
    assert summary["api"]["answer"].endswith("-> 200")
    assert summary["api"]["url"].startswith("http://127.0.0.1:")
    assert "mutual TLS" in summary["delivery"]["broker"]
    assert "ward ACL" in summary["delivery"]["broker"]  # the terminal and office under provisioning's broker ACL
    statuses = {check["name"]: check["status"] for check in summary["checks"]}
    for name in ("sod_signature", "ds_chain", "dg_hashes", "chip_authentication", "active_authentication",
                 "qr_vs_dg13", "mrz_vs_dg13"):
        assert statuses[name] == "passed", summary["checks"]
    assert "failed" not in statuses.values()
    assert summary["read"]["qr_used"] is True  # the CAN came from the replayed QR image
    assert summary["terminal"] == {"id": "DEMO-01", "ward": "26734", "profile": "residence"}
    steps = summary["timings_ms"]
    assert None not in steps.values()
    assert steps["qr_seen"] <= steps["card_read"] <= steps["verified"] <= steps["stored"] <= steps["receipt"]
    assert summary["citizen"]["full_name"] == "N. V. A."
    assert summary["citizen"]["id_number"] == "079*******45"
    assert (summary["card"]["generation"], summary["card"]["vi"]) == ("2021", "CCCD (2021)")
    for secret in PERSONAL:
        assert secret not in output
    _assert_cleaned_up(summary)


def test_a_2024_card_runs_end_to_end_named_as_the_new_card() -> None:
    """The thẻ căn cước: its QR (on the back, with a cancelled ID) gives the CAN, the chip verifies, the QR agrees with
    DG13 on the fields both carry (the cancelled ID among them) and the officer sees which card it is."""
    code, summary, output = _demo("--profile", "card2024")
    assert code == 0, output
    assert (summary["ok"], summary["verdict"], summary["indicator"]) == (True, "verified", "success")
    assert summary["read"]["qr_used"] is True
    assert (summary["card"]["generation"], summary["card"]["vi"]) == ("2024", "Thẻ căn cước (2024)")
    qr_check = next(check for check in summary["checks"] if check["name"] == "qr_vs_dg13")
    assert qr_check["status"] == "passed"
    assert "cancelled ID number" in qr_check["reason"]
    for secret in ("048190006789", "048090006789", "Phan Thị Mỹ Duyên", "Thạch Thang", "201234567"):
        assert secret not in output
    _assert_cleaned_up(summary)


def test_forged_dg13_fails_with_the_failing_check_named() -> None:
    code, summary, output = _demo("--profile", "forged-dg13")
    assert code != 0
    assert summary["ok"] is False
    assert summary["verdict"] == "failed"
    assert summary["delivery"]["status"] == "stored"  # a failed verdict is still delivered: the office must know
    assert summary["delivery"]["receipt"] is True
    failed = {check["name"] for check in summary["checks"] if check["status"] == "failed"}
    assert "dg_hashes" in failed
    assert "dg_hashes" in output.split("demo: not verified", 1)[1]  # the plain-text message names it too
    _assert_cleaned_up(summary)


def test_an_untrusted_issuer_shows_the_unproven_pattern_and_says_what_is_not_proven() -> None:
    """Data intact, issuer not proven: stored for the office, but never success on the LEDs nor exit 0."""
    code, summary, output = _demo("--profile", "untrusted-issuer")
    assert code != 0
    assert (summary["ok"], summary["verdict"], summary["indicator"]) == (False, "intact_origin_unproven", "unproven")
    assert summary["delivery"]["status"] == "stored"
    assert "result_unproven" in summary["terminal_states"]
    assert "result_ok" not in summary["terminal_states"]
    assert summary["verdict_words"]["en"] == "Data intact, issuer not proven"
    assert "indicator unproven" in output.split("demo: not verified", 1)[1]
    _assert_cleaned_up(summary)


def test_keep_leaves_the_directory_but_no_process() -> None:
    code, summary, _ = _demo("--keep")
    workdir = Path(summary["workdir"])
    try:
        assert code == 0
        assert (workdir / "device" / "etc" / "config.toml").is_file()
        assert (workdir / "office" / "results.db").stat().st_mode & 0o077 == 0
        assert _left_behind(str(workdir)) == []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


#: When to press Ctrl-C: once the broker runs (environment half built), once the daemon has opened its outbox.
INTERRUPT_POINTS = {"broker_started": "broker/mosquitto.conf", "daemon_started": "device/state/outbox.db"}


@pytest.mark.parametrize(("point", "signum"), [("broker_started", signal.SIGINT), ("daemon_started", signal.SIGINT),
                                               ("daemon_started", signal.SIGTERM)])
def test_ctrl_c_mid_run_stops_broker_and_pcscd_and_removes_the_directory(point: str, signum: int) -> None:
    proc = subprocess.Popen([str(CLI), "demo", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workdir: str | None = None
    interrupted = False
    try:
        while proc.poll() is None and not interrupted:
            if workdir is None:
                for pid, line in _cmdlines().items():
                    if "mosquitto" in line and WORKDIR_PREFIX in line and _parent(pid) == proc.pid:
                        workdir = line.split("-c ", 1)[1].split("/broker/", 1)[0]
            if workdir is not None and (Path(workdir) / INTERRUPT_POINTS[point]).exists():
                os.kill(proc.pid, signum)
                interrupted = True
            time.sleep(0.002)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not interrupted or workdir is None:
        pytest.skip(f"the demo finished before {point} could be seen; nothing to interrupt")
    assert proc.returncode == 130, stderr  # SIGTERM unwinds like Ctrl-C: `cccd-edge` returns 130 for both
    assert "demo: interrupted" in stderr
    assert not Path(workdir).exists()
    assert _left_behind(workdir) == []
