"""Signed DS lists: real ES256 signatures, real certificates, a real directory. A list pins its Document Signers
only under a trusted key, for this ward, not older than the last one; every refusal leaves the store as it was."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import signers
from edge.daemon.ds_list import (
    RECORD_FILE,
    ListKey,
    ListRecord,
    _write_record,
    apply_ds_list,
    list_keys,
    load_record,
    verify_ds_list,
)
from edge.daemon.office_commands import MAX_COMMAND_BYTES, CommandVerifier, ReplayGuard, TrustUpdateCommand
from edge.errors import DsListRefusedError
from edge.protocol import jose
from edge.protocol.b64url import b64url_encode
from edge.protocol.ds_list import (
    DS_LIST_TYP,
    MAX_DS_CERT_BYTES,
    MAX_DS_CERTS,
    MAX_DS_LIST_BYTES,
    PROVINCE,
    ds_list_claims,
    sign_ds_list,
)
from edge.protocol.verify.certs import parse_certificate
from edge.protocol.verify.checks import DS_CHAIN, CheckStatus
from edge.protocol.verify.passive import passive_authentication
from edge.protocol.verify.trust import TrustStore
from tests.support.pki import DATA_GROUPS, NOW, Pki, by_name, der, key, make_cert, name

WARD = "26734"
NOW_S = int(NOW.timestamp())


@cache
def signer(slot: int) -> signers.KeySigner:
    return signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))


WARD_KEY, PROVINCE_KEY, FOREIGN_KEY = 0, 1, 2


def keys() -> dict[str, ListKey]:
    return list_keys(ward=signer(WARD_KEY).public_key, province=[signer(PROVINCE_KEY).public_key])


@cache
def pki(slot: int) -> Pki:
    """Slot 0: the country whose CSCA a test installs; 2, 4: Document Signers of CSCAs nobody installed."""
    return Pki.create(csca_kind="secp256r1", ds_kind="secp256r1", slot=slot)


def ds(slot: int) -> bytes:
    return der(pki(slot).ds)


def fingerprint(certificate: bytes) -> str:
    return parse_certificate(certificate).fingerprint


def token(certificates: Sequence[bytes], *, version: int = 1, by: int = WARD_KEY, ward_code: str = WARD,
          notes: dict[bytes, str] | None = None, now: int = NOW_S, lifetime: int | None = None) -> str:  # fmt: skip
    claims = ds_list_claims(iss=f"ward-{WARD}", ward_code=ward_code, version=version, certificates=certificates,
                            notes=notes, now=now, lifetime=lifetime)  # fmt: skip
    return sign_ds_list(signer(by), claims)


def raw_token(claims: dict[str, Any], *, by: int = WARD_KEY, typ: str = DS_LIST_TYP) -> str:
    """Claims the signing side would refuse, signed all the same (a buggy or hostile signer)."""
    return jose.sign_jws(signer(by), claims, typ=typ)


def pin(tmp_path: Path, list_token: str | bytes, *, store: TrustStore | None = None,
        ward_code: str | None = WARD) -> Any:  # fmt: skip
    verified = verify_ds_list(list_token, keys(), ward_code=ward_code, now=NOW_S)
    return apply_ds_list(verified, trust=store or TrustStore.load(tmp_path / "etc"), target=tmp_path / "signers",
                         at=NOW)  # fmt: skip


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*"))} if directory.is_dir() else {}


def loaded(tmp_path: Path) -> TrustStore:
    return TrustStore.load(tmp_path / "etc", signers_dir=tmp_path / "signers")


# --- accepted ----------------------------------------------------------------------------------------------------


def test_a_list_signed_by_the_ward_pins_its_signer_and_that_signers_card_passes_as_known(tmp_path: Path) -> None:
    card = pki(2)
    before = by_name(passive_authentication(card.sod(), DATA_GROUPS, loaded(tmp_path), NOW))
    assert before[DS_CHAIN].status is CheckStatus.ISSUER_NOT_TRUSTED

    report = pin(tmp_path, token([ds(2)], notes={ds(2): "proven by C06 authentication 2026-12-01"}))

    assert (report.version, report.listed, report.already_present, report.removed) == (1, 1, 0, ())
    assert [entry.fingerprint for entry in report.added] == [fingerprint(ds(2))]
    store = loaded(tmp_path)
    assert [entry.kind for entry in store.entries()] == ["DS"]
    after = by_name(passive_authentication(card.sod(), DATA_GROUPS, store, NOW))
    assert after[DS_CHAIN].status is CheckStatus.KNOWN_SIGNER
    record = load_record(tmp_path / "signers")
    accepted = record.lists[signer(WARD_KEY).kid]
    assert accepted.version == 1
    assert accepted.notes == {fingerprint(ds(2)): "proven by C06 authentication 2026-12-01"}
    assert (tmp_path / "signers" / f"ds-{fingerprint(ds(2)).lower()}.der").stat().st_mode & 0o777 == 0o644


def test_a_province_list_is_accepted_and_a_ds_under_an_installed_csca_that_signed_it_too(tmp_path: Path) -> None:
    store = TrustStore.from_der([der(pki(0).csca)], directory=tmp_path / "etc")
    report = pin(tmp_path, token([ds(0), ds(2)], by=PROVINCE_KEY, ward_code=PROVINCE), store=store)
    assert report.listed == 2
    assert len(loaded(tmp_path).known_signers) == 2


def test_the_same_list_again_changes_nothing_and_says_so(tmp_path: Path) -> None:
    list_token = token([ds(2)], version=3)
    pin(tmp_path, list_token)
    before = snapshot(tmp_path / "signers")
    again = pin(tmp_path, list_token)
    assert again.repeated
    assert again.added == ()
    assert again.already_present == 1
    assert snapshot(tmp_path / "signers") == before


def test_a_newer_list_retires_what_the_same_keys_older_list_pinned_but_not_another_keys(tmp_path: Path) -> None:
    pin(tmp_path, token([ds(2), ds(4)], version=1))
    pin(tmp_path, token([ds(4)], version=1, by=PROVINCE_KEY, ward_code=PROVINCE))
    report = pin(tmp_path, token([], version=2))  # the ward withdraws both of its signers
    assert report.removed == (fingerprint(ds(2)),)  # ds(4) stays: the province still vouches for it
    assert {c.fingerprint for c in loaded(tmp_path).known_signers} == {fingerprint(ds(4))}


def test_an_interrupted_retirement_is_finished_by_the_next_import(tmp_path: Path) -> None:
    pin(tmp_path, token([ds(2), ds(4)], version=1))
    record_path = tmp_path / "signers" / RECORD_FILE
    record = json.loads(record_path.read_text())
    record["retired"] = [fingerprint(ds(2))]  # as if a crash hit between recording v2 and removing the file
    record["lists"][signer(WARD_KEY).kid]["fingerprints"] = [fingerprint(ds(4))]
    record_path.write_text(json.dumps(record))
    report = pin(tmp_path, token([ds(4)], version=2))
    assert report.removed == (fingerprint(ds(2)),)
    assert load_record(tmp_path / "signers").retired == ()


def test_a_planted_csca_in_the_signers_directory_is_not_loaded(tmp_path: Path) -> None:
    """The daemon can write there: only ds-* certificates count, so it cannot make itself a CSCA."""
    pin(tmp_path, token([ds(2)]))
    (tmp_path / "signers" / "csca-planted.der").write_bytes(der(pki(4).csca))
    (tmp_path / "signers" / "ds-planted.crl").write_bytes(b"not even a CRL")
    store = loaded(tmp_path)
    assert store.certificates == ()
    assert store.crls == ()
    assert [c.fingerprint for c in store.known_signers] == [fingerprint(ds(2))]


# --- refused, and nothing changes ------------------------------------------------------------------------------


def _alg_none(list_token: str) -> str:
    _head, body, _ = list_token.split(".")
    header = {"alg": "none", "kid": signer(WARD_KEY).kid, "typ": DS_LIST_TYP}
    return f"{jose.b64url(json.dumps(header).encode())}.{body}."


def _tampered(list_token: str) -> str:
    head, body, sig = list_token.split(".")
    claims = json.loads(jose.b64url_decode(body))
    claims["certificates"].append({"cert": b64url_encode(ds(4))})
    return f"{head}.{jose.b64url(json.dumps(claims).encode())}.{sig}"


def _claims(**changes: Any) -> dict[str, Any]:
    base = ds_list_claims(iss="ward-x", ward_code=WARD, version=1, certificates=[ds(2)], now=NOW_S)
    return {**base, **changes}


CA_LIST = [der(pki(4).csca)]
#: A DS bearing the installed CSCA's name, signed by another key: a forger's DS must not become an anchor.
CONTRADICTING = der(make_cert(name("DS ROGUE"), key("secp256r1", 7), pki(0).csca.subject, key("secp256r1", 8),
                              ca=False))  # fmt: skip

REFUSALS: dict[str, tuple[Callable[[], str | bytes], str]] = {
    "unsigned (alg none)": (lambda: _alg_none(token([ds(2)])), "unsigned"),
    "no signature part": (lambda: token([ds(2)]).rsplit(".", 1)[0] + ".", "unsigned"),
    "signed by a foreign key": (lambda: token([ds(2)], by=FOREIGN_KEY), "unknown_key"),
    "claims changed after signing": (lambda: _tampered(token([ds(2)])), "bad_signature"),
    "expired": (lambda: token([ds(2)], now=NOW_S - 90 * 86400, lifetime=30 * 86400), "expired"),
    "issued in the future": (lambda: token([ds(2)], now=NOW_S + 3600), "expired"),
    "for another ward": (lambda: token([ds(2)], ward_code="99999"), "wrong_ward"),
    "ward key speaking for the province": (lambda: token([ds(2)], ward_code=PROVINCE), "wrong_ward"),
    "a CA certificate": (lambda: token(CA_LIST), "certificate_refused"),
    "a DS contradicting the installed CSCA": (lambda: token([ds(2), CONTRADICTING]), "certificate_refused"),
    "not a certificate": (lambda: raw_token(_claims(certificates=[{"cert": b64url_encode(b"junk")}])),
                          "certificate_refused"),
    "an office command, not a list": (lambda: raw_token(_claims(), typ=jose.COMMAND_TYP), "malformed"),
    "an unknown claim": (lambda: raw_token(_claims(extra=1)), "malformed"),
    "version true": (lambda: raw_token(_claims(version=True)), "malformed"),
    "version 0": (lambda: raw_token(_claims(version=0)), "malformed"),
    "a certificate twice": (lambda: raw_token(_claims(certificates=[{"cert": b64url_encode(ds(2))}] * 2)),
                            "malformed"),
    "a note that rewrites the line": (lambda: raw_token(_claims(certificates=[
        {"cert": b64url_encode(ds(2)), "note": "ok\r\u202eOK"}])), "malformed"),
    "too many certificates": (lambda: raw_token(_claims(certificates=[{"cert": "AA"}] * (MAX_DS_CERTS + 1))),
                              "malformed"),
    "a certificate too large": (lambda: raw_token(_claims(certificates=[
        {"cert": b64url_encode(bytes(MAX_DS_CERT_BYTES + 1))}])), "malformed"),
    "a token too large": (lambda: "e" * (MAX_DS_LIST_BYTES + 1), "malformed"),
    "not ASCII": (lambda: token([ds(2)]).encode() + "\u00e9".encode(), "malformed"),
    "garbage": (lambda: b"\x00\xff", "malformed"),
    "deep JSON header": (lambda: f"{jose.b64url(b'[' * 100_000)}.e30.AA", "malformed"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_a_refused_list_changes_nothing(case: str, tmp_path: Path) -> None:
    make, reason = REFUSALS[case]
    store = TrustStore.from_der([der(pki(0).csca)], directory=tmp_path / "etc")
    pin(tmp_path, token([ds(4)], version=1, by=PROVINCE_KEY, ward_code=PROVINCE), store=store)  # something to keep
    before = snapshot(tmp_path / "signers")
    with pytest.raises(DsListRefusedError) as refused:
        pin(tmp_path, make(), store=store)
    assert refused.value.reason == reason, refused.value
    assert refused.value.reason in DsListRefusedError.REASONS
    assert snapshot(tmp_path / "signers") == before


def test_an_older_or_rewritten_version_is_refused_as_not_newer(tmp_path: Path) -> None:
    pin(tmp_path, token([ds(2)], version=5))
    before = snapshot(tmp_path / "signers")
    with pytest.raises(DsListRefusedError, match="version 4 is older than version 5") as older:
        pin(tmp_path, token([ds(2), ds(4)], version=4))
    with pytest.raises(DsListRefusedError, match="already accepted with other content") as rewritten:
        pin(tmp_path, token([ds(2), ds(4)], version=5))
    assert older.value.reason == rewritten.value.reason == "not_newer"
    assert snapshot(tmp_path / "signers") == before


def test_a_damaged_record_refuses_rather_than_forgets_the_version(tmp_path: Path) -> None:
    pin(tmp_path, token([ds(2)], version=5))
    (tmp_path / "signers" / RECORD_FILE).write_text("{\"lists\": ")
    before = snapshot(tmp_path / "signers")
    with pytest.raises(DsListRefusedError) as refused:
        pin(tmp_path, token([ds(4)], version=1))
    assert refused.value.reason == "record_damaged"
    assert snapshot(tmp_path / "signers") == before


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_list_is_refused_with_a_reason_or_pins_exactly_what_was_signed(data: st.DataObject,
                                                                                 tmp_path: Path) -> None:
    genuine = token([ds(2)], version=7).encode()
    position = data.draw(st.integers(0, len(genuine) - 1))
    mutated = genuine[:position] + data.draw(st.binary(min_size=0, max_size=3)) + genuine[position + 1:]
    target = tmp_path / f"m{abs(hash(mutated))}"
    try:
        verified = verify_ds_list(mutated, keys(), ward_code=WARD, now=NOW_S)
        apply_ds_list(verified, trust=TrustStore.from_der(()), target=target, at=NOW)
        outcome = "pinned"
    except DsListRefusedError as exc:
        outcome = exc.reason
    assert outcome in ("pinned", *DsListRefusedError.REASONS)
    if outcome == "pinned":  # only a spelling the signature still covers (e.g. a trailing space)
        pinned = TrustStore.load(tmp_path / "none", signers_dir=target).known_signers
        assert [c.fingerprint for c in pinned] == [fingerprint(ds(2))]


# --- the office command that carries it ------------------------------------------------------------------------


def test_a_trust_update_command_with_the_largest_list_fits_the_command_cap(tmp_path: Path) -> None:
    ward = signer(WARD_KEY)
    padding = "A" * (MAX_DS_LIST_BYTES - 100)  # a list token at its cap (verified later, by the terminal)
    claims = {"iss": f"ward-{WARD}", "aud": "T-01", "jti": "trust-update-1", "iat": int(time.time()),
              "exp": int(time.time()) + 60, "cmd": "trust_update", "ds_list": padding}
    payload = jose.sign_jws(ward, claims, typ=jose.COMMAND_TYP).encode()
    assert len(payload) <= MAX_COMMAND_BYTES
    replay = ReplayGuard(tmp_path / "commands.db")
    try:
        command = CommandVerifier(ward.public_key, "T-01", replay).verify(payload, int(time.time()))
    finally:
        replay.close()
    assert isinstance(command, TrustUpdateCommand)
    assert command.ds_list == padding


# --- the command lines ---------------------------------------------------------------------------------------------


def _key_files(tmp_path: Path, label: str) -> tuple[Path, Path]:
    """A P-256 key as provisioning keeps it (0600 PEM) and its public half as terminals get it."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    private, public = tmp_path / f"{label}.key", tmp_path / f"{label}.pub"
    signers.write_private_key(private_key, private)
    public.write_bytes(private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _certificate_files(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "ds2.der", tmp_path / "ds4.pem"
    first.write_bytes(ds(2))
    second.write_bytes(pki(4).ds.public_bytes(serialization.Encoding.PEM))
    return first, second


def sign_cli(*argv: str) -> int:
    from provisioning.__main__ import main

    return main(list(argv))


def edge_cli(*argv: str) -> int:
    from edge.cli import main

    return main(list(argv))


def test_provisioning_signs_trust_import_pins_and_an_older_list_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ward_key, ward_pub = _key_files(tmp_path, "ward-command")
    _, foreign_pub = _key_files(tmp_path, "foreign")
    first, second = _certificate_files(tmp_path)
    v2, v1 = tmp_path / "v2.jws", tmp_path / "v1.jws"
    assert sign_cli("ds-list", "sign", "--key", str(ward_key), "--version", "2", "--ward", WARD,
                    "--note", f"{first}=proven by C06 authentication 2026-12-01", str(first), str(second),
                    "-o", str(v2)) == 0  # fmt: skip
    assert sign_cli("ds-list", "sign", "--key", str(ward_key), "--version", "1", "--ward", WARD, str(first),
                    "-o", str(v1)) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"signed DS list version 2 for ward {WARD}" in out
    assert v2.stat().st_mode & 0o777 == 0o644

    store = tmp_path / "store"
    assert edge_cli("trust", "import", "--store", str(store), str(v2)) == 1
    assert "REFUSED" in (out := capsys.readouterr().out)
    assert "name the key that signs it" in out
    assert edge_cli("trust", "import", "--store", str(store), "--ds-list-key", str(foreign_pub), str(v2)) == 1
    assert f"REFUSED {v2}: unknown_key: signed by key" in capsys.readouterr().out
    assert edge_cli("trust", "import", "--store", str(store), "--ds-list-key", str(ward_pub), "--ward", "99999",
                    str(v2)) == 1  # fmt: skip
    assert f"REFUSED {v2}: wrong_ward" in capsys.readouterr().out
    assert not store.exists()

    assert edge_cli("trust", "import", "--store", str(store), "--ds-list-key", str(ward_pub), "--ward", WARD,
                    str(v2)) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"DS list {v2}: version 2 from ward-{WARD} for {WARD}" in out
    assert "2 added, 0 already installed, 0 removed" in out
    assert f"+ DS   {fingerprint(ds(2))}" in out
    assert "(proven by C06 authentication 2026-12-01)" in out

    assert edge_cli("trust", "import", "--store", str(store), "--ds-list-key", str(ward_pub), str(v1)) == 1
    assert f"REFUSED {v1}: not_newer: version 1 is older than version 2" in capsys.readouterr().out
    assert len(TrustStore.load(store).known_signers) == 2

    assert edge_cli("trust", "list", "--store", str(store)) == 0
    out = capsys.readouterr().out
    assert out.count("\nDS   ") == 2
    assert "note: proven by C06 authentication 2026-12-01" in out
    assert f"DS list version 2 from ward-{WARD} for {WARD}" in out


def test_provisioning_refuses_to_sign_a_ca_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ward_key, _ = _key_files(tmp_path, "ward-command")
    csca = tmp_path / "csca.der"
    csca.write_bytes(der(pki(4).csca))
    out = tmp_path / "list.jws"
    assert sign_cli("ds-list", "sign", "--key", str(ward_key), "--version", "1", "--ward", WARD, str(csca),
                    "-o", str(out)) == 1  # fmt: skip
    assert "is a CA certificate, not a Document Signer" in capsys.readouterr().err
    assert not out.exists()


def test_trust_import_with_the_terminal_config_pins_where_the_daemon_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ward_key, ward_pub = _key_files(tmp_path, "ward-command")
    province_key, province_pub = _key_files(tmp_path, "province")
    first, second = _certificate_files(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(f"""terminal_id = "T-01"
ward_code = "{WARD}"
[paths]
state_dir = "{tmp_path / 'state'}"
ward_command_key = "{ward_pub}"
trust_store = "{tmp_path / 'etc'}"
[trust]
ds_list_keys = ["{province_pub}"]
""")
    ward_list, province_list = tmp_path / "ward.jws", tmp_path / "province.jws"
    assert sign_cli("ds-list", "sign", "--key", str(ward_key), "--version", "1", "--ward", WARD, str(first),
                    "-o", str(ward_list)) == 0  # fmt: skip
    assert sign_cli("ds-list", "sign", "--key", str(province_key), "--version", "9", "--province", str(second),
                    "-o", str(province_list)) == 0  # fmt: skip
    capsys.readouterr()
    assert edge_cli("trust", "import", "--config", str(config), str(ward_list), str(province_list)) == 0
    out = capsys.readouterr().out
    assert out.count(f"pinned in {tmp_path / 'state' / 'known-signers'}") == 2
    assert not (tmp_path / "etc").exists()  # root's store is not where lists go
    assert edge_cli("trust", "list", "--config", str(config)) == 0
    out = capsys.readouterr().out
    assert "version 1 from ward-26734" in out
    assert "version 9 from province for province" in out
    assert out.count("\nDS   ") == 2


def test_a_record_that_cannot_even_be_created_is_a_storage_refusal(tmp_path: Path) -> None:
    """The temporary file is the first write: a directory gone (or out of inodes) refuses the list as ``storage``,
    never an OSError escaping the import or the daemon's trust_update."""
    with pytest.raises(DsListRefusedError) as refused:
        _write_record(tmp_path / "gone", ListRecord())
    assert refused.value.reason == "storage"
