"""Times of day and durations as users write them in simulation requests, to float seconds.

A time of day is `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fff` (a `datetime.time` is accepted too) and
becomes seconds after local midnight of the market. A duration is `HH:MM:SS[.fff]`, a number with
a unit (`500ms`, `1.5s`, `2m`, `1h`), a number of seconds, or a `datetime.timedelta`. A duration is
never negative; `positive=True` also rejects zero.

Trading windows are `(open, close)` pairs of seconds of day (`libs.sim.sessions.windows`), half-open like
`libs.sim.sessions`: open <= t < close, so an order at exactly the close (12:00:00 on HKEX) is outside.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from numbers import Real

import numpy as np

TIME_OF_DAY_FORMATS = "HH:MM, HH:MM:SS or HH:MM:SS.fff (e.g. '11:00', '09:30:00.5')"
DURATION_FORMATS = (
    "HH:MM:SS[.fff] (e.g. '02:00:00'), a number with a unit ms, s, m or h (e.g. '500ms', '1.5s', '2m', '1h'), "
    "a number of seconds, or a datetime.timedelta"
)

_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?")
_UNIT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_time_of_day(value: str | dt.time, name: str = "time of day") -> float:
    """Seconds after midnight of `HH:MM[:SS[.fff]]` or a `datetime.time`; ValueError naming the value."""
    if isinstance(value, dt.time):
        if value.tzinfo is not None:
            raise ValueError(f"{name} {value!r} must be a local (naive) time of the market")
        return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string in {TIME_OF_DAY_FORMATS}, got {type(value).__name__} {value!r}")
    m = _CLOCK.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"{name} {value!r} is not a time of day; expected {TIME_OF_DAY_FORMATS}")
    hours, minutes, seconds = int(m[1]), int(m[2]), float(m[3] or 0)
    if hours > 23 or minutes > 59 or seconds >= 60:
        raise ValueError(f"{name} {value!r} is out of range: hours 0-23, minutes and seconds 0-59")
    return hours * 3600 + minutes * 60 + seconds


def parse_duration(value: str | int | float | dt.timedelta, positive: bool = False, name: str = "duration") -> float:
    """Seconds of a duration in any of DURATION_FORMATS; ValueError naming the value and the formats."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a duration ({DURATION_FORMATS}), got bool {value!r}")
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, np.timedelta64):
        seconds = float(value / np.timedelta64(1, "ns")) / 1e9
    elif isinstance(value, Real):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value, name)
    else:
        raise ValueError(f"{name} must be a duration ({DURATION_FORMATS}), got {type(value).__name__} {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"{name} {value!r} must be finite")
    if seconds < 0:
        raise ValueError(f"{name} {value!r} must not be negative")
    if positive and seconds == 0:
        raise ValueError(f"{name} {value!r} must be greater than zero")
    return seconds


def _parse_duration_text(value: str, name: str) -> float:
    text = value.strip().lower()
    clock = _CLOCK.fullmatch(text)
    if clock is not None and clock[3] is not None:
        minutes, seconds = int(clock[2]), float(clock[3])
        if minutes > 59 or seconds >= 60:
            raise ValueError(f"{name} {value!r} is out of range: minutes and seconds 0-59")
        return int(clock[1]) * 3600 + minutes * 60 + seconds
    unit = _UNIT.fullmatch(text)
    if unit is None:
        raise ValueError(f"{name} {value!r} is not a duration; expected {DURATION_FORMATS}")
    return float(unit[1]) * _UNIT_SECONDS[unit[2]]


def format_time_of_day(seconds: float) -> str:
    """`HH:MM:SS` (with a fraction when there is one) of seconds after midnight, for messages."""
    whole, micros = divmod(round(seconds * 1_000_000), 1_000_000)
    text = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    return f"{text}.{micros:06d}".rstrip("0") if micros else text


def in_windows(times: np.ndarray, windows: Sequence[tuple[float, float]]) -> np.ndarray:
    """Boolean mask of `times` (seconds of day) inside any window (open <= t < close)."""
    t = np.asarray(times, dtype=np.float64)
    mask = np.zeros(t.shape, dtype=bool)
    for open_s, close_s in windows:
        mask |= (t >= open_s) & (t < close_s)
    return mask


def window_of(t: float, windows: Sequence[tuple[float, float]]) -> int | None:
    """Index of the window holding `t` (open <= t < close), or None."""
    for i, (open_s, close_s) in enumerate(windows):
        if open_s <= t < close_s:
            return i
    return None


def describe_windows(windows: Sequence[tuple[float, float]]) -> str:
    """`09:30:00-12:00:00, 13:00:00-16:00:00`, for messages."""
    return ", ".join(f"{format_time_of_day(a)}-{format_time_of_day(b)}" for a, b in windows)
