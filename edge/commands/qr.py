"""``cccd-edge qr``: decode CCCD QR codes from image files, or watch a camera (or a replay) for cards.

Output is JSON, one object per line, with personal data masked unless ``--show-pii`` (the officer's own screen,
not a log). The derived CAN and BAC keys are shown only with ``--show-pii`` too: they open the chip.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge.daemon.scanner import QrScanner, ScanEvent
from edge.drivers.base import Frame, FrameSource
from edge.drivers.qrdecoders import DECODERS, DEFAULT_DECODER, make_decoder
from edge.drivers.replay import expand_paths, load_grey
from edge.errors import QrFormatError
from edge.logsetup import mask_id, mask_name, mask_text
from edge.protocol.card_expiry import bac_key_candidates, expiry_date
from edge.protocol.card_generation import card_words
from edge.protocol.cccd_qr import CccdQr, parse_cccd_qr
from edge.protocol.id_number import can_from_id


def qr_as_json(qr: CccdQr, *, show_pii: bool) -> dict[str, Any]:
    """The parsed QR for people and scripts; masked unless ``show_pii``."""
    expiry = expiry_date(qr.date_of_birth, qr.date_of_issue)
    result: dict[str, Any] = {
        "format": qr.format,
        "card": card_words(qr.generation).vi,
        "id_number": qr.id_number if show_pii else mask_id(qr.id_number),
        "old_id_number": None if qr.old_id_number is None else
        (qr.old_id_number if show_pii else mask_id(qr.old_id_number)),
        "full_name": qr.full_name if show_pii else mask_name(qr.full_name),
        "date_of_birth": qr.date_of_birth.isoformat() if show_pii else f"{qr.date_of_birth.year}-**-**",
        "sex": qr.sex,
        "place_of_residence": qr.place_of_residence if show_pii else mask_text(qr.place_of_residence),
        "date_of_issue": qr.date_of_issue.isoformat(),
        "extra_fields": list(qr.extra_fields) if show_pii else [mask_text(f) for f in qr.extra_fields],
        "cancelled_id_numbers": [n if show_pii else mask_id(n) for n in qr.cancelled_id_numbers],
        "parent_names": [n if show_pii else mask_name(n) for n in qr.parent_names],
        "unrecognised_extra_fields": list(qr.unrecognised_extra_fields),
        "computed_expiry": (expiry.isoformat() if show_pii else f"{expiry.year}-**-**") if expiry else None,
        "consistent": qr.consistent,
        "id_findings": [
            {"severity": f.severity, "code": f.code, "message": f.message}
            for f in qr.id_findings
        ],
    }
    if show_pii:
        result["can"] = can_from_id(qr.id_number)
        result["bac_keys"] = [
            {"mrz_information": c.mrz_information, "reason": c.reason} for c in bac_key_candidates(qr)
        ]
    return result


def _print(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def _decode_images(args: argparse.Namespace) -> int:
    decoder = make_decoder(args.decoder)
    all_cards = True
    for path in expand_paths(args.images):
        width, height, pixels = load_grey(path)
        symbols = decoder.decode(Frame(width=width, height=height, pixels=pixels, timestamp=0.0))
        if not symbols:
            _print({"image": str(path), "error": "no QR code found"})
            all_cards = False
        for symbol in symbols:
            try:
                _print({"image": str(path), "qr": qr_as_json(parse_cccd_qr(symbol.raw), show_pii=args.show_pii)})
            except QrFormatError as exc:
                _print({"image": str(path), "error": str(exc)})
                all_cards = False
    return 0 if all_cards else 1


def _open_source(args: argparse.Namespace) -> FrameSource:
    from edge.drivers.cameras import open_camera

    if args.replay:
        return open_camera("replay", fps=args.fps, replay_path=args.replay, loop=args.loop)
    return open_camera(args.camera, fps=args.fps, device=args.device)


def _event_as_json(event: ScanEvent, *, show_pii: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"event": event.kind.value, "decoder": event.decoder, "t": round(event.timestamp, 3)}
    if event.qr is not None:
        result["qr"] = qr_as_json(event.qr, show_pii=show_pii)
    if event.reason:
        result["reason"] = event.reason
    if event.repeat:
        result["repeat"] = True
    return result


def _scan(args: argparse.Namespace) -> int:
    source = _open_source(args)
    scanner = QrScanner(source, make_decoder(args.decoder))
    try:
        for event in scanner.events(until=lambda: source.exhausted):
            _print(_event_as_json(event, show_pii=args.show_pii))
    finally:
        source.close()
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    qr = subparsers.add_parser("qr", help="decode CCCD QR codes (images, camera, replay)")
    actions = qr.add_subparsers(dest="qr_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--decoder", choices=DECODERS, default=DEFAULT_DECODER)
    common.add_argument("--show-pii", action="store_true", help="print names, numbers, addresses and keys in clear")

    decode = actions.add_parser("decode", parents=[common], help="decode QR codes in image files or folders")
    decode.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    decode.set_defaults(func=_decode_images)

    scan = actions.add_parser("scan", parents=[common], help="watch the camera and print one event per card")
    scan.add_argument("--replay", type=Path, metavar="PATH", help="image file or folder instead of a camera")
    scan.add_argument("--loop", action="store_true", help="with --replay: start again at the end")
    scan.add_argument("--camera", choices=("picam", "v4l2"), default="picam")
    scan.add_argument("--device", default=0, type=lambda v: int(v) if v.isascii() and v.isdigit() else v,
                      help="v4l2 device (index or path)")
    scan.add_argument("--fps", type=float, default=10.0)
    scan.set_defaults(func=_scan)
