"""Active Authentication: real ISO/IEC 9796-2 scheme 1 and plain ECDSA signatures from the simulator's chip side,
verified by the terminal side; every way a clone or a broken answer can look ends as a failed result."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import SessionLostError, SignatureError
from edge.protocol.access.active_auth import (
    ActiveAuthResult,
    active_authenticate,
    internal_authenticate_command,
    verify_active_auth,
)
from edge.protocol.access.card_access import parse_security_infos
from edge.protocol.apdu import CommandApdu, ResponseApdu
from edge.protocol.verify.checks import ACTIVE_AUTHENTICATION, CheckStatus
from edge.sim.active_auth_card import sign_active_auth

CHALLENGE = bytes.fromhex("0102030405060708")


@cache
def rsa_key(bits: int = 2048, slot: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, bits)


@cache
def ec_key(curve: str, slot: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key({"brainpoolP256r1": ec.BrainpoolP256R1(), "secp384r1": ec.SECP384R1(),
                                    "brainpoolP512r1": ec.BrainpoolP512R1()}[curve])  # fmt: skip


@dataclass
class Chip:
    """Answers INTERNAL AUTHENTICATE with the simulator's signer; records what it was sent."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    hash_name: str | None = None
    sw: int = 0x9000
    tamper: bool = False
    sent: list[CommandApdu] = field(default_factory=list)
    supports_extended_length: bool = True

    def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
        self.sent.append(command)
        if self.sw != 0x9000:
            return ResponseApdu(b"", self.sw)
        signature = sign_active_auth(self.key, command.data, hash_name=self.hash_name)
        if self.tamper:
            signature = signature[:-1] + bytes([signature[-1] ^ 1])
        return ResponseApdu(signature, 0x9000)


def test_command_encoding() -> None:
    assert internal_authenticate_command(CHALLENGE).to_bytes().hex() == "0088000008010203040506070800"
    with pytest.raises(ValueError, match="8 bytes"):
        internal_authenticate_command(b"\x00" * 7)


@pytest.mark.parametrize("hash_name", ["sha1", "sha224", "sha256", "sha384", "sha512"])
def test_rsa_9796_2_each_trailer(hash_name: str) -> None:
    key = rsa_key()
    signature = sign_active_auth(key, CHALLENGE, hash_name=hash_name, implicit_sha1_trailer=False)
    recovered = pow(int.from_bytes(signature, "big"), 65537, key.public_key().public_numbers().n).to_bytes(256, "big")
    trailer = {"sha1": "33cc", "sha224": "38cc", "sha256": "34cc", "sha384": "36cc", "sha512": "35cc"}[hash_name]
    assert recovered[0] == 0x6A
    assert recovered[-2:].hex() == trailer
    assert verify_active_auth(key.public_key(), CHALLENGE, signature) == (f"RSA-ISO9796-2/{hash_name}", "trailer")


def test_rsa_implicit_sha1_trailer_bc() -> None:
    key = rsa_key()
    signature = sign_active_auth(key, CHALLENGE)
    recovered = pow(int.from_bytes(signature, "big"), 65537, key.public_key().public_numbers().n)
    assert recovered & 0xFF == 0xBC
    assert verify_active_auth(key.public_key(), CHALLENGE, signature)[0] == "RSA-ISO9796-2/sha1"


def test_rsa_n_minus_j_representative_is_accepted() -> None:
    """ISO/IEC 9796-2 lets the signer send min(J, n - J); for RSA n - J^d is a valid signature of the other."""
    key = rsa_key()
    n = key.public_key().public_numbers().n
    signature = int.from_bytes(sign_active_auth(key, CHALLENGE), "big")
    other = (n - signature).to_bytes(256, "big")  # (n - s)^e = -(s^e) = n - J mod n for odd e
    assert verify_active_auth(key.public_key(), CHALLENGE, other)[0] == "RSA-ISO9796-2/sha1"


@pytest.mark.parametrize(("curve", "expected"), [("brainpoolP256r1", "sha256"), ("secp384r1", "sha384"),
                                                 ("brainpoolP512r1", "sha512")])  # fmt: skip
def test_ecdsa_plain_hash_from_key_size(curve: str, expected: str) -> None:
    key = ec_key(curve)
    signature = sign_active_auth(key, CHALLENGE)
    assert verify_active_auth(key.public_key(), CHALLENGE, signature) == (f"ECDSA/{curve}/{expected}", "key size")


def test_ecdsa_hash_from_dg14() -> None:
    key = ec_key("secp384r1")
    signature = sign_active_auth(key, CHALLENGE, hash_name="sha256")
    with pytest.raises(SignatureError):
        verify_active_auth(key.public_key(), CHALLENGE, signature)  # key size says SHA-384
    plain_sha256 = "0.4.0.127.0.7.1.1.4.1.3"
    assert verify_active_auth(key.public_key(), CHALLENGE, signature, signature_algorithm_oid=plain_sha256) == (
        "ECDSA/secp384r1/sha256", "DG14"
    )
    with pytest.raises(SignatureError, match="unsupported AA algorithm"):
        verify_active_auth(key.public_key(), CHALLENGE, signature, signature_algorithm_oid="1.2.3.4")


def test_hash_named_by_dg14_active_authentication_info() -> None:
    # SET { SEQUENCE { id-CA-ECDH-AES-CBC-CMAC-128, 1, 1 }, SEQUENCE { id-AA, 1, ecdsa-plain-SHA256 } }
    ca_info = bytes.fromhex("060a04007f00070202030202" "020101" "020101")
    aa_info = bytes.fromhex("06066781" "08010105" "020101" "060a04007f00070101040103")
    body = bytes([0x30, len(ca_info)]) + ca_info + bytes([0x30, len(aa_info)]) + aa_info
    (info,) = parse_security_infos(bytes([0x31, len(body)]) + body).active_authentication
    key = ec_key("secp384r1")
    chip = Chip(key, hash_name="sha256")
    result = active_authenticate(chip, key.public_key(), signature_algorithm_oid=info.signature_algorithm)
    assert (result.verified, result.algorithm, result.hash_source) == (True, "ECDSA/secp384r1/sha256", "DG14")
    assert result.signature_algorithm_oid == info.signature_algorithm  # the office needs it to pick the hash


@pytest.mark.parametrize("key_kind", ["rsa", "ec"])
def test_round_trip_through_a_connection(key_kind: str) -> None:
    key = rsa_key() if key_kind == "rsa" else ec_key("brainpoolP256r1")
    chip = Chip(key)
    result = active_authenticate(chip, key.public_key(), rng=lambda n: CHALLENGE[:n])
    assert result.verified, result.reason
    assert chip.sent[0].to_bytes().hex() == "0088000008010203040506070800"
    check = result.check()
    assert (check.name, check.status) == (ACTIVE_AUTHENTICATION, CheckStatus.PASSED)


def test_result_keeps_the_challenge_and_the_chip_answer() -> None:
    """Passed or failed, the answer is kept: with DG15 it lets the office that chose the challenge check it again."""
    key = ec_key("brainpoolP256r1")
    passed = active_authenticate(Chip(key), key.public_key(), rng=lambda n: CHALLENGE[:n])
    assert (passed.verified, passed.challenge) == (True, CHALLENGE)
    assert passed.signature is not None
    assert verify_active_auth(key.public_key(), CHALLENGE, passed.signature)
    tampered = active_authenticate(Chip(key, tamper=True), key.public_key(), rng=lambda n: CHALLENGE[:n])
    assert (tampered.verified, tampered.challenge, len(tampered.signature or b"")) == (False, CHALLENGE, 64)
    refused = active_authenticate(Chip(key, sw=0x6982), key.public_key(), rng=lambda n: CHALLENGE[:n])
    assert (refused.challenge, refused.signature) == (CHALLENGE, None)


def test_large_rsa_key_uses_extended_length() -> None:
    key = rsa_key(3072)
    chip = Chip(key)
    assert active_authenticate(chip, key.public_key()).verified
    assert chip.sent[0].extended


# --- what must fail --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_kind", ["rsa", "ec"])
def test_wrong_challenge_fails(key_kind: str) -> None:
    key = rsa_key() if key_kind == "rsa" else ec_key("brainpoolP256r1")
    signature = sign_active_auth(key, CHALLENGE)
    with pytest.raises(SignatureError, match="does not match the challenge"):
        verify_active_auth(key.public_key(), bytes(8), signature)


@pytest.mark.parametrize("key_kind", ["rsa", "ec"])
def test_wrong_key_fails(key_kind: str) -> None:
    """A clone that holds another key (its own) cannot answer for DG15's key."""
    key, other = (rsa_key(), rsa_key(2048, 1)) if key_kind == "rsa" else (ec_key("brainpoolP256r1"),
                                                                          ec_key("brainpoolP256r1", 1))
    result = active_authenticate(Chip(other), key.public_key())
    assert result.status is CheckStatus.FAILED
    assert "the chip may be a copy" in result.reason


@pytest.mark.parametrize("key_kind", ["rsa", "ec"])
def test_wrong_length_and_tampered_answers_fail(key_kind: str) -> None:
    key = rsa_key() if key_kind == "rsa" else ec_key("brainpoolP256r1")
    signature = sign_active_auth(key, CHALLENGE)
    for bad in (signature[:-1], signature + b"\x00", b"", bytes(len(signature))):
        with pytest.raises(SignatureError):
            verify_active_auth(key.public_key(), CHALLENGE, bad)
    assert not active_authenticate(Chip(key, tamper=True), key.public_key()).verified


def test_rsa_answer_not_below_modulus_fails() -> None:
    key = rsa_key()
    with pytest.raises(SignatureError, match="below the modulus"):
        verify_active_auth(key.public_key(), CHALLENGE, b"\xff" * 256)


def test_rsa_total_recovery_is_refused() -> None:
    """Header 4B..BA (total recovery) would not bind the challenge: refused."""
    key = rsa_key()
    numbers = key.private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    message = bytes(256 - 2 - 20 - 1)
    block = b"\x4b\xba" + message + hashlib.sha1(message + CHALLENGE).digest() + b"\xbc"  # noqa: S324
    signature = pow(int.from_bytes(block, "big"), d, n).to_bytes(256, "big")
    with pytest.raises(SignatureError, match="total message recovery"):
        verify_active_auth(key.public_key(), CHALLENGE, signature)


def test_chip_refusal_is_a_failed_result() -> None:
    key = ec_key("brainpoolP256r1")
    result = active_authenticate(Chip(key, sw=0x6D00), key.public_key())
    assert result.status is CheckStatus.FAILED
    assert "refused" in result.reason


def test_secure_messaging_errors_propagate() -> None:
    """A broken secure channel says nothing about the card: the read is retried, AA is not marked failed."""

    class LostSession(Chip):
        def send_and_receive(self, command: CommandApdu) -> ResponseApdu:
            raise SessionLostError(0x6987, "INTERNAL AUTHENTICATE")

    key = ec_key("brainpoolP256r1")
    with pytest.raises(SessionLostError):
        active_authenticate(LostSession(key), key.public_key())


def test_no_dg15_is_not_supported() -> None:
    check = ActiveAuthResult.not_supported().check()
    assert check.status is CheckStatus.NOT_SUPPORTED


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_arbitrary_answers_never_verify(answer: bytes) -> None:
    for key in (rsa_key().public_key(), ec_key("brainpoolP256r1").public_key()):
        with pytest.raises(SignatureError):
            verify_active_auth(key, CHALLENGE, answer)
