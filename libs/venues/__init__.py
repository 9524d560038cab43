"""Live venue connectors (read-only market data): Polymarket and Kalshi.

Parsers turn each venue response body into integer books in YES terms (`books.py`); the
clients (`polymarket.py`, `kalshi.py`) fetch through the venues' maintained Python clients
and hand back the raw bodies, so a recording replays through the very same parsers.
`mapping.py` reads the cross-venue market mapping file; `pairing.py` proposes pairs.
"""

from typing import Any

POLYMARKET = "polymarket"
KALSHI = "kalshi"
VENUES = (POLYMARKET, KALSHI)


def warn_cut_short(log: Any, venue: str, max_pages: int, markets: int, cursor: str) -> None:
    """Say that a paginated markets list stopped at `max_pages` with pages left (None log: silent)."""
    if log is not None:
        log.warning(
            "markets list cut short",
            venue=venue,
            max_pages=max_pages,
            markets=markets,
            next_cursor=cursor,
            note="more pages remain: raise max_pages (--max-pages) to get them all",
        )
