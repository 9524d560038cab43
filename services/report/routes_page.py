"""The /simulator web page and its static files (filled in by the page work)."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
