"""Signature algorithms: the one list of hashes and signature schemes every trust decision accepts.

Passive authentication (EF.SOD), certificate paths, CRLs, master lists and active authentication all verify through
:func:`verify_signature` and name hashes through :func:`hash_algorithm`, so there is one place to audit.
"""

from __future__ import annotations

import hashlib

from asn1crypto.algos import RSASSAPSSParams
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from edge.errors import SignatureError
from edge.protocol.crypto import plain_ecdsa_to_der
from edge.protocol.keys import PublicKey

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_HASH_OIDS = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_RSA_PKCS1 = {
    "1.2.840.113549.1.1.5": "sha1",
    "1.2.840.113549.1.1.14": "sha224",
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
}
_ECDSA_DER = {
    "1.2.840.10045.4.1": "sha1",
    "1.2.840.10045.4.3.1": "sha224",
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}
#: BSI TR-03111 ecdsa-plain-SHA*: r || s instead of DER (used by some eMRTD signers).
_ECDSA_PLAIN = {
    "0.4.0.127.0.7.1.1.4.1.1": "sha1",
    "0.4.0.127.0.7.1.1.4.1.2": "sha224",
    "0.4.0.127.0.7.1.1.4.1.3": "sha256",
    "0.4.0.127.0.7.1.1.4.1.4": "sha384",
    "0.4.0.127.0.7.1.1.4.1.5": "sha512",
}
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"  # some signers name the key type and rely on the digest algorithm
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
RSASSA_PSS = "1.2.840.113549.1.1.10"
MGF1 = "1.2.840.113549.1.1.8"

#: Larger RSA keys are no real signer's and only make verification slow on purpose.
MAX_RSA_BITS = 8192
_NULL = b"\x05\x00"
#: What asn1crypto may raise on malformed input; every parser of certificates and CMS catches these.
ASN1_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


def ecdsa_hash_for(algorithm_oid: str) -> str | None:
    """hashlib name an ECDSA signature algorithm OID (DER or BSI plain) implies, or None when it is not one."""
    return _ECDSA_DER.get(algorithm_oid) or _ECDSA_PLAIN.get(algorithm_oid)


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    """The cryptography hash for a hashlib name; unknown or weak-beyond-ICAO names raise SignatureError."""
    factory = HASHES.get(name.lower().replace("-", ""))
    if factory is None:
        raise SignatureError(f"unsupported hash algorithm {name!r}")
    return factory()


def digest(name: str, data: bytes) -> bytes:
    hash_algorithm(name)  # same vocabulary and error as the signature side
    return hashlib.new(name.lower().replace("-", ""), data).digest()


def _pss_padding(parameters_der: bytes | None) -> tuple[padding.PSS, str]:
    if not parameters_der:
        raise SignatureError("RSASSA-PSS signature without its parameters")
    try:
        params = RSASSAPSSParams.load(parameters_der, strict=True)
        hash_name = _HASH_OIDS.get(params["hash_algorithm"]["algorithm"].dotted)
        mgf = params["mask_gen_algorithm"]
        mgf_hash = _HASH_OIDS.get(mgf["parameters"]["algorithm"].dotted)
        salt = int(params["salt_length"].native)
        trailer = int(params["trailer_field"].native == "trailer_field_bc" or params["trailer_field"].native == 1)
        mgf_oid = mgf["algorithm"].dotted
    except ASN1_ERRORS as exc:
        raise SignatureError("malformed RSASSA-PSS parameters") from exc
    if hash_name is None or mgf_hash is None:
        raise SignatureError("RSASSA-PSS with an unsupported hash algorithm")
    if mgf_oid != MGF1:
        raise SignatureError("RSASSA-PSS with a mask generation function other than MGF1")
    if not trailer:
        raise SignatureError("RSASSA-PSS with a trailer field other than 0xBC")
    if not 0 <= salt <= 512:
        raise SignatureError("RSASSA-PSS with an absurd salt length")
    return padding.PSS(mgf=padding.MGF1(hash_algorithm(mgf_hash)), salt_length=salt), hash_name


def verify_signature(
    key: PublicKey,
    algorithm_oid: str,
    parameters_der: bytes | None,
    signature: bytes,
    message: bytes,
    *,
    digest_algorithm: str | None = None,
) -> str:
    """Verify ``signature`` over ``message``; return a short algorithm label for reports.

    Raises :class:`SignatureError` with a plain-words reason when the signature does not hold, the algorithm is
    unsupported, or it does not fit the key (RSA algorithm with an EC key, wrong signature length).
    """
    params = parameters_der if parameters_der and parameters_der != _NULL else None
    try:
        if algorithm_oid in _RSA_PKCS1 or algorithm_oid in (RSA_ENCRYPTION, RSASSA_PSS):
            if not isinstance(key, rsa.RSAPublicKey):
                raise SignatureError("an RSA signature algorithm with a non-RSA key")
            if key.key_size > MAX_RSA_BITS:
                raise SignatureError(f"RSA key of {key.key_size} bits is beyond any real signer")
            if len(signature) != (key.key_size + 7) // 8:
                raise SignatureError(f"RSA signature of {len(signature)} bytes for a {key.key_size}-bit key")
            if algorithm_oid == RSASSA_PSS:
                pss, pss_hash = _pss_padding(params)
                key.verify(signature, message, pss, hash_algorithm(pss_hash))
                return f"RSASSA-PSS/{pss_hash}"
            hash_name = _RSA_PKCS1.get(algorithm_oid) or digest_algorithm
            if hash_name is None:
                raise SignatureError("rsaEncryption signature without a digest algorithm")
            key.verify(signature, message, padding.PKCS1v15(), hash_algorithm(hash_name))
            return f"RSA-PKCS1v1.5/{hash_name}"
        if algorithm_oid in _ECDSA_DER or algorithm_oid in _ECDSA_PLAIN or algorithm_oid == EC_PUBLIC_KEY:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise SignatureError("an ECDSA signature algorithm with a non-EC key")
            size = (key.curve.key_size + 7) // 8
            if algorithm_oid in _ECDSA_PLAIN:
                if len(signature) != 2 * size:
                    raise SignatureError(f"plain ECDSA signature of {len(signature)} bytes, expected {2 * size}")
                der = plain_ecdsa_to_der(signature)
                hash_name = _ECDSA_PLAIN[algorithm_oid]
            else:
                if len(signature) > 2 * size + 12:
                    raise SignatureError(f"ECDSA signature of {len(signature)} bytes is too long for the curve")
                der = signature
                hash_name = _ECDSA_DER.get(algorithm_oid) or digest_algorithm or ""
                if not hash_name:
                    raise SignatureError("id-ecPublicKey signature without a digest algorithm")
            key.verify(der, message, ec.ECDSA(hash_algorithm(hash_name)))
            return f"ECDSA/{key.curve.name}/{hash_name}"
    except InvalidSignature as exc:
        raise SignatureError("the signature does not verify") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm, OverflowError) as exc:
        raise SignatureError(f"the signature cannot be checked ({type(exc).__name__})") from exc
    raise SignatureError(f"unsupported signature algorithm {algorithm_oid}")
