"""`markettwin users ...`: manage API users through the report service's admin HTTP API.

Verbs: `add NAME` (prints the new API key, the only time it is shown), `list`, `rotate USER_ID`
(a new key; the old one and tokens made with it stop working), `disable USER_ID` (also stops the
user's active runs; prints their ids, or a warning on stderr when the paper service could not
stop them — the user stays disabled), `enable USER_ID`.
`--json` prints the API's answer as JSON instead of text.

The API is MT_API_URL, else http://MT_HTTP_HOST:MT_HTTP_PORT (a wildcard host becomes
127.0.0.1). The admin token is MT_ADMIN_TOKEN, else the file MT_HOME/admin.token that the
report service writes; when that file is not there yet, one unauthenticated call to
`/admin/users` makes a local report service create it, and it is read again.

Exit codes, as the rest of the CLI: 0 done; 2 bad input (the API refused the request: a bad or
taken name, an unknown user, a rejected admin token, a missing setting); 1 failure (the API
cannot be reached or failed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx
import msgspec

from libs.config import ConfigError, Settings
from libs.users.keys import is_user_id
from libs.users.secretbox import admin_token

TIMEOUT_S = 15.0
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class UsersCliError(Exception):
    """A failure to print as one line, with the exit code it maps to."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_users_parser(subparsers: Any) -> None:
    """Add `users` and its verbs to the `markettwin` sub-command parsers."""
    users = subparsers.add_parser("users", help="API users: add, list, rotate keys, disable (via the admin HTTP API)")
    verbs = users.add_subparsers(dest="users_cmd", required=True)
    add = verbs.add_parser("add", help="create a user and print their API key (shown only this once)")
    add.add_argument("name")
    lst = verbs.add_parser("list", help="every user: id, name, key prefix, created, status")
    rotate = verbs.add_parser("rotate", help="give a user a new API key; the old one stops working")
    rotate.add_argument("user_id")
    disable = verbs.add_parser("disable", help="refuse a user's key and tokens")
    disable.add_argument("user_id")
    enable = verbs.add_parser("enable", help="accept a disabled user again")
    enable.add_argument("user_id")
    for verb in (add, lst, rotate, disable, enable):
        verb.add_argument("--json", action="store_true", help="print the API's JSON answer")


def api_url(settings: Settings) -> str:
    """MT_API_URL, else the report service's address from MT_HTTP_HOST and MT_HTTP_PORT."""
    if settings.api_url:
        return settings.api_url.rstrip("/")
    if not settings.http_port:
        raise ConfigError("MT_HTTP_PORT is 0 (the HTTP API is off): set MT_API_URL to where the API runs")
    host = _WILDCARD.get(settings.http_host, settings.http_host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.http_port}"


def _unreachable(base: str, e: Exception) -> UsersCliError:
    return UsersCliError(
        f"cannot reach the MarketTwin API at {base} ({type(e).__name__}: {e}): is `markettwin up` running? "
        "(set MT_API_URL if the API runs elsewhere)",
        1,
    )


def _admin_token(settings: Settings, http: httpx.Client, base: str) -> str:
    token = admin_token(settings, create=False)
    if token is not None:
        return token
    try:  # a local report service writes MT_HOME/admin.token when first asked for it
        http.get("/admin/users")
    except httpx.TransportError as e:
        raise _unreachable(base, e) from None
    token = admin_token(settings, create=False)
    if token is None:
        raise UsersCliError(
            f"no admin token: set MT_ADMIN_TOKEN to the API's admin token (the report service's MT_ADMIN_TOKEN, "
            f"or its MT_HOME/admin.token; {settings.home}/admin.token does not exist here)",
            2,
        )
    return token


def _call(http: httpx.Client, base: str, method: str, path: str, body: Any = None) -> Any:
    try:
        r = http.request(method, path, json=body)
    except httpx.TransportError as e:
        raise _unreachable(base, e) from None
    try:
        answer = r.json()
    except ValueError:
        answer = {"detail": r.text[:200]}
    if r.status_code < 400:
        return answer
    detail = answer.get("detail", r.text[:200]) if isinstance(answer, dict) else r.text[:200]
    if r.status_code == 401:
        raise UsersCliError(f"the API at {base} refused the admin token: {detail}", 2)
    raise UsersCliError(f"{method} {path}: {detail}", 2 if r.status_code < 500 else 1)


def _print_json(value: Any) -> None:
    print(msgspec.json.format(msgspec.json.encode(value)).decode())


def _print_key(answer: dict[str, Any], verb: str) -> None:
    print(f"{verb} user {answer['user_id']} ({answer['name']})")
    print(f"api key (shown only now; keep it safe): {answer['api_key']}")


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `users` verb against the admin API; errors are one line on stderr and exit 2 or 1."""
    try:
        user_id = getattr(args, "user_id", None)
        if user_id is not None and not is_user_id(user_id):
            raise UsersCliError(f"USER_ID {user_id!r} is not a user id (they look like u0123456789ab)", 2)
        base = api_url(settings)
        with httpx.Client(base_url=base, timeout=TIMEOUT_S) as http:
            http.headers["Authorization"] = f"Bearer {_admin_token(settings, http, base)}"
            cmd = args.users_cmd
            if cmd == "add":
                answer = _call(http, base, "POST", "/admin/users", {"name": args.name})
                if args.json:
                    _print_json(answer)
                else:
                    _print_key(answer, "created")
            elif cmd == "rotate":
                answer = _call(http, base, "POST", f"/admin/users/{args.user_id}/api-key")
                if args.json:
                    _print_json(answer)
                else:
                    _print_key(answer, "new key for")
            elif cmd in ("disable", "enable"):
                answer = _call(http, base, "PATCH", f"/admin/users/{args.user_id}", {"disabled": cmd == "disable"})
                if args.json:
                    _print_json(answer)
                else:
                    print(
                        f"user {answer['user_id']} ({answer['name']}) {'disabled' if answer['disabled'] else 'enabled'}"
                    )
                    if answer.get("stopped_runs"):
                        print(f"stopped active runs: {', '.join(answer['stopped_runs'])}")
                    if answer.get("stop_error"):
                        print(f"markettwin users: warning: {answer['stop_error']}", file=sys.stderr)
            elif cmd == "list":
                listed = _call(http, base, "GET", "/admin/users")["users"]
                if args.json:
                    _print_json(listed)
                else:
                    print(f"{len(listed)} users")
                    for u in listed:
                        status = "disabled" if u["disabled"] else "active"
                        print(f"  {u['user_id']}  {u['api_key_prefix']}…  {u['created_at']}  {status:<8}  {u['name']}")
            else:  # pragma: no cover - argparse enforces the choices
                raise UsersCliError(f"unknown users command {cmd!r}", 2)
    except UsersCliError as e:
        print(f"markettwin users: {e}", file=sys.stderr)
        return e.code
    except ConfigError as e:
        print(f"markettwin users: {e}", file=sys.stderr)
        return 2
    return 0
