"""The report service's HTTP API as a Starlette app: the run report and the OHLCV bar manager.

`GET /health` (`ok`), `GET /report` (JSON), `GET /report.txt` (text), and the bar routes of
`routes_bars`. Errors are JSON `{"detail": ...}`. An unexpected one is a 500 whose detail is only
`internal error, see the report service log (ref <id>)`: the exception (which may hold SQL or
paths) goes to the log under that reference, never to the client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from libs.bars.assets import parse_overrides
from libs.config import Settings
from libs.ids import new_id
from libs.store import Store
from services.report import routes_bars, routes_page, routes_simulator, routes_users
from services.report.routes_bars import ApiError, error_response
from services.report.summary import build, render


async def health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def report_json(request: Request) -> Response:
    return Response(await request.app.state.summary_json(), media_type="application/json")


async def report_text(request: Request) -> Response:
    report = await asyncio.to_thread(build, request.app.state.store)
    return PlainTextResponse(render(report) + "\n")


def build_app(store: Store, nc: Any, summary_json: Any, log: Any, settings: Settings) -> Starlette:
    """The app over `store` (ClickHouse), `nc` (a nats-py connection) and the report's JSON maker;
    MT_BARS_ASSET_OVERRIDES is checked here, so a bad value stops the service."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.detail)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

    async def crash(request: Request, exc: Exception) -> Response:
        ref = new_id()
        log.error(
            "http request failed",
            ref=ref,
            method=request.method,
            path=request.url.path,
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )
        return error_response(500, f"internal error, see the report service log (ref {ref})")

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
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: crash},
    )
    app.state.store = store
    app.state.nc = nc
    app.state.summary_json = summary_json
    app.state.asset_overrides = parse_overrides(settings.bars_asset_overrides)
    app.state.settings = settings
    app.state.log = log
    return app
