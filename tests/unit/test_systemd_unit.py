"""The systemd unit: its exposure score, its syntax, and that the daemon's libraries run inside its sandbox.

Needs Debian's ``systemd`` package for systemd-analyze / systemd-sysusers / systemd-tmpfiles (it works without
systemd running); each test skips with the reason when a tool is absent. The sandbox test rebuilds the unit's
seccomp rules (SystemCallFilter=, MemoryDenyWriteExecute=, RestrictAddressFamilies=) with libseccomp, execs Python
under them and does real work with every native library the daemon loads.

Run as a script (``python tests/unit/test_systemd_unit.py sandbox FILTER.json``) it is that sandboxed probe.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import mmap
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "cccd-edge.service"
SYSUSERS = REPO / "systemd" / "cccd-edge.sysusers.conf"
TMPFILES = REPO / "systemd" / "cccd-edge.tmpfiles.conf"
MAX_EXPOSURE = 2.0


def unit_settings(path: Path = UNIT) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; systemd allows repeated keys, which configparser does not."""
    section, items = "", []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        else:
            key, _, value = line.partition("=")
            items.append((section, key.strip(), value.strip()))
    return items


def setting(key: str) -> list[str]:
    return [value for _, k, value in unit_settings() if k == key]


# --- tests (pytest is imported lazily so that the sandboxed probe does not need it) -------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - only in the probe's subprocess when pytest is missing
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def _tool(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            pytest.skip(f"{name} not installed (apt-get install systemd; it works without booting systemd)")
        return path

    def test_exposure_score_is_at_most_two() -> None:
        analyze = _tool("systemd-analyze")
        run = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
                             capture_output=True, text=True, check=False)
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", run.stdout)
        assert match, run.stdout + run.stderr
        assert float(match.group(1)) <= MAX_EXPOSURE, run.stdout

    def test_unit_verifies_apart_from_the_binary_not_installed_here() -> None:
        analyze = _tool("systemd-analyze")
        run = subprocess.run([analyze, "verify", "--man=no", str(UNIT)], capture_output=True, text=True,
                             check=False)
        complaints = [line for line in (run.stdout + run.stderr).splitlines()
                      if line.strip() and "/opt/cccd-edge/bin/cccd-edge is not executable" not in line]
        assert not complaints, complaints

    def test_unit_contract() -> None:
        assert setting("Type") == ["notify"]
        assert setting("WatchdogSec") == ["30"]
        assert setting("Restart") == ["on-failure"]
        assert setting("User") == ["cccd-edge"]
        assert setting("CapabilityBoundingSet") == [""]
        assert setting("ExecStart") == ["/opt/cccd-edge/bin/cccd-edge run --config /etc/cccd-edge/config.toml"]
        assert "pcscd.socket" in " ".join(setting("After"))
        assert "pcscd.socket" in " ".join(setting("Wants"))
        # lgpio writes into the working directory: it must be the (writable) state directory.
        assert setting("WorkingDirectory") == ["/var/lib/" + setting("StateDirectory")[0]]
        # gpiozero reads the Pi revision from /proc/device-tree or /proc/cpuinfo: ProcSubset=pid would hide both.
        assert setting("ProcSubset") == []

    def test_sysusers_and_tmpfiles_create_user_and_private_dirs(tmp_path: Path) -> None:
        sysusers, tmpfiles = _tool("systemd-sysusers"), _tool("systemd-tmpfiles")
        (tmp_path / "etc").mkdir()
        with SYSUSERS.open("rb") as conf:
            subprocess.run([sysusers, f"--root={tmp_path}", "-"], stdin=conf, check=True, capture_output=True)
        users = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}
        groups = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/group").read_text().splitlines()}
        assert users["cccd-edge"][6] == "/usr/sbin/nologin"
        assert "cccd-edge" in groups["gpio"][3].split(",")
        assert "cccd-edge" in groups["video"][3].split(",")
        with TMPFILES.open("rb") as conf:
            subprocess.run([tmpfiles, f"--root={tmp_path}", "--create", "-"], stdin=conf, check=True,
                           capture_output=True)
        state, config = (tmp_path / "var/lib/cccd-edge").stat(), (tmp_path / "etc/cccd-edge").stat()
        assert stat.S_IMODE(state.st_mode) == 0o700
        assert state.st_uid == int(users["cccd-edge"][2])
        assert stat.S_IMODE(config.st_mode) == 0o750
        assert config.st_uid == 0
        assert config.st_gid == int(groups["cccd-edge"][2])

    def test_daemon_libraries_run_under_the_units_seccomp_rules(tmp_path: Path) -> None:
        analyze = _tool("systemd-analyze")
        if ctypes.util.find_library("seccomp") is None:
            pytest.skip("libseccomp2 not installed")
        allowed = _allowed_syscalls(analyze)
        families = setting("RestrictAddressFamilies")[0].split()
        assert setting("MemoryDenyWriteExecute") == ["yes"]
        spec = tmp_path / "filter.json"
        spec.write_text(json.dumps({"allow": sorted(allowed), "families": families, "workdir": str(tmp_path)}))
        run = subprocess.run([sys.executable, __file__, "sandbox", str(spec)], capture_output=True, text=True,
                             check=False, cwd=REPO, timeout=90)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "probe: all ok" in run.stdout, run.stdout

    def _syscall_groups(analyze: str) -> dict[str, list[str]]:
        out = subprocess.run([analyze, "syscall-filter", "--no-pager"], capture_output=True, text=True,
                             check=True).stdout
        groups: dict[str, list[str]] = {}
        current: list[str] = []
        for line in out.splitlines():
            if line.startswith("@"):
                current = groups.setdefault(line.strip(), [])
            elif line.startswith("    ") and not line.strip().startswith("#") and line.strip():
                current.append(line.strip())
        return groups

    def _allowed_syscalls(analyze: str) -> set[str]:
        groups = _syscall_groups(analyze)

        def expand(names: list[str]) -> set[str]:
            result: set[str] = set()
            for name in names:
                result |= expand(groups[name]) if name.startswith("@") else {name}
            return result

        allowed = expand(["@default"])  # systemd always permits these on top of an allow list
        for value in setting("SystemCallFilter"):
            if value.startswith("~"):
                allowed -= expand(value[1:].split())
            else:
                allowed |= expand(value.split())
        return allowed


# --- the sandboxed probe ------------------------------------------------------------------------------------------


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_ACT_ALLOW = 0x7FFF0000
_CMP_EQ, _CMP_MASKED_EQ = 4, 7
_SHM_EXEC = 0o100000


def _act_errno(code: int) -> int:
    return 0x00050000 | code


def _load_filters(spec: dict[str, object]) -> None:
    """The three seccomp filters systemd 252 installs for the unit (stacked filters: the strictest answer wins)."""
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp"), use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]

    def rule(ctx: int, action: int, name: str, cmp: _ArgCmp | None = None) -> None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return  # not a syscall of this architecture (the groups list every architecture's names)
        count, arg = (0, None) if cmp is None else (1, ctypes.byref(cmp))
        if lib.seccomp_rule_add_array(ctx, action, nr, count, arg) != 0:
            raise OSError(f"seccomp rule for {name}")

    # SystemCallFilter= with SystemCallErrorNumber=EPERM: an allow list, everything else fails with EPERM.
    allow_list = lib.seccomp_init(_act_errno(errno.EPERM))
    for name in spec["allow"]:  # type: ignore[attr-defined]
        rule(allow_list, _ACT_ALLOW, name)
    # MemoryDenyWriteExecute=yes
    mdwe = lib.seccomp_init(_ACT_ALLOW)
    wx = mmap.PROT_WRITE | mmap.PROT_EXEC
    rule(mdwe, _act_errno(errno.EPERM), "mmap", _ArgCmp(2, _CMP_MASKED_EQ, wx, wx))
    for name in ("mprotect", "pkey_mprotect"):
        rule(mdwe, _act_errno(errno.EPERM), name, _ArgCmp(2, _CMP_MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC))
    rule(mdwe, _act_errno(errno.EPERM), "shmat", _ArgCmp(2, _CMP_MASKED_EQ, _SHM_EXEC, _SHM_EXEC))
    # RestrictAddressFamilies=
    allowed_families = {int(getattr(socket, name)) for name in spec["families"]}  # type: ignore[attr-defined]
    families = lib.seccomp_init(_ACT_ALLOW)
    for family in range(64):
        if family not in allowed_families:
            rule(families, _act_errno(errno.EAFNOSUPPORT), "socket", _ArgCmp(0, _CMP_EQ, family, 0))
    # The allow list goes last: it does not permit seccomp() itself.
    for ctx in (mdwe, families, allow_list):
        if lib.seccomp_load(ctx) != 0:  # also sets no_new_privs, like NoNewPrivileges=yes
            raise OSError("seccomp_load failed")


def _work(workdir: Path) -> None:
    """What the daemon's native libraries do in service, each step printed so a failure names its library."""
    import io
    import sqlite3
    import ssl
    import threading

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    def step(name: str) -> None:
        print(f"probe: {name} ok", flush=True)

    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        raise SystemExit("probe: W+X mapping was allowed: the MemoryDenyWriteExecute rule is not active")
    except PermissionError:
        step("W+X refused")
    try:
        os.chown(workdir, os.getuid(), os.getgid())  # a no-op chown, allowed to anybody outside the filter
        raise SystemExit("probe: chown was allowed: the SystemCallFilter allow list is not active")
    except PermissionError:
        step("chown (@privileged) refused")
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raise SystemExit("probe: AF_PACKET was allowed: the address family rule is not active")
    except OSError as exc:
        if exc.errno != errno.EAFNOSUPPORT:
            raise
        step("AF_PACKET refused")

    key = ec.generate_private_key(ec.SECP256R1())
    key.public_key().verify(key.sign(b"result", ec.ECDSA(hashes.SHA256())), b"result", ec.ECDSA(hashes.SHA256()))
    step("cryptography (cffi/Rust) ES256")
    ssl.create_default_context().set_ciphers("ECDHE+AESGCM")
    step("ssl context")
    db = sqlite3.connect(workdir / "outbox.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    step("sqlite WAL")
    compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
    values = (ctypes.c_int * 3)(3, 1, 2)
    ctypes.CDLL(None).qsort(values, 3, ctypes.sizeof(ctypes.c_int), compare(lambda a, b: a[0] - b[0]))
    assert list(values) == [1, 2, 3]
    step("ctypes callback (libffi closure)")
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()
    step("thread")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # what sd_notify uses
    sock.close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
    step("AF_UNIX + AF_INET sockets")

    import numpy
    from PIL import Image

    assert int(numpy.arange(10).sum()) == 45
    step("numpy")
    try:
        import segno
    except ImportError:
        image = None
    else:
        buffer = io.BytesIO()
        segno.make("079123456789|Probe", error="m").save(buffer, kind="png", scale=4)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("L")
    for module, call in (("pyzbar.pyzbar", "decode"), ("zxingcpp", "read_barcodes")):
        try:
            decoder = __import__(module, fromlist=[call])
        except ImportError as exc:
            print(f"probe: {module} not importable here ({exc}); skipped", flush=True)
            continue
        if image is not None:
            assert getattr(decoder, call)(image), f"{module} found no QR"
        step(module)
    try:
        from smartcard.System import readers
    except ImportError:
        print("probe: pyscard not installed; skipped", flush=True)
    else:
        try:
            readers()
        except Exception as exc:  # noqa: BLE001 - no pcscd here is fine; a crash of the library is not
            print(f"probe: pyscard loaded, no pcscd ({type(exc).__name__})", flush=True)
        step("pyscard")
    os.environ["GPIOZERO_PIN_FACTORY"] = "mock"
    from gpiozero import LED

    led = LED(17)
    led.on()
    led.close()
    step("gpiozero (mock pins)")
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)  # type: ignore[attr-defined]
    with contextlib.suppress(ConnectionRefusedError):
        client.connect("127.0.0.1", 1, keepalive=5)
    step("paho-mqtt")
    print("probe: all ok", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sandbox"]:
        _load_filters(json.loads(Path(sys.argv[2]).read_text()))
        # Filters survive execve: the probe's whole interpreter start-up runs under them, like the daemon's.
        os.execv(sys.executable, [sys.executable, __file__, "work", sys.argv[2]])  # noqa: S606
    elif sys.argv[1:2] == ["work"]:
        _work(Path(json.loads(Path(sys.argv[2]).read_text())["workdir"]))
