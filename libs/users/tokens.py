"""Access tokens: HS256 JWTs (PyJWT) issued for an API key at `POST /auth/token`.

Claims: `sub` (the user id), `iat` and `exp` (whole Unix seconds; the lifetime is MT_JWT_TTL_S),
`jti` (a random id, for logs and any future revocation list) and `kh`, the first 16 hex
characters of the SHA-256 of the API key the token was exchanged for. `kh` binds a token to its
key: rotating a user's key (because it leaked) also ends every token obtained with the old one,
instead of leaving them valid until they expire. It reveals nothing about the key.

Time is checked here, not by PyJWT, against a `now` the caller may inject (tests use fixed
times, never the wall clock): a token is valid while `now < exp`; an `iat` more than
CLOCK_SKEW_S in the future is refused (a token from a host whose clock runs ahead). Only HS256
is accepted, so an `alg: none` or RS256-confusion token fails as malformed.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from typing import Any, Literal

import jwt
import msgspec

from libs.users.keys import is_user_id

ALGORITHM = "HS256"
CLOCK_SKEW_S = 60
"""How far in the future a token's `iat` may be (clock differences between report replicas)."""
KEY_HASH_CHARS = 16
"""Hex characters of the key's SHA-256 carried in the `kh` claim."""

TokenProblem = Literal["malformed", "bad_signature", "expired", "future", "claims"]


class TokenError(ValueError):
    """A token that is not valid; `problem` says which way, the message is a sentence for the client."""

    def __init__(self, problem: TokenProblem, message: str) -> None:
        super().__init__(message)
        self.problem: TokenProblem = problem


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    """The claims of a verified token."""

    sub: str
    iat: int
    exp: int
    jti: str
    kh: str


class TokenReply(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /auth/token`'s answer."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    """Seconds until the token expires."""
    user_id: str


def utc_iso(seconds: int) -> str:
    """Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue(secret: bytes, user_id: str, key_hash: str, ttl_s: float, now: float | None = None) -> tuple[str, Claims]:
    """A signed token for `user_id` exchanged for the key hashing to `key_hash`, valid `ttl_s` from `now`.

    `iat` is `now` rounded down, `exp` is `iat + ceil(ttl_s)` (at least 1 s).
    """
    if not is_user_id(user_id):
        raise ValueError(f"user_id {user_id!r} is not a MarketTwin user id")
    if not (math.isfinite(ttl_s) and ttl_s > 0):
        raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
    iat = math.floor(time.time() if now is None else now)
    claims = Claims(
        sub=user_id, iat=iat, exp=iat + max(1, math.ceil(ttl_s)), jti=secrets.token_hex(8), kh=key_hash[:KEY_HASH_CHARS]
    )
    return jwt.encode(msgspec.structs.asdict(claims), secret, algorithm=ALGORITHM), claims


def verify(secret: bytes, token: str, now: float | None = None) -> Claims:
    """The claims of `token` when it is signed with `secret` and not expired at `now`; else TokenError."""
    if not token:
        raise TokenError("malformed", "the token is empty")
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={
                "verify_exp": False,  # checked below against the injected `now`
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["sub", "iat", "exp", "jti", "kh"],
            },
        )
    except jwt.InvalidSignatureError:
        raise TokenError("bad_signature", "token signature is not valid (forged, or signed with another key)") from None
    except jwt.MissingRequiredClaimError as e:
        raise TokenError("claims", f"token lacks the {e.claim!r} claim") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError("malformed", f"token is not signed with {ALGORITHM}") from None
    except jwt.InvalidTokenError as e:
        raise TokenError("malformed", f"token is not a valid JWT: {e}") from None
    try:
        claims = msgspec.convert(payload, Claims, strict=True)
    except msgspec.ValidationError as e:
        raise TokenError("claims", f"token claims are not valid: {e}") from None
    if not is_user_id(claims.sub):
        raise TokenError("claims", "token subject is not a MarketTwin user id")
    if len(claims.kh) != KEY_HASH_CHARS:
        raise TokenError("claims", "token key-hash claim is not valid")
    at = time.time() if now is None else now
    if at >= claims.exp:
        raise TokenError("expired", f"token expired at {utc_iso(claims.exp)}; get a new one from POST /auth/token")
    if claims.iat > at + CLOCK_SKEW_S:
        raise TokenError("future", f"token is issued in the future ({utc_iso(claims.iat)}): check the server clocks")
    return claims
