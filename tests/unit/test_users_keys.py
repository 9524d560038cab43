"""API keys and user ids: shape, randomness, the stored hash and the errors (which never quote the key)."""

from __future__ import annotations

import hashlib
import re

import pytest

from libs.users.keys import (
    API_KEY_LENGTH,
    ApiKeyError,
    check_api_key,
    hash_api_key,
    is_user_id,
    key_prefix,
    new_api_key,
    new_user_id,
    verify_api_key,
)


def test_new_keys_are_prefixed_urlsafe_and_distinct() -> None:
    keys = {new_api_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"mt_[A-Za-z0-9_-]{43}", key), key
        assert len(key) == API_KEY_LENGTH == 46
        assert check_api_key(key) == key


def test_hash_is_sha256_hex_and_verifies_only_the_same_key() -> None:
    key = new_api_key()
    stored = hash_api_key(key)
    assert stored == hashlib.sha256(key.encode()).hexdigest()
    assert key not in stored
    assert verify_api_key(key, stored)
    other = new_api_key()
    assert not verify_api_key(other, stored)
    assert not verify_api_key(key[:-1] + ("A" if key[-1] != "A" else "B"), stored)


def test_prefix_is_the_key_start_and_short() -> None:
    key = new_api_key()
    assert key_prefix(key) == key[:9] and key_prefix(key).startswith("mt_")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "api_key must be a non-empty string"),
        ("", "api_key must be a non-empty string"),
        (12345, "api_key must be a non-empty string"),
        ("sk_" + "a" * 43, "it must start with 'mt_'"),
        ("mt_" + "a" * 10, "api_key has 13 characters; MarketTwin keys have 46"),
        ("mt_" + "a" * 42 + "!", "characters other than letters, digits"),
    ],
)
def test_malformed_keys_are_named_without_quoting_them(key: object, message: str) -> None:
    with pytest.raises(ApiKeyError) as err:
        check_api_key(key)
    assert message in str(err.value)
    if isinstance(key, str) and key:
        assert key not in str(err.value)


def test_user_ids_are_nats_tokens() -> None:
    ids = {new_user_id() for _ in range(200)}
    assert len(ids) == 200
    for user_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9]+", user_id) and is_user_id(user_id)
    assert not is_user_id("u12345") and not is_user_id("u0123456789a.") and not is_user_id(None)
