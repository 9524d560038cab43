"""Times of day and durations as written in simulation requests, and trading windows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from libs.sim.sessions import windows
from libs.sim.timeparse import (
    describe_windows,
    format_time_of_day,
    in_windows,
    parse_duration,
    parse_time_of_day,
    window_of,
)

H = 3600.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("11:00:00", 11 * H),
        ("11:00", 11 * H),
        ("09:30:00.5", 9 * H + 30 * 60 + 0.5),
        ("9:30", 9.5 * H),
        ("00:00:00", 0.0),
        ("23:59:59", 24 * H - 1),
        (" 16:00:00 ", 16 * H),
    ],
)
def test_time_of_day(text: str, seconds: float) -> None:
    assert parse_time_of_day(text) == pytest.approx(seconds, abs=1e-9)


def test_time_of_day_accepts_a_time_object() -> None:
    assert parse_time_of_day(dt.time(9, 30, 0, 500_000)) == pytest.approx(9.5 * H + 0.5)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("24:00:00", "out of range"),
        ("11:60", "out of range"),
        ("11:00:60", "out of range"),
        ("11", "'11' is not a time of day"),
        ("eleven", "'eleven' is not a time of day"),
        ("11:00:00 PM", "is not a time of day"),
        (39600, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_time_of_day_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_time_of_day(value)  # type: ignore[arg-type]


def test_time_of_day_error_lists_formats_and_field() -> None:
    with pytest.raises(ValueError, match=r"start_time 'noon' .*HH:MM:SS"):
        parse_time_of_day("noon", name="start_time")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("02:00:00", 7200.0),
        ("00:00:30", 30.0),
        ("00:00:00.25", 0.25),
        ("26:00:00", 26 * H),
        ("500ms", 0.5),
        ("5s", 5.0),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("1.5 s", 1.5),
        ("10", 10.0),
        (5, 5.0),
        (2.5, 2.5),
        (np.int64(7), 7.0),
        (dt.timedelta(minutes=2, milliseconds=500), 120.5),
        (np.timedelta64(1500, "ms"), 1.5),
    ],
)
def test_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("5x", r"'5x' is not a duration; expected HH:MM:SS.*500ms"),
        ("fast", "is not a duration"),
        ("02:00", "'02:00' is not a duration"),
        ("00:61:00", "out of range"),
        ("-5s", "is not a duration"),
        (True, "got bool"),
        (None, "got NoneType"),
        ([1], "got list"),
        (float("nan"), "must be finite"),
        (float("inf"), "must be finite"),
        (-1, "must not be negative"),
        (dt.timedelta(seconds=-1), "must not be negative"),
    ],
)
def test_duration_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("zero", [0, 0.0, "0s", "0ms", "00:00:00", dt.timedelta(0)])
def test_zero_duration_only_rejected_when_positive_required(zero: object) -> None:
    assert parse_duration(zero) == 0.0  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"frequency .* must be greater than zero"):
        parse_duration(zero, positive=True, name="frequency")  # type: ignore[arg-type]


def test_format_time_of_day() -> None:
    assert format_time_of_day(9.5 * H) == "09:30:00"
    assert format_time_of_day(9.5 * H + 0.5) == "09:30:00.5"
    assert format_time_of_day(16 * H) == "16:00:00"
    assert parse_time_of_day(format_time_of_day(45296.25)) == pytest.approx(45296.25)


def test_windows_are_the_exchange_hours() -> None:
    assert windows("XNYS") == ((9.5 * H, 16 * H),)
    assert windows("XHKG") == ((9.5 * H, 12 * H), (13 * H, 16 * H))
    assert describe_windows(windows("XHKG")) == "09:30:00-12:00:00, 13:00:00-16:00:00"
    with pytest.raises(ValueError, match="unknown market 'XLON'"):
        windows("XLON")


def test_windows_are_half_open() -> None:
    hk = windows("XHKG")
    t = np.array([9.5 * H - 0.001, 9.5 * H, 12 * H - 0.001, 12 * H, 12.5 * H, 13 * H, 16 * H - 0.001, 16 * H])
    assert in_windows(t, hk).tolist() == [False, True, True, False, False, True, True, False]
    assert [window_of(float(x), hk) for x in t] == [None, 0, 0, None, None, 1, 1, None]
