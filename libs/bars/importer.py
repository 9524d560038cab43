"""Import a bar file into the store: read and check it, store 1-minute (or daily) bars, resample what changed.

A file of 1-minute bars is stored as `1min`, then the sessions it touches are resampled from
the store (so a file covering half a day already stored yields whole-day bins). A file of daily
bars is stored as `daily` as it is. Any other spacing is refused: the manager keeps 1-minute
bars and derives the rest.

A 1-minute import also counts its bars outside the asset class's sessions (`rows_outside_sessions`):
they are stored but fall out of every resampled timeframe. Many of them usually mean the file's
times are local while `tz` said UTC (the CLI warns above 10%, `OUTSIDE_WARN_FRACTION`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import numpy as np
import polars as pl

from libs.bars.assets import AssetClass, asset_class, check_asset
from libs.bars.calendars import session_arrays
from libs.bars.files import infer_timeframe, read_bars_file
from libs.bars.resample import RESAMPLE_TARGETS
from libs.bars.store import check_symbol, resample_stored, write_bars
from libs.store import Store


class ImportResult(msgspec.Struct, kw_only=True):
    """What an import stored: the bars read and written, their span, and rows per resampled timeframe."""

    path: str
    symbol: str
    asset_class: str
    timeframe: str
    rows_read: int
    rows_written: int
    first_ts: dt.datetime | None
    last_ts: dt.datetime | None
    resampled: dict[str, int] = {}
    rows_outside_sessions: int | None = None
    """1-minute bars outside the asset class's sessions (None for daily imports or dates beyond the calendar)."""


OUTSIDE_WARN_FRACTION = 0.10
"""Above this share of 1-minute bars outside the sessions, the CLI asks whether --tz is right."""
SESSION_NAMES = {"us_equity": "XNYS", "forex": "forex (17:00 New York roll)", "crypto": "crypto (UTC day)"}
"""How a warning names each asset class's sessions."""


def import_file(
    store: Store,
    path: Path | str,
    symbol: str,
    *,
    asset: AssetClass | None = None,
    tz: str = "UTC",
    resample: bool = True,
    source: str = "file",
) -> ImportResult:
    """Read `path` (CSV or Parquet, see `libs.bars.files`), store its bars for `symbol`, resample 1min imports."""
    symbol = check_symbol(symbol)
    asset = check_asset(asset) if asset is not None else asset_class(symbol)
    frame = read_bars_file(path, tz=tz, symbol=symbol)
    if frame.height == 0:
        raise ValueError(f"{path}: no bars to import")
    timeframe = _file_timeframe(frame["ts"], path)
    written = write_bars(store, symbol, frame, timeframe, source=source)
    first, last = frame["ts"][0], frame["ts"][-1]
    resampled: dict[str, int] = {}
    outside = _outside_sessions(frame["ts"], asset) if timeframe == "1min" else None
    if resample and timeframe == "1min":
        # whole sessions around the file's span: a forex trade date ends the day after its start
        resampled = resample_stored(
            store,
            symbol,
            asset,
            first.date() - dt.timedelta(days=1),
            last.date() + dt.timedelta(days=1),
            RESAMPLE_TARGETS,
            source=source,
        )
    return ImportResult(
        path=str(path),
        symbol=symbol,
        asset_class=asset,
        timeframe=timeframe,
        rows_read=frame.height,
        rows_written=written,
        first_ts=first,
        last_ts=last,
        resampled=resampled,
        rows_outside_sessions=outside,
    )


def _outside_sessions(ts: pl.Series, asset: AssetClass) -> int | None:
    """How many bar opens `ts` (sorted) fall in no session of `asset`; None beyond the calendar's range."""
    first, last = ts[0].date(), ts[-1].date()
    try:
        arr = session_arrays(asset, first - dt.timedelta(days=1), last + dt.timedelta(days=1))
    except ValueError:
        return None
    x = ts.dt.epoch("ns").to_numpy()
    i = np.searchsorted(arr.open_ns, x, side="right") - 1
    inside = (i >= 0) & (x < arr.close_ns[np.maximum(i, 0)]) if len(arr) else np.zeros(len(x), bool)
    return int(len(x) - inside.sum())


def _file_timeframe(ts: pl.Series, path: Path | str) -> str:
    """`1min` or `daily` from the bars' spacing; other spacings are a ValueError naming the file."""
    if ts.len() == 1:
        only = ts[0]
        return "daily" if (only.hour, only.minute, only.second) == (0, 0, 0) else "1min"
    timeframe = infer_timeframe(ts)
    if timeframe not in ("1min", "daily"):
        raise ValueError(
            f"{path}: bars are {timeframe} apart; import 1-minute or daily bars (the rest are resampled from 1min)"
        )
    return timeframe
