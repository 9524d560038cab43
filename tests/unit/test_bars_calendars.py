"""Trading sessions per asset class against the real NYSE calendar: holidays, half days, DST."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from libs.bars.calendars import expected_minutes, session_of, sessions

UTC = dt.UTC
NY = ZoneInfo("America/New_York")


def at(y: int, m: int, d: int, hh: int, mm: int = 0, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=tz).astimezone(UTC)


@pytest.mark.parametrize("day", [dt.date(2024, 11, 29), dt.date(2024, 12, 24)])
def test_half_days_close_at_13_new_york(day: dt.date) -> None:
    s = session_of("us_equity", day)
    assert s is not None
    assert s.minutes == 210 and s.early_close
    assert s.open_utc == at(day.year, day.month, day.day, 14, 30)
    assert s.close_utc == at(day.year, day.month, day.day, 18, 0)  # 13:00 EST
    assert s.close_utc.astimezone(NY).time() == dt.time(13, 0)


@pytest.mark.parametrize(
    "day", [dt.date(2024, 11, 28), dt.date(2024, 12, 25), dt.date(2024, 7, 4), dt.date(2024, 3, 9)]
)
def test_holidays_and_weekends_have_no_session(day: dt.date) -> None:
    assert session_of("us_equity", day) is None


def test_normal_day_390_minutes_and_dst_moves_the_utc_open() -> None:
    before, after = session_of("us_equity", dt.date(2024, 3, 8)), session_of("us_equity", dt.date(2024, 3, 11))
    assert before is not None and after is not None
    assert (before.minutes, after.minutes) == (390, 390)
    assert not before.early_close
    assert before.open_utc == at(2024, 3, 8, 14, 30) and after.open_utc == at(2024, 3, 11, 13, 30)
    nov_before, nov_after = session_of("us_equity", dt.date(2024, 11, 1)), session_of("us_equity", dt.date(2024, 11, 4))
    assert nov_before is not None and nov_after is not None
    assert nov_before.open_utc == at(2024, 11, 1, 13, 30) and nov_after.open_utc == at(2024, 11, 4, 14, 30)
    for s in (before, after, nov_before, nov_after):
        assert s.open_utc.astimezone(NY).time() == dt.time(9, 30)
        assert s.close_utc.astimezone(NY).time() == dt.time(16, 0)


def test_sessions_of_november_2024_match_the_calendar_facts() -> None:
    got = sessions("us_equity", dt.date(2024, 11, 1), dt.date(2024, 11, 30))
    weekdays = [dt.date(2024, 11, d) for d in range(1, 31) if dt.date(2024, 11, d).weekday() < 5]
    assert [s.date for s in got] == [d for d in weekdays if d != dt.date(2024, 11, 28)]
    assert [s.date for s in got if s.early_close] == [dt.date(2024, 11, 29)]
    assert sum(s.minutes for s in got) == 390 * (len(got) - 1) + 210


def test_crypto_days_are_utc_days() -> None:
    got = sessions("crypto", dt.date(2024, 3, 9), dt.date(2024, 3, 11))
    assert [s.date for s in got] == [dt.date(2024, 3, 9), dt.date(2024, 3, 10), dt.date(2024, 3, 11)]
    assert all(s.minutes == 1440 and s.open_utc == at(s.date.year, s.date.month, s.date.day, 0) for s in got)


def test_forex_trade_dates_roll_at_17_new_york() -> None:
    got = sessions("forex", dt.date(2024, 3, 8), dt.date(2024, 3, 12))  # Fri .. Tue, DST starts Sun 10th
    assert [s.date for s in got] == [dt.date(2024, 3, 8), dt.date(2024, 3, 11), dt.date(2024, 3, 12)]
    fri, mon, _ = got
    assert fri.open_utc == at(2024, 3, 7, 17, tz=NY) == at(2024, 3, 7, 22)
    assert fri.close_utc == at(2024, 3, 8, 22)
    assert mon.open_utc == at(2024, 3, 10, 17, tz=NY) == at(2024, 3, 10, 21)  # Sunday evening, EDT
    assert all(s.minutes == 1440 for s in got)


def test_expected_minutes_cover_each_session_minute_by_minute() -> None:
    mins = expected_minutes("us_equity", dt.date(2024, 11, 27), dt.date(2024, 11, 29))
    assert len(mins) == 390 + 210
    first = int(at(2024, 11, 27, 14, 30).timestamp()) * 10**9
    assert mins[0] == first and mins[389] == first + 389 * 60 * 10**9
    assert mins[390] == int(at(2024, 11, 29, 14, 30).timestamp()) * 10**9
    assert mins[-1] == int(at(2024, 11, 29, 17, 59).timestamp()) * 10**9
    assert np.all(np.diff(mins) > 0)


def test_bad_inputs_name_the_value() -> None:
    with pytest.raises(ValueError, match="start 2024-02-01 is after end 2024-01-01"):
        sessions("crypto", dt.date(2024, 2, 1), dt.date(2024, 1, 1))
    with pytest.raises(ValueError, match="unknown asset class 'stocks'"):
        sessions("stocks", dt.date(2024, 1, 1), dt.date(2024, 1, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside the NYSE calendar's range"):
        sessions("us_equity", dt.date(1980, 1, 1), dt.date(1980, 2, 1))
    with pytest.raises(ValueError, match="start must be a date"):
        sessions("crypto", "2024-01-01", dt.date(2024, 1, 2))  # type: ignore[arg-type]
