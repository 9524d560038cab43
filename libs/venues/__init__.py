"""Live venue connectors (read-only market data): Polymarket and Kalshi.

Parsers turn each venue response body into integer books in YES terms (`books.py`); the
clients (`polymarket.py`, `kalshi.py`) fetch through the venues' maintained Python clients
and hand back the raw bodies, so a recording replays through the very same parsers.
`mapping.py` reads the cross-venue market mapping file; `pairing.py` proposes pairs.
"""

POLYMARKET = "polymarket"
KALSHI = "kalshi"
VENUES = (POLYMARKET, KALSHI)
