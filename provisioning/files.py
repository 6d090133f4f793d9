"""File writing with the modes decided up front: a key must never exist, even for a moment, with a looser mode."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from typing import Any

from edge.errors import ProvisioningError

PRIVATE = 0o600  # private keys: owner only
PUBLIC = 0o640  # certificates, public keys, config: root writes, the service group reads
PRIVATE_DIR = 0o700
SHARED_DIR = 0o750


def resolve_owner(name: str | None) -> tuple[int, int] | None:
    """uid/gid of ``name``, or None to keep the caller's ownership (tests, or running as the service user)."""
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ProvisioningError(f"user {name!r} does not exist", hint="run provisioning/install.sh first") from None
    return entry.pw_uid, entry.pw_gid


def ensure_dir(path: Path, mode: int, owner: tuple[int, int] | None = None, *, group_only: bool = False) -> None:
    """Create ``path`` (and parents) and pin its mode; ``group_only`` gives the owner's group, keeping root as owner."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, -1 if group_only else owner[0], owner[1])


def write_atomic(
    path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None, *, group_only: bool = False
) -> None:
    """Write via a temporary file created with ``mode`` already set, then rename: readers see old or new, never half.

    The temporary file is opened O_EXCL with the final mode, so a private key is 0600 from its first byte whatever
    the umask, and a crash leaves at worst a stray ``.tmp`` file, never a truncated key.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have cleared bits we want (0640 under umask 077)
        if owner is not None:
            os.fchown(fd, -1 if group_only else owner[0], owner[1])
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_private_mode(path: Path) -> None:
    """Refuse a private key that group or others can read: it may already have been copied."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise ProvisioningError(f"cannot read private key: {exc.strerror}", path=str(path)) from None
    if mode & 0o077:
        raise ProvisioningError(
            f"private key has mode {mode:04o}, expected 0600",
            path=str(path),
            hint=f"chmod 600 {path}; if others could read it, rotate the key (python -m provisioning device rotate)",
        )


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ProvisioningError(f"cannot read {what}: {exc.strerror}", path=str(path)) from None


def dump_toml(table: dict[str, Any]) -> str:
    """Minimal TOML writer for the config (str, int, float, bool, lists of those, nested tables): stdlib has none."""
    lines: list[str] = []
    _dump_table(table, [], lines)
    return "\n".join(lines).strip() + "\n"


def _dump_table(table: dict[str, Any], prefix: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if prefix and scalars:
        lines.append(f"[{'.'.join(_key(p) for p in prefix)}]")
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    if scalars:
        lines.append("")
    for key, sub in tables.items():
        _dump_table(sub, [*prefix, key], lines)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | os.PathLike):
        return _string(os.fspath(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ProvisioningError(f"cannot write {type(value).__name__} to TOML")


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'
