"""A private PostgreSQL cluster for tests and benchmarks: Debian's server binaries, a temporary directory, a socket.

``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin`` (``apt-get install postgresql``; the Debian
service itself is never touched). PostgreSQL refuses to run as root, so a root caller runs them as the ``postgres``
system user the package creates (else ``nobody``), in a directory that user owns. The server listens on a UNIX
socket in that directory only (no TCP): several runs share a machine without a port to collide on.
``fsync=off``: a test's data need not survive a power cut, and a killed *process* loses nothing committed anyway.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edge.errors import StorageError

SUPERUSER = "cccd"
_START_TIMEOUT = 30


def _major(name: str) -> int:
    return int(name) if name.isascii() and name.isdigit() else 0


def server_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory, or None."""
    installed = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    versions = sorted(installed, key=lambda path: _major(path.parent.parent.name))
    return versions[-1].parent if versions else None


class PostgresCluster:
    """One private cluster; :meth:`url` names a database in it, :meth:`create_database` makes a fresh one."""

    def __init__(self, directory: Path | None = None) -> None:
        bin_dir = server_bin_dir()
        if bin_dir is None:
            raise StorageError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self._bin = bin_dir
        self._run_as = _unprivileged_user() if os.geteuid() == 0 else None
        self.directory = Path(tempfile.mkdtemp(prefix="cccd-pg-")) if directory is None else directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data = self.directory / "data"
        self.socket_dir = self.directory
        self.port = 5432
        self.log = self.directory / "postgres.log"
        self._databases = 0
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self.directory.chmod(0o700)

    def _command(self, argv: Sequence[str]) -> list[str]:
        return ["runuser", "-u", self._run_as, "--", *argv] if self._run_as is not None else list(argv)

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._run([str(self._bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                       "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
        options = (f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -p {self.port} "
                   "-c fsync=off -c max_connections=200")
        self._run([str(self._bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                   "-w", "-t", str(_START_TIMEOUT), "start"])

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as a crash would)."""
        if (self.data / "postmaster.pid").exists():
            self._run([str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql:///{database}?host={self.socket_dir}&port={self.port}&user={SUPERUSER}"

    def create_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg  # tests and benchmarks that start a cluster have it

        self._databases += 1
        name = f"cccd_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _run(self, argv: Sequence[str], *, check: bool = True) -> None:
        done = subprocess.run(self._command(argv), capture_output=True, text=True, timeout=60, check=False,
                              cwd=self.directory)
        if check and done.returncode != 0:
            log_tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
            raise StorageError(f"{Path(argv[0]).name} failed: {done.stderr.strip()[-1500:]} {log_tail}")


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise StorageError("no unprivileged user to run PostgreSQL as (postgres or nobody)")
