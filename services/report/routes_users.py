"""Users, API keys, tokens, profiles and exchange secrets over HTTP (filled in by the users work)."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
