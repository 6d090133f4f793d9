"""Device keys on a PKCS#11 token: generated inside it, found again by label, swapped in when a rotation completes.

The daemon only signs (:mod:`edge.signers.pkcs11`); making and replacing keys is provisioning's job, done in
one read/write session so the token sees a single login.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from edge.errors import ConfigError, ProvisioningError
from edge.protocol.pkcs11_uri import Pkcs11Uri, parse_pkcs11_uri
from edge.signers.pkcs11 import (
    PENDING_SUFFIX,
    RETIRING_SUFFIX,
    finish_promotion,
    labelled,
    open_session,
    relabel,
    token_errors,
    token_public_key,
)

if TYPE_CHECKING:
    from pkcs11 import Session

_OPTION = "--pkcs11-uri"
_ID_BYTES = 16  # random: unique on the token without reading the others


def parse_uri(text: str) -> Pkcs11Uri:
    try:
        return parse_pkcs11_uri(text)
    except ConfigError as exc:
        raise ProvisioningError(str(exc.args[0]), hint="pkcs11:token=LABEL;object=LABEL?module-path=/usr/lib/"
                                "…/module.so&pin-source=/etc/cccd-edge/token.pin") from None


def pending(uri: Pkcs11Uri) -> Pkcs11Uri:
    return uri.with_object(uri.object + PENDING_SUFFIX)


@contextmanager
def token_session(uri: Pkcs11Uri) -> Iterator[Session]:
    """A read/write, logged-in session; token problems surface as :class:`ConfigError` naming ``--pkcs11-uri``.

    A rotation interrupted during its label swap is finished first, so no step ever sees the key under another label
    (``init`` would otherwise generate a fresh key where the active one should be).
    """
    session = open_session(uri, config_key=_OPTION, rw=True)
    try:
        with token_errors(uri, _OPTION):
            finish_promotion(session, uri.object, config_key=_OPTION)
            yield session
    finally:
        session.close()


def has_key_pair(session: Session, label: str) -> bool:
    from pkcs11 import Attribute, KeyType  # optional extra: only for keys on a token

    found = {obj[Attribute.CLASS] for obj in session.get_objects({Attribute.LABEL: label,
                                                                   Attribute.KEY_TYPE: KeyType.EC})}
    return len(found) == 2  # CKO_PUBLIC_KEY and CKO_PRIVATE_KEY


def destroy_key_pair(session: Session, label: str) -> None:
    for obj in labelled(session, label):
        obj.destroy()


def ensure_key_pair(session: Session, label: str) -> tuple[ec.EllipticCurvePublicKey, bool]:
    """The P-256 key pair labelled ``label``, generated inside the token when absent; (public key, created).

    The private half is made sensitive and not extractable: it cannot leave the token, not even through us. Both
    halves get one CKA_ID of their own, which tells the pairs apart while a rotation's swap has their labels mixed.
    """
    from pkcs11 import Attribute, KeyType, MechanismFlag  # optional extra
    from pkcs11.util.ec import encode_named_curve_parameters

    if has_key_pair(session, label):
        return token_public_key(session, label), False
    parameters = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
    parameters.generate_keypair(
        id=secrets.token_bytes(_ID_BYTES), label=label, store=True,
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.PRIVATE: True})
    return token_public_key(session, label), True


def identify_pairs(session: Session, labels: tuple[str, ...]) -> None:
    """Give the pair under each label a CKA_ID common to its halves and no other pair's, as generation does: keys
    made before IDs were set share the empty one, and a swap must never start with pairs it cannot tell apart."""
    from pkcs11 import Attribute  # optional extra

    taken = {b""}
    for label in labels:
        objects = labelled(session, label)
        ids = {bytes(obj[Attribute.ID]) for obj in objects}
        if len(ids) != 1 or ids & taken:
            fresh = secrets.token_bytes(_ID_BYTES)
            for obj in objects:
                obj[Attribute.ID] = fresh
            ids = {fresh}
        taken |= ids


def public_keys(uri: Pkcs11Uri) -> tuple[ec.EllipticCurvePublicKey, ec.EllipticCurvePublicKey | None]:
    """The active key pair's public key, and the pending one's during a rotation."""
    with token_session(uri) as session:
        waiting = pending(uri).object
        return (token_public_key(session, uri.object),
                token_public_key(session, waiting) if has_key_pair(session, waiting) else None)


def promote_pending(uri: Pkcs11Uri) -> None:
    """Rotation completes: the pending key pair takes the configured label and the old one is destroyed.

    In steps that a power cut cannot turn into a terminal without a key: the old pair is relabelled ``<object>.old``
    first, and :func:`~edge.signers.pkcs11.finish_promotion` does the rest (and again on the next session, if
    it was interrupted), telling the pairs apart by the CKA_IDs made distinct here before any label changes.
    """
    with token_session(uri) as session:
        if not has_key_pair(session, pending(uri).object):
            raise ProvisioningError(f"no pending key pair {pending(uri)} on the token")
        identify_pairs(session, (uri.object, pending(uri).object))
        relabel(labelled(session, uri.object), uri.object + RETIRING_SUFFIX)
        finish_promotion(session, uri.object, config_key=_OPTION)
