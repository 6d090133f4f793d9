"""The device key inside a PKCS#11 token (secure element, TPM, SoftHSM in tests): ES256 without the key in memory.

The token signs a SHA-256 digest the host computed (``CKM_ECDSA``) and answers raw ``r || s``, which is already
JWS ES256's signature format. ``python-pkcs11`` is the optional extra ``cccd-edge[pkcs11]``: it is imported here,
on first use, so terminals with a key file never need it. The rotation's label swap (:func:`finish_promotion`) is
here too: the signer completes an interrupted one before it signs; making new keys is ``provisioning.token``'s.

Opening the token as configured fails with :class:`ConfigError` (module, token, PIN, key); a token that fails once
the signer runs (unplugged, locked, a wrong answer) with :class:`SignerError`: the configuration was right.
"""

from __future__ import annotations

import hashlib
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.errors import ConfigError, SignerError
from edge.protocol.jose import ES256, key_id
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


def open_session(uri: Pkcs11Uri, *, config_key: str, rw: bool = False, spare_pin_tries: bool = False) -> Session:
    """A logged-in session on the URI's token (python-pkcs11 loads and initialises each module once per process).

    ``spare_pin_tries`` refuses to log in once the token has counted a wrong PIN: an inspection (doctor) must not be
    the try that locks it.
    """
    with token_errors(uri, config_key) as pkcs11:
        token = pkcs11.lib(str(uri.module_path)).get_token(token_label=uri.token)
        pin = _pin(uri, config_key)
        wrong_pin_seen = (pkcs11.TokenFlag.USER_PIN_COUNT_LOW | pkcs11.TokenFlag.USER_PIN_FINAL_TRY
                          | pkcs11.TokenFlag.USER_PIN_LOCKED)
        if spare_pin_tries and token.flags & wrong_pin_seen:
            raise ConfigError(f"token {uri.token!r} has counted a wrong PIN since its last login: not trying it here",
                              key=config_key, hint="check pin-source / pin-value; the next good login (the daemon's) "
                              "resets the count, a few more wrong ones lock the token")
        session: Session = token.open(rw=rw, user_pin=pin)
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
    """The key objects (either half of a pair) with this label; certificates or data a token keeps beside them are
    not ours to move or destroy."""
    from pkcs11 import Attribute, ObjectClass  # optional extra

    return [obj for obj in session.get_objects({Attribute.LABEL: label})
            if obj[Attribute.CLASS] in (ObjectClass.PUBLIC_KEY, ObjectClass.PRIVATE_KEY)]


def relabel(objects: Iterable[Object], label: str) -> None:
    from pkcs11 import Attribute  # optional extra

    for obj in objects:
        obj[Attribute.LABEL] = label


def promotion_interrupted(session: Session, label: str) -> bool:
    return bool(labelled(session, label + RETIRING_SUFFIX))


@dataclass(frozen=True, slots=True, eq=False)
class _KeyPair:
    """The key objects sharing one CKA_ID, under whatever labels an interrupted swap left on them."""

    objects: tuple[Object, ...]
    labels: frozenset[str]
    complete: bool  # both halves, public and private


def _key_pairs(session: Session, labels: Iterable[str], config_key: str) -> list[_KeyPair]:
    """Pairs by their CKA_ID, common to both halves (:func:`provisioning.token.ensure_key_pair` sets it): the swap
    relabels one object at a time, so a label may hold one half of each pair."""
    from pkcs11 import Attribute, ObjectClass  # optional extra

    by_id: dict[bytes, list[Object]] = {}
    for label in labels:
        for obj in labelled(session, label):
            by_id.setdefault(bytes(obj[Attribute.ID]), []).append(obj)
    pairs = []
    for pair_id, objects in by_id.items():
        classes = [obj[Attribute.CLASS] for obj in objects]
        if len(set(classes)) != len(classes):
            raise ConfigError(f"two key pairs share CKA_ID {pair_id.hex() or '(empty)'} on token: a rotation begun "
                              "before pairs had IDs cannot be told apart", key=config_key,
                              hint="give the halves their labels back by hand (p11tool --list-all shows labels and "
                              "IDs), then python -m provisioning device rotate")
        pairs.append(_KeyPair(tuple(objects), frozenset(str(obj[Attribute.LABEL]) for obj in objects),
                              set(classes) == {ObjectClass.PUBLIC_KEY, ObjectClass.PRIVATE_KEY}))
    return pairs


def finish_promotion(session: Session, label: str, *, config_key: str) -> None:
    """Complete a rotation's swap that stopped between any two of its steps (needs a read/write session).

    The swap relabels the active pair ``label`` -> ``label.old`` and the pending one ``label.next`` -> ``label``, then
    destroys ``label.old``: one object per step. Pairs are told apart by CKA_ID, never by label: the pair with an
    object under ``label.old`` is retiring; the other one takes ``label`` when both its halves exist (install was
    promoting it), else the retiring pair takes it back. The retiring pair is destroyed only once ``label`` holds the
    whole new pair, and until then ``label.old`` marks the swap, so a cut during this recovery is recovered alike.
    """
    if not promotion_interrupted(session, label):
        return
    retiring_label = label + RETIRING_SUFFIX
    pairs = _key_pairs(session, (label, retiring_label, label + PENDING_SUFFIX), config_key)
    retiring = [pair for pair in pairs if retiring_label in pair.labels]
    complete = [pair for pair in pairs if pair.complete]
    keep = next((pair for pair in complete if pair not in retiring), None) or next(iter(complete), None)
    if keep is None:
        raise ConfigError(f"no complete key pair left under {label!r} on token after an interrupted rotation",
                          key=config_key, hint="python -m provisioning device rotate makes a new key and CSR")
    for pair in pairs:  # a pending pair missing a half makes way first (rotate replaces it)
        if pair is not keep and pair not in retiring:
            relabel(pair.objects, label + PENDING_SUFFIX)
    relabel(keep.objects, label)
    for pair in retiring:
        if pair is not keep:
            for obj in pair.objects:
                obj.destroy()


@contextmanager
def signing_errors(uri: Pkcs11Uri) -> Iterator[None]:
    """Turn python-pkcs11's exceptions while the signer runs into :class:`SignerError` naming the token."""
    from pkcs11 import PKCS11Error  # optional extra

    try:
        yield
    except PKCS11Error as exc:
        raise SignerError(f"token {uri.token!r} failed: PKCS#11 {type(exc).__name__} {exc}".rstrip()) from None


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
        raise SignerError(f"token returned a {len(signature)}-byte ECDSA signature, expected 64 (not P-256?)")
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
        self._session, self._uri = session, uri
        with token_errors(uri, config_key):
            self._public_key = token_public_key(session, uri.object)
            self._key = _private_key(session, uri.object)
        self._kid = key_id(self._public_key)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, uri: Pkcs11Uri, *, config_key: str = "paths.device_key", read_only: bool = False) -> Pkcs11Signer:
        """The daemon's signer: its own read-only session, kept until :meth:`close` or the process ends.

        A rotation whose label swap stopped half-way is finished first: that needs a read/write session, which is
        then kept (login is per process and token, so the read-only one is closed before it opens). ``read_only``
        (doctor) changes nothing on the token instead: an interrupted rotation is refused, and no PIN is tried once
        the token has counted a wrong one.
        """
        session = open_session(uri, config_key=config_key, spare_pin_tries=read_only)
        with _closed_on_error(session), token_errors(uri, config_key):
            interrupted = promotion_interrupted(session, uri.object)
        if interrupted:
            with token_errors(uri, config_key):
                session.close()
            if read_only:
                raise ConfigError(f"a key rotation stopped half-way on token {uri.token!r} ({uri.object!r} is being "
                                  "replaced)", key=config_key, hint="finish it: run python -m provisioning device "
                                  "install again with the new certificate")
            session = open_session(uri, config_key=config_key, rw=True)
            with _closed_on_error(session), token_errors(uri, config_key):
                finish_promotion(session, uri.object, config_key=config_key)
        with _closed_on_error(session):
            return cls(session, uri, config_key=config_key)

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        with self._lock, signing_errors(self._uri):
            return sign_digest(self._key, data)

    def close(self) -> None:
        """Log out and end the session."""
        with self._lock, signing_errors(self._uri):
            self._session.close()
