"""Contracts between the parts of the simulator: what a built card is made of.

``edge.sim.builder`` turns a profile into a :class:`SimCardSpec`; ``edge.sim.card`` serves its files and applies
its :class:`Quirks`; ``edge.sim.chip_security`` runs the chip side of PACE/BAC/SM/CA/AA with its
:class:`ChipSecrets`. Keeping them as plain frozen data lets tests build odd cards without a profile file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa

# File identifiers (ICAO 9303-10 / cccd-card.md). The short file id is the low 5 bits of the FID.
FID_CARD_ACCESS = 0x011C
FID_COM = 0x011E
FID_SOD = 0x011D


#: ISO 14443 bit rates a reader and chip agree on (kbit/s); the timing model accepts only these.
Bitrate = Literal[106, 212, 424, 848]
#: What a chip answers to a READ BINARY whose Le is over its limit: 6700 (wrong length, ISO 7816-4) or, on some
#: chips, 6B00 (wrong parameters). cccd-card.md has nothing on real CCCDs, so both are modelled.
LeRefusal = Literal[0x6700, 0x6B00]
#: What a chip that reads only the file chosen by SELECT FILE answers to READ BINARY by short file id (ISO 7816-4:
#: 6A86 incorrect P1-P2, 6A81 function not supported, 6986 no current EF, 6B00 wrong P1-P2).
SfiRefusal = Literal[0x6A86, 0x6A81, 0x6986, 0x6B00]


def dg_fid(number: int) -> int:
    """FID of data group ``number`` (DG1 = 0x0101 ... DG16 = 0x0110)."""
    return 0x0100 + number


@dataclass(frozen=True, slots=True)
class Quirks:
    """Ways a real chip or reader departs from the happy path; every field defaults to a well-behaved card."""

    max_le: int = 65536  # a larger Le answers le_refusal_sw
    le_refusal_sw: LeRefusal = 0x6700
    extended_length: bool = True  # False: extended APDUs answer 6700
    eof_warning: bool = False  # answer 6282 (with the bytes there are) when a read runs past the end
    eof_warning_on_last_chunk: bool = False  # answer 6282 (with the data) whenever an answer reaches the end
    #: Errors under SM come back without SM objects (a bare status word), and the chip does not count the command
    #: (its SSC stays where it was): it refused it before secure messaging, as gmrtd issue 457's passport answers a
    #: naked 6700 to an extended read.
    naked_errors: bool = False
    #: With ``naked_errors``: the chip counts the refused command and its naked answer after all (SSC + 2). No chip
    #: is known to do so; it proves that a reader that guesses wrong loses one session, never the read.
    naked_errors_counted: bool = False
    bac_supported: bool = True  # False: BAC commands answer 6A88 (reference data not found)
    pace_supported: bool = True  # False: no EF.CardAccess PACE info, MSE:Set AT answers 6A80
    plain_reads: bool = False  # allow reading the applet's files without access control (foundation/demo only)
    remove_after_apdus: int | None = None  # the card leaves the field after this many APDUs
    answer_delay_ms: float = 0.0  # real sleep before each answer (timeouts, watchdogs)
    bitrate_kbps: Bitrate = 424  # timing model
    apdu_overhead_ms: float = 10.0  # timing model: fixed cost per APDU (reader + chip processing)
    session_lost_after_apdus: int | None = None  # after N secured APDUs answer 6987 once (tests SM resume)
    response_chunk: int | None = None  # T=0 style: answer at most N data bytes, then 61xx (GET RESPONSE for more)
    wrong_le_hint: bool = False  # a short Le past the end of a file answers 6Cxx (xx = bytes available)
    no_sfi: bool = False  # READ BINARY by short file id (B0 with P1 bit 8) answers sfi_refusal_sw: SELECT first
    sfi_refusal_sw: SfiRefusal = 0x6A86
    #: The first READ BINARY past a file's start answers only this many bytes (9000), every later one in full: a
    #: glitch that must not shrink every later read of the card.
    short_answer_once: int | None = None
    #: Every answer announces more data (61xx) and GET RESPONSE never stops announcing more: a hostile chip whose
    #: answers never end.
    endless_get_response: bool = False
    #: Every READ BINARY answers 6Cxx with xx one less than its Le: a chip that never settles on a length.
    wrong_le_loop: bool = False
    #: Every APDU after the first N is answered only after ``stall_seconds`` (never, if the card is lifted first): a
    #: chip that hangs, or asks the reader for more time (T=1 WTX) without end; SCardTransmit blocks meanwhile.
    stall_after_apdus: int | None = None
    stall_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class ChipSecrets:
    """What the chip knows to run access control and authentication; none of it is readable from the card."""

    can: str
    mrz_information: str  # document number + cd + DOB + cd + DOE + cd, the BAC/PACE-MRZ password source
    pace_parameter_id: int = 13  # brainpoolP256r1
    ca_private_key: ec.EllipticCurvePrivateKey | None = None
    aa_private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None


@dataclass(frozen=True, slots=True)
class CardImage:
    """The card's files. Keys are FIDs; short file ids are derived from them."""

    atr: bytes
    mf_files: dict[int, bytes] = field(default_factory=dict)  # EF.CardAccess lives here
    applet_files: dict[int, bytes] = field(default_factory=dict)  # EF.COM, EF.SOD, DGs
    denied_files: dict[int, int] = field(default_factory=dict)  # FID -> status word (DG3 -> 0x6982)


@dataclass(frozen=True, slots=True)
class SimCardSpec:
    """Everything needed to run one virtual card."""

    name: str
    image: CardImage
    secrets: ChipSecrets
    quirks: Quirks = Quirks()
