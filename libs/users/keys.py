"""API keys and user ids.

An API key is `mt_` followed by `secrets.token_urlsafe(32)`: 43 url-safe base64 characters
carrying 256 random bits. Only its SHA-256 hex digest is stored (and a short prefix to show in
listings). A fast unsalted hash is the right tool here, unlike for passwords: the key is
high-entropy random, so there is no dictionary to try and a brute force of 2^256 is out of
reach however fast each guess is; a slow KDF (bcrypt, argon2) would only add latency to every
token exchange. The digest is also what the key is looked up by, which a salted hash would
not allow.

A user id is `u` + 12 lowercase hex characters (48 random bits): letters and digits only, so
it is a valid NATS subject token (`ui.simulator.<user_id>.trade`) and safe in SQL literals.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

API_KEY_PREFIX = "mt_"
"""Every MarketTwin API key starts with this (it makes a leaked key easy to recognise and scan for)."""
API_KEY_RANDOM_BYTES = 32
"""Random bytes in a key (256 bits), encoded as 43 url-safe base64 characters."""
API_KEY_LENGTH = len(API_KEY_PREFIX) + 43
"""Characters in a key: the prefix and the encoded random bytes."""
DISPLAY_PREFIX_LENGTH = len(API_KEY_PREFIX) + 6
"""Characters of a key kept in clear for listings (`mt_Ab3xYz`): 36 of its 256 random bits."""

_KEY_BODY = re.compile(r"^[A-Za-z0-9_-]+$")
_USER_ID = re.compile(r"^u[0-9a-f]{12}$")


class ApiKeyError(ValueError):
    """A string that cannot be a MarketTwin API key; the message never contains the string."""


def new_api_key() -> str:
    """A fresh API key: `mt_` + 256 random bits, url-safe."""
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_RANDOM_BYTES)


def check_api_key(key: object) -> str:
    """`key` when it is shaped like a MarketTwin key, else ApiKeyError saying what is wrong (not the key)."""
    if not isinstance(key, str) or not key:
        raise ApiKeyError("api_key must be a non-empty string")
    if not key.startswith(API_KEY_PREFIX):
        raise ApiKeyError(f"api_key is not a MarketTwin key: it must start with {API_KEY_PREFIX!r}")
    if len(key) != API_KEY_LENGTH:
        raise ApiKeyError(f"api_key has {len(key)} characters; MarketTwin keys have {API_KEY_LENGTH}")
    if not _KEY_BODY.match(key[len(API_KEY_PREFIX) :]):
        raise ApiKeyError("api_key has characters other than letters, digits, '-' and '_' after 'mt_'")
    return key


def hash_api_key(key: str) -> str:
    """The stored form of a key: SHA-256 of its UTF-8 bytes, lowercase hex (see the module docstring)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """The part of a key shown in listings, so a user can tell which key is which."""
    return key[:DISPLAY_PREFIX_LENGTH]


def verify_api_key(key: str, stored_hash: str) -> bool:
    """True when `key` hashes to `stored_hash` (constant-time comparison)."""
    return hmac.compare_digest(hash_api_key(key), stored_hash)


def new_user_id() -> str:
    """A fresh user id: `u` + 12 hex characters (letters and digits only: a NATS subject token)."""
    return "u" + secrets.token_hex(6)


def is_user_id(value: object) -> bool:
    """True for a string shaped like a user id from `new_user_id`."""
    return isinstance(value, str) and bool(_USER_ID.match(value))
