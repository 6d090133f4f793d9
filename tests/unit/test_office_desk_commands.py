"""The office's own commands (edge/office/commands.py) are what a terminal accepts: a read_request with a fresh AA
challenge the terminal hands to the chip, and a cancel; replays and other terminals are refused as ever."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge.daemon.office_commands import CommandVerifier, ReplayGuard
from edge.errors import CommandError, CommandRejectedError
from edge.office.commands import sign_cancel, sign_read_request
from edge.protocol.access.policy import CanKey
from edge.protocol.commands import CancelCommand, ReadCommand
from edge.protocol.result import ProcedureProfile
from edge.signers import KeySigner

NOW = 1_800_000_000


@pytest.fixture
def ward_key() -> KeySigner:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()))


def _verifier(ward_key: KeySigner, tmp_path: Path, terminal: str = "T-01") -> CommandVerifier:
    return CommandVerifier(ward_key.public_key, terminal, ReplayGuard(tmp_path / "seen.db"))


def test_a_desk_read_request_verifies_at_its_terminal_with_a_fresh_challenge(ward_key: KeySigner,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    first = sign_read_request(ward_key, ward="26734", terminal="T-01", key=CanKey("012345"), now=NOW,
                              profile=ProcedureProfile.IDENTITY, include_photo=True)
    second = sign_read_request(ward_key, ward="26734", terminal="T-01", key=CanKey("012345"), now=NOW)
    assert first.challenge is not None
    assert len(first.challenge) == 8
    assert first.challenge != second.challenge
    assert first.jti != second.jti
    assert first.topic("cccd-edge/v1") == "cccd-edge/v1/26734/T-01/cmd"
    command = _verifier(ward_key, tmp_path).verify(first.token, NOW + 1)
    assert isinstance(command, ReadCommand)
    assert command.challenge_bytes == first.challenge
    assert command.key == CanKey("012345")
    assert (command.profile, command.include_photo, command.jti) == (ProcedureProfile.IDENTITY, True, first.jti)
    assert b"012345" not in repr(first).encode()  # the key is in the token only


def test_a_desk_command_is_refused_by_another_terminal_and_when_replayed(ward_key: KeySigner,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    cancel = sign_cancel(ward_key, ward="26734", terminal="T-01", now=NOW)
    with pytest.raises(CommandRejectedError) as other:
        _verifier(ward_key, tmp_path / "other", "T-02").verify(cancel.token, NOW)
    assert other.value.reason == "wrong_terminal"
    verifier = _verifier(ward_key, tmp_path)
    assert isinstance(verifier.verify(cancel.token, NOW), CancelCommand)
    with pytest.raises(CommandRejectedError) as replay:
        verifier.verify(cancel.token, NOW)
    assert replay.value.reason == "replayed"


def test_a_command_out_of_shape_is_a_command_error_that_never_quotes_the_key(ward_key: KeySigner) -> None:
    """A ward name longer than a command allows (a province gateway naming what a terminal reported): a typed
    refusal the API and the pages answer as such, not pydantic's ValidationError with the CAN in its input."""
    with pytest.raises(CommandError) as read:
        sign_read_request(ward_key, ward="w" * 300, terminal="T-01", key=CanKey("123456"), now=NOW)
    assert "123456" not in str(read.value)
    with pytest.raises(CommandError):
        sign_cancel(ward_key, ward="w" * 300, terminal="T-01", now=NOW)
