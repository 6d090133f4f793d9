"""A ward as provisioning makes it (ward CA, terminals with their device certificates) and results its terminals
sign, with the certificate in ``x5c``: what the gateway's tests feed it. Real keys and signatures throughout."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge import signers
from edge.protocol import jose
from edge.protocol.result import CitizenData, ProcedureProfile
from provisioning.pki import GatewayIdentity, TerminalIdentity
from provisioning.ward_ca import Role, WardCa, init_ward_ca, sign_csr
from tests.support.results import CITIZEN, sample_result

WARD = "26734"  # sample_result's ward
NOW = 1_800_000_000  # 2027-01-15: the office's clock in these tests


@dataclass(frozen=True)
class Terminal:
    terminal_id: str
    signer: signers.KeySigner
    certificate: bytes  # DER

    def token(self, seq: int, *, now: int = NOW, certificate: bytes | None = None, x5c: bool = True,
              ward: str = WARD, terminal_id: str | None = None,
              profile: ProcedureProfile = ProcedureProfile.RESIDENCE, citizen: CitizenData = CITIZEN) -> bytes:
        """A signed result (``x5c``: the device certificate in the header, else none: an older terminal)."""
        document = sample_result(profile, terminal_id=terminal_id or self.terminal_id, citizen=citizen,
                                 ward_code=ward, completed_at=dt.datetime.fromtimestamp(now, dt.UTC))
        return jose.result_token(self.signer, terminal_id=terminal_id or self.terminal_id, seq=seq,
                                 document=json.loads(document.to_json()), now=now,
                                 certificate=(certificate or self.certificate) if x5c else None)


@dataclass(frozen=True)
class Ward:
    ca: WardCa
    directory: Path

    @property
    def ca_path(self) -> Path:
        return self.directory / "ward-ca.crt"

    def terminal(self, terminal_id: str, *, ward: str | None = None, days: int = 365,
                 issued: dt.datetime | None = None, role: Role = "terminal") -> Terminal:  # fmt: skip
        """A terminal key and its certificate from this ward's CA (``issued``: when it was signed)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = (GatewayIdentity(terminal_id, ward or self.ca.ward_code).name_attributes() if role == "gateway"
                else TerminalIdentity(terminal_id, ward or self.ca.ward_code).name())
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        certificate = sign_csr(self.ca, csr, days=days, now=issued or dt.datetime.fromtimestamp(NOW, dt.UTC),
                               role=role)
        return Terminal(terminal_id, signers.KeySigner(key), certificate.public_bytes(serialization.Encoding.DER))


def make_ward(directory: Path, ward_code: str = WARD) -> Ward:
    """A ward CA valid around :data:`NOW`."""
    ca, _ = init_ward_ca(directory, ward_code, now=dt.datetime.fromtimestamp(NOW, dt.UTC) - dt.timedelta(days=800))
    return Ward(ca, directory)
