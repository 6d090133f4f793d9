"""The terminal's TOML configuration as one pydantic model: the single place for defaults and their reasons.

A bad file never half-starts the daemon: :func:`load_config` raises :class:`~edge.errors.ConfigError` naming the
dotted key (``mqtt.port``) and what is wrong with it, so the support desk can fix the one line.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    InstanceOf,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    ValidationError,
    WrapSerializer,
    field_validator,
    model_validator,
)

from edge.errors import ConfigError
from edge.protocol.messages import DEFAULT_TOPIC_PREFIX, TOPIC_LEVEL, TopicPrefix
from edge.protocol.pkcs11_uri import SCHEME as PKCS11_SCHEME
from edge.protocol.pkcs11_uri import Pkcs11Uri, parse_pkcs11_uri
from edge.protocol.procedures import procedure
from edge.protocol.readers import READER_LED_CHANNEL, by_key
from edge.protocol.result import ProcedureProfile

#: A whole-config check names the key it blames first ("mqtt.client_certificate: ..."): pydantic gives it no loc.
_NAMED_KEY = re.compile(r"^([a-z_]+(?:\.[a-z_]+)+): (.+)$", re.DOTALL)

#: A GPIO pin: BCM number or a gpiozero pin name ("GPIO17", "BOARD11"). Strict: ``true`` is not pin 1.
Pin = Annotated[StrictInt, Field(ge=0, le=53)] | Annotated[StrictStr, Field(min_length=1, max_length=16)]


def _device_key(value: object) -> object:
    """A ``pkcs11:`` URI names a key on a token; any other text is the path of a 0600 PEM file."""
    if isinstance(value, str) and value.startswith(PKCS11_SCHEME):
        try:
            return parse_pkcs11_uri(value)
        except ConfigError as exc:
            raise ValueError(exc.args[0]) from None  # pydantic names the key; parse_config adds the hint
    return value


def _device_key_dump(value: object, handler: SerializerFunctionWrapHandler) -> object:
    """A token key dumps as its URI with any ``pin-value`` masked: dumps end up in logs and support tickets."""
    return value.redacted_text() if isinstance(value, Pkcs11Uri) else handler(value)


#: InstanceOf: a TOML table must not slip past the URI parser by filling the dataclass's fields directly.
DeviceKey = Annotated[Path | InstanceOf[Pkcs11Uri], BeforeValidator(_device_key), WrapSerializer(_device_key_dump)]


class _Section(BaseModel):
    # extra="forbid": a typo in a key must fail loudly, not silently keep a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Section):
    state_dir: Path = Path("/var/lib/cccd-edge")  # FHS place for the outbox and replay-guard databases
    # EC P-256 generated on the device itself: a 0600 PEM file, or a pkcs11: URI for a key that never leaves its token
    device_key: DeviceKey = Path("/var/lib/cccd-edge/device.key")
    device_cert: Path | None = None  # the ward-signed certificate for device_key; None on a lab set-up without one
    broker_ca: Path | None = None  # CA that signed the broker; None = system trust store
    ward_command_key: Path | None = None  # ward's P-256 public key (PEM) that signs office commands
    ward_encryption_key: Path | None = None  # ward's P-256 public key for JWE; None = results are only signed
    trust_store: Path = Path("/etc/cccd-edge/trust")  # CSCA certificates for passive authentication


class MqttConfig(_Section):
    host: str = "localhost"
    port: int = Field(default=8883, ge=1, le=65535)  # 8883: the IANA port for MQTT over TLS
    tls: bool = True  # personal data: TLS is the default, plain MQTT only for a lab
    #: Present paths.device_cert + paths.device_key as the TLS client identity (mutual TLS): the broker then knows
    #: the terminal before any result. False for a token key, which Python's ssl cannot use (server-authenticated TLS).
    client_certificate: bool = True
    keepalive: int = Field(default=30, ge=5, le=3600)  # detects a dead link within a minute without chatter
    topic_prefix: TopicPrefix = DEFAULT_TOPIC_PREFIX  # versioned so a future format can run beside this one
    #: MQTT 5 Message Expiry of results. None: by delivery mode (``DeliveryConfig.result_expiry``).
    message_expiry: int | None = Field(default=None, ge=60)
    inflight_window: int = Field(default=20, ge=1, le=1000)  # bounds memory and duplicates after a reconnect
    reconnect_min_delay: float = Field(default=1.0, gt=0)  # first retry soon: most outages are short
    reconnect_max_delay: float = Field(default=8.0, gt=0)  # cap (jittered): back within 10 s of the broker

    @model_validator(mode="after")
    def _delays(self) -> MqttConfig:
        if self.reconnect_max_delay < self.reconnect_min_delay:
            raise ValueError("reconnect_max_delay must be >= reconnect_min_delay")
        return self


class OutboxConfig(_Section):
    max_count: int = Field(default=10_000, ge=1)  # a busy ward reads ~500 cards a day: weeks offline
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)  # fits an 8 GB SD card with room to spare
    #: Free space the state directory's disk must keep: below it reads are refused ("storage full"), since SQLite
    #: needs room for its WAL and a result signed without room could not be stored.
    min_free_bytes: int = Field(default=16 * 1024 * 1024, ge=0)


#: Under PUBACK-only delivery the broker is a result's only keeper: a week for the office to fetch it.
PUBACK_RESULT_EXPIRY = 7 * 24 * 3600


class DeliveryConfig(_Section):
    """How long a result stays on the terminal: until the office gateway's signed receipt names it (``receipt``),
    or until the broker's PUBACK (``puback``, for a ward whose consumer sends no receipts). README, "Delivery"."""

    mode: Literal["receipt", "puback"] = "receipt"
    #: A result without its receipt this long after the PUBACK is published again (same token; the gateway stores
    #: it once): the gateway answers within a second, so a minute means the receipt or the result was lost.
    receipt_timeout: float = Field(default=60.0, gt=0)
    #: The wait between republishes doubles up to this (jittered): an hour keeps a gateway outage cheap.
    republish_max_delay: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _delays(self) -> DeliveryConfig:
        if self.republish_max_delay < self.receipt_timeout:
            raise ValueError("republish_max_delay must be >= receipt_timeout")
        return self

    def result_expiry(self) -> int:
        """The results' default MQTT message expiry: a week under PUBACK-only delivery; under receipts twice the
        republish cap, since the terminal keeps the result and publishes a fresh copy at least that often (an
        older copy at the broker is redundant, and one the broker drops is no loss)."""
        return PUBACK_RESULT_EXPIRY if self.mode == "puback" else max(60, round(2 * self.republish_max_delay))


class IndicatorConfig(_Section):
    """Either three LEDs (green/amber/red) or one RGB LED, a buzzer optional; or no GPIO at all (``gpio = false``,
    a USB-only terminal) with the reader's own LEDs. ``reader_leds``: "auto" shows the states on the reader's LEDs
    when its profile has a driven LED channel, "off" never, a profile key (``cccd-edge readers``) treats the reader's
    LEDs as that profile's (a rebadged reader the name does not give away)."""

    gpio: bool = True
    green: Pin | None = 17
    amber: Pin | None = 27
    red: Pin | None = 22
    rgb: tuple[Pin, Pin, Pin] | None = None  # (red, green, blue) pins of one RGB LED; replaces the three LEDs
    buzzer: Pin | None = None  # many counters are quiet rooms: off unless wired
    active_high: bool = True
    reader_leds: str = "auto"

    @field_validator("reader_leds")
    @classmethod
    def _driven_led_channel(cls, value: str) -> str:
        if value in ("auto", "off"):
            return value
        try:
            profile = by_key(value)
        except KeyError:
            raise ValueError(f'{value!r} is neither "auto", "off" nor a reader profile key') from None
        if profile.indicator_channel != READER_LED_CHANNEL:
            raise ValueError(f"reader profile {value!r}: its LEDs are not driven ({profile.indicator_channel})")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> IndicatorConfig:
        if not self.gpio:
            if self.reader_leds == "off":
                raise ValueError("gpio = false and reader_leds = \"off\": the officer would see nothing")
            return self
        if self.rgb is None and None in (self.green, self.amber, self.red):
            raise ValueError("set all of green, amber, red, or set rgb")
        pins = [p for p in (*(self.rgb or (self.green, self.amber, self.red)), self.buzzer) if p is not None]
        if len({str(p) for p in pins}) != len(pins):
            raise ValueError("a pin is used twice")
        return self


class CameraConfig(_Section):
    source: Literal["picam", "v4l2", "replay"] = "picam"
    replay_path: Path | None = None  # frames to replay (tests, demos)
    device: str = "/dev/video0"  # v4l2 only
    fps: float = Field(default=10.0, gt=0, le=120)  # 10 fps finds a held-up QR within a second at low CPU
    #: A card QR left in view is offered again after this many seconds (a retry after a failed read without lifting
    #: the card); 30 s outlasts a whole attempt (reading + show_result). 0: only when the QR is shown anew.
    qr_repeat_after: float = Field(default=30.0, ge=0)
    # -- Pi camera (picamera2; Camera Module 3 focuses, older modules ignore the af_* keys) --------------------------
    #: "continuous": the lens follows the card; "manual": fixed at lens_position, for a card rest at a known distance
    #: (no hunting, no focus lost on a card's plain back).
    af_mode: Literal["continuous", "manual"] = "continuous"
    #: "macro" searches close range only (a card is held 10-30 cm from the lens): with no card in view the lens does
    #: not wander to the far wall and come back slowly when one is shown.
    af_range: Literal["macro", "normal", "full"] = "macro"
    #: Fixed focus in dioptres (1 / distance in metres: 5.0 = 20 cm), with af_mode = "manual" only.
    lens_position: float | None = Field(default=None, ge=0, le=32)
    #: Where the exposure is metered: "centre" weights the middle of the frame, where the card is held.
    ae_metering: Literal["centre", "spot", "matrix"] = "centre"
    #: "highlight": exposure keeps the brightest 2 % of the frame below saturation, so the laminate's glare does not
    #: wash out the QR's light modules; a frame without glare is exposed as with "normal".
    ae_constraint: Literal["normal", "highlight", "shadows"] = "highlight"
    #: Exposure compensation in stops (-8..8); a negative value darkens further against glare.
    exposure_value: float = Field(default=0.0, ge=-8, le=8)
    # -- USB (UVC) camera through V4L2: values as `v4l2-ctl -d /dev/video0 --list-ctrls` shows them -----------------
    v4l2_focus: int | None = Field(default=None, ge=0)  # focus_absolute; None: the camera's continuous autofocus
    v4l2_exposure: int | None = Field(default=None, ge=1)  # exposure_time_absolute (100 us units); None: auto

    @model_validator(mode="after")
    def _replay_needs_path(self) -> CameraConfig:
        if self.source == "replay" and self.replay_path is None:
            raise ValueError("source 'replay' needs replay_path")
        return self

    @model_validator(mode="after")
    def _lens_position_is_manual_focus(self) -> CameraConfig:
        if (self.af_mode == "manual") != (self.lens_position is not None):
            raise ValueError("lens_position (a fixed focus) needs af_mode = 'manual', and af_mode 'manual' needs it")
        return self


class TimeoutConfig(_Section):
    """Seconds each waiting state may last before the terminal gives up and returns to READY."""

    wait_for_card: float = Field(default=30.0, gt=0)  # citizen finds the card in a bag
    wait_for_key: float = Field(default=30.0, gt=0)  # card on the reader, QR not yet shown
    reading: float = Field(default=20.0, gt=0)  # a full read with DG2 takes 2-5 s on a slow chip
    verifying: float = Field(default=10.0, gt=0)  # pure CPU; anything longer is a fault
    show_result: float = Field(default=5.0, gt=0)  # long enough for the officer to see the colour
    hold_still: float = Field(default=10.0, gt=0)  # after a removal mid-read: time to put it back


class TrustConfig(_Section):
    """Who else may sign lists of known Document Signers, and receipts (the ward's ``paths.ward_command_key`` always
    may)."""

    #: The province's P-256 public keys (PEM): lists they sign for the province or this ward are accepted too.
    ds_list_keys: tuple[Path, ...] = Field(default=(), max_length=8)
    #: Keys whose receipts are believed besides ``paths.ward_command_key`` (which the ward's gateway signs them
    #: with): a gateway that signs with a key of its own, a province's.
    receipt_keys: tuple[Path, ...] = Field(default=(), max_length=8)


class Config(_Section):
    terminal_id: str = Field(min_length=1, max_length=64)
    ward_code: str = Field(min_length=1, max_length=16)
    procedure_profile: ProcedureProfile = ProcedureProfile.RESIDENCE  # what most ward counters need
    reader_name: str | None = None  # None: the first reader holding a card
    paths: PathsConfig = PathsConfig()
    mqtt: MqttConfig = MqttConfig()
    outbox: OutboxConfig = OutboxConfig()
    indicators: IndicatorConfig = IndicatorConfig()
    camera: CameraConfig = CameraConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    trust: TrustConfig = TrustConfig()
    delivery: DeliveryConfig = DeliveryConfig()

    @model_validator(mode="after")
    def _tls_key_in_a_file(self) -> Config:
        # Python's ssl loads the client key from a file; bookworm has no OpenSSL provider for PKCS#11 tokens.
        if self._client_certificate() is not None and not isinstance(self.paths.device_key, Path):
            raise ValueError("mqtt.client_certificate: mutual TLS needs paths.device_key in a PEM file; Python's ssl "
                             "cannot use a PKCS#11 key: set mqtt.client_certificate = false (server-authenticated "
                             "TLS) for a token key")
        return self

    @model_validator(mode="after")
    def _profile_encrypted_if_it_must(self) -> Config:
        # online_check sends the chip's own files (the face among them): only ever encrypted to the ward.
        if procedure(self.procedure_profile).needs_encryption and self.paths.ward_encryption_key is None:
            raise ValueError(f"paths.ward_encryption_key: procedure_profile {self.procedure_profile.value} sends the "
                             "chip's files, only ever encrypted to the ward: set the ward's JWE key, or another "
                             "profile")  # fmt: skip
        return self

    def receipt_keys(self) -> tuple[Path, ...]:
        """The public keys (PEM) whose receipts this terminal believes: the ward command key, then
        ``trust.receipt_keys``. Empty: receipts cannot be verified (``delivery.mode = "receipt"`` refuses to start)."""
        ward = (self.paths.ward_command_key,) if self.paths.ward_command_key is not None else ()
        return ward + self.trust.receipt_keys

    def _client_certificate(self) -> Path | None:
        """``paths.device_cert`` when the broker link is to present it (TLS, ``mqtt.client_certificate``)."""
        return self.paths.device_cert if self.mqtt.tls and self.mqtt.client_certificate else None

    def tls_client_identity(self) -> tuple[Path, Path] | None:
        """(certificate, key file) the broker link presents for mutual TLS, None for no TLS or server-authenticated
        TLS only: one answer, so ``cccd-edge doctor`` shakes hands with the broker as the daemon does."""
        cert, key = self._client_certificate(), self.paths.device_key
        return (cert, key) if cert is not None and isinstance(key, Path) else None

    @field_validator("terminal_id", "ward_code")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        # Both become MQTT topic segments and JWS issuers.
        if not TOPIC_LEVEL.fullmatch(value):
            raise ValueError("only letters, digits, '_', '.' and '-' are allowed")
        return value


_UNION_TAGS = {"int", "str", "float", "bool", "none"}


def _dotted(loc: tuple[int | str, ...]) -> str:
    """``('indicators', 'red', 'constrained-int')`` -> ``indicators.red``: drop pydantic's union-member tags."""
    keep = [str(p) for p in loc if isinstance(p, int) or (p.isidentifier() and p not in _UNION_TAGS)]
    return ".".join(keep)


def parse_config(data: dict[str, Any]) -> Config:
    """Validate an already-parsed TOML table; errors name the first offending key."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = _dotted(first["loc"])
        problem = first["msg"].removeprefix("Value error, ")
        if not key and (named := _NAMED_KEY.match(problem)):
            key, problem = named.groups()
        raise ConfigError(f"{problem} ({len(exc.errors())} problem(s) in total)", key=key or "(top level)") from None


def read_toml(path: Path) -> dict[str, Any]:
    """The table in the TOML file at ``path``; any failure a :class:`ConfigError` keyed ``(file)``, worded alike for
    the terminal's file and the gateway's (``edge.office.gateway_config``)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"file {path} not found", key="(file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", key="(file)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", key="(file)") from None


def load_config(path: Path | str) -> Config:
    """Read and validate the TOML file at ``path``."""
    return parse_config(read_toml(Path(path)))
