"""OHLCV bars in ClickHouse: write, read (paged), count and list the `ohlcv` table, and resample stored days.

The bar manager (imports, providers, the nightly update) writes `ohlcv` directly through these
functions; the recorder also writes `ohlcv`, for bars replayed or fetched onto `md.bar.*`.
Rows are keyed by (symbol, timeframe, ts) in a ReplacingMergeTree versioned by `updated_at`:
writing a bar again replaces it (the newest write wins), and every read uses FINAL so a
re-written day is never counted twice. Time ranges are half-open, [start, end).

Values go into SQL as escaped literals, not `{name:Type}` parameters: chDB 4.x can deadlock a
parameterised query against an insert from another thread (see `services/simjobs/queries.py`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from libs.bars.assets import AssetClass, check_asset, check_timeframe
from libs.bars.calendars import check_range, session_arrays
from libs.bars.resample import RESAMPLE_TARGETS, resample_all
from libs.bars.schema import TS_TYPE, VALUE_COLUMNS, check_frame, empty_frame
from libs.bars.timeutil import from_ns, to_ns
from libs.ids import now_ns
from libs.store import Store
from libs.store.sql import quote_string
from libs.store.tables import OHLCV

TABLE = "ohlcv"
_SELECT = "SELECT ts, open, high, low, close, volume FROM {db}.ohlcv FINAL"


def check_symbol(symbol: str) -> str:
    """`symbol` stripped, or a ValueError naming it when it is empty or not a string."""
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    return symbol.strip()


def _where(symbol: str, timeframe: str, start: dt.datetime | None, end: dt.datetime | None) -> str:
    parts = [
        f"symbol = {quote_string(check_symbol(symbol))}",
        f"timeframe = {quote_string(check_timeframe(timeframe))}",
    ]
    lo = to_ns(start, "start") if start is not None else None
    hi = to_ns(end, "end") if end is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"start {start} is after end {end}")
    if lo is not None:
        parts.append(f"ts >= fromUnixTimestamp64Nano(toInt64({lo}), 'UTC')")
    if hi is not None:
        parts.append(f"ts < fromUnixTimestamp64Nano(toInt64({hi}), 'UTC')")
    return " WHERE " + " AND ".join(parts)


def bars_table(symbol: str, frame: pl.DataFrame, timeframe: str, *, source: str = "", venue: str = "") -> pa.Table:
    """`frame` as an Arrow table shaped like `ohlcv` (updated_at = now)."""
    frame = check_frame(frame)
    n = frame.height
    ts = frame["ts"].to_arrow().cast(OHLCV.field("ts").type)
    return pa.table(
        {
            "symbol": pa.array([symbol] * n, pa.string()),
            "timeframe": pa.array([timeframe] * n, pa.string()),
            "ts": ts,
            **{c: frame[c].to_arrow() for c in VALUE_COLUMNS},
            "venue": pa.array([venue] * n, pa.string()),
            "source": pa.array([source] * n, pa.string()),
            "updated_at": pa.array(np.full(n, now_ns(), dtype="datetime64[ns]"), OHLCV.field("updated_at").type),
        },
        schema=OHLCV,
    )


def write_bars(
    store: Store, symbol: str, frame: pl.DataFrame, timeframe: str = "1min", *, source: str = "", venue: str = ""
) -> int:
    """Store `frame`'s bars for `symbol` at `timeframe` (replacing bars at the same ts); returns rows written."""
    symbol = check_symbol(symbol)
    check_timeframe(timeframe)
    table = bars_table(symbol, frame, timeframe, source=source, venue=venue)
    return store.insert_arrow(TABLE, table)


def read_bars(
    store: Store,
    symbol: str,
    timeframe: str = "1min",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    *,
    order: Literal["asc", "desc"] = "asc",
    limit: int | None = None,
    offset: int = 0,
) -> pl.DataFrame:
    """Bars of `symbol` at `timeframe` with start <= ts < end, ordered by ts, paged by limit/offset."""
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', got {order!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int, got {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, got {offset!r}")
    sql = _SELECT + _where(symbol, timeframe, start, end) + f" ORDER BY ts {order.upper()}"
    if limit is not None:
        sql += f" LIMIT {limit} OFFSET {offset}"
    elif offset:
        sql += f" LIMIT 18446744073709551615 OFFSET {offset}"
    frame = store.query_df(sql)
    if frame.height == 0:
        return empty_frame()
    return frame.select(pl.col("ts").cast(TS_TYPE), *(pl.col(c).cast(pl.Float64) for c in VALUE_COLUMNS))


def count_bars(
    store: Store, symbol: str, timeframe: str = "1min", start: dt.datetime | None = None, end: dt.datetime | None = None
) -> int:
    """How many distinct bars of `symbol` at `timeframe` lie in [start, end)."""
    rows = store.query_arrow("SELECT count() AS n FROM {db}.ohlcv FINAL" + _where(symbol, timeframe, start, end))
    return int(rows["n"][0].as_py())


def stored_symbols(store: Store, timeframe: str = "1min") -> list[str]:
    """Every symbol with at least one bar at `timeframe`, sorted."""
    rows = store.query_arrow(
        f"SELECT DISTINCT symbol FROM {{db}}.ohlcv WHERE timeframe = {quote_string(check_timeframe(timeframe))} "
        "ORDER BY symbol"
    )
    return [str(s) for s in rows["symbol"].to_pylist()]


def bar_range(store: Store, symbol: str, timeframe: str = "1min") -> tuple[dt.datetime, dt.datetime] | None:
    """(first, last) bar open time of `symbol` at `timeframe`, or None when it has none."""
    rows = store.query_arrow(
        "SELECT count() AS n, toUnixTimestamp64Nano(min(ts)) AS lo, toUnixTimestamp64Nano(max(ts)) AS hi "
        "FROM {db}.ohlcv" + _where(symbol, timeframe, None, None)
    ).to_pylist()[0]
    if not rows["n"]:
        return None
    return from_ns(rows["lo"]), from_ns(rows["hi"])


def last_bar_ts(store: Store, symbol: str, timeframe: str = "1min") -> dt.datetime | None:
    """Open time of the newest bar of `symbol` at `timeframe`, or None when it has none."""
    found = bar_range(store, symbol, timeframe)
    return found[1] if found else None


def resample_stored(
    store: Store,
    symbol: str,
    asset: AssetClass,
    start: dt.date,
    end: dt.date,
    timeframes: Iterable[str] = RESAMPLE_TARGETS,
    *,
    source: str = "resample",
) -> dict[str, int]:
    """Read the stored 1min bars of the sessions dated [start, end], resample, store each timeframe.

    Whole sessions are read, so no bin is cut at the range edges; returns rows written per timeframe.
    """
    check_asset(asset)
    check_range(start, end)
    timeframes = [check_timeframe(t) for t in timeframes]
    arr = session_arrays(asset, start, end)
    if len(arr) == 0:
        return {t: 0 for t in timeframes}
    lo, hi = from_ns(int(arr.open_ns[0])), from_ns(int(arr.close_ns[-1]))
    minutes = read_bars(store, symbol, "1min", lo, hi)
    out = resample_all(minutes, asset, timeframes, input_timeframe="1min")
    return {t: write_bars(store, symbol, out[t], t, source=source) for t in timeframes}
