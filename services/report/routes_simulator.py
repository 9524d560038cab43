"""The simulator (paper trading) HTTP API and its WebSocket (filled in by the simulator API work)."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
