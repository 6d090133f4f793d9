"""``cccd-edge verify RESULT``: check a result token offline (signature, document) and print it as JSON.

A result does not expire: its times only give it ``flags`` (``late``, ``future``, ``clock_skew``,
``clock_unsynchronised``; ``edge.office.verify.ResultFlag``), judged at ``--now`` (default: now), as the receiver
would when storing it then. The ``exp`` that older terminals signed is ignored.

The verdict is printed as the terminal sent it, with its rung of the ladder (``rung``: a version 2 result's
``verified_untrusted_issuer`` is ``intact_origin_unproven``) and the rung's words (``verdict_words``: Vietnamese,
English, what it proves and what it does not), the same words the terminal and the receiver use.

Each address of the citizen is printed as signed and with today's administrative units (``addresses``:
:mod:`edge.office.admin_units`); ``--summary`` keeps only each address's confidence (exact / split / unknown).

With ``--aa-challenge`` (the challenge the office put in its ``read_request``) it also checks the chip's Active
Authentication answer itself, and exits 1 unless that check passes: without it the office has only the terminal's
word that a live chip answered.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.errors import TokenError
from edge.office.admin_units import confidences, map_addresses
from edge.office.verify import check_active_auth, load_keys, verify_result
from edge.protocol.access.active_auth import CHALLENGE_LENGTH
from edge.protocol.card_generation import card_words, generation_of_result
from edge.signers import load_private_key


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("verify", help="verify a signed result token (JWS or JWE) from a terminal")
    parser.add_argument("result", help="file holding the token, or - for standard input")
    parser.add_argument("--cert", type=Path, action="append", default=[],
                        help="terminal certificate or public key (PEM); repeatable")
    parser.add_argument("--jwks", type=Path, help="JWKS file with terminal public keys")
    parser.add_argument("--ward-key", type=Path, help="ward private key (PEM, 0600) to open encrypted results")
    parser.add_argument("--now", type=int, help="judge the result's flags at this Unix time instead of now")
    parser.add_argument("--summary", action="store_true", help="print only non-personal fields")
    parser.add_argument("--aa-challenge", type=_challenge, metavar="HEX",
                        help="the Active Authentication challenge the office sent (16 hex digits): verify the "
                             "chip's answer against it; exit 1 unless it passes")
    parser.set_defaults(func=run)


def _challenge(text: str) -> bytes:
    try:
        challenge = bytes.fromhex(text)
    except ValueError:
        challenge = b""
    if len(challenge) != CHALLENGE_LENGTH:
        raise argparse.ArgumentTypeError(f"must be {CHALLENGE_LENGTH} bytes in hex ({2 * CHALLENGE_LENGTH} digits)")
    return challenge


def run(args: argparse.Namespace) -> int:
    keys = load_keys(args.cert, args.jwks)
    decrypt_key = load_private_key(args.ward_key, config_key="--ward-key") if args.ward_key else None
    try:
        token = sys.stdin.read() if args.result == "-" else Path(args.result).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read {args.result}: {exc}") from None
    result = verify_result(token.strip(), keys, args.now if args.now is not None else int(time.time()),
                           decrypt_key=decrypt_key)
    output: dict[str, Any] = {"valid": True, **result.summary()}
    document = result.document
    generation = generation_of_result(document.citizen.date_of_issue if document.citizen else None,
                                      document.qr.format)  # fmt: skip
    output["card"] = {"generation": generation, **asdict(card_words(generation))}  # no personal data
    active_auth = check_active_auth(result.document, args.aa_challenge) if args.aa_challenge else None
    if active_auth is not None:
        output["active_auth"] = active_auth.as_dict()
    citizen = document.citizen.model_dump() if document.citizen else {}
    if args.summary:  # non-personal: how each address maps, not to what
        output["addresses"] = confidences(citizen)
    else:
        output |= {"iat": result.iat, "kid": result.kid,
                   "result": json.loads(result.document.to_json()), "addresses": map_addresses(citizen)}
    print(json.dumps(output, ensure_ascii=False, indent=2))
    return 0 if active_auth is None or active_auth.passed else 1
