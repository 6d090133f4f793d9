"""A virtual CCCD served to a vpcd reader slot: what tests, the demo and ``cccd-edge sim card`` run.

Also holds :func:`demo_spec`, a small hand-built card (EF.CardAccess, EF.COM, DG1, a denied DG3) with plain reads
allowed, used until profiles and the builder produce full cards. Its person is synthetic.
"""

from __future__ import annotations

from edge.protocol import tlv
from edge.protocol.chip import CCCD_CARD_ACCESS  # EF.CardAccess as read from real CCCDs (cccd-card.md)
from edge.protocol.iso7816 import SW_SECURITY_STATUS
from edge.sim.card import CardCounters, ChipSecurity, VirtualCard
from edge.sim.model import (
    FID_CARD_ACCESS,
    FID_COM,
    CardImage,
    ChipSecrets,
    Quirks,
    SimCardSpec,
    dg_fid,
)
from edge.sim.reader import ReaderModel, VirtualReader
from edge.sim.vpcd import InsertedWhileOpen, VpcdClient

#: ISO 14443-4 card ATR as PC/SC part 3 builds it (no historical bytes beyond zeros; TCK = 09).
DEMO_ATR = bytes.fromhex("3B888001000000000000000009")
#: EF.COM: LDS 0106, Unicode 040000, DG1 + DG13 (tags 61, 75).
DEMO_COM = bytes.fromhex("60145F0104303130365F36063034303030305C026175")
#: A synthetic TD1 MRZ (cccd-card.md example person, not a real one).
DEMO_MRZ = (
    "IDVNM2030123450079203012345<<0"
    "0302014M2802013VNM<<<<<<<<<<<4"
    "NGUYEN<<VAN<AN<<<<<<<<<<<<<<<<"
)


def demo_spec(quirks: Quirks | None = None) -> SimCardSpec:
    """A minimal readable card: EF.CardAccess, EF.COM, DG1; DG3 denied (6982); plain reads allowed."""
    dg1 = tlv.encode(0x61, tlv.encode(0x5F1F, DEMO_MRZ.encode("ascii")))
    image = CardImage(
        atr=DEMO_ATR,
        mf_files={FID_CARD_ACCESS: CCCD_CARD_ACCESS},
        applet_files={FID_COM: DEMO_COM, dg_fid(1): dg1},
        denied_files={dg_fid(3): SW_SECURITY_STATUS},
    )
    secrets = ChipSecrets(can="012345", mrz_information="203012345003020142802013")
    return SimCardSpec("demo", image, secrets, quirks if quirks is not None else Quirks(plain_reads=True))


class SimulatedCard(InsertedWhileOpen):
    """A :class:`VirtualCard` plus its vpcd connection: ``insert()`` puts it on the reader, ``remove()`` off.

    With ``reader``, the card sits behind a :class:`~edge.sim.reader.VirtualReader` of that model (limits, failure
    effect, escape channel); ``virtual_reader`` is that reader (its log shows what it failed and was asked)."""

    def __init__(
        self,
        spec: SimCardSpec,
        port: int,
        *,
        security: ChipSecurity | None = None,
        host: str = "127.0.0.1",
        reader: ReaderModel | None = None,
    ) -> None:
        self.spec = spec
        self.port = port
        self.host = host
        self._security = security
        self._reader_model = reader
        self.card = VirtualCard(spec, security)
        self.virtual_reader = VirtualReader(self.card, reader) if reader is not None else None
        self.client = VpcdClient(self.virtual_reader or self.card, port, host)

    @property
    def inserted(self) -> bool:
        return self.client.inserted

    @property
    def counters(self) -> CardCounters:
        return self.card.counters

    def insert(self) -> None:
        """Put the card on the reader. A card that left the field comes back fresh (new chip state)."""
        if self.card.left_field:
            self.card = VirtualCard(self.spec, self._security)
            if self.virtual_reader is not None:
                self.virtual_reader.card = self.card
            self.client = VpcdClient(self.virtual_reader or self.card, self.port, self.host)
        self.client.insert()

    def remove(self) -> None:
        self.client.remove()

    def wait_removed(self, timeout: float) -> bool:
        return self.client.wait_removed(timeout)
