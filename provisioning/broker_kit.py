"""Ward side: the mosquitto configuration a ward's broker needs, made from the ward CA.

``python -m provisioning broker-kit --ward-ca DIR --host NAME -o DIR`` writes, for mosquitto 2.0 (Debian 12):

* ``mosquitto.conf``: one mutual-TLS listener trusting the ward CA only; the certificate's CN is the MQTT user name
  (``use_identity_as_username``) *and* the client id (``use_username_as_clientid``), so no client can take over
  another's session (in 2.0, a session taken over under another user name loses every queued message that user
  may not read: one terminal could have emptied the gateway's backlog); persistence; queue limits sized for a
  day's outage (:class:`QueueSizing`).
* ``acl``: terminals by pattern (``%u``: a new terminal needs no broker change), gateways by name.
* ``ca.crt`` (the ward CA: the broker's ``cafile`` and the terminals' ``--broker-ca``), ``server.key`` (0600, made
  here and kept on re-runs) and ``server.crt`` (issued by the ward CA for ``--host``; re-issued only when the hosts
  change, the CA changed or it expires within 30 days).

Mosquitto 2.0's ACL file cannot refuse a SUBSCRIBE (its default check passes subscriptions through): what keeps a
terminal from reading another's topics is the per-message READ check at delivery, which drops everything it may not
read. The tests (``tests/stack/test_broker_kit.py``) show both.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.config import MqttConfig
from edge.errors import ProvisioningError
from edge.files import private_key_pem
from edge.office.receiver import MAX_RESULT_BYTES
from provisioning.files import PRIVATE, PRIVATE_DIR, ensure_dir, write_atomic
from provisioning.pki import (
    GatewayIdentity,
    TerminalIdentity,
    load_certificate,
    load_private_key,
    new_private_key,
    same_public_key,
    utcnow,
)
from provisioning.ward_ca import WardCa, issue_server_certificate, load_ward_ca, server_alt_names

CONF = "mosquitto.conf"
ACL = "acl"
CA = "ca.crt"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
PROVINCE_CA = "province-ca.crt"  # a bridged ward: the CA of the province broker and of the bridge's certificate
BRIDGE_CERT = "bridge.crt"
BRIDGE_KEY = "bridge.key"
KIT_FILE_MODE = 0o644  # config, ACL and certificates: public, read by the broker's user
#: Where the kit's files are expected on the broker host (the config names them by absolute path).
DEFAULT_INSTALL_DIR = Path("/etc/mosquitto/cccd-edge")
DEFAULT_PERSISTENCE_DIR = Path("/var/lib/mosquitto")  # Debian's, owned by user mosquitto
DEFAULT_TOPIC_PREFIX: str = MqttConfig.model_fields["topic_prefix"].default
#: A terminal publishes these leaves of ``<prefix>/<ward>/<its id>/`` (edge.daemon.mqtt.Topics) ...
TERMINAL_WRITES = ("result", "status", "event")
#: ... and reads these; ``receipt`` is reserved now for end-to-end receipts (issue 15), so terminals need no ACL
#: change when they start subscribing to it.
TERMINAL_READS = ("cmd", "receipt")
#: Every message the broker accepts fits the office's limit for one result (the largest message on the wire; a
#: signed command, DS lists included, is smaller). Larger: PUBACK "implementation specific error", not stored.
MESSAGE_SIZE_LIMIT = MAX_RESULT_BYTES
#: Persistence is a snapshot of memory; a crash (not a clean stop, which saves) loses what came after the last one.
AUTOSAVE_SECONDS = 60
#: How long the broker keeps the session of a client that never comes back (a retired gateway instance): longer
#: than the results' 7-day message expiry, so no live result is dropped with the session.
SESSION_EXPIRY = "14d"
#: Outgoing QoS 1 window per client: lets a gateway catch up after an outage at ~100 messages per round trip.
MAX_INFLIGHT = 100
RENEW_BEFORE = dt.timedelta(days=30)
_UNIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True, slots=True)
class QueueSizing:
    """How many messages the broker must hold for one offline subscriber: the gateway, whose session collects every
    terminal's traffic while it is down (a terminal's own session only ever holds its few commands and receipts).

    ``max_queued_messages`` is a per-client limit in mosquitto and beyond it messages are dropped *silently*, after
    the terminal got its PUBACK and deleted the result: it has to cover the longest outage the ward plans for.
    """

    terminals: int = 10  # a large ward; a typical one has ~3 counters
    reads_per_hour: int = 120  # one read every 30 s at a busy counter (the national peak estimate in issue 15)
    outage_hours: int = 24  # a full day at that peak rate (offices open ~10 h: about two working days of peak)
    #: 1 result + 1 event + up to 8 retained status updates (ready -> wait_card -> reading -> verifying -> result ->
    #: ready, and the outbox count going up and down), each a QoS 1 message in the gateway's queue.
    messages_per_read: int = 10
    typical_result_bytes: int = 4096  # a signed result without the photo is 1.3-2.6 KB (JWE: 2.0-2.6 KB)
    typical_other_bytes: int = 512  # a status document or an event

    def __post_init__(self) -> None:
        for name in ("terminals", "reads_per_hour", "outage_hours", "messages_per_read"):
            if getattr(self, name) < 1:
                raise ProvisioningError(f"queue sizing: {name.replace('_', '-')} must be at least 1")

    @property
    def reads(self) -> int:
        return self.terminals * self.reads_per_hour * self.outage_hours

    @property
    def max_queued_messages(self) -> int:
        return self.reads * self.messages_per_read

    @property
    def memory_estimate_bytes(self) -> int:
        """Payload bytes of a full queue (mosquitto adds ~200 bytes of bookkeeping per message)."""
        others = self.max_queued_messages - self.reads
        return (self.reads * self.typical_result_bytes + others * self.typical_other_bytes
                + self.max_queued_messages * 200)

    def explain(self) -> list[str]:
        return [
            f"{self.terminals} terminals x {self.reads_per_hour} reads/h x {self.outage_hours} h = {self.reads:,} "
            "reads while the gateway is away",
            f"x {self.messages_per_read} QoS 1 messages per read (1 result, 1 event, up to 8 status updates) = "
            f"{self.max_queued_messages:,} messages in the gateway's queue",
            f"memory when full: ~{self.memory_estimate_bytes / 1e6:,.0f} MB ({self.typical_result_bytes} B per result, "
            f"{self.typical_other_bytes} B per status/event, ~200 B of broker bookkeeping each)",
        ]


@dataclass(frozen=True, slots=True)
class KitOptions:
    hosts: tuple[str, ...]  # DNS names / addresses terminals use for the broker (mqtt.host): the certificate's SANs
    gateways: tuple[str, ...] = ("office-1",)  # gateway instance names (CN gateway:<name>), one certificate each
    shut_out: tuple[str, ...] = ()  # terminal ids that may do nothing any more (see render_acl)
    port: int = 8883
    bind: str | None = None  # listen address; None: every interface
    install_dir: Path = DEFAULT_INSTALL_DIR
    persistence_dir: Path = DEFAULT_PERSISTENCE_DIR
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    sizing: QueueSizing = field(default_factory=QueueSizing)
    days: int = 365  # validity of the server certificate (never beyond the CA's)
    user: str | None = "mosquitto"  # mosquitto drops root privileges to this user; None: leave the line out

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ProvisioningError(f"port {self.port} is not a TCP port")
        if not self.gateways:
            raise ProvisioningError("at least one gateway is needed: nothing else may read the results")
        if len(set(self.gateways)) != len(self.gateways):
            raise ProvisioningError("a gateway name is given twice")
        prefix = self.topic_prefix
        if not prefix or prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in "+#\0 \n"):
            raise ProvisioningError(f"topic prefix {prefix!r} must be plain topic levels (no wildcards, spaces or "
                                    "leading/trailing '/')")
        for path in (self.install_dir, self.persistence_dir):
            if not path.is_absolute() or any(c in str(path) for c in "\n\r"):
                raise ProvisioningError(f"{path}: the broker's paths must be absolute")
        server_alt_names(self.hosts)  # refuse a bad host before anything is written
        if self.user is not None and not _UNIX_USER.fullmatch(self.user):
            raise ProvisioningError(f"user {self.user!r} is not a system user name")


@dataclass(frozen=True, slots=True)
class KitResult:
    directory: Path
    ward_code: str
    gateway_users: tuple[str, ...]
    server_cert_issued: bool  # False: the existing server certificate was kept
    server_key_created: bool
    sizing: QueueSizing


def render_acl(ward_code: str, gateway_users: Sequence[str], *, topic_prefix: str = DEFAULT_TOPIC_PREFIX,
               shut_out: Sequence[str] = ()) -> str:
    """The ACL file: every terminal confined to its own topics by ``%u`` (its certificate's CN), each gateway user
    allowed the whole ward's results/status/events and its terminals' commands and receipts.

    ``gateway_users`` are MQTT user names as the broker sees them (``gateway:<name>`` for a ward CA certificate;
    the demo's office certificate is plain ``office``). ``shut_out`` lists terminals whose certificates still
    verify but must no longer publish or read anything (a lost terminal, until the ward CA can revoke): their own
    ``deny`` entries are checked before the patterns.
    """
    TerminalIdentity("acl", ward_code)  # the ward code is a safe topic level
    base = f"{topic_prefix}/{ward_code}"
    lines = [
        f"# cccd-edge ACL for ward {ward_code}: made by python -m provisioning broker-kit; regenerate, do not edit.",
        "# User name = the client certificate's CN (use_identity_as_username). What is not granted here is refused.",
        "",
        "# Every terminal, by its own CN (%u): a new terminal needs no change here.",
        *(f"pattern write {base}/%u/{leaf}" for leaf in TERMINAL_WRITES),
        *(f"pattern read {base}/%u/{leaf}" for leaf in TERMINAL_READS),
    ]
    for terminal in shut_out:
        TerminalIdentity(terminal, ward_code)
        lines += ["", f"# Shut out: {terminal} (its certificate still verifies; it may do nothing).",
                  f"user {terminal}", "topic deny #"]
    for user in gateway_users:
        lines += [
            "",
            f"# Gateway instance {user}: reads the ward, writes commands and receipts to its terminals.",
            f"user {_acl_user(user)}",
            *(f"topic read {base}/+/{leaf}" for leaf in TERMINAL_WRITES),
            *(f"topic write {base}/+/{leaf}" for leaf in TERMINAL_READS),
        ]
    return "\n".join(lines) + "\n"


def render_province_acl(bridges: Mapping[str, str], gateway_users: Sequence[str], *,
                        topic_prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """ACL of a province broker that ward brokers bridge into: each ward's bridge user (``bridges``: ward code ->
    user name) may only write that ward's results/status/events and read its commands and receipts, so a ward
    broker (or a stolen bridge key) cannot speak for another ward; province gateways read every ward."""
    lines = [
        "# cccd-edge province ACL: made by provisioning.broker_kit.render_province_acl; regenerate, do not edit.",
        "# No patterns: terminals connect to their ward's broker, never here.",
    ]
    for ward_code, user in bridges.items():
        TerminalIdentity("acl", ward_code)
        base = f"{topic_prefix}/{ward_code}"
        lines += ["", f"# The bridge of ward {ward_code}.", f"user {_acl_user(user)}",
                  *(f"topic write {base}/+/{leaf}" for leaf in TERMINAL_WRITES),
                  *(f"topic read {base}/+/{leaf}" for leaf in TERMINAL_READS)]
    for user in gateway_users:
        lines += ["", f"# Province gateway {user}: every ward.", f"user {_acl_user(user)}",
                  *(f"topic read {topic_prefix}/+/+/{leaf}" for leaf in TERMINAL_WRITES),
                  *(f"topic write {topic_prefix}/+/+/{leaf}" for leaf in TERMINAL_READS)]
    return "\n".join(lines) + "\n"


def render_bridge(ward_code: str, *, address: str, port: int = 8883, files: Path = DEFAULT_INSTALL_DIR,
                  topic_prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """The section a ward broker's ``mosquitto.conf`` ends with to bridge into a province broker: the ward's
    results, status and events go up, commands and receipts for its terminals come down; nothing else crosses.

    The bridge is a client of the province broker with a certificate of the province CA (``bridge.crt``/``.key``,
    trusted through ``province-ca.crt``, all in ``files``). Persistent on both ends (``cleansession false``): while
    the province is unreachable the ward broker queues what goes up in the bridge's session (the same
    ``max_queued_messages``), and the province keeps what comes down. MQTT 3.1.1 on the link: a bridge needs none
    of MQTT 5's features, and a 3.1.1 persistent session has no expiry to get wrong.
    """
    TerminalIdentity("bridge", ward_code)
    base = f"{topic_prefix}/{ward_code}"
    lines = [
        "",
        "# Bridge into the province broker (provisioning/README.md, 'A province').",
        f"connection province-{ward_code}",
        f"address {address}:{port}",
        "bridge_protocol_version mqttv311",
        f"remote_clientid bridge-{ward_code}",
        "cleansession false",
        "local_cleansession false",
        "notifications false",
        "restart_timeout 2 30",
        f"bridge_cafile {files / PROVINCE_CA}",
        f"bridge_certfile {files / BRIDGE_CERT}",
        f"bridge_keyfile {files / BRIDGE_KEY}",
        "bridge_insecure false",
        *(f"topic {base}/+/{leaf} out 1" for leaf in TERMINAL_WRITES),
        *(f"topic {base}/+/{leaf} in 1" for leaf in TERMINAL_READS),
    ]
    return "\n".join(lines) + "\n"


def _acl_user(user: str) -> str:
    if not user or any(c in user for c in "+#/\n\r") or user != user.strip():
        raise ProvisioningError(f"user name {user!r} cannot be used in an ACL")
    return user


def render_config(ward_code: str, options: KitOptions) -> str:
    """``mosquitto.conf`` for mosquitto 2.0, naming the kit's files under ``options.install_dir``."""
    files = options.install_dir
    sizing = options.sizing
    listen = f"listener {options.port}" + (f" {options.bind}" if options.bind else "")
    lines = [
        f"# cccd-edge broker for ward {ward_code}: generated by python -m provisioning broker-kit; regenerate, do not",
        "# edit. Replaces /etc/mosquitto/mosquitto.conf (see provisioning/README.md, 'The ward broker').",
        *([f"user {options.user}"] if options.user else []),
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {files / ACL}",
        "check_retain_source true",
        "",
        "# Persistence: sessions, subscriptions and queued messages survive a restart (saved on a clean stop and",
        f"# every {AUTOSAVE_SECONDS} s: a crash or power cut loses what arrived since the last save).",
        "persistence true",
        f"persistence_location {options.persistence_dir}/",
        f"autosave_interval {AUTOSAVE_SECONDS}",
        "autosave_on_changes false",
        f"persistent_client_expiration {SESSION_EXPIRY}",
        "",
        "# Queues, per client. The gateway's session collects the whole ward while it is away:",
        *(f"#   {line}" for line in sizing.explain()),
        "# Beyond the limit mosquitto drops messages silently: raise it (broker-kit --terminals/--reads-per-hour/",
        "# --outage-hours) rather than let an outage outgrow it.",
        f"max_queued_messages {sizing.max_queued_messages}",
        "max_queued_bytes 0",
        "queue_qos0_messages false",
        f"max_inflight_messages {MAX_INFLIGHT}",
        f"message_size_limit {MESSAGE_SIZE_LIMIT}",
        "set_tcp_nodelay true",
        "",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "",
        "# The one listener: mutual TLS with the ward CA; the certificate's CN is user name and client id.",
        listen,
        "protocol mqtt",
        f"cafile {files / CA}",
        f"certfile {files / SERVER_CERT}",
        f"keyfile {files / SERVER_KEY}",
        "tls_version tlsv1.2",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
    ]
    return "\n".join(lines) + "\n"


def _server_key(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, bool]:
    path = directory / SERVER_KEY
    if path.exists():
        return load_private_key(path), False
    key = new_private_key()
    write_atomic(path, private_key_pem(key), PRIVATE)
    return key, True


def _current_server_cert(path: Path, ca: WardCa, key: ec.EllipticCurvePrivateKey, hosts: tuple[str, ...],
                         now: dt.datetime) -> bool:
    """Whether the server certificate in ``path`` can stay: same key, same CA, same hosts, not about to expire."""
    if not path.exists():
        return False
    cert = load_certificate(path, "broker certificate")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not same_public_key(public, key.public_key()):
        return False
    if cert.issuer != ca.cert.subject or cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    try:
        cert.verify_directly_issued_by(ca.cert)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return set(names) == set(server_alt_names(hosts))


def build_kit(ward_ca_dir: Path, out: Path, options: KitOptions, *, now: dt.datetime | None = None) -> KitResult:
    """Write the kit into ``out``; keeps ``server.key`` and a still-good ``server.crt``, rewrites the rest."""
    ca = load_ward_ca(ward_ca_dir)
    gateway_users = tuple(GatewayIdentity(name, ca.ward_code).common_name for name in options.gateways)
    now = now or utcnow()
    ensure_dir(out, PRIVATE_DIR)
    key, key_created = _server_key(out)
    issued = not _current_server_cert(out / SERVER_CERT, ca, key, options.hosts, now)
    if issued:
        cert = issue_server_certificate(ca, key.public_key(), options.hosts, days=options.days, now=now)
        write_atomic(out / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM), KIT_FILE_MODE)
    write_atomic(out / CA, ca.cert.public_bytes(serialization.Encoding.PEM), KIT_FILE_MODE)
    acl = render_acl(ca.ward_code, gateway_users, topic_prefix=options.topic_prefix, shut_out=options.shut_out)
    write_atomic(out / ACL, acl.encode("utf-8"), KIT_FILE_MODE)
    write_atomic(out / CONF, render_config(ca.ward_code, options).encode("utf-8"), KIT_FILE_MODE)
    return KitResult(out, ca.ward_code, gateway_users, issued, key_created, options.sizing)
