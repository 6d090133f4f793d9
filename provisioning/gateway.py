"""Office side: the key and CSR of one gateway instance, made on the machine that runs it.

The gateway is the ward's receiving service: the broker lets its identity read every terminal's results and write
commands and receipts (``python -m provisioning broker-kit --gateway NAME``). Like a terminal, it makes its key
where it runs (0600, never copied) and hands the ward only a CSR, which the ward CA signs with ``--role gateway``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from edge.files import private_key_pem
from provisioning.files import PRIVATE, PRIVATE_DIR, PUBLIC, ensure_dir, write_atomic
from provisioning.pki import GatewayIdentity, load_private_key, new_private_key

KEY = "gateway.key"
CSR = "gateway.csr"


@dataclass(frozen=True, slots=True)
class GatewayInit:
    key: Path
    csr: Path
    created: bool  # False: an existing key was kept (idempotent re-run)


def init_gateway(directory: Path, identity: GatewayIdentity) -> GatewayInit:
    """Create the gateway key in ``directory`` (or keep the existing one) and write a CSR naming ``identity``."""
    ensure_dir(directory, PRIVATE_DIR)
    key_path = directory / KEY
    created = not key_path.exists()
    if created:
        write_atomic(key_path, private_key_pem(new_private_key()), PRIVATE)
    key = load_private_key(key_path)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(identity.name_attributes())
           .sign(key, hashes.SHA256()))
    csr_path = directory / CSR
    write_atomic(csr_path, csr.public_bytes(serialization.Encoding.PEM), PUBLIC)
    return GatewayInit(key_path, csr_path, created)
