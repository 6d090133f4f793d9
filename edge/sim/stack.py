"""A private pcscd with a vpcd reader pair, for tests and the demo, isolated from the system's and from each other.

pcscd 1.9.9 always serves ``/run/pcscd/pcscd.comm`` (it ignores ``PCSCLITE_CSOCK_NAME``), so a private instance
runs in its own mount namespace with a private directory bound over ``/run/pcscd``, and reads a private
``reader.conf.d`` whose vpcd entry listens on a free TCP port pair (reader 0 on ``port``, reader 1 on
``port + 1``). The client side finds it through ``PCSCLITE_CSOCK_NAME``, which libpcsclite reads once per process
at the first ``SCardEstablishContext``: start the stack before any PC/SC context exists, and keep one stack (and
one run directory, across restarts) per process.

Where ``unshare`` is not permitted, :class:`PcscStack` falls back to the system pcscd (standard vpcd port 35963).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from edge.errors import NoReaderError

log = logging.getLogger(__name__)

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
SYSTEM_RUN_DIR = Path("/run/pcscd")
SYSTEM_VPCD_PORT = 35963
READER_NAMES = ("Virtual PCD 00 00", "Virtual PCD 00 01")
_PORT_RANGE = (20000, 32000)
_START_TIMEOUT = 10.0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - vpcd itself binds every interface; probe the same
        except OSError:
            return False
    return True


def pick_port_pair() -> int:
    """A random even port whose neighbour is free too (vpcd uses ``port`` and ``port + 1``)."""
    rng = random.Random()  # spreads concurrent test runs apart; not a secret
    for _ in range(200):
        port = rng.randrange(_PORT_RANGE[0], _PORT_RANGE[1], 2)
        if _port_free(port) and _port_free(port + 1):
            return port
    raise NoReaderError("no free TCP port pair for vpcd")


def _listening(port: int) -> bool:
    """Whether some process listens on ``port`` (read from /proc: connecting would insert a card)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(wanted) and fields[3] == "0A":
                return True
    return False


def vpcd_conf(port: int) -> str:
    """reader.conf.d entry for a vpcd reader pair on ``port``/``port + 1``."""
    return (
        'FRIENDLYNAME "Virtual PCD"\n'
        f"DEVICENAME   /dev/null:0x{port:04X}\n"
        f"LIBPATH      {VPCD_DRIVER}\n"
        f"CHANNELID    0x{port:04X}\n"
    )


class PcscStack:
    """Start, restart and stop a private pcscd (or adopt the system one when namespaces are not allowed)."""

    def __init__(self, base_dir: Path | None = None, *, port: int | None = None) -> None:
        self._own_base = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="cccd-pcscd-")) if base_dir is None else base_dir
        self.conf_dir = self.base_dir / "reader.conf.d"
        self.run_dir = self.base_dir / "run"
        self.log_path = self.base_dir / "pcscd.log"
        self.port = port if port is not None else pick_port_pair()
        self.private = True
        self._process: subprocess.Popen[bytes] | None = None
        self._saved_env: str | None = None
        self._env_set = False

    @property
    def socket_path(self) -> Path:
        return (self.run_dir if self.private else SYSTEM_RUN_DIR) / "pcscd.comm"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def reader_port(self, index: int) -> int:
        """TCP port of vpcd reader ``index`` (0 or 1)."""
        return self.port + index

    def start(self) -> PcscStack:
        """Start the private pcscd (or fall back to the system one) and point this process's PC/SC client at it."""
        if shutil.which("pcscd") is None or not VPCD_DRIVER.exists():
            raise NoReaderError("pcscd or the vpcd driver is not installed (apt install pcscd vsmartcard-vpcd)")
        if self.private and (shutil.which("unshare") is None or not self._start_private()):
            self._fall_back_to_system()
        self._set_env()
        return self

    def stop(self) -> None:
        """Stop our pcscd (never the system's) and forget its files."""
        self._kill()
        self._restore_env()
        if self._own_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def restart(self) -> None:
        """Kill and restart pcscd on the same socket path and ports (clients must re-establish their context)."""
        self.kill_daemon()
        self.start_daemon()

    def kill_daemon(self) -> None:
        """Stop pcscd but keep its directories and ports, as a crash or an upgrade would (see :meth:`restart`)."""
        if not self.private:
            raise NoReaderError("cannot stop the system pcscd from here")
        self._kill()

    def start_daemon(self) -> None:
        """Start pcscd again after :meth:`kill_daemon`."""
        if not self.private:
            raise NoReaderError("cannot start the system pcscd from here")
        if self.running:
            return
        if not self._start_private():
            raise NoReaderError(f"pcscd did not come back; see {self.log_path}")

    def __enter__(self) -> PcscStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- internals ---------------------------------------------------------------------------------------------

    def _start_private(self) -> bool:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "vpcd").write_text(vpcd_conf(self.port))
        for stale in self.run_dir.iterdir():
            stale.unlink()
        script = (
            f"mkdir -p {SYSTEM_RUN_DIR} && mount --bind {self.run_dir} {SYSTEM_RUN_DIR} "
            f"&& exec pcscd --foreground --config {self.conf_dir}"
        )
        # Without root, a user namespace maps us to root inside it, which is enough to bind-mount /run/pcscd.
        unshare = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--mount"]
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [*unshare, "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not pcscd: we stop it in order
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log.info("private pcscd could not start (exit %s); see %s", self._process.returncode, self.log_path)
                self._process = None
                return False
            if self.socket_path.exists() and _listening(self.port) and _listening(self.port + 1):
                log.debug("private pcscd up: socket %s, vpcd ports %d/%d", self.socket_path, self.port, self.port + 1)
                return True
            time.sleep(0.02)
        self._kill()
        raise NoReaderError(f"private pcscd did not open its socket and vpcd ports; see {self.log_path}")

    def _fall_back_to_system(self) -> None:
        self.private = False
        self.port = SYSTEM_VPCD_PORT
        if not (SYSTEM_RUN_DIR / "pcscd.comm").exists():
            raise NoReaderError(
                "cannot start a private pcscd (unshare not permitted) and the system pcscd is not running"
            )
        log.warning("using the system pcscd at %s (vpcd port %d): test runs may collide", SYSTEM_RUN_DIR, self.port)

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5.0)

    def _set_env(self) -> None:
        if not self._env_set:
            self._saved_env = os.environ.get("PCSCLITE_CSOCK_NAME")
            self._env_set = True
        os.environ["PCSCLITE_CSOCK_NAME"] = str(self.socket_path)

    def _restore_env(self) -> None:
        if not self._env_set:
            return
        if self._saved_env is None:
            os.environ.pop("PCSCLITE_CSOCK_NAME", None)
        else:
            os.environ["PCSCLITE_CSOCK_NAME"] = self._saved_env
        self._env_set = False
