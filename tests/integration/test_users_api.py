"""Users over real HTTP (the report service's uvicorn in a real Stack on a real chDB): admin API, API key ->
JWT, /profile, bad/expired/forged tokens, isolation between users, secrets encrypted at rest and never
returned or logged, tokens surviving a restart, and `markettwin users` against the running service."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
import structlog
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from libs import log
from libs.bus import free_port
from libs.config import Settings
from libs.users import store as users_store
from libs.users.secrets import load_secrets
from libs.users.tokens import issue
from services.cli import main
from services.runtime import Stack

ADMIN = "admin-token-for-tests-0123456789"
MARK = "S3CR3TMARK"
"""Part of every secret value sent, so logs, answers and stored rows can be searched for it."""


@dataclass
class Api:
    http: httpx.AsyncClient
    stack: Stack
    settings: Settings

    @property
    def home(self) -> Path:
        return Path(self.settings.home)

    async def admin(self, method: str, path: str, body: Any = None, token: str = ADMIN) -> httpx.Response:
        return await self.http.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})

    async def new_user(self, name: str) -> dict[str, Any]:
        r = await self.admin("POST", "/admin/users", {"name": name})
        assert r.status_code == 201, r.text
        return r.json()

    async def token(self, api_key: str) -> str:
        r = await self.http.post("/auth/token", json={"api_key": api_key})
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    async def as_user(self, token: str, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.http.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})

    def select(self, sql: str) -> list[dict[str, Any]]:
        assert self.stack.store is not None
        return self.stack.store.query_arrow(sql).to_pylist()


async def _open(settings: Settings) -> tuple[Stack, httpx.AsyncClient]:
    stack = await Stack.open(settings)
    await stack.start("report")
    return stack, httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=30)


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings,
        http_port=free_port(),
        admin_token=ADMIN,
        paper_min_edge_cents=1.5,
        paper_max_leg_usd=250.0,
        paper_daily_cap_usd=2_000.0,
    )


@pytest.fixture
async def api(api_settings: Settings) -> AsyncIterator[Api]:
    stack, http = await _open(api_settings)
    try:
        yield Api(http, stack, api_settings)
    finally:
        await http.aclose()
        await stack.close()


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


# -- admin, keys and tokens -----------------------------------------------------------------


async def test_admin_creates_user_whose_key_buys_a_token_for_the_profile(api: Api) -> None:
    created = await api.new_user("alice")
    user_id, key = created["user_id"], created["api_key"]
    assert set(created) == {"user_id", "name", "api_key", "api_key_prefix"} and created["name"] == "alice"
    assert key.startswith("mt_") and created["api_key_prefix"] == key[:9]

    r = await api.http.post("/auth/token", json={"api_key": key})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["user_id"] == user_id
    assert body["expires_in"] == round(api.settings.jwt_ttl_s)
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user_id and claims["exp"] - claims["iat"] == round(api.settings.jwt_ttl_s)
    assert abs(claims["iat"] - time.time()) < 120

    by_header = await api.http.post("/auth/token", headers={"X-API-Key": key})
    assert by_header.status_code == 200 and by_header.json()["user_id"] == user_id

    r = await api.as_user(body["access_token"], "GET", "/profile")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "user_id": user_id,
        "name": "alice",
        "min_net_edge_cents": 1.5,
        "max_leg_usd": 250.0,
        "daily_cap_usd": 2_000.0,
        "exchange_keys": {},
    }
    # stored: only the hash and the prefix of the key
    rows = api.select("SELECT * FROM {db}.users FINAL")
    assert len(rows) == 1 and rows[0]["user_id"] == user_id
    assert rows[0]["api_key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(rows, default=str)


async def test_admin_list_never_shows_keys(api: Api) -> None:
    a, b = await api.new_user("alice"), await api.new_user("bob")
    r = await api.admin("GET", "/admin/users")
    assert r.status_code == 200
    listed = r.json()["users"]
    assert [u["user_id"] for u in listed] == [a["user_id"], b["user_id"]]
    assert [u["name"] for u in listed] == ["alice", "bob"]
    assert set(listed[0]) == {"user_id", "name", "api_key_prefix", "created_at", "disabled"}
    assert a["api_key"] not in r.text and b["api_key"] not in r.text and "hash" not in r.text


@pytest.mark.parametrize(
    ("token", "status", "detail"),
    [
        (None, 401, "missing Authorization header"),
        ("Basic abc", 401, "malformed Authorization header"),
        ("not-the-admin-token-at-all", 401, "admin token rejected"),
    ],
)
async def test_admin_needs_the_admin_token(api: Api, token: str | None, status: int, detail: str) -> None:
    headers = {} if token is None else {"Authorization": token if " " in token else f"Bearer {token}"}
    r = await api.http.post("/admin/users", json={"name": "mallory"}, headers=headers)
    assert r.status_code == status and detail in r.json()["detail"]
    assert api.select("SELECT count() AS n FROM {db}.users")[0]["n"] == 0


async def test_admin_rejects_bad_and_duplicate_names(api: Api) -> None:
    first = await api.new_user("Alice")
    r = await api.admin("POST", "/admin/users", {"name": " alice "})
    assert r.status_code == 409 and r.json()["detail"] == f"name 'alice' is taken (by user {first['user_id']})"
    for body, detail in [
        ({"name": ""}, "name must be 1-64 characters, got 0"),
        ({"name": "x" * 65}, "name must be 1-64 characters, got 65"),
        ({"name": 7}, "name must be a string, got int"),
        ({}, "name is required"),
        ({"name": "a", "admin": True}, "unknown field(s) 'admin'"),
        ({"name": "tab\there"}, "name must not contain control characters"),
    ]:
        r = await api.admin("POST", "/admin/users", body)
        assert r.status_code == 422 and detail in r.json()["detail"], (body, r.text)
    r = await api.admin("POST", "/admin/users/u000000000000/api-key")
    assert r.status_code == 404 and "unknown user 'u000000000000'" in r.json()["detail"]


async def test_bad_keys_are_refused_without_echo(api: Api) -> None:
    created = await api.new_user("alice")
    unknown = "mt_" + "Z" * 43
    cases = [
        ({"api_key": unknown}, "api_key is not valid: it was never issued, or it was replaced by a rotation"),
        ({"api_key": "sk_" + MARK}, "api_key is not a MarketTwin key: it must start with 'mt_'"),
        ({"api_key": "mt_" + MARK}, "api_key has 13 characters; MarketTwin keys have 46"),
        ({}, "missing API key"),
        ({"api_key": 5}, "api_key must be a non-empty string"),
    ]
    for body, detail in cases:
        r = await api.http.post("/auth/token", json=body)
        assert r.status_code == 401 and detail in r.json()["detail"], r.text
        assert MARK not in r.text and unknown not in r.text
    r = await api.http.post("/auth/token", content=b'{"api_key": "mt_' + MARK.encode() + b'"')
    assert r.status_code == 400 and MARK not in r.text
    assert created["api_key"] not in r.text


async def test_bad_tokens_get_401_naming_the_problem(api: Api) -> None:
    created = await api.new_user("alice")
    user_id, key = created["user_id"], created["api_key"]
    secret = (
        api.settings.jwt_secret.encode() if api.settings.jwt_secret else (api.home / "jwt.secret").read_bytes().strip()
    )
    key_hash = users_store.hash_api_key(key)
    expired, _ = issue(secret, user_id, key_hash, ttl_s=60, now=time.time() - 3_600)
    forged, _ = issue(b"f" * 48, user_id, key_hash, ttl_s=600)
    ghost, _ = issue(secret, "u0123456789ab", key_hash, ttl_s=600)
    good, _ = issue(secret, user_id, key_hash, ttl_s=600)
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "missing Authorization header: send `Authorization: Bearer <token>`"),
        ({"Authorization": "Basic abc"}, "malformed Authorization header: expected `Bearer <token>`"),
        ({"Authorization": "Bearer"}, "malformed Authorization header"),
        ({"Authorization": "Bearer not.a.jwt"}, "token is not a valid JWT"),
        ({"Authorization": f"Bearer {expired}"}, "token expired at "),
        ({"Authorization": f"Bearer {forged}"}, "token signature is not valid"),
        ({"Authorization": f"Bearer {ghost}"}, "token is for user u0123456789ab, who does not exist"),
    ]
    for headers, detail in cases:
        r = await api.http.get("/profile", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert detail in r.json()["detail"], (headers, r.text)
    r = await api.http.get("/profile", headers={"Authorization": f"Bearer {expired}"})
    assert r.json()["detail"].endswith("get a new one from POST /auth/token")
    assert (await api.as_user(good, "GET", "/profile")).status_code == 200  # the test's own signing is right


async def test_rotation_ends_the_old_key_and_its_tokens(api: Api) -> None:
    created = await api.new_user("alice")
    old_key = created["api_key"]
    old_token = await api.token(old_key)
    r = await api.admin("POST", f"/admin/users/{created['user_id']}/api-key")
    assert r.status_code == 200
    new_key = r.json()["api_key"]
    assert new_key != old_key and r.json()["user_id"] == created["user_id"]
    r = await api.http.post("/auth/token", json={"api_key": old_key})
    assert r.status_code == 401 and "replaced by a rotation" in r.json()["detail"]
    r = await api.as_user(old_token, "GET", "/profile")
    assert r.status_code == 401 and "issued for an API key that has since been rotated" in r.json()["detail"]
    new_token = await api.token(new_key)
    assert (await api.as_user(new_token, "GET", "/profile")).json()["user_id"] == created["user_id"]


async def test_disabled_user_is_refused_until_enabled(api: Api) -> None:
    created = await api.new_user("alice")
    token = await api.token(created["api_key"])
    r = await api.admin("PATCH", f"/admin/users/{created['user_id']}", {"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    r = await api.as_user(token, "GET", "/profile")
    assert r.status_code == 401 and r.json()["detail"] == f"user {created['user_id']} is disabled"
    r = await api.http.post("/auth/token", json={"api_key": created["api_key"]})
    assert r.status_code == 401 and "is disabled" in r.json()["detail"]
    r = await api.admin("PATCH", f"/admin/users/{created['user_id']}", {"disabled": "yes"})
    assert r.status_code == 422
    await api.admin("PATCH", f"/admin/users/{created['user_id']}", {"disabled": False})
    assert (await api.as_user(token, "GET", "/profile")).status_code == 200


# -- profiles -------------------------------------------------------------------------------


async def test_profile_update_stores_micros_and_keeps_defaults_for_the_rest(api: Api) -> None:
    created = await api.new_user("alice")
    token = await api.token(created["api_key"])
    r = await api.as_user(token, "PUT", "/profile", {"min_net_edge_cents": 2.25})
    assert r.status_code == 200, r.text
    assert (r.json()["min_net_edge_cents"], r.json()["max_leg_usd"], r.json()["daily_cap_usd"]) == (2.25, 250.0, 2000.0)
    rows = api.select("SELECT * FROM {db}.user_profiles FINAL")
    assert len(rows) == 1
    assert (rows[0]["min_net_edge_micros"], rows[0]["max_leg_micros"], rows[0]["daily_cap_micros"]) == (22_500, -1, -1)

    r = await api.as_user(
        token, "PUT", "/profile", {"max_leg_usd": 100, "daily_cap_usd": 1234.56, "min_net_edge_cents": None}
    )
    assert r.status_code == 200
    got = r.json()
    assert (got["min_net_edge_cents"], got["max_leg_usd"], got["daily_cap_usd"]) == (2.25, 100.0, 1234.56)
    rows = api.select("SELECT * FROM {db}.user_profiles FINAL")
    assert (rows[0]["min_net_edge_micros"], rows[0]["max_leg_micros"], rows[0]["daily_cap_micros"]) == (
        22_500,
        100_000_000,
        1_234_560_000,
    )
    assert (await api.as_user(token, "GET", "/profile")).json() == got
    # the helper H3's start endpoint uses agrees with the HTTP answer
    assert api.stack.store is not None
    assert msgspec.to_builtins(users_store.profile(api.stack.store, api.settings, created["user_id"])) == got


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"min_net_edge_cents": -1}, "min_net_edge_cents must be >= 0, got -1.0"),
        ({"max_leg_usd": 0}, "max_leg_usd must be > 0, got 0.0"),
        ({"daily_cap_usd": -5.5}, "daily_cap_usd must be > 0, got -5.5"),
        ({"max_leg_usd": "lots"}, 'max_leg_usd must be a number, got "lots"'),
        ({"max_leg_usd": True}, "max_leg_usd must be a number, got true"),
        ({"min_net_edge_cents": 150}, "min_net_edge_cents must be at most 100, got 150.0"),
        ({"daily_cap_usd": 0.0000001}, "daily_cap_usd must be at least 1e-06, got 1e-07"),
        ({"max_leg": 5}, "unknown field(s) 'max_leg'; allowed: min_net_edge_cents, max_leg_usd, daily_cap_usd"),
    ],
)
async def test_bad_profile_values_are_named(api: Api, body: dict[str, Any], detail: str) -> None:
    created = await api.new_user("alice")
    token = await api.token(created["api_key"])
    r = await api.as_user(token, "PUT", "/profile", body)
    assert r.status_code == 422 and r.json()["detail"] == detail, r.text
    assert api.select("SELECT count() AS n FROM {db}.user_profiles")[0]["n"] == 0


async def test_out_of_range_profile_value_is_refused(api: Api) -> None:
    created = await api.new_user("alice")
    token = await api.token(created["api_key"])
    headers = {"Authorization": f"Bearer {token}"}
    r = await api.http.put("/profile", content=b'{"max_leg_usd": 1e999}', headers=headers)
    assert r.status_code == 422  # JSON has no infinity; the field is named
    assert r.json()["detail"] == "invalid request body: Number out of range - at `$.max_leg_usd`"
    # an integer too large for a float (float() raises OverflowError: it was a 500) is a 422 naming the field
    for field, limit in (("max_leg_usd", "1e+09"), ("min_net_edge_cents", "100")):
        r = await api.http.put("/profile", content=b'{"%s": 1%s}' % (field.encode(), b"0" * 400), headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == f"{field} must be a number from 0 to {limit}, got an integer beyond 1e308"
    r = await api.http.put("/profile", content=b'{"daily_cap_usd": -1' + b"0" * 400 + b"}", headers=headers)
    assert r.status_code == 422 and r.json()["detail"].startswith("daily_cap_usd must be a number from 0 to")
    assert api.select("SELECT count() AS n FROM {db}.user_profiles")[0]["n"] == 0


async def test_each_user_sees_only_their_own_profile_and_secrets(api: Api, rsa_pem: str) -> None:
    a, b = await api.new_user("alice"), await api.new_user("bob")
    ta, tb = await api.token(a["api_key"]), await api.token(b["api_key"])
    assert (await api.as_user(ta, "PUT", "/profile", {"max_leg_usd": 10})).status_code == 200
    r = await api.as_user(ta, "PUT", "/profile/secrets/kalshi", {"api_key": f"a-{MARK}", "private_key": rsa_pem})
    assert r.status_code == 200
    pa, pb = (await api.as_user(ta, "GET", "/profile")).json(), (await api.as_user(tb, "GET", "/profile")).json()
    assert (pa["user_id"], pa["name"], pa["max_leg_usd"], pa["exchange_keys"]) == (
        a["user_id"],
        "alice",
        10.0,
        {"kalshi": ["api_key", "private_key"]},
    )
    assert (pb["user_id"], pb["name"], pb["max_leg_usd"], pb["exchange_keys"]) == (b["user_id"], "bob", 250.0, {})
    # B deleting "their" kalshi secrets does not touch A's
    r = await api.as_user(tb, "DELETE", "/profile/secrets/kalshi")
    assert r.status_code == 404 and r.json()["detail"] == f"no kalshi secrets are stored for user {b['user_id']}"
    assert api.stack.store is not None
    assert users_store.venues_with_keys(api.stack.store, a["user_id"]) == ["kalshi"]
    assert users_store.venues_with_keys(api.stack.store, b["user_id"]) == []


# -- exchange secrets -----------------------------------------------------------------------


async def test_secrets_are_encrypted_at_rest_and_never_returned(api: Api, rsa_pem: str) -> None:
    created = await api.new_user("alice")
    user_id = created["user_id"]
    token = await api.token(created["api_key"])
    kalshi = {"api_key": f"kalshi-{MARK}", "private_key": rsa_pem, "use_demo": True}
    poly_key = "0x" + "5e" * 32
    poly = {"private_key": poly_key, "funder": "0x" + "ab" * 20}

    r = await api.as_user(token, "PUT", "/profile/secrets/kalshi", kalshi)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("venue", "configured", "fields")} == {
        "venue": "kalshi",
        "configured": True,
        "fields": ["api_key", "private_key", "use_demo"],
    }
    assert body["updated_at"].endswith("Z")
    r2 = await api.as_user(token, "PUT", "/profile/secrets/polymarket", poly)
    assert r2.status_code == 200 and r2.json()["fields"] == ["funder", "private_key"]
    pem_line = rsa_pem.splitlines()[1]
    for response in (
        r,
        r2,
        await api.as_user(token, "GET", "/profile"),
        await api.as_user(token, "GET", "/profile/secrets"),
    ):
        assert MARK not in response.text and pem_line not in response.text and poly_key[2:] not in response.text

    listed = (await api.as_user(token, "GET", "/profile/secrets")).json()["secrets"]
    assert [(s["venue"], s["configured"], s["fields"]) for s in listed] == [
        ("kalshi", True, ["api_key", "private_key", "use_demo"]),
        ("polymarket", True, ["funder", "private_key"]),
    ]

    rows = api.select("SELECT venue, fields, ciphertext, deleted FROM {db}.user_secrets FINAL ORDER BY venue")
    assert [(x["venue"], list(x["fields"]), x["deleted"]) for x in rows] == [
        ("kalshi", ["api_key", "private_key", "use_demo"], 0),
        ("polymarket", ["funder", "private_key"], 0),
    ]
    dump = json.dumps(api.select("SELECT * FROM {db}.user_secrets"), default=str)
    assert MARK not in dump and pem_line not in dump and poly_key[2:] not in dump and "5e5e5e" not in dump
    # decrypting the stored ciphertext independently (the generated key file) gives back exactly what was sent
    fernet = Fernet((api.home / "secrets.key").read_text().strip().encode())
    opened = {x["venue"]: json.loads(fernet.decrypt(x["ciphertext"].encode())) for x in rows}
    assert opened == {
        "kalshi": {"api_key": f"kalshi-{MARK}", "private_key": rsa_pem.strip() + "\n", "use_demo": True},
        "polymarket": poly,
    }
    assert api.stack.store is not None
    assert load_secrets(api.stack.store, api.settings, user_id) == opened

    r = await api.as_user(token, "DELETE", "/profile/secrets/kalshi")
    assert r.status_code == 200 and r.json() == {
        "venue": "kalshi",
        "configured": False,
        "fields": [],
        "updated_at": None,
    }
    assert (await api.as_user(token, "GET", "/profile")).json()["exchange_keys"] == {
        "polymarket": ["funder", "private_key"]
    }
    assert list(load_secrets(api.stack.store, api.settings, user_id)) == ["polymarket"]
    assert (await api.as_user(token, "DELETE", "/profile/secrets/kalshi")).status_code == 404
    r = await api.as_user(token, "PUT", "/profile/secrets/binance", {"api_key": "x"})
    assert r.status_code == 404 and "unknown venue 'binance'; secrets can be stored for: kalshi, polymarket" in r.text


async def test_bad_secrets_get_422_naming_the_field_not_the_value(api: Api, rsa_pem: str) -> None:
    created = await api.new_user("alice")
    token = await api.token(created["api_key"])
    cases = [
        ("kalshi", {"api_key": MARK}, "private_key (PEM text) or private_key_path is required"),
        ("kalshi", {"api_key": MARK, "private_key": f"-----BEGIN {MARK}"}, "private_key is not a PEM private key"),
        ("kalshi", {"api_key": MARK, "private_key": rsa_pem, "private_key_path": f"/{MARK}"}, "not both"),
        (
            "kalshi",
            {"api_key": MARK, "private_key_path": f"/nowhere/{MARK}.pem"},
            "private_key_path must be a file under",
        ),
        ("polymarket", {"private_key": f"0x{MARK}"}, "private_key must be 0x followed by 64 hex digits"),
        ("polymarket", {"private_key": "0x" + "1" * 64, "funder": MARK}, "funder must be an address"),
    ]
    for venue, body, detail in cases:
        r = await api.as_user(token, "PUT", f"/profile/secrets/{venue}", body)
        assert r.status_code == 422 and detail in r.json()["detail"], (venue, r.text)
        assert MARK not in r.text and "BEGIN" not in r.text
    r = await api.http.put(
        "/profile/secrets/kalshi",
        content=b'{"api_key": "' + MARK.encode() + b'", ',
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 400 and r.json()["detail"] == "the request body is not valid JSON" and MARK not in r.text
    assert api.select("SELECT count() AS n FROM {db}.user_secrets")[0]["n"] == 0


@pytest.fixture
def json_logs() -> Iterator[None]:
    """Every structlog line as JSON at debug level, for the stack started after it; restored afterwards."""
    saved = structlog.get_config()
    log.setup("json", "debug")
    try:
        yield
    finally:
        structlog.configure(**saved)


async def test_secrets_never_reach_a_log(
    json_logs: None,
    api_settings: Settings,
    rsa_pem: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    api_settings = msgspec.structs.replace(api_settings, venue_hosts_allowed=f"https://{MARK.lower()}.example")
    stack, http = await _open(api_settings)
    try:
        api = Api(http, stack, api_settings)
        created = await api.new_user("alice")
        token = await api.token(created["api_key"])
        poly_key = "0x" + "7c" * 32
        good = [
            (
                "kalshi",
                {"api_key": f"kalshi-{MARK}", "private_key": rsa_pem, "host": f"https://{MARK.lower()}.example"},
            ),
            ("polymarket", {"private_key": poly_key}),
        ]
        bad = [
            ("kalshi", {"api_key": MARK, "private_key": f"-----BEGIN RSA PRIVATE KEY-----\n{MARK}\n"}),
            ("kalshi", {"api_key": MARK, "private_key_path": f"/tmp/{MARK}.pem"}),
            ("kalshi", {"api_key": MARK, "private_key": rsa_pem, "extra": MARK}),
            ("polymarket", {"private_key": f"0x{MARK}", "funder": MARK}),
        ]
        for venue, body in good:
            assert (await api.as_user(token, "PUT", f"/profile/secrets/{venue}", body)).status_code == 200
        for venue, body in bad:
            assert (await api.as_user(token, "PUT", f"/profile/secrets/{venue}", body)).status_code == 422
        r = await http.put(
            "/profile/secrets/kalshi",
            content=b'{"api_key": "' + MARK.encode() + b'"',
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 400
        assert (await api.as_user(token, "GET", "/profile")).status_code == 200
        # an unexpected failure after validation (the store is gone) is logged by type and reference only
        assert stack.store is not None
        stack.store.close()
        r = await api.as_user(token, "PUT", "/profile/secrets/polymarket", {"private_key": poly_key})
        assert r.status_code == 500 and "internal error, see the report service log (ref " in r.json()["detail"]
    finally:
        await http.aclose()
        await stack.close()
    out, err = capfd.readouterr()
    text = out + err + caplog.text
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    stored = [x for x in lines if x.get("event") == "exchange secrets stored"]
    assert [(x["venue"], x["fields"]) for x in stored] == [
        ("kalshi", ["api_key", "host", "private_key"]),
        ("polymarket", ["private_key"]),
    ]  # the capture sees the service's log lines ...
    assert any(x.get("event") == "token issued" for x in lines)
    failed = [x for x in lines if x.get("event") == "exchange secrets request failed"]
    assert len(failed) == 1 and failed[0]["error"] == "StoreError" and failed[0]["ref"] in r.json()["detail"]
    for needle in (MARK, MARK.lower(), rsa_pem.splitlines()[1], poly_key, "7c7c7c7c", created["api_key"]):
        assert needle not in text, needle  # ... and none of them holds a secret, an API key or a PEM line


# -- restart and the CLI --------------------------------------------------------------------


async def test_tokens_and_secrets_survive_a_restart_with_generated_keys(settings: Settings, rsa_pem: str) -> None:
    s = msgspec.structs.replace(settings, http_port=free_port())  # no MT_ADMIN_TOKEN / MT_JWT_SECRET / MT_SECRETS_KEY
    stack, http = await _open(s)
    try:
        r = await http.get("/admin/users")
        assert r.status_code == 401  # ... and the first admin request wrote the token file
        admin = (Path(s.home) / "admin.token").read_text().strip()
        api = Api(http, stack, s)
        r = await api.admin("POST", "/admin/users", {"name": "alice"}, token=admin)
        assert r.status_code == 201
        created = r.json()
        token = await api.token(created["api_key"])
        r = await api.as_user(token, "PUT", "/profile/secrets/kalshi", {"api_key": MARK, "private_key": rsa_pem})
        assert r.status_code == 200
    finally:
        await http.aclose()
        await stack.close()
    stack, http = await _open(s)
    try:
        r = await http.get("/profile", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["exchange_keys"] == {"kalshi": ["api_key", "private_key"]}
        assert stack.store is not None
        assert load_secrets(stack.store, s, created["user_id"])["kalshi"]["api_key"] == MARK
    finally:
        await http.aclose()
        await stack.close()


async def test_cli_users_add_list_rotate(
    json_logs: None,  # the service logs to stderr, so stdout holds only what the CLI prints
    api_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = msgspec.structs.replace(api_settings, admin_token="")  # the CLI finds the generated token file
    stack, http = await _open(s)
    monkeypatch.setenv("MT_HOME", str(s.home))
    monkeypatch.setenv("MT_API_URL", f"http://127.0.0.1:{s.http_port}")
    monkeypatch.delenv("MT_ADMIN_TOKEN", raising=False)

    async def cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["users", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    try:
        assert (Path(s.home) / "admin.token").exists()  # generated when the service started
        code, out, _ = await cli("add", "carol")
        assert code == 0, out
        key = out.split("api key (shown only now; keep it safe): ")[1].strip()
        user_id = out.split()[2]
        api = Api(http, stack, s)
        token = await api.token(key)
        assert (await api.as_user(token, "GET", "/profile")).json()["name"] == "carol"

        code, out, _ = await cli("add", "dave", "--json")
        dave = json.loads(out)
        assert code == 0 and dave["name"] == "dave" and dave["api_key"].startswith("mt_")

        code, out, _ = await cli("list")
        assert code == 0 and out.splitlines()[0] == "2 users"
        assert user_id in out and "carol" in out and dave["user_id"] in out and key not in out

        code, out, err = await cli("add", "CAROL")
        assert code == 2 and f"name 'CAROL' is taken (by user {user_id})" in err

        code, out, _ = await cli("rotate", user_id, "--json")
        assert code == 0 and json.loads(out)["api_key"] != key
        assert (await http.post("/auth/token", json={"api_key": key})).status_code == 401

        code, out, err = await cli("disable", dave["user_id"])
        assert code == 0 and out.strip() == f"user {dave['user_id']} (dave) disabled"
        # no paper service in this stack: the user is disabled all the same, and the CLI says what it could not do
        assert "warning: the user's active runs could not be stopped: paper service not answering" in err

        code, _, err = await cli("rotate", "u000000000000")
        assert code == 2 and "unknown user 'u000000000000'" in err

        code, _, err = await cli("rotate", "../users")
        assert code == 2 and "USER_ID '../users' is not a user id" in err

        monkeypatch.setenv("MT_ADMIN_TOKEN", "wrong-admin-token-0000")
        code, _, err = await cli("list")
        assert code == 2 and "refused the admin token" in err
    finally:
        await http.aclose()
        await stack.close()


async def test_cli_says_when_the_api_is_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MT_HOME", str(tmp_path))
    monkeypatch.setenv("MT_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MT_ADMIN_TOKEN", "some-admin-token-0123")
    assert main(["users", "list"]) == 1
    assert "is `markettwin up` running?" in capsys.readouterr().err


# -- bodies, crashes and the log ----------------------------------------------------------------


def _log_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


async def test_non_utf8_bodies_are_400_and_never_logged(
    json_logs: None, api_settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """msgspec raises UnicodeDecodeError (not DecodeError) on bytes that are not UTF-8: that was a 500, and the
    crash log line quoted the bytes — an API key, an exchange secret."""
    stack, http = await _open(api_settings)
    try:
        api = Api(http, stack, api_settings)
        created = await api.new_user("alice")
        token = await api.token(created["api_key"])
        user = {"Authorization": f"Bearer {token}"}
        admin = {"Authorization": f"Bearer {ADMIN}"}
        secret = MARK.encode()
        cases = [
            ("POST", "/auth/token", b'{"api_key": "' + created["api_key"].encode() + b'\xff"}', {}),
            ("POST", "/admin/users", b'{"name": "' + secret + b'\xfe"}', admin),
            ("PATCH", f"/admin/users/{created['user_id']}", b'{"disabled": "\xff' + secret + b'"}', admin),
            ("PUT", "/profile", b'{"x' + secret + b'\xff": 1}', user),
            ("PUT", "/profile/secrets/kalshi", b'{"api_key": "' + secret + b'\xff"}', user),
            ("PUT", "/profile/secrets/polymarket", b"\xff\xfe" + secret, user),
        ]
        for method, path, raw, headers in cases:
            r = await http.request(method, path, content=raw, headers=headers)
            assert r.status_code == 400, (path, r.text)
            assert r.json()["detail"].startswith("the request body is not valid JSON"), (path, r.text)
            assert MARK not in r.text and "\\x" not in r.text
        r = await http.put("/profile/secrets/kalshi", content=b'{"api_key": "\xff"}', headers=user)
        assert r.json() == {"detail": "the request body is not valid JSON"}  # secrets: not even a position
        r = await http.put("/profile", content=b'{"max_leg_usd": "\xff"}', headers=user)
        assert r.json() == {"detail": "the request body is not valid JSON: it is not UTF-8 text"}
        assert (await http.get("/profile", headers=user)).status_code == 200  # the same client, still served
    finally:
        await http.aclose()
        await stack.close()
    _, err = capfd.readouterr()
    assert not [x for x in _log_lines(err) if x.get("level") == "error"]  # nothing failed: no crash line
    for needle in (MARK, created["api_key"], "UnicodeDecodeError", "Traceback", "Exception in ASGI application"):
        assert needle not in err, needle


async def test_an_unexpected_error_is_a_500_that_keeps_the_connection_and_logs_safely(
    json_logs: None, api_settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """Starlette's ServerErrorMiddleware used to re-raise after the 500: uvicorn then printed a plain-text
    traceback into the log and closed the keep-alive connection."""
    stack, http = await _open(api_settings)
    try:
        api = Api(http, stack, api_settings)
        created = await api.new_user("alice")
        token = await api.token(created["api_key"])
        user = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/profile", headers=user)).status_code == 200  # user row cached for the token
        first = await http.get("/health")
        conn = first.extensions["network_stream"].get_extra_info("client_addr")
        assert stack.store is not None
        stack.store.close()  # every query now raises StoreError inside the handlers
        refs = {}
        for method, path, body in (("GET", "/simulator/runs", None), ("PUT", "/profile", {"max_leg_usd": 5})):
            r = await http.request(method, path, json=body, headers=user)
            assert r.status_code == 500, r.text
            m = re.fullmatch(r"internal error, see the report service log \(ref (\w+)\)", r.json()["detail"])
            assert m, r.text
            refs[path] = m.group(1)
            after = await http.get("/health")  # the same client's next request: answered on the same connection
            assert after.status_code == 200 and after.text == "ok\n"
            assert after.extensions["network_stream"].get_extra_info("client_addr") == conn
    finally:
        await http.aclose()
        await stack.close()
    _, err = capfd.readouterr()
    plain = "\n".join(line for line in err.splitlines() if not line.startswith("{"))
    assert "Exception in ASGI application" not in plain and "Traceback" not in plain  # uvicorn printed nothing
    failed = {x["path"]: x for x in _log_lines(err) if x.get("event") == "http request failed"}
    assert set(failed) == {"/simulator/runs", "/profile"}
    loud, quiet = failed["/simulator/runs"], failed["/profile"]
    assert loud["ref"] == refs["/simulator/runs"] and loud["error"].startswith("StoreError: ")
    assert "Traceback (most recent call last)" in loud["traceback"] and "StoreError" in loud["traceback"]
    # a request with a body, on a route that may carry secrets: type and reference only
    assert quiet == {
        "service": "report",
        "ref": refs["/profile"],
        "method": "PUT",
        "path": "/profile",
        "error": "StoreError",
        "event": "http request failed",
        "level": "error",
        "timestamp": quiet["timestamp"],
    }


async def test_bodies_over_64_kib_are_413_even_when_chunked(api: Api) -> None:
    created = await api.new_user("alice")
    token = await api.token(created["api_key"])
    user = {"Authorization": f"Bearer {token}"}
    big = b'{"api_key": "' + b"A" * 70_000 + b'"}'

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for i in range(0, len(big), 4_096):
            yield big[i : i + 4_096]

    for method, path, headers in (
        ("POST", "/auth/token", {}),
        ("PUT", "/profile/secrets/kalshi", user),
        ("PUT", "/profile", user),
        ("POST", "/admin/users", {"Authorization": f"Bearer {ADMIN}"}),
    ):
        r = await api.http.request(method, path, content=chunked(), headers=headers)
        assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
        assert r.status_code == 413, (path, r.text)
        assert r.json() == {"detail": "the request body is larger than 65536 bytes; at most 65536 are accepted"}
        r = await api.http.request(method, path, content=big, headers=headers)  # with a Content-Length
        assert r.status_code == 413, (path, r.text)
    # just under the cap is read (and refused for what it is)
    r = await api.http.post("/auth/token", content=b'{"api_key": "' + b"A" * 65_000 + b'"}')
    assert r.status_code == 401 and "api_key is not a MarketTwin key" in r.json()["detail"]
    assert api.select("SELECT count() AS n FROM {db}.user_secrets")[0]["n"] == 0


# -- key files, hosts, the nested shape -----------------------------------------------------------


async def test_private_key_path_only_under_the_users_key_directory(api: Api, rsa_pem: str, tmp_path: Path) -> None:
    a, b = await api.new_user("alice"), await api.new_user("bob")
    ta, tb = await api.token(a["api_key"]), await api.token(b["api_key"])
    home = api.home.resolve()
    a_dir, b_dir = home / "keys" / a["user_id"], home / "keys" / b["user_id"]
    a_dir.mkdir(parents=True)
    b_dir.mkdir(parents=True)
    (a_dir / "kalshi.pem").write_text(rsa_pem)
    (b_dir / "kalshi.pem").write_text(rsa_pem)
    outside = tmp_path / "server.pem"
    outside.write_text(rsa_pem)
    (b_dir / "borrowed.pem").symlink_to(a_dir / "kalshi.pem")
    generic = f"private_key_path must be a file under {b_dir}/"
    for given in [
        str(a_dir / "kalshi.pem"),  # another user's key file
        f"../{a['user_id']}/kalshi.pem",
        "borrowed.pem",  # a symlink out of the directory
        str(outside),
        "/etc/passwd",
        "/etc/shadow",
        f"/nonexistent/{MARK}.pem",
        f"missing-{MARK}.pem",
    ]:
        r = await api.as_user(tb, "PUT", "/profile/secrets/kalshi", {"api_key": "kb", "private_key_path": given})
        assert r.status_code == 422 and r.json() == {"detail": generic}, (given, r.text)  # the same words every time
    assert api.select("SELECT count() AS n FROM {db}.user_secrets")[0]["n"] == 0

    r = await api.as_user(tb, "PUT", "/profile/secrets/kalshi", {"api_key": "kb", "private_key_path": "kalshi.pem"})
    assert r.status_code == 200 and r.json()["fields"] == ["api_key", "private_key_path"], r.text
    (b_dir / "kalshi.pem").unlink()  # read at PUT time: the paper service never needs the file
    assert api.stack.store is not None
    loaded = load_secrets(api.stack.store, api.settings, b["user_id"])["kalshi"]
    assert loaded == {"api_key": "kb", "private_key": rsa_pem.strip() + "\n", "private_key_path": "kalshi.pem"}
    assert (await api.as_user(tb, "GET", "/profile")).json()["exchange_keys"] == {
        "kalshi": ["api_key", "private_key_path"]
    }
    ta_ok = await api.as_user(ta, "PUT", "/profile/secrets/kalshi", {"api_key": "ka", "private_key_path": "kalshi.pem"})
    assert ta_ok.status_code == 200


async def test_hosts_outside_the_venue_allowlist_are_refused(api: Api, rsa_pem: str) -> None:
    created = await api.new_user("alice")
    token = await api.token(created["api_key"])
    pm = "0x" + "9a" * 32
    for venue, body in [
        ("kalshi", {"api_key": "k", "private_key": rsa_pem, "host": "http://127.0.0.1:9/trade-api/v2"}),
        ("kalshi", {"api_key": "k", "private_key": rsa_pem, "host": "http://api.elections.kalshi.com/trade-api/v2"}),
        ("polymarket", {"private_key": pm, "host": "http://169.254.169.254/latest"}),
        ("polymarket", {"private_key": pm, "host": f"https://{MARK.lower()}.example"}),
    ]:
        r = await api.as_user(token, "PUT", f"/profile/secrets/{venue}", body)
        assert r.status_code == 422 and r.json()["detail"].startswith(f"host must be an https URL on the {venue}")
        assert body["host"] not in r.text
    ok = [
        ("kalshi", {"api_key": "k", "private_key": rsa_pem, "host": "https://demo-api.kalshi.co/trade-api/v2"}),
        ("polymarket", {"private_key": pm, "host": "https://clob.polymarket.com"}),
    ]
    for venue, body in ok:
        r = await api.as_user(token, "PUT", f"/profile/secrets/{venue}", body)
        assert r.status_code == 200 and "host" in r.json()["fields"], r.text


async def test_the_references_nested_secrets_shape(api: Api, rsa_pem: str) -> None:
    created = await api.new_user("alice")
    token = await api.token(created["api_key"])
    pm, funder = "0x" + "4d" * 32, "0x" + "ef" * 20
    r = await api.as_user(
        token, "PUT", "/profile/secrets/kalshi", {"api_key": "k1", "extra": {"private_key": rsa_pem, "use_demo": True}}
    )
    assert r.status_code == 200 and r.json()["fields"] == ["api_key", "private_key", "use_demo"], r.text
    r = await api.as_user(
        token,
        "PUT",
        "/profile/secrets/polymarket",
        {"extra": {"private_key": pm, "funder": funder, "host": "https://clob.polymarket.com"}},
    )
    assert r.status_code == 200 and r.json()["fields"] == ["funder", "host", "private_key"], r.text
    assert api.stack.store is not None
    assert load_secrets(api.stack.store, api.settings, created["user_id"]) == {
        "kalshi": {"api_key": "k1", "private_key": rsa_pem.strip() + "\n", "use_demo": True},
        "polymarket": {"private_key": pm, "funder": funder, "host": "https://clob.polymarket.com"},
    }
    r = await api.as_user(
        token, "PUT", "/profile/secrets/polymarket", {"private_key": pm, "extra": {"private_key": pm}}
    )
    assert r.status_code == 422 and "'private_key' given both at the top level and in extra" in r.json()["detail"]


async def test_disabling_a_user_says_when_their_runs_could_not_be_stopped(api: Api) -> None:
    created = await api.new_user("alice")
    r = await api.admin("PATCH", f"/admin/users/{created['user_id']}", {"disabled": True})
    assert r.status_code == 200, r.text  # the disable stands without a paper service ...
    body = r.json()
    assert body["disabled"] is True and body["stopped_runs"] == []
    assert body["stop_error"].startswith("the user's active runs could not be stopped: paper service not answering")
    r = await api.admin("PATCH", f"/admin/users/{created['user_id']}", {"disabled": False})
    assert r.json()["disabled"] is False and r.json()["stop_error"] is None  # enabling stops nothing
    assert [u["disabled"] for u in (await api.admin("GET", "/admin/users")).json()["users"]] == [False]
