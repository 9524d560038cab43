"""Tiingo IEX intraday: `GET /iex/{ticker}/prices?startDate=&endDate=&resampleFreq=1min&columns=...&token=`.

The response is a JSON list of `{date: "2024-01-02T14:30:00.000Z", open, high, low, close,
volume}`, ascending, `date` taken as the bar open in UTC. IEX covers US equities only: crypto
and forex symbols are refused (so a fallback chain moves on). Errors come as `{"detail": ...}`.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from libs.bars.providers.base import HttpProvider, ProviderError, empty_frame, frame_from, numbers, within_days

_KEYS = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume"}


class TiingoProvider(HttpProvider):
    """Tiingo's IEX historical intraday prices at 1-minute resampling."""

    name = "tiingo"

    async def fetch_minutes(
        self, symbol: str, start: dt.date, end: dt.date, *, asset: str | None = None
    ) -> pl.DataFrame:
        if asset not in (None, "us_equity"):
            raise ProviderError(self.name, symbol, f"IEX intraday has US equities only, not {asset}")
        ticker = symbol.lower()
        what = f"GET /iex/{ticker}/prices {start}..{end}"
        params = {
            "startDate": start.isoformat(),
            "endDate": end.isoformat(),
            "resampleFreq": "1min",
            "columns": "open,high,low,close,volume",
            "token": self.api_key,
        }
        body = await self.get_json(f"{self.host}/iex/{ticker}/prices", params, symbol, what)
        if isinstance(body, dict):
            reason = body.get("detail") or body.get("error")
            raise self.malformed(symbol, what, f"error object: {reason!r}" if reason else f"object {list(body)[:5]}")
        if not isinstance(body, list):
            raise self.malformed(symbol, what, f"body is {type(body).__name__}, not a list")
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
        return within_days(frame_from(ts.dt.epoch("ns").to_numpy(), cols), start, end)
