"""The `/simulator` web page: one HTML page and its script and stylesheet, served from `static/`.

The page is plain HTML and vanilla JavaScript with no build step and nothing fetched from another
origin, so it works offline and behind a firewall. It talks to the simulator API of this same
service (`/auth/token`, `GET /profile` for the user's name shown in the header, `/simulator/*` and
the `/simulator/ws` WebSocket); the page itself needs no sign-in (it holds no data until the user
signs in with an API key). The trade detail modal is laid out to fit a 1280x720 screen whole; only
its list of checks scrolls inside.

Only the files listed in `ASSETS` are served (no directory listing, no path from the URL ever
reaches the file system), each with a strict Content-Security-Policy: scripts, styles and
connections from this origin only, so data shown on the page cannot run as script even if an
escaping mistake slipped in.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""Where the page's files live (installed with the package: see pyproject's package-data)."""

PAGE = "simulator.html"
ASSETS: dict[str, str] = {
    "simulator.js": "text/javascript; charset=utf-8",
    "simulator.css": "text/css; charset=utf-8",
}
"""Files served under `/static/<name>`, with their content types."""

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
"""`connect-src 'self'` covers the same-origin WebSocket (ws:/wss:) in CSP level 3 browsers."""


async def _file(name: str, media_type: str) -> Response:
    body = await asyncio.to_thread((STATIC_DIR / name).read_bytes)
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


async def simulator_page(request: Request) -> Response:
    """`GET /simulator`: the page."""
    return await _file(PAGE, "text/html; charset=utf-8")


async def static_asset(request: Request) -> Response:
    """`GET /static/<name>`: one of `ASSETS`, else 404."""
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404)
    return await _file(name, media_type)


ROUTES: list[BaseRoute] = [
    Route("/simulator", simulator_page, methods=["GET"]),
    Route("/static/{name}", static_asset, methods=["GET"]),
]
