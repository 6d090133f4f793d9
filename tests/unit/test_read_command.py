"""`cccd-edge read` without a card: argument parsing, and how errors become one line and a distinct exit code.

The reads themselves (every exit code against a virtual card through pcscd) are in tests/stack/test_read_card.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge import errors
from edge.cli import build_parser
from edge.commands import read as read_command
from edge.protocol.lds.dg13 import Dg13, encode_dg13, parse_dg13
from edge.protocol.result import citizen_from

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
    monkeypatch.setenv(read_command.CAN_ENV, "012345")
    args = build_parser().parse_args(["read"])
    assert args.func(args) == read_command.EXIT_CARD_REMOVED
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error (CardRemovedError): card removed")
    assert err.count("\n") == 1


class Stdin(io.StringIO):
    """Piped stdin (no terminal: nothing is prompted)."""

    def isatty(self) -> bool:
        return False


def key_from(argv: list[str], env: dict[str, str] | None = None,
             stdin: str = "") -> tuple[tuple[str | None, tuple[str, str, str] | None], str]:  # fmt: skip
    """(the resolved key, the warnings printed)."""
    warn = io.StringIO()
    args = build_parser().parse_args(["read", *argv])
    return read_command.access_key(args, env or {}, Stdin(stdin), warn), warn.getvalue()


MRZ = ("203012345", "030201", "280201")


@pytest.mark.parametrize(
    ("argv", "env", "stdin", "key"),
    [
        (["--can", "-"], {}, "012345\n", ("012345", None)),
        ([], {"CCCD_EDGE_CAN": "012345"}, "", ("012345", None)),
        (["--mrz", "-"], {}, "203012345,030201,280201\n", (None, MRZ)),
        ([], {"CCCD_EDGE_MRZ": "079203012345,030201,280201"}, "", (None, MRZ)),  # the 12-digit ID
        (["--can", "-"], {"CCCD_EDGE_CAN": "999999"}, "012345", ("012345", None)),  # the option wins
    ],
)
def test_access_key_from_stdin_or_environment(argv: list[str], env: dict[str, str], stdin: str,
                                              key: tuple[object, object]) -> None:  # fmt: skip
    assert key_from(argv, env, stdin) == (key, "")


def test_access_key_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "can").write_text("012345\n")
    (tmp_path / "mrz").write_text("203012345,030201,280201\n")
    assert key_from(["--can-file", str(tmp_path / "can")]) == (("012345", None), "")
    assert key_from(["--mrz-file", str(tmp_path / "mrz")]) == ((None, MRZ), "")
    with pytest.raises(argparse.ArgumentTypeError, match="cannot read"):
        key_from(["--can-file", str(tmp_path / "absent")])


def test_a_key_on_the_command_line_still_works_with_a_warning() -> None:
    """A command line is visible to every user in ps."""
    (key, warning) = key_from(["--can", "012345"])
    assert key == ("012345", None)
    assert "--can VALUE shows the key to every user" in warning
    assert "012345" not in warning
    assert "--mrz VALUE" in key_from(["--mrz", "203012345,030201,280201"])[1]


@pytest.mark.parametrize(("argv", "env", "stdin"), [
    (["--can", "12345"], {}, ""), (["--can", "abcdef"], {}, ""), (["--mrz", "2030,0302,2802"], {}, ""),
    ([], {}, ""), (["--can", "-"], {}, ""), ([], {"CCCD_EDGE_CAN": "012345", "CCCD_EDGE_MRZ": "x"}, ""),
    # Unicode digits: "１" passes str.isdigit and \d, then PACE's ASCII encoding of the CAN crashed.
    (["--can", "-"], {}, "\uff10\uff11\uff12\uff13\uff14\uff15"), ([], {"CCCD_EDGE_CAN": "\u0660" * 6}, ""),
    (["--mrz", "-"], {}, "203012345,\uff10\uff13\uff10\uff12\uff10\uff11,280201"),
])  # fmt: skip
def test_bad_access_keys_are_usage_errors(argv: list[str], env: dict[str, str], stdin: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        key_from(argv, env, stdin)


def test_run_says_a_bad_key_in_one_line_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv(read_command.CAN_ENV, "\uff10" * 6)
    monkeypatch.setattr("sys.stdin", Stdin(""))
    args = build_parser().parse_args(["read"])
    assert args.func(args) == 2
    assert capsys.readouterr().err == "error: a CAN is 6 digits\n"


def test_full_width_digits_are_refused_before_pace() -> None:
    from edge.protocol.access.policy import CanKey

    with pytest.raises(errors.AccessKeyRejectedError):
        CanKey("\uff10\uff11\uff12\uff13\uff14\uff15")


# --- masked output -----------------------------------------------------------------------------------------------

PERSON = Dg13(id_number="079203012345", full_name="Nguyễn Văn An", date_of_birth=dt.date(2003, 2, 1), sex="Nam",
              nationality="Việt Nam", ethnicity="Kinh", religion="Phật giáo", place_of_origin="Quận 1, TP. HCM",
              place_of_residence="12 Đường Số 3, Phường Bến Nghé", identifying_marks="Nốt ruồi cách 2cm",
              date_of_issue=dt.date(2021, 4, 15), date_of_expiry=dt.date(2028, 2, 1), father_name="Nguyễn Văn Bình",
              mother_name="Trần Thị Cúc", spouse_name="Lê Thị Dung", old_id_number="123456789")  # fmt: skip


def test_masked_output_masks_every_personal_field() -> None:
    read: object = SimpleNamespace(dg13=PERSON, dg1=None)
    masked = read_command._citizen(read, show=False)  # type: ignore[arg-type]  # only dg13 and dg1 are read
    text = json.dumps(masked, ensure_ascii=False)
    clear = [getattr(PERSON, name) for name in ("full_name", "sex", "nationality", "ethnicity", "religion",
                                                "place_of_origin", "place_of_residence", "identifying_marks",
                                                "father_name", "mother_name", "spouse_name", "id_number",
                                                "old_id_number")]  # fmt: skip
    assert [value for value in clear if value in text] == []
    assert "02-01" not in text  # no day or month of any date
    assert "04-15" not in text
    assert (masked["date_of_birth"], masked["date_of_issue"], masked["date_of_expiry"]) == ("2003", "2021", "2028")
    assert masked["religion"] == "<9 chars>"
    assert masked["father_name"] == "N. V. B."
    shown = read_command._citizen(read, show=True)  # type: ignore[arg-type]
    # Dates as the card prints them, as in the result document (one DG13-to-citizen mapping)
    assert (shown["religion"], shown["date_of_birth"]) == ("Phật giáo", "01/02/2003")


@pytest.mark.parametrize("expiry", [dt.date(2028, 2, 1), None])  # None: "Không thời hạn" on the card
def test_read_shows_the_citizen_as_the_result_document_states_it(expiry: dt.date | None) -> None:
    card = parse_dg13(encode_dg13(dataclasses.replace(PERSON, date_of_expiry=expiry)))
    read: object = SimpleNamespace(dg13=card, dg1=None)
    shown = read_command._citizen(read, show=True)  # type: ignore[arg-type]
    document = citizen_from(card).model_dump(mode="json", exclude_none=True)
    assert {name: value for name, value in shown.items() if value is not None} == document
    assert shown["date_of_expiry"] == ("01/02/2028" if expiry else "Không thời hạn")


def test_the_card_is_named_by_its_generation_and_unconfirmed_dg13_fields_are_shown_masked() -> None:
    old_card: object = SimpleNamespace(dg13=parse_dg13(encode_dg13(PERSON)), dg1=None)
    assert read_command._card(old_card)["name"] == "CCCD (2021)"  # type: ignore[arg-type]
    new = Dg13(id_number="048190006789", full_name="Phan Thị Mỹ Duyên", date_of_issue=dt.date(2024, 8, 20),
               place_of_birth_registration="Phường Thạch Thang, Quận Hải Châu, TP. Đà Nẵng",
               raw_fields={20: "Nhóm máu O"}, raw_values={21: bytes.fromhex("020107")})  # fmt: skip
    read: object = SimpleNamespace(dg13=parse_dg13(encode_dg13(new)), dg1=None)
    card = read_command._card(read)  # type: ignore[arg-type]
    assert (card["generation"], card["name"]) == ("2024", "Thẻ căn cước (2024)")
    assert (card["dg13_fields"], card["dg13_unconfirmed_fields"]) == ([1, 2, 11, 12, 17, 20, 21], [17, 20, 21])
    masked = read_command._citizen(read, show=False)  # type: ignore[arg-type]
    assert masked["place_of_birth_registration"] == "<46 chars>"
    assert (masked["dg13_field_20"], masked["dg13_field_21"]) == ("<10 chars>", "<3 bytes, not text>")
    assert "dg13_field_17" not in masked  # typed: shown under its name
    shown = read_command._citizen(read, show=True)  # type: ignore[arg-type]
    assert (shown["dg13_field_20"], shown["dg13_field_21"]) == ("Nhóm máu O", "020107")
    nothing: object = SimpleNamespace(dg13=None, dg1=None)
    assert read_command._card(nothing)["name"] == "CCCD / thẻ căn cước"  # type: ignore[arg-type]
