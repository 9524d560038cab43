"""Day validation: expected vs actual minutes, gap runs listed exactly, bars outside the session."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from libs.bars.calendars import Session, session_of
from libs.bars.completeness import summarise, validate_day

MIN = 60 * 10**9


def ns(t: dt.datetime) -> int:
    return int(t.timestamp()) * 10**9


def day(d: dt.date) -> Session:
    s = session_of("us_equity", d)
    assert s is not None
    return s


def full_minutes(s: Session) -> np.ndarray:
    o = ns(s.open_utc)
    return o + np.arange(s.minutes, dtype=np.int64) * MIN


def test_complete_day_is_valid() -> None:
    s = day(dt.date(2024, 3, 11))
    v = validate_day(full_minutes(s), s)
    assert (v.expected_candles, v.actual_candles, v.missing_candles) == (390, 390, 0)
    assert v.is_valid and v.gaps == [] and v.unexpected_candles == 0 and not v.early_close


def test_removed_minutes_are_listed_as_runs() -> None:
    s = day(dt.date(2024, 3, 11))  # 09:30 EDT = 13:30 UTC
    minutes = full_minutes(s)
    removed = [0, 1, 2, 100, 200, 201, 202, 203, 204, 389]  # 09:30-09:32, 11:10, 12:50-12:54, 15:59
    v = validate_day(np.delete(minutes, removed), s)
    utc = dt.UTC
    assert [(g.start, g.end, g.minutes) for g in v.gaps] == [
        (dt.datetime(2024, 3, 11, 13, 30, tzinfo=utc), dt.datetime(2024, 3, 11, 13, 33, tzinfo=utc), 3),
        (dt.datetime(2024, 3, 11, 15, 10, tzinfo=utc), dt.datetime(2024, 3, 11, 15, 11, tzinfo=utc), 1),
        (dt.datetime(2024, 3, 11, 16, 50, tzinfo=utc), dt.datetime(2024, 3, 11, 16, 55, tzinfo=utc), 5),
        (dt.datetime(2024, 3, 11, 19, 59, tzinfo=utc), dt.datetime(2024, 3, 11, 20, 0, tzinfo=utc), 1),
    ]
    assert (v.actual_candles, v.missing_candles, v.is_valid) == (380, 10, False)
    assert sum(g.minutes for g in v.gaps) == len(removed)


def test_half_day_expects_210_and_counts_bars_after_the_early_close() -> None:
    s = day(dt.date(2024, 11, 29))
    minutes = full_minutes(s)
    after_close = ns(s.close_utc) + np.arange(30, dtype=np.int64) * MIN  # 13:00-13:29: the market is shut
    pre_market = ns(s.open_utc) - np.arange(1, 11, dtype=np.int64) * MIN
    off_grid = np.array([ns(s.open_utc) + 30 * 10**9])  # 09:30:30 is not a minute bar
    v = validate_day(np.concatenate([pre_market, minutes, after_close, off_grid]), s)
    assert v.early_close
    assert (v.expected_candles, v.actual_candles, v.missing_candles) == (210, 210, 0)
    assert v.unexpected_candles == 30 + 10 + 1
    assert v.is_valid


def test_duplicates_count_once_and_empty_day_is_one_gap() -> None:
    s = day(dt.date(2024, 12, 24))
    minutes = full_minutes(s)
    v = validate_day(np.concatenate([minutes, minutes[:50]]), s)
    assert v.actual_candles == 210 and v.unexpected_candles == 0
    empty = validate_day(np.empty(0, np.int64), s)
    assert [(g.start, g.end, g.minutes) for g in empty.gaps] == [(s.open_utc, s.close_utc, 210)]
    assert empty.missing_candles == 210


def test_summary_percentages() -> None:
    s1, s2 = day(dt.date(2024, 3, 8)), day(dt.date(2024, 3, 11))
    days = [validate_day(full_minutes(s1), s1), validate_day(full_minutes(s2)[:195], s2)]
    c = summarise(days)
    assert (c.total_trading_days, c.valid_days, c.invalid_days) == (2, 1, 1)
    assert (c.total_expected_candles, c.total_actual_candles, c.missing_candles) == (780, 585, 195)
    assert c.completeness_percentage == pytest.approx(75.0)
    assert summarise(days, include_details=False).validation_results == []
    assert summarise([]).completeness_percentage == 100.0


def test_minutes_after_now_are_not_expected() -> None:
    s = day(dt.date(2024, 3, 11))
    o = ns(s.open_utc)
    minutes = full_minutes(s)[:60]  # 09:30-10:30 stored
    now = o + 90 * MIN + 30 * 10**9  # 11:00:30 New York: 90 minutes have closed
    v = validate_day(minutes, s, now_ns=now)
    assert (v.expected_candles, v.actual_candles, v.missing_candles) == (90, 60, 30)
    assert [(g.start, g.end, g.minutes) for g in v.gaps] == [
        (s.open_utc + dt.timedelta(minutes=60), s.open_utc + dt.timedelta(minutes=90), 30)
    ]
    # a bar of the minute still running is neither counted nor unexpected
    running = validate_day(np.append(full_minutes(s)[:90], o + 90 * MIN), s, now_ns=now)
    assert (running.expected_candles, running.actual_candles, running.unexpected_candles) == (90, 90, 0)
    assert running.is_valid
    before = validate_day(np.empty(0, np.int64), s, now_ns=o - MIN)  # a session that has not opened yet
    assert (before.expected_candles, before.gaps, before.is_valid) == (0, [], True)
    after = validate_day(minutes, s, now_ns=ns(s.close_utc) + 3600 * 10**9)  # a past session: the whole of it
    assert after.expected_candles == 390
