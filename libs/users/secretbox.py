"""The server's own secrets, and `SecretBox`: users' exchange secrets encrypted at rest with Fernet.

Three secrets, each from its variable or, when that is empty, generated once into a file in
MT_HOME (created 0600 in a 0700 directory; an existing file with wider permissions is tightened
to 0600) and read back from it on every later start, so tokens and stored secrets survive a
restart of the embedded stack:

- MT_SECRETS_KEY / `secrets.key`: the Fernet key. MT_SECRETS_KEY may list several keys
  separated by commas: the first encrypts, all decrypt (`MultiFernet`), so a key can be rotated
  by putting the new one first and re-saving secrets.
- MT_JWT_SECRET / `jwt.secret`: the HS256 key of API tokens (at least 32 characters: RFC 7518
  asks for a key as long as the hash; PyJWT warns below that).
- MT_ADMIN_TOKEN / `admin.token`: the bearer token of the `/admin/*` endpoints (at least 16
  characters).

A file is created atomically (written under a temporary name, then hard-linked into place,
which fails if it exists), so two processes starting at once agree on one value. Separate
containers do not share MT_HOME: there, set the three variables explicitly, the same in every
service that needs them (report for all three, paper for MT_SECRETS_KEY).

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) authenticates as well as encrypts:
a tampered ciphertext, or one made under another key, fails to open instead of decoding to
garbage. The token carries no plaintext, only version, time, IV, ciphertext and MAC.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from libs.config import ConfigError, Settings

SECRETS_KEY_FILE = "secrets.key"
JWT_SECRET_FILE = "jwt.secret"
ADMIN_TOKEN_FILE = "admin.token"
MIN_JWT_SECRET_CHARS = 32
MIN_ADMIN_TOKEN_CHARS = 16
FILE_MODE = 0o600


class SecretBoxError(ValueError):
    """A ciphertext that does not open under the configured key(s); never carries plaintext."""


def read_or_create(path: Path, make: Callable[[], str], what: str) -> str:
    """The stripped contents of `path`, creating it (mode 0600) with `make()` when it does not exist.

    `what` names the secret in errors ("the admin token"). Atomic against a concurrent creator:
    whoever links the file first wins, and the other reads the winner's value.
    """
    existing = _read(path, what)
    if existing is not None:
        return existing
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise ConfigError(f"cannot create {path.parent} for {what}: {e.strerror}") from None
    value = make()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process created it first: use theirs
            return _read(path, what) or value
    except OSError as e:
        raise ConfigError(f"cannot write {what} to {path}: {e.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return value


def _read(path: Path, what: str) -> str | None:
    """The stripped contents of an existing secret file (tightened to 0600), or None when absent."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read {what} from {path}: {e.strerror}") from None
    with contextlib.suppress(OSError):
        if path.stat().st_mode & 0o077:
            path.chmod(FILE_MODE)
    if not text:
        raise ConfigError(f"{path} ({what}) is empty: delete it to have a new one generated")
    return text


def _file(settings: Settings, name: str) -> Path:
    return Path(settings.home).expanduser() / name


# -- the Fernet key -------------------------------------------------------------------------


def _fernet_keys(text: str, source: str) -> list[bytes]:
    """The comma-separated Fernet keys in `text`, each checked (errors name the position, not the key)."""
    keys = [k.strip().encode() for k in text.split(",") if k.strip()]
    if not keys:
        raise ConfigError(f"{source} holds no Fernet key")
    for i, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{source}: key #{i} is not a Fernet key (32 url-safe base64-encoded bytes); make one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
            ) from None
    return keys


def secrets_keys(settings: Settings, *, create: bool = True) -> list[bytes] | None:
    """The Fernet keys (first one encrypts): MT_SECRETS_KEY, else MT_HOME/secrets.key.

    With `create=False` a missing file is None instead of a new key (a reader with nothing to
    decrypt must not invent a key the writer does not know).
    """
    if settings.secrets_key:
        return _fernet_keys(settings.secrets_key, "MT_SECRETS_KEY")
    path = _file(settings, SECRETS_KEY_FILE)
    what = "the secrets key"
    text = read_or_create(path, lambda: Fernet.generate_key().decode(), what) if create else _read(path, what)
    return None if text is None else _fernet_keys(text, str(path))


class SecretBox:
    """Encrypts a JSON object of secret fields into a Fernet token, and opens it again."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("SecretBox needs at least one Fernet key")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def seal(self, fields: Mapping[str, Any]) -> str:
        """The Fernet token (ASCII) of `fields` as JSON."""
        return self._fernet.encrypt(msgspec.json.encode(dict(fields))).decode("ascii")

    def open(self, token: str) -> dict[str, Any]:
        """The fields sealed in `token`; SecretBoxError when it was made under another key or altered."""
        try:
            plain = self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, TypeError):
            raise SecretBoxError(
                "cannot decrypt: the secrets key (MT_SECRETS_KEY or MT_HOME/secrets.key) is not the one "
                "these secrets were stored with, or the stored value was altered"
            ) from None
        value = msgspec.json.decode(plain)
        if not isinstance(value, dict):
            raise SecretBoxError("decrypted secrets are not a JSON object")
        return value


@functools.lru_cache(maxsize=16)
def _box(keys: tuple[bytes, ...]) -> SecretBox:
    return SecretBox(list(keys))


def secret_box(settings: Settings, *, create: bool = True) -> SecretBox | None:
    """The SecretBox of these settings (None only with `create=False` and no key anywhere)."""
    keys = secrets_keys(settings, create=create)
    return None if keys is None else _box(tuple(keys))


# -- the JWT key and the admin token --------------------------------------------------------


def jwt_secret(settings: Settings) -> bytes:
    """The HS256 key: MT_JWT_SECRET, else MT_HOME/jwt.secret (generated: 64 url-safe characters)."""
    if settings.jwt_secret:
        text, source = settings.jwt_secret, "MT_JWT_SECRET"
    else:
        path = _file(settings, JWT_SECRET_FILE)
        text, source = read_or_create(path, lambda: secrets.token_urlsafe(48), "the JWT secret"), str(path)
    if len(text.encode()) < MIN_JWT_SECRET_CHARS:
        raise ConfigError(
            f"{source} is {len(text.encode())} bytes; an HS256 key needs at least {MIN_JWT_SECRET_CHARS} "
            "(make one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    return text.encode()


def admin_token(settings: Settings, *, create: bool = True) -> str | None:
    """The admin bearer token: MT_ADMIN_TOKEN, else MT_HOME/admin.token (None: no file and `create=False`)."""
    if settings.admin_token:
        text, source = settings.admin_token, "MT_ADMIN_TOKEN"
    else:
        path = _file(settings, ADMIN_TOKEN_FILE)
        what = "the admin token"
        found = read_or_create(path, lambda: secrets.token_urlsafe(32), what) if create else _read(path, what)
        if found is None:
            return None
        text, source = found, str(path)
    if len(text) < MIN_ADMIN_TOKEN_CHARS:
        raise ConfigError(f"{source} is {len(text)} characters; the admin token needs at least {MIN_ADMIN_TOKEN_CHARS}")
    return text


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two secrets (as UTF-8 bytes)."""
    return hmac.compare_digest(given.encode(), expected.encode())
