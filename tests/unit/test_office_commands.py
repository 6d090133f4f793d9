"""Office commands: only fresh, unreplayed, well-formed commands signed by the ward key for this terminal pass."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import signers
from edge.daemon.office_commands import (
    MAX_COMMAND_BYTES,
    CancelCommand,
    CommandVerifier,
    PingCommand,
    ReadCommand,
    ReplayGuard,
)
from edge.errors import CommandRejectedError
from edge.protocol import jose
from edge.protocol.access.policy import CanKey, MrzKey
from edge.protocol.clock import TimeEvidence
from edge.protocol.procedures import ProcedureProfile
from tests.support.poison_messages import poison_messages

NOW = 1_800_000_000
WARD = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[ReplayGuard]:
    guard = ReplayGuard(tmp_path / "state" / "commands.db")
    yield guard
    guard.close()


@pytest.fixture
def verifier(replay: ReplayGuard) -> CommandVerifier:
    return CommandVerifier(WARD.public_key, "T-01", replay)


def command(cmd: str = "ping", *, signer: jose.Signer = WARD, iat: int = NOW, lifetime: int = 60,
            **fields: Any) -> bytes:
    claims = {"iss": "ward-26734", "aud": "T-01", "jti": str(uuid.uuid4()), "iat": iat, "exp": iat + lifetime,
              "cmd": cmd, **fields}
    return jose.sign_jws(signer, claims, typ=jose.COMMAND_TYP).encode()


def rejected(verifier: CommandVerifier, payload: bytes, now: int = NOW) -> str:
    with pytest.raises(CommandRejectedError) as info:
        verifier.verify(payload, now)
    return info.value.reason


def test_accepted_commands(verifier: CommandVerifier) -> None:
    assert isinstance(verifier.verify(command("ping"), NOW), PingCommand)
    assert isinstance(verifier.verify(command("cancel"), NOW), CancelCommand)
    request = verifier.verify(command("read_request", key={"can": "012345"}, challenge="0102030405060708",
                                      profile="identity"), NOW)
    assert isinstance(request, ReadCommand)
    assert request.key == CanKey("012345")  # the protocol's key type: what read_chip takes, nothing to convert
    assert request.challenge_bytes == bytes(range(1, 9))
    assert "012345" not in repr(request)  # the CAN never reaches a log through repr
    mrz = verifier.verify(command("read_request", key={"document_number": "203012345", "date_of_birth": "030201",
                                                       "date_of_expiry": "280201"}), NOW)
    assert isinstance(mrz, ReadCommand)
    assert mrz.key == MrzKey("203012345", "030201", "280201")
    assert mrz.model_dump(mode="json")["key"] == {"document_number": "203012345", "date_of_birth": "030201",
                                                  "date_of_expiry": "280201"}  # fmt: skip


def test_forged(verifier: CommandVerifier) -> None:
    intruder = signers.KeySigner(ec.generate_private_key(ec.SECP256R1()))
    assert rejected(verifier, command(signer=intruder)) == "unknown_key"

    class Impostor:  # claims the ward's kid, signs with its own key
        kid, alg = WARD.kid, "ES256"

        def sign(self, data: bytes) -> bytes:
            return intruder.sign(data)

    assert rejected(verifier, command(signer=Impostor())) == "bad_signature"
    head, body, sig = command("cancel").decode().split(".")
    tampered = json.loads(jose.b64url_decode(body)) | {"cmd": "read_request", "key": {"can": "999999"}}
    assert rejected(verifier, f"{head}.{jose.b64url(json.dumps(tampered).encode())}.{sig}".encode()) == \
        "bad_signature"


def test_expired_and_future(verifier: CommandVerifier) -> None:
    assert rejected(verifier, command(iat=NOW - 1000, lifetime=60)) == "expired"
    assert rejected(verifier, command(iat=NOW + 1000)) == "expired"
    assert rejected(verifier, command(lifetime=3600)) == "malformed"  # longer than MAX_LIFETIME


def test_replayed_even_after_restart(tmp_path: Path, verifier: CommandVerifier) -> None:
    payload = command("cancel")
    verifier.verify(payload, NOW)
    assert rejected(verifier, payload) == "replayed"
    again = ReplayGuard(tmp_path / "state" / "commands.db")
    try:
        assert rejected(CommandVerifier(WARD.public_key, "T-01", again), payload, NOW + 30) == "replayed"
    finally:
        again.close()
    assert (tmp_path / "state" / "commands.db").stat().st_mode & 0o077 == 0


def test_wrong_terminal_unknown_and_malformed(verifier: CommandVerifier) -> None:
    other = jose.sign_jws(WARD, {"iss": "w", "aud": "T-99", "jti": str(uuid.uuid4()), "iat": NOW,
                                 "exp": NOW + 60, "cmd": "ping"}, typ=jose.COMMAND_TYP).encode()
    assert rejected(verifier, other) == "wrong_terminal"
    assert rejected(verifier, command("format_disk")) == "unknown_command"
    assert rejected(verifier, command("read_request", key={"can": "12345"})) == "malformed"
    assert rejected(verifier, command("read_request", key={"can": "123456"}, challenge="xyz")) == "malformed"
    assert rejected(verifier, command("ping", extra=1)) == "malformed"
    wrong_typ = jose.sign_jws(WARD, {"iss": "w", "aud": "T-01", "jti": str(uuid.uuid4()), "iat": NOW,
                                     "exp": NOW + 60, "cmd": "ping"}, typ=jose.RESULT_TYP).encode()
    assert rejected(verifier, wrong_typ) == "malformed"
    for garbage in (b"", b"ping", b"\xff\xfe", b"a.b.c", b"{}"):
        assert rejected(verifier, garbage) == "malformed"


# --- fuzzing: whatever arrives on /cmd ends as a command or a CommandRejectedError, never another exception ---------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150)
@given(payload=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_are_rejected_with_a_reason(tmp_path_factory: pytest.TempPathFactory, payload: bytes) -> None:
    guard = ReplayGuard(tmp_path_factory.mktemp("fuzz") / "commands.db")
    try:
        assert rejected(CommandVerifier(WARD.public_key, "T-01", guard), payload)
    finally:
        guard.close()


@settings(max_examples=150)
@given(claims=st.dictionaries(st.sampled_from(["iss", "aud", "jti", "iat", "exp", "cmd", "key", "profile",
                                                 "challenge", "x"]), _JSON, max_size=8))
def test_signed_but_malformed_claims_are_rejected_with_a_reason(tmp_path_factory: pytest.TempPathFactory,
                                                                claims: dict[str, Any]) -> None:  # fmt: skip
    guard = ReplayGuard(tmp_path_factory.mktemp("fuzz") / "commands.db")
    verifier = CommandVerifier(WARD.public_key, "T-01", guard)
    payload = jose.sign_jws(WARD, claims, typ=jose.COMMAND_TYP).encode()
    try:  # a random claim set never names this terminal ("T-01") and a valid command: it must be refused
        assert rejected(verifier, payload)
    finally:
        guard.close()


# --- hostile payloads that once escaped as RecursionError / UnicodeEncodeError --------------------------------------


@pytest.mark.parametrize("name", sorted(poison_messages(WARD, jose.COMMAND_TYP)))
def test_poison_payloads_are_rejected_as_malformed(verifier: CommandVerifier, name: str) -> None:
    assert rejected(verifier, poison_messages(WARD, jose.COMMAND_TYP)[name]) == "malformed"


def test_an_oversize_payload_is_rejected_unread(verifier: CommandVerifier) -> None:
    padding = "x" * MAX_COMMAND_BYTES
    assert rejected(verifier, command("ping", note=padding)) == "malformed"


@pytest.mark.parametrize("key", [{"can": "１２３４５６"}, {"can": "١٢٣٤٥٦"},
                                 {"document_number": "203012345", "date_of_birth": "０３０２０１",
                                  "date_of_expiry": "280201"}])  # fmt: skip
def test_keys_of_non_ascii_digits_are_malformed(verifier: CommandVerifier, key: dict[str, str]) -> None:
    """Unicode digits passed ``\\d`` and crashed PACE when the CAN was encoded as ASCII."""
    assert rejected(verifier, command("read_request", key=key)) == "malformed"


# --- a terminal whose clock is not synchronised ------------------------------------------------------------------


def unsynced(system_time: int, floor: int) -> TimeEvidence:
    return TimeEvidence.unsynchronised(datetime.fromtimestamp(system_time, UTC), datetime.fromtimestamp(floor, UTC))


def test_a_terminal_booted_in_1970_still_hears_the_office(verifier: CommandVerifier) -> None:
    """With a trusted 1970 clock every fresh command was 'issued in the future'; without a synchronised clock only
    the floor judges it, and the command's iat can then give the terminal the office's time."""
    assert rejected(verifier, command("ping"), now=5) == "expired"  # a 1970 clock taken at its word
    ping = verifier.verify(command("ping"), unsynced(5, NOW - 30 * 86400))
    assert isinstance(ping, PingCommand)
    assert ping.iat == NOW


def test_without_a_clock_the_floor_refuses_what_surely_expired_and_replays_stay_refused(
    verifier: CommandVerifier,
) -> None:
    floor = NOW
    old = command("ping", iat=NOW - 3600)  # expired an hour before a time known to have passed
    with pytest.raises(CommandRejectedError, match="knows has passed") as info:
        verifier.verify(old, unsynced(5, floor))
    assert info.value.reason == "expired"
    fresh = command("ping", iat=NOW + 10)
    assert isinstance(verifier.verify(fresh, unsynced(5, floor)), PingCommand)
    assert rejected_unsynced(verifier, fresh, unsynced(5, floor)) == "replayed"


def test_a_clock_running_a_year_ahead_does_not_purge_the_replay_guard(verifier: CommandVerifier) -> None:
    """Seen jti values are purged by the floor, never by an untrusted clock that would forget them all."""
    accepted = command("ping")
    verifier.verify(accepted, NOW)  # while the clock was trusted
    a_year_ahead = unsynced(NOW + 365 * 86400, NOW - 86400)
    assert rejected_unsynced(verifier, accepted, a_year_ahead) == "replayed"


def rejected_unsynced(verifier: CommandVerifier, payload: bytes, when: TimeEvidence) -> str:
    with pytest.raises(CommandRejectedError) as info:
        verifier.verify(payload, when)
    return info.value.reason


def test_a_read_request_must_fit_its_procedure(replay: ReplayGuard) -> None:
    """online_check sends the chip's files: refused unless results are encrypted to the ward; a photo asked for under
    a profile that never needs the face is refused, not silently left out; consent_ref travels as a record id."""
    plain = CommandVerifier(WARD.public_key, "T-01", replay)
    key = {"can": "012345"}
    assert rejected(plain, command("read_request", key=key, profile="online_check")) == "encryption_required"
    assert rejected(plain, command("read_request", key=key, profile="residence", include_photo=True)) == \
        "photo_not_needed"  # fmt: skip
    assert rejected(plain, command("read_request", key=key, include_photo=True)) == "photo_not_needed"  # default
    accepted = plain.verify(command("read_request", key=key, profile="identity", include_photo=True,
                                    consent_ref="HS-2026-000123"), NOW)  # fmt: skip
    assert isinstance(accepted, ReadCommand)
    assert accepted.consent_ref == "HS-2026-000123"
    assert rejected(plain, command("read_request", key=key, consent_ref="Nguyễn Văn An")) == "malformed"
    encrypted = CommandVerifier(WARD.public_key, "T-01", replay, encrypted=True,
                                default_profile=ProcedureProfile.ONLINE_CHECK)  # fmt: skip
    for fields in ({"profile": "online_check", "include_photo": True}, {}):  # named, and the terminal's default
        assert isinstance(encrypted.verify(command("read_request", key=key, **fields), NOW), ReadCommand)
    with pytest.raises(CommandRejectedError) as info:
        plain.verify(command("read_request", key=key, profile="online_check"), NOW)
    assert info.value.jti is not None  # the office can match the refusal on /event to its request
