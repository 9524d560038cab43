"""OHLCV bar files (CSV or Parquet) read into one checked, UTC-stamped polars frame.

`read_bars_file` accepts the shapes providers and peer tools write: column names in any case
(`timestamp`/`date`/`datetime`/`time`/`t`/`ts`, or a blank first header as pandas writes an
index; `open`/`o`, `high`/`h`, `low`/`l`, `close`/`c`, `volume`/`vol`/`v`), times as ISO strings
(date only, with or without time, fraction and offset), or integer epoch seconds / ms / us / ns
(told apart by magnitude), and Parquet timestamp/date columns.

Time rules. A date-only value is a daily bar: its date at 00:00 UTC (as `BarBatch` labels
daily bars), whatever `tz`. A time without offset is wall time in `tz` (default UTC), converted
to UTC with that zone's daylight-saving rules (ambiguous fall-back times are resolved from the
order of the rows; a time skipped by a spring-forward is an error). A time with an offset or
`Z`, and an epoch number, is absolute.

Checks (each a `BarsFileError` naming the file, the 1-based data row, the column and the
value): a missing column, an unparseable time, a price or volume that is empty, not a number,
not finite or negative, `high` below `max(open, close)` or `low` above `min(open, close)`,
and a duplicate timestamp. Rows out of order are NOT an error: some providers write newest
first, so the frame is sorted ascending by time (naive times written newest first are placed in the time zone in
ascending order, so an autumn clock change resolves either way). Duplicates are refused rather
than guessed.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import polars as pl

from libs.bars.assets import TIMEFRAME_MINUTES
from libs.bars.schema import TS_TYPE, VALUE_COLUMNS

_ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("timestamp", "datetime", "date", "time", "ts", "t", "", "date_time", "index"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
}
_SYMBOL_ALIASES = ("symbol", "ticker", "instrument")
_DATE_ONLY = r"^\d{4}-\d{2}-\d{2}$"
_INTEGER = r"^[+-]?\d+$"
_HAS_OFFSET = r"(?:[zZ]|[+-]\d{2}:?\d{2})$"
_ROW = "__row"


class BarsFileError(ValueError):
    """A bar file that cannot be used as given; the message names file, row, column and value."""


def read_bars_file(path: Path | str, *, tz: str = "UTC", symbol: str | None = None) -> pl.DataFrame:
    """Read and check one bar file: columns ts (bar open, UTC ns), open, high, low, close, volume.

    `tz` is the zone of naive times. `symbol` selects that symbol's rows when the file has a
    symbol/ticker column (a file holding several symbols needs it); it is ignored otherwise.
    """
    path = Path(path)
    name = str(path)
    check_tz(tz)
    if not path.exists():
        raise BarsFileError(f"{name}: no such bar file")
    raw = _read_raw(path)
    raw = raw.with_row_index(_ROW, offset=1)
    cols = _map_columns(raw, name)
    raw = _select_symbol(raw, name, symbol)
    if raw.height == 0:
        raise BarsFileError(f"{name}: no bars" + (f" for symbol {symbol!r}" if symbol else ""))
    rows = raw[_ROW].to_numpy()
    ts = _parse_times(raw[cols["ts"]], name, cols["ts"], rows, tz)
    values = {c: _parse_numbers(raw[cols[c]], name, cols[c], rows) for c in VALUE_COLUMNS}
    _check_values(values, cols, name, rows)
    order = np.argsort(ts, kind="stable")
    ts_sorted = ts[order]
    dup = np.flatnonzero(ts_sorted[1:] == ts_sorted[:-1])
    if dup.size:
        a, b = sorted((int(rows[order[dup[0]]]), int(rows[order[dup[0] + 1]])))
        when = pd.Timestamp(int(ts_sorted[dup[0]]), tz="UTC").isoformat()
        raise BarsFileError(f"{name}: rows {a} and {b}: duplicate {cols['ts'] or 'time'} {when}")
    return pl.DataFrame(
        {"ts": pl.Series(ts_sorted, dtype=pl.Int64).cast(TS_TYPE)}
        | {c: pl.Series(values[c][order], dtype=pl.Float64) for c in VALUE_COLUMNS}
    )


def check_tz(tz: str) -> str:
    """`tz` when it is an IANA time zone name (or UTC); a BarsFileError naming the value otherwise."""
    if isinstance(tz, str) and tz.strip().upper() == "UTC":
        return tz
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):  # ValueError: a path-like key such as '../x'
        raise BarsFileError(
            f"tz: unknown time zone {tz!r} (an IANA name such as 'America/New_York' or 'UTC')"
        ) from None
    return tz


def _read_raw(path: Path) -> pl.DataFrame:
    """The file's cells: CSV as strings (parsed later, so a bad cell gets its row), Parquet as typed."""
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            return pl.read_parquet(path)
        if (suffixes and suffixes[-1] in (".csv", ".txt")) or suffixes[-2:] == [".csv", ".gz"]:
            return pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise BarsFileError(f"{path}: not a readable {suffixes[-1].lstrip('.')} file ({exc})") from exc
    raise BarsFileError(f"{path}: unknown bar file type {path.suffix!r} (expected .csv or .parquet)")


def _map_columns(df: pl.DataFrame, name: str) -> dict[str, str]:
    """Our column -> the file's column, matching names case-insensitively."""
    by_lower: dict[str, str] = {}
    for c in df.columns:
        by_lower.setdefault(c.strip().lower(), c)
    out: dict[str, str] = {}
    for ours, aliases in _ALIASES.items():
        found = next((by_lower[a] for a in aliases if a in by_lower), None)
        if found is None:
            have = ", ".join(repr(c) for c in df.columns if c != _ROW)
            raise BarsFileError(f"{name}: missing column {ours!r} (accepted names: {aliases}); the file has {have}")
        out[ours] = found
    return out


def _select_symbol(df: pl.DataFrame, name: str, symbol: str | None) -> pl.DataFrame:
    col = next((c for c in df.columns if c.strip().lower() in _SYMBOL_ALIASES), None)
    if col is None:
        return df
    values = df[col].cast(pl.String)
    if symbol is not None:
        return df.filter(values == symbol)
    distinct = values.drop_nulls().unique().sort().to_list()
    if len(distinct) > 1:
        shown = ", ".join(distinct[:5]) + (", ..." if len(distinct) > 5 else "")
        raise BarsFileError(f"{name}: column {col!r} holds {len(distinct)} symbols ({shown}): pass symbol=")
    return df


def _parse_times(col: pl.Series, name: str, label: str, rows: np.ndarray, tz: str) -> np.ndarray:
    """Bar open times as int64 UTC nanoseconds."""
    label = label or "time (blank header)"
    nulls = col.is_null().to_numpy()
    if nulls.any():
        raise BarsFileError(f"{name} row {int(rows[np.argmax(nulls)])}: {label} is empty")
    dtype = col.dtype
    if dtype == pl.Date:
        return col.cast(pl.Datetime("ns")).dt.replace_time_zone("UTC").cast(pl.Int64).to_numpy()
    if isinstance(dtype, pl.Datetime):
        dt = col.cast(pl.Datetime("ns", dtype.time_zone))
        if dtype.time_zone:
            return dt.dt.convert_time_zone("UTC").cast(pl.Int64).to_numpy()
        return _localize(dt.to_pandas(), tz, name, label, rows)
    if dtype.is_integer():
        return _epoch(col.cast(pl.Int64).to_numpy(), name, label, rows)
    if dtype.is_float():
        x = col.to_numpy()
        bad = ~np.isfinite(x) | (x != np.floor(x))
        if bad.any():
            i = int(np.argmax(bad))
            raise BarsFileError(f"{name} row {int(rows[i])}: {label} {x[i]!r} is not an integer epoch time")
        return _epoch(x.astype(np.int64), name, label, rows)
    s = col.cast(pl.String).str.strip_chars()
    if s.str.contains(_INTEGER).all():
        return _epoch(s.cast(pl.Int64, strict=False).to_numpy(), name, label, rows)
    if s.str.contains(_DATE_ONLY).all():
        parsed = s.str.to_date("%Y-%m-%d", strict=False)
        _raise_unparsed(parsed.is_null().to_numpy(), s, name, label, rows)
        return parsed.cast(pl.Datetime("ns")).cast(pl.Int64).to_numpy()
    return _parse_iso(s, name, label, rows, tz)


def _parse_iso(s: pl.Series, name: str, label: str, rows: np.ndarray, tz: str) -> np.ndarray:
    """ISO strings: offset-bearing ones are absolute, the others wall time in `tz`."""
    text = s.to_pandas()
    aware = s.str.contains(_HAS_OFFSET).to_numpy()
    out = np.zeros(len(s), np.int64)
    if aware.any():
        got = pd.to_datetime(text[aware], format="ISO8601", utc=True, errors="coerce")
        _raise_unparsed(got.isna().to_numpy(), s.filter(pl.Series(aware)), name, label, rows[aware])
        out[aware] = got.dt.as_unit("ns").astype("int64").to_numpy()
    if (~aware).any():
        fast = s.filter(pl.Series(~aware)).str.to_datetime(time_unit="ns", strict=False)  # one inferred format
        if fast.null_count() == 0:
            out[~aware] = _localize(fast.to_pandas(), tz, name, label, rows[~aware])
            return out
        got = pd.to_datetime(text[~aware], format="ISO8601", errors="coerce")
        _raise_unparsed(got.isna().to_numpy(), s.filter(pl.Series(~aware)), name, label, rows[~aware])
        out[~aware] = _localize(got.dt.as_unit("ns"), tz, name, label, rows[~aware])
    return out


def _localize(naive: pd.Series, tz: str, name: str, label: str, rows: np.ndarray) -> np.ndarray:
    """Naive wall times in `tz` to UTC nanoseconds, daylight-saving aware.

    An ambiguous fall-back hour is resolved from the order of the times, which pandas reads
    oldest first: a file written newest first (first time after the last) is localised reversed.
    """
    naive = pd.Series(pd.to_datetime(naive)).dt.as_unit("ns").reset_index(drop=True)
    if tz.upper() == "UTC":
        return naive.astype("int64").to_numpy()
    newest_first = len(naive) > 1 and naive.iloc[0] > naive.iloc[-1]
    if newest_first:
        naive, rows = naive[::-1].reset_index(drop=True), rows[::-1]
    try:
        local = naive.dt.tz_localize(tz, ambiguous="infer", nonexistent="raise")
    except Exception as exc:  # pytz/zoneinfo/pandas raise several types for a bad zone or a DST gap
        nonexistent = naive.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").isna().to_numpy()
        if nonexistent.any():
            i = int(np.argmax(nonexistent))
            raise BarsFileError(
                f"{name} row {int(rows[i])}: {label} {naive[i]} does not exist or is ambiguous in {tz} "
                f"(daylight-saving change)"
            ) from exc
        raise BarsFileError(f"{name}: cannot place the times in time zone {tz!r} ({exc})") from exc
    out = local.dt.tz_convert("UTC").astype("int64").to_numpy()
    return out[::-1].copy() if newest_first else out


def _epoch(x: np.ndarray, name: str, label: str, rows: np.ndarray) -> np.ndarray:
    """Integer epoch times to ns; the unit is told by magnitude (s < 1e11 <= ms < 1e14 <= us < 1e17 <= ns)."""
    if np.any(x < 0):
        i = int(np.argmax(x < 0))
        raise BarsFileError(f"{name} row {int(rows[i])}: {label} {int(x[i])} is a negative epoch time")
    big = int(np.max(x))
    scale = 1_000_000_000 if big < 10**11 else 1_000_000 if big < 10**14 else 1_000 if big < 10**17 else 1
    return x.astype(np.int64) * scale


def _raise_unparsed(bad: np.ndarray, s: pl.Series, name: str, label: str, rows: np.ndarray) -> None:
    if bad.any():
        i = int(np.argmax(bad))
        raise BarsFileError(f"{name} row {int(rows[i])}: {label} {s[i]!r} is not a date or time")


def _parse_numbers(col: pl.Series, name: str, label: str, rows: np.ndarray) -> np.ndarray:
    """One price/volume column as float64, refusing empty and non-numeric cells."""
    nulls = col.is_null().to_numpy()
    if nulls.any():
        raise BarsFileError(f"{name} row {int(rows[np.argmax(nulls)])}: {label} is empty")
    if col.dtype == pl.String:
        x = col.str.strip_chars().cast(pl.Float64, strict=False)
        bad = x.is_null().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise BarsFileError(f"{name} row {int(rows[i])}: {label} {col[i]!r} is not a number")
        return x.to_numpy()
    if not col.dtype.is_numeric():
        raise BarsFileError(f"{name}: column {label!r} has type {col.dtype}, expected numbers")
    return col.cast(pl.Float64).to_numpy()


def _check_values(v: dict[str, np.ndarray], cols: dict[str, str], name: str, rows: np.ndarray) -> None:
    """Finite, non-negative values and a high/low that contain open and close."""
    for c in VALUE_COLUMNS:
        x = v[c]
        bad = ~np.isfinite(x) | (x < 0)
        if bad.any():
            i = int(np.argmax(bad))
            what = "is not finite" if not np.isfinite(x[i]) else "is negative"
            raise BarsFileError(f"{name} row {int(rows[i])}: {cols[c]} {float(x[i])!r} {what}")
    hi = v["high"] < np.maximum(v["open"], v["close"])
    if hi.any():
        i = int(np.argmax(hi))
        raise BarsFileError(
            f"{name} row {int(rows[i])}: {cols['high']} {float(v['high'][i])!r} is below "
            f"max(open {float(v['open'][i])!r}, close {float(v['close'][i])!r})"
        )
    lo = v["low"] > np.minimum(v["open"], v["close"])
    if lo.any():
        i = int(np.argmax(lo))
        raise BarsFileError(
            f"{name} row {int(rows[i])}: {cols['low']} {float(v['low'][i])!r} is above "
            f"min(open {float(v['open'][i])!r}, close {float(v['close'][i])!r})"
        )


def infer_timeframe(ts: pl.Series | np.ndarray) -> str:
    """The timeframe (`proto.events.TIMEFRAMES`) nearest the median spacing of sorted bar times.

    Daily bars (spacing of a day or more: weekends make the median 1 day) are "daily".
    """
    x = np.asarray(ts.cast(pl.Int64).to_numpy() if isinstance(ts, pl.Series) else ts, dtype=np.int64)
    if len(x) < 2:
        raise ValueError("cannot infer a timeframe from fewer than two bars")
    step_min = float(np.median(np.diff(x))) / 60e9
    table = TIMEFRAME_MINUTES
    if step_min >= 1440 * 0.9:
        return "daily"
    best = min(table, key=lambda k: abs(np.log(step_min / table[k])) if step_min > 0 else np.inf)
    if abs(step_min / table[best] - 1) > 0.25:
        raise ValueError(f"median bar spacing {step_min:g} min matches no timeframe (1min, 5min, ..., daily)")
    return best
