"""Users' exchange secrets: validating what a user sends, and reading them back decrypted.

`validate(venue, body, settings=, user_id=)` turns a request body (already JSON-decoded) into the
fields to seal, or raises SecretsInputError naming the field and what is wrong with it, never the
value: no error built here contains any part of what the user sent (the messages are fixed text
plus field names, lengths and key types; an unknown field is named only when it looks like a
field name, since a pasted secret can end up as a key). Accepted fields:

- kalshi: `api_key` (required), exactly one of `private_key` (PEM text of an unencrypted RSA
  private key) or `private_key_path`, `use_demo` (bool), `host`.
- polymarket: `private_key` (required, `0x` + 64 hex), `funder` (`0x` + 40 hex), `host`.

The reference's nested shape is accepted too: `{"api_key": ..., "extra": {"private_key": ...,
"use_demo": ..., "host": ...}}` and `{"extra": {"private_key", "funder", "host"}}` map onto the
same flat fields (a field given both at the top and in `extra` is refused).

`private_key_path` names a file under `<MT_HOME>/keys/<user_id>/` (a relative path is taken
inside that directory) that an operator put there for the user. The path is resolved, symlinks
included, and anything outside that directory — another user's key, a server file — gets one
generic 422 `private_key_path must be a file under <dir>/`, the same whether or not a file is
there, so the endpoint cannot be used to probe the server's files. The PEM is read now, checked,
and its text sealed as `private_key` with the path: the paper service (perhaps on another host)
never reads the file. `fields` (what the profile shows) lists `private_key_path`, what the user
gave, not the `private_key` stored from it (`stored_field_names`).

`host` must be an https URL on the venue's own API host — Kalshi production or demo
(libs.venues.kalshi), the Polymarket CLOB (MT_POLYMARKET_HOST's default), or the host the
operator configured (MT_KALSHI_HOST, MT_POLYMARKET_HOST) — or one of MT_VENUE_HOSTS_ALLOWED (extra
base URLs, http allowed, for tests and private mirrors). Only the origin (scheme, host, port) is
compared; a URL with credentials, a query or a fragment is refused. Anything else is a 422 naming
`host`: live validation calls that host from the paper service, so a free URL would let a user
make the server request any address (SSRF).

Stored fields are those with a value: an empty `host` or `funder` and a false `use_demo` are
left out, so `fields` lists exactly what the user configured.

`load_secrets(store, settings, user_id)` is for the paper service's live validation: venue ->
{field: value}, decrypted. A kalshi entry always has `private_key` (PEM text), also when the user
gave `private_key_path`.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from libs.config import Settings
from libs.store import Store
from libs.users.keys import is_user_id
from libs.users.secretbox import SecretBoxError, secret_box
from libs.users.store import VENUES, secret_rows, venues_with_keys
from libs.venues.kalshi import DEMO_HOST, PRODUCTION_HOST
from proto.paper import KalshiSecrets, PolymarketSecrets

__all__ = [
    "VENUES",
    "SecretsError",
    "SecretsInputError",
    "allowed_hosts",
    "key_dir",
    "load_secrets",
    "stored_field_names",
    "validate",
    "venues_with_keys",
]

MAX_FIELD_CHARS = 16_384
"""Longest value accepted in any field (an RSA-4096 PEM is about 3,300 characters)."""
MAX_PEM_FILE_BYTES = 65_536
KEYS_DIR = "keys"
"""Under MT_HOME: `keys/<user_id>/` holds the PEM files a user's `private_key_path` may name."""
POLYMARKET_CLOB_HOST = Settings().polymarket_host
"""The Polymarket CLOB API (MT_POLYMARKET_HOST's default)."""
VENUE_HOSTS: dict[str, tuple[str, ...]] = {
    "kalshi": (PRODUCTION_HOST, DEMO_HOST),
    "polymarket": (POLYMARKET_CLOB_HOST,),
}
"""Each venue's own API base URLs: always allowed as `host`."""

_HEX64 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX40 = re.compile(r"^0x[0-9a-fA-F]{40}$")
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s?#]*)?$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class SecretsInputError(ValueError):
    """A secrets body that cannot be stored; the message names fields, never values."""


class SecretsError(RuntimeError):
    """Stored secrets that cannot be read back (wrong key, no key); never carries plaintext."""


def key_dir(settings: Settings, user_id: str) -> Path:
    """`<MT_HOME>/keys/<user_id>`, absolute: the only place a user's `private_key_path` may point into."""
    if not is_user_id(user_id):
        raise ValueError(f"{user_id!r} is not a user id")
    return Path(settings.home).expanduser().resolve() / KEYS_DIR / user_id


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, lowercase host, port) of an http(s) URL without credentials, query or fragment; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def allowed_hosts(venue: str, settings: Settings) -> list[str]:
    """The base URLs a user may give as `host` for `venue` (module docstring), in order, without repeats."""
    configured = {"kalshi": settings.kalshi_host, "polymarket": settings.polymarket_host}.get(venue, "")
    extra = [h.strip() for h in settings.venue_hosts_allowed.split(",")]
    out: list[str] = []
    for url in (*VENUE_HOSTS.get(venue, ()), configured, *extra):
        url = url.strip().rstrip("/")
        if url and url not in out:
            out.append(url)
    return out


def _decode(venue: str, body: dict[str, Any], kind: type[Any]) -> Any:
    known = kind.__struct_fields__
    unknown = [k for k in body if k not in known]
    if unknown:
        shown = sorted(k for k in unknown if _FIELD_NAME.match(k))
        hidden = len(unknown) - len(shown)
        names = ", ".join([*map(repr, shown), *([f"{hidden} more (names not shown)"] if hidden else [])])
        raise SecretsInputError(f"{venue} secrets: unknown field(s) {names}; allowed: {', '.join(known)}")
    try:
        return msgspec.convert(body, kind)
    except msgspec.ValidationError as e:
        # msgspec names the field and the expected type (`Expected `str`, got `int` - at `$.api_key``),
        # never the value: these structs have no enum or literal fields, whose errors would quote it
        raise SecretsInputError(f"{venue} secrets: {e}") from None


def _flatten(body: Mapping[str, Any]) -> dict[str, Any]:
    """The reference's nested shape (`{"api_key", "extra": {...}}`) as the flat fields; flat bodies as they are."""
    if "extra" not in body:
        return dict(body)
    extra = body["extra"]
    if not isinstance(extra, dict):
        raise SecretsInputError(
            'extra must be a JSON object of fields, as in {"api_key": "...", "extra": {"private_key": "..."}} '
            "(value not shown)"
        )
    top = {k: v for k, v in body.items() if k != "extra"}
    both = sorted(k for k in set(top) & set(extra) if _FIELD_NAME.match(k))
    if set(top) & set(extra):
        raise SecretsInputError(
            f"field(s) {', '.join(map(repr, both)) or '(names not shown)'} given both at the top level and in extra; "
            "give each field once"
        )
    return top | extra


def _text(name: str, value: str, *, required: bool) -> str:
    if len(value) > MAX_FIELD_CHARS:
        raise SecretsInputError(f"{name} is {len(value)} characters; at most {MAX_FIELD_CHARS} are accepted")
    if required and not value.strip():
        raise SecretsInputError(f"{name} is required and must not be empty")
    return value


def _host(value: str, venue: str, settings: Settings) -> str:
    """The `host` given, when it is on an allowed origin (module docstring); '' when none was given."""
    host = _text("host", value, required=False).strip().rstrip("/")
    if not host:
        return ""
    origin = _origin(host) if _URL.match(host) else None
    if origin is None or origin not in {_origin(url) for url in allowed_hosts(venue, settings)}:
        raise SecretsInputError(
            f"host must be an https URL on the {venue} API host ({', '.join(VENUE_HOSTS[venue])}) or on a host "
            "the operator allowed (MT_VENUE_HOSTS_ALLOWED); value not shown"
        )
    return host


def _rsa_key(data: bytes, name: str) -> None:
    """Parse `data` as an unencrypted PEM RSA private key; errors name `name`, never the data."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SecretsInputError(f"{name} is encrypted with a password; store an unencrypted PEM key") from None
    except Exception:  # ValueError, UnsupportedAlgorithm: their messages are not shown (they may quote input)
        raise SecretsInputError(f"{name} is not a PEM private key that can be parsed (value not shown)") from None
    if not isinstance(key, RSAPrivateKey):
        raise SecretsInputError(f"{name} is a {type(key).__name__.lstrip('_')}, not an RSA private key")


def _read_key_file(raw: str, root: Path) -> str:
    """The PEM text of the file `raw` names under `root` (module docstring); one generic error for any other path.

    The file is opened at its resolved path without following a symlink swapped in since
    (O_NOFOLLOW) and without blocking on a FIFO (O_NONBLOCK), and must be a regular file.
    """
    refusal = SecretsInputError(f"private_key_path must be a file under {root}/")
    path = Path(raw)
    try:
        resolved = (path if path.is_absolute() else root / path).resolve()
        if resolved == root or not resolved.is_relative_to(root):
            raise refusal
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise refusal
            if info.st_size > MAX_PEM_FILE_BYTES:
                raise SecretsInputError(f"private_key_path: the file is larger than {MAX_PEM_FILE_BYTES} bytes")
            data = f.read(MAX_PEM_FILE_BYTES + 1)
    except (OSError, ValueError, RuntimeError):  # missing, unreadable, a NUL in the path, a symlink loop
        raise refusal from None
    if len(data) > MAX_PEM_FILE_BYTES:
        raise SecretsInputError(f"private_key_path: the file is larger than {MAX_PEM_FILE_BYTES} bytes")
    _rsa_key(data, "private_key_path")
    try:
        return data.decode("ascii").strip() + "\n"
    except UnicodeDecodeError:
        raise SecretsInputError("private_key_path: the file is not PEM text (value not shown)") from None


def _kalshi(body: dict[str, Any], settings: Settings, user_id: str) -> dict[str, Any]:
    s: KalshiSecrets = _decode("kalshi", body, KalshiSecrets)
    api_key = _text("api_key", s.api_key, required=True).strip()
    if any(c.isspace() for c in api_key):
        raise SecretsInputError("api_key must not contain spaces or line breaks (value not shown)")
    out: dict[str, Any] = {"api_key": api_key}
    have_pem = s.private_key is not None and s.private_key.strip() != ""
    have_path = s.private_key_path is not None and s.private_key_path.strip() != ""
    if have_pem and have_path:
        raise SecretsInputError("give exactly one of private_key or private_key_path, not both")
    if not (have_pem or have_path):
        raise SecretsInputError("private_key (PEM text) or private_key_path is required")
    if have_pem:
        assert s.private_key is not None
        pem = _text("private_key", s.private_key, required=True).strip() + "\n"
        _rsa_key(pem.encode(), "private_key")
        out["private_key"] = pem
    else:
        assert s.private_key_path is not None
        raw_path = _text("private_key_path", s.private_key_path, required=True).strip()
        out["private_key"] = _read_key_file(raw_path, key_dir(settings, user_id))
        out["private_key_path"] = raw_path
    if s.use_demo:
        out["use_demo"] = True
    host = _host(s.host, "kalshi", settings)
    if host:
        out["host"] = host
    return out


def _polymarket(body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    s: PolymarketSecrets = _decode("polymarket", body, PolymarketSecrets)
    key = _text("private_key", s.private_key, required=True).strip()
    if not _HEX64.match(key):
        raise SecretsInputError(
            f"private_key must be 0x followed by 64 hex digits (got {len(key)} characters; value not shown)"
        )
    out: dict[str, Any] = {"private_key": key}
    funder = _text("funder", s.funder, required=False).strip()
    if funder:
        if not _HEX40.match(funder):
            raise SecretsInputError("funder must be an address: 0x followed by 40 hex digits (value not shown)")
        out["funder"] = funder
    host = _host(s.host, "polymarket", settings)
    if host:
        out["host"] = host
    return out


def validate(venue: str, body: object, *, settings: Settings, user_id: str) -> dict[str, Any]:
    """The fields to seal for `venue` from a decoded request body, or SecretsInputError (never quoting values).

    `settings` gives MT_HOME (the user's key directory) and the allowed hosts; `user_id` is the caller.
    """
    if not isinstance(body, dict):
        raise SecretsInputError(f"the request body must be a JSON object, got {type(body).__name__}")
    flat = _flatten(body)
    if venue == "kalshi":
        return _kalshi(flat, settings, user_id)
    if venue == "polymarket":
        return _polymarket(flat, settings)
    raise SecretsInputError(f"unknown venue {venue[:40]!r}; secrets can be stored for: {', '.join(VENUES)}")


def stored_field_names(fields: Mapping[str, Any]) -> list[str]:
    """The field names the profile lists for sealed `fields`: what the user configured, sorted.

    A key given as `private_key_path` is sealed as its PEM text too (`private_key`), but listed as
    the path the user gave.
    """
    names = set(fields)
    if "private_key_path" in names:
        names.discard("private_key")
    return sorted(names)


def load_secrets(store: Store, settings: Settings, user_id: str) -> dict[str, dict[str, Any]]:
    """The user's secrets decrypted, venue -> {field: value}; {} when they stored none.

    SecretsError when some are stored but the secrets key (MT_SECRETS_KEY or MT_HOME/secrets.key)
    is missing or is not the key they were stored with. Do not log the result.
    """
    rows = secret_rows(store, user_id)
    if not rows:
        return {}
    box = secret_box(settings, create=False)
    if box is None:
        raise SecretsError(
            f"user {user_id} has stored exchange secrets but this process has no secrets key: set MT_SECRETS_KEY "
            "to the report service's key (or share its MT_HOME/secrets.key)"
        )
    out: dict[str, dict[str, Any]] = {}
    for venue, row in rows.items():
        try:
            out[venue] = box.open(row.ciphertext)
        except SecretBoxError as e:
            raise SecretsError(f"the {venue} secrets of user {user_id}: {e}") from None
    return out
