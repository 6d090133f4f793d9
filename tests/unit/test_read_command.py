"""`cccd-edge read` without a card: argument parsing, and how errors become one line and a distinct exit code.

The reads themselves (every exit code against a virtual card through pcscd) are in tests/stack/test_read_card.py.
"""

from __future__ import annotations

import argparse

import pytest

from edge import errors
from edge.cli import build_parser
from edge.commands import read as read_command

#: One representative of every error a read can end in, and the exit code the desk sees for it.
ERRORS: list[tuple[errors.EdgeError, int]] = [
    (errors.NoReaderError("no card reader attached"), read_command.EXIT_NO_READER),
    (errors.NoCardError("no card on any reader"), read_command.EXIT_NO_CARD),
    (errors.CardRemovedError("card removed while sending 0C B0 9D 00"), read_command.EXIT_CARD_REMOVED),
    (errors.TransmitError("answer without status word"), read_command.EXIT_READER_ERROR),
    (errors.CardTimeoutError("no answer"), read_command.EXIT_READER_ERROR),
    (errors.AccessKeyRejectedError("PACE refused the CAN"), read_command.EXIT_ACCESS_DENIED),
    (errors.PaceNotSupportedError("MSE:Set AT 6A80"), read_command.EXIT_ACCESS_FAILED),
    (errors.AccessControlError("secure channel could not be opened"), read_command.EXIT_ACCESS_FAILED),
    (errors.SessionLostError(0x6987, "READ BINARY"), read_command.EXIT_BAD_CHIP_ANSWER),
    (errors.SmIntegrityError("bad MAC"), read_command.EXIT_BAD_CHIP_ANSWER),
    (errors.StatusWordError(0x6F00, "READ BINARY"), read_command.EXIT_BAD_CHIP_ANSWER),
    (errors.LdsError("no SOD", what="EF.SOD", offset=0), read_command.EXIT_BAD_CHIP_ANSWER),
    (errors.TrustStoreError("unusable store"), read_command.EXIT_ERROR),
]


@pytest.mark.parametrize(("error", "code"), ERRORS, ids=[type(e).__name__ for e, _ in ERRORS])
def test_every_error_has_its_exit_code_and_one_line(error: errors.EdgeError, code: int) -> None:
    assert read_command.exit_code_for(error) == code
    error.add_note("while reading EF.SOD\nat offset 0")
    line = read_command.error_line(error)
    assert "\n" not in line
    assert line.startswith(f"error ({type(error).__name__}): ")
    assert "while reading EF.SOD at offset 0" in line


def test_exit_codes_are_distinct_from_verdicts_and_usage() -> None:
    verdicts = {read_command.EXIT_VERIFIED, read_command.EXIT_VERIFIED_KNOWN_SIGNER, read_command.EXIT_UNPROVEN,
                read_command.EXIT_FAILED}
    failures = {code for _, code in ERRORS}
    assert len(verdicts) == 4  # one per rung of the ladder
    assert not verdicts & failures
    assert 2 not in verdicts | failures  # argparse's usage error
    assert len(failures) == 8  # no reader, no card, removed, reader, denied, session refused, bad answer, other


def test_run_turns_an_edge_error_into_one_line_and_its_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(_args: argparse.Namespace) -> int:
        raise errors.CardRemovedError("card removed while sending 0C B0 9D 00")

    monkeypatch.setattr(read_command, "_read_and_report", fail)
    args = build_parser().parse_args(["read", "--can", "012345"])
    assert args.func(args) == read_command.EXIT_CARD_REMOVED
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error (CardRemovedError): card removed")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["--can", "012345"], ("can", "012345")),
        (["--mrz", "203012345,030201,280201"], ("mrz", ("203012345", "030201", "280201"))),
        (["--mrz", "079203012345,030201,280201"], ("mrz", ("203012345", "030201", "280201"))),  # 12-digit ID
    ],
)
def test_access_key_arguments(argv: list[str], key: tuple[str, object]) -> None:
    args = build_parser().parse_args(["read", *argv])
    assert getattr(args, key[0]) == key[1]


@pytest.mark.parametrize("argv", [["--can", "12345"], ["--can", "abcdef"], ["--mrz", "2030,0302,2802"], []])
def test_bad_access_keys_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["read", *argv])
    assert info.value.code == 2
    capsys.readouterr()
