"""``python -m provisioning``: ward-ca init|sign|command-key|revoke, device init|install|rotate, gateway init,
broker-kit, ds-list sign. Prints what it did; exit 1 on refusal."""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from edge.errors import EdgeError
from provisioning import broker_kit, device, ds_list, gateway, ward_ca
from provisioning.files import resolve_owner, write_atomic
from provisioning.pki import GatewayIdentity, TerminalIdentity, load_certificate

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
    cert = ward_ca.sign_csr(ca, ward_ca.load_csr(args.csr), days=args.days, role=args.role)
    out: Path = args.out or args.csr.with_suffix(".crt")
    write_atomic(out, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    print(f"signed {cert.subject.rfc4514_string()} ({args.role}) until {cert.not_valid_after_utc:%Y-%m-%d}: {out}")
    if args.role == "gateway":
        print(f"send {out} to the gateway host; the broker grants it the ward's results once broker-kit names it "
              "(--gateway NAME)")
    else:
        print(f"send {out} to the terminal; the ward broker trusts {args.dir / ward_ca.CA_CERT} (its cafile)")
    return 0


def _ward_revoke(args: argparse.Namespace) -> int:
    ca = ward_ca.load_ward_ca(args.dir)
    serials = [*args.serial, *(load_certificate(path).serial_number for path in args.cert)]
    path, crl = ward_ca.revoke(ca, args.dir, serials, days=args.days)
    print(f"{len(serials)} added; {len(list(crl))} revoked in all; CRL {path} good until "
          f"{crl.next_update_utc:%Y-%m-%d}" if crl.next_update_utc else f"CRL {path}")
    print(f"copy {path} to every gateway (crl in gateway.toml): results signed under a revoked certificate are "
          "quarantined")
    return 0


def _gateway_init(args: argparse.Namespace) -> int:
    result = gateway.init_gateway(args.dir, GatewayIdentity(args.name, args.ward))
    print(f"{'created' if result.created else 'kept existing'} key {result.key}")
    print(f"CSR for the ward: {result.csr} (sign it with: ward-ca sign --role gateway {result.csr.name})")
    return 0


def _broker_kit(args: argparse.Namespace) -> int:
    sizing = broker_kit.QueueSizing(terminals=args.terminals, reads_per_hour=args.reads_per_hour,
                                    outage_hours=args.outage_hours)
    options = broker_kit.KitOptions(
        hosts=tuple(args.host), gateways=tuple(args.gateway or ("office-1",)), shut_out=tuple(args.shut_out),
        port=args.port, bind=args.bind,
        install_dir=args.install_dir, persistence_dir=args.persistence_dir, topic_prefix=args.topic_prefix,
        sizing=sizing, days=args.days, user=args.user or None,
    )
    kit = broker_kit.build_kit(args.ward_ca, args.out, options)
    print(f"broker kit for ward {kit.ward_code} in {kit.directory}: {broker_kit.CONF}, {broker_kit.ACL}, "
          f"{broker_kit.CA}, {broker_kit.SERVER_CERT} ({'issued' if kit.server_cert_issued else 'kept'}), "
          f"{broker_kit.SERVER_KEY} ({'created' if kit.server_key_created else 'kept'}, 0600)")
    print(f"gateways allowed to read the ward: {', '.join(kit.gateway_users)}")
    print("queue limit (max_queued_messages):")
    for line in kit.sizing.explain():
        print(f"  {line}")
    print(f"install on the broker host: the files into {options.install_dir} ({broker_kit.SERVER_KEY} owned by "
          f"{options.user or 'the broker user'}, 0600), {broker_kit.CONF} as /etc/mosquitto/mosquitto.conf, then "
          "systemctl restart mosquitto (provisioning/README.md, 'The ward broker')")
    print(f"terminals: device install --broker-ca {broker_kit.CA} --mqtt-host {options.hosts[0]}"
          + (f" --mqtt-port {options.port}" if options.port != 8883 else ""))
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
        delivery=args.delivery,
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
    sign.add_argument("--role", choices=("terminal", "gateway"), default="terminal",
                      help="gateway: an office gateway instance (CN gateway:<name>), which reads every terminal's "
                      "results at the broker")
    sign.set_defaults(func=_ward_sign)

    revoke = ward_cmds.add_parser("revoke", help="revoke terminal (or gateway) certificates: add them to the ward's "
                                  "CRL (ward-ca.crl) and sign it again; with none given, only re-sign it")
    revoke.add_argument("--dir", type=Path, default=Path("ward-ca"))
    revoke.add_argument("--cert", type=Path, action="append", default=[], help="a certificate to revoke (PEM/DER)")
    revoke.add_argument("--serial", type=int, action="append", default=[], help="a serial number to revoke")
    revoke.add_argument("--days", type=int, default=ward_ca.CRL_DAYS, help="days until the CRL's next update")
    revoke.set_defaults(func=_ward_revoke)

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
    d_inst.add_argument("--delivery", choices=("receipt", "puback"),
                        help="when a result leaves the terminal: on the office gateway's receipt (the default; it "
                             "signs with the ward command key) or on the broker's PUBACK (a ward whose office sends "
                             "no receipts); unset: kept as configured")
    d_inst.add_argument("--state-dir", type=Path, default=Path("/var/lib/cccd-edge"))
    d_inst.add_argument("--config-dir", type=Path, default=Path("/etc/cccd-edge"))
    d_inst.add_argument("--owner", default="auto", help=owner_help)
    d_inst.set_defaults(func=_device_install)

    gw = sides.add_parser("gateway", help="office side: the identity of one gateway instance at the ward broker")
    gw_cmds = gw.add_subparsers(dest="action", required=True)
    g_init = gw_cmds.add_parser("init", help="generate the gateway key here (kept if present) and write a CSR")
    g_init.add_argument("--name", required=True, help="instance name (one certificate per instance): CN gateway:NAME")
    g_init.add_argument("--ward", required=True)
    g_init.add_argument("--dir", type=Path, default=Path("gateway"), help="key (0600) and CSR directory")
    g_init.set_defaults(func=_gateway_init)

    kit = sides.add_parser("broker-kit", help="ward side: mosquitto.conf, ACL and broker certificate for the ward")
    kit.add_argument("--ward-ca", type=Path, default=Path("ward-ca"), help="the ward CA directory")
    kit.add_argument("-o", "--out", type=Path, required=True, help="directory for the kit (server.key 0600)")
    kit.add_argument("--host", action="append", required=True,
                     help="DNS name or address terminals use for the broker (repeatable; the certificate's names)")
    kit.add_argument("--gateway", action="append", metavar="NAME",
                     help="gateway instance allowed to read the ward (repeatable; default office-1)")
    kit.add_argument("--shut-out", action="append", default=[], metavar="TERMINAL_ID",
                     help="a terminal whose certificate still verifies but may publish and read nothing (repeatable; "
                     "apply with systemctl reload mosquitto)")
    kit.add_argument("--port", type=int, default=8883)
    kit.add_argument("--bind", help="listen address (default: every interface)")
    kit.add_argument("--install-dir", type=Path, default=broker_kit.DEFAULT_INSTALL_DIR,
                     help="where the kit's files will be on the broker host (the config names them)")
    kit.add_argument("--persistence-dir", type=Path, default=broker_kit.DEFAULT_PERSISTENCE_DIR)
    kit.add_argument("--topic-prefix", default=broker_kit.DEFAULT_TOPIC_PREFIX, help="the terminals' mqtt.topic_prefix")
    defaults = broker_kit.QueueSizing()
    kit.add_argument("--terminals", type=int, default=defaults.terminals, help="terminals in the ward (queue sizing)")
    kit.add_argument("--reads-per-hour", type=int, default=defaults.reads_per_hour, help="per terminal at peak")
    kit.add_argument("--outage-hours", type=int, default=defaults.outage_hours,
                     help="how long the gateway may be away without losing a message")
    kit.add_argument("--days", type=int, default=365, help="validity of the broker certificate")
    kit.add_argument("--user", default="mosquitto", help="the user mosquitto runs as ('' leaves the line out)")
    kit.set_defaults(func=_broker_kit)

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
