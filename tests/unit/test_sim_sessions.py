"""Trading sessions: windows, minute grids, the HKEX lunch edges, DST on both 2024 changes, bad input."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from libs.sim import sessions


def utc_ns(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> int:
    """UTC nanoseconds from a calendar UTC time, without any time zone database."""
    return int(dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


def hms(h: int, m: int, s: float = 0.0) -> float:
    return h * 3600 + m * 60 + s


def test_windows_and_labels() -> None:
    assert sessions.windows("XNYS") == ((34_200.0, 57_600.0),)
    assert sessions.windows("XHKG") == ((34_200.0, 43_200.0), (46_800.0, 57_600.0))
    assert sessions.session_label("XNYS") == sessions.session_label("XHKG") == "0930-1600"
    assert (sessions.open_s("XHKG"), sessions.close_s("XHKG")) == (34_200.0, 57_600.0)
    assert sessions.session_seconds("XNYS") == 6.5 * 3600
    assert sessions.session_seconds("XHKG") == 5.5 * 3600


def test_market_for_symbol() -> None:
    assert sessions.market_for_symbol("0700.HK") == "XHKG"
    assert sessions.market_for_symbol("0005.hk") == "XHKG"
    assert sessions.market_for_symbol("AMZN") == "XNYS"
    assert sessions.market_for_symbol("HK") == "XNYS"  # no suffix dot: a US ticker
    with pytest.raises(ValueError, match="symbol"):
        sessions.market_for_symbol("  ")


def test_session_minutes() -> None:
    nyse, hk = sessions.session_minutes("XNYS"), sessions.session_minutes("XHKG")
    assert nyse.size == 390 and hk.size == 330
    assert nyse[0] == hms(9, 30) and nyse[-1] == hms(15, 59)
    assert np.all(np.diff(nyse) == 60)
    # HKEX: 150 morning minutes, then straight to 13:00
    assert hk[149] == hms(11, 59) and hk[150] == hms(13, 0) and hk[-1] == hms(15, 59)
    assert not np.any((hk >= hms(12, 0)) & (hk < hms(13, 0)))


def test_in_session_at_the_hkex_lunch_edges() -> None:
    t = np.array([hms(9, 29, 59.999), hms(9, 30), hms(11, 59, 59.999), hms(12, 0), hms(12, 59, 59.999)])
    t = np.append(t, [hms(13, 0), hms(15, 59, 59.999), hms(16, 0)])
    expected = [False, True, True, False, False, True, True, False]
    assert sessions.in_session("XHKG", t).tolist() == expected
    # New York has no lunch break
    assert sessions.in_session("XNYS", t).tolist() == [False, True, True, True, True, True, True, False]


def test_minute_index() -> None:
    t = np.array(
        [hms(9, 29, 59), hms(9, 30), hms(9, 31, 0.5), hms(11, 59, 59), hms(12, 30), hms(13, 0), hms(15, 59, 59)]
    )
    assert sessions.minute_index("XHKG", t).tolist() == [-1, 0, 1, 149, -1, 150, 329]
    assert sessions.minute_index("XNYS", t).tolist() == [-1, 0, 1, 149, 180, 210, 389]
    # the index points at the minute that starts at or before t
    idx = sessions.minute_index("XHKG", t)
    starts = sessions.session_minutes("XHKG")
    inside = idx >= 0
    assert np.all(starts[idx[inside]] <= t[inside]) and np.all(t[inside] < starts[idx[inside]] + 60)


def test_session_clock_is_flat_over_lunch() -> None:
    t = np.array([0.0, hms(9, 30), hms(12, 0), hms(12, 30), hms(13, 0), hms(14, 0), hms(20, 0)])
    assert sessions.session_clock("XHKG", t).tolist() == [0, 0, 9000, 9000, 9000, 12600, 19800]


@pytest.mark.parametrize(
    ("date", "hour_utc"),
    [
        ("2024-03-08", 14),  # EST, UTC-5: the Friday before the spring change
        ("2024-03-11", 13),  # EDT, UTC-4: the Monday after
        ("2024-11-01", 13),  # EDT: the Friday before the autumn change (3 November)
        ("2024-11-04", 14),  # EST: the Monday after
    ],
)
def test_to_utc_ns_follows_new_york_dst(date: str, hour_utc: int) -> None:
    y, m, d = map(int, date.split("-"))
    got = sessions.to_utc_ns(date, "XNYS", np.array([hms(9, 30), hms(16, 0)]))
    assert got.tolist() == [utc_ns(y, m, d, hour_utc, 30), utc_ns(y, m, d, hour_utc + 7, 0)]


def test_to_utc_ns_hong_kong_and_nanoseconds() -> None:
    # Hong Kong is UTC+8 all year: 09:30 HKT = 01:30 UTC
    assert sessions.to_utc_ns("2024-03-11", "XHKG", np.array([hms(9, 30)])).tolist() == [utc_ns(2024, 3, 11, 1, 30)]
    # a LOBSTER time keeps its nanoseconds: 34200.017459617 s after midnight, EDT on 2012-06-21
    got = sessions.to_utc_ns("2012-06-21", "XNYS", np.array([34200.017459617]))
    assert got.tolist() == [utc_ns(2012, 6, 21, 13, 30) + 17_459_617]
    assert got.dtype == np.int64


def test_unknown_market_and_bad_dates() -> None:
    for call in (
        lambda: sessions.windows("XLON"),  # type: ignore[arg-type]
        lambda: sessions.session_minutes("XLON"),  # type: ignore[arg-type]
        lambda: sessions.in_session("XLON", np.zeros(1)),  # type: ignore[arg-type]
        lambda: sessions.to_utc_ns("2024-03-11", "XLON", np.zeros(1)),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match="unknown market 'XLON'; known markets: XHKG, XNYS"):
            call()
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        sessions.to_utc_ns("11/03/2024", "XNYS", np.zeros(1))
    with pytest.raises(ValueError, match="finite"):
        sessions.to_utc_ns("2024-03-11", "XNYS", np.array([np.nan]))
