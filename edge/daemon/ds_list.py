"""Signed DS lists on the terminal: verify (JWS ES256 under the ward's or the province's key) and pin the Document
Signers a list carries, replacing what the same key's earlier list pinned. The claims model and signing are
:mod:`edge.protocol.ds_list` (provisioning signs lists without the daemon).

Where pins land: ``cccd-edge trust import`` writes into the directory it is given (the trust store, or with
``--config`` the terminal's ``known-signers`` directory), and the office's ``trust_update`` command into
:func:`known_signers_dir`, under the state directory. The daemon never writes ``paths.trust_store``: that stays
root's and read-only to it, so a compromised daemon cannot plant a CSCA (which would vouch for any DS it makes).
It can pin a DS only with a list the ward or province signed, and a DS pins nothing beyond the cards its own key
signed; :meth:`~edge.protocol.verify.trust.TrustStore.load` reads only ``ds-*`` files from that directory.

Each target directory keeps :data:`RECORD_FILE`: per signing key, the accepted version, a digest of its claims
and the fingerprints it pinned. A lower version is refused (an old list cannot be replayed to bring back a DS the
ward has since dropped); the same version is accepted again only with the same content (a resend is harmless and
repairs an interrupted import). A DS the key's earlier list pinned and its new one leaves out is removed, unless
another key's list still pins it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.errors import DsListRefusedError, JsonError, TokenError, TokenSignatureError, TrustStoreError
from edge.protocol.b64url import b64url_decode
from edge.protocol.bounded_json import loads_bounded
from edge.protocol.ds_list import (
    DS_LIST_TYP,
    MAX_DS_CERTS,
    MAX_DS_LIST_BYTES,
    DsListClaims,
    KeyScope,
    check_claims,
    parse_ds_list_claims,
)
from edge.protocol.jose import DEFAULT_LEEWAY, key_id, verify_es256
from edge.protocol.verify.trust import KNOWN_SIGNER_PREFIX, TrustEntry, TrustStore

#: Accepted versions, per signing key, in each directory that holds list-pinned signers.
RECORD_FILE = "accepted-lists.json"  # not ds-*: those are the pinned certificates
_LOCK_FILE = ".accepted-lists.lock"
#: The daemon's writable directory of pinned signers, under ``paths.state_dir``.
KNOWN_SIGNERS_DIR = "known-signers"
_MAX_HEADER_BYTES = 4096
#: A record holds at most a few keys' lists; this bounds reading a damaged or planted one.
_MAX_RECORD_BYTES = 4 << 20


def known_signers_dir(state_dir: Path) -> Path:
    return state_dir / KNOWN_SIGNERS_DIR


@dataclass(frozen=True, slots=True)
class ListKey:
    key: ec.EllipticCurvePublicKey
    scope: KeyScope


def list_keys(*, ward: ec.EllipticCurvePublicKey | None = None,
              province: Sequence[ec.EllipticCurvePublicKey] = (),
              named: Sequence[ec.EllipticCurvePublicKey] = ()) -> dict[str, ListKey]:  # fmt: skip
    """kid -> key: the ward's command key, the province's keys (``trust.ds_list_keys``), keys named by hand."""
    keys = {key_id(k): ListKey(k, "any") for k in named}
    keys |= {key_id(k): ListKey(k, "province") for k in province}
    if ward is not None:
        keys[key_id(ward)] = ListKey(ward, "ward")
    return keys


# --- verification ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedDsList:
    claims: DsListClaims
    kid: str
    scope: KeyScope
    digest: str  # SHA-256 of the signed payload: the same version twice must be the same list


def verify_ds_list(token: str | bytes, keys: Mapping[str, ListKey], *, ward_code: str | None, now: int,
                   leeway: int = DEFAULT_LEEWAY) -> VerifiedDsList:  # fmt: skip
    """Verify the signature (key by ``kid``), ``typ``, the claims, time and ward; :class:`DsListRefusedError`
    saying why not. Sizes are checked before anything is decoded."""
    if len(token) > MAX_DS_LIST_BYTES:
        raise DsListRefusedError("malformed", f"{len(token)} bytes, more than the {MAX_DS_LIST_BYTES} accepted")
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise DsListRefusedError("malformed", "not a compact JWS (not ASCII)") from None
    if not token.isascii():
        raise DsListRefusedError("malformed", "not a compact JWS (not ASCII)")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise DsListRefusedError("malformed", f"not a compact JWS ({len(parts)} dot-separated parts, not 3)")
    try:
        header = loads_bounded(b64url_decode(parts[0]), what="DS list header", max_bytes=_MAX_HEADER_BYTES)
    except (ValueError, JsonError) as exc:  # JsonError is a ValueError; named for the reader
        raise DsListRefusedError("malformed", f"unreadable JWS header ({exc})") from None
    if not isinstance(header, dict):
        raise DsListRefusedError("malformed", "the JWS header is not a JSON object")
    if header.get("alg") in (None, "none") or not parts[2]:
        raise DsListRefusedError("unsigned", "the list carries no signature")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise DsListRefusedError("malformed", "the JWS header names no key (kid)")
    trusted = keys.get(kid)
    if trusted is None:
        raise DsListRefusedError("unknown_key", f"signed by key {kid[:64]!r}, which this terminal does not trust "
                                 "for DS lists (the ward's command key, or trust.ds_list_keys)")
    try:
        header, payload = verify_es256(token, trusted.key)
    except TokenSignatureError:
        raise DsListRefusedError("bad_signature", "the signature does not verify: forged or altered") from None
    except TokenError as exc:
        raise DsListRefusedError("malformed", str(exc)) from None
    if header.get("typ") != DS_LIST_TYP:
        raise DsListRefusedError("malformed", f"token type {str(header.get('typ'))[:64]!r}, not a DS list")
    try:
        data = loads_bounded(payload, what="DS list", max_bytes=MAX_DS_LIST_BYTES)
    except JsonError as exc:
        raise DsListRefusedError("malformed", str(exc)) from None
    claims = parse_ds_list_claims(data)
    check_claims(claims, scope=trusted.scope, ward_code=ward_code, now=now, leeway=leeway)
    return VerifiedDsList(claims, kid, trusted.scope, hashlib.sha256(payload).hexdigest())


# --- the record of accepted lists --------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcceptedList(_Model):
    version: int
    iss: str
    ward_code: str
    iat: int
    digest: str
    fingerprints: tuple[str, ...] = Field(max_length=MAX_DS_CERTS)
    notes: dict[str, str] = Field(default_factory=dict)


class ListRecord(_Model):
    lists: dict[str, AcceptedList] = Field(default_factory=dict)  # kid -> its latest accepted list
    #: Fingerprints dropped by a newer list whose files may still be on disk (an interrupted removal).
    retired: tuple[str, ...] = ()


def load_record(directory: Path) -> ListRecord:
    """The accepted lists in ``directory`` (none when it has no record). A damaged record is refused, not reset:
    starting over would let an old list in again."""
    path = directory / RECORD_FILE
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return ListRecord()
    except OSError as exc:
        raise DsListRefusedError("storage", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return ListRecord.model_validate(loads_bounded(data, what=RECORD_FILE, max_bytes=_MAX_RECORD_BYTES))
    except (JsonError, ValidationError):
        raise DsListRefusedError("record_damaged", f"{path} is damaged", hint="restore it from a backup, or "
                                 "delete it and import the newest DS list again") from None


def _write_record(directory: Path, record: ListRecord) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".record-")
    except OSError as exc:  # no inode or space left for even an empty file
        raise DsListRefusedError("storage", f"cannot write in {directory}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(record.model_dump_json(indent=1))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # fingerprints of public certificates
        os.replace(tmp, directory / RECORD_FILE)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DsListRefusedError("storage", f"cannot write {directory / RECORD_FILE}: {exc.strerror or exc}") from None


def _ensure_dir(directory: Path) -> None:
    """Create the directory; made by root for the daemon's state directory, it takes that directory's owner."""
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o755, parents=True)
        if os.geteuid() == 0:
            parent = directory.parent.stat()
            os.chown(directory, parent.st_uid, parent.st_gid)
    except OSError as exc:
        raise DsListRefusedError("storage", f"cannot create {directory}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One import at a time per directory: the installer's `trust import` and the daemon may meet there."""
    try:
        fd = os.open(directory / _LOCK_FILE, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DsListRefusedError("storage", f"cannot lock {directory}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- import ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DsListReport:
    """What an accepted list changed. ``repeated``: this very list was accepted before (nothing new, or a repair)."""

    version: int
    iss: str
    ward_code: str
    kid: str
    listed: int
    added: tuple[TrustEntry, ...]
    already_present: int
    removed: tuple[str, ...]
    repeated: bool
    notes: Mapping[str, str] = field(default_factory=dict)


def apply_ds_list(verified: VerifiedDsList, *, trust: TrustStore, target: Path, at: datetime) -> DsListReport:
    """Pin the list's signers in ``target`` and retire those the key's earlier list pinned and this one drops.

    ``trust`` holds the installed CSCAs: a listed DS that contradicts one of them (its issuer's name, another
    key), a CA certificate or an unusable one refuses the whole list before anything is written.
    """
    claims = verified.claims
    _ensure_dir(target)
    with _locked(target):
        record = load_record(target)
        previous = record.lists.get(verified.kid)
        if previous is not None and claims.version < previous.version:
            raise DsListRefusedError("not_newer", f"version {claims.version} is older than version "
                                     f"{previous.version}, already accepted from this key")
        repeated = previous is not None and claims.version == previous.version
        if repeated and previous is not None and previous.digest != verified.digest:
            raise DsListRefusedError("not_newer", f"version {claims.version} was already accepted with other "
                                     "content: a changed list needs a higher version")
        try:
            report = replace(trust, directory=target).import_known_signers(claims.ders, at=at)
        except TrustStoreError as exc:
            reason = "storage" if isinstance(exc.__cause__, OSError) else "certificate_refused"
            raise DsListRefusedError(reason, exc.args[0]) from None
        fingerprints = tuple(sorted(_fingerprint(der) for der in claims.ders))
        notes = {_fingerprint(e.der): e.note for e in claims.certificates if e.note is not None}
        kept = set(fingerprints).union(*(a.fingerprints for kid, a in record.lists.items() if kid != verified.kid))
        dropped = set(previous.fingerprints if previous else ()) | set(record.retired)
        retired = tuple(sorted(dropped - kept))
        accepted = AcceptedList(version=claims.version, iss=claims.iss, ward_code=claims.ward_code, iat=claims.iat,
                                digest=verified.digest, fingerprints=fingerprints, notes=notes)
        record = ListRecord(lists={**record.lists, verified.kid: accepted}, retired=retired)
        _write_record(target, record)
        removed = tuple(fp for fp in retired if _unpin(target, fp))
        if retired:
            _write_record(target, ListRecord(lists=record.lists))
    return DsListReport(claims.version, claims.iss, claims.ward_code, verified.kid, len(fingerprints),
                        report.added, report.already_present, removed, repeated, notes)


def _fingerprint(der: bytes) -> str:
    """As :attr:`CertificateInfo.fingerprint` (SHA-256 of the DER), without parsing the certificate again."""
    return hashlib.sha256(der).hexdigest().upper()


def _unpin(directory: Path, fingerprint: str) -> bool:
    path = directory / f"{KNOWN_SIGNER_PREFIX}{fingerprint.lower()}.der"
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:  # the record keeps it as retired: the next import tries again
        raise DsListRefusedError("storage", f"the list was recorded, but {path} could not be removed: "
                                 f"{exc.strerror or exc}") from None
    return True
