"""What is fuzzed, from which genuine samples, and what counts as a false accept.

Each :class:`Target` turns a ``random.Random`` into one input (plain data: bytes, or a dict of them, so a reproducer
file can hold it) and runs it. A run returns an :class:`Outcome` or raises: an :class:`~edge.errors.EdgeError` is a
refusal, anything else is a finding. Targets whose contract is "never raises" (the office's ``ingest``) say so with
``nothing_may_escape``. A false accept is a verdict that is not failed (or an accepted token, command, master list,
trust-store import, SM answer) on data that differs from what its genuine signer signed.

Genuine samples come from the simulator's builder (``edge.sim.builder``) and its test PKI, signed for real; office
tokens and commands are signed with keys made here. Per-process state that cannot cross a fork (a trust-store
directory, SQLite files) lives in :class:`Runtime`, created lazily in each worker on tmpfs.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from edge import signers
from edge.daemon.ds_list import apply_ds_list, list_keys, verify_ds_list
from edge.daemon.office_commands import CommandVerifier, ReadCommand, ReplayGuard
from edge.errors import EdgeError
from edge.office.receiver import ResultStore
from edge.office.verify import check_active_auth, verify_result
from edge.protocol import crypto, jose, tlv
from edge.protocol.access import bac
from edge.protocol.access.card_access import parse_security_infos
from edge.protocol.access.chip_auth import chip_auth_unsupported
from edge.protocol.access.pace import PacePassword
from edge.protocol.access.policy import CanKey, choose_pace_info
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.cccd_qr import encode_cccd_qr, parse_cccd_qr
from edge.protocol.chip import CCCD_CARD_ACCESS
from edge.protocol.ds_list import PROVINCE, ds_list_claims, sign_ds_list
from edge.protocol.keys import explicit_spki, load_public_key
from edge.protocol.lds.com import parse_com
from edge.protocol.lds.dg1 import parse_dg1
from edge.protocol.lds.dg2 import encode_dg2, parse_dg2
from edge.protocol.lds.dg11 import Dg11, encode_dg11, parse_dg11
from edge.protocol.lds.dg12 import Dg12, encode_dg12, parse_dg12
from edge.protocol.lds.dg13 import encode_dg13, parse_dg13
from edge.protocol.lds.dg14 import encode_dg14, parse_dg14
from edge.protocol.lds.dg15 import encode_dg15, parse_dg15
from edge.protocol.lds.sod import parse_sod
from edge.protocol.result import (
    ActiveAuthEvidence,
    CitizenData,
    ProcedureProfile,
    QrUsage,
    ReadTiming,
    ResultDocument,
    make_result,
)
from edge.protocol.result import Check as DocumentCheck
from edge.protocol.sm import SecureMessaging, SessionKeys, protect_command, protect_response, unprotect_command
from edge.protocol.verify.certs import parse_certificate
from edge.protocol.verify.checks import CheckStatus, Verdict, decide
from edge.protocol.verify.cms import find_signer_certificate, parse_signed_data, verify_signer
from edge.protocol.verify.crosscheck import check_id_structure, crosscheck_mrz_dg13, crosscheck_qr_dg13
from edge.protocol.verify.masterlist import ID_CSCA_MASTER_LIST, ID_MASTER_LIST_SIGNING_KEY, verify_master_list
from edge.protocol.verify.passive import passive_authentication
from edge.protocol.verify.trust import TrustStore
from edge.sim.active_auth_card import sign_active_auth
from edge.sim.builder import face_jpeg
from edge.sim.card_qr import card_qr_text
from edge.sim.model import FID_CARD_ACCESS, FID_COM, FID_SOD, dg_fid
from edge.sim.pki import SimPki, load_or_create_pki
from edge.sim.profile import load_profile

from . import card as hostile_card
from .mutate import Node, donor_nodes, how_many, mutate, mutate_bytes, mutate_json

NOW = hostile_card.NOW
NOW_INT = int(NOW.timestamp())
TERMINAL_ID = "T-01"
WARD_CODE = "26734"
AA_REQUEST_ID = "req-00000001"
AA_CHALLENGE = bytes.fromhex("a1b2c3d4e5f60718")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # accepted | rejected | expected | false_accept
    detail: str = ""


ACCEPTED = Outcome("accepted")
REJECTED = Outcome("rejected")


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    weight: float
    generate: Callable[[random.Random, Corpus], Any]
    run: Callable[[Any, Corpus], Outcome]
    nothing_may_escape: bool = False  # even an EdgeError escaping is a finding (a contract of "never raises")


# --- genuine material --------------------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cccd-edge fuzz (TEST ONLY)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def _cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, serial: int,
          eku: tuple[x509.ObjectIdentifier, ...] = ()) -> x509.Certificate:  # fmt: skip
    usage = x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                          encipher_only=False, decipher_only=False)  # fmt: skip
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(serial).not_valid_before(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2034, 1, 1, tzinfo=dt.UTC)).add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )  # fmt: skip
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class _CertificateSet(asn1_core.SetOf):  # type: ignore[misc]
    _child_spec = asn1_x509.Certificate


class _CscaMasterList(asn1_core.Sequence):  # type: ignore[misc]
    _fields = [("version", asn1_core.Integer), ("cert_list", _CertificateSet)]  # noqa: RUF012


def master_list(signer_key: ec.EllipticCurvePrivateKey, signer: x509.Certificate,
                listed: Sequence[x509.Certificate]) -> bytes:  # fmt: skip
    """A CSCA master list (ICAO 9303-12): CMS SignedData over CscaMasterList, signed for real."""
    content = _CscaMasterList({"version": 0, "cert_list": [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER))
                                                            for c in listed]}).dump()  # fmt: skip
    attrs = asn1_cms.CMSAttributes([{"type": "content_type", "values": [ID_CSCA_MASTER_LIST]},
                                    {"type": "message_digest", "values": [hashlib.sha256(content).digest()]}])
    cert = asn1_x509.Certificate.load(signer.public_bytes(Encoding.DER))
    signed = asn1_cms.SignedData({
        "version": "v3", "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": ID_CSCA_MASTER_LIST, "content": asn1_core.ParsableOctetString(content)},
        "certificates": [cert],
        "signer_infos": [{"version": "v1", "sid": asn1_cms.SignerIdentifier("issuer_and_serial_number", {
            "issuer": cert.issuer, "serial_number": cert.serial_number}), "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attrs, "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": signer_key.sign(attrs.dump(), ec.ECDSA(hashes.SHA256()))}],
    })  # fmt: skip
    return bytes(asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def _tbs(der: bytes) -> bytes | None:
    try:
        return bytes(asn1_x509.Certificate.load(der)["tbs_certificate"].dump())
    except Exception:  # noqa: BLE001 - not a certificate
        return None


def _crl_tbs(der: bytes) -> bytes | None:
    try:
        from asn1crypto import crl as asn1_crl

        return bytes(asn1_crl.CertificateList.load(der)["tbs_cert_list"].dump())
    except Exception:  # noqa: BLE001 - not a CRL
        return None


@dataclass(slots=True)
class Runtime:
    """One worker's files: a trust-store directory holding the test CSCA, SQLite for replays and results."""

    directory: Path
    store: TrustStore
    store_files: frozenset[str]
    offered: Path
    commands: CommandVerifier
    results: ResultStore

    def close(self) -> None:
        self.results.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(repr=False)
class Corpus:
    """Everything the targets start from; built once before the workers fork."""

    pki: SimPki
    trust: TrustStore
    cards: dict[str, hostile_card.GenuineCard]
    samples: dict[str, tuple[bytes, ...]]
    pool: tuple[bytes, ...]
    donors: tuple[Node, ...]
    genuine_encap: dict[bytes, bytes]  # CMS sample -> its signed content
    trust_files: tuple[tuple[str, bytes], ...]
    genuine_tbs: frozenset[bytes]
    sm_keys: dict[str, SessionKeys]
    sm_responses: tuple[tuple[str, bytes, int, bytes, int], ...]  # suite, protected data, sw, plain data, plain sw
    sm_commands: tuple[tuple[str, CommandApdu, CommandApdu], ...]  # suite, protected, plain
    terminal: signers.KeySigner
    ward: ec.EllipticCurvePrivateKey
    commands: tuple[tuple[dict[str, Any], str], ...]  # claims, token
    ds_lists: tuple[tuple[dict[str, Any], str], ...]  # claims, token (ward key, province key)
    province: ec.EllipticCurvePrivateKey
    results: tuple[tuple[dict[str, Any], str], ...]  # claims, token (JWS or JWE)
    known_ds_trust: TrustStore = field(default_factory=TrustStore)  # no CSCA, the test DS pinned: known-DS rung
    runtime_root: Path | None = None  # where workers make their directories (the campaign removes it)
    genuine_dg13: Any = None
    genuine_mrz: Any = None
    _runtime: Runtime | None = field(default=None, repr=False)
    _runtime_pid: int = 0

    def __repr__(self) -> str:  # pytest and tracebacks print it: the samples are large
        return f"Corpus({len(self.cards)} cards, {sum(map(len, self.samples.values()))} samples)"

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:  # hypothesis' printer would list every field
        printer.text(repr(self))

    def runtime(self) -> Runtime:
        if self._runtime is None or self._runtime_pid != os.getpid():
            self._runtime = self._make_runtime()
            self._runtime_pid = os.getpid()
        return self._runtime

    def close_runtime(self) -> None:
        if self._runtime is not None and self._runtime_pid == os.getpid():
            self._runtime.close()
        self._runtime = None

    def _make_runtime(self) -> Runtime:
        base = self.runtime_root or (Path("/dev/shm") if Path("/dev/shm").is_dir() else None)  # SQLite fsyncs: tmpfs
        directory = Path(tempfile.mkdtemp(prefix="worker-", dir=base))
        store_dir = directory / "store"
        store_dir.mkdir()
        (store_dir / "csca.der").write_bytes(self.pki.csca.certificate.public_bytes(Encoding.DER))
        store = TrustStore.load(store_dir)
        commands = CommandVerifier(self.ward.public_key(), TERMINAL_ID, ReplayGuard(directory / "replay.db"))
        results = ResultStore(directory / "results.db", {self.terminal.kid: self.terminal.public_key},
                              decrypt_key=self.ward, aa_challenges={AA_REQUEST_ID: AA_CHALLENGE})  # fmt: skip
        return Runtime(directory, store, frozenset(p.name for p in store_dir.iterdir()), directory / "offered",
                       commands, results)  # fmt: skip


#: A fictitious citizen with every field filled, so each profile filter has something to remove.
_CITIZEN = CitizenData(
    id_number="079203012345", full_name="Nguyễn Văn An", date_of_birth="01/02/2003", sex="Nam",
    nationality="Việt Nam", ethnicity="Kinh", religion="Không", place_of_origin="Quận 1, TP. Hồ Chí Minh",
    place_of_residence="12 Đường Số 3, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh", identifying_marks="Nốt ruồi",
    date_of_issue="15/04/2021", date_of_expiry="01/02/2028", old_id_number="123456789",
    father_name="Nguyễn Văn Bình", mother_name="Trần Thị Cúc", spouse_name="Lê Thị Dung", photo_jpeg_b64="/9j/4AAQ",
)  # fmt: skip


def _sample_result(profile: ProcedureProfile = ProcedureProfile.IDENTITY, *, verdict: Verdict = Verdict.VERIFIED,
                   request_id: str | None = None, active_auth: ActiveAuthEvidence | None = None) -> ResultDocument:
    status = CheckStatus.FAILED if verdict is Verdict.FAILED else CheckStatus.PASSED
    checks = (DocumentCheck(name="sod_signature", status=status),
              DocumentCheck(name="dg_hashes", status=CheckStatus.PASSED),
              DocumentCheck(name="active_authentication", status=CheckStatus.NOT_SUPPORTED, reason="no DG15"))
    return make_result(terminal_id=TERMINAL_ID, ward_code=WARD_CODE, profile=profile, verdict=verdict, checks=checks,
                       citizen=_CITIZEN, qr=QrUsage(used=True, format="cccd2021"),
                       timing=ReadTiming(apdu_count=15, read_ms=2100), completed_at=NOW, request_id=request_id,
                       active_auth=active_auth)  # fmt: skip


def _document_claims(document: ResultDocument, seq: int) -> dict[str, Any]:
    return jose.result_claims(terminal_id=TERMINAL_ID, kid="", seq=seq, document=json.loads(document.to_json()),
                              now=NOW_INT, lifetime=3600)  # fmt: skip


def _sign(signer: signers.KeySigner, header: bytes, payload: bytes) -> str:
    signing_input = f"{jose.b64url(header)}.{jose.b64url(payload)}"
    return f"{signing_input}.{jose.b64url(signer.sign(signing_input.encode('ascii')))}"


def build_corpus(pki_dir: Path | None = None, *, profiles: Sequence[str] = hostile_card.CHIP_PROFILES) -> Corpus:
    pki = load_or_create_pki(pki_dir)
    csca_der = pki.csca.certificate.public_bytes(Encoding.DER)
    trust = TrustStore.from_der([csca_der])
    cards = hostile_card.build_cards(pki, profiles)
    files = [card.spec.image.applet_files for card in cards.values()]

    def of(fid: int) -> list[bytes]:
        return sorted({f[fid] for f in files if fid in f})

    aa_key = ec.generate_private_key(ec.BrainpoolP256R1())
    dg11 = Dg11(full_name="NGUYEN<<VAN<AN", other_names=("NGUYEN<<AN", "VAN<<AN"), personal_number="079203012345",
                full_date_of_birth="20030201", place_of_birth="HA NOI",
                proof_of_citizenship=b"\xff\xd8\xff\xe0" + bytes(40), unknown={0x5F20: b"x"})  # fmt: skip
    dg12 = Dg12(issuing_authority="CUC CANH SAT", date_of_issue="20210415", other_names=("X<<Y",), endorsements="none",
                image_of_front=b"\xff\xd8\xff\xe0" + bytes(40), personalization_time="20210415120000")  # fmt: skip
    aa_spki = explicit_spki(aa_key.public_key())
    samples: dict[str, tuple[bytes, ...]] = {
        "dg1": tuple(of(dg_fid(1))),
        "dg2": (*of(dg_fid(2))[:1], encode_dg2(face_jpeg("fuzz", 1500))),
        "dg11": (encode_dg11(dg11),),
        "dg12": (encode_dg12(dg12),),
        "dg13": tuple(of(dg_fid(13))),
        "dg14": (*of(dg_fid(14))[:3], encode_dg14(aa_spki, key_id=1)),
        "dg15": (*of(dg_fid(15))[:2], encode_dg15(aa_spki), encode_dg15(aa_key.public_key())),
        "com": tuple(of(FID_COM)[:3]),
        "card_access": (cards[next(iter(cards))].spec.image.mf_files[FID_CARD_ACCESS], CCCD_CARD_ACCESS),
        "sod": tuple(of(FID_SOD)[:4]),
    }
    samples["spki"] = (*(tlv.decode(dg).value for dg in samples["dg15"]),
                       explicit_spki(ec.generate_private_key(ec.SECP256R1()).public_key()),
                       aa_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    samples["qr"] = tuple(card_qr_text(load_profile(name).qr_person).encode() for name in profiles)

    # trust material: a master-list signer under the test CSCA, a link certificate, a CRL, the lists themselves
    ml_key = ec.generate_private_key(ec.SECP256R1())
    ml_signer = _cert(_name("Master List Signer FUZZ"), ml_key, pki.csca.certificate.subject, pki.csca.key, ca=False,
                      serial=4242, eku=(x509.ObjectIdentifier(ID_MASTER_LIST_SIGNING_KEY),))  # fmt: skip
    new_csca_key = ec.generate_private_key(ec.BrainpoolP384R1())
    link = _cert(_name("CSCA FUZZ NEXT"), new_csca_key, pki.csca.certificate.subject, pki.csca.key, ca=True,
                 serial=4243)  # fmt: skip
    ml = master_list(ml_key, ml_signer, [pki.csca.certificate, pki.untrusted_csca.certificate, link])
    crl = (x509.CertificateRevocationListBuilder().issuer_name(pki.csca.certificate.subject)
           .last_update(dt.datetime(2025, 1, 1, tzinfo=dt.UTC)).next_update(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(12345)
                                    .revocation_date(dt.datetime(2025, 1, 1, tzinfo=dt.UTC)).build())
           .sign(pki.csca.key, hashes.SHA384()).public_bytes(Encoding.DER))  # fmt: skip
    link_der = link.public_bytes(Encoding.DER)
    untrusted_der = pki.untrusted_csca.certificate.public_bytes(Encoding.DER)
    trust_files = (
        (".der", csca_der), (".pem", pki.csca.certificate.public_bytes(Encoding.PEM)), (".der", link_der),
        (".crl", crl), (".ml", ml), (".pem", link.public_bytes(Encoding.PEM) + pki.csca.certificate.public_bytes(
            Encoding.PEM)), (".der", untrusted_der),
    )  # fmt: skip
    genuine_tbs = frozenset(t for t in (_tbs(csca_der), _tbs(link_der), _tbs(untrusted_der), _crl_tbs(crl)) if t)
    sod_cms = tuple(tlv.decode(sod).value for sod in samples["sod"])
    samples["cms"] = (ml, *sod_cms)
    samples["masterlist"] = (ml,)
    genuine_encap = {sample: parse_signed_data(sample).encap_content for sample in samples["cms"]}

    # secure messaging: protected answers and commands under fixed keys
    sm_keys = {"aes": SessionKeys(crypto.AES128, bytes(range(16)), bytes(range(100, 116))),
               "3des": SessionKeys(crypto.TDES, bytes(range(16)), bytes(range(50, 66)))}  # fmt: skip
    responses = []
    commands = []
    for suite, keys in sm_keys.items():
        for data, sw in ((b"", 0x9000), (b"\x61\x05", 0x9000), (bytes(range(223)), 0x9000), (bytes(1500), 0x9000),
                         (b"\x01\x02", 0x6282), (b"", 0x6A82)):  # fmt: skip
            protected = protect_response(keys, 2, ResponseApdu(data, sw))
            responses.append((suite, protected.data, protected.sw, data, sw))
        for plain in (CommandApdu(0x00, 0xB0, 0x9D, 0x00, le=223), CommandApdu(0x00, 0xA4, 0x02, 0x0C, b"\x01\x1e"),
                      CommandApdu(0x00, 0xB1, 0x00, 0x00, b"\x54\x02\x80\x00", le=65536, extended=True),
                      CommandApdu(0x00, 0x88, 0x00, 0x00, bytes(8), le=256)):  # fmt: skip
            commands.append((suite, protect_command(keys, 1, plain), plain))

    # office: signed commands and results (JWS, and JWE to the ward key)
    terminal = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    ward = ec.generate_private_key(ec.SECP256R1())
    ward_signer = signers.KeySigner(ward)
    base = {"iss": "office", "aud": TERMINAL_ID, "iat": NOW_INT, "exp": NOW_INT + 300}
    province = ec.generate_private_key(ec.SECP256R1())
    ds_ders = [pki.ds.certificate.public_bytes(Encoding.DER), pki.untrusted_ds.certificate.public_bytes(Encoding.DER)]
    ward_list = ds_list_claims(iss="ward-26734", ward_code=WARD_CODE, version=3, certificates=ds_ders,
                               notes={ds_ders[0]: "proven by C06 authentication 2026-05-01"}, now=NOW_INT)  # fmt: skip
    province_list = ds_list_claims(iss="province-79", ward_code=PROVINCE, version=1, certificates=ds_ders[:1],
                                   now=NOW_INT, lifetime=86400 * 365)  # fmt: skip
    ds_lists = ((ward_list, sign_ds_list(ward_signer, ward_list)),
                (province_list, sign_ds_list(signers.KeySigner(province), province_list)))  # fmt: skip
    command_claims = [
        {**base, "jti": "cmd-00000001", "cmd": "read_request", "key": {"can": "123456"},
         "challenge": AA_CHALLENGE.hex(), "profile": "identity", "include_photo": True,
         "consent_ref": "HS-2026-000123"},  # identity needs the face: residence would refuse the photo
        {**base, "jti": "cmd-00000002", "cmd": "read_request",
         "key": {"document_number": "C03012345", "date_of_birth": "030201", "date_of_expiry": "280201"}},
        {**base, "jti": "cmd-00000003", "cmd": "cancel"},
        {**base, "jti": "cmd-00000004", "cmd": "ping"},
        {**base, "jti": "cmd-00000005", "cmd": "trust_update", "ds_list": ds_lists[0][1]},
    ]  # fmt: skip
    command_tokens = tuple((claims, jose.sign_jws(ward_signer, claims, typ=jose.COMMAND_TYP))
                           for claims in command_claims)  # fmt: skip
    chip_key = ec.generate_private_key(ec.BrainpoolP256R1())
    evidence = ActiveAuthEvidence(challenge=AA_CHALLENGE, signature=sign_active_auth(chip_key, AA_CHALLENGE),
                                  public_key_spki=explicit_spki(chip_key.public_key()))  # fmt: skip
    documents = (_sample_result(), _sample_result(ProcedureProfile.RESIDENCE, verdict=Verdict.FAILED),
                 _sample_result(request_id=AA_REQUEST_ID, active_auth=evidence))  # fmt: skip
    result_tokens = []
    for seq, document in enumerate(documents, start=1):
        claims = {**_document_claims(document, seq), "kid": terminal.kid}
        jws = jose.sign_jws(terminal, claims, typ=jose.RESULT_TYP)
        result_tokens.append((claims, jws))
        result_tokens.append((claims, jose.encrypt_jwe(jws.encode("ascii"), ward.public_key())))

    pool = tuple(sample for group in samples.values() for sample in group if len(sample) < 8000)
    samples["tlv"] = tuple(sample for name, group in samples.items() if name not in ("qr", "spki") for sample in group)
    donors = donor_nodes([*pool, csca_der, link_der, crl])
    first = next(iter(cards.values()))
    return Corpus(pki, trust, cards, samples, pool, donors, genuine_encap, trust_files, genuine_tbs, sm_keys,
                  tuple(responses), tuple(commands), terminal, ward, command_tokens, ds_lists, province,
                  tuple(result_tokens),
                  known_ds_trust=TrustStore.from_der([], known_signers=[pki.ds.certificate.public_bytes(Encoding.DER)]),
                  genuine_dg13=parse_dg13(first.data_groups[13]),
                  genuine_mrz=parse_dg1(first.data_groups[1]).mrz)  # fmt: skip


# --- parsers -------------------------------------------------------------------------------------------------------


def _pick(rng: random.Random, corpus: Corpus, name: str) -> bytes:
    return mutate(rng, rng.choice(corpus.samples[name]), corpus.pool, corpus.donors)


def _parser(name: str, weight: float, parse: Callable[[bytes, Corpus], object]) -> Target:
    def run(data: bytes, corpus: Corpus) -> Outcome:
        parse(data, corpus)
        return ACCEPTED

    return Target(name, weight, lambda rng, corpus: _pick(rng, corpus, name), run)


def _genuine_dg13(corpus: Corpus) -> Any:
    return corpus.genuine_dg13


def _walk_tlv(data: bytes, _corpus: Corpus) -> object:
    tlv.read_header(data)
    top = tlv.decode_all(data)
    pending = [(node, 0) for node in top]
    while pending:
        node, depth = pending.pop()
        node.to_bytes()
        if node.constructed and depth < 64:
            pending.extend((child, depth + 1) for child in node.children())
    return tlv.decode(data)


def _qr(rng: random.Random, corpus: Corpus) -> bytes:
    sample = rng.choice(corpus.samples["qr"])
    if rng.random() < 0.4:
        return mutate_bytes(rng, sample, corpus.samples["qr"])
    fields = sample.decode("utf-8").split("|")
    for _ in range(how_many(rng, 1.0)):
        op = rng.randrange(5)
        index = rng.randrange(len(fields))
        if op == 0:
            fields[index] = rng.choice(("", "Nam", "Nữ", "01012000", "31022000", "0" * 12, "１２３４５６７８９０１２",
                                        "٠١٢٣٤٥٦٧٨", "x" * 5000, "\x00", "\ufeff", "29022023", "00000000",
                                        "99999999", "123456789", "12345678901", "Nu", "NAM"))  # fmt: skip
        elif op == 1:
            del fields[index]
        elif op == 2:
            fields.insert(index, fields[rng.randrange(len(fields))])
        elif op == 3:
            fields[index] = "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 20)))
        else:
            fields += [""] * rng.randrange(1, 20)
    return "|".join(fields).encode("utf-8", errors="surrogatepass")


def _run_qr(data: bytes, corpus: Corpus) -> Outcome:
    qr = parse_cccd_qr(data)
    repr(qr)
    qr.contradictions  # noqa: B018 - the ID-number checks run here
    encode_cccd_qr(qr)
    crosscheck_qr_dg13(qr, _genuine_dg13(corpus))
    return ACCEPTED


def _dg1(data: bytes, corpus: Corpus) -> object:
    dg1 = parse_dg1(data)
    return crosscheck_mrz_dg13(dg1.mrz, _genuine_dg13(corpus))


def _dg13(data: bytes, corpus: Corpus) -> object:
    dg13 = parse_dg13(data)
    card = next(iter(corpus.cards.values()))
    crosscheck_mrz_dg13(corpus.genuine_mrz, dg13)
    crosscheck_qr_dg13(card.qr, dg13)
    check_id_structure(dg13)
    return encode_dg13(dg13)


def _dg14(data: bytes, _corpus: Corpus) -> object:
    return chip_auth_unsupported(parse_dg14(data).security_infos)


def _card_access(data: bytes, _corpus: Corpus) -> object:
    parse_security_infos(data)
    return choose_pace_info(data)


# --- signed data: SOD, CMS, master lists, trust import -------------------------------------------------------------


def _gen_sod(rng: random.Random, corpus: Corpus) -> dict[str, Any]:
    card = corpus.cards[rng.choice(sorted(corpus.cards))]
    return {"profile": card.name,
            "data": mutate(rng, card.spec.image.applet_files[FID_SOD], corpus.pool, corpus.donors)}  # fmt: skip


def _run_sod(item: Mapping[str, Any], corpus: Corpus) -> Outcome:
    sod = parse_sod(item["data"])
    card = corpus.cards[item["profile"]]
    verdict = decide(passive_authentication(sod, card.data_groups, corpus.trust, NOW))
    if verdict is not Verdict.FAILED and sod.encap_content != card.encap_content:
        return Outcome("false_accept", f"passive authentication {verdict.value} on a changed LDSSecurityObject")
    return ACCEPTED if verdict is not Verdict.FAILED else REJECTED


def _gen_dg_hashes(rng: random.Random, corpus: Corpus) -> dict[str, Any]:
    card = corpus.cards[rng.choice(sorted(corpus.cards))]
    number = rng.choice(sorted(card.data_groups))
    return {"profile": card.name, "dg": number,
            "data": mutate(rng, card.data_groups[number], corpus.pool, corpus.donors)}  # fmt: skip


def _run_dg_hashes(item: Mapping[str, Any], corpus: Corpus) -> Outcome:
    card = corpus.cards[item["profile"]]
    groups = {**card.data_groups, item["dg"]: item["data"]}
    verdict = decide(passive_authentication(parse_sod(card.spec.image.applet_files[FID_SOD]), groups, corpus.trust,
                                            NOW))  # fmt: skip
    if verdict is not Verdict.FAILED and item["data"] != card.data_groups[item["dg"]]:
        return Outcome("false_accept", f"passive authentication {verdict.value} with a changed DG{item['dg']}")
    return ACCEPTED if verdict is not Verdict.FAILED else REJECTED


def _gen_cms(rng: random.Random, corpus: Corpus) -> dict[str, Any]:
    sample = rng.choice(corpus.samples["cms"])
    return {"sample": corpus.samples["cms"].index(sample), "data": mutate(rng, sample, corpus.pool, corpus.donors)}


def _run_cms(item: Mapping[str, Any], corpus: Corpus) -> Outcome:
    signed = parse_signed_data(item["data"])
    verify_signer(signed, find_signer_certificate(signed))
    if signed.encap_content != corpus.genuine_encap[corpus.samples["cms"][item["sample"]]]:
        return Outcome("false_accept", "the CMS signature verified over changed content")
    return ACCEPTED


def _run_masterlist(data: bytes, corpus: Corpus) -> Outcome:
    store = corpus.runtime().store
    verify_master_list(data, store.certificates, store.anchors, NOW)
    if parse_signed_data(data).encap_content != corpus.genuine_encap[corpus.samples["masterlist"][0]]:
        return Outcome("false_accept", "a master list with changed content verified")
    return ACCEPTED


def _gen_trust(rng: random.Random, corpus: Corpus) -> dict[str, Any]:
    suffix, sample = rng.choice(corpus.trust_files)
    data = mutate(rng, sample, corpus.pool, corpus.donors) if suffix != ".pem" or rng.random() < 0.5 \
        else mutate_bytes(rng, sample, corpus.pool)
    return {"suffix": rng.choice((suffix, suffix, ".der", ".pem", ".crl", ".cer")), "data": data}


def _run_trust(item: Mapping[str, Any], corpus: Corpus) -> Outcome:
    runtime = corpus.runtime()
    path = runtime.offered.with_suffix(item["suffix"])
    path.write_bytes(item["data"])
    store_dir = runtime.store.directory
    assert store_dir is not None
    try:
        runtime.store.import_file(path, at=NOW)
    finally:
        added = [p for p in store_dir.iterdir() if p.name not in runtime.store_files]
        unknown = []
        for stored in added:
            der = stored.read_bytes()
            tbs = _crl_tbs(der) if stored.suffix == ".crl" else _tbs(der)
            if tbs not in corpus.genuine_tbs:
                unknown.append(stored.name)
            stored.unlink()
        path.unlink(missing_ok=True)
    if unknown:
        return Outcome("false_accept", f"the trust store took in {', '.join(unknown)}, signed by nobody it trusts")
    return ACCEPTED


# --- secure messaging ----------------------------------------------------------------------------------------------


class _Scripted:
    def __init__(self, response: ResponseApdu) -> None:
        self._response = response

    supports_extended_length = True

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        return self._response


def _gen_sm(rng: random.Random, corpus: Corpus) -> dict[str, Any]:
    if rng.random() < 0.7:
        index = rng.randrange(len(corpus.sm_responses))
        _suite, data, sw, _plain, _plain_sw = corpus.sm_responses[index]
        sw = rng.choice((sw, sw, 0x9000, 0x6282, 0x6987, 0x6988, 0x6100, rng.randrange(65536)))
        return {"kind": "response", "index": index, "data": mutate(rng, data, corpus.pool, corpus.donors)[:65536],
                "sw": sw}  # fmt: skip
    index = rng.randrange(len(corpus.sm_commands))
    protected = corpus.sm_commands[index][1]
    header = [protected.cla, protected.ins, protected.p1, protected.p2]
    if rng.random() < 0.2:
        header[rng.randrange(4)] = rng.randrange(256)
    return {"kind": "command", "index": index, "header": header,
            "data": mutate(rng, protected.data, corpus.pool, corpus.donors)[:65535]}  # fmt: skip


def _run_sm(item: Mapping[str, Any], corpus: Corpus) -> Outcome:
    if item["kind"] == "response":
        suite, _data, _sw, plain, plain_sw = corpus.sm_responses[item["index"]]
        channel = SecureMessaging(_Scripted(ResponseApdu(item["data"], item["sw"])), corpus.sm_keys[suite])
        answer = channel.send_and_receive(CommandApdu(0x00, 0xB0, 0x9D, 0x00, le=223))
        if (answer.data, answer.sw) == (plain, plain_sw):
            return ACCEPTED
        if not answer.data and answer.sw != 0x9000 and answer.sw >> 8 != 0x61:
            return REJECTED  # a naked status (anything but success): nothing to verify, and no data accepted
        return Outcome("false_accept", "a changed secured answer was unwrapped")
    suite, _protected, plain_command = corpus.sm_commands[item["index"]]
    try:
        cla, ins, p1, p2 = item["header"]
        extended = len(item["data"]) > 255
        command = CommandApdu(cla, ins, p1, p2, item["data"], le=65536 if extended else 256, extended=extended)
    except ValueError:
        return REJECTED  # not an APDU at all: nothing reaches unwrap
    plain = unprotect_command(corpus.sm_keys[suite], 1, command)
    if plain != plain_command:
        return Outcome("false_accept", "a changed secured command was unwrapped")
    return ACCEPTED


# --- office: commands and results --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mutate_token(rng: random.Random, token: str, pool: Sequence[bytes]) -> bytes:
    """Damage a compact JWS/JWE as it travels: bytes, one decoded segment (JSON-aware), or its shape."""
    roll = rng.random()
    parts = token.split(".")
    if roll < 0.35:
        return mutate_bytes(rng, token.encode("ascii"), pool)
    if roll < 0.85:
        index = rng.randrange(len(parts))
        try:
            raw = base64.urlsafe_b64decode(parts[index] + "=" * (-len(parts[index]) % 4))
            document = json.loads(raw)
        except ValueError:
            document = None
        if isinstance(document, dict) and rng.random() < 0.7:
            raw = mutate_json(rng, document)
        else:
            raw = mutate_bytes(rng, raw if parts[index] else b"", pool)
        parts[index] = _b64(raw)
        return ".".join(parts).encode("ascii")
    op = rng.randrange(5)
    if op == 0:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(parts))
    elif op == 1:
        del parts[rng.randrange(len(parts))]
    elif op == 2:
        parts[0] = _b64(json.dumps({"alg": rng.choice(("none", "HS256", "ES256", "RS256", "ECDH-ES")),
                                    "kid": "x", "typ": rng.choice((jose.RESULT_TYP, jose.COMMAND_TYP))}).encode())
    elif op == 3:
        return (" \n" + token + "\n\x00").encode("ascii") if rng.random() < 0.5 else token.encode("utf-16")
    else:
        parts[-1] = parts[-1] + "="
    return ".".join(parts).encode("ascii")


def _gen_signed(rng: random.Random, claims: dict[str, Any], signer: signers.KeySigner, typ: str) -> bytes:
    """Claims a key holder chose to sign: hostile JSON under a valid signature (the office's own key, stolen or
    misused), still something the other side must survive."""
    header: dict[str, Any] = {"alg": "ES256", "kid": signer.kid, "typ": typ}
    header_bytes = mutate_json(rng, header) if rng.random() < 0.1 else json.dumps(header).encode()
    return _sign(signer, header_bytes, mutate_json(rng, claims)).encode("ascii")


def _gen_command(rng: random.Random, corpus: Corpus) -> dict[str, Any]:
    index = rng.randrange(len(corpus.commands))
    claims, token = corpus.commands[index]
    if rng.random() < 0.5:
        return {"index": index, "signed": False, "payload": _mutate_token(rng, token, corpus.pool)}
    signer = signers.KeySigner(corpus.ward)
    return {"index": index, "signed": True, "payload": _gen_signed(rng, claims, signer, jose.COMMAND_TYP)}


def _run_command(item: Mapping[str, Any], corpus: Corpus) -> Outcome:
    command = corpus.runtime().commands.verify(item["payload"], NOW_INT)
    if isinstance(command, ReadCommand):  # what the terminal then does with the key
        key = command.key
        if isinstance(key, CanKey):
            PacePassword.can(key.can)
        else:
            bac.BacKeys.from_mrz_information(key.mrz_information())
        command.challenge_bytes  # noqa: B018
    if not item["signed"]:
        genuine = corpus.commands[item["index"]][0]
        if command.model_dump(mode="json", exclude_unset=True) != genuine:
            return Outcome("false_accept", f"a changed {command.cmd} command was accepted")
    return ACCEPTED


def _gen_result(rng: random.Random, corpus: Corpus) -> dict[str, Any]:
    index = rng.randrange(len(corpus.results))
    claims, token = corpus.results[index]
    if rng.random() < 0.5:
        return {"index": index, "signed": False, "payload": _mutate_token(rng, token, corpus.pool)}
    payload = _gen_signed(rng, claims, corpus.terminal, jose.RESULT_TYP)
    if token.count(".") == 4:
        payload = jose.encrypt_jwe(payload, corpus.ward.public_key()).encode("ascii")
    return {"index": index, "signed": True, "payload": payload}


def _run_result(item: Mapping[str, Any], corpus: Corpus) -> Outcome:
    runtime = corpus.runtime()
    outcome = ACCEPTED
    try:
        result = verify_result(item["payload"], {corpus.terminal.kid: corpus.terminal.public_key}, NOW_INT,
                               decrypt_key=corpus.ward)  # fmt: skip
    except EdgeError:
        outcome = REJECTED
    else:
        if result.document.active_auth is not None:
            check_active_auth(result.document, AA_CHALLENGE)
        if not item["signed"]:
            genuine = corpus.results[item["index"]][0]
            seen = {"iss": result.iss, "jti": result.jti, "seq": result.seq, "iat": result.iat, "exp": result.exp,
                    "result": json.loads(result.document.to_json())}  # fmt: skip
            if any(seen[k] != genuine[k] for k in seen):
                outcome = Outcome("false_accept", "a changed result token was verified")
    try:
        runtime.results.ingest(item["payload"], float(NOW_INT))
    except Exception as exc:
        raise IngestEscaped(exc) from exc
    return outcome


class IngestEscaped(Exception):
    """The office's ``ingest`` raised: its contract is to store or quarantine every message, never to raise."""

    def __init__(self, inner: BaseException) -> None:
        super().__init__(f"{type(inner).__name__} escaped ResultStore.ingest: {inner}")
        self.inner = inner


# --- signed DS lists -----------------------------------------------------------------------------------------------


def _gen_ds_list(rng: random.Random, corpus: Corpus) -> dict[str, Any]:
    index = rng.randrange(len(corpus.ds_lists))
    claims, token = corpus.ds_lists[index]
    if rng.random() < 0.5:
        return {"index": index, "signed": False, "payload": _mutate_token(rng, token, corpus.pool)}
    signer = signers.KeySigner(corpus.ward if index == 0 else corpus.province)
    if rng.random() < 0.5:  # the key holder lists certificates of its choosing: damaged, CA, forged, anything
        entries = [dict(entry) for entry in claims["certificates"]]
        der = rng.choice((*(parse_certificate_der(e["cert"]) for e in entries), *(d for _, d in corpus.trust_files
                                                                                  if d[:1] == b"\x30")))
        entries.append({"cert": _b64(mutate(rng, der, corpus.pool, corpus.donors))})
        claims = {**claims, "certificates": entries, "version": claims["version"] + rng.randrange(0, 3)}
    header = json.dumps({"alg": "ES256", "kid": signer.kid, "typ": "cccd-edge-ds-list+jwt"}).encode()
    payload = mutate_json(rng, claims) if rng.random() < 0.6 else json.dumps(claims).encode()
    return {"index": index, "signed": True, "payload": _sign(signer, header, payload).encode("ascii")}


def parse_certificate_der(b64: str) -> bytes:
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))


def _run_ds_list(item: Mapping[str, Any], corpus: Corpus) -> Outcome:
    runtime = corpus.runtime()
    keys = list_keys(ward=corpus.ward.public_key(), province=[corpus.province.public_key()])
    verified = verify_ds_list(item["payload"], keys, ward_code=WARD_CODE, now=NOW_INT)
    target = runtime.directory / "known-signers"
    try:
        apply_ds_list(verified, trust=runtime.store, target=target, at=NOW)
        pinned = [p.read_bytes() for p in target.glob("ds-*.der")]
    finally:
        shutil.rmtree(target, ignore_errors=True)  # every input starts from no accepted list
    if not item["signed"]:
        genuine = corpus.ds_lists[item["index"]][0]
        if json.loads(verified.claims.model_dump_json(exclude_none=True)) != genuine:
            return Outcome("false_accept", "a changed DS list was accepted")
    for der in pinned:  # even the key holder's list may not pin a CA, nor a DS its installed CSCA did not sign
        cert = parse_certificate(der)
        if cert.is_ca or runtime.store.chain(cert, NOW).status == "broken":
            return Outcome("false_accept", f"pinned '{cert.subject}' (CA: {cert.is_ca}) against the installed CSCA")
    return ACCEPTED


# --- the hostile card --------------------------------------------------------------------------------------------


def _chip(level: str) -> Target:
    def generate(rng: random.Random, corpus: Corpus) -> dict[str, Any]:
        return hostile_card.generate(rng, corpus.cards, corpus.pool, corpus.donors, level)

    def run(scenario: Mapping[str, Any], corpus: Corpus) -> Outcome:
        trust = corpus.known_ds_trust if scenario.get("trust") == "known_ds" else corpus.trust
        outcome = hostile_card.run(scenario, corpus.cards[scenario["profile"]], corpus.pki, trust)
        return Outcome(outcome.status, outcome.detail)

    return Target(f"chip_{level}", 1.0, generate, run)


def genuine_inputs(corpus: Corpus) -> dict[str, list[Any]]:
    """Unchanged genuine samples in each target's input form: every one must be accepted (the oracles' sanity)."""
    parsers = ("qr", "tlv", "dg1", "dg2", "dg11", "dg12", "dg13", "dg14", "dg15", "com", "card_access", "spki",
               "masterlist")  # fmt: skip
    inputs: dict[str, list[Any]] = {name: list(corpus.samples[name]) for name in parsers}
    cards = list(corpus.cards.values())
    inputs["sod"] = [{"profile": c.name, "data": c.spec.image.applet_files[FID_SOD]} for c in cards]
    inputs["dg_hashes"] = [{"profile": c.name, "dg": n, "data": d} for c in cards for n, d in c.data_groups.items()]
    inputs["cms"] = [{"sample": i, "data": sample} for i, sample in enumerate(corpus.samples["cms"])]
    inputs["trust_import"] = [{"suffix": suffix, "data": data} for suffix, data in corpus.trust_files]
    inputs["sm"] = [{"kind": "response", "index": i, "data": r[1], "sw": r[2]}
                    for i, r in enumerate(corpus.sm_responses)]  # fmt: skip
    inputs["sm"] += [{"kind": "command", "index": i, "header": [p.cla, p.ins, p.p1, p.p2], "data": p.data}
                     for i, (_suite, p, _plain) in enumerate(corpus.sm_commands)]  # fmt: skip
    for name, tokens in (("office_cmd", corpus.commands), ("office_result", corpus.results),
                         ("ds_list", corpus.ds_lists)):  # fmt: skip
        inputs[name] = [{"index": i, "signed": False, "payload": token.encode("ascii")} for i, (_, token) in
                        enumerate(tokens)]  # fmt: skip
    for level in ("wire", "lies"):
        inputs[f"chip_{level}"] = [
            {"profile": c.name, "level": level, "seed": 1, "request": {"photo": True, "key": "can", "bac": False},
             "transport": "direct", "quirks": {}, "files": {}, "resign": None, "wire": [], "lies": [], "trust": trust}
            for c in cards for trust in ("csca", "known_ds")
        ]  # fmt: skip
    return inputs


def all_targets() -> dict[str, Target]:
    """Every target with its share of the inputs (cheap parsers many, a card read or a signature check fewer)."""
    targets = [
        Target("qr", 8.0, _qr, _run_qr),
        _parser("tlv", 10.0, lambda data, corpus: _walk_tlv(data, corpus)),
        _parser("dg1", 6.0, _dg1),
        _parser("dg2", 4.0, lambda data, _c: parse_dg2(data)),
        _parser("dg11", 4.0, lambda data, _c: parse_dg11(data)),
        _parser("dg12", 4.0, lambda data, _c: parse_dg12(data)),
        _parser("dg13", 8.0, _dg13),
        _parser("dg14", 8.0, _dg14),
        _parser("dg15", 5.0, lambda data, _c: parse_dg15(data)),
        _parser("com", 3.0, lambda data, _c: parse_com(data)),
        _parser("card_access", 5.0, _card_access),
        _parser("spki", 5.0, lambda data, _c: load_public_key(data)),
        Target("sod", 3.0, _gen_sod, _run_sod),
        Target("dg_hashes", 0.5, _gen_dg_hashes, _run_dg_hashes),
        Target("cms", 3.0, _gen_cms, _run_cms),
        Target("masterlist", 2.0, lambda rng, corpus: _pick(rng, corpus, "masterlist"), _run_masterlist),
        Target("trust_import", 2.0, _gen_trust, _run_trust),
        Target("sm", 6.0, _gen_sm, _run_sm),
        Target("office_cmd", 4.0, _gen_command, _run_command),
        Target("office_result", 3.0, _gen_result, _run_result, nothing_may_escape=True),
        Target("ds_list", 2.0, _gen_ds_list, _run_ds_list),
        _chip("wire"),
        _chip("lies"),
    ]
    return {target.name: target for target in targets}
