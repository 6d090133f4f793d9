"""Files that hold keys or citizens' data: created 0600 from their first byte, never world-readable for a moment.

One place for this because a ``write_bytes`` followed by ``chmod`` leaves a window in which another local user can
open the file; ``os.open`` with the mode closes it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def write_private(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` (created or truncated) with mode 0600; ``durable`` fsyncs before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        if durable:
            out.flush()
            os.fsync(out.fileno())
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_TRUNC


def create_private(path: Path) -> None:
    """Create ``path`` as an empty 0600 file if it is missing (before SQLite opens it) and tighten its mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    """PKCS#8 PEM without a passphrase: the file's mode protects it (or a PKCS#11 token replaces the file)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
