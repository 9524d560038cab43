"""Validation of exchange-secrets bodies: what is stored, and errors that name fields but never quote values.

Also: `private_key_path` only inside `<MT_HOME>/keys/<user_id>/` (symlinks resolved, one generic error
whatever is or is not at the path, the PEM read and stored as text), `host` only on the venue's own
hosts or MT_VENUE_HOSTS_ALLOWED, and the reference's nested `extra` shape.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from libs.config import Settings
from libs.users.secrets import SecretsInputError, allowed_hosts, stored_field_names, validate

MARK = "S3CR3T"
"""Put into every secret value so a test can check no error repeats any of it."""
USER = "u0123456789ab"
OTHER = "ufedcba987654"


def _pem(key: Any, password: bytes | None = None) -> str:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc).decode()


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def keys(settings: Settings, user: str = USER) -> Path:
    """The user's key directory, made as an operator would."""
    d = Path(settings.home).resolve() / "keys" / user
    d.mkdir(parents=True, exist_ok=True)
    return d


def check(venue: str, body: Any, settings: Settings, user: str = USER) -> dict[str, Any]:
    return validate(venue, body, settings=settings, user_id=user)


def test_kalshi_with_pem(rsa_pem: str, settings: Settings) -> None:
    body = {"api_key": f" key-{MARK} ", "private_key": rsa_pem, "use_demo": True, "host": ""}
    stored = check("kalshi", body, settings)
    assert stored == {"api_key": f"key-{MARK}", "private_key": rsa_pem.strip() + "\n", "use_demo": True}
    loaded = serialization.load_pem_private_key(stored["private_key"].encode(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert stored_field_names(stored) == ["api_key", "private_key", "use_demo"]


def test_kalshi_with_path_stores_the_pem_text_and_lists_the_path(rsa_pem: str, settings: Settings) -> None:
    path = keys(settings) / "kalshi.pem"
    path.write_text(rsa_pem)
    body = {"api_key": "k1", "private_key_path": str(path), "host": "https://demo-api.kalshi.co/trade-api/v2"}
    stored = check("kalshi", body, settings)
    assert stored == {
        "api_key": "k1",
        "private_key": rsa_pem.strip() + "\n",  # the paper host never needs the file
        "private_key_path": str(path),
        "host": "https://demo-api.kalshi.co/trade-api/v2",
    }
    assert stored_field_names(stored) == ["api_key", "host", "private_key_path"]
    # a relative path is taken inside the user's directory
    rel = check("kalshi", {"api_key": "k1", "private_key_path": "kalshi.pem"}, settings)
    assert rel["private_key"] == rsa_pem.strip() + "\n" and rel["private_key_path"] == "kalshi.pem"
    path.unlink()  # stored as text: the file is not needed any more
    assert rel["private_key"].startswith("-----BEGIN PRIVATE KEY-----")


def test_key_paths_outside_the_users_directory_get_one_generic_error(
    rsa_pem: str, settings: Settings, tmp_path: Path
) -> None:
    mine = keys(settings)
    theirs = keys(settings, OTHER) / "kalshi.pem"
    theirs.write_text(rsa_pem)  # another user's valid key
    loose = tmp_path / "loose.pem"
    loose.write_text(rsa_pem)  # a valid key outside every user's directory
    (mine / "link.pem").symlink_to(theirs)  # a symlink in my directory to their key
    (mine / "etc").symlink_to("/etc")
    os.mkfifo(mine / "fifo.pem")  # must not block the request
    generic = f"private_key_path must be a file under {mine}/"
    for given in [
        str(theirs),
        f"{mine}/../{OTHER}/kalshi.pem",
        f"../{OTHER}/kalshi.pem",
        str(loose),
        "/etc/passwd",
        "/etc/shadow",
        f"/nonexistent/{MARK}.pem",
        "link.pem",
        "etc/passwd",
        str(mine),
        "fifo.pem",
        f"missing-{MARK}.pem",  # inside, but not there: the same words as everything else
        "nul\x00.pem",
    ]:
        with pytest.raises(SecretsInputError) as err:
            check("kalshi", {"api_key": "k", "private_key_path": given}, settings)
        assert str(err.value) == generic, given
    # the other user may use their own key
    assert check("kalshi", {"api_key": "k", "private_key_path": "kalshi.pem"}, settings, OTHER)["private_key"]


def test_hosts_only_on_the_venues_own_api_or_the_allowlist(rsa_pem: str, settings: Settings) -> None:
    pm = "0x" + "aB" * 32
    ok_kalshi = [
        "https://api.elections.kalshi.com/trade-api/v2",
        "https://demo-api.kalshi.co",
        "https://DEMO-API.kalshi.co:443/trade-api/v2/",
    ]
    for host in ok_kalshi:
        out = check("kalshi", {"api_key": "k", "private_key": rsa_pem, "host": host}, settings)
        assert out["host"] == host.rstrip("/")
    assert check("polymarket", {"private_key": pm, "host": "https://clob.polymarket.com"}, settings)["host"] == (
        "https://clob.polymarket.com"
    )
    bad = [
        ("polymarket", "http://clob.polymarket.com"),  # not https
        ("polymarket", "https://api.elections.kalshi.com"),  # another venue's host
        ("polymarket", "https://clob.polymarket.com.evil.example"),
        ("polymarket", "https://user@clob.polymarket.com"),
        ("polymarket", "https://clob.polymarket.com:8443"),
        ("polymarket", "https://clob.polymarket.com/?x=1"),
        ("polymarket", "http://169.254.169.254/latest/meta-data"),
        ("polymarket", "http://127.0.0.1:8080"),
        ("polymarket", f"ftp://{MARK}"),
        ("polymarket", f"javascript:alert('{MARK}')"),
        ("kalshi", "https://clob.polymarket.com"),
    ]
    for venue, host in bad:
        body: dict[str, Any] = {"private_key": pm, "host": host}
        if venue == "kalshi":
            body = {"api_key": "k", "private_key": rsa_pem, "host": host}
        with pytest.raises(SecretsInputError) as err:
            check(venue, body, settings)
        text = str(err.value)
        assert text.startswith(f"host must be an https URL on the {venue} API host"), (host, text)
        assert host not in text and MARK not in text
    # MT_VENUE_HOSTS_ALLOWED adds base URLs (http too), for both venues; the operator's MT_*_HOST too
    mirror = msgspec.structs.replace(
        settings,
        venue_hosts_allowed=" http://127.0.0.1:8080/ , https://mirror.example",
        polymarket_host="https://pm.local",
    )
    assert check("polymarket", {"private_key": pm, "host": "http://127.0.0.1:8080/clob"}, mirror)["host"] == (
        "http://127.0.0.1:8080/clob"
    )
    assert check("polymarket", {"private_key": pm, "host": "https://pm.local"}, mirror)["host"] == "https://pm.local"
    assert allowed_hosts("polymarket", mirror) == [
        "https://clob.polymarket.com",
        "https://pm.local",
        "http://127.0.0.1:8080",
        "https://mirror.example",
    ]
    with pytest.raises(SecretsInputError, match=r"^host must be"):
        check("polymarket", {"private_key": pm, "host": "http://127.0.0.1:8081"}, mirror)  # another port


def test_the_references_nested_shape(rsa_pem: str, settings: Settings) -> None:
    pm, funder = "0x" + "cd" * 32, "0x" + "12" * 20
    kalshi = check(
        "kalshi", {"api_key": "k1", "extra": {"private_key": rsa_pem, "use_demo": True, "host": ""}}, settings
    )
    assert kalshi == {"api_key": "k1", "private_key": rsa_pem.strip() + "\n", "use_demo": True}
    poly = check(
        "polymarket", {"extra": {"private_key": pm, "funder": funder, "host": "https://clob.polymarket.com"}}, settings
    )
    assert poly == {"private_key": pm, "funder": funder, "host": "https://clob.polymarket.com"}
    path = keys(settings) / "k.pem"
    path.write_text(rsa_pem)
    by_path = check("kalshi", {"api_key": "k1", "extra": {"private_key_path": "k.pem"}}, settings)
    assert stored_field_names(by_path) == ["api_key", "private_key_path"]
    for body, message in [
        ({"api_key": "k1", "extra": MARK}, "extra must be a JSON object"),
        ({"api_key": "k1", "private_key": rsa_pem, "extra": {"private_key": rsa_pem}}, "'private_key' given both"),
        ({"api_key": "k1", "extra": {"private_key": rsa_pem, "colour": "red"}}, "unknown field(s) 'colour'"),
    ]:
        with pytest.raises(SecretsInputError) as err:
            check("kalshi", body, settings)
        assert message in str(err.value) and MARK not in str(err.value) and "BEGIN" not in str(err.value)


def _bad_cases(rsa_pem: str, settings: Settings) -> list[tuple[str, dict[str, Any], str]]:
    ec_pem = _pem(ec.generate_private_key(ec.SECP256R1()))
    locked = _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024), password=MARK.encode())
    not_a_key = keys(settings) / f"notes-{MARK}.txt"
    not_a_key.write_text(f"hello {MARK}\n")
    return [
        ("kalshi", {"private_key": rsa_pem}, "missing required field `api_key`"),
        ("kalshi", {"api_key": "   ", "private_key": rsa_pem}, "api_key is required and must not be empty"),
        ("kalshi", {"api_key": 12, "private_key": rsa_pem}, "Expected `str`, got `int` - at `$.api_key`"),
        ("kalshi", {"api_key": f"a {MARK}", "private_key": rsa_pem}, "api_key must not contain spaces"),
        ("kalshi", {"api_key": MARK}, "private_key (PEM text) or private_key_path is required"),
        ("kalshi", {"api_key": MARK, "private_key": rsa_pem, "private_key_path": "/x"}, "exactly one of private_key"),
        ("kalshi", {"api_key": MARK, "private_key": f"-----BEGIN {MARK}-----"}, "private_key is not a PEM private key"),
        ("kalshi", {"api_key": MARK, "private_key": ec_pem}, "not an RSA private key"),
        ("kalshi", {"api_key": MARK, "private_key": locked}, "private_key is encrypted with a password"),
        ("kalshi", {"api_key": MARK, "private_key_path": f"/no/{MARK}.pem"}, "private_key_path must be a file under"),
        ("kalshi", {"api_key": MARK, "private_key_path": not_a_key.name}, "private_key_path is not a PEM private key"),
        ("kalshi", {"api_key": MARK, "private_key": rsa_pem, "host": f"ftp://{MARK}"}, "host must be an https URL"),
        ("kalshi", {"api_key": MARK, "private_key": rsa_pem, "secret": MARK}, "unknown field(s) 'secret'"),
        # a key that is not field-shaped (a pasted secret) is counted, not named
        (
            "kalshi",
            {"api_key": "k", "private_key": rsa_pem, f"-{MARK}-": 1},
            "unknown field(s) 1 more (names not shown)",
        ),
        ("kalshi", {"api_key": "x" * 20_000, "private_key": rsa_pem}, "api_key is 20000 characters; at most 16384"),
        ("polymarket", {}, "missing required field `private_key`"),
        (
            "polymarket",
            {"private_key": f"0x{MARK}"},
            "private_key must be 0x followed by 64 hex digits (got 8 characters",
        ),
        ("polymarket", {"private_key": "ab" * 32}, "private_key must be 0x followed by 64 hex digits"),
        ("polymarket", {"private_key": "0x" + "a" * 64, "funder": f"0x{MARK}"}, "funder must be an address"),
        ("polymarket", {"private_key": "0x" + "a" * 64, "funder": 7}, "Expected `str`, got `int` - at `$.funder`"),
        ("binance", {"api_key": MARK}, "unknown venue 'binance'"),
    ]


def test_bad_bodies_name_the_field_never_the_value(rsa_pem: str, settings: Settings) -> None:
    for venue, body, message in _bad_cases(rsa_pem, settings):
        with pytest.raises(SecretsInputError) as err:
            check(venue, body, settings)
        text = str(err.value)
        assert message in text, (venue, body.keys(), text)
        assert MARK not in text and "BEGIN" not in text and "x" * 100 not in text, text


def test_body_must_be_an_object(settings: Settings) -> None:
    with pytest.raises(SecretsInputError, match="must be a JSON object, got list"):
        check("kalshi", [MARK], settings)
