"""Host CPU time to prove one card genuine: passive authentication (parse EF.SOD, DS signature, DS chain to the
CSCA, data-group hashes), chip authentication's host side (ephemeral key, ECDH with the DG14 key, new SM keys) and
active authentication (verify the chip's answer). Goal: <= 30 ms per card.

Run: .venv/bin/python bench/verify.py [--rounds N]. Chip-side signing is the card's time and is excluded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from asn1crypto import pem as asn1_pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from edge.protocol import crypto
from edge.protocol import ec as pure_ec
from edge.protocol.access import pace
from edge.protocol.access.active_auth import CHALLENGE_LENGTH, verify_active_auth
from edge.protocol.lds.sod import encode_sod
from edge.protocol.verify.certs import parse_certificate
from edge.protocol.verify.checks import Verdict, decide
from edge.protocol.verify.passive import passive_authentication_of_file
from edge.protocol.verify.trust import TrustStore
from edge.sim.active_auth_card import sign_active_auth
from edge.sim.pki import PrivateKey, make_certificate, x509_name

GOAL_MS = 30.0
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
VALID_FROM, VALID_TO = dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2034, 1, 1, tzinfo=dt.UTC)
#: The reference CSCA, when the shared reference data lies beside the checkout (never copied into the repo).
VN_CSCA_PEM = (Path(os.environ.get("CCCD_EDGE_SHARED") or Path(__file__).resolve().parents[2] / "shared")
               / "trust" / "VN_CSCA_ePassport_2022.pem")  # fmt: skip


def _csca(common_name: str, key: PrivateKey) -> x509.Certificate:
    subject = x509_name(common_name, organization="cccd-edge bench")
    return make_certificate(subject, key.public_key(), subject, key, ca=True, serial=1, valid_from=VALID_FROM,
                            valid_to=VALID_TO, signature_hash=hashes.SHA512())  # fmt: skip


def _card_files(csca_key: PrivateKey, ds_key: PrivateKey, extra: int) -> tuple[bytes, dict[int, bytes], TrustStore]:
    csca = _csca("CSCA BENCH", csca_key)
    ds = make_certificate(x509_name("DS BENCH", organization="cccd-edge bench"), ds_key.public_key(), csca.subject,
                          csca_key, ca=False, serial=1, valid_from=VALID_FROM, valid_to=VALID_TO,
                          signature_hash=hashes.SHA256())  # fmt: skip
    data_groups = {
        1: os.urandom(93), 2: os.urandom(20_000), 13: os.urandom(700), 14: os.urandom(320), 15: os.urandom(300),
    }  # fmt: skip
    sod = encode_sod(data_groups, hash_algorithm="sha256", signer_key=ds_key, signer_cert=ds)
    others = []
    for i in range(extra):  # a store the size of a national master list
        others.append(_csca(f"CSCA OTHER {i}", ec.generate_private_key(ec.SECP256R1())))
    store = TrustStore.from_der([c.public_bytes(Encoding.DER) for c in (csca, *others)])
    return sod, data_groups, store


def _chip_auth_host_side(params: pure_ec.DomainParameters, chip_public: pure_ec.EcPoint) -> None:
    """What the reader computes for CA (edge.protocol.access.chip_auth), without the two APDUs."""
    secret = pure_ec.generate_private_key(params)
    pure_ec.encode_point(params, pure_ec.multiply(params, secret, params.generator))
    shared = pure_ec.x_coordinate(params, pure_ec.multiply(params, secret, chip_public))
    pace.session_keys(crypto.AES128, shared)


def _cpu_ms(action: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        action()
        samples.append((time.process_time() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--store-size", type=int, default=200, help="unrelated CSCAs in the trust store")
    args = parser.parse_args()

    challenge = os.urandom(CHALLENGE_LENGTH)
    aa_rsa = rsa.generate_private_key(65537, 2048)
    aa_ec = ec.generate_private_key(ec.BrainpoolP256R1())
    aa_cases = {
        "RSA-2048 ISO 9796-2": (aa_rsa.public_key(), sign_active_auth(aa_rsa, challenge)),
        "ECDSA brainpoolP256r1": (aa_ec.public_key(), sign_active_auth(aa_ec, challenge)),
    }
    pa_cases = {
        "CSCA bp512r1 / DS bp256r1": (ec.generate_private_key(ec.BrainpoolP512R1()),
                                      ec.generate_private_key(ec.BrainpoolP256R1())),
        "CSCA RSA-4096 / DS RSA-2048": (rsa.generate_private_key(65537, 4096), rsa.generate_private_key(65537, 2048)),
    }  # fmt: skip
    print(f"host CPU time per card, median / p95 over {args.rounds} rounds; trust store of "
          f"{args.store_size + 1} CSCAs; DG2 20 KB; goal <= {GOAL_MS:.0f} ms")  # fmt: skip
    ca_params = pure_ec.standard_parameters(13)  # brainpoolP256r1, the CCCD's
    chip_public = pure_ec.multiply(ca_params, pure_ec.generate_private_key(ca_params), ca_params.generator)
    ca = _cpu_ms(lambda: _chip_auth_host_side(ca_params, chip_public), args.rounds)
    print(f"  CA host side, brainpoolP256r1 (pure-Python point arithmetic): median {statistics.median(ca):.1f} ms")
    worst = 0.0
    for pa_name, (csca_key, ds_key) in pa_cases.items():
        sod, data_groups, store = _card_files(csca_key, ds_key, args.store_size)
        assert decide(passive_authentication_of_file(sod, data_groups, store, NOW)) is Verdict.VERIFIED
        pa = _cpu_ms(lambda s=sod, d=data_groups, t=store: passive_authentication_of_file(s, d, t, NOW), args.rounds)
        for aa_name, (public_key, signature) in aa_cases.items():
            aa = _cpu_ms(lambda k=public_key, s=signature: verify_active_auth(k, challenge, s), args.rounds)
            total = [p + c + a for p, c, a in zip(pa, ca, aa, strict=True)]
            p95 = sorted(total)[int(0.95 * (len(total) - 1))]
            worst = max(worst, p95)
            print(f"  PA {pa_name:28} + CA + AA {aa_name:22}: PA {statistics.median(pa):5.1f} ms, "
                  f"CA {statistics.median(ca):4.1f} ms, AA {statistics.median(aa):4.1f} ms, "
                  f"total {statistics.median(total):5.1f} / {p95:5.1f} ms")
    print(f"worst p95 {worst:.1f} ms: {'within' if worst <= GOAL_MS else 'OVER'} the {GOAL_MS:.0f} ms goal")
    if VN_CSCA_PEM.exists():  # a DS with explicit curve parameters costs this much more per card
        vn_der = asn1_pem.unarmor(VN_CSCA_PEM.read_bytes())[2]
        parse = _cpu_ms(lambda: parse_certificate(vn_der), args.rounds)
        print(f"  loading a certificate with explicit brainpoolP512r1 parameters (VN CSCA): "
              f"{statistics.median(parse):.1f} ms")


if __name__ == "__main__":
    main()
