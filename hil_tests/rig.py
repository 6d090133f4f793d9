"""The rig file (TOML) and what it describes: test cards, reader, camera, LED wires, broker, trust store.

A rig file describes real hardware (a Pi with reader, test cards, camera, LEDs wired back to inputs) or, with
``kind = "virtual"``, the simulated stack that CI runs (hil_tests/virtual.py). :func:`load_rig` refuses a malformed
file with :class:`RigFileError` rather than letting hardware tests skip by accident. The fixtures that hand tests
the parts are in hil_tests/conftest.py; this module imports neither it nor the virtual rig, so both import it.
See hil_tests/README.md for the format.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.protocol.access.policy import AccessKey, CanKey, MrzKey
from edge.protocol.verify.checks import Verdict

HIL_DIR = Path(__file__).resolve().parent
KINDS = frozenset({"hardware", "virtual"})
CAMERA_SOURCES = frozenset({"picam", "v4l2", "replay"})
_TOPIC_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
#: How a test card opens: "pace" with its CAN (a CCCD), or "bac" with its MRZ key (a card without PACE, such as
#: JMRTD's passport applet, see README "Making rig test cards").
ACCESS = frozenset({"pace", "bac"})
_DOCUMENT_NUMBER = re.compile(r"^[A-Z0-9<]{1,9}$")
_YYMMDD = re.compile(r"^\d{6}$")


class RigFileError(ValueError):
    """The rig file is malformed: fail loudly rather than skip hardware tests by accident."""


@dataclass(frozen=True, slots=True)
class TestCard:
    """A test card kept at the rig. ``can`` and ``mrz`` are secrets of a test card, never of a citizen: not logged
    anyway. A "pace" card has its CAN, a "bac" card its MRZ key (document number, birth, expiry) instead."""

    __test__ = False  # not a pytest test class, despite the name

    profile: str
    can: str | None = field(default=None, repr=False)  # kept out of assertion messages and logs
    atr: bytes | None = None  # expected ATR, when the rig pins one card model
    reader: str | None = None  # substring of the name of the reader holding it (needed with several cards)
    verdict: Verdict | None = None  # what verify_chip must say (None: anything but "failed")
    access: str = "pace"
    mrz: tuple[str, str, str] | None = field(default=None, repr=False)

    @property
    def bac(self) -> bool:
        return self.access == "bac"

    @property
    def key(self) -> AccessKey:
        """The key that opens the card: its MRZ key for BAC, else its CAN."""
        if self.mrz is not None:
            return MrzKey(*self.mrz)
        assert self.can is not None, "a PACE card has its CAN (checked when the rig file loads)"
        return CanKey(self.can)


@dataclass(frozen=True, slots=True)
class LedWire:
    """An LED output pin wired back to an input pin, so a test can read what the terminal shows."""

    led: str  # "green", "amber", "red" (or "buzzer")
    output_pin: int | str
    input_pin: int | str


@dataclass(frozen=True, slots=True)
class CameraSpec:
    source: str  # picam | v4l2 | replay
    device: str | int = 0  # v4l2 only
    path: Path | None = None  # replay: image files; None on a virtual rig = photos of the cards' QR synthesised
    fps: float = 10.0  # replay only
    qr_in_view: bool = False


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    """The rig's MQTT broker. ``virtual``: a private mosquitto the session starts (``host``/``port`` unused)."""

    host: str
    port: int
    tls: bool = True
    ca: Path | None = None  # CA that signed the broker (None: the system trust store)
    cert: Path | None = None  # client certificate for mutual TLS; its key is the terminal's device key
    key: Path | None = None
    ward: str = "hil"  # topic segment (cccd-edge/v1/<ward>/<terminal>/...) the broker's ACL allows
    virtual: bool = False


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    """How to reach the rig's broker once it runs: a started private mosquitto, or what the rig file says."""

    host: str
    port: int
    tls: bool
    ca: Path | None
    cert: Path | None
    key: Path | None
    ward: str

    def receiver_tls(self) -> dict[str, str] | None:
        """The ``tls`` argument of :class:`edge.office.receiver.Receiver`."""
        if not self.tls:
            return None
        return {name: str(path) for name, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key))
                if path is not None}


@dataclass(frozen=True, slots=True)
class Rig:
    name: str
    kind: str  # "hardware" or "virtual" (the simulated stack CI runs)
    reader_name: str | None
    cards: tuple[TestCard, ...]
    camera: CameraSpec | None
    leds: tuple[LedWire, ...]
    active_high: bool
    broker: BrokerSpec | None
    trust_dir: Path | None = None  # CSCA store for verify_chip (a virtual rig trusts the simulator's test CSCA)
    led_time_scale: float = 1.0  # shortens every indicator period (patterns read back faster)
    #: The reader's own LEDs and buzzer as the indicators (a reader profile key with the ACS FF 00 40 pseudo-APDU,
    #: e.g. "acr122u"); a virtual rig's vpcd readers then model that escape channel and record what they are shown.
    reader_leds: str | None = None

    @property
    def has_reader_leds(self) -> bool:
        return self.reader_leds is not None and self.reader_name is not None

    @property
    def virtual(self) -> bool:
        return self.kind == "virtual"

    @property
    def has_reader(self) -> bool:
        return self.reader_name is not None

    @property
    def has_cards(self) -> bool:
        return bool(self.cards)

    @property
    def has_camera(self) -> bool:
        return self.camera is not None

    @property
    def has_leds(self) -> bool:
        return bool(self.leds)

    @property
    def has_broker(self) -> bool:
        return self.broker is not None


# --- the rig file --------------------------------------------------------------------------------------------

_KEYS: dict[str, frozenset[str]] = {
    "": frozenset({"name", "kind", "reader", "cards", "camera", "leds", "broker", "trust"}),
    "reader": frozenset({"name", "leds"}),
    "cards": frozenset({"profile", "can", "atr", "reader", "verdict", "access", "mrz"}),
    "camera": frozenset({"source", "device", "path", "fps", "qr_in_view"}),
    "leds": frozenset({"active_high", "time_scale", "wires"}),
    "leds.wires": frozenset({"led", "output", "input"}),
    "broker": frozenset({"kind", "host", "port", "tls", "ca", "cert", "key", "ward"}),
    "broker.virtual": frozenset({"kind", "tls", "ward"}),
    "trust": frozenset({"dir"}),
}


def _table(value: Any, where: str, kind: str) -> dict[str, Any]:
    """``value`` as a table with only the keys ``kind`` allows: a typo must not silently drop a part."""
    if not isinstance(value, dict):
        raise RigFileError(f"{where or 'the file'} must be a table")
    unknown = set(value) - _KEYS[kind]
    if unknown:
        raise RigFileError(f"{where or 'top level'}: unknown key(s) {sorted(unknown)}; allowed {sorted(_KEYS[kind])}")
    return value


def _tables(value: Any, where: str, kind: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise RigFileError(f"{where} must be an array of tables")
    return [_table(item, f"{where}[{i}]", kind) for i, item in enumerate(value)]


def _pin(value: Any, where: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RigFileError(f"{where}: a pin is a BCM number or a gpiozero name such as 'GPIO17'")
    return value


def _can(entry: dict[str, Any], where: str) -> str:
    can = str(entry["can"])
    if not (can.isascii() and can.isdigit() and len(can) == 6):
        raise RigFileError(f"{where}.can: a CAN is 6 digits")
    return can


def _mrz(entry: dict[str, Any], where: str) -> tuple[str, str, str]:
    mrz = entry["mrz"]
    if not (isinstance(mrz, list) and len(mrz) == 3 and all(isinstance(part, str) for part in mrz)):
        raise RigFileError(f'{where}.mrz is ["DOCUMENT NUMBER", "YYMMDD of birth", "YYMMDD of expiry"]')
    number, birth, expiry = mrz
    if not _DOCUMENT_NUMBER.match(number):
        raise RigFileError(f"{where}.mrz: a document number is 1 to 9 of A-Z, 0-9, <")
    if not (_YYMMDD.match(birth) and _YYMMDD.match(expiry)):
        raise RigFileError(f"{where}.mrz: dates of birth and expiry are YYMMDD")
    return number, birth, expiry


def _card(entry: dict[str, Any], where: str) -> TestCard:
    access = str(entry.get("access", "pace"))
    if access not in ACCESS:
        raise RigFileError(f"{where}.access must be one of {sorted(ACCESS)}")
    if access == "bac" and "can" in entry:
        raise RigFileError(f"{where}: a BAC card is read with its mrz, not a can")
    if access == "pace" and "mrz" in entry:
        raise RigFileError(f'{where}: an mrz goes with access = "bac"; a PACE card is read with its can')
    verdict = entry.get("verdict")
    if verdict is not None and verdict not in set(Verdict):
        raise RigFileError(f"{where}.verdict must be one of {[v.value for v in Verdict]}")
    return TestCard(
        profile=str(entry["profile"]),
        can=_can(entry, where) if access == "pace" else None,
        atr=bytes.fromhex(entry["atr"]) if "atr" in entry else None,
        reader=str(entry["reader"]) if "reader" in entry else None,
        # a rig file written before the verdict ladder may say verified_untrusted_issuer: read as its rung
        verdict=Verdict(verdict).rung if verdict is not None else None,
        access=access,
        mrz=_mrz(entry, where) if access == "bac" else None,
    )


def _camera(section: dict[str, Any]) -> CameraSpec:
    source = str(section.get("source", "picam"))
    if source not in CAMERA_SOURCES:
        raise RigFileError(f"camera.source must be one of {sorted(CAMERA_SOURCES)}, not {source!r}")
    path = section.get("path")
    fps = float(section.get("fps", 10.0))
    if not 0 < fps <= 120:
        raise RigFileError("camera.fps must be in (0, 120]")
    return CameraSpec(source, section.get("device", 0), Path(path) if path else None, fps,
                      bool(section.get("qr_in_view", False)))


def _broker(value: Any) -> BrokerSpec:
    """``[broker]``: a real broker (``host``...), or ``kind = "virtual"``, a private mosquitto for the session."""
    section = _table(value, "broker", "broker")
    kind = str(section.get("kind", "hardware"))
    if kind not in KINDS:
        raise RigFileError(f"broker.kind must be 'hardware' or 'virtual', not {kind!r}")
    if kind == "virtual":  # the session picks the port and makes the certificates: nothing else to say
        _table(section, 'broker (kind = "virtual" is started by the session)', "broker.virtual")
    tls = section.get("tls", True)
    if not isinstance(tls, bool):
        raise RigFileError("broker.tls must be true or false")
    ward = str(section.get("ward", "hil"))
    if not _TOPIC_SEGMENT.match(ward):
        raise RigFileError("broker.ward is one MQTT topic segment: letters, digits, '_', '.' or '-'")
    if kind == "virtual":
        return BrokerSpec("127.0.0.1", 0, tls=tls, ward=ward, virtual=True)
    ca, cert, key = (Path(section[name]) if section.get(name) else None for name in ("ca", "cert", "key"))
    if (cert is None) != (key is None):
        raise RigFileError("broker.cert and broker.key go together (mutual TLS)")
    if not tls and (ca or cert):
        raise RigFileError("broker.ca/cert/key need tls = true")
    port = section.get("port", 8883 if tls else 1883)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise RigFileError("broker.port must be a TCP port number")
    return BrokerSpec(str(section["host"]), port, tls=tls, ca=ca, cert=cert, key=key, ward=ward)


def _check_virtual(rig: Rig) -> None:
    """A virtual rig can only have what the simulated stack provides; say so at load time, not mid-run."""
    from edge.sim.stack import READER_NAMES

    if len(rig.cards) > len(READER_NAMES):
        raise RigFileError(f"a virtual rig has {len(READER_NAMES)} vpcd readers: at most that many [[cards]]")
    for i, card in enumerate(rig.cards):
        if card.reader is not None and card.reader not in READER_NAMES:
            raise RigFileError(f"cards[{i}].reader of a virtual rig names a vpcd reader: {list(READER_NAMES)}")
    named = [card.reader for card in rig.cards if card.reader is not None]
    if len(set(named)) != len(named):
        raise RigFileError("two virtual cards on one reader")
    if rig.camera is not None and rig.camera.source != "replay":
        raise RigFileError("the camera of a virtual rig is source = \"replay\"")


def _reader_leds(value: Any) -> str | None:
    """``[reader] leds``: a reader profile whose LEDs and buzzer take the ACS pseudo-APDU."""
    if value is None:
        return None
    from edge.protocol.readers import PROFILES

    usable = sorted(p.key for p in PROFILES if p.indicator_channel == "acs-pseudo-apdu")
    if value not in usable:
        raise RigFileError(f"reader.leds names a reader whose LEDs the terminal drives: one of {usable}")
    return str(value)


def load_rig(path: Path) -> Rig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RigFileError(f"cannot read rig file {path}: {exc}") from None
    try:
        _table(data, "", "")
        kind = str(data.get("kind", "hardware"))
        if kind not in KINDS:
            raise RigFileError(f"kind must be 'hardware' or 'virtual', not {kind!r}")
        reader = _table(data.get("reader", {}), "reader", "reader")
        cards = tuple(_card(c, f"cards[{i}]") for i, c in enumerate(_tables(data.get("cards", []), "cards", "cards")))
        camera = data.get("camera")
        leds_section = _table(data.get("leds", {}), "leds", "leds")
        leds = tuple(
            LedWire(str(w["led"]), _pin(w["output"], f"leds.wires[{i}].output"),
                    _pin(w["input"], f"leds.wires[{i}].input"))
            for i, w in enumerate(_tables(leds_section.get("wires", []), "leds.wires", "leds.wires"))
        )
        time_scale = float(leds_section.get("time_scale", 1.0))
        if not 0 < time_scale <= 1:
            raise RigFileError("leds.time_scale must be in (0, 1]")
        broker = _broker(data["broker"]) if "broker" in data else None
        trust_dir = _table(data.get("trust", {}), "trust", "trust").get("dir")
        rig = Rig(
            name=str(data.get("name", path.stem)),
            kind=kind,
            reader_name=reader.get("name"),
            cards=cards,
            camera=_camera(_table(camera, "camera", "camera")) if camera is not None else None,
            leds=leds,
            active_high=bool(leds_section.get("active_high", True)),
            broker=broker,
            trust_dir=Path(trust_dir) if trust_dir else None,
            led_time_scale=time_scale,
            reader_leds=_reader_leds(reader.get("leds")),
        )
    except RigFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise RigFileError(f"rig file {path}: missing or bad value ({exc!r})") from None
    if rig.virtual:
        _check_virtual(rig)
    return rig
