"""How much one bar-manager request may ask for: symbols, days, and symbol-days for synchronous reports.

The nightly update (runs in the background) checks symbols and days; the completeness report
(answered while the HTTP client waits) also checks their product, so one request cannot make the
API read years of minutes for a thousand symbols.
"""

from __future__ import annotations

import datetime as dt

MAX_SYMBOLS = 1_000
"""Most symbols in one request."""
MAX_DAYS = 3_660
"""Most days from start to end of one request (about ten years)."""
MAX_SYMBOL_DAYS = 100_000
"""Most symbols x days in one completeness report (e.g. 27 symbols over ten years, 1,000 over 100 days)."""


def check_size(symbols: int, start: dt.date | None, end: dt.date | None, *, synchronous: bool = False) -> None:
    """A ValueError naming the limit when a request has too many symbols, days, or (synchronous) symbol-days."""
    if symbols > MAX_SYMBOLS:
        raise ValueError(f"symbols: {symbols} symbols, at most {MAX_SYMBOLS} per request")
    if start is None or end is None:
        return
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise ValueError(f"start_date..end_date spans {days} days, at most {MAX_DAYS}")
    if synchronous and symbols * days > MAX_SYMBOL_DAYS:
        raise ValueError(
            f"{symbols} symbols x {days} days = {symbols * days} symbol-days, at most {MAX_SYMBOL_DAYS} per "
            "report: ask for fewer symbols or a shorter range"
        )
