"""The `users`, `user_profiles` and `user_secrets` tables: users and keys, thresholds, encrypted secrets.

Each table is a ReplacingMergeTree versioned by `ts` (migration 0006): a change is a new full
row with a later `ts` and every read uses FINAL, so the latest row wins. `ts` comes from a
per-process monotonic clock (`_next_ts`), so two quick changes never tie or go backwards.
Filters on columns other than the key (`api_key_hash`, `deleted`) are applied outside the
FINAL subquery, so an older row can never match.

Values go into SQL as escaped literals (`quote_string`), not `{name:Type}` parameters: chDB
4.x can deadlock a parameterised query against an insert from another thread (see
`libs/bars/store.py`); user ids are also checked against their strict shape first.

Decisions:
- Names are trimmed, 1-64 characters, without control characters, and unique ignoring case
  ("Alice" and "alice" are one name). The check-then-insert runs under a process lock; two
  report replicas creating the same name at the same instant could both succeed.
- Profile thresholds are stored in micro-dollars (proto.units CASH_SCALE; a cent is 10,000).
  A stored -1 means "never set": the MT_PAPER_* default of the moment applies, so changing a
  default reaches every user who did not choose their own value.
- min_net_edge_cents is 0..100 (a binary contract pays $1, so no edge exceeds 100 cents);
  max_leg_usd and daily_cap_usd are > 0 and at most MAX_USD; all must be finite.
- Secrets rows hold a Fernet token of the JSON fields (`ciphertext`) and the field names in
  clear (`fields`, for the profile); deleting writes a row with `deleted = 1`.
"""

from __future__ import annotations

import math
import threading
import unicodedata
from typing import Any

import msgspec
import pyarrow as pa

from libs.config import Settings
from libs.ids import now_ns
from libs.paper.views import iso
from libs.store import Store
from libs.store.sql import quote_string
from libs.store.tables import USER_PROFILES, USER_SECRETS, USERS
from libs.users.keys import hash_api_key, is_user_id, key_prefix, new_api_key, new_user_id
from proto.paper import Profile, ProfileUpdate
from proto.units import CASH_SCALE

VENUES = ("kalshi", "polymarket")
"""Venues a user can store exchange secrets for."""
MAX_NAME_CHARS = 64
MICROS_PER_CENT = CASH_SCALE // 100
MAX_EDGE_CENTS = 100.0
MAX_USD = 1_000_000_000.0
"""Largest max_leg_usd / daily_cap_usd accepted ($1e9, far inside Int64 micro-dollars)."""
UNSET = -1
"""A stored threshold of -1: the user never set it; the MT_PAPER_* default applies."""


class UsersError(ValueError):
    """A request about users that cannot be done; `status` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class User(msgspec.Struct, frozen=True, kw_only=True):
    """One user as stored (the key only as its hash)."""

    user_id: str
    name: str
    api_key_hash: str
    api_key_prefix: str
    created_at: int
    """UTC ns."""
    updated_at: int
    """UTC ns of the latest change (the row's `ts`)."""
    disabled: bool


class UserView(msgspec.Struct, frozen=True, kw_only=True):
    """A user in `GET /admin/users`: no key, no hash."""

    user_id: str
    name: str
    api_key_prefix: str
    created_at: str
    disabled: bool


class NewKey(msgspec.Struct, frozen=True, kw_only=True):
    """A user with a freshly made API key: the only time the key is shown."""

    user_id: str
    name: str
    api_key: str
    api_key_prefix: str


class SecretsView(msgspec.Struct, frozen=True, kw_only=True):
    """What the API says about a venue's stored secrets: which fields, never their values."""

    venue: str
    configured: bool
    fields: list[str]
    updated_at: str | None


def user_view(user: User) -> UserView:
    """The listing form of a user."""
    return UserView(
        user_id=user.user_id,
        name=user.name,
        api_key_prefix=user.api_key_prefix,
        created_at=iso(user.created_at) or "",
        disabled=user.disabled,
    )


_clock_lock = threading.Lock()
_last_ts = 0
_write_lock = threading.Lock()


def _next_ts() -> int:
    """Wall-clock ns, strictly increasing within the process (the ReplacingMergeTree version)."""
    global _last_ts
    with _clock_lock:
        _last_ts = max(now_ns(), _last_ts + 1)
        return _last_ts


def _ts(values: list[int]) -> pa.Array:
    return pa.array(values, pa.timestamp("ns", tz="UTC"))


def _user_literal(user_id: str) -> str:
    if not is_user_id(user_id):
        raise UsersError(404, f"unknown user {user_id[:40]!r}: user ids look like u0123456789ab")
    return quote_string(user_id)


# -- users ----------------------------------------------------------------------------------

_USER_COLUMNS = (
    "user_id, name, api_key_hash, api_key_prefix, toUnixTimestamp64Nano(created_at) AS created_at, "
    "toUnixTimestamp64Nano(ts) AS updated_at, disabled"
)


def _users(store: Store, inner_where: str = "", outer_where: str = "") -> list[User]:
    sql = (
        f"SELECT * FROM (SELECT {_USER_COLUMNS} FROM {{db}}.users FINAL{inner_where}){outer_where} "
        "ORDER BY created_at, user_id"
    )
    return [
        User(
            user_id=r["user_id"],
            name=r["name"],
            api_key_hash=r["api_key_hash"],
            api_key_prefix=r["api_key_prefix"],
            created_at=int(r["created_at"]),
            updated_at=int(r["updated_at"]),
            disabled=bool(r["disabled"]),
        )
        for r in store.query_arrow(sql).to_pylist()
    ]


def _write_user(store: Store, user: User) -> None:
    store.insert_arrow(
        "users",
        pa.table(
            {
                "user_id": [user.user_id],
                "ts": _ts([user.updated_at]),
                "name": [user.name],
                "api_key_hash": [user.api_key_hash],
                "api_key_prefix": [user.api_key_prefix],
                "created_at": _ts([user.created_at]),
                "disabled": pa.array([int(user.disabled)], pa.uint8()),
            },
            schema=USERS,
        ),
    )


def check_name(name: object) -> str:
    """A user name trimmed, or UsersError(422) saying what is wrong with it."""
    if not isinstance(name, str):
        raise UsersError(422, f"name must be a string, got {type(name).__name__}")
    trimmed = name.strip()
    if not 1 <= len(trimmed) <= MAX_NAME_CHARS:
        raise UsersError(422, f"name must be 1-{MAX_NAME_CHARS} characters, got {len(trimmed)}: {trimmed[:80]!r}")
    if any(unicodedata.category(c).startswith("C") for c in trimmed):
        raise UsersError(422, f"name must not contain control characters, got {trimmed!r}")
    return trimmed


def list_users(store: Store) -> list[User]:
    """Every user, oldest first."""
    return _users(store)


def get_user(store: Store, user_id: str) -> User | None:
    """The user with this id, or None (also for a string that is not a user id)."""
    if not is_user_id(user_id):
        return None
    found = _users(store, f" WHERE user_id = {quote_string(user_id)}")
    return found[0] if found else None


def find_by_key_hash(store: Store, key_hash: str) -> User | None:
    """The user whose current API key hashes to `key_hash`, or None."""
    found = _users(store, outer_where=f" WHERE api_key_hash = {quote_string(key_hash)}")
    return found[0] if found else None


def create_user(store: Store, name: object) -> tuple[User, str]:
    """A new user and their API key (the caller shows it once; only its hash is stored)."""
    trimmed = check_name(name)
    with _write_lock:
        taken = store.query_arrow(
            f"SELECT user_id FROM (SELECT user_id, name FROM {{db}}.users FINAL) "
            f"WHERE lowerUTF8(name) = lowerUTF8({quote_string(trimmed)}) LIMIT 1"
        )
        if taken.num_rows:
            raise UsersError(409, f"name {trimmed!r} is taken (by user {taken['user_id'][0].as_py()})")
        user_id = new_user_id()
        while get_user(store, user_id) is not None:  # 48 random bits: practically never
            user_id = new_user_id()
        key = new_api_key()
        ts = _next_ts()
        user = User(
            user_id=user_id,
            name=trimmed,
            api_key_hash=hash_api_key(key),
            api_key_prefix=key_prefix(key),
            created_at=ts,
            updated_at=ts,
            disabled=False,
        )
        _write_user(store, user)
    return user, key


def _existing(store: Store, user_id: str) -> User:
    user = get_user(store, user_id)
    if user is None:
        raise UsersError(404, f"unknown user {user_id[:40]!r}")
    return user


def rotate_key(store: Store, user_id: str) -> tuple[User, str]:
    """A new API key for the user; the old one stops working at once (and tokens made with it)."""
    with _write_lock:
        user = _existing(store, user_id)
        key = new_api_key()
        user = msgspec.structs.replace(
            user, api_key_hash=hash_api_key(key), api_key_prefix=key_prefix(key), updated_at=_next_ts()
        )
        _write_user(store, user)
    return user, key


def set_disabled(store: Store, user_id: str, disabled: bool) -> User:
    """Disable (or enable again) a user: a disabled user's key and tokens are refused."""
    with _write_lock:
        user = msgspec.structs.replace(_existing(store, user_id), disabled=disabled, updated_at=_next_ts())
        _write_user(store, user)
    return user


# -- profiles -------------------------------------------------------------------------------


def _stored_thresholds(store: Store, user_id: str) -> tuple[int, int, int]:
    rows = store.query_arrow(
        "SELECT min_net_edge_micros, max_leg_micros, daily_cap_micros FROM {db}.user_profiles FINAL "
        f"WHERE user_id = {_user_literal(user_id)}"
    ).to_pylist()
    if not rows:
        return UNSET, UNSET, UNSET
    r = rows[0]
    return int(r["min_net_edge_micros"]), int(r["max_leg_micros"]), int(r["daily_cap_micros"])


def _or_default(stored: int, default: float, per_unit: int) -> float:
    return default if stored == UNSET else stored / per_unit


def profile(store: Store, settings: Settings, user_id: str) -> Profile:
    """The user's profile: thresholds (MT_PAPER_* defaults where never set) and which venues have keys.

    Three small keyed reads; raises UsersError(404) for an unknown user.
    """
    user = _existing(store, user_id)
    edge, leg, cap = _stored_thresholds(store, user_id)
    return Profile(
        user_id=user.user_id,
        name=user.name,
        min_net_edge_cents=_or_default(edge, settings.paper_min_edge_cents, MICROS_PER_CENT),
        max_leg_usd=_or_default(leg, settings.paper_max_leg_usd, CASH_SCALE),
        daily_cap_usd=_or_default(cap, settings.paper_daily_cap_usd, CASH_SCALE),
        exchange_keys={venue: row.fields for venue, row in secret_rows(store, user_id).items()},
    )


def _micros(name: str, value: float | None, per_unit: int, *, positive: bool, most: float) -> int | None:
    """`value` (cents or dollars) in micro-dollars, or UsersError(422) naming the field and value."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsersError(422, f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise UsersError(422, f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise UsersError(422, f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    if value > most:
        raise UsersError(422, f"{name} must be at most {most:g}, got {value!r}")
    micros = round(value * per_unit)
    if positive and micros == 0:
        raise UsersError(422, f"{name} must be at least {1 / per_unit:g}, got {value!r}")
    return micros


PROFILE_LIMITS: dict[str, float] = {
    "min_net_edge_cents": MAX_EDGE_CENTS,
    "max_leg_usd": MAX_USD,
    "daily_cap_usd": MAX_USD,
}
"""The highest value of each profile threshold."""


def profile_number(name: str, value: object) -> float | None:
    """A profile field's JSON value as a float (None stays None), or UsersError(422) naming the field.

    A JSON integer too large for a float (`1` and 400 zeros) would make `float()` raise
    OverflowError; it is refused by its size instead of its (400-digit) value.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsersError(422, f"{name} must be a number, got {msgspec.json.encode(value).decode()[:80]}")
    try:
        return float(value)
    except OverflowError:
        most = PROFILE_LIMITS.get(name, MAX_USD)
        got = "an integer below -1e308" if isinstance(value, int) and value < 0 else "an integer beyond 1e308"
        raise UsersError(422, f"{name} must be a number from 0 to {most:g}, got {got}") from None


def update_profile(store: Store, settings: Settings, user_id: str, update: ProfileUpdate) -> Profile:
    """Apply `update` (fields left out or null keep their value) and return the new profile."""
    edge = _micros(
        "min_net_edge_cents", update.min_net_edge_cents, MICROS_PER_CENT, positive=False, most=MAX_EDGE_CENTS
    )
    leg = _micros("max_leg_usd", update.max_leg_usd, CASH_SCALE, positive=True, most=MAX_USD)
    cap = _micros("daily_cap_usd", update.daily_cap_usd, CASH_SCALE, positive=True, most=MAX_USD)
    with _write_lock:
        _existing(store, user_id)
        old_edge, old_leg, old_cap = _stored_thresholds(store, user_id)
        store.insert_arrow(
            "user_profiles",
            pa.table(
                {
                    "user_id": [user_id],
                    "ts": _ts([_next_ts()]),
                    "min_net_edge_micros": pa.array([old_edge if edge is None else edge], pa.int64()),
                    "max_leg_micros": pa.array([old_leg if leg is None else leg], pa.int64()),
                    "daily_cap_micros": pa.array([old_cap if cap is None else cap], pa.int64()),
                },
                schema=USER_PROFILES,
            ),
        )
    return profile(store, settings, user_id)


# -- secrets rows ---------------------------------------------------------------------------


class SecretRow(msgspec.Struct, frozen=True, kw_only=True):
    """One venue's stored secrets: field names, the Fernet token, when they were saved (UTC ns)."""

    venue: str
    fields: list[str]
    ciphertext: str
    updated_at: int


def secret_rows(store: Store, user_id: str) -> dict[str, SecretRow]:
    """The user's current (not deleted) secrets, by venue."""
    rows = store.query_arrow(
        "SELECT venue, fields, ciphertext, updated_at FROM (SELECT venue, fields, ciphertext, deleted, "
        "toUnixTimestamp64Nano(ts) AS updated_at FROM {db}.user_secrets FINAL "
        f"WHERE user_id = {_user_literal(user_id)}) WHERE deleted = 0 ORDER BY venue"
    ).to_pylist()
    return {
        r["venue"]: SecretRow(
            venue=r["venue"], fields=list(r["fields"]), ciphertext=r["ciphertext"], updated_at=int(r["updated_at"])
        )
        for r in rows
    }


def venues_with_keys(store: Store, user_id: str) -> list[str]:
    """The venues the user has stored secrets for, sorted (one keyed read; no decryption)."""
    rows = store.query_arrow(
        "SELECT venue FROM (SELECT venue, deleted FROM {db}.user_secrets FINAL "
        f"WHERE user_id = {_user_literal(user_id)}) WHERE deleted = 0 ORDER BY venue"
    )
    return [str(v) for v in rows["venue"].to_pylist()]


def _check_venue(venue: str) -> None:
    if venue not in VENUES:
        raise UsersError(404, f"unknown venue {venue[:40]!r}; secrets can be stored for: {', '.join(VENUES)}")


def write_secret_row(store: Store, user_id: str, venue: str, fields: list[str], ciphertext: str) -> SecretsView:
    """Store a venue's sealed secrets (replacing any earlier ones); the view names the fields only."""
    _check_venue(venue)
    ts = _next_ts()
    _write_secret(store, user_id, venue, ts, sorted(fields), ciphertext, deleted=False)
    return SecretsView(venue=venue, configured=True, fields=sorted(fields), updated_at=iso(ts))


def delete_secret_row(store: Store, user_id: str, venue: str) -> bool:
    """Forget a venue's secrets; False when there were none."""
    _check_venue(venue)
    if venue not in secret_rows(store, user_id):
        return False
    _write_secret(store, user_id, venue, _next_ts(), [], "", deleted=True)
    return True


def _write_secret(
    store: Store, user_id: str, venue: str, ts: int, fields: list[str], ciphertext: str, *, deleted: bool
) -> None:
    _user_literal(user_id)
    data: dict[str, Any] = {
        "user_id": [user_id],
        "venue": [venue],
        "ts": _ts([ts]),
        "fields": pa.array([fields], pa.list_(pa.string())),
        "ciphertext": [ciphertext],
        "deleted": pa.array([int(deleted)], pa.uint8()),
    }
    store.insert_arrow("user_secrets", pa.table(data, schema=USER_SECRETS))
