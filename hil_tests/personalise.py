"""Personalise a blank JMRTD passportapplet into a rig test card, from one of the simulator's card profiles.

The rig needs real chips carrying the same files and keys as the virtual cards, so one profile describes both: the
card image of ``edge.sim.builder.build_card`` (EF.COM, the data groups, EF.SOD signed by the simulator's test DS)
and its chip secrets are written into the open-source JavaCard passport applet of the JMRTD project (installed
with GlobalPlatformPro, see hil_tests/README.md). :func:`personalisation_plan` is pure; ``main`` sends the plan
through the terminal's own PC/SC driver.

The applet's personalisation interface (PassportApplet.java, used by JMRTD's PersoService), unsecured before lock:

* CREATE FILE ``00 E0 00 00`` with ``63 04 <size:2> <fid:2>``: only DG1..DG15, EF.SOD and EF.COM have a slot, and
  the size is a signed 16-bit Java short;
* SELECT FILE ``00 A4 02 0C <fid>``, then UPDATE BINARY ``00 D6 <offset:2>`` in chunks;
* PUT DATA ``00 DA 00 62``: the BAC key. The current applet takes ``62 {04 document number, 04 date of birth,
  04 date of expiry}`` and adds the check digits itself (``mrz`` form); older forks took the 16-byte BAC key seed
  itself (``key-seed`` form);
* PUT DATA ``00 DA 00 60`` / ``00 DA 00 61``: the Active Authentication key, ``60 {04 modulus}`` and
  ``61 {04 private exponent}``. The applet holds one RSA-1024 key and signs ISO/IEC 9796-2 with SHA-1 (trailer BC);
* PUT DATA ``00 DA DE AD``: lock. No more writes; SELECT FILE then needs BAC.

What such a card covers and what it does not:

* BAC with the MRZ key, 3DES secure messaging, AA (RSA-1024), passive authentication (the SOD chains to the
  simulator's test CSCA, which a rig's trust dir must hold for ``verified``);
* not PACE: the applet has none and there is no EF.CardAccess, so a PACE (CAN) read needs a commercial test card;
* not chip authentication: the applet's EAC key (PUT DATA ``63``) is a binary-field c2pnb163v1 key for EAC 1.0
  3DES CA, which cannot hold the profile's brainpoolP256r1 key for AES CA. That key is not loaded; DG14 is still
  written (the SOD covers it), so a terminal that runs CA with it sees CA fail.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from cryptography.hazmat.primitives.asymmetric import rsa

from edge.errors import ConfigError, EdgeError, StatusWordError
from edge.protocol import tlv
from edge.protocol.apdu import ApduConnection, CommandApdu
from edge.protocol.chaining import ResponseChaining
from edge.protocol.crypto import bac_key_seed
from edge.protocol.iso7816 import EMRTD_AID, INS_CREATE_FILE, INS_PUT_DATA, INS_SELECT, INS_UPDATE_BINARY, SW_OK
from edge.protocol.read_strategy import file_name
from edge.sim.builder import build_card
from edge.sim.model import FID_COM, FID_SOD, SimCardSpec, dg_fid
from edge.sim.profile import load_profile

#: How PUT DATA 62 carries the BAC key: the current applet's MRZ TLV, or the key seed older forks take.
MrzForm = Literal["mrz", "key-seed"]

#: Bytes per UPDATE BINARY: what JMRTD's PersoService writes under secure messaging (0xFF - 32), so a write fits
#: any reader and the applet's APDU buffer whether or not the channel is secured.
MAX_UPDATE_CHUNK = 0xDF
#: CREATE FILE sizes and UPDATE BINARY offsets are Java shorts (and an offset with bit 15 set would address by SFI).
MAX_FILE_SIZE = 0x7FFF
#: The only FIDs the applet's file system has a slot for; any other CREATE FILE fails inside the applet (6F00).
APPLET_FIDS = frozenset({*(dg_fid(number) for number in range(1, 16)), FID_SOD, FID_COM})
#: The applet's AA key: KeyBuilder.LENGTH_RSA_1024, and INTERNAL AUTHENTICATE insists on 128-byte blocks.
APPLET_RSA_BITS = 1024
LOCK_P1P2 = (0xDE, 0xAD)

TAG_CREATE_FILE = 0x63
TAG_OCTET_STRING = 0x04
TAG_AA_MODULUS = 0x60
TAG_AA_EXPONENT = 0x61
TAG_BAC_KEY = 0x62

#: Hints for the status words a personalisation run meets in practice.
_STATUS_HINTS = {
    0x6985: "the applet is locked (personalised before): delete it (gp --delete A0000002471001) and install afresh",
    0x6A82: "no such applet or file: is passportapplet.cap installed (gp --list)?",
    0x6A84: "the card has no room for this file: use a profile with a smaller card.dg2_size",
    0x6D00: "the selected applet does not take this command: is it the JMRTD passportapplet (gp --list)?",
    0x6F00: "the applet failed internally on this command",
}


@dataclass(frozen=True, slots=True)
class PersoStep:
    """One command of the plan and what it does, in words that carry no personal data (safe for logs)."""

    label: str
    apdu: CommandApdu


def _card_spec(profile: str | Path | SimCardSpec, pki_dir: Path | None) -> SimCardSpec:
    if isinstance(profile, SimCardSpec):
        return profile
    return build_card(load_profile(profile), pki_dir=pki_dir)


def _refuse(spec: SimCardSpec, message: str, hint: str) -> ConfigError:
    return ConfigError(message, key=f"profile {spec.name}", hint=hint)


def _file_order(fid: int) -> tuple[int, int]:
    """EF.COM first, the data groups in order, EF.SOD last: the order JMRTD's own tools upload a document in."""
    return ({FID_COM: 0, FID_SOD: 2}.get(fid, 1), fid)


def _file_steps(spec: SimCardSpec, fid: int, content: bytes) -> list[PersoStep]:
    name = file_name(fid & 0x1F)
    if fid not in APPLET_FIDS:
        raise _refuse(spec, f"the applet has no slot for file {fid:04X} ({name})", "use a profile without it")
    if len(content) > MAX_FILE_SIZE:
        raise _refuse(
            spec, f"{name} is {len(content)} bytes; the applet's files hold at most {MAX_FILE_SIZE}",
            "lower card.dg2_size in the profile",
        )  # fmt: skip
    header = bytes((TAG_CREATE_FILE, 4)) + len(content).to_bytes(2, "big") + fid.to_bytes(2, "big")
    steps = [
        PersoStep(f"CREATE FILE {name} ({len(content)} bytes)", CommandApdu(0x00, INS_CREATE_FILE, 0, 0, header)),
        PersoStep(f"SELECT FILE {name}", CommandApdu(0x00, INS_SELECT, 0x02, 0x0C, fid.to_bytes(2, "big"))),
    ]
    for offset in range(0, len(content), MAX_UPDATE_CHUNK):
        chunk = content[offset : offset + MAX_UPDATE_CHUNK]
        steps.append(PersoStep(
            f"UPDATE BINARY {name} offset {offset}",
            CommandApdu(0x00, INS_UPDATE_BINARY, offset >> 8, offset & 0xFF, chunk),
        ))  # fmt: skip
    return steps


def _bac_step(spec: SimCardSpec, mrz_form: MrzForm) -> PersoStep:
    """The BAC key from the chip's MRZ information (document number + cd + DOB + cd + DOE + cd)."""
    info = spec.secrets.mrz_information
    if mrz_form == "key-seed":
        return PersoStep("PUT DATA BAC key seed", CommandApdu(0x00, INS_PUT_DATA, 0, TAG_BAC_KEY, bac_key_seed(info)))
    number, birth, expiry = info[:-15], info[-14:-8], info[-7:-1]
    data = tlv.encode_constructed(
        TAG_BAC_KEY, *(tlv.encode(TAG_OCTET_STRING, field.encode("ascii")) for field in (number, birth, expiry))
    )
    return PersoStep("PUT DATA BAC key (MRZ information)", CommandApdu(0x00, INS_PUT_DATA, 0, TAG_BAC_KEY, data))


def _unsigned(value: int) -> bytes:
    """Big-endian without a sign byte: the applet drops one leading zero, so none is sent."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _active_auth_steps(spec: SimCardSpec) -> list[PersoStep]:
    key = spec.secrets.aa_private_key
    hint = f'use a profile with card.aa_key = "rsa" and aa_rsa_bits = {APPLET_RSA_BITS} (e.g. default), or "none"'
    if key is None:
        return []
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _refuse(spec, "its Active Authentication key is EC; the JMRTD passportapplet does AA with RSA only", hint)
    if key.key_size != APPLET_RSA_BITS:
        raise _refuse(
            spec, f"its Active Authentication key is RSA-{key.key_size}; the applet holds RSA-{APPLET_RSA_BITS} only",
            hint,
        )  # fmt: skip
    numbers = key.private_numbers()
    return [
        PersoStep(f"PUT DATA AA private key {what}", CommandApdu(
            0x00, INS_PUT_DATA, 0, tag, tlv.encode_constructed(tag, tlv.encode(TAG_OCTET_STRING, _unsigned(value)))
        ))
        for what, tag, value in (
            ("modulus", TAG_AA_MODULUS, numbers.public_numbers.n), ("exponent", TAG_AA_EXPONENT, numbers.d),
        )
    ]  # fmt: skip


def personalisation_plan(
    profile: str | Path | SimCardSpec, *, mrz_form: MrzForm = "mrz", lock: bool = True, pki_dir: Path | None = None
) -> list[PersoStep]:
    """Every command, in order, that turns a blank applet into the profile's card (see the module docstring).

    ``profile`` is a bundled profile name, a profile TOML path or an already built card; ``pki_dir`` is the
    simulator PKI that signs the SOD (default: the one the virtual rig trusts). Raises :class:`ConfigError` for a
    card the applet cannot hold (an EC or non-1024-bit AA key, a file over 32767 bytes or without a slot).
    """
    spec = _card_spec(profile, pki_dir)
    steps = [PersoStep("SELECT eMRTD applet", CommandApdu(0x00, INS_SELECT, 0x04, 0x0C, EMRTD_AID))]
    for fid in sorted(spec.image.applet_files, key=_file_order):
        steps += _file_steps(spec, fid, spec.image.applet_files[fid])
    steps.append(_bac_step(spec, mrz_form))
    steps += _active_auth_steps(spec)
    if lock:
        steps.append(PersoStep("PUT DATA lock applet", CommandApdu(0x00, INS_PUT_DATA, *LOCK_P1P2)))
    return steps


def personalisation_apdus(
    profile: str | Path | SimCardSpec, *, mrz_form: MrzForm = "mrz", lock: bool = True, pki_dir: Path | None = None
) -> list[CommandApdu]:
    """The commands of :func:`personalisation_plan` alone."""
    return [step.apdu for step in personalisation_plan(profile, mrz_form=mrz_form, lock=lock, pki_dir=pki_dir)]


def send_plan(connection: ApduConnection, steps: Sequence[PersoStep]) -> None:
    """Send every step; stop at the first answer other than 9000 with a :class:`StatusWordError` naming the step."""
    for number, step in enumerate(steps, start=1):
        sw = connection.send_and_receive(step.apdu).sw
        if sw != SW_OK:
            hint = _STATUS_HINTS.get(sw, "")
            raise StatusWordError(sw, step.label, message=f"step {number}/{len(steps)} ({step.label}) answered "
                                  f"{sw:04X}" + (f": {hint}" if hint else ""))  # fmt: skip


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hil_tests.personalise", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--profile", required=True, help="bundled profile name (edge/sim/profiles) or TOML path")
    parser.add_argument("--reader", help="substring of the PC/SC reader name holding the blank card")
    parser.add_argument("--dry-run", action="store_true", help="print the APDUs in hex instead of sending them")
    parser.add_argument("--no-lock", action="store_true", help="leave the applet writable (no PUT DATA DE AD)")
    parser.add_argument(
        "--mrz-form",
        choices=get_args(MrzForm),
        default="mrz",
        help="PUT DATA 62 as the current applet takes it (mrz) or as older forks do (key-seed)",
    )
    parser.add_argument("--pki-dir", type=Path, help="simulator PKI that signs the SOD (default: the usual cache)")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.reader:
        parser.error("--reader is required unless --dry-run")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Print (``--dry-run``) or send the plan; a refusal ends as one line on stderr and exit status 1."""
    args = _arguments(argv)
    try:
        steps = personalisation_plan(args.profile, mrz_form=args.mrz_form, lock=not args.no_lock,
                                     pki_dir=args.pki_dir)  # fmt: skip
        if args.dry_run:
            for step in steps:
                print(f"{step.apdu.to_bytes().hex().upper()}  # {step.label}")
            return 0
        from edge.drivers.pcsc import PcscReaderDriver  # lazy: a dry run needs no PC/SC

        driver = PcscReaderDriver(reader_filter=args.reader)
        try:
            with driver.connect() as connection:
                send_plan(ResponseChaining(connection), steps)  # a T=0 reader's 61xx completed
                reader = connection.reader_name
        finally:
            driver.close()
    except EdgeError as exc:
        print(f"personalise: {exc}", file=sys.stderr)
        return 1
    state = "unlocked (--no-lock)" if args.no_lock else "locked"
    print(f"personalised {args.profile!r} on {reader}: {len(steps)} APDUs, applet {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
