"""Trading sessions per asset class: when 1-minute bars are expected, and how bins and days are anchored.

- us_equity: the NYSE regular sessions of `exchange_calendars` ("XNYS"): 09:30-16:00 New York
  (390 minutes), 09:30-13:00 on half days (210), no session on holidays and weekends. Extended
  hours are out of scope. Times come from the calendar in UTC, so daylight saving is exact.
- crypto: every UTC day, 00:00-24:00 UTC (1,440 minutes).
- forex: trade date D runs 17:00 New York on D-1 to 17:00 New York on D (the daily roll), for
  D Monday to Friday: the week opens Sunday 17:00 and closes Friday 17:00 New York. Always
  1,440 minutes (US clocks change at 02:00 Sunday, outside any forex session). Currency
  holidays are not modelled.

A session is labelled by its date; a daily bar's timestamp is that date at 00:00 UTC.
"""

from __future__ import annotations

import datetime as dt
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache

import msgspec
import numpy as np
import pandas as pd

from libs.bars.assets import AssetClass, check_asset
from libs.bars.timeutil import DAY_NS, MINUTE_NS, NY, from_ns

XNYS_FIRST = dt.date(1990, 1, 1)
XNYS_LAST = dt.date(2035, 12, 31)
"""The range the NYSE calendar is built for (a request outside it is an error naming it)."""


class Session(msgspec.Struct, frozen=True):
    """One trading session: its date label, open and close (UTC, close exclusive) and length."""

    date: dt.date
    open_utc: dt.datetime
    close_utc: dt.datetime
    minutes: int
    early_close: bool


@dataclass(frozen=True, slots=True)
class SessionArrays:
    """The sessions of a date range as parallel numpy arrays (UTC ns), for vectorised binning."""

    dates: np.ndarray
    """datetime64[D] session labels."""
    open_ns: np.ndarray
    close_ns: np.ndarray
    early_close: np.ndarray

    @property
    def label_ns(self) -> np.ndarray:
        """Each session's date at 00:00 UTC (the daily bar's timestamp), int64 ns."""
        return self.dates.astype("datetime64[ns]").astype(np.int64)

    def __len__(self) -> int:
        return len(self.dates)


def check_range(start: dt.date, end: dt.date) -> None:
    """A ValueError naming both dates unless start <= end (both dates)."""
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, dt.date):
            raise ValueError(f"{name} must be a date, got {value!r}")
    if _as_date(start) > _as_date(end):
        raise ValueError(f"start {_as_date(start)} is after end {_as_date(end)}")


def _as_date(d: dt.date) -> dt.date:
    return d.date() if isinstance(d, dt.datetime) else d


_XNYS_LOCK = threading.Lock()


def _xnys():  # type: ignore[no-untyped-def]
    """The NYSE calendar, built once: under a lock, as worker threads ask for it at the same time
    (two builds at once would race on the process-wide warning filters)."""
    with _XNYS_LOCK:
        return _build_xnys()


@lru_cache(maxsize=1)
def _build_xnys():  # type: ignore[no-untyped-def]
    import exchange_calendars as xcals

    with warnings.catch_warnings():  # exchange_calendars 4.13 uses Series.values, deprecated in pandas 3.1
        warnings.simplefilter("ignore")
        return xcals.get_calendar("XNYS", start=XNYS_FIRST.isoformat(), end=XNYS_LAST.isoformat())


def session_arrays(asset: AssetClass, start: dt.date, end: dt.date) -> SessionArrays:
    """The sessions whose date label is in [start, end] (both inclusive), as arrays."""
    check_asset(asset)
    check_range(start, end)
    start, end = _as_date(start), _as_date(end)
    if asset == "us_equity":
        if start < XNYS_FIRST or end > XNYS_LAST:
            raise ValueError(f"dates {start}..{end} are outside the NYSE calendar's range {XNYS_FIRST}..{XNYS_LAST}")
        sched = _xnys().schedule.loc[start.isoformat() : end.isoformat()]
        opens = pd.DatetimeIndex(sched["open"]).as_unit("ns").asi8.astype(np.int64)
        closes = pd.DatetimeIndex(sched["close"]).as_unit("ns").asi8.astype(np.int64)
        dates = sched.index.to_numpy().astype("datetime64[D]")
        local_close = sched["close"].dt.tz_convert(NY)
        early = ((local_close.dt.hour * 60 + local_close.dt.minute) < 16 * 60).to_numpy()
        return SessionArrays(dates, opens, closes, early)
    dates = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1, dtype="datetime64[D]")
    if asset == "crypto":
        opens = dates.astype("datetime64[ns]").astype(np.int64)
        return SessionArrays(dates, opens, opens + DAY_NS, np.zeros(len(dates), bool))
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    dates = dates[weekday < 5]
    return SessionArrays(dates, _forex_closes(dates - 1), _forex_closes(dates), np.zeros(len(dates), bool))


def _forex_closes(dates: np.ndarray) -> np.ndarray:
    """17:00 New York on each date, UTC ns."""
    local = pd.DatetimeIndex(dates.astype("datetime64[ns]")) + pd.Timedelta(hours=17)
    return local.tz_localize(NY).tz_convert("UTC").as_unit("ns").asi8.astype(np.int64)


def sessions(asset: AssetClass, start: dt.date, end: dt.date) -> list[Session]:
    """The trading sessions of `asset` whose date is in [start, end] (both inclusive), in order."""
    arr = session_arrays(asset, start, end)
    out: list[Session] = []
    for d, o, c, e in zip(
        arr.dates.tolist(), arr.open_ns.tolist(), arr.close_ns.tolist(), arr.early_close.tolist(), strict=True
    ):
        out.append(
            Session(
                date=d,
                open_utc=from_ns(o),
                close_utc=from_ns(c),
                minutes=(c - o) // MINUTE_NS,
                early_close=bool(e),
            )
        )
    return out


def minutes_of(arr: SessionArrays) -> np.ndarray:
    """UTC ns of every 1-minute bar open inside the given sessions, ascending."""
    counts = (arr.close_ns - arr.open_ns) // MINUTE_NS
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    idx = np.arange(total, dtype=np.int64) - np.repeat(first, counts)
    return np.repeat(arr.open_ns, counts) + idx * MINUTE_NS


def expected_minutes(asset: AssetClass, start: dt.date, end: dt.date) -> np.ndarray:
    """UTC ns of every expected 1-minute bar open in the sessions dated [start, end]."""
    return minutes_of(session_arrays(asset, start, end))


def session_of(asset: AssetClass, day: dt.date) -> Session | None:
    """The session dated `day`, or None when `day` has none (a holiday or weekend)."""
    found = sessions(asset, day, day)
    return found[0] if found else None
