"""Financial Modeling Prep 1-minute chart: `GET /stable/historical-chart/1min?symbol=&from=&to=&apikey=`.

The response is a JSON list of `{date: "YYYY-MM-DD HH:MM:SS", open, high, low, close, volume}`,
newest first, `date` being the bar open in New York time (converted to UTC here, daylight
saving included). `from`/`to` are New York dates too, so the request runs from the New York
date of the start bound to the New York date of the end bound (a UTC crypto day D spans New
York D-1 19:00/20:00 to D 19:00/20:00: both dates are asked for) and the bars outside the UTC
bounds are dropped. FMP returns a few days of 1-minute bars per call, so longer ranges are
fetched in `chunk_days` pieces. An error comes back as `{"Error Message": ...}`.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import polars as pl

from libs.bars.providers.base import Bound, HttpProvider, empty_frame, frame_from, numbers, utc_bounds, within
from libs.bars.timeutil import NY

CHUNK_DAYS = 5
_KEYS = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def fmp_symbol(symbol: str, asset: str | None = None) -> str:
    """FMP's symbol: `BTCUSD` for crypto, `EURUSD` for forex, the ticker otherwise."""
    if asset in ("crypto", "forex"):
        return re.sub(r"[^A-Z0-9]", "", symbol.upper().replace("-PERP", "USD").replace("USDT", "USD"))
    return symbol.upper()


class FmpProvider(HttpProvider):
    """Financial Modeling Prep intraday chart (the `stable` API)."""

    name = "fmp"
    chunk_days = CHUNK_DAYS

    async def fetch_minutes(self, symbol: str, start: Bound, end: Bound, *, asset: str | None = None) -> pl.DataFrame:
        if not self.supports(asset):
            raise self.unsupported(symbol, asset)
        lo, hi = utc_bounds(start, end)
        day, end_day = _ny_date(lo), _ny_date(hi - dt.timedelta(microseconds=1))
        ticker = fmp_symbol(symbol, asset)
        frames = []
        while day <= end_day:
            last = min(end_day, day + dt.timedelta(days=self.chunk_days - 1))
            frames.append(await self._chunk(symbol, ticker, day, last))
            day = last + dt.timedelta(days=1)
        frames = [f for f in frames if f.height]
        if not frames:
            return empty_frame()
        return within(pl.concat(frames).unique("ts", keep="last").sort("ts"), lo, hi)

    async def _chunk(self, symbol: str, ticker: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        what = f"GET /stable/historical-chart/1min {ticker} {start}..{end}"
        params = {"symbol": ticker, "from": start.isoformat(), "to": end.isoformat(), "apikey": self.api_key}
        body = await self.get_json(f"{self.host}/stable/historical-chart/1min", params, symbol, what)
        body = self.bar_list(body, symbol, what, ("Error Message", "error", "message"))
        if not body:
            return empty_frame()
        cols = numbers(body, _KEYS, self, symbol, what)
        dates = []
        for i, item in enumerate(body):
            value = item.get("date")
            if not isinstance(value, str) or not _DATE.match(value):
                raise self.malformed(symbol, what, f"bar {i} field 'date' is {value!r}, not 'YYYY-MM-DD HH:MM:SS'")
            dates.append(value)
        local = pl.Series("ts", dates).str.strptime(pl.Datetime("ns"), "%Y-%m-%d %H:%M:%S")
        utc = local.dt.replace_time_zone(NY, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
        if utc.null_count():
            bad = dates[utc.is_null().arg_max() or 0]
            raise self.malformed(symbol, what, f"date {bad!r} does not exist in New York time")
        return frame_from(utc.dt.epoch("ns").to_numpy(), cols)


def _ny_date(when: dt.datetime) -> dt.date:
    """The New York calendar date of an aware datetime."""
    return when.astimezone(ZoneInfo(NY)).date()
