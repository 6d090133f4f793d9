"""A hostile card at two levels, in process (the simulator's chip driven directly, no pcscd):

* **below secure messaging** (``wire``): the bytes on the wire are damaged after the chip protected them: flipped
  bits, cut answers, other status words, replayed answers, 61xx that never ends, 6Cxx, garbage;
* **lies under valid MACs** (``lies``): the chip itself says what it likes and protects it properly: files that
  differ from the signed ones (and a SOD re-signed by a signer the forger holds), headers that claim more or less
  than the file holds, DG14/DG15 keys on explicit curves of its own choosing, wrong status words and lengths, stale
  or short answers, 61xx/6Cxx loops, damaged chip and active authentication answers.

A scenario is plain data (JSON with bytes), so a reproducer file replays it. All randomness of chip and reader comes
from the scenario's seed: a replay sends the same APDUs.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.errors import TransmitError
from edge.protocol import crypto, tlv
from edge.protocol import ec as pure_ec
from edge.protocol.access.policy import AccessKey, CanKey, MrzKey
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.cccd_qr import CccdQr
from edge.protocol.chip import ReadRequest, read_chip
from edge.protocol.lds.dg14 import encode_dg14
from edge.protocol.lds.dg15 import encode_dg15
from edge.protocol.lds.sod import encode_sod, parse_sod
from edge.protocol.mrz import parse_mrz
from edge.protocol.read_strategy import ChunkMemory
from edge.protocol.sm import SessionKeys
from edge.protocol.verify.card import verify_chip
from edge.protocol.verify.checks import Verdict
from edge.protocol.verify.trust import TrustStore
from edge.sim.builder import build_card, rogue_ds_reissued
from edge.sim.card import CardLeftField, VirtualCard
from edge.sim.card_qr import card_qr
from edge.sim.chip_security import SimChipSecurity
from edge.sim.model import FID_CARD_ACCESS, FID_COM, FID_SOD, SimCardSpec, dg_fid
from edge.sim.pki import Signer, SimPki
from edge.sim.profile import load_profile

from .mutate import Node, how_many, mutate, mutate_bytes, mutate_tree

NOW = datetime(2026, 6, 1, tzinfo=UTC)
#: The daemon's read deadline (``timeouts.reading``, 20 s by default), on the simulator's timing model (per-APDU
#: overhead plus air time): in process a chip answers at once, so the time a real chip's answers take must be
#: modelled, or a chip answering one byte at a time would meet only the CPU watchdog, never the deadline.
READ_DEADLINE_S = 20.0
#: Genuine profiles whose chip opens with the CAN and reads to the end without real delays.
CHIP_PROFILES = ("default", "child", "elderly", "married", "long-address", "young", "quirk-small-le",
                 "quirk-no-sfi", "quirk-eof-6282", "quirk-no-extended", "quirk-naked-errors", "quirk-pace-only",
                 "quirk-small-le-6b00", "card2024", "quirk-one-short-answer")  # fmt: skip

SW_CHOICES = (0x6100, 0x6101, 0x61FF, 0x6C00, 0x6C01, 0x6CFF, 0x6282, 0x6283, 0x6700, 0x6B00, 0x6A82, 0x6982,
              0x6A86, 0x6986, 0x6A81, 0x6F00, 0x6987, 0x6988, 0x9000, 0x6300, 0x63C1, 0x6581, 0x6D00, 0x6E00,
              0x6A80, 0x6A88, 0x6985, 0x0000, 0xFFFF, 0x9001)  # fmt: skip


@dataclass(frozen=True, slots=True)
class GenuineCard:
    """A genuine card of the simulator and what it signed: the truth a verdict is compared with."""

    name: str
    spec: SimCardSpec
    encap_content: bytes  # the signed LDSSecurityObject
    data_groups: Mapping[int, bytes]  # DG number -> file as signed
    qr: CccdQr
    mrz_key: MrzKey


def build_cards(pki: SimPki, names: Sequence[str]) -> dict[str, GenuineCard]:
    cards = {}
    for name in names:
        profile = load_profile(name)
        spec = build_card(profile, pki_dir=pki.directory)
        files = spec.image.applet_files
        dgs = {fid - 0x0100: content for fid, content in files.items() if 0x0101 <= fid <= 0x0110}
        mrz = parse_mrz(files[dg_fid(1)][5:].decode("ascii"))
        cards[name] = GenuineCard(
            name, spec, parse_sod(files[FID_SOD]).encap_content, dgs, card_qr(profile.person),
            MrzKey(mrz.document_number, mrz.date_of_birth, mrz.date_of_expiry),
        )  # fmt: skip
    return cards


# --- hostile explicit curves ---------------------------------------------------------------------------------------

ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
ID_PRIME_FIELD = "1.2.840.10045.1.1"
ID_CHAR_TWO_FIELD = "1.2.840.10045.1.2"


def _integer(value: int) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)
    return tlv.encode(0x02, value.to_bytes(size, "big", signed=True))


def explicit_spki(p: int, a: int, b: int, base: bytes, n: int, h: int | None, point: bytes, *,
                  field: str = ID_PRIME_FIELD, version: int = 1) -> bytes:  # fmt: skip
    """An EC SubjectPublicKeyInfo with the given domain parameters spelled out, whatever they are."""
    size = max(1, (max(p, 1).bit_length() + 7) // 8)

    def octets(value: int) -> bytes:
        return (value % (1 << (8 * size))).to_bytes(size, "big")

    parts = [
        _integer(version),
        tlv.encode_constructed(0x30, tlv.encode(0x06, tlv.encode_oid(field)), _integer(p)),
        tlv.encode_constructed(0x30, tlv.encode(0x04, octets(a)), tlv.encode(0x04, octets(b))),
        tlv.encode(0x04, base),
        _integer(n),
    ]
    if h is not None:
        parts.append(_integer(h))
    algorithm = tlv.encode_constructed(0x30, tlv.encode(0x06, tlv.encode_oid(ID_EC_PUBLIC_KEY)),
                                       tlv.encode_constructed(0x30, *parts))  # fmt: skip
    return tlv.encode_constructed(0x30, algorithm, tlv.encode(0x03, b"\x00" + point))


def hostile_spki(rng: random.Random, genuine_point: bytes) -> bytes:
    """A key on a curve a hostile chip chose: orders <= 1, enormous or composite fields, off-curve generators,
    odd cofactors, singular curves, binary fields, compressed points needing square roots modulo non-primes."""
    bp = pure_ec.standard_parameters(13)  # brainpoolP256r1, the CCCD's curve
    size = bp.byte_length
    base = b"\x04" + bp.gx.to_bytes(size, "big") + bp.gy.to_bytes(size, "big")
    p, a, b, n, point = bp.p, bp.a, bp.b, bp.n, genuine_point
    h: int | None = 1
    field = ID_PRIME_FIELD
    kind = rng.randrange(14)
    if kind == 0:
        n = rng.choice((0, 1, 2, 3, -1, -bp.n))
    elif kind == 1:  # a field far too large: seconds per multiplication in pure Python
        p = rng.choice((2**4253 - 1, 2**2203 - 1, 2**1279 - 1, 2**9689 - 1))
        a, x, y = p - 3, 5, 7
        b = (y * y - x**3 - a * x) % p
        width = (p.bit_length() + 7) // 8
        base = b"\x04" + x.to_bytes(width, "big") + y.to_bytes(width, "big")
        n, point = rng.choice((p, p + 1, 2**64)), base
    elif kind == 2:
        p = rng.choice((bp.p + 2, 2**256, 2**256 + 1, bp.p * 3, 0, 1, 2, 3, -bp.p))  # composite, tiny, negative
    elif kind == 3:
        base = b"\x04" + (bp.gx + 1).to_bytes(size, "big") + bp.gy.to_bytes(size, "big")  # off the curve
    elif kind == 4:
        base = rng.choice((b"\x00", b"\x02" + bp.gx.to_bytes(size, "big"), b"\x03" + bp.gx.to_bytes(size, "big"),
                           b"\x04" + bp.gx.to_bytes(size, "big"), b"", b"\x05" + bytes(2 * size)))  # fmt: skip
    elif kind == 5:
        h = rng.choice((0, -1, 2**200, 4, None))
    elif kind == 6:
        a, b = 0, 0  # singular: y^2 = x^3
    elif kind == 7:
        field = ID_CHAR_TWO_FIELD
    elif kind == 8:
        point = rng.choice((b"\x00", b"\x04" + bytes(2 * size), b"\x02" + bytes(size), b"\x03" + b"\xff" * size,
                            genuine_point[:-1], genuine_point + b"\x00"))  # fmt: skip
    elif kind == 9:  # p = 1 mod 4 and composite: a compressed point needs Tonelli-Shanks modulo a non-prime
        p = rng.choice((2**256 + 1, 10**77 + 1, (2**127 - 1) * (2**89 - 1) * 4 + 1))
        size = (p.bit_length() + 7) // 8
        base = b"\x02" + (5).to_bytes(size, "big")
        point = b"\x03" + (7).to_bytes(size, "big")
    elif kind == 10:
        n = bp.n + rng.choice((1, 2, -2, 2**300))  # a wrong order of plausible size
    elif kind == 11:
        a, b = rng.randrange(bp.p), rng.randrange(bp.p)  # another curve over the same field (invalid-curve)
    elif kind == 12:
        return explicit_spki(p, a, b, base, n, h, point, version=rng.choice((0, 2, 3, -1)))
    # kind 13: the genuine curve spelled out: must load like the named one
    return explicit_spki(p, a, b, base, n, h, point, field=field)


# --- the scenario ----------------------------------------------------------------------------------------------------

_FILE_WEIGHTS = ((FID_SOD, 4), (dg_fid(14), 4), (dg_fid(1), 2), (dg_fid(13), 3), (dg_fid(15), 2), (FID_COM, 1),
                 (dg_fid(2), 1))  # fmt: skip
_QUIRKS = ({"max_le": 0xA0}, {"extended_length": False}, {"no_sfi": True}, {"eof_warning": True},
           {"wrong_le_hint": True, "extended_length": False}, {"naked_errors": True},
           {"eof_warning_on_last_chunk": True})  # fmt: skip
SIGNERS = ("rogue", "rogue_keyid", "untrusted", "expired")
#: Per trust store, the signers whose re-signed card may end "intact, origin not proven": nothing in the store
#: vouches for them. Under the test CSCA a rogue DS naming that CSCA must fail outright (its name is installed);
#: with only a DS pinned, nothing installed names its issuer.
UNPROVABLE_SIGNERS = {"csca": frozenset({"untrusted"}), "known_ds": frozenset({"untrusted", "rogue", "rogue_keyid"})}


def _weighted(rng: random.Random, items: Sequence[tuple[int, int]]) -> int:
    return rng.choices([item for item, _ in items], [weight for _, weight in items])[0]


def _header_lie(rng: random.Random, content: bytes) -> bytes:
    """The file's outer TLV length changed: longer than the file, shorter, or absurd."""
    try:
        tag, length, start = tlv.read_header(content)
    except Exception:  # noqa: BLE001 - a file already damaged: cut it instead
        return content[: len(content) // 2]
    new = rng.choice((length + 1, length + 100, length - 1, max(length // 2, 0), 0, 0xFFFF, 0xFFFFFF, length + 65536))
    return tlv.encode_tag(tag) + tlv.encode_length(max(new, 0)) + content[start:]


def generate(rng: random.Random, cards: Mapping[str, GenuineCard], pool: Sequence[bytes], donors: Sequence[Node],
             level: str) -> dict[str, Any]:  # fmt: skip
    name = rng.choice(sorted(cards))
    card = cards[name]
    photo = rng.random() < 0.15
    scenario: dict[str, Any] = {
        "profile": name, "level": level, "seed": rng.randrange(2**32),
        "request": {"photo": photo, "key": "mrz" if rng.random() < 0.2 else "can", "bac": rng.random() < 0.2},
        "transport": "t0" if rng.random() < 0.2 else "direct", "quirks": {}, "files": {}, "resign": None,
        "wire": [], "lies": [], "trust": "known_ds" if rng.random() < 0.25 else "csca",
    }  # fmt: skip
    if scenario["transport"] == "t0":  # a T=0-style card: answers in pieces, 61xx (read_chip's chaining collects them)
        scenario["quirks"]["response_chunk"] = rng.choice((32, 128, 200, 254))
    if rng.random() < 0.15:
        scenario["quirks"].update(rng.choice(_QUIRKS))
    apdus = 17 + (12 if photo else 0)
    if level == "wire":
        for _ in range(how_many(rng, 1.5)):
            op = rng.choice(("flip", "flip", "truncate", "sw", "nodata", "garbage", "replay", "tree", "extra",
                             "61loop", "6C", "cmd_flip"))  # fmt: skip
            scenario["wire"].append({"at": rng.randrange(1, apdus + 4), "op": op,
                                     "arg": rng.choice(SW_CHOICES) if op in ("sw", "6C") else rng.randrange(1, 64)})
        return scenario
    for _ in range(how_many(rng, 1.2)):
        kind = rng.choice(("file", "file", "header", "truncate", "curve", "curve", "dg15_curve", "remove", "deny",
                           "card_access", "lie", "lie", "lie", "lie", "security", "framing", "framing"))  # fmt: skip
        if kind == "framing":
            when = ("nth", rng.randrange(1, apdus)) if rng.random() < 0.7 else ("from", rng.randrange(1, apdus))
            scenario["lies"].append({"when": list(when), "op": rng.choice(FRAMINGS), "arg": 0, "security": "framing"})
            continue
        if kind == "lie" or kind == "security":
            op = rng.choice(("sw", "sw_only", "short", "long", "empty", "garbage", "stale", "mutate"))
            arg = rng.choice(SW_CHOICES) if op.startswith("sw") else rng.choice((0, 1, 2, 7, 16, 200, 300, 70000))
            when = rng.choice((("nth", rng.randrange(1, apdus)), ("from", rng.randrange(1, apdus)),
                               ("every", rng.randrange(2, 5)), ("sfi", rng.choice((1, 2, 13, 14, 15, 0x1D))),
                               ("ins", rng.choice((0x88, 0x86, 0x22, 0xA4, 0xB0, 0xB1)))))  # fmt: skip
            scenario["lies"].append({"when": list(when), "op": op, "arg": arg,
                                     "security": kind == "security"})  # fmt: skip
            continue
        files = card.spec.image.applet_files
        fid = _weighted(rng, _FILE_WEIGHTS)
        if fid == dg_fid(15) and fid not in files:
            fid = dg_fid(13)
        content = scenario["files"].get(str(fid)) or files[fid]
        if kind == "file":
            scenario["files"][str(fid)] = mutate(rng, content, pool, donors)
        elif kind == "header":
            scenario["files"][str(fid)] = _header_lie(rng, content)
        elif kind == "truncate":
            scenario["files"][str(fid)] = content[: rng.randrange(1, len(content))]
        elif kind == "curve":
            point = card.spec.secrets.ca_private_key.public_key().public_bytes(  # type: ignore[union-attr]
                Encoding.X962, PublicFormat.UncompressedPoint)
            scenario["files"][str(dg_fid(14))] = encode_dg14(hostile_spki(rng, point))
            if rng.random() < 0.3:
                scenario["files"][str(dg_fid(14))] = mutate_tree(rng, scenario["files"][str(dg_fid(14))], donors) \
                    or scenario["files"][str(dg_fid(14))]
        elif kind == "dg15_curve":
            point = card.spec.secrets.ca_private_key.public_key().public_bytes(  # type: ignore[union-attr]
                Encoding.X962, PublicFormat.UncompressedPoint)
            scenario["files"][str(dg_fid(15))] = encode_dg15(hostile_spki(rng, point))
        elif kind == "remove":
            scenario["files"][str(fid)] = None
        elif kind == "deny":
            scenario["deny"] = fid
        elif kind == "card_access":
            scenario["card_access"] = mutate(rng, card.spec.image.mf_files[FID_CARD_ACCESS], pool, donors)
    changed = {int(fid) for fid in scenario["files"]}
    if changed and FID_SOD not in changed and rng.random() < 0.5:
        scenario["resign"] = rng.choice(SIGNERS)  # the forger re-signs what it changed so the hashes match
    return scenario


# --- the card side ----------------------------------------------------------------------------------------------------


def _signer(pki: SimPki, name: str) -> Signer:
    """The forger's signers, plus ``genuine`` (the test DS itself: never drawn, it proves the oracle in tests)."""
    if name == "genuine":
        return pki.ds
    if name == "rogue":
        return pki.rogue_ds
    if name == "rogue_keyid":
        return rogue_ds_reissued(pki, key_id="csca")
    if name == "untrusted":
        return pki.untrusted_ds
    return pki.expired_ds


def card_spec(scenario: Mapping[str, Any], card: GenuineCard, pki: SimPki) -> SimCardSpec:
    """The genuine card with the scenario's files, quirks and (maybe) a re-signed EF.SOD."""
    spec = card.spec
    files = dict(spec.image.applet_files)
    for fid_text, content in scenario["files"].items():
        if content is None:
            files.pop(int(fid_text), None)
        else:
            files[int(fid_text)] = content
    if scenario["resign"] is not None:
        signer = _signer(pki, scenario["resign"])
        dgs = {fid - 0x0100: content for fid, content in files.items() if 0x0101 <= fid <= 0x0110}
        files[FID_SOD] = encode_sod(dgs, hash_algorithm="sha256", signer_key=signer.key,
                                    signer_cert=signer.certificate)  # fmt: skip
    denied = dict(spec.image.denied_files)
    if "deny" in scenario:
        denied[int(scenario["deny"])] = 0x6982
        files.pop(int(scenario["deny"]), None)
    mf_files = dict(spec.image.mf_files)
    if "card_access" in scenario:
        mf_files[FID_CARD_ACCESS] = scenario["card_access"]
    image = dataclasses.replace(spec.image, applet_files=files, mf_files=mf_files, denied_files=denied)
    quirks = dataclasses.replace(spec.quirks, **scenario["quirks"])
    return dataclasses.replace(spec, image=image, quirks=quirks)


class _Counter:
    def __init__(self) -> None:
        self.secured = 0
        self.last: ResponseApdu | None = None


def _lie_applies(lie: Mapping[str, Any], count: int, command: CommandApdu) -> bool:
    kind, arg = lie["when"]
    if kind == "nth":
        return bool(count == arg)
    if kind == "from":
        return bool(count >= arg)
    if kind == "every":
        return bool(count % arg == 0)
    if kind == "sfi":
        return command.ins == 0xB0 and bool(command.p1 & 0x80) and command.p1 & 0x1F == arg
    return bool(command.ins == arg)


def _apply_lie(lie: Mapping[str, Any], response: ResponseApdu, rng: random.Random, counter: _Counter) -> ResponseApdu:
    op, arg = lie["op"], lie["arg"]
    if op == "sw":
        return ResponseApdu(response.data, arg)
    if op == "sw_only":
        return ResponseApdu(b"", arg)
    if op == "short":
        return ResponseApdu(response.data[:arg], response.sw)
    if op == "long":
        return ResponseApdu(response.data + rng.randbytes(min(arg, 60000)), response.sw)
    if op == "empty":
        return ResponseApdu(b"", 0x9000)
    if op == "garbage":
        return ResponseApdu(rng.randbytes(min(arg, 60000)), 0x9000)
    if op == "stale":
        return counter.last or response
    return ResponseApdu(mutate_bytes(rng, response.data, rounds=2), response.sw)


FRAMINGS = ("indicator", "partial_block", "bad_padding", "no_do99", "do99_length", "do85", "two_do87",
            "empty_do87", "extra_object", "short_mac", "object_after_mac", "no_do87_with_data_sw", "long_plain")


def misframed(kind: str, keys: SessionKeys, ssc: int, response: ResponseApdu, rng: random.Random) -> ResponseApdu:
    """A secured answer whose SM objects are wrong in ``kind``'s way, MAC'd correctly with the session's keys."""
    block = keys.suite.block_size
    iv = crypto.sm_iv(keys.suite, keys.ks_enc, keys.ssc_bytes(ssc))
    data = response.data or b"\x90"

    def cryptogram(plain: bytes) -> bytes:
        return crypto.encrypt_cbc(keys.suite, keys.ks_enc, plain, iv)

    good = b"\x01" + cryptogram(crypto.pad(data, block))
    do99 = tlv.encode(0x99, response.sw.to_bytes(2, "big"))
    body = {
        "indicator": tlv.encode(0x87, b"\x02" + good[1:]) + do99,
        "partial_block": tlv.encode(0x87, good[:-1]) + do99,
        "bad_padding": tlv.encode(0x87, b"\x01" + cryptogram(data + bytes(-len(data) % block or block))) + do99,
        "no_do99": tlv.encode(0x87, good),
        "do99_length": tlv.encode(0x87, good) + tlv.encode(0x99, rng.choice((b"", b"\x90", b"\x90\x00\x00"))),
        "do85": tlv.encode(0x85, good[1:]) + do99,
        "two_do87": tlv.encode(0x87, good) + tlv.encode(0x87, good) + do99,
        "empty_do87": tlv.encode(0x87, b"") + do99,
        "extra_object": tlv.encode(0x87, good) + tlv.encode(0x53, b"\x00") + do99,
        "no_do87_with_data_sw": tlv.encode(0x99, b"\x90\x00"),
        "long_plain": tlv.encode(0x87, b"\x01" + cryptogram(crypto.pad(rng.randbytes(70000), block))) + do99,
    }.get(kind, tlv.encode(0x87, good) + do99)
    mac = crypto.sm_mac(keys.suite, keys.ks_mac, keys.ssc_bytes(ssc) + body)
    if kind == "short_mac":
        return ResponseApdu(body + tlv.encode(0x8E, mac[:4]), response.sw)
    if kind == "object_after_mac":
        return ResponseApdu(body + tlv.encode(0x8E, mac) + do99, response.sw)
    return ResponseApdu(body + tlv.encode(0x8E, mac), rng.choice((response.sw, 0x9000, 0x6282)))


class LyingSecurity:
    """The simulated chip's access control, whose answers to secured CA/AA/MSE commands may lie (then get MAC'd)."""

    def __init__(self, inner: SimChipSecurity, lies: Sequence[Mapping[str, Any]], rng: random.Random,
                 counter: _Counter) -> None:  # fmt: skip
        self._inner = inner
        self._lies = [lie for lie in lies if lie["security"] is True]
        self._framing = [lie for lie in lies if lie["security"] == "framing"]
        self._wraps = 0
        self._rng = rng
        self._counter = counter

    @property
    def session_active(self) -> bool:
        return self._inner.session_active

    def handles(self, command: CommandApdu) -> bool:
        return self._inner.handles(command)

    def process(self, command: CommandApdu) -> ResponseApdu:
        secured = self._inner.session_active
        response = self._inner.process(command)
        if secured and self._lies:
            self._counter.secured += 1
            for lie in self._lies:
                if _lie_applies(lie, self._counter.secured, command):
                    response = _apply_lie(lie, response, self._rng, self._counter)
        return response

    def unwrap(self, command: CommandApdu) -> CommandApdu:
        return self._inner.unwrap(command)

    def refuse(self) -> None:
        self._inner.refuse()

    def wrap(self, response: ResponseApdu) -> ResponseApdu:
        keys = self._inner._keys
        ssc = self._inner.ssc + 1  # what this answer is protected under (CA may switch keys right after it)
        wrapped = self._inner.wrap(response)
        if keys is None or wrapped is response or not self._framing:
            return wrapped
        self._wraps += 1
        for lie in self._framing:
            kind, arg = lie["when"]
            if (kind == "nth" and self._wraps == arg) or (kind == "from" and self._wraps >= arg):
                return misframed(lie["op"], keys, ssc, response, self._rng)
        return wrapped

    def reset(self) -> None:
        self._inner.reset()


class LyingCard(VirtualCard):
    """The virtual card whose file system answers (READ BINARY, SELECT) may lie while a session is active."""

    def __init__(self, spec: SimCardSpec, security: LyingSecurity, lies: Sequence[Mapping[str, Any]],
                 rng: random.Random, counter: _Counter) -> None:  # fmt: skip
        super().__init__(spec, security)
        self._lies = [lie for lie in lies if lie["security"] is False]
        self._rng = rng
        self._counter = counter
        self._session = security

    def _execute(self, command: CommandApdu) -> ResponseApdu:
        response = super()._execute(command)
        if not self._session.session_active or not self._lies:
            return response
        self._counter.secured += 1
        told = response
        for lie in self._lies:
            if _lie_applies(lie, self._counter.secured, command):
                told = _apply_lie(lie, told, self._rng, self._counter)
        if command.ins in (0xB0, 0xB1):
            self._counter.last = response
        return told


class WireLink:
    """The air between reader and chip: answers damaged after the chip protected them (``wire`` operations)."""

    def __init__(self, card: VirtualCard, ops: Sequence[Mapping[str, Any]], rng: random.Random) -> None:
        self._card = card
        self._ops = ops
        self._rng = rng
        self._count = 0
        self._previous = b"\x90\x00"
        self._looping = False

    @property
    def supports_extended_length(self) -> bool:
        return True

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        self._count += 1
        raw_command = command.to_bytes()
        ops = [op for op in self._ops if op["at"] == self._count]
        if self._looping and command.ins == 0xC0:
            return ResponseApdu(self._rng.randbytes(min(command.le or 256, 256)), 0x6100)
        for op in ops:
            if op["op"] == "cmd_flip" and raw_command:
                flipped = bytearray(raw_command)
                flipped[self._rng.randrange(len(flipped))] ^= 1 << self._rng.randrange(8)
                raw_command = bytes(flipped)
        try:
            raw = self._card.process(raw_command)
        except CardLeftField as exc:
            raise TransmitError("the virtual card left the field") from exc
        for op in ops:
            raw = self._damage(op, raw)
        self._previous = raw
        if len(raw) < 2:
            raise TransmitError(f"answer without status word to {command.describe()}")
        return ResponseApdu.from_bytes(raw)

    def _damage(self, op: Mapping[str, Any], raw: bytes) -> bytes:
        kind, arg = op["op"], op["arg"]
        data, sw = raw[:-2], raw[-2:]
        if kind == "flip":
            buf = bytearray(raw)
            for _ in range(1 + arg % 3):
                buf[self._rng.randrange(len(buf))] ^= 1 << self._rng.randrange(8)
            return bytes(buf)
        if kind == "truncate":
            return raw[: max(2, len(raw) - arg)]
        if kind == "sw":
            return data + int(arg).to_bytes(2, "big")
        if kind == "nodata":
            return sw
        if kind == "garbage":
            return self._rng.randbytes(len(data)) + sw
        if kind == "replay":
            return self._previous
        if kind == "tree":
            return (mutate_tree(self._rng, data) or mutate_bytes(self._rng, data, rounds=1)) + sw
        if kind == "extra":
            return data + self._rng.randbytes(arg) + sw
        if kind == "61loop":
            self._looping = True
            return data[: len(data) // 2] + b"\x61\x00"
        if kind == "6C":
            return b"\x6c" + bytes([arg & 0xFF])
        return raw


# --- one read ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadOutcome:
    status: str  # "accepted", "rejected" (verdict failed), "expected" (origin not proven on a re-signed card),
    #              "false_accept"
    detail: str = ""


def _proves_origin(verdict: Verdict) -> bool:
    proves = getattr(verdict, "proves_origin", None)
    return bool(proves) if proves is not None else verdict is Verdict.VERIFIED


def run(scenario: Mapping[str, Any], card: GenuineCard, pki: SimPki, trust: TrustStore) -> ReadOutcome:
    """Read the scenario's card and verify it; compare a verdict that is not failed with what was signed."""
    spec = card_spec(scenario, card, pki)
    rng = random.Random(scenario["seed"])
    counter = _Counter()
    security = LyingSecurity(SimChipSecurity(spec.secrets, spec.quirks, rng=rng.randbytes), scenario["lies"], rng,
                             counter)  # fmt: skip
    chip = LyingCard(spec, security, scenario["lies"], rng, counter)
    chip.power_on()
    link = WireLink(chip, scenario["wire"], rng)
    request = scenario["request"]
    key: AccessKey = card.mrz_key if request["key"] == "mrz" else CanKey(spec.secrets.can)
    read_request = ReadRequest(key, want_photo=request["photo"], aa_challenge=rng.randbytes(8),
                               allow_bac_fallback=request["bac"])  # fmt: skip
    read = read_chip(link, read_request, rng=rng.randbytes, memory=ChunkMemory(),  # its response chaining: 61xx, 6Cxx
                     expired=lambda: chip.counters.modelled_seconds >= READ_DEADLINE_S)  # fmt: skip
    report = verify_chip(read, trust, now=NOW, qr=card.qr)
    if report.verdict is Verdict.FAILED:
        return ReadOutcome("rejected")
    differs = [f"DG{n}" for n, content in read.data_groups.items() if card.data_groups.get(n) != content]
    if read.sod is None or read.sod.encap_content != card.encap_content:
        differs.append("EF.SOD content")
    if not differs:
        return ReadOutcome("accepted")
    if scenario["resign"] in UNPROVABLE_SIGNERS[scenario.get("trust", "csca")] and not _proves_origin(report.verdict):
        return ReadOutcome("expected", f"{report.verdict.value} on a card re-signed by a {scenario['resign']} DS")
    return ReadOutcome("false_accept", f"verdict {report.verdict.value} but {', '.join(differs)} differ from the "
                                       f"genuine card's (re-signed by: {scenario['resign']})")
