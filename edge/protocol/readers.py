"""Reader profiles: what the contactless readers wards buy carry, how they fail, and what their LEDs can show.

The read path was proven through vpcd, which carries any APDU. Real readers do not: ACS's CCID readers of the
ACR1281/ACR1252 family never send a command over 255 bytes and fail ``SCardTransmit`` with SCARD_E_NOT_TRANSACTED
(0x80100016) instead of a status word; a PN53x reader (ACR122U) has no extended length at all. A profile says what
is known of one model and where it came from, so the driver (``edge.drivers.pcsc``) can decide from a transport
failure whether the command reached the chip, the simulator (``edge.sim.reader``) can fail the transport the same
way, and ``cccd-edge readers`` / ``doctor`` can tell a ward what a reader implies before the first citizen waits.

Facts carry their source: USB descriptors as the CCID driver's maintainer recorded them (``CCID readers/<file>``:
LudovicRousseau/CCID, readers/*.txt and readers/supported_readers.txt, commit 5de6a96 of 2026-06-27; "Short and
Extended APDU level exchange" and dwMaxCCIDMessageLength), driver sources, vendor documents and other projects'
issues. Nothing here was measured on the hardware itself (``verified`` says "documents"); a value nobody documents
is None and the driver probes it (the generic profile does nothing else). Pure data and name matching: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Largest short command APDU: header, Lc, 255 data bytes, Le.
SHORT_COMMAND_MAX = 4 + 1 + 255 + 1
#: Largest short response APDU: 256 data bytes and the status word.
SHORT_RESPONSE_MAX = 256 + 2
#: Largest extended command (header, 3-byte Lc, 65535 data bytes, 2-byte Le) and response (65536 + SW).
EXTENDED_COMMAND_MAX = 4 + 3 + 65535 + 2
EXTENDED_RESPONSE_MAX = 65536 + 2

#: How a reader's LEDs and buzzer are reached: the ACS pseudo-APDU ``FF 00 40`` (through SCardTransmit, intercepted
#: by the reader, never seen by the card), ACS escape commands ``E0 00 00 2x`` (SCardControl only), or not at all.
IndicatorChannel = Literal["acs-pseudo-apdu", "acs-escape", "none"]
#: The channel the terminal drives (``edge.drivers.reader_leds``); ``acs-escape`` readers are not driven yet.
READER_LED_CHANNEL: IndicatorChannel = "acs-pseudo-apdu"
#: What a reader does to the card when an exchange fails: keeps its state, resets it, or nobody documents it.
FailureEffect = Literal["keeps-card", "resets-card", "unknown"]


@dataclass(frozen=True, slots=True)
class Fact:
    """One statement about a reader and where it comes from (a document, a driver source, an issue)."""

    what: str
    source: str


@dataclass(frozen=True, slots=True)
class ReaderProfile:
    """What one reader model carries and how it fails.

    ``max_command`` / ``max_response`` are APDU sizes in bytes the reader passes (None: not documented, probed);
    ``extended_length`` None means probe: try extended once, fall back on a transport failure and remember.
    ``refusal`` is how an APDU over the limit shows: "transport" (SCardTransmit fails, 0x80100016) or
    "status-word"; ``refused_unsent`` that such a refusal happens before the card sees anything (the driver then
    knows the chip's SSC did not move). ``leds`` are the colours the reader's own LEDs can show ("red", "green":
    both lit read as amber on a bi-colour LED).
    """

    key: str
    model: str
    names: tuple[str, ...]  # case-insensitive substrings of the PC/SC reader name
    usb_ids: tuple[tuple[int, int], ...] = ()
    contactless: bool | None = True
    extended_length: bool | None = None
    max_command: int | None = None
    max_response: int | None = None
    refusal: Literal["transport", "status-word", "unknown"] = "unknown"
    refused_unsent: bool | None = None
    on_failure: FailureEffect = "unknown"
    presence: str = "PC/SC card events (pcscd polls the reader)"
    indicator_channel: IndicatorChannel = "none"
    leds: tuple[str, ...] = ()
    buzzer: bool = False
    verified: Literal["documents", "hardware", "virtual"] = "documents"
    facts: tuple[Fact, ...] = ()

    @property
    def command_limit(self) -> int:
        """The largest command the read may send: short only unless extended length is known or probed."""
        if self.max_command is not None:
            return self.max_command
        return EXTENDED_COMMAND_MAX if self.extended_length is not False else SHORT_COMMAND_MAX

    @property
    def response_limit(self) -> int:
        if self.max_response is not None:
            return self.max_response
        return EXTENDED_RESPONSE_MAX if self.extended_length is not False else SHORT_RESPONSE_MAX

    def implications(self, *, dg2_bytes: int = 15_000) -> list[str]:
        """What the profile means for a read, in words a ward's support desk can act on."""
        lines: list[str] = []
        if self.contactless is False:
            lines.append("contact slot only: it cannot read the CCCD's contactless chip")
        if self.extended_length is False:
            lines.append(f"no extended length: DG2 ({dg2_bytes // 1000} KB) takes {short_reads(dg2_bytes)} APDUs")
        elif self.extended_length is None:
            lines.append("extended length unknown: tried once per reader, short APDUs after a transport failure")
        else:
            lines.append("extended length: DG2 in one APDU")
        if self.refusal == "transport":
            unsent = " (the command is never sent: no session lost)" if self.refused_unsent else ""
            lines.append(f"an APDU over its limit fails at the transport (SCARD_E_NOT_TRANSACTED){unsent}")
        if self.indicator_channel == "none":
            lines.append("no documented LED/buzzer control: use GPIO indicators")
        else:
            colours = "+".join(self.leds) or "none"
            lines.append(f"LEDs ({colours}){' and buzzer' if self.buzzer else ''} through {self.indicator_channel}")
        return lines


def short_reads(size: int, chunk: int = 223) -> int:
    """APDUs to read ``size`` bytes in short secured READ BINARYs (223 bytes each under AES secure messaging)."""
    return -(-size // chunk)


_CCID = "LudovicRousseau/CCID readers/"
_ACSCCID_42 = "acshk/acsccid issue 42 (ACR1281 1S Dual Reader: 'Command len cbSendLength = 264 > 255', 0x80100016; "
_ACSCCID_42 += "a protocol analyser saw nothing sent to the card)"
_ACS_LED = "ACS API-ACR122U 2.04 'Bi-color LED and Buzzer Control' FF 00 40; wireshark acr122 dissector fields"
_ACS_LED += " (led.red/green.initial/final/blinking/mask, number_of_repetition); pokusew/nfc-pcsc examples/led.js"

# fmt: off
PROFILES: tuple[ReaderProfile, ...] = (
    ReaderProfile(
        key="acr122u", model="ACS ACR122U", names=("ACR122",), usb_ids=((0x072F, 0x2200), (0x072F, 0x90CC)),
        extended_length=False, max_command=SHORT_COMMAND_MAX, max_response=SHORT_RESPONSE_MAX,
        refusal="transport", refused_unsent=True, on_failure="unknown",
        presence="PN532 polling: the CCID driver waits up to 1 s for its answer when no tag is there",
        indicator_channel="acs-pseudo-apdu", leds=("red", "green"), buzzer=True,
        facts=(
            Fact("Short APDU level exchange only, dwMaxCCIDMessageLength 271", _CCID + "ACR122U_PICC.txt"),
            Fact("listed unsupported by libccid (ACS's acsccid driver serves it)",
                 _CCID + "supported_readers.txt, section unsupported"),
            Fact("read timeout x10: 'the reader answers after up to 1 s if no tag is present'",
                 "LudovicRousseau/CCID src/ccid.c, ccid_open_hack_pre"),
            Fact("a command longer than the CCID message is refused by the driver before it is sent: 0x80100016",
                 "LudovicRousseau/PCSC issue 11 ('Command too long (265 bytes) for max: 261 bytes')"),
            Fact("LED (red, green, blinking masks, T1/T2 in 100 ms, repetitions) and buzzer by pseudo-APDU", _ACS_LED),
        ),
    ),
    ReaderProfile(
        key="acr1252u", model="ACS ACR1252U", names=("ACR1252",), usb_ids=((0x072F, 0x223B), (0x072F, 0x223E)),
        extended_length=False, max_command=SHORT_COMMAND_MAX, max_response=None,
        refusal="transport", refused_unsent=True,
        indicator_channel="acs-escape", leds=("red", "green"), buzzer=True,
        facts=(
            Fact("descriptor: Short and Extended APDU level exchange, dwMaxCCIDMessageLength 522",
                 _CCID + "ACS_ACR1252_Dual_Reader.txt, ACS_ACR1252_Reader.txt"),
            Fact("a 32 KB extended APDU fails: 'CCID error 0xC3', SCardTransmit 0x80100016",
                 "LudovicRousseau/PCSC issue 54 and acshk/acsccid issue 15 (ACR1252 Dual Reader)"),
            Fact("same ACS family as the ACR1281: commands over 255 bytes never sent", _ACSCCID_42),
            Fact("LED E0 00 00 29, buzzer E0 00 00 28 by escape (SCardControl)",
                 "ACS API-ACR1252U 1.09 5.8 (cited in danm-de/pcsc-sharp issue 50); ACR1281S manual p. 28"),
        ),
    ),
    ReaderProfile(
        key="acr1281u-c1", model="ACS ACR1281U-C1", names=("ACR1281",), usb_ids=((0x072F, 0x2224),),
        extended_length=False, max_command=SHORT_COMMAND_MAX, max_response=None,
        refusal="transport", refused_unsent=True,
        indicator_channel="acs-escape", leds=("red", "green"), buzzer=True,
        facts=(
            Fact("descriptor: Short and Extended APDU level exchange, dwMaxCCIDMessageLength 522",
                 _CCID + "ACS_ACR1281U.txt"),
            Fact("listed unsupported by libccid (acsccid serves it)", _CCID + "supported_readers.txt"),
            Fact("commands over 255 bytes fail at the transport, 0x80100016, never sent", _ACSCCID_42),
            Fact("buzzer E0 00 00 28 01 <10 ms units>, LED/buzzer behaviour E0 00 00 21 by escape",
                 "ACS ACR1281S user manual p. 28 (serial sibling of the ACR1281U)"),
        ),
    ),
    ReaderProfile(
        key="acr1552u", model="ACS ACR1552U", names=("ACR1552",), usb_ids=((0x072F, 0x2303), (0x072F, 0x2308)),
        extended_length=None, indicator_channel="acs-escape", leds=("red", "green"), buzzer=True,
        facts=(
            Fact("descriptor: Short and Extended APDU level exchange, dwMaxCCIDMessageLength 516",
                 _CCID + "ACS_ACR1552U.txt"),
            Fact("supported by libccid", _CCID + "supported_readers.txt"),
            Fact("whether it shares the ACR1281/ACR1252 255-byte limit: undocumented (probed)", "unverified"),
            Fact("LED/buzzer escape codes as ACR1252U: assumed from the family", "unverified"),
        ),
    ),
    ReaderProfile(
        key="omnikey-5022", model="HID OMNIKEY 5022 CL", names=("OMNIKEY 5022",), usb_ids=((0x076B, 0x5022),),
        extended_length=True, refusal="unknown",
        facts=(
            Fact("descriptor: Short and Extended APDU level exchange, dwMaxCCIDMessageLength 520",
                 _CCID + "HID_Global_OMNIKEY_5022_Smart_Card_Reader.txt"),
            Fact("supported by libccid", _CCID + "supported_readers.txt"),
            Fact("LED/buzzer only through HID's proprietary escape (developer guide behind an HID account)",
                 "hidglobal/HID-OMNIKEY-Sample-Codes issues 4 and 10; unverified"),
        ),
    ),
    ReaderProfile(
        key="omnikey-5422", model="HID OMNIKEY 5422", names=("OMNIKEY 5422",), usb_ids=((0x076B, 0x5422),),
        extended_length=True, refusal="unknown",
        facts=(
            Fact("descriptor: Short and Extended APDU level exchange, dwMaxCCIDMessageLength 520",
                 _CCID + "HID_OMNIKEY_5422.txt"),
            Fact("two CCID interfaces: contact ('5422') and contactless ('5422CL'): read on the CL one",
                 "LudovicRousseau/CCID src/ccid_usb.c (HID_OMNIKEY_5422 composite device)"),
            Fact("escape commands need the card or CCID escape enabled; proprietary",
                 "hidglobal/HID-OMNIKEY-Sample-Codes issue 1; unverified"),
        ),
    ),
    ReaderProfile(
        key="omnikey-5427ck", model="HID OMNIKEY 5427 CK", names=("5427 CK", "5427CK"), usb_ids=((0x076B, 0x5427),),
        extended_length=True, refusal="unknown",
        facts=(
            Fact("descriptor: Short and Extended APDU level exchange, dwMaxCCIDMessageLength 520",
                 _CCID + "HID_OMNIKEY_5427_CK.txt"),
            Fact("libccid allows vendor control commands for it without ifdDriverOptions",
                 "LudovicRousseau/CCID pull request 90"),
            Fact("LED/buzzer commands: HID developer guide, not public", "unverified"),
        ),
    ),
    ReaderProfile(
        key="utrust-3700f", model="Identiv uTrust 3700 F", names=("uTrust 3700",), usb_ids=((0x04E6, 0x5790),),
        extended_length=True, refusal="unknown",
        presence="slow answers: libccid waits 4x its usual read timeout",
        facts=(
            Fact("descriptor: Short and Extended APDU level exchange, dwMaxCCIDMessageLength 1034",
                 _CCID + "Identiv_uTrust_3700_F_CL_Reader.txt"),
            Fact("read timeout x4 (the SCL011 family needs 350 ms to answer)", "LudovicRousseau/CCID src/ccid.c"),
        ),
    ),
    ReaderProfile(
        key="utrust-4701f", model="Identiv uTrust 4701 F", names=("uTrust 4701",), usb_ids=((0x04E6, 0x5724),),
        extended_length=True, refusal="unknown",
        presence="slow answers: libccid waits 4x its usual read timeout",
        facts=(
            Fact("descriptor: TPDU level exchange, dwMaxCCIDMessageLength 271: extended APDUs travel as T=1 blocks "
                 "the driver chains", _CCID + "Identiv_Identiv_uTrust_4701_F_Dual_Interface_Reader.txt"),
            Fact("read timeout x4", "LudovicRousseau/CCID src/ccid.c"),
        ),
    ),
    ReaderProfile(
        key="feitian-r502", model="Feitian R502", names=("R502",), usb_ids=((0x096E, 0x060D), (0x096E, 0x0608)),
        extended_length=True, refusal="unknown",
        facts=(
            Fact("descriptor: Short and Extended APDU level exchange, dwMaxCCIDMessageLength 271 (extended APDUs "
                 "cross in several CCID messages)", _CCID + "Feitian_R502.txt, Feitian_R502-CL.txt"),
            Fact("four CCID interfaces: contactless, contact, SAM1, SAM2: read on the contactless one",
                 "LudovicRousseau/CCID src/ccid_usb.c (Feitian R502 composite device)"),
        ),
    ),
    ReaderProfile(
        key="feitian-br301", model="Feitian bR301", names=("bR301",), usb_ids=((0x096E, 0x061A), (0x096E, 0x0624)),
        contactless=False, extended_length=True, refusal="unknown",
        facts=(
            Fact("descriptor: Short and Extended APDU level exchange, dwMaxCCIDMessageLength 272",
                 _CCID + "Feitian_bR301.txt"),
            Fact("a contact (ID-1 slot) reader: no antenna for the CCCD's contactless chip",
                 "Feitian product description; unverified"),
        ),
    ),
)
# fmt: on

#: The virtual reader of the test stack (vpcd): carries any APDU; its escape channel is the simulator's model.
VIRTUAL = ReaderProfile(
    key="vpcd", model="vpcd virtual reader", names=("Virtual PCD",), extended_length=True,
    max_command=EXTENDED_COMMAND_MAX, max_response=0xFFFF, refusal="transport", refused_unsent=None,
    verified="virtual",
    facts=(Fact("passes any APDU up to 65535 bytes (2-byte length on the wire); FEATURE_GET_TLV_PROPERTIES "
                "reports dwMaxAPDUDataSize 0x10000", "frankmorgner/vsmartcard ifd-vpcd.c, vpcd.c"),),
)  # fmt: skip

#: Any other reader: nothing is assumed, extended length is tried once and given up after a transport failure.
GENERIC = ReaderProfile(
    key="generic-ccid", model="generic CCID reader (probed)", names=(), extended_length=None,
    facts=(Fact("extended length from PC/SC part 10 dwMaxAPDUDataSize (0: short only) where the driver reports it, "
                "else probed", "PC/SC part 10 v2.02.09; LudovicRousseau/CCID issue 27, src/ifdhandler.c"),),
)  # fmt: skip


def profile_for(reader_name: str, usb_id: tuple[int, int] | None = None) -> ReaderProfile:
    """The profile of the reader called ``reader_name`` (its USB id, when PC/SC reported one, wins)."""
    if usb_id is not None:
        for profile in PROFILES:
            if usb_id in profile.usb_ids:
                return profile
    folded = reader_name.casefold()
    for profile in (*PROFILES, VIRTUAL):
        if any(name.casefold() in folded for name in profile.names):
            return profile
    return GENERIC


def by_key(key: str) -> ReaderProfile:
    """The profile named ``key`` (the simulator's reader models and the bench are keyed so)."""
    for profile in (*PROFILES, VIRTUAL, GENERIC):
        if profile.key == key:
            return profile
    raise KeyError(key)


def readers_markdown() -> str:
    """The README's reader table, generated from :data:`PROFILES` so documentation cannot drift."""

    def limits(profile: ReaderProfile) -> str:
        if profile.extended_length is None:
            return "unknown: probed once per reader"
        if profile.extended_length:
            return "extended length"
        return f"short only (command <= {profile.command_limit} B, answer <= {profile.response_limit} B)"

    def works(profile: ReaderProfile) -> str:
        if profile.contactless is False:
            return "**no**: contact slot only, the CCCD's chip is contactless"
        dg2 = "DG2 in 1 APDU" if profile.extended_length else f"DG2 (15 KB) in {short_reads(15_000)} APDUs"
        leds = {"acs-pseudo-apdu": "reader LEDs + buzzer: every pattern", "acs-escape": "reader LEDs: not driven yet",
                "none": "GPIO indicators only"}[profile.indicator_channel]  # fmt: skip
        return f"full read; {dg2}; {leds}"

    def refusal(profile: ReaderProfile) -> str:
        if profile.refusal == "transport":
            return "transport (0x80100016), " + ("never sent" if profile.refused_unsent else "effect unknown")
        return "undocumented"

    rows = ["| reader | limits | what works | refusal over the limit | verified | sources |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for profile in (*PROFILES, GENERIC):
        sources = "; ".join(sorted({fact.source for fact in profile.facts}))
        rows.append(f"| {profile.model} | {limits(profile)} | {works(profile)} | {refusal(profile)} | "
                    f"{profile.verified} | {sources} |")  # fmt: skip
    return "\n".join(rows)
