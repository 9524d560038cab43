"""Polygon.io 1-minute aggregates: `GET /v2/aggs/ticker/{ticker}/range/1/minute/{from}/{to}`.

`from` and `to` are sent as Unix millisecond timestamps (the API takes a date or a millisecond
timestamp): the exact UTC bounds asked for, `to` inclusive as the API reads it (the last
millisecond before the end), so no date convention of Polygon's can cut a UTC day short.
The response is `{ticker, status, resultsCount, results: [{t (ms, bar open), o, h, l, c, v, vw, n}],
next_url}`; a range longer than `limit` bars continues at `next_url` (which does not carry the
API key, so it is added again). Crypto tickers are `X:BTCUSD`, forex `C:EURUSD`.
"""

from __future__ import annotations

import datetime as dt
import re

import httpx
import polars as pl

from libs.bars.providers.base import Bound, HttpProvider, empty_frame, frame_from, numbers, utc_bounds, within

MAX_PAGES = 1_000
_KEYS = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}
_OK = {"OK", "DELAYED"}


def polygon_ticker(symbol: str, asset: str | None = None) -> str:
    """Polygon's ticker for our symbol: `X:BTCUSD` for crypto (BTC-USD, BTC-PERP, BTCUSDT), `C:EURUSD` for forex."""
    if ":" in symbol:
        return symbol
    if asset == "crypto":
        base = re.sub(r"[^A-Z0-9]", "", symbol.upper().replace("-PERP", "USD"))
        return "X:" + re.sub(r"USDT$|USDC$", "USD", base)
    if asset == "forex":
        return "C:" + re.sub(r"[^A-Z]", "", symbol.upper())
    return symbol.upper()


class PolygonProvider(HttpProvider):
    """Polygon aggregates, adjusted, ascending, 50,000 bars a page."""

    name = "polygon"

    async def fetch_minutes(self, symbol: str, start: Bound, end: Bound, *, asset: str | None = None) -> pl.DataFrame:
        if not self.supports(asset):
            raise self.unsupported(symbol, asset)
        lo, hi = utc_bounds(start, end)
        ticker = polygon_ticker(symbol, asset)
        first_ms, last_ms = _ms(lo), _ms(hi) - 1
        what = f"GET /v2/aggs/ticker/{ticker}/range/1/minute/{lo:%Y-%m-%dT%H:%MZ}..{hi:%Y-%m-%dT%H:%MZ}"
        url: str | None = f"{self.host}/v2/aggs/ticker/{ticker}/range/1/minute/{first_ms}/{last_ms}"
        params: dict[str, str] | None = {"adjusted": "true", "sort": "asc", "limit": "50000", "apiKey": self.api_key}
        ts: list[int] = []
        cols: dict[str, list[float]] = {k: [] for k in _KEYS}
        seen: set[str] = set()
        pages = 0
        while url is not None:
            pages += 1
            if pages > MAX_PAGES or url in seen:
                raise self.malformed(symbol, what, f"next_url keeps going after {pages - 1} pages")
            seen.add(url)
            body = await self.get_json(url, params, symbol, what)
            if not isinstance(body, dict):
                raise self.malformed(symbol, what, f"body is {type(body).__name__}, not an object")
            status = body.get("status")
            if status not in _OK:
                reason = body.get("error") or body.get("message") or ""
                raise self.malformed(symbol, what, f"status {status!r} {reason}".strip())
            results = body.get("results") or []
            if not isinstance(results, list):
                raise self.malformed(symbol, what, f"results is {type(results).__name__}, not a list")
            page = numbers(results, {**_KEYS, "t": "t"}, self, symbol, what)
            ts.extend(int(t) * 1_000_000 for t in page.pop("t"))
            for k, v in page.items():
                cols[k].extend(v)
            next_url = body.get("next_url")
            if next_url is not None and not isinstance(next_url, str):
                raise self.malformed(symbol, what, f"next_url is {next_url!r}")
            # next_url carries the cursor but not the key; httpx would replace its query with `params`
            url = str(httpx.URL(next_url).copy_merge_params({"apiKey": self.api_key})) if next_url else None
            params = None
        if not ts:
            return empty_frame()
        return within(frame_from(ts, cols), lo, hi)


def _ms(when: dt.datetime) -> int:
    """Unix milliseconds of an aware datetime."""
    return round(when.timestamp() * 1000)
