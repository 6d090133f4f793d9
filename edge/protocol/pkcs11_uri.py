"""The RFC 7512 ``pkcs11:`` URI subset that names the device key on a token: text in, :class:`Pkcs11Uri` out.

Only what the terminal needs: ``token`` and ``object`` in the path; ``module-path`` and one of ``pin-source`` /
``pin-value`` in the query. Anything else is refused rather than ignored, so a typo (``objet=``) cannot make the
daemon pick some other key on the token. Reading the PIN file and talking to the token is the daemon's job
(:mod:`edge.signers.pkcs11`); this module stays pure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

from edge.errors import ConfigError

SCHEME = "pkcs11:"
_PATH_ATTRIBUTES = {"token", "object", "type"}
_QUERY_ATTRIBUTES = {"module-path", "pin-source", "pin-value"}
# RFC 7512 pk11-res-avail / pk11-qres-avail: left unescaped when writing, so a written URI reads like a typed one.
_PATH_SAFE = ":[]@!$'()*+,=&"
_QUERY_SAFE = ":[]@!$'()*+,=/?|;"


@dataclass(frozen=True, slots=True)
class Pkcs11Uri:
    """Where the device key lives: the module to load, the token and the key pair's label on it."""

    module_path: Path
    token: str
    object: str
    pin_source: Path | None = None
    pin_value: str | None = dataclasses.field(default=None, repr=False)  # never in logs or error messages

    def with_object(self, label: str) -> Pkcs11Uri:
        """The same token and PIN, another key pair (the pending key during a rotation)."""
        return dataclasses.replace(self, object=label)

    def text(self) -> str:
        """The full URI, PIN value included: what ``device.key.pkcs11`` (0600) and config.toml hold (provisioning
        writes config.toml only for a URI with ``pin-source``)."""
        return self._text(self.pin_value)

    def redacted_text(self) -> str:
        """The full URI with a ``pin-value`` shown as ``***``: for dumps of the configuration, which reach logs."""
        return self._text(None if self.pin_value is None else "***")

    def _text(self, pin_value: str | None) -> str:
        query = [f"module-path={quote(str(self.module_path), safe=_QUERY_SAFE)}"]
        if self.pin_source is not None:
            query.append(f"pin-source={quote(str(self.pin_source), safe=_QUERY_SAFE)}")
        if pin_value is not None:
            query.append(f"pin-value={quote(pin_value, safe=_QUERY_SAFE)}")
        return f"{self}?{'&'.join(query)}"

    def __str__(self) -> str:
        """Token and object only: safe to print and log."""
        return f"{SCHEME}token={quote(self.token, safe=_PATH_SAFE)};object={quote(self.object, safe=_PATH_SAFE)}"


def _attributes(part: str, separator: str, allowed: set[str], where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in filter(None, part.split(separator)):
        name, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"pkcs11 URI {where} attribute {name!r} has no value")
        if name not in allowed:
            supported = ", ".join(sorted(allowed))
            raise ConfigError(f"pkcs11 URI {where} attribute {name!r} is not supported (only {supported})")
        if name in found:
            raise ConfigError(f"pkcs11 URI repeats {name!r}")
        try:
            found[name] = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"pkcs11 URI attribute {name!r} is not UTF-8 after percent-decoding") from None
    return found


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse ``pkcs11:token=…;object=…?module-path=…&pin-source=…``; :class:`ConfigError` says what is wrong."""
    if not text.startswith(SCHEME):
        raise ConfigError(f"a PKCS#11 URI starts with {SCHEME!r}")
    path_part, _, query_part = text.removeprefix(SCHEME).partition("?")
    path = _attributes(path_part, ";", _PATH_ATTRIBUTES, "path")
    query = _attributes(query_part, "&", _QUERY_ATTRIBUTES, "query")
    if path.get("type", "private") != "private":
        raise ConfigError("pkcs11 URI type must be 'private' (the device key signs)")
    for name, attrs in (("token", path), ("object", path), ("module-path", query)):
        if not attrs.get(name):
            raise ConfigError(f"pkcs11 URI needs {name}=")
    module_path = Path(query["module-path"])
    if not module_path.is_absolute():
        raise ConfigError("pkcs11 URI module-path must be absolute (no library search path is consulted)")
    if ("pin-source" in query) == ("pin-value" in query):
        raise ConfigError("pkcs11 URI needs exactly one of pin-source= (a file) or pin-value=")
    pin_source = Path(query["pin-source"].removeprefix("file:")) if "pin-source" in query else None
    if pin_source is not None and not pin_source.is_absolute():
        raise ConfigError("pkcs11 URI pin-source must be an absolute file path")
    return Pkcs11Uri(module_path, path["token"], path["object"], pin_source, query.get("pin-value"))
