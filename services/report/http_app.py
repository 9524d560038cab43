"""The report service's HTTP API as a Starlette app: the run report and the OHLCV bar manager.

`GET /health` (`ok`), `GET /report` (JSON), `GET /report.txt` (text), and the bar routes of
`routes_bars`. Errors are JSON `{"detail": ...}`.

An unexpected exception is caught by `CrashGuard`, a pure ASGI middleware around the routes: the
client gets a 500 whose detail is only `internal error, see the report service log (ref <id>)`,
and the log gets one structured line `http request failed` under that reference. The exception
is not re-raised: Starlette's outer ServerErrorMiddleware would re-raise it after answering, and
uvicorn would then print a plain-text traceback (with the exception's values) into the log and
drop the keep-alive connection. What the line holds depends on the request (`quiet_failure`):
for a request that carries a body (POST/PUT/PATCH/DELETE) or a route whose requests may hold
secrets (`/auth/*`, `/admin/*`, `/profile*`), and for a WebSocket (its URL carries the token),
only ref, method, path and `error` = the exception's type — an exception's message, arguments
or traceback can quote the body (a UnicodeDecodeError holds the bytes it could not decode); for
other requests `error` is `<type>: <message>` and `traceback` the formatted traceback. A client
that disconnects while its body is read (ClientDisconnect) is an info line, not a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.bars.assets import parse_overrides
from libs.config import Settings
from libs.ids import new_id
from libs.store import Store
from services.report import auth, routes_bars, routes_page, routes_simulator, routes_users
from services.report.routes_bars import ApiError, error_response
from services.report.summary import build, render


async def health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def report_json(request: Request) -> Response:
    auth.require_admin(request)  # every user's runs: an operator's view
    return Response(await request.app.state.summary_json(), media_type="application/json")


async def report_text(request: Request) -> Response:
    auth.require_admin(request)
    report = await asyncio.to_thread(build, request.app.state.store)
    return PlainTextResponse(render(report) + "\n")


SECRET_PATH_PREFIXES = ("/auth", "/admin", "/profile")
"""Routes whose requests may hold secrets (API keys, exchange keys, the admin token's targets)."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def quiet_failure(method: str, path: str) -> bool:
    """True when a failure of this request may be logged by exception type and reference only."""
    return method.upper() in BODY_METHODS or path.startswith(SECRET_PATH_PREFIXES)


class CrashGuard:
    """Pure ASGI middleware: an unexpected exception becomes a JSON 500 (or a 1011 WebSocket close)
    and one log line (module docstring); it is never re-raised."""

    def __init__(self, app: ASGIApp, log: Any) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] in ("http.response.start", "websocket.accept", "websocket.close"):
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:  # the client left while its body was being read: nobody to answer
            self.log.info("client disconnected", method=scope.get("method", ""), path=scope.get("path", ""))
        except Exception as exc:
            ref = new_id()
            self._log(scope, exc, ref)
            detail = f"internal error, see the report service log (ref {ref})"
            if scope["type"] == "http":
                if not started:  # else part of a response is out: nothing more can be said
                    await error_response(500, detail)(scope, receive, send)
            else:
                with contextlib.suppress(Exception):  # the socket may be gone already
                    await send({"type": "websocket.close", "code": 1011, "reason": f"internal error (ref {ref})"})

    def _log(self, scope: Scope, exc: Exception, ref: str) -> None:
        method = scope.get("method", "WEBSOCKET")
        path = scope.get("path", "")
        fields: dict[str, Any] = {"ref": ref, "method": method, "path": path, "error": type(exc).__name__}
        if scope["type"] == "http" and not quiet_failure(method, path):  # a WebSocket's URL holds its token
            fields["error"] = f"{type(exc).__name__}: {str(exc)[:2_000]}"
            fields["traceback"] = "".join(traceback.format_exception(exc))
        self.log.error("http request failed", **fields)


def build_app(store: Store, nc: Any, summary_json: Any, log: Any, settings: Settings) -> Starlette:
    """The app over `store` (ClickHouse), `nc` (a nats-py connection) and the report's JSON maker;
    MT_BARS_ASSET_OVERRIDES is checked here, so a bad value stops the service."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.detail)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/report", report_json, methods=["GET"]),
            Route("/report.txt", report_text, methods=["GET"]),
            *routes_bars.ROUTES,
            *routes_users.ROUTES,
            *routes_simulator.ROUTES,
            *routes_page.ROUTES,
        ],
        middleware=[Middleware(CrashGuard, log=log)],
        exception_handlers={ApiError: api_error, HTTPException: http_error},
    )
    app.state.store = store
    app.state.nc = nc
    app.state.summary_json = summary_json
    app.state.asset_overrides = parse_overrides(settings.bars_asset_overrides)
    app.state.settings = settings
    auth.init(app.state, settings)  # the server secrets exist (or a bad MT_* secret stops the service) now
    app.state.log = log
    return app
