"""The chip side of BAC, PACE (ECDH-GM), secure messaging, chip authentication and active authentication.

Plugged into :class:`edge.sim.card.VirtualCard` through its ``ChipSecurity`` seam. It reuses the reader-side
primitives (``edge.protocol.crypto``, ``edge.protocol.sm``, the PACE/BAC helpers) rather than re-implementing them;
the ICAO worked examples pin those down, and a fixed ``rng`` replays them byte for byte (the chip draws, in order:
the PACE nonce s, its mapping key, its ephemeral key; for BAC: RND.IC, then K.IC).

Answers follow real chips: BAC refused with 6A88 when the card has no BAC; a wrong PACE password fails step 4 with
6300 and leaves no session; a wrong MRZ key fails EXTERNAL AUTHENTICATE with 6300. Any SM fault (bad MAC, a command
without SM objects) erases the session keys before the card answers 6987/6988, as ICAO 9303-11 9.8.4 demands.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec as crypto_ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from edge.errors import AccessControlError, SmIntegrityError, SmObjectsMissingError, TlvError
from edge.protocol import ec, tlv
from edge.protocol.access import bac, pace
from edge.protocol.access.active_auth import default_ecdsa_hash
from edge.protocol.access.card_access import (
    ID_CA_ECDH,
    ID_PACE_ECDH_GM,
)
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.crypto import AES128, AES192, AES256, TDES, CipherSuite, Random
from edge.protocol.iso7816 import (
    INS_EXTERNAL_AUTHENTICATE,
    INS_GENERAL_AUTHENTICATE,
    INS_GET_CHALLENGE,
    INS_INTERNAL_AUTHENTICATE,
    INS_MSE,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_OK,
    SW_REF_NOT_FOUND,
    SW_SM_INCORRECT,
    SW_SM_MISSING,
    SW_VERIFICATION_FAILED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
)
from edge.protocol.sm import SessionKeys, protect_response, unprotect_command
from edge.sim.card import SimSmFault
from edge.sim.model import ChipSecrets, Quirks

_HANDLED = frozenset(
    (INS_GET_CHALLENGE, INS_EXTERNAL_AUTHENTICATE, INS_MSE, INS_GENERAL_AUTHENTICATE, INS_INTERNAL_AUTHENTICATE)
)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_SUITES = {1: TDES, 2: AES128, 3: AES192, 4: AES256}


class _PaceStep(Enum):
    NONCE = 1
    MAP = 2
    AGREE = 3
    TOKENS = 4


@dataclass(slots=True)
class _PaceRun:
    """PACE in progress (mutable chip state; never leaves this module)."""

    protocol: str
    suite: CipherSuite
    password: pace.PacePassword
    params: ec.DomainParameters
    step: _PaceStep = _PaceStep.NONCE
    nonce: bytes = b""
    mapped: ec.DomainParameters | None = None
    chip_eph_raw: bytes = b""
    terminal_eph_raw: bytes = b""
    keys: SessionKeys | None = None


def _reply(sw: int, data: bytes = b"") -> ResponseApdu:
    return ResponseApdu(data, sw)


class SimChipSecurity:
    """Chip-side access control for one virtual card (implements ``edge.sim.card.ChipSecurity``)."""

    def __init__(self, secrets: ChipSecrets, quirks: Quirks | None = None, *, rng: Random = os.urandom) -> None:
        self._secrets = secrets
        self._quirks = quirks or Quirks()
        self._rng = rng
        self._keys: SessionKeys | None = None
        self._ssc = 0
        self._pending_keys: SessionKeys | None = None  # chip authentication: switch after the answer is wrapped
        self._secured_exchange = False
        self._challenge: bytes | None = None
        self._pace: _PaceRun | None = None
        self._ca_protocol: str | None = None

    # --- the seam ----------------------------------------------------------------------------------------------

    @property
    def session_active(self) -> bool:
        return self._keys is not None

    @property
    def ssc(self) -> int:
        """The chip's send-sequence counter (tests check it stays in step with the reader's)."""
        return self._ssc

    def handles(self, command: CommandApdu) -> bool:
        return command.ins in _HANDLED

    def reset(self) -> None:
        self._keys = None
        self._pending_keys = None
        self._ssc = 0
        self._secured_exchange = False
        self._challenge = None
        self._pace = None
        self._ca_protocol = None

    def unwrap(self, command: CommandApdu) -> CommandApdu:
        if self._keys is None:
            raise SimSmFault(SW_SM_INCORRECT, "no secure session")
        self._ssc += 1
        try:
            plain = unprotect_command(self._keys, self._ssc, command)
        except SmObjectsMissingError as exc:
            self.reset()
            raise SimSmFault(SW_SM_MISSING, str(exc)) from exc
        except SmIntegrityError as exc:
            self.reset()
            raise SimSmFault(SW_SM_INCORRECT, str(exc)) from exc
        self._secured_exchange = True
        return plain

    def refuse(self) -> None:
        """The chip answers the command it just unwrapped with a naked status word, as one that refused it before
        secure messaging: the command is not counted (the SSC goes back to before :meth:`unwrap`)."""
        if self._keys is not None and self._secured_exchange:
            self._secured_exchange = False
            self._ssc -= 1

    def wrap(self, response: ResponseApdu) -> ResponseApdu:
        """Secure the answer to a secured command (the SSC moves even if the card then sends it naked)."""
        if self._keys is None or not self._secured_exchange:
            return response
        self._secured_exchange = False
        self._ssc += 1
        wrapped = protect_response(self._keys, self._ssc, response)
        if self._pending_keys is not None:
            self._keys, self._pending_keys, self._ssc = self._pending_keys, None, 0
        return wrapped

    def process(self, command: CommandApdu) -> ResponseApdu:
        try:
            if command.ins == INS_GET_CHALLENGE:
                return self._get_challenge(command)
            if command.ins == INS_EXTERNAL_AUTHENTICATE:
                return self._external_authenticate(command)
            if command.ins == INS_MSE:
                return self._mse(command)
            if command.ins == INS_GENERAL_AUTHENTICATE:
                return self._general_authenticate(command)
            if command.ins == INS_INTERNAL_AUTHENTICATE:
                return self._internal_authenticate(command)
        except (ValueError, AccessControlError):  # TlvError, InvalidPointError: malformed terminal data
            self._pace = None
            return _reply(SW_WRONG_DATA)
        return _reply(SW_INS_NOT_SUPPORTED)

    def _start_over_if_plain(self) -> None:
        """A plain access-control command starts a new authentication: the old session ends."""
        if not self._secured_exchange:
            self._keys = None
            self._pending_keys = None
            self._ssc = 0

    # --- BAC ---------------------------------------------------------------------------------------------------

    def _get_challenge(self, command: CommandApdu) -> ResponseApdu:
        if command.le != 8:
            return _reply(SW_WRONG_LENGTH)
        self._start_over_if_plain()
        self._challenge = self._rng(8)
        return _reply(SW_OK, self._challenge)

    def _external_authenticate(self, command: CommandApdu) -> ResponseApdu:
        if not self._quirks.bac_supported:
            return _reply(SW_REF_NOT_FOUND)
        challenge, self._challenge = self._challenge, None
        if challenge is None:
            return _reply(SW_CONDITIONS_NOT_SATISFIED)
        if len(command.data) != 40:
            return _reply(SW_WRONG_LENGTH)
        self._start_over_if_plain()
        keys = bac.BacKeys.from_mrz_information(self._secrets.mrz_information)
        try:
            plain = bac.open_cryptogram(keys, command.data)
        except SmIntegrityError:
            return _reply(SW_VERIFICATION_FAILED)
        rnd_ifd, rnd_ic, k_ifd = plain[:8], plain[8:16], plain[16:]
        if rnd_ic != challenge:
            return _reply(SW_VERIFICATION_FAILED)
        k_ic = self._rng(16)
        answer = bac.authentication_cryptogram(keys, rnd_ic + rnd_ifd + k_ic)
        self._keys, self._ssc = bac.session_from(k_ifd, k_ic, rnd_ic, rnd_ifd)
        return _reply(SW_OK, answer)

    # --- MSE ---------------------------------------------------------------------------------------------------

    def _mse(self, command: CommandApdu) -> ResponseApdu:
        fields = {obj.tag: obj.value for obj in tlv.decode_all(command.data)}
        if (command.p1, command.p2) == (0xC1, 0xA4):
            return self._mse_pace(fields)
        if (command.p1, command.p2) == (0x41, 0xA4) and 0x80 in fields:
            return self._mse_ca(tlv.decode_oid(fields[0x80]))
        if (command.p1, command.p2) == (0x41, 0xA6) and 0x91 in fields:
            return self._chip_authenticate(TDES, fields[0x91])
        return _reply(SW_INCORRECT_P1P2)

    def _mse_pace(self, fields: dict[int, bytes]) -> ResponseApdu:
        if not self._quirks.pace_supported or 0x80 not in fields or 0x83 not in fields:
            return _reply(SW_WRONG_DATA)
        if self._secured_exchange:  # PACE runs in plain; a new PACE ends the old session first
            return _reply(SW_CONDITIONS_NOT_SATISFIED)
        protocol = tlv.decode_oid(fields[0x80])
        family, last = protocol.rsplit(".", 1)
        if family != ID_PACE_ECDH_GM or int(last) not in _SUITES:
            return _reply(SW_WRONG_DATA)
        reference = fields[0x83]
        if reference == bytes((pace.PasswordType.CAN,)):
            password = pace.PacePassword.can(self._secrets.can)
        elif reference == bytes((pace.PasswordType.MRZ,)):
            password = pace.PacePassword.mrz(self._secrets.mrz_information)
        else:
            return _reply(SW_REF_NOT_FOUND)
        parameter_id = int.from_bytes(fields.get(0x84, b""), "big") or self._secrets.pace_parameter_id
        if parameter_id != self._secrets.pace_parameter_id:
            return _reply(SW_REF_NOT_FOUND)
        self._start_over_if_plain()
        params = ec.standard_parameters(parameter_id)
        self._pace = _PaceRun(protocol, _SUITES[int(last)], password, params)
        return _reply(SW_OK)

    # --- GENERAL AUTHENTICATE ----------------------------------------------------------------------------------

    def _general_authenticate(self, command: CommandApdu) -> ResponseApdu:
        if self._ca_protocol is not None and self._secured_exchange:
            return self._ga_chip_authentication(command)
        run = self._pace
        if run is None:
            return _reply(SW_CONDITIONS_NOT_SATISFIED)
        chained = bool(command.cla & 0x10)
        if chained == (run.step is _PaceStep.TOKENS):
            self._pace = None
            return _reply(SW_CONDITIONS_NOT_SATISFIED)
        outer = tlv.decode(command.data)
        if outer.tag != pace.TAG_DYNAMIC_AUTH:
            raise TlvError("7C expected", what="GENERAL AUTHENTICATE")
        if run.step is _PaceStep.NONCE:
            run.nonce = self._rng(pace.NONCE_LENGTH)
            run.step = _PaceStep.MAP
            encrypted = pace.encrypt_nonce(run.suite, run.password, run.nonce)
            return _reply(SW_OK, pace.dynamic_auth_data(pace.TAG_ENCRYPTED_NONCE, encrypted))
        if run.step is _PaceStep.MAP:
            terminal_map = ec.decode_point(run.params, outer.require(pace.TAG_MAP_IFD).value)
            map_key = ec.generate_private_key(run.params, self._rng)
            chip_map = ec.multiply(run.params, map_key, run.params.generator)
            run.mapped = pace.map_generator(run.params, run.nonce, map_key, terminal_map)
            run.step = _PaceStep.AGREE
            return _reply(SW_OK, pace.dynamic_auth_data(pace.TAG_MAP_IC, ec.encode_point(run.params, chip_map)))
        if run.step is _PaceStep.AGREE:
            mapped = run.mapped
            if mapped is None:
                raise AccessControlError("PACE state lost its mapped generator")
            run.terminal_eph_raw = outer.require(pace.TAG_EPH_IFD).value
            terminal_eph = ec.decode_point(mapped, run.terminal_eph_raw)
            eph_key = ec.generate_private_key(mapped, self._rng)
            run.chip_eph_raw = ec.encode_point(mapped, ec.multiply(mapped, eph_key, mapped.generator))
            if run.chip_eph_raw == run.terminal_eph_raw:
                raise AccessControlError("terminal echoed the chip's ephemeral key")
            shared = ec.x_coordinate(mapped, ec.multiply(mapped, eph_key, terminal_eph))
            run.keys = pace.session_keys(run.suite, shared)
            run.step = _PaceStep.TOKENS
            return _reply(SW_OK, pace.dynamic_auth_data(pace.TAG_EPH_IC, run.chip_eph_raw))
        keys = run.keys
        self._pace = None
        if keys is None:
            return _reply(SW_CONDITIONS_NOT_SATISFIED)
        expected = pace.authentication_token(keys, run.protocol, run.chip_eph_raw)
        if not hmac.compare_digest(outer.require(pace.TAG_TOKEN_IFD).value, expected):
            return _reply(SW_VERIFICATION_FAILED)  # wrong password: the terminal derived other keys
        token = pace.authentication_token(keys, run.protocol, run.terminal_eph_raw)
        self._keys, self._ssc = keys, 0
        return _reply(SW_OK, pace.dynamic_auth_data(pace.TAG_TOKEN_IC, token))

    # --- chip authentication -----------------------------------------------------------------------------------

    def _mse_ca(self, protocol: str) -> ResponseApdu:
        family, last = protocol.rsplit(".", 1)
        if not self._secured_exchange or self._secrets.ca_private_key is None:
            return _reply(SW_CONDITIONS_NOT_SATISFIED)
        if family != ID_CA_ECDH or int(last) not in _SUITES:
            return _reply(SW_REF_NOT_FOUND)
        self._ca_protocol = protocol
        return _reply(SW_OK)

    def _ga_chip_authentication(self, command: CommandApdu) -> ResponseApdu:
        protocol, self._ca_protocol = self._ca_protocol, None
        if protocol is None:
            return _reply(SW_CONDITIONS_NOT_SATISFIED)
        terminal_public = pace.parse_dynamic_auth_data(command.data, 0x80)
        return self._chip_authenticate(_SUITES[int(protocol.rsplit(".", 1)[1])], terminal_public, empty_7c=True)

    def _chip_authenticate(self, suite: CipherSuite, terminal_public: bytes, *, empty_7c: bool = False) -> ResponseApdu:
        key = self._secrets.ca_private_key
        if key is None or not self._secured_exchange:
            return _reply(SW_CONDITIONS_NOT_SATISFIED)
        try:
            peer = crypto_ec.EllipticCurvePublicKey.from_encoded_point(key.curve, terminal_public)
        except ValueError:
            return _reply(SW_WRONG_DATA)
        shared = key.exchange(crypto_ec.ECDH(), peer)
        self._pending_keys = pace.session_keys(suite, shared)
        return _reply(SW_OK, pace.dynamic_auth_data(0, b"") if empty_7c else b"")

    # --- active authentication ---------------------------------------------------------------------------------

    def _internal_authenticate(self, command: CommandApdu) -> ResponseApdu:
        key = self._secrets.aa_private_key
        if key is None:
            return _reply(SW_INS_NOT_SUPPORTED)
        if len(command.data) != 8:
            return _reply(SW_WRONG_DATA)
        if isinstance(key, rsa.RSAPrivateKey):
            return _reply(SW_OK, self._iso9796_2_sign(key, command.data))
        hash_name = default_ecdsa_hash(key.curve.key_size)  # the reader's default when DG14 names no algorithm
        der = key.sign(command.data, crypto_ec.ECDSA(_HASHES[hash_name]()))
        r, s = decode_dss_signature(der)
        size = (key.curve.key_size + 7) // 8
        return _reply(SW_OK, r.to_bytes(size, "big") + s.to_bytes(size, "big"))

    def _iso9796_2_sign(self, key: rsa.RSAPrivateKey, challenge: bytes) -> bytes:
        """ISO/IEC 9796-2 scheme 1, SHA-1, partial recovery: F = 6A || M1 || SHA-1(M1 || M2) || BC."""
        size = (key.key_size + 7) // 8
        m1 = self._rng(size - 22)
        digest = hashlib.sha1(m1 + challenge).digest()  # noqa: S324 - ICAO 9303 AA with ISO 9796-2
        message = int.from_bytes(b"\x6a" + m1 + digest + b"\xbc", "big")
        numbers = key.private_numbers()
        signature = pow(message, numbers.d, numbers.public_numbers.n)
        return signature.to_bytes(size, "big")
