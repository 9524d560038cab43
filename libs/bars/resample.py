"""Asset-aware resampling of 1-minute bars to 5min ... 4h and daily, exact across daylight-saving changes.

Bins are anchored on each session's open (`libs.bars.calendars`), found per bar by a binary
search over the session opens in UTC, so no fixed UTC offset is ever assumed:

- us_equity: bins start at the session open, 09:30 New York (5min 09:30, 09:35, ...; 1h 09:30,
  10:30, ..., 15:30-16:00 partial; 2h 09:30, 11:30, 13:30, 15:30; 4h 09:30, 13:30). A half
  day's last bin ends at the early close. Bars outside the regular session (extended hours,
  holidays, weekends) are dropped from every timeframe, daily included.
- crypto: UTC boundaries (5min at :00, :05, ...; 1h/2h/4h on UTC hours divisible by 1/2/4;
  daily 00:00-24:00 UTC).
- forex: bins anchored on the 17:00 New York roll (4h bins at 17:00, 21:00, 01:00, ... New York);
  daily = the trade date, 17:00 New York to 17:00 New York, labelled by the date it ends.
  Bars from Friday 17:00 to Sunday 17:00 New York belong to no session and are dropped.

A bar's timestamp is its bin's open (UTC); a daily bar's is the session date at 00:00 UTC.
OHLCV: open first, high max, low min, close last, volume sum; an empty bin makes no bar.
Bins are contiguous runs of the time-sorted input, so every reduction is one `reduceat`.

Input: 1-minute bars (intraday bars no coarser than the target also work: bins nest). Daily or
coarser input, input coarser than the target, and a timestamp given twice are ValueErrors, not
silently empty or double-counted results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from libs.bars.assets import INTRADAY_MINUTES, TIMEFRAME_MINUTES, TIMEFRAMES, AssetClass, check_asset, check_timeframe
from libs.bars.calendars import session_arrays
from libs.bars.files import infer_timeframe
from libs.bars.schema import COLUMNS, SCHEMA, TS_TYPE, VALUE_COLUMNS, check_frame, empty_frame
from libs.bars.timeutil import MINUTE_NS

__all__ = ["COLUMNS", "RESAMPLE_TARGETS", "SCHEMA", "check_frame", "empty_frame", "resample", "resample_all"]

RESAMPLE_TARGETS: tuple[str, ...] = TIMEFRAMES[1:]
"""What `resample_all` makes by default: every timeframe above 1min."""


def input_minutes(ts_ns: np.ndarray) -> int | None:
    """The bar length (minutes) of sorted bar open times, None for fewer than two bars.

    The shortest spacing decides, so 1-minute bars with holes are still 1-minute bars: a spacing
    that is an intraday timeframe's length is that timeframe; another one up to 4 h is taken as
    1-minute bars with holes; longer spacings are named by `infer_timeframe` (daily, ...). Bars
    off whole minutes are a ValueError.
    """
    if len(ts_ns) < 2:
        return None
    gaps = np.diff(ts_ns)
    gaps = gaps[gaps > 0]
    if len(gaps) == 0:
        return None
    smallest = int(gaps.min())
    if smallest % MINUTE_NS:
        raise ValueError(f"bars to resample must open on whole minutes; two bars are {smallest / 1e9:g} s apart")
    minutes = smallest // MINUTE_NS
    if minutes <= INTRADAY_MINUTES["4h"]:
        return minutes if minutes in INTRADAY_MINUTES.values() else 1
    try:
        return TIMEFRAME_MINUTES[infer_timeframe(ts_ns)]
    except ValueError as e:
        raise ValueError(f"bars to resample must be 1-minute bars: {e}") from None


def _check_input(ts_ns: np.ndarray, timeframes: list[str], input_timeframe: str | None) -> None:
    """Refuse bars that are not finer than (or as fine as) every target: daily bars would resample to
    nothing, 1h bars are not 30min bars. A ValueError names the input's timeframe and the target."""
    if input_timeframe is not None:
        length: int | None = TIMEFRAME_MINUTES[check_timeframe(input_timeframe)]
    else:
        length = input_minutes(ts_ns)
    if length is None or length == 1:
        return
    name = next((k for k, v in TIMEFRAME_MINUTES.items() if v == length), f"{length}min")
    for t in timeframes:
        if name == "daily" or length > TIMEFRAME_MINUTES[t]:
            raise ValueError(
                f"cannot resample {name} bars to {t}: resample takes 1-minute bars (or intraday bars no "
                f"coarser than the target), these are {length} minutes apart"
            )


class _Binned:
    """The in-session bars of one frame with each bar's session, computed once for every timeframe.

    Bins nest (each timeframe's length divides the next one's, all anchored on the session open),
    so each timeframe's bins are found from the next finer timeframe's bins rather than from every
    bar again: high/low reduce the finer highs/lows, open/close are taken at the run edges, and
    volume is summed over the original bars in order (the same sums as a direct computation).
    """

    def __init__(
        self, frame: pl.DataFrame, asset: AssetClass, timeframes: list[str], input_timeframe: str | None = None
    ) -> None:
        frame = check_frame(frame)
        ts = frame["ts"].cast(pl.Int64).to_numpy()
        _check_input(ts, timeframes, input_timeframe)
        self.n = 0
        if len(ts) == 0:
            return
        first = np.datetime64(int(ts[0]), "ns").astype("datetime64[D]").astype(dt.date)
        last = np.datetime64(int(ts[-1]), "ns").astype("datetime64[D]").astype(dt.date)
        arr = session_arrays(asset, first - dt.timedelta(days=1), last + dt.timedelta(days=1))
        if len(arr) == 0:
            return
        # ts is sorted and sessions do not overlap: session k holds the bars ts[lo[k]:hi[k]]
        lo = np.searchsorted(ts, arr.open_ns, side="left")
        hi = np.searchsorted(ts, arr.close_ns, side="left")
        counts = hi - lo
        self.n = n = int(counts.sum())
        if n == 0:
            return
        cols = {c: frame[c].to_numpy() for c in VALUE_COLUMNS}
        if n != len(ts):  # some bars lie outside every session: keep the in-session ones
            keep = np.arange(n, dtype=np.int64) + np.repeat(lo - (np.cumsum(counts) - counts), counts)
            ts = ts[keep]
            cols = {c: v[keep] for c, v in cols.items()}
        sess = np.repeat(np.arange(len(arr), dtype=np.int64), counts)
        self.session = sess
        self.session_open = arr.open_ns
        self.label_ns = arr.label_ns
        self.offset = ts - np.repeat(arr.open_ns, counts)
        self.cols = cols
        self._levels: dict[int, _Level] = {}

    def _level(self, minutes: int) -> _Level:
        """The bins of `minutes` length (0: the session), from the coarsest finer level already built."""
        if minutes in self._levels:
            return self._levels[minutes]
        day = minutes == 0
        finer = [m for m in self._levels if m > 0 and (day or (m < minutes and minutes % m == 0))]
        if finer:
            base = self._levels[max(finer)]
        else:
            base = _Level(
                np.arange(self.n, dtype=np.int64), self.session, self.offset, self.cols["high"], self.cols["low"]
            )
        runs = _run_starts(base.session) if day else _run_starts(base.offset // (minutes * MINUTE_NS), base.session)
        level = _Level(
            starts=base.starts[runs],
            session=base.session[runs],
            offset=base.offset[runs],
            high=np.maximum.reduceat(base.high, runs),
            low=np.minimum.reduceat(base.low, runs),
        )
        self._levels[minutes] = level
        return level

    def bars(self, timeframe: str) -> pl.DataFrame:
        """The bars of `timeframe` over this frame."""
        if self.n == 0:
            return empty_frame()
        if timeframe == "daily":
            level = self._level(0)
            labels = self.label_ns[level.session]
        else:
            step = INTRADAY_MINUTES[timeframe] * MINUTE_NS
            level = self._level(INTRADAY_MINUTES[timeframe])
            labels = self.session_open[level.session] + (level.offset // step) * step
        starts = level.starts
        last = np.empty_like(starts)
        last[:-1] = starts[1:] - 1
        last[-1] = self.n - 1
        c = self.cols
        return pl.DataFrame(
            {
                "ts": pl.Series("ts", labels, pl.Int64).cast(TS_TYPE),
                "open": c["open"][starts],
                "high": level.high,
                "low": level.low,
                "close": c["close"][last],
                "volume": np.add.reduceat(c["volume"], starts),
            }
        )


@dataclass(slots=True)
class _Level:
    """The bins of one length: first bar index, session, first bar's offset in it, high and low."""

    starts: np.ndarray
    session: np.ndarray
    offset: np.ndarray
    high: np.ndarray
    low: np.ndarray


def _run_starts(key: np.ndarray, key2: np.ndarray | None = None) -> np.ndarray:
    """Index of the first element of each run of equal keys (both keys, when two are given)."""
    change = np.empty(len(key), dtype=bool)
    change[0] = True
    np.not_equal(key[1:], key[:-1], out=change[1:])
    if key2 is not None:
        change[1:] |= key2[1:] != key2[:-1]
    return np.flatnonzero(change)


def resample(
    frame: pl.DataFrame, timeframe: str, asset: AssetClass, *, input_timeframe: str | None = None
) -> pl.DataFrame:
    """Bars of `frame` aggregated to `timeframe` for `asset`.

    `frame` holds 1-minute bars (or intraday bars no coarser than `timeframe`: 5min bars make 1h
    bars). Its timeframe is found from the bar spacing (`input_minutes`) unless `input_timeframe`
    says it; daily input and input coarser than the target are a ValueError, and so is a
    timestamp that appears twice (`check_frame`).
    """
    check_timeframe(timeframe)
    check_asset(asset)
    return _Binned(frame, asset, [timeframe], input_timeframe).bars(timeframe)


def resample_all(
    frame: pl.DataFrame,
    asset: AssetClass,
    timeframes: Iterable[str] = RESAMPLE_TARGETS,
    *,
    input_timeframe: str | None = None,
) -> dict[str, pl.DataFrame]:
    """`frame` resampled to each of `timeframes` (sessions found once for all of them); see `resample`."""
    timeframes = [check_timeframe(t) for t in timeframes]
    check_asset(asset)
    binned = _Binned(frame, asset, timeframes, input_timeframe)
    finest_first = sorted(timeframes, key=lambda t: INTRADAY_MINUTES.get(t, 1 << 30))
    made = {t: binned.bars(t) for t in finest_first}
    return {t: made[t] for t in timeframes}
