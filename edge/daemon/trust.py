"""The terminal's trust: the CSCA store and the pinned Document Signers verification uses, re-read when either
directory changed (``cccd-edge trust import`` needs no restart), and the office's ``trust_update`` that pins the
signers of a signed DS list (:mod:`edge.daemon.ds_list`) in the writable ``known-signers`` directory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from edge.daemon.ds_list import ListKey, apply_ds_list, known_signers_dir, verify_ds_list
from edge.daemon.threads import Shared
from edge.errors import DsListRefusedError
from edge.protocol.commands import TrustUpdateCommand
from edge.protocol.verify.trust import TrustStore

log = logging.getLogger(__name__)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class TerminalTrust:
    """``trust_store``: ``paths.trust_store`` (root's, read-only to the daemon); pinned signers live under
    ``state_dir``. Used by the worker (:meth:`current`) and the loop (:meth:`update`)."""

    def __init__(self, shared: Shared, trust_store: Path, state_dir: Path, *, list_keys: Mapping[str, ListKey],
                 ward_code: str) -> None:  # fmt: skip
        self._shared = shared
        self._directory = trust_store
        self._signers = known_signers_dir(state_dir)
        self._list_keys = dict(list_keys)
        self._ward_code = ward_code
        self._lock = threading.Lock()
        self._trust: TrustStore | None = None
        self._stamp: tuple[int | None, int | None, int] | None = None
        self._generation = 0  # bumped by a trust_update: a directory's mtime may not tick between two writes

    def current(self) -> TrustStore:
        """The store as it is on disk now (re-read only when it changed)."""
        with self._lock:
            stamp = (_mtime(self._directory), _mtime(self._signers), self._generation)
            trust = self._trust
            if trust is None or stamp != self._stamp:
                trust = TrustStore.load(self._directory, signers_dir=self._signers)
                self._trust, self._stamp = trust, stamp
                log.info("trust store: %d certificate(s), %d known Document Signer(s)", len(trust.certificates),
                         len(trust.known_signers))
            return trust

    def update(self, command: TrustUpdateCommand, now: int) -> None:
        """Verify the DS list the (already verified) command carries and pin its signers (``now``: the terminal's
        time, Unix seconds); ``trust_updated`` or ``trust_update_refused`` with the reason on ``/event``."""
        try:
            verified = verify_ds_list(command.ds_list, self._list_keys, ward_code=self._ward_code, now=now)
            report = apply_ds_list(verified, trust=self.current(), at=datetime.fromtimestamp(now, UTC),
                                   target=self._signers)  # fmt: skip
        except DsListRefusedError as exc:
            self._shared.count("trust_updates_refused")
            log.warning("DS list refused: %s", exc.reason)
            self._shared.event({"event": "trust_update_refused", "jti": command.jti, "reason": exc.reason,
                                "detail": exc.detail[:500]})  # fmt: skip
            return
        with self._lock:
            self._generation += 1
        self._shared.count("trust_updates")
        log.info("DS list version %d from %s: %d added, %d removed", report.version, report.iss,
                 len(report.added), len(report.removed))
        self._shared.event({"event": "trust_updated", "jti": command.jti, "iss": report.iss, "version": report.version,
                            "listed": report.listed, "added": [entry.fingerprint for entry in report.added],
                            "removed": list(report.removed), "repeated": report.repeated})  # fmt: skip
