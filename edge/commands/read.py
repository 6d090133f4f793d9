"""``cccd-edge read``: read and verify the card on a reader once, and print what it says and what was proven.

The support desk's tool for "does this card / reader work": every personal field is masked unless ``--show-pii``
(the screen may be photographed, the output pasted into a ticket): ID numbers, names, dates to the year, the rest
to their length. Each address (place of residence, of origin, of birth registration) is shown with today's units
(``addresses``: the text as read, the commune and province since 2025-07-01 with their codes and ``exact`` /
``split`` / ``unknown``, :mod:`edge.office.admin_units`); masked, only the confidence: the units are the address.

The access key is personal data, and a command line is visible to every user of the machine (``ps``): the CAN or
MRZ key is read from stdin (``--can -``, without echo on a terminal), a file (``--can-file``, ``--mrz-file``) or the
environment (``CCCD_EDGE_CAN``, ``CCCD_EDGE_MRZ``); with none of them a terminal is asked for the CAN. ``--can
VALUE`` still works, with a warning.

Exit codes, so a script or the desk can tell the cases apart without parsing text, one per rung of the verdict
ladder: 0 verified (issuer proven by a CSCA), 12 verified by a known Document Signer (pinned in the trust store),
3 data intact but issuer not proven (``intact_origin_unproven``: not success), 4 verification failed; the rung's
words (Vietnamese and English) and what it does not prove are printed with it. A read that ended in an error prints
one line on stderr
(never a traceback) and exits 5 no reader, 6 no card, 7 card removed, 8 access key rejected, 9 secure session
refused, 10 the chip answered wrongly (status word, secure messaging, malformed data group; an EF.SOD that does not
parse is a failed verification, 4), 11 other reader trouble (also no card placed within ``--wait``, or a card not
answering in time), 1 anything else (2 stays argparse's usage error).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from edge.errors import (
    AccessControlError,
    AccessKeyRejectedError,
    CardError,
    CardRemovedError,
    EdgeError,
    NoCardError,
    NoReaderError,
    ParseError,
    ReaderError,
)
from edge.files import write_private
from edge.logsetup import mask_date, mask_id, mask_name, mask_text
from edge.protocol.card_generation import card_words
from edge.protocol.lds.dg13 import CONFIRMED_FIELDS, PLACE_OF_BIRTH_REGISTRATION
from edge.protocol.verify.checks import VerdictWords

if TYPE_CHECKING:
    from edge.protocol.chip import ChipRead
    from edge.protocol.verify.card import VerificationReport
    from edge.protocol.verify.checks import Check

EXIT_VERIFIED = 0
EXIT_ERROR = 1
EXIT_UNPROVEN = 3  # intact_origin_unproven (before the ladder: verified_untrusted_issuer, the same meaning)
EXIT_FAILED = 4
EXIT_NO_READER = 5
EXIT_NO_CARD = 6
EXIT_CARD_REMOVED = 7
EXIT_ACCESS_DENIED = 8
EXIT_ACCESS_FAILED = 9
EXIT_BAD_CHIP_ANSWER = 10
EXIT_READER_ERROR = 11
EXIT_VERIFIED_KNOWN_SIGNER = 12
EXIT_USAGE = 2  # argparse's

CAN_ENV = "CCCD_EDGE_CAN"
MRZ_ENV = "CCCD_EDGE_MRZ"
STDIN = "-"

#: Most specific first: the first class an error is an instance of gives its exit code.
_ERROR_EXITS: tuple[tuple[type[EdgeError], int], ...] = (
    (NoReaderError, EXIT_NO_READER),
    (NoCardError, EXIT_NO_CARD),
    (CardRemovedError, EXIT_CARD_REMOVED),
    (ReaderError, EXIT_READER_ERROR),
    (AccessKeyRejectedError, EXIT_ACCESS_DENIED),
    (AccessControlError, EXIT_ACCESS_FAILED),
    (CardError, EXIT_BAD_CHIP_ANSWER),
    (ParseError, EXIT_BAD_CHIP_ANSWER),  # a malformed file from the chip (LdsError, TlvError)
)

_MRZ_ARG = re.compile(r"^([0-9A-Z<]{1,9}|[0-9]{12}),([0-9]{6}),([0-9]{6})\Z")


_EXIT_HELP = (
    "exit codes: 0 verified (issuer proven by a CSCA), 12 verified by a known Document Signer, 3 data intact but "
    "issuer not proven (not success: check the card by other means), 4 verification failed; on an error: 5 no "
    "reader, 6 no card, 7 card removed, 8 access key rejected, 9 secure session refused, 10 the chip answered "
    "wrongly, 11 other reader trouble, 1 anything else"
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("read", help="read and verify the card on a reader (personal data masked)",
                                   epilog=_EXIT_HELP)
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--can", metavar="-",
                     help="card access number (the last 6 digits of the 12-digit ID) from stdin: '-' (asked "
                          f"without echo on a terminal); or use --can-file or {CAN_ENV}. A value given here is "
                          "visible to every user in ps: accepted with a warning")  # fmt: skip
    key.add_argument("--can-file", type=Path, metavar="FILE", help="read the CAN from the first line of FILE")
    key.add_argument("--mrz", metavar="-",
                     help="MRZ key DOCNO,YYMMDD,YYMMDD (document number or 12-digit ID, date of birth, date of "
                          f"expiry) from stdin: '-'; or use --mrz-file or {MRZ_ENV}. A value given here is visible "
                          "in ps: accepted with a warning")  # fmt: skip
    key.add_argument("--mrz-file", type=Path, metavar="FILE", help="read the MRZ key from the first line of FILE")
    parser.add_argument("--reader", help="reader name (default: the first reader holding a card)")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to SECONDS for a card to be placed (default: no wait)")  # fmt: skip
    parser.add_argument("--photo", type=Path, metavar="OUT.jpg", help="also read the face image (DG2) into a file")
    parser.add_argument("--export-ds", type=Path, metavar="FILE",
                        help="also write EF.SOD's Document Signer certificate (public; PEM if FILE ends in .pem, else "
                        "DER) once the SOD's signature holds under it: what a ward signs into a DS list after "
                        "proving the card genuine (python -m provisioning ds-list sign)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--show-pii", action="store_true", help="show names, ID numbers and addresses in clear")
    parser.add_argument("--trust-dir", type=Path, help="CSCA trust store (default: as `cccd-edge trust list`)")
    parser.add_argument("--config", type=Path, metavar="CONFIG",
                        help="a terminal's config: verify with its trust store and the Document Signers pinned for "
                        "it, as its daemon does (a card it shows as verified_known_signer reads the same here)")
    parser.add_argument("--allow-bac-fallback", action="store_true",
                        help="use BAC when the chip refuses to start PACE (needs --mrz)")  # fmt: skip
    parser.set_defaults(func=run)


def _can(text: str) -> str:
    if not (text.isascii() and text.isdigit() and len(text) == 6):
        raise argparse.ArgumentTypeError("a CAN is 6 digits")
    return text


def _mrz(text: str) -> tuple[str, str, str]:
    match = _MRZ_ARG.match(text.strip().upper())
    if match is None:
        raise argparse.ArgumentTypeError("expected DOCNO,YYMMDD,YYMMDD (e.g. 203012345,030201,280201)")
    document, birth, expiry = match.groups()
    return document[-9:], birth, expiry


def access_key(args: argparse.Namespace, environ: Mapping[str, str], stdin: TextIO,
               warn: TextIO) -> tuple[str | None, tuple[str, str, str] | None]:  # fmt: skip
    """(CAN, MRZ key), exactly one of them, from the options, the environment or stdin; ArgumentTypeError if none
    or a malformed one. A key given on the command line itself is accepted with a warning on ``warn``."""
    for option, value in (("--can", args.can), ("--mrz", args.mrz)):
        if value is not None and value != STDIN:
            print(f"warning: {option} VALUE shows the key to every user of this machine (ps); use '{option} -' "
                  f"(stdin), {option}-file or {CAN_ENV if option == '--can' else MRZ_ENV}", file=warn)
    if args.can is not None:
        return _can(_from_stdin(stdin, "CAN") if args.can == STDIN else args.can), None
    if args.mrz is not None:
        return None, _mrz(_from_stdin(stdin, "MRZ key") if args.mrz == STDIN else args.mrz)
    if args.can_file is not None:
        return _can(_from_file(args.can_file)), None
    if args.mrz_file is not None:
        return None, _mrz(_from_file(args.mrz_file))
    can, mrz = environ.get(CAN_ENV), environ.get(MRZ_ENV)
    if can is not None and mrz is not None:
        raise argparse.ArgumentTypeError(f"both {CAN_ENV} and {MRZ_ENV} are set: unset one")
    if can is not None:
        return _can(can), None
    if mrz is not None:
        return None, _mrz(mrz)
    if stdin.isatty():
        return _can(_from_stdin(stdin, "CAN")), None
    raise argparse.ArgumentTypeError(f"no access key: give --can - (stdin), --can-file, {CAN_ENV}, or the same "
                                     "for --mrz")


def _from_stdin(stdin: TextIO, what: str) -> str:
    if stdin.isatty():
        return getpass.getpass(f"{what} (not shown): ")
    return stdin.readline().strip()


def _from_file(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return lines[0].strip() if lines else ""


def exit_code_for(error: EdgeError) -> int:
    """The distinct exit code of a read that ended in ``error``."""
    return next((code for kind, code in _ERROR_EXITS if isinstance(error, kind)), EXIT_ERROR)


def error_line(error: BaseException) -> str:
    """One line for stderr: the error's kind and message (with its hint); the notes say where it happened.

    Messages carry status words, file names and offsets, never card data, so they are safe to paste into a ticket.
    """
    notes = "; ".join(getattr(error, "__notes__", ()))
    text = f"error ({type(error).__name__}): {error}" + (f" [{notes}]" if notes else "")
    return " ".join(text.split())


#: How each citizen field is masked in the output (the rest: :func:`mask_text`).
_MASKS: dict[str, Callable[[str], str]] = {
    "id_number": mask_id, "old_id_number": mask_id, "full_name": mask_name, "father_name": mask_name,
    "mother_name": mask_name, "spouse_name": mask_name, "date_of_birth": mask_date, "date_of_issue": mask_date,
    "date_of_expiry": mask_date,
}  # fmt: skip


def _citizen(read: ChipRead, show: bool) -> dict[str, str | None]:
    """The card's data for display, in the result document's words and dates (as the card prints them,
    :func:`edge.protocol.result.citizen_fields`); masked unless ``show``."""
    from edge.protocol.result import citizen_fields

    dg13, dg1 = read.dg13, read.dg1

    def text(value: str | None) -> str | None:
        return value if show or value is None else mask_text(value)

    data: dict[str, str | None] = {}
    if dg13 is not None:
        # Every field is personal: sex, nationality, ethnicity and religion (sensitive data under Decree 13/2023)
        # are masked like the free text; a date keeps its year only (a CCCD's expiry is a birthday too).
        data |= {name: value if show or value is None else _MASKS.get(name, mask_text)(value)
                 for name, value in citizen_fields(dg13).items()}  # fmt: skip
        # What the confirmed layout does not name (a 2024 card may carry more): shown by number, masked alike.
        typed = {PLACE_OF_BIRTH_REGISTRATION} if dg13.place_of_birth_registration is not None else set()
        data |= {f"dg13_field_{number}": text(value) for number, value in sorted(dg13.raw_fields.items())
                 if number not in CONFIRMED_FIELDS | typed}  # fmt: skip
        data |= {f"dg13_field_{number}": value.hex() if show else f"<{len(value)} bytes, not text>"
                 for number, value in sorted(dg13.raw_values.items())}  # fmt: skip
    if dg1 is not None:
        data["mrz"] = dg1.mrz.text if show else mask_text(dg1.mrz.text)
    return data


def addresses(read: ChipRead, show: bool) -> dict[str, Any]:
    """Each DG13 address as read with today's units (:mod:`edge.office.admin_units`; without the ``office`` extra
    the mapping is ``unknown`` and says why). Masked, only the confidence and the data version are shown: the
    current units would reveal the masked address."""
    from edge.office.admin_units import map_addresses
    from edge.protocol.result import citizen_fields

    if read.dg13 is None:
        return {}
    mapped = map_addresses(citizen_fields(read.dg13))
    if show:
        return mapped
    return {name: {"as_read": mask_text(entry["as_read"]),
                   "mapping": {key: entry["mapping"][key] for key in ("confidence", "data_version")}}
            for name, entry in mapped.items()}  # fmt: skip


def _card(read: ChipRead) -> dict[str, Any]:
    """Which card this is, in the officer's words, and the DG13 field numbers it carried (no personal data): what a
    real 2024 card's chip holds is unconfirmed, so the desk's tool shows it."""
    dg13 = read.dg13
    generation = dg13.generation if dg13 is not None else None
    words = card_words(generation)
    return {"generation": generation, "name": words.vi, "en": words.en,
            "dg13_fields": list(dg13.field_numbers) if dg13 is not None else [],
            "dg13_unconfirmed_fields": list(dg13.unconfirmed_field_numbers) if dg13 is not None else []}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Read, verify, print; every :class:`EdgeError` ends as one line on stderr and its own exit code."""
    try:
        args.can, args.mrz = access_key(args, os.environ, sys.stdin, sys.stderr)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _read_and_report(args)
    except EdgeError as exc:
        print(error_line(exc), file=sys.stderr)
        return exit_code_for(exc)


def _read_and_report(args: argparse.Namespace) -> int:
    from edge.commands.trust import terminal_trust
    from edge.drivers.pcsc import PcscReaderDriver  # lazy: other commands need not load pyscard
    from edge.protocol.access.policy import AccessKey, CanKey, MrzKey
    from edge.protocol.chip import ReadRequest, read_chip
    from edge.protocol.verify.card import verify_chip
    from edge.protocol.verify.checks import VERDICT_WORDS, Verdict

    key: AccessKey = CanKey(args.can) if args.can else MrzKey(*args.mrz)
    trust, _, _ = terminal_trust(args.trust_dir, args.config)
    request = ReadRequest(key, want_photo=args.photo is not None, allow_bac_fallback=args.allow_bac_fallback)
    driver = PcscReaderDriver()
    try:
        reader = driver.wait_for_card(args.wait, args.reader).name if args.wait > 0 else args.reader
        started = time.monotonic()
        with driver.connect(reader) as connection:
            reader_name = connection.reader_name
            read = read_chip(connection, request)
        report = verify_chip(read, trust, now=datetime.now(UTC), qr=None)
        seconds = time.monotonic() - started
    finally:
        driver.close()
    if args.photo is not None and read.dg2 is not None:
        try:
            write_private(args.photo, read.dg2.image)  # the face is personal data
        except OSError as exc:
            print(error_line(exc), file=sys.stderr)
            return EXIT_ERROR
    exported: dict[str, str] | None = None
    if args.export_ds is not None:
        try:
            exported = _export_ds(read, report, args.export_ds)
        except (EdgeError, OSError) as exc:
            print(error_line(exc), file=sys.stderr)
            return EXIT_ERROR

    output: dict[str, Any] = {
        "reader": reader_name,
        "access": {
            "method": read.access.method.value,
            "protocol": read.access.protocol,
            "reauthentications": read.access.reauthentications,
        },
        "card": _card(read),
        "citizen": _citizen(read, args.show_pii),
        "addresses": addresses(read, args.show_pii),
        "verdict": report.verdict.value,
        "verdict_words": asdict(VERDICT_WORDS[report.verdict]),
        "checks": [_check_json(check) for check in report.checks],
        "apdus": read.stats.apdus,
        "bytes_sent": read.stats.bytes_sent,
        "bytes_received": read.stats.bytes_received,
        "seconds": round(seconds, 3),
    }
    if args.photo is not None:
        output["photo"] = str(args.photo) if read.dg2 is not None else None
    if exported is not None:
        output["ds_certificate"] = exported
    if args.json:
        print(json.dumps(output, ensure_ascii=False, indent=2))
    else:
        _print_text(output, args.show_pii)
        if exported is not None:
            print(f"Document Signer certificate written to {exported['file']}: {exported['subject']}, "
                  f"SHA-256 {exported['fingerprint']}")
    return {Verdict.VERIFIED: EXIT_VERIFIED, Verdict.VERIFIED_KNOWN_SIGNER: EXIT_VERIFIED_KNOWN_SIGNER,
            Verdict.INTACT_ORIGIN_UNPROVEN: EXIT_UNPROVEN}.get(report.verdict.rung, EXIT_FAILED)


def _export_ds(read: ChipRead, report: VerificationReport, path: Path) -> dict[str, str]:
    """Write the card's DS certificate (0644: it is public, every card of that signer carries it); only one the
    SOD's signature verified under, so the file is the signer of this card and not a certificate merely carried."""
    from asn1crypto import pem

    from edge.errors import SignatureError
    from edge.protocol.verify.checks import SOD_SIGNATURE, CheckStatus
    from edge.protocol.verify.cms import find_signer_certificate

    signed = next((check for check in report.checks if check.name == SOD_SIGNATURE), None)
    if read.sod is None or signed is None or signed.status is not CheckStatus.PASSED:
        raise SignatureError("no Document Signer certificate to export: EF.SOD's signature does not verify under "
                             "the certificate it carries")
    ds = find_signer_certificate(read.sod)
    data = pem.armor("CERTIFICATE", ds.der) if path.suffix.lower() == ".pem" else ds.der
    with path.open("wb") as handle:
        handle.write(data)
    path.chmod(0o644)
    return {"file": str(path), "subject": ds.subject, "fingerprint": ds.fingerprint}


def _units_line(mapping: dict[str, Any]) -> str:
    """Today's units in one line: ``Phường Sài Gòn (26740), Thành phố Hồ Chí Minh (79) [exact]``."""
    def unit(found: dict[str, str] | None) -> str:
        return f"{found['name']} ({found['code']})" if found else "?"

    confidence = mapping["confidence"]
    if "province" not in mapping:  # masked
        return f"[{confidence}]"
    if confidence == "split":
        where = " or ".join(unit(candidate) for candidate in mapping["candidates"])
    else:
        where = unit(mapping["commune"]) if mapping["commune"] else mapping.get("reason", "")
    return f"{where}, {unit(mapping['province'])} [{confidence}]"


def _check_json(check: Check) -> dict[str, Any]:
    """A check as the result document states it, with its technical detail (the terminal keeps that to itself)."""
    from edge.protocol.result import Check as DocumentCheck

    out = DocumentCheck.of(check).model_dump(mode="json")
    if check.detail:
        out["detail"] = dict(check.detail)
    return out


def _print_text(output: dict[str, Any], show_pii: bool) -> None:
    access = output["access"]
    print(f"reader: {output['reader']}")
    again = f", re-authenticated {access['reauthentications']}x" if access["reauthentications"] else ""
    print(f"access: {access['method']} ({access['protocol']}){again}")
    card = output["card"]
    print(f"card: {card['name']} ({card['en']})")
    if card["dg13_unconfirmed_fields"]:
        numbers = ", ".join(str(number) for number in card["dg13_unconfirmed_fields"])
        print(f"  DG13 fields beyond the confirmed layout: {numbers} (kept raw, shown as dg13 field N)")
    print("card data" + ("" if show_pii else " (masked; --show-pii to show)") + ":")
    for field, value in output["citizen"].items():
        if value is not None:
            print(f"  {field.replace('_', ' ')}: {value}")
    for field, entry in output["addresses"].items():
        print(f"  {field.replace('_', ' ')} today: {_units_line(entry['mapping'])}")
    if output.get("photo"):
        print(f"  photo: written to {output['photo']}")
    print(f"verdict: {output['verdict'].upper()}")
    for line in VerdictWords(**output["verdict_words"]).lines():
        print(f"  {line}")
    for check in output["checks"]:
        print(f"  [{check['status']}] {check['name']}: {check['reason']}")
    sent, received = output["bytes_sent"], output["bytes_received"]
    print(f"{output['apdus']} APDUs ({sent} bytes sent, {received} received) in {output['seconds']:.2f} s")
