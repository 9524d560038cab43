"""JWT access tokens: issue and verify at injected times (never the wall clock), expiry, forgery, bad claims."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from libs.users import tokens
from libs.users.keys import hash_api_key, new_api_key, new_user_id
from libs.users.tokens import TokenError, issue, verify

SECRET = b"k" * 64
T0 = 1_700_000_000.25
"""2023-11-14T22:13:20.25Z: a fixed issue time."""


def _payload(token: str) -> dict[str, object]:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_claims_round_trip_and_validity_window() -> None:
    user, key_hash = new_user_id(), hash_api_key(new_api_key())
    token, claims = issue(SECRET, user, key_hash, ttl_s=900, now=T0)
    assert claims.sub == user and claims.iat == 1_700_000_000 and claims.exp == 1_700_000_900
    assert claims.kh == key_hash[:16] and len(claims.jti) == 16
    assert _payload(token) == {
        "sub": user,
        "iat": 1_700_000_000,
        "exp": 1_700_000_900,
        "jti": claims.jti,
        "kh": claims.kh,
    }
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "HS256"
    assert verify(SECRET, token, now=T0) == claims
    assert verify(SECRET, token, now=1_700_000_899.999) == claims  # valid while now < exp
    with pytest.raises(TokenError) as err:
        verify(SECRET, token, now=1_700_000_900)
    assert err.value.problem == "expired"
    assert str(err.value) == "token expired at 2023-11-14T22:28:20Z; get a new one from POST /auth/token"


def test_each_token_has_its_own_jti() -> None:
    user, kh = new_user_id(), "0" * 64
    assert issue(SECRET, user, kh, 60, now=T0)[1].jti != issue(SECRET, user, kh, 60, now=T0)[1].jti


def test_sub_second_ttl_still_gives_one_second() -> None:
    _, claims = issue(SECRET, new_user_id(), "0" * 64, ttl_s=0.2, now=T0)
    assert claims.exp - claims.iat == 1


def test_forged_and_tampered_tokens_fail_on_signature() -> None:
    user = new_user_id()
    token, _ = issue(SECRET, user, "0" * 64, 900, now=T0)
    forged, _ = issue(b"x" * 48, user, "0" * 64, 900, now=T0)
    with pytest.raises(TokenError) as err:
        verify(SECRET, forged, now=T0)
    assert err.value.problem == "bad_signature"
    head, _, sig = token.split(".")
    other = dict(_payload(token), sub=new_user_id())
    swapped = base64.urlsafe_b64encode(json.dumps(other).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError) as err:
        verify(SECRET, f"{head}.{swapped}.{sig}", now=T0)
    assert err.value.problem == "bad_signature"


def test_alg_none_and_other_algorithms_are_refused() -> None:
    claims = {"sub": new_user_id(), "iat": 1_700_000_000, "exp": 1_700_000_900, "jti": "a", "kh": "b"}
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(TokenError) as err:
        verify(SECRET, unsigned, now=T0)
    assert err.value.problem == "malformed" and "HS256" in str(err.value)
    hs512 = jwt.encode(claims, SECRET, algorithm="HS512")
    with pytest.raises(TokenError) as err:
        verify(SECRET, hs512, now=T0)
    assert err.value.problem == "malformed"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z"])
def test_garbage_is_malformed(garbage: str) -> None:
    with pytest.raises(TokenError) as err:
        verify(SECRET, garbage, now=T0)
    assert err.value.problem == "malformed"


def test_missing_or_wrong_claims_are_named() -> None:
    base = {"sub": new_user_id(), "iat": 1_700_000_000, "exp": 1_700_000_900, "jti": "a", "kh": "0" * 16}
    for claim in ("sub", "exp", "kh"):
        token = jwt.encode({k: v for k, v in base.items() if k != claim}, SECRET, algorithm="HS256")
        with pytest.raises(TokenError) as err:
            verify(SECRET, token, now=T0)
        assert err.value.problem == "claims" and repr(claim) in str(err.value)
    short_kh = jwt.encode(dict(base, kh="abc"), SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="key-hash claim is not valid"):
        verify(SECRET, short_kh, now=T0)
    not_a_user = jwt.encode(dict(base, sub="admin"), SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="subject is not a MarketTwin user id"):
        verify(SECRET, not_a_user, now=T0)
    text_exp = jwt.encode(dict(base, exp="soon"), SECRET, algorithm="HS256")
    with pytest.raises(TokenError) as err:
        verify(SECRET, text_exp, now=T0)
    assert err.value.problem in ("claims", "malformed")


def test_a_token_from_the_future_is_refused_beyond_the_skew() -> None:
    token, _ = issue(SECRET, new_user_id(), "0" * 64, 900, now=T0 + tokens.CLOCK_SKEW_S + 5)
    with pytest.raises(TokenError) as err:
        verify(SECRET, token, now=T0)
    assert err.value.problem == "future"
    near, claims = issue(SECRET, new_user_id(), "0" * 64, 900, now=T0 + tokens.CLOCK_SKEW_S - 5)
    assert verify(SECRET, near, now=T0) == claims


def test_bad_issue_arguments() -> None:
    with pytest.raises(ValueError, match="user_id 'alice'"):
        issue(SECRET, "alice", "0" * 64, 900)
    with pytest.raises(ValueError, match="ttl_s must be a positive"):
        issue(SECRET, new_user_id(), "0" * 64, 0)
