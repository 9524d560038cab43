"""Trading hours of the markets the simulator knows, so orders outside them can be dropped.

Times of day are float seconds after local midnight of the market (wall clock, the LOBSTER
convention: 09:30 is 34,200 whatever the date). `to_utc_ns` turns them into UTC nanoseconds
with the market's time zone, so daylight saving time is applied per date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import get_args
from zoneinfo import ZoneInfo

import numpy as np

from proto.sim import Market

MINUTE_S = 60.0


@dataclass(frozen=True, slots=True)
class _Spec:
    """A market's time zone and continuous-trading windows [start, end) in seconds of the day."""

    tz: str
    windows: tuple[tuple[float, float], ...]
    label: str


_H = 3600.0
_SPECS: dict[str, _Spec] = {
    "XNYS": _Spec("America/New_York", ((9.5 * _H, 16 * _H),), "0930-1600"),
    "XHKG": _Spec("Asia/Hong_Kong", ((9.5 * _H, 12 * _H), (13 * _H, 16 * _H)), "0930-1600"),
}
assert set(_SPECS) == set(get_args(Market)), "every proto.sim.Market needs its trading hours here"


def _spec(market: str) -> _Spec:
    try:
        return _SPECS[market]
    except KeyError:
        raise ValueError(f"unknown market {market!r}; known markets: {', '.join(sorted(_SPECS))}") from None


def market_for_symbol(symbol: str) -> Market:
    """The market a symbol trades on: a `.HK` suffix is Hong Kong (XHKG), anything else US (XNYS)."""
    if not symbol or not symbol.strip():
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    return "XHKG" if symbol.strip().upper().endswith(".HK") else "XNYS"


def windows(market: Market) -> tuple[tuple[float, float], ...]:
    """The continuous-trading windows [start, end), seconds after local midnight, in order."""
    return _spec(market).windows


def timezone(market: Market) -> str:
    """The market's IANA time zone (its trading hours are local time there)."""
    return _spec(market).tz


def session_label(market: Market) -> str:
    """The session token used inside sim ids ("0930-1600")."""
    return _spec(market).label


def open_s(market: Market) -> float:
    """Start of the first window, seconds after local midnight."""
    return _spec(market).windows[0][0]


def close_s(market: Market) -> float:
    """End of the last window, seconds after local midnight."""
    return _spec(market).windows[-1][1]


def session_seconds(market: Market) -> float:
    """Seconds of continuous trading in a day (23,400 for XNYS, 19,800 for XHKG)."""
    return float(sum(b - a for a, b in _spec(market).windows))


def in_session(market: Market, t_s: np.ndarray) -> np.ndarray:
    """True where a time of day falls inside a trading window (half-open: the close is outside)."""
    t = np.asarray(t_s, dtype=np.float64)
    out = np.zeros(t.shape, dtype=np.bool_)
    for a, b in _spec(market).windows:
        out |= (t >= a) & (t < b)
    return out


def session_minutes(market: Market) -> np.ndarray:
    """Start second of every session minute, in order (390 for XNYS, 330 for XHKG)."""
    return np.concatenate([np.arange(a, b, MINUTE_S, dtype=np.float64) for a, b in _spec(market).windows])


def minute_index(market: Market, t_s: np.ndarray) -> np.ndarray:
    """Index into `session_minutes` of the minute each time falls in; -1 outside the session."""
    t = np.asarray(t_s, dtype=np.float64)
    out = np.full(t.shape, -1, dtype=np.int64)
    first = 0
    for a, b in _spec(market).windows:
        inside = (t >= a) & (t < b)
        out[inside] = first + np.floor((t[inside] - a) / MINUTE_S).astype(np.int64)
        first += round((b - a) / MINUTE_S)
    return out


def session_clock(market: Market, t_s: np.ndarray) -> np.ndarray:
    """Seconds of trading elapsed by each time of day (0 before the open, flat over a lunch break).

    The difference of two values is how much of an interval lies inside the session, which is
    what time-weighting over the session needs.
    """
    t = np.asarray(t_s, dtype=np.float64)
    out = np.zeros(t.shape, dtype=np.float64)
    for a, b in _spec(market).windows:
        out += np.clip(t - a, 0.0, b - a)
    return out


def _utc_offsets_ns(day: dt.date, tz: ZoneInfo, minutes: np.ndarray) -> np.ndarray:
    """UTC offset (ns) of each local wall-clock minute of the day; fold=0 at ambiguous times."""
    midnight = dt.datetime(day.year, day.month, day.day)
    offsets = []
    for m in minutes.tolist():
        off = (midnight + dt.timedelta(minutes=m)).replace(tzinfo=tz).utcoffset()
        assert off is not None
        offsets.append(int(off.total_seconds() * 1e9))
    return np.asarray(offsets, dtype=np.int64)


def to_utc_ns(cal_date: str, market: Market, t_s: np.ndarray) -> np.ndarray:
    """UTC nanoseconds of times of day on a date, in the market's time zone (DST per date)."""
    spec = _spec(market)
    try:
        day = dt.date.fromisoformat(cal_date)
    except (TypeError, ValueError):
        raise ValueError(f"cal_date must be YYYY-MM-DD, got {cal_date!r}") from None
    t = np.asarray(t_s, dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError("t_s: times of day must be finite")
    tz = ZoneInfo(spec.tz)
    midnight_utc_ns = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    local_ns = np.round(t * 1e9).astype(np.int64)
    # The offset can only change at a minute boundary: look it up once per distinct minute.
    minute = np.floor_divide(local_ns, 60_000_000_000)
    uniq, inverse = np.unique(minute, return_inverse=True)
    offsets = _utc_offsets_ns(day, tz, uniq)
    return midnight_utc_ns + local_ns - offsets[inverse.reshape(t.shape)]
