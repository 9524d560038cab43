"""Tiingo IEX intraday: `GET /iex/{ticker}/prices?startDate=&endDate=&resampleFreq=1min&columns=...&token=`.

The response is a JSON list of `{date: "2024-01-02T14:30:00.000Z", open, high, low, close,
volume}`, ascending, `date` taken as the bar open in UTC. IEX covers US equities only: crypto
and forex symbols are refused without a request (`unsupported`, so the chain skips Tiingo for
them). Errors come as `{"detail": ...}`.

`startDate`/`endDate` are dates whose zone the API does not state, so the request covers one
day more on each side of the UTC bounds (UTC date of the start - 1 .. UTC date of the end + 1)
and the bars outside the bounds are dropped.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from libs.bars.providers.base import Bound, HttpProvider, empty_frame, frame_from, numbers, utc_bounds, within

_KEYS = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume"}


class TiingoProvider(HttpProvider):
    """Tiingo's IEX historical intraday prices at 1-minute resampling."""

    name = "tiingo"
    assets = frozenset({"us_equity"})

    async def fetch_minutes(self, symbol: str, start: Bound, end: Bound, *, asset: str | None = None) -> pl.DataFrame:
        if not self.supports(asset):
            raise self.unsupported(symbol, asset)
        lo, hi = utc_bounds(start, end)
        first = lo.date() - dt.timedelta(days=1)
        last = (hi - dt.timedelta(microseconds=1)).date() + dt.timedelta(days=1)
        ticker = symbol.lower()
        what = f"GET /iex/{ticker}/prices {first}..{last}"
        params = {
            "startDate": first.isoformat(),
            "endDate": last.isoformat(),
            "resampleFreq": "1min",
            "columns": "open,high,low,close,volume",
            "token": self.api_key,
        }
        body = await self.get_json(f"{self.host}/iex/{ticker}/prices", params, symbol, what)
        body = self.bar_list(body, symbol, what, ("detail", "error"))
        if not body:
            return empty_frame()
        cols = numbers(body, _KEYS, self, symbol, what)
        dates = []
        for i, item in enumerate(body):
            value = item.get("date")
            if not isinstance(value, str):
                raise self.malformed(symbol, what, f"bar {i} field 'date' is {value!r}, not an ISO time")
            dates.append(value)
        try:
            ts = pl.Series("ts", dates).str.to_datetime(time_unit="ns", time_zone="UTC", strict=True)
        except Exception:
            raise self.malformed(
                symbol, what, f"a 'date' is not an ISO time with offset (first: {dates[0]!r})"
            ) from None
        return within(frame_from(ts.dt.epoch("ns").to_numpy(), cols), lo, hi)
