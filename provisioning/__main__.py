"""``python -m provisioning``: ward-ca init|sign, device init|install|rotate, ds-list sign. Prints what it did; exit 1
on refusal."""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from edge.errors import EdgeError
from provisioning import device, ds_list, ward_ca
from provisioning.files import resolve_owner, write_atomic
from provisioning.pki import TerminalIdentity

SERVICE_USER = "cccd-edge"


def _owner(name: str) -> tuple[int, int] | None:
    """'auto': the service user when root provisions a terminal where install.sh has created that user."""
    if name != "auto":
        return resolve_owner(name)
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None
    return resolve_owner(SERVICE_USER)


def _ward_init(args: argparse.Namespace) -> int:
    ca, created = ward_ca.init_ward_ca(args.dir, args.ward, days=args.days)
    verb = "created" if created else "kept existing"
    print(f"{verb} ward CA for ward {ca.ward_code} in {args.dir} (valid to {ca.cert.not_valid_after_utc:%Y-%m-%d})")
    return 0


def _ward_command_key(args: argparse.Namespace) -> int:
    pub, created = ward_ca.init_command_key(args.dir)
    print(f"{'created' if created else 'kept existing'} ward command key {args.dir / ward_ca.COMMAND_KEY}"
          " (the office system signs read requests with it)")
    print(f"give {pub} to each terminal: device install --ward-command-key {pub.name}")
    return 0


def _ward_sign(args: argparse.Namespace) -> int:
    ca = ward_ca.load_ward_ca(args.dir)
    cert = ward_ca.sign_csr(ca, ward_ca.load_csr(args.csr), days=args.days)
    out: Path = args.out or args.csr.with_suffix(".crt")
    write_atomic(out, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    print(f"signed {cert.subject.rfc4514_string()} until {cert.not_valid_after_utc:%Y-%m-%d}: {out}")
    print(f"send {out} to the terminal; the ward broker trusts {args.dir / ward_ca.CA_CERT} (its cafile)")
    return 0


def _device_init(args: argparse.Namespace) -> int:
    result = device.init_device(
        args.state_dir,
        TerminalIdentity(args.terminal_id, args.ward),
        owner=_owner(args.owner),
        rotate=args.rotate,
        pkcs11_uri=args.pkcs11_uri,
    )
    print(f"{'created' if result.created else 'kept existing'} key {result.key}")
    print(f"CSR for the ward: {result.csr}")
    return 0


def _device_rotate(args: argparse.Namespace) -> int:
    result = device.rotate_device(args.state_dir, owner=_owner(args.owner))
    print(f"new key {result.key} (the current key serves until its certificate is installed)")
    print(f"CSR for the ward: {result.csr}")
    return 0


def _device_install(args: argparse.Namespace) -> int:
    result = device.install_device(
        args.state_dir,
        args.config_dir,
        cert=args.cert,
        broker_ca=args.broker_ca,
        ward_command_key=args.ward_command_key,
        trust=args.trust,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        owner=_owner(args.owner),
    )
    if result.rotated:
        print("rotation complete: the new key is now active")
    print(f"installed {result.cert}; {result.trust_added} new trust store entries; config {result.config}")
    if not result.client_tls:
        print("the key is on a token: server-authenticated TLS only (Python's ssl cannot use a token key for client "
              f"TLS), so mqtt.client_certificate = false; {result.cert.name} is still paths.device_cert, "
              "checked against the key")
    print("then: systemctl restart cccd-edge && cccd-edge doctor")
    return 0


def _ds_list_sign(args: argparse.Namespace) -> int:
    notes: dict[Path, str] = {}
    for text in args.note:
        cert = next((path for path in args.certificates if text.startswith(f"{path}=")), None)
        if cert is None:
            print(f"error: --note {text!r} names none of the certificates (CERT=TEXT)", file=sys.stderr)
            return 1
        notes[cert] = text[len(str(cert)) + 1:]
    signed = ds_list.sign_list(args.key, args.certificates, version=args.version, ward_code=args.ward,
                               iss=args.iss, notes=notes, lifetime_days=args.days)  # fmt: skip
    ds_list.write_list(args.out, signed)
    scope = f"ward {args.ward}" if args.ward else "the province"
    print(f"signed DS list version {args.version} for {scope} with key {signed.kid}: {len(signed.fingerprints)} "
          f"Document Signer(s){f', valid {args.days} days' if args.days else ''}: {args.out}")
    for fingerprint in signed.fingerprints:
        print(f"  DS {fingerprint}")
    print(f"install: cccd-edge trust import --config /etc/cccd-edge/config.toml {args.out.name}; or push it with the "
          "office's trust_update command")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m provisioning",
        description="Ward CA and terminal identity for cccd-edge (the sequence: provisioning/README.md).",
    )
    sides = parser.add_subparsers(dest="side", required=True)

    ward = sides.add_parser("ward-ca", help="ward side: the CA that signs this ward's terminals")
    ward_cmds = ward.add_subparsers(dest="action", required=True)
    init = ward_cmds.add_parser("init", help="create the ward CA, or check and keep an existing one")
    init.add_argument("--dir", type=Path, default=Path("ward-ca"), help="CA directory (key 0600)")
    init.add_argument("--ward", help="ward code (needed only to create)")
    init.add_argument("--days", type=int, default=3650)
    init.set_defaults(func=_ward_init)
    command_key = ward_cmds.add_parser(
        "command-key", help="create the key the office signs commands with (or keep it), and its public half")
    command_key.add_argument("--dir", type=Path, default=Path("ward-ca"), help="directory (key 0600)")
    command_key.set_defaults(func=_ward_command_key)
    sign = ward_cmds.add_parser("sign", help="issue a terminal certificate for a CSR")
    sign.add_argument("csr", type=Path)
    sign.add_argument("--dir", type=Path, default=Path("ward-ca"))
    sign.add_argument("--days", type=int, default=365)
    sign.add_argument("--out", type=Path, help="default: the CSR path with .crt")
    sign.set_defaults(func=_ward_sign)

    dev = sides.add_parser("device", help="terminal side: key, CSR, install")
    dev_cmds = dev.add_subparsers(dest="action", required=True)
    owner_help = "owner of the key and group of the config ('auto': cccd-edge when run as root and it exists)"
    d_init = dev_cmds.add_parser("init", help="generate the key on this device (kept if present) and write a CSR")
    d_init.add_argument("--terminal-id", required=True)
    d_init.add_argument("--ward", required=True)
    d_init.add_argument("--state-dir", type=Path, default=Path("/var/lib/cccd-edge"))
    d_init.add_argument("--rotate", action="store_true", help="make a new key even if one exists")
    d_init.add_argument("--pkcs11-uri", help="generate the key inside a PKCS#11 token instead of a 0600 file "
                        "(pkcs11:token=…;object=…?module-path=…&pin-source=…; see README, 'Hardware keys')")
    d_init.add_argument("--owner", default="auto", help=owner_help)
    d_init.set_defaults(func=_device_init)
    d_rot = dev_cmds.add_parser("rotate", help="new key + CSR; the old key serves until the new cert is installed")
    d_rot.add_argument("--state-dir", type=Path, default=Path("/var/lib/cccd-edge"))
    d_rot.add_argument("--owner", default="auto", help=owner_help)
    d_rot.set_defaults(func=_device_rotate)
    d_inst = dev_cmds.add_parser("install", help="install the signed certificate and ward files, write config.toml")
    d_inst.add_argument("--cert", type=Path, required=True)
    d_inst.add_argument("--broker-ca", type=Path, required=True)
    d_inst.add_argument("--ward-command-key", type=Path, required=True)
    d_inst.add_argument("--trust", type=Path, nargs="*", default=[], metavar="FILE", help="CSCA certificates")
    d_inst.add_argument("--mqtt-host")
    d_inst.add_argument("--mqtt-port", type=int)
    d_inst.add_argument("--state-dir", type=Path, default=Path("/var/lib/cccd-edge"))
    d_inst.add_argument("--config-dir", type=Path, default=Path("/etc/cccd-edge"))
    d_inst.add_argument("--owner", default="auto", help=owner_help)
    d_inst.set_defaults(func=_device_install)

    lists = sides.add_parser("ds-list", help="ward or province side: signed lists of known Document Signers")
    list_cmds = lists.add_subparsers(dest="action", required=True)
    l_sign = list_cmds.add_parser("sign", help="sign the DS certificates of cards proven genuine (replaces the key's "
                                  "earlier list: name every DS still vouched for)")
    l_sign.add_argument("certificates", nargs="*", type=Path, metavar="DS_CERT",
                        help="DS certificates, PEM or DER (cccd-edge read --export-ds); none: an empty list "
                        "withdraws every DS this key pinned")
    l_sign.add_argument("--key", type=Path, required=True,
                        help=f"the ward's command key ({ward_ca.COMMAND_KEY}, 0600) or a province key")
    l_sign.add_argument("--version", type=int, required=True,
                        help="higher than any list this key signed before (terminals refuse an older one)")
    scope = l_sign.add_mutually_exclusive_group(required=True)
    scope.add_argument("--ward", help="the ward the list is for")
    scope.add_argument("--province", action="store_true", help="every ward of the province (a province key only)")
    l_sign.add_argument("--iss", help="issuer named in the list (default: ward-<code>, or province)")
    l_sign.add_argument("--note", action="append", default=[], metavar="CERT=TEXT",
                        help="how that certificate's cards were proven, e.g. 'proven by C06 authentication "
                        "2026-12-01' (repeatable)")
    l_sign.add_argument("--days", type=int, help="expire the list after DAYS (default: no expiry)")
    l_sign.add_argument("-o", "--out", type=Path, required=True, help="the signed list (a compact JWS, 0644)")
    l_sign.set_defaults(func=_ds_list_sign)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # anything written without an explicit mode stays private
    try:
        code: int = args.func(args)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
