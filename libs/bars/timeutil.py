"""Time helpers the bar manager shares: the New York zone, UTC nanoseconds <-> datetimes, dates in requests.

Bars are stamped in UTC nanoseconds (int64) inside frames and ClickHouse; datetimes cross the
API boundaries. `to_ns`/`from_ns` convert exactly to the microsecond (a datetime's precision).
"""

from __future__ import annotations

import datetime as dt

NY = "America/New_York"
"""The zone of US equity sessions and of the forex daily roll (17:00 New York)."""
MINUTE_NS = 60_000_000_000
DAY_NS = 86_400 * 1_000_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_ns(value: dt.datetime | dt.date, name: str = "time") -> int:
    """UTC nanoseconds of a datetime (naive = UTC) or a date (its 00:00 UTC); a ValueError names `name`."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        delta = aware - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    if isinstance(value, dt.date):
        return (value - dt.date(1970, 1, 1)).days * DAY_NS
    raise ValueError(f"{name} must be a datetime or date, got {value!r}")


def from_ns(ns: int) -> dt.datetime:
    """The UTC datetime of `ns` nanoseconds since the epoch (truncated to the microsecond)."""
    return _EPOCH + dt.timedelta(microseconds=int(ns) // 1_000)


def utc_midnight(day: dt.date) -> dt.datetime:
    """`day` at 00:00 UTC."""
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def parse_date(value: object, field: str) -> dt.date:
    """A YYYY-MM-DD string as a date; a ValueError naming `field` and the value otherwise."""
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{field} must be a date YYYY-MM-DD, got {value!r}")
