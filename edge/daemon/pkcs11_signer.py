"""The device key inside a PKCS#11 token (secure element, TPM, SoftHSM in tests): ES256 without the key in memory.

The token signs a SHA-256 digest the host computed (``CKM_ECDSA``) and answers raw ``r || s``, which is already
JWS ES256's signature format. ``python-pkcs11`` is the optional extra ``cccd-edge[pkcs11]``: it is imported here,
on first use, so terminals with a key file never need it.
"""

from __future__ import annotations

import hashlib
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.daemon.signing import ES256, key_id
from edge.errors import ConfigError
from edge.protocol.pkcs11_uri import Pkcs11Uri

if TYPE_CHECKING:
    from pkcs11 import Object, Session, SignMixin

_SIGNATURE_BYTES = 64  # P-256 r || s
#: Label suffix of the key pair waiting for its certificate during a rotation (the file key's ``device.key.next``).
PENDING_SUFFIX = ".next"
#: Label suffix of the replaced key pair while a rotation swaps labels (see :func:`finish_promotion`).
RETIRING_SUFFIX = ".old"


def _pkcs11(config_key: str) -> ModuleType:
    try:
        import pkcs11  # optional extra: only terminals whose key is on a token
    except ImportError:
        raise ConfigError("a pkcs11: device key needs python-pkcs11", key=config_key,
                          hint="pip install 'cccd-edge[pkcs11]'") from None
    return pkcs11


def _pin(uri: Pkcs11Uri, config_key: str) -> str:
    """The user PIN, from pin-value or from the pin-source file (refused when others may read it)."""
    if uri.pin_source is None:
        assert uri.pin_value is not None  # the parser demands one of the two
        return uri.pin_value
    try:
        if uri.pin_source.stat().st_mode & stat.S_IRWXO:
            raise ConfigError(f"PIN file {uri.pin_source} is accessible by others; chmod 640 it", key=config_key)
        return uri.pin_source.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read PIN file {uri.pin_source}: {exc}", key=config_key) from None


@contextmanager
def token_errors(uri: Pkcs11Uri, config_key: str) -> Iterator[ModuleType]:
    """Turn python-pkcs11's exceptions into :class:`ConfigError` naming the token: they all mean the configured
    module, token, PIN or key is not usable as written."""
    pkcs11 = _pkcs11(config_key)
    try:
        yield pkcs11
    except pkcs11.PinIncorrect:
        raise ConfigError(f"token {uri.token!r} refused the PIN", key=config_key,
                          hint="check pin-source / pin-value (tokens lock after a few wrong tries)") from None
    except pkcs11.NoSuchToken:
        raise ConfigError(f"no token labelled {uri.token!r} in {uri.module_path}", key=config_key,
                          hint="is the token plugged in and initialised? (p11tool --list-tokens)") from None
    except pkcs11.NoSuchKey:
        raise ConfigError(f"no P-256 key pair labelled {uri.object!r} on token {uri.token!r}", key=config_key,
                          hint="python -m provisioning device init --pkcs11-uri … generates it on the token") from None
    except pkcs11.UserAlreadyLoggedIn:
        raise ConfigError(f"this process already holds a logged-in session on token {uri.token!r}", key=config_key,
                          hint="one signer per token and process: close the other session first") from None
    except pkcs11.PKCS11Error as exc:
        raise ConfigError(f"PKCS#11 {type(exc).__name__} on {uri}: {exc}", key=config_key) from None


def open_session(uri: Pkcs11Uri, *, config_key: str, rw: bool = False) -> Session:
    """A logged-in session on the URI's token (python-pkcs11 loads and initialises each module once per process)."""
    with token_errors(uri, config_key) as pkcs11:
        token = pkcs11.lib(str(uri.module_path)).get_token(token_label=uri.token)
        session: Session = token.open(rw=rw, user_pin=_pin(uri, config_key))
        return session


@contextmanager
def _closed_on_error(session: Session) -> Iterator[None]:
    try:
        yield
    except BaseException:
        session.close()
        raise


def token_public_key(session: Session, label: str) -> ec.EllipticCurvePublicKey:
    """The public half stored beside the private key; refused unless it is P-256."""
    from pkcs11 import KeyType, ObjectClass, PublicKey  # optional extra (see module docstring)
    from pkcs11.util.ec import encode_ec_public_key

    public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=label)
    assert isinstance(public, PublicKey)  # asked for by class
    key = serialization.load_der_public_key(encode_ec_public_key(public))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"key {label!r} on the token is not EC P-256", key="paths.device_key")
    return key


def labelled(session: Session, label: str) -> list[Object]:
    from pkcs11 import Attribute  # optional extra

    return list(session.get_objects({Attribute.LABEL: label}))


def relabel(objects: list[Object], label: str) -> None:
    from pkcs11 import Attribute  # optional extra

    for obj in objects:
        obj[Attribute.LABEL] = label


def promotion_interrupted(session: Session, label: str) -> bool:
    return bool(labelled(session, label + RETIRING_SUFFIX))


def finish_promotion(session: Session, label: str) -> None:
    """Complete a rotation's swap that stopped between its steps (needs a read/write session).

    The swap is: active ``label`` -> ``label.old``, pending ``label.next`` -> ``label``, destroy ``label.old``. Each
    step leaves a state this recognises, so a power cut anywhere still ends with one key pair labelled ``label``.
    """
    retiring = labelled(session, label + RETIRING_SUFFIX)
    if not retiring:
        return
    if not labelled(session, label):
        successor = labelled(session, label + PENDING_SUFFIX)
        if not successor:  # the pending pair is gone too: keep the only key there is rather than destroy it
            relabel(retiring, label)
            return
        relabel(successor, label)
    for obj in retiring:
        obj.destroy()


def _private_key(session: Session, label: str) -> SignMixin:
    from pkcs11 import KeyType, ObjectClass, SignMixin  # optional extra

    key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=label)
    if not isinstance(key, SignMixin):
        raise ConfigError(f"key {label!r} on the token is not allowed to sign (CKA_SIGN false)", key="paths.device_key")
    return key


def sign_digest(key: SignMixin, data: bytes) -> bytes:
    """ECDSA P-256 with SHA-256 over ``data``: hashed here, signed by the token; raw ``r || s``."""
    from pkcs11 import Mechanism  # optional extra

    signature: bytes = key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA)
    if len(signature) != _SIGNATURE_BYTES:
        raise ConfigError(f"token returned a {len(signature)}-byte ECDSA signature, expected 64 (not P-256?)",
                          key="paths.device_key")
    return signature


class Pkcs11Signer:
    """ES256 with the device key on a PKCS#11 token, over one logged-in session.

    PKCS#11 sessions must not run two operations at once, and results are signed from more than one thread: a lock
    serialises them (signing takes milliseconds, reads are seconds apart). Login is per process and token, and
    closing a logged-in session logs them all out: one signer per token and process (the daemon's, or
    provisioning's while it writes the CSR).
    """

    alg = ES256

    def __init__(self, session: Session, uri: Pkcs11Uri, *, config_key: str = "paths.device_key") -> None:
        self._session, self._uri, self._config_key = session, uri, config_key
        with token_errors(uri, config_key):
            self._public_key = token_public_key(session, uri.object)
            self._key = _private_key(session, uri.object)
        self._kid = key_id(self._public_key)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, uri: Pkcs11Uri, *, config_key: str = "paths.device_key") -> Pkcs11Signer:
        """The daemon's signer: its own read-only session, kept until :meth:`close` or the process ends.

        A rotation whose label swap stopped half-way is finished first: that needs a read/write session, which is
        then kept (login is per process and token, so the read-only one is closed before it opens).
        """
        session = open_session(uri, config_key=config_key)
        with _closed_on_error(session), token_errors(uri, config_key):
            interrupted = promotion_interrupted(session, uri.object)
        if interrupted:
            with token_errors(uri, config_key):
                session.close()
            session = open_session(uri, config_key=config_key, rw=True)
            with _closed_on_error(session), token_errors(uri, config_key):
                finish_promotion(session, uri.object)
        with _closed_on_error(session):
            return cls(session, uri, config_key=config_key)

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        with self._lock, token_errors(self._uri, self._config_key):
            return sign_digest(self._key, data)

    def close(self) -> None:
        """Log out and end the session."""
        with self._lock, token_errors(self._uri, self._config_key):
            self._session.close()
