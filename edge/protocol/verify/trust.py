"""The CSCA trust store on disk: what this terminal trusts, and verified import of certificates, master lists
and CRLs into it.

The checks themselves live beside it: :mod:`~edge.protocol.verify.signatures` (algorithms),
:mod:`~edge.protocol.verify.certs` (certificates, paths, CRLs), :mod:`~edge.protocol.verify.cms` (CMS signers) and
:mod:`~edge.protocol.verify.masterlist` (CSCA master lists), so passive authentication and import share one
implementation.

The only file I/O is :meth:`TrustStore.load` and :meth:`TrustStore.import_file`, which take the directory or file
explicitly. Time is always a parameter.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from asn1crypto import pem as asn1_pem

from edge.errors import PublicKeyFormatError, SignatureError, TrustStoreError
from edge.protocol.clock import TimeEvidence
from edge.protocol.verify.certs import (
    CertificateInfo,
    ChainResult,
    CrlInfo,
    authorities_of,
    build_chain,
    is_self_signed,
    parse_certificate,
    parse_crl,
    verify_crl,
    verify_issued_by,
)
from edge.protocol.verify.cms import looks_like_signed_data
from edge.protocol.verify.masterlist import verify_master_list
from edge.protocol.verify.signatures import ASN1_ERRORS

#: No trust-store file (a whole national master list is about 1 MB) comes near this.
MAX_IMPORT_BYTES = 16 << 20
#: Signatures one import may check to admit link certificates: a real master list needs one per link certificate.
MAX_ADMISSION_CHECKS = 4096


TrustKind = Literal["CSCA", "link", "DS"]


@dataclass(frozen=True, slots=True)
class TrustEntry:
    """One line of ``cccd-edge trust list``."""

    subject: str
    key: str
    not_before: datetime
    not_after: datetime
    fingerprint: str
    kind: TrustKind

    @classmethod
    def of(cls, cert: CertificateInfo, kind: TrustKind) -> TrustEntry:
        return cls(cert.subject, cert.key_description, cert.not_before, cert.not_after, cert.fingerprint, kind)


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import added. ``anchor_fingerprint`` names the CSCA a master list's signer chained to;
    ``anchored_in == "list"`` means that CSCA came in the list itself (accepted only when the caller asked)."""

    kind: Literal["certificate", "master list", "CRL", "known Document Signers"]
    added: tuple[TrustEntry, ...]
    already_present: int = 0
    skipped: tuple[str, ...] = ()
    anchored_in: Literal["store", "list"] | None = None
    anchor_fingerprint: str | None = None
    notes: tuple[str, ...] = ()


_CERT_SUFFIXES = (".der", ".cer", ".crt", ".pem")
#: Store files holding pinned Document Signer certificates (everything else is a CSCA, link certificate or CRL).
KNOWN_SIGNER_PREFIX = "ds-"


def _read_limited(path: Path) -> bytes:
    """The file's bytes, reading at most one byte past the limit: a FIFO or /dev/zero has no size to check first."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        raise TrustStoreError(f"cannot read it: {exc.strerror or exc}") from exc
    if len(data) > MAX_IMPORT_BYTES:
        raise TrustStoreError(f"larger than any trust-store file (more than {MAX_IMPORT_BYTES} bytes)")
    return data


def _signature_problem(cert: CertificateInfo, issuer: CertificateInfo) -> str | None:
    """None when ``issuer``'s key signed ``cert``, otherwise why not."""
    try:
        verify_issued_by(cert, issuer)
    except SignatureError as exc:
        return str(exc)
    return None


def _der_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """(PEM type or '', DER) for every object in a PEM or DER file."""
    if asn1_pem.detect(data):
        try:
            return [(kind, der) for kind, _, der in asn1_pem.unarmor(data, multiple=True)]
        except ASN1_ERRORS as exc:
            raise TrustStoreError(f"malformed PEM ({type(exc).__name__})") from exc
    return [("", data)]


@dataclass(frozen=True, slots=True)
class TrustStore:
    """A snapshot of the CSCA certificates (self-signed anchors and link certificates), the pinned ("known")
    Document Signer certificates and the CRLs in a directory.

    ``problems`` lists store files that could not be used, so that ``trust list`` shows them instead of hiding
    them. The object never changes: after :meth:`import_file`, load the store again.
    """

    certificates: tuple[CertificateInfo, ...] = ()
    crls: tuple[CrlInfo, ...] = ()
    directory: Path | None = None
    problems: tuple[str, ...] = ()
    anchors: frozenset[str] = field(default=frozenset())
    known_signers: tuple[CertificateInfo, ...] = ()

    @classmethod
    def from_der(
        cls,
        certificates: Iterable[bytes],
        crls: Iterable[bytes] = (),
        *,
        known_signers: Iterable[bytes] = (),
        directory: Path | None = None,
    ) -> TrustStore:
        """Build a store in memory (tests, and :meth:`load`). Unusable items end in ``problems``."""
        parsed: list[CertificateInfo] = []
        problems: list[str] = []
        for der in certificates:
            try:
                parsed.append(parse_certificate(der))
            except PublicKeyFormatError as exc:
                problems.append(str(exc))
        pinned: dict[str, CertificateInfo] = {}
        for der in known_signers:
            try:
                signer = parse_certificate(der)
            except PublicKeyFormatError as exc:
                problems.append(f"known Document Signer: {exc}")
                continue
            pinned.setdefault(signer.fingerprint, signer)
        parsed_crls: list[CrlInfo] = []
        for der in crls:
            try:
                parsed_crls.append(parse_crl(der))
            except TrustStoreError as exc:
                problems.append(str(exc))
        ordered, anchors = authorities_of(parsed)
        signers = tuple(sorted(pinned.values(), key=lambda c: (c.subject, c.not_before)))
        return cls(ordered, tuple(parsed_crls), directory, tuple(problems), anchors, signers)

    @classmethod
    def load(cls, directory: Path, *, signers_dir: Path | None = None) -> TrustStore:
        """Read every certificate (.der/.cer/.crt/.pem) and CRL (.crl) in ``directory``; a missing one is empty.

        ``signers_dir`` adds the known Document Signers (``ds-*`` files, nothing else) pinned in a second directory:
        the daemon's writable one for DS lists the office pushes, while ``directory`` stays read-only to it (a
        pinned DS vouches for its own cards only; a CSCA planted there would vouch for any DS).
        """
        certs: list[bytes] = []
        crls: list[bytes] = []
        signers: list[bytes] = []
        problems: list[str] = []
        for folder, only_signers in ((directory, False), (signers_dir, True)):
            if folder is None or not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                suffix = path.suffix.lower()
                pinned = path.name.startswith(KNOWN_SIGNER_PREFIX)
                wanted = _CERT_SUFFIXES if only_signers else (*_CERT_SUFFIXES, ".crl")
                if suffix not in wanted or not path.is_file() or (only_signers and not pinned):
                    continue
                try:
                    blocks = _der_blocks(path.read_bytes())
                except (OSError, TrustStoreError) as exc:
                    problems.append(f"{path if only_signers else path.name}: {exc}")
                    continue
                if suffix == ".crl":
                    crls.extend(der for _, der in blocks)
                else:
                    (signers if pinned else certs).extend(der for _, der in blocks)
        store = cls.from_der(certs, crls, known_signers=signers, directory=directory)
        return TrustStore(store.certificates, store.crls, directory, (*problems, *store.problems), store.anchors,
                          store.known_signers)

    def entries(self) -> tuple[TrustEntry, ...]:
        return (
            *(TrustEntry.of(c, "CSCA" if c.fingerprint in self.anchors else "link") for c in self.certificates),
            *(TrustEntry.of(c, "DS") for c in self.known_signers),
        )

    def chain(self, cert: CertificateInfo, at: datetime | TimeEvidence) -> ChainResult:
        """Path from ``cert`` (a Document Signer, or a master-list signer) to a self-signed CSCA in the store
        (``at``: a trusted time, or :class:`TimeEvidence` that may say the clock is not synchronised)."""
        return build_chain(cert, self.certificates, self.anchors, at)

    def is_known_signer(self, ds: CertificateInfo) -> bool:
        """Whether ``ds`` is pinned byte for byte: a changed certificate (even one bit of a key identifier) is not."""
        return any(ds.fingerprint == known.fingerprint for known in self.known_signers)

    def crls_for(self, issuer: CertificateInfo) -> tuple[CrlInfo, ...]:
        return tuple(crl for crl in self.crls if crl.issuer_key == issuer.subject_key)

    # --- import ------------------------------------------------------------------------------------------------

    def import_file(self, path: Path, *, at: datetime, accept_self_anchored: bool = False) -> ImportReport:
        """Verify ``path`` (CSCA certificate, CSCA master list or CRL; PEM or DER) and copy what it vouches for
        into the store directory as DER named by SHA-256 fingerprint.

        A master list whose signer chains only to a CSCA the list carries itself is refused unless
        ``accept_self_anchored`` (see :func:`verify_master_list`). Raises :class:`TrustStoreError`, its message
        starting with ``path`` so that a refusal among several files names the one refused.
        """
        if self.directory is None:
            raise TrustStoreError("this trust store has no directory to import into")
        try:
            blocks = _der_blocks(_read_limited(path))
            kind, der = blocks[0]
            if kind == "X509 CRL" or path.suffix.lower() == ".crl":
                return self._import_crls([d for _, d in blocks])
            if kind in ("", "CMS", "PKCS7") and len(blocks) == 1 and looks_like_signed_data(der):
                return self._import_master_list(der, at, accept_self_anchored)
            return self._import_certificates([d for _, d in blocks])
        except TrustStoreError as exc:
            raise TrustStoreError(f"{path}: {exc.args[0]}", hint=exc.hint) from exc

    def _admit(self, offered: Sequence[CertificateInfo]) -> tuple[list[tuple[CertificateInfo, TrustKind]], list[str]]:
        """(certificates that may enter the store with their kind, plain-words refusals for the others).

        Nothing enters unverified: a CSCA must verify under its own key; a link certificate must be signed by an
        installed or admitted certificate of its issuer's name, so it reaches a CSCA (a damaged self-signature
        cannot slip in as a "link", and link certificates signing each other in a loop reach nothing). Admission
        grows from the anchors, checking each (certificate, issuer) pair at most once: linear in what is offered
        for an honest list, and bounded for a hostile one.
        """
        admitted: list[tuple[CertificateInfo, TrustKind]] = []
        refusals: dict[str, str] = {}
        pending: list[CertificateInfo] = []
        by_subject: dict[str, list[CertificateInfo]] = {}
        for cert in self.certificates:
            by_subject.setdefault(cert.subject_key, []).append(cert)
        for cert in offered:
            if cert.public_key is None:
                refusals[cert.fingerprint] = f"'{cert.subject}': its key is not supported ({cert.key_description})"
            elif not cert.is_ca or not cert.may_sign_certificates:
                refusals[cert.fingerprint] = (f"'{cert.subject}' is not a CA certificate (a Document Signer "
                                              "certificate cannot be a trust anchor)")
            elif is_self_signed(cert):
                admitted.append((cert, "CSCA"))
                by_subject.setdefault(cert.subject_key, []).append(cert)
            else:
                pending.append(cert)
        tried: set[tuple[str, str]] = set()
        budget = MAX_ADMISSION_CHECKS
        progress = True
        while pending and progress and budget > 0:
            progress = False
            for cert in list(pending):
                for issuer in by_subject.get(cert.issuer_key, ()):
                    pair = (cert.fingerprint, issuer.fingerprint)
                    if pair in tried or issuer.fingerprint == cert.fingerprint or budget <= 0:
                        continue
                    tried.add(pair)
                    budget -= 1
                    if _signature_problem(cert, issuer) is None:
                        admitted.append((cert, "link"))
                        by_subject.setdefault(cert.subject_key, []).append(cert)
                        pending.remove(cert)
                        progress = True
                        break
        for cert in pending:
            refusals[cert.fingerprint] = self._link_refusal(cert, offered, by_subject)
        return admitted, list(refusals.values())

    @staticmethod
    def _link_refusal(cert: CertificateInfo, offered: Sequence[CertificateInfo],
                      reachable: dict[str, list[CertificateInfo]]) -> str:  # fmt: skip
        """Why a certificate that is not self-signed was not admitted."""
        if cert.self_issued and cert.authority_key_id in (None, cert.subject_key_id):
            return (f"'{cert.subject}' names its own key as its signer, but its self-signature does not hold "
                    f"({_signature_problem(cert, cert)}): the certificate is damaged or forged")
        if reachable.get(cert.issuer_key):
            return f"'{cert.subject}': the CSCA that should have signed this link certificate did not"
        if any(other.subject_key == cert.issuer_key for other in offered if other is not cert):
            return (f"'{cert.subject}' is a link certificate that reaches no CSCA (its issuer '{cert.issuer}' "
                    "is itself not admitted: link certificates in a loop prove nothing)")
        return (f"'{cert.subject}' is a link certificate signed by '{cert.issuer}', which is not installed: "
                "import that CSCA first, or in the same file")

    def import_known_signers(self, ders: Sequence[bytes], *, at: datetime) -> ImportReport:
        """Pin Document Signer certificates as anchors of their own (``verified_known_signer``).

        The caller has verified where the list came from (a DS list signed by the ward's key): this checks only
        what the certificates themselves must satisfy. Each must be a Document Signer (not a CA), its key usable,
        and, when a CSCA of its issuer's name is installed, chain to it: a pinned DS may fill the gap of a CSCA
        that is not public, never contradict one that is installed.
        """
        if self.directory is None:
            raise TrustStoreError("this trust store has no directory to import into")
        parsed: list[CertificateInfo] = []
        for der in ders:
            try:
                signer = parse_certificate(der)
            except PublicKeyFormatError as exc:
                raise TrustStoreError(f"a known Document Signer entry is not a certificate: {exc}") from exc
            if signer.public_key is None:
                raise TrustStoreError(f"'{signer.subject}': its key is not supported ({signer.key_description})")
            if signer.is_ca:
                raise TrustStoreError(f"'{signer.subject}' is a CA certificate, not a Document Signer")
            chain = self.chain(signer, at)
            if chain.status == "broken":
                raise TrustStoreError(f"'{signer.subject}' contradicts the installed CSCA: {chain.reason}")
            parsed.append(signer)
        added: list[CertificateInfo] = []
        present = 0
        for signer in parsed:
            if self._write(f"{KNOWN_SIGNER_PREFIX}{signer.fingerprint.lower()}.der", signer.der):
                added.append(signer)
            else:
                present += 1
        return ImportReport("known Document Signers", tuple(TrustEntry.of(c, "DS") for c in added), present)

    def _write(self, name: str, der: bytes) -> bool:
        """Write atomically; False when the file is already there (idempotent import)."""
        assert self.directory is not None
        target = self.directory / name
        if target.exists():
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".import-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(der)
            os.chmod(tmp, 0o644)  # public data: CSCA certificates are published by their issuers
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise TrustStoreError(f"cannot write to the trust store {self.directory}: {exc.strerror or exc}") from exc
        return True

    def _store_certificates(
        self, admitted: Sequence[tuple[CertificateInfo, TrustKind]]
    ) -> tuple[tuple[TrustEntry, ...], int]:
        added: list[TrustEntry] = []
        present = 0
        for cert, kind in admitted:
            if self._write(f"csca-{cert.fingerprint.lower()}.der", cert.der):
                added.append(TrustEntry.of(cert, kind))
            else:
                present += 1
        return tuple(added), present

    def _import_certificates(self, ders: Sequence[bytes]) -> ImportReport:
        parsed: list[CertificateInfo] = []
        for der in ders:
            try:
                parsed.append(parse_certificate(der))
            except PublicKeyFormatError as exc:
                raise TrustStoreError("not a certificate, CSCA master list or CRL") from exc
        admitted, refusals = self._admit(parsed)
        if refusals:
            raise TrustStoreError(refusals[0])
        added, present = self._store_certificates(admitted)
        return ImportReport("certificate", added, present)

    def _import_crls(self, ders: Sequence[bytes]) -> ImportReport:
        for der in ders:
            crl = parse_crl(der)
            issuers = [c for c in self.certificates if c.subject_key == crl.issuer_key]
            for issuer in issuers:
                try:
                    verify_crl(crl, issuer)
                except SignatureError:
                    continue
                break
            else:
                raise TrustStoreError(f"no installed CSCA signed this CRL (issuer '{crl.issuer}'); install it first")
            self._write(f"crl-{crl.fingerprint.lower()}.crl", der)
        return ImportReport("CRL", ())

    def _import_master_list(self, der: bytes, at: datetime, accept_self_anchored: bool) -> ImportReport:
        listed, signer, anchor, anchored_in = verify_master_list(
            der, self.certificates, self.anchors, at, accept_self_anchored=accept_self_anchored
        )
        accepted, skipped = self._admit(listed)
        added, present = self._store_certificates(accepted)
        notes = (f"master list signed by '{signer.subject}'",)
        return ImportReport("master list", added, present, tuple(skipped), anchored_in, anchor.fingerprint, notes)
