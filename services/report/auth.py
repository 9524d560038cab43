"""Who is calling: `require_user` for every user endpoint, `user_from_token` for WebSockets, admin checks.

A request carries `Authorization: Bearer <jwt>` (a token from `POST /auth/token`); a WebSocket,
whose browser API cannot set headers, may pass it as the `token` query parameter instead. Every
failure is an ApiError(401) whose detail says what is wrong: missing or malformed header,
malformed token, bad signature, expired (with the time and where to get a new one), a token
made with an API key that has since been rotated, an unknown or disabled user.

User rows are cached for USER_CACHE_S (keyed reads of a tiny table are cheap, but not free at
every request); the admin endpoints of this process drop a user's entry when they change it,
so disabling or rotating takes effect at once here, and within USER_CACHE_S on other replicas.

The server secrets (JWT key, admin token, Fernet key) are loaded, or generated into MT_HOME,
by `init` — at app start when `build_app` calls it, else on the first request that needs them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from libs.config import Settings
from libs.store import Store
from libs.users import secretbox, tokens
from libs.users.secretbox import SecretBox
from libs.users.store import User, get_user
from services.report.routes_bars import ApiError

USER_CACHE_S = 5.0
"""How long a user row read for a token check is reused."""
USER_CACHE_MAX = 10_000
"""Entries kept before the cache is emptied (it refills from the store on demand)."""
TOKEN_HELP = "get one from POST /auth/token with your API key"


class UserCache:
    """user_id -> (read at, user or None), refreshed after `ttl_s` (monotonic clock)."""

    def __init__(self, ttl_s: float = USER_CACHE_S) -> None:
        self.ttl_s = ttl_s
        self._rows: dict[str, tuple[float, User | None]] = {}

    async def get(self, store: Store, user_id: str) -> User | None:
        """The user (None when unknown), from the cache or one keyed read in a worker thread."""
        hit = self._rows.get(user_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        user = await asyncio.to_thread(get_user, store, user_id)
        if len(self._rows) >= USER_CACHE_MAX:
            self._rows.clear()
        self._rows[user_id] = (now, user)
        return user

    def invalidate(self, user_id: str | None = None) -> None:
        """Forget one user (or everyone), so the next check reads the store."""
        if user_id is None:
            self._rows.clear()
        else:
            self._rows.pop(user_id, None)


@dataclass
class UsersState:
    """The report app's user-auth state: server secrets and the user cache."""

    settings: Settings
    jwt_secret: bytes
    admin_token: str
    box: SecretBox
    cache: UserCache = field(default_factory=UserCache)


def init(app_state: Any, settings: Settings) -> UsersState:
    """Load (or generate into MT_HOME) the JWT key, admin token and secrets key; a bad value is a ConfigError."""
    box = secretbox.secret_box(settings)
    admin = secretbox.admin_token(settings)
    assert box is not None and admin is not None  # create=True always yields them
    state = UsersState(settings=settings, jwt_secret=secretbox.jwt_secret(settings), admin_token=admin, box=box)
    app_state.users = state
    return state


def users_state(app_state: Any) -> UsersState:
    """The app's UsersState, made on first use from `app_state.settings`."""
    state = getattr(app_state, "users", None)
    return state if isinstance(state, UsersState) else init(app_state, app_state.settings)


def bearer(conn: HTTPConnection, what: str) -> str:
    """The token of an `Authorization: Bearer <token>` header; ApiError(401) when missing or malformed.

    On a WebSocket without the header, the `token` query parameter.
    """
    header = conn.headers.get("authorization")
    if header is None:
        if conn.scope.get("type") == "websocket":
            token = conn.query_params.get("token")
            if token:
                return token
            raise ApiError(401, f"missing {what}: pass it as the `token` query parameter or an Authorization header")
        raise ApiError(401, f"missing Authorization header: send `Authorization: Bearer <{what}>`")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, f"malformed Authorization header: expected `Bearer <{what}>`")
    return token.strip()


async def verify_token(app_state: Any, token: str | None) -> tokens.Claims:
    """The claims of a JWT whose signature, expiry, key (not rotated since) and user (existing, not
    disabled) check out now; else ApiError(401) saying which check failed.

    Async: an uncached user is read from the store in a worker thread. A WebSocket calls it again
    every USER_CACHE_S for as long as it is open (services/report/live.py).
    """
    if not token:
        raise ApiError(401, f"missing token: {TOKEN_HELP}")
    state = users_state(app_state)
    try:
        claims = tokens.verify(state.jwt_secret, token)
    except tokens.TokenError as e:
        raise ApiError(401, str(e)) from None
    user = await state.cache.get(app_state.store, claims.sub)
    if user is None:
        raise ApiError(401, f"token is for user {claims.sub}, who does not exist")
    if user.disabled:
        raise ApiError(401, f"user {user.user_id} is disabled")
    if not user.api_key_hash.startswith(claims.kh):
        raise ApiError(401, f"token was issued for an API key that has since been rotated; {TOKEN_HELP}")
    return claims


async def user_from_token(app_state: Any, token: str | None) -> str:
    """The user id a JWT stands for (all of `verify_token`'s checks); else ApiError(401)."""
    return (await verify_token(app_state, token)).sub


async def require_user(request: HTTPConnection) -> str:
    """The calling user's id from `Authorization: Bearer <jwt>` (or a WebSocket's `token`); else ApiError(401)."""
    return await user_from_token(request.app.state, bearer(request, "token"))


def require_admin(request: HTTPConnection) -> None:
    """ApiError(401) unless the request carries `Authorization: Bearer <admin token>`."""
    state = users_state(request.app.state)  # first: a local CLI's probe makes the token file exist
    given = bearer(request, "admin token")
    if not secretbox.same_secret(given, state.admin_token):
        raise ApiError(401, "admin token rejected: use MT_ADMIN_TOKEN or the contents of MT_HOME/admin.token")
