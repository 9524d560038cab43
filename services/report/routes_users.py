"""Users, API keys, tokens, profiles and exchange secrets over HTTP.

- `POST /auth/token` — body `{"api_key": "mt_..."}` or header `X-API-Key` → `{access_token,
  token_type: "bearer", expires_in, user_id}`; a malformed, unknown (never issued or rotated) or
  disabled key is a 401 saying which, never echoing the key.
- Admin (`Authorization: Bearer <MT_ADMIN_TOKEN or MT_HOME/admin.token>`):
  `POST /admin/users {"name"}` → 201 `{user_id, name, api_key, api_key_prefix}` (the only time
  the key is shown); `GET /admin/users` → `{"users": [...]}` without keys or hashes;
  `POST /admin/users/{user_id}/api-key` → a new key (the old one, and tokens made with it, stop
  working); `PATCH /admin/users/{user_id} {"disabled": bool}` → the user plus `stopped_runs` and
  `stop_error` (disabling stops the user's active runs; see `admin_update_user`).
- User (`Authorization: Bearer <jwt>`): `GET /profile`, `PUT /profile` (proto.paper.Profile /
  ProfileUpdate), `GET /profile/secrets`, `PUT /profile/secrets/{kalshi|polymarket}` (flat
  fields, or the reference's `{"api_key", "extra": {...}}` shape; rules in `libs.users.secrets`),
  `DELETE /profile/secrets/{venue}`. Secrets answers are `{venue, configured, fields,
  updated_at}`: the names of the stored fields, never a value.

Bodies are read by `services.report.bodies`: at most 64 KiB (413 beyond, chunked or not), a body
that is not JSON (malformed, or not UTF-8) a 400 `the request body is not valid JSON`.

Secrets never reach a log: no request body is logged anywhere (uvicorn's access log is off
and it never logs bodies), validation errors name fields only (`libs.users.secrets`), the
secrets handler turns any unexpected exception — reading the body included — into a 500 whose
log line carries only the exception's type and a reference, and the app's crash guard
(`http_app.CrashGuard`) logs nothing but type and reference for `/auth`, `/admin` and `/profile`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from libs.ids import new_id
from libs.paper.views import iso
from libs.users import store as users
from libs.users.keys import ApiKeyError, check_api_key, hash_api_key
from libs.users.secrets import SecretsInputError, stored_field_names, validate
from libs.users.tokens import TokenReply, issue
from proto.paper import ProfileUpdate, StopRun, UserQuery
from services.report.auth import require_admin, require_user, users_state
from services.report.bodies import decode_json, read_body
from services.report.routes_bars import ApiError, json_response
from services.report.routes_simulator import ask_paper

PROFILE_FIELDS = tuple(ProfileUpdate.__struct_fields__)


async def _body(request: Request, *, quote_errors: bool = True) -> dict[str, Any]:
    """The JSON object in the body ({} when empty); 413/400/422 otherwise (`services.report.bodies`).

    `quote_errors=False` (secrets) keeps even the parser's byte position out of the detail.
    """
    raw = await read_body(request)
    if not raw.strip():
        return {}
    body = decode_json(raw, quote_errors=quote_errors)
    if not isinstance(body, dict):
        raise ApiError(422, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _users_error(e: users.UsersError) -> ApiError:
    return ApiError(e.status, str(e))


async def _call(fn: Any, *args: Any) -> Any:
    """Run a blocking store function in a worker thread; UsersError becomes the ApiError it maps to."""
    try:
        return await asyncio.to_thread(fn, *args)
    except users.UsersError as e:
        raise _users_error(e) from None


# -- tokens ---------------------------------------------------------------------------------


async def auth_token(request: Request) -> Response:
    """`POST /auth/token`: exchange an API key for a JWT valid MT_JWT_TTL_S."""
    state = users_state(request.app.state)
    key: object = request.headers.get("x-api-key")
    if key is None:
        body = await _body(request)
        key = body.get("api_key")
        if key is None:
            raise ApiError(401, 'missing API key: send {"api_key": "mt_..."} or an X-API-Key header')
    try:
        api_key = check_api_key(key)
    except ApiKeyError as e:
        raise ApiError(401, str(e)) from None
    key_hash = hash_api_key(api_key)
    user = await asyncio.to_thread(users.find_by_key_hash, request.app.state.store, key_hash)
    log = request.app.state.log
    if user is None:
        log.info("token refused", reason="unknown api key")
        raise ApiError(401, "api_key is not valid: it was never issued, or it was replaced by a rotation")
    if user.disabled:
        log.info("token refused", reason="user disabled", user_id=user.user_id)
        raise ApiError(401, f"user {user.user_id} is disabled")
    now = time.time()
    token, claims = issue(state.jwt_secret, user.user_id, key_hash, state.settings.jwt_ttl_s, now=now)
    log.info("token issued", user_id=user.user_id, jti=claims.jti)
    return json_response(TokenReply(access_token=token, expires_in=claims.exp - claims.iat, user_id=user.user_id))


# -- admin ----------------------------------------------------------------------------------


async def admin_create_user(request: Request) -> Response:
    """`POST /admin/users {"name"}`: a new user and their API key (shown this once)."""
    require_admin(request)
    body = await _body(request)
    extra = sorted(set(body) - {"name"})
    if extra:
        raise ApiError(422, f'unknown field(s) {", ".join(map(repr, extra))}; the body is {{"name": "..."}}')
    if "name" not in body:
        raise ApiError(422, 'name is required: {"name": "alice"}')
    user, key = await _call(users.create_user, request.app.state.store, body["name"])
    users_state(request.app.state).cache.invalidate(user.user_id)
    request.app.state.log.info("user created", user_id=user.user_id, name=user.name)
    return json_response(
        users.NewKey(user_id=user.user_id, name=user.name, api_key=key, api_key_prefix=user.api_key_prefix), 201
    )


async def admin_list_users(request: Request) -> Response:
    """`GET /admin/users`: every user (ids, names, key prefixes, created_at, disabled)."""
    require_admin(request)
    found = await _call(users.list_users, request.app.state.store)
    return json_response({"users": [users.user_view(u) for u in found]})


async def admin_rotate_key(request: Request) -> Response:
    """`POST /admin/users/{user_id}/api-key`: a new key; the old one stops working."""
    require_admin(request)
    user_id = request.path_params["user_id"]
    user, key = await _call(users.rotate_key, request.app.state.store, user_id)
    users_state(request.app.state).cache.invalidate(user.user_id)
    request.app.state.log.info("api key rotated", user_id=user.user_id)
    return json_response(
        users.NewKey(user_id=user.user_id, name=user.name, api_key=key, api_key_prefix=user.api_key_prefix)
    )


async def admin_update_user(request: Request) -> Response:
    """`PATCH /admin/users/{user_id} {"disabled": true|false}`.

    Disabling also stops the user's active runs (each `svc.paper.active` run gets a `StopRun`), so
    a disabled user's runs stop trading at once instead of running to their duration. The disable
    itself is stored first and always stands: when the paper service does not answer, the answer
    says the runs could not be stopped (`stop_error`) and an operator can retry. The answer is the
    user's listing plus `stopped_runs` (ids) and `stop_error` (null when nothing failed).
    """
    require_admin(request)
    body = await _body(request)
    extra = sorted(set(body) - {"disabled"})
    if extra or not isinstance(body.get("disabled"), bool):
        raise ApiError(
            422, f'the body must be {{"disabled": true|false}}, got {msgspec.json.encode(body).decode()[:200]}'
        )
    user = await _call(users.set_disabled, request.app.state.store, request.path_params["user_id"], body["disabled"])
    users_state(request.app.state).cache.invalidate(user.user_id)
    log = request.app.state.log
    log.info("user updated", user_id=user.user_id, disabled=user.disabled)
    stopped: list[str] = []
    stop_error: str | None = None
    if user.disabled:
        stopped, stop_error = await _stop_runs(request, user.user_id)
        if stopped or stop_error:
            log.info("disabled user's runs stopped", user_id=user.user_id, runs=stopped, error=stop_error)
    return json_response(
        msgspec.to_builtins(users.user_view(user)) | {"stopped_runs": stopped, "stop_error": stop_error}
    )


async def _stop_runs(request: Request, user_id: str) -> tuple[list[str], str | None]:
    """Stop every active run of the user through the paper service: (stopped run ids, what failed or None)."""
    try:
        active = await ask_paper(request, "active", UserQuery(user_id=user_id))
    except ApiError as e:
        return [], f"the user's active runs could not be stopped: {e.detail}"
    stopped: list[str] = []
    failed: list[str] = []
    for run in active:
        try:
            stop = StopRun(user_id=user_id, run_id=run.run_id, reason="disabled")
            for view in await ask_paper(request, "stop", stop):
                stopped.append(view.run_id)
        except ApiError as e:
            if e.status == 409:  # stopped meanwhile (its duration, or the user): nothing left to do
                continue
            failed.append(f"{run.run_id}: {e.detail}")
    if failed:
        return stopped, f"{len(failed)} of the user's active runs could not be stopped: {'; '.join(failed)[:500]}"
    return stopped, None


# -- profile --------------------------------------------------------------------------------


async def get_profile(request: Request) -> Response:
    """`GET /profile`: the caller's thresholds and which venues have keys."""
    user_id = await require_user(request)
    app = request.app.state
    return json_response(await _call(users.profile, app.store, app.settings, user_id))


async def put_profile(request: Request) -> Response:
    """`PUT /profile`: change thresholds (fields left out or null keep their value)."""
    user_id = await require_user(request)
    body = await _body(request)
    extra = sorted(set(body) - set(PROFILE_FIELDS))
    if extra:
        raise ApiError(422, f"unknown field(s) {', '.join(map(repr, extra))}; allowed: {', '.join(PROFILE_FIELDS)}")
    try:
        update = ProfileUpdate(**{name: users.profile_number(name, body.get(name)) for name in PROFILE_FIELDS})
    except users.UsersError as e:
        raise _users_error(e) from None
    app = request.app.state
    result = await _call(users.update_profile, app.store, app.settings, user_id, update)
    app.log.info("profile updated", user_id=user_id, fields=sorted(body))
    return json_response(result)


# -- exchange secrets -----------------------------------------------------------------------


def _venue(request: Request) -> str:
    venue = request.path_params["venue"]
    if venue not in users.VENUES:
        raise ApiError(404, f"unknown venue {venue[:40]!r}; secrets can be stored for: {', '.join(users.VENUES)}")
    return venue


def _secrets_failure(request: Request, action: str, exc: BaseException) -> ApiError:
    """A 500 for an unexpected failure while handling secrets, logged by type and reference only."""
    ref = new_id()
    request.app.state.log.error("exchange secrets request failed", action=action, ref=ref, error=type(exc).__name__)
    return ApiError(500, f"internal error, see the report service log (ref {ref})")


async def list_secrets(request: Request) -> Response:
    """`GET /profile/secrets`: every venue, configured or not, with the stored field names."""
    user_id = await require_user(request)
    rows = await _call(users.secret_rows, request.app.state.store, user_id)
    views = [
        users.SecretsView(venue=v, configured=True, fields=rows[v].fields, updated_at=iso(rows[v].updated_at))
        if v in rows
        else users.SecretsView(venue=v, configured=False, fields=[], updated_at=None)
        for v in users.VENUES
    ]
    return json_response({"secrets": views})


async def put_secrets(request: Request) -> Response:
    """`PUT /profile/secrets/{venue}`: validate, encrypt and store; answer with the field names only."""
    user_id = await require_user(request)
    venue = _venue(request)
    state = users_state(request.app.state)
    try:
        body = await _body(request, quote_errors=False)
        fields = validate(venue, body, settings=state.settings, user_id=user_id)
        ciphertext = state.box.seal(fields)
        names = stored_field_names(fields)
        del fields, body
        view = await asyncio.to_thread(
            users.write_secret_row, request.app.state.store, user_id, venue, names, ciphertext
        )
    except (ApiError, ClientDisconnect):
        raise
    except SecretsInputError as e:
        raise ApiError(422, str(e)) from None
    except users.UsersError as e:
        raise _users_error(e) from None
    except Exception as e:
        raise _secrets_failure(request, "store", e) from None
    request.app.state.log.info("exchange secrets stored", user_id=user_id, venue=venue, fields=names)
    return json_response(view)


async def delete_secrets(request: Request) -> Response:
    """`DELETE /profile/secrets/{venue}`: forget a venue's secrets (404 when none are stored)."""
    user_id = await require_user(request)
    venue = _venue(request)
    deleted = await _call(users.delete_secret_row, request.app.state.store, user_id, venue)
    if not deleted:
        raise ApiError(404, f"no {venue} secrets are stored for user {user_id}")
    request.app.state.log.info("exchange secrets deleted", user_id=user_id, venue=venue)
    return json_response(users.SecretsView(venue=venue, configured=False, fields=[], updated_at=None))


ROUTES: list[BaseRoute] = [
    Route("/auth/token", auth_token, methods=["POST"]),
    Route("/admin/users", admin_create_user, methods=["POST"]),
    Route("/admin/users", admin_list_users, methods=["GET"]),
    Route("/admin/users/{user_id}/api-key", admin_rotate_key, methods=["POST"]),
    Route("/admin/users/{user_id}", admin_update_user, methods=["PATCH"]),
    Route("/profile", get_profile, methods=["GET"]),
    Route("/profile", put_profile, methods=["PUT"]),
    Route("/profile/secrets", list_secrets, methods=["GET"]),
    Route("/profile/secrets/{venue}", put_secrets, methods=["PUT"]),
    Route("/profile/secrets/{venue}", delete_secrets, methods=["DELETE"]),
]
