"""Resampling checked against independent pandas computations: BTC-PERP on UTC boundaries, US
equities on New York wall time (DST, half days, extended hours), forex on the 17:00 New York roll."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import polars as pl
import pytest

from libs.bars.resample import resample, resample_all
from tests.conftest import needs_data

NY = "America/New_York"
AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
INTRADAY = {"5min": 5, "15min": 15, "30min": 30, "1h": 60, "2h": 120, "4h": 240}
# public NYSE facts, typed in rather than taken from the calendar the code uses
HOLIDAYS_2024 = {dt.date(2024, 11, 28), dt.date(2024, 12, 25)}
HALF_DAYS_2024 = {dt.date(2024, 11, 29), dt.date(2024, 12, 24)}


def bars(start_utc: str, end_utc: str, seed: int = 0, drop: float = 0.0) -> pl.DataFrame:
    """Random-walk 1-minute bars every minute in [start, end) UTC; `drop` removes that share of them."""
    ts = pd.date_range(start_utc, end_utc, freq="1min", inclusive="left", tz="UTC")
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 0.05, len(ts))).round(2)
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) + rng.integers(0, 5, len(ts)) / 100
    low = np.minimum(open_, close) - rng.integers(0, 5, len(ts)) / 100
    volume = rng.integers(1, 1_000, len(ts)).astype(float)  # integers: sums are exact in any order
    keep = rng.random(len(ts)) >= drop
    return pl.DataFrame(
        {"ts": ts[keep], "open": open_[keep], "high": high[keep], "low": low[keep], "close": close[keep],
         "volume": volume[keep]}
    ).with_columns(pl.col("ts").dt.cast_time_unit("ns"))  # fmt: skip


def grouped(df: pd.DataFrame, labels: pd.Series, keep: pd.Series) -> pd.DataFrame:
    """OHLCV per label (pandas group-by), ascending."""
    return df[keep.to_numpy()].groupby(labels[keep].to_numpy(), sort=True).agg(AGG)


def assert_same(got: pl.DataFrame, expected: pd.DataFrame) -> None:
    g = got.to_pandas()
    assert list(got.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert got.schema["ts"] == pl.Datetime("ns", "UTC")
    assert len(g) == len(expected) > 0
    np.testing.assert_array_equal(
        g["ts"].to_numpy(dtype="datetime64[ns]"), pd.DatetimeIndex(expected.index).tz_convert(None).to_numpy()
    )
    for col in AGG:
        np.testing.assert_array_equal(g[col].to_numpy(), expected[col].to_numpy(), err_msg=col)


# -- crypto: the real BTC-PERP month ------------------------------------------------------------


@pytest.mark.parametrize("holes", [False, True], ids=["whole", "with_holes"])
def test_btc_perp_every_timeframe_equals_pandas_resample(holes: bool) -> None:
    path = needs_data("bars", "BTC-PERP_1m_2022-01.csv")
    raw = pl.read_csv(path)
    frame = raw.select(
        pl.col("timestamp").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="ns", time_zone="UTC").alias("ts"),
        *(pl.col(c).cast(pl.Float64) for c in AGG),
    )
    if holes:  # the month is gap-free: cut out a whole day, an hour and scattered minutes
        cut = (pl.col("ts").dt.day() == 9) | (pl.col("ts").dt.hour() == 13) | (pl.col("ts").dt.minute() % 17 == 3)
        frame = frame.filter(~cut)
    pdf = frame.to_pandas().set_index("ts")
    out = resample_all(frame, "crypto")
    assert set(out) == {*INTRADAY, "daily"}
    for tf, minutes in {**INTRADAY, "daily": 1440}.items():
        expected = pdf.resample(f"{minutes}min").agg(AGG).dropna(subset=["open"])  # empty bins make no bar
        assert_same(out[tf], expected)
    if holes:
        assert dt.date(2022, 1, 9) not in out["daily"]["ts"].dt.date().to_list()


def test_crypto_empty_bins_make_no_bar() -> None:
    frame = bars("2024-01-01 00:00", "2024-01-01 03:00")
    holed = frame.filter(~pl.col("ts").dt.hour().is_in([1]))
    got = resample(holed, "1h", "crypto")
    assert got["ts"].dt.hour().to_list() == [0, 2]


# -- US equities: New York wall time, computed without the calendar ---------------------------


def equity_expected(frame: pl.DataFrame, timeframe: str) -> pd.DataFrame:
    df = frame.to_pandas()
    wall = df["ts"].dt.tz_convert(NY).dt.tz_localize(None)
    date = wall.dt.normalize()
    tod = wall - date
    day = date.dt.date
    close = pd.to_timedelta(np.where(day.isin(HALF_DAYS_2024), "13:00:00", "16:00:00"))
    open_ = pd.Timedelta("09:30:00")
    keep = (tod >= open_) & (tod < close) & (date.dt.day_of_week < 5) & ~day.isin(HOLIDAYS_2024)
    if timeframe == "daily":
        labels = date.dt.tz_localize("UTC")
    else:
        step = pd.Timedelta(minutes=INTRADAY[timeframe])
        labels = (date + open_ + ((tod - open_) // step) * step).dt.tz_localize(NY).dt.tz_convert("UTC")
    return grouped(df, labels, keep)


def extended_days(days: list[str], seed: int = 1, drop: float = 0.0) -> pl.DataFrame:
    """Bars 04:00-20:00 New York (pre-market to after-hours) on each day."""
    parts = []
    for i, d in enumerate(days):
        lo = pd.Timestamp(f"{d} 04:00", tz=NY).tz_convert("UTC")
        hi = pd.Timestamp(f"{d} 20:00", tz=NY).tz_convert("UTC")
        parts.append(bars(str(lo), str(hi), seed=seed + i, drop=drop))
    return pl.concat(parts)


DST_DAYS = ["2024-03-08", "2024-03-09", "2024-03-11", "2024-11-01", "2024-11-04"]
HALF_DAY_WEEK = ["2024-11-27", "2024-11-28", "2024-11-29", "2024-12-23", "2024-12-24", "2024-12-26"]


@pytest.mark.parametrize("timeframe", [*INTRADAY, "daily"])
@pytest.mark.parametrize("days", [DST_DAYS, HALF_DAY_WEEK], ids=["dst", "half_days"])
def test_equity_bins_follow_new_york_session_open(timeframe: str, days: list[str]) -> None:
    frame = extended_days(days, drop=0.1)
    assert_same(resample(frame, timeframe, "us_equity"), equity_expected(frame, timeframe))


def test_equity_first_bin_moves_with_daylight_saving() -> None:
    frame = extended_days(["2024-03-08", "2024-03-11", "2024-11-01", "2024-11-04"])
    got = resample(frame, "5min", "us_equity")
    firsts = (
        got.group_by(pl.col("ts").dt.date().alias("d"))
        .agg(pl.col("ts").min())
        .sort("ts")["ts"]
        .dt.strftime("%m-%d %H:%M")
    )
    assert firsts.to_list() == ["03-08 14:30", "03-11 13:30", "11-01 13:30", "11-04 14:30"]


def test_equity_hour_bins_and_the_half_day_close() -> None:
    frame = extended_days(["2024-11-27", "2024-11-29"])
    out = resample_all(frame, "us_equity", ["1h", "2h", "4h", "daily"])

    def local(tf: str, day: int) -> list[str]:
        ts = out[tf].filter(pl.col("ts").dt.day() == day)["ts"].dt.convert_time_zone(NY)
        return ts.dt.strftime("%H:%M").to_list()

    assert local("1h", 27) == ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]
    assert local("2h", 27) == ["09:30", "11:30", "13:30", "15:30"]
    assert local("4h", 27) == ["09:30", "13:30"]
    assert local("1h", 29) == ["09:30", "10:30", "11:30", "12:30"]
    assert local("2h", 29) == ["09:30", "11:30"]
    assert local("4h", 29) == ["09:30"]
    # the half day's last hour bin holds 12:30-12:59 only; its close is the 12:59 bar's close
    src = frame.to_pandas().set_index("ts").tz_convert(NY)
    at = lambda text: src.loc[pd.Timestamp(text, tz=NY)]  # noqa: E731
    last_hour = out["1h"].filter(pl.col("ts").dt.day() == 29).row(-1, named=True)
    assert last_hour["close"] == at("2024-11-29 12:59")["close"]
    assert last_hour["volume"] == src.loc["2024-11-29 12:30":"2024-11-29 12:59", "volume"].sum()
    daily = out["daily"]
    assert daily["ts"].dt.strftime("%Y-%m-%d %H:%M").to_list() == ["2024-11-27 00:00", "2024-11-29 00:00"]
    assert daily.row(0, named=True)["open"] == at("2024-11-27 09:30")["open"]
    assert daily.row(0, named=True)["close"] == at("2024-11-27 15:59")["close"]


# -- forex: the 17:00 New York roll -------------------------------------------------------------


def forex_expected(frame: pl.DataFrame, timeframe: str) -> pd.DataFrame:
    df = frame.to_pandas()
    shifted = df["ts"].dt.tz_convert(NY).dt.tz_localize(None) - pd.Timedelta(hours=17)
    start_day = shifted.dt.normalize()
    trade_date = start_day + pd.Timedelta(days=1)
    keep = trade_date.dt.day_of_week < 5
    shifted, start_day, trade_date = shifted.where(keep), start_day.where(keep), trade_date.where(keep)
    if timeframe == "daily":
        labels = trade_date.dt.tz_localize("UTC")
    else:
        step = pd.Timedelta(minutes=INTRADAY[timeframe])
        wall = start_day + ((shifted - start_day) // step) * step + pd.Timedelta(hours=17)
        labels = wall.dt.tz_localize(NY, ambiguous="NaT").dt.tz_convert("UTC")  # weekend rows are NaT already
    return grouped(df, labels, keep)


@pytest.mark.parametrize("timeframe", [*INTRADAY, "daily"])
@pytest.mark.parametrize("span", [("2024-03-06", "2024-03-13"), ("2024-10-30", "2024-11-06")], ids=["march", "nov"])
def test_forex_bins_follow_the_17_new_york_roll(timeframe: str, span: tuple[str, str]) -> None:
    frame = bars(*span, seed=3, drop=0.05)  # includes weekend bars, which belong to no session
    assert_same(resample(frame, timeframe, "forex"), forex_expected(frame, timeframe))


def test_forex_4h_bins_start_at_17_21_01_new_york() -> None:
    got = resample(bars("2024-03-06", "2024-03-13"), "4h", "forex")
    hours = got["ts"].dt.convert_time_zone(NY).dt.hour().unique().sort().to_list()
    assert hours == [1, 5, 9, 13, 17, 21]
    daily = resample(bars("2024-03-06", "2024-03-13"), "daily", "forex")
    assert daily["ts"].dt.strftime("%a %d").to_list() == ["Wed 06", "Thu 07", "Fri 08", "Mon 11", "Tue 12", "Wed 13"]


# -- input handling -------------------------------------------------------------------------------


def test_unsorted_input_gives_the_sorted_result() -> None:
    frame = bars("2024-01-01 00:00", "2024-01-01 02:00", seed=5)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    assert resample(shuffled, "15min", "crypto").equals(resample(frame, "15min", "crypto"))


def test_empty_and_all_outside_session_frames_give_no_bars() -> None:
    frame = bars("2024-03-09 14:00", "2024-03-09 16:00")  # a Saturday
    assert resample(frame, "5min", "us_equity").height == 0
    assert resample(frame.head(0), "daily", "crypto").height == 0


def test_coarser_bins_from_finer_bars_agree() -> None:
    frame = extended_days(DST_DAYS, drop=0.2)
    five = resample(frame, "5min", "us_equity")
    direct = resample(frame, "1h", "us_equity")
    assert resample(five, "1h", "us_equity").equals(direct)


def test_bad_inputs_name_the_value() -> None:
    frame = bars("2024-01-01 00:00", "2024-01-01 01:00")
    with pytest.raises(ValueError, match="unknown timeframe '7min'"):
        resample(frame, "7min", "crypto")
    with pytest.raises(ValueError, match="unknown asset class 'bond'"):
        resample(frame, "5min", "bond")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['volume'\]"):
        resample(frame.drop("volume"), "5min", "crypto")
    with pytest.raises(ValueError, match="time-zone-aware"):
        resample(frame.with_columns(pl.col("ts").dt.replace_time_zone(None)), "5min", "crypto")
    with pytest.raises(ValueError, match=r"empty values: \{'close': 1\}"):
        resample(frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("close"))
                                    .alias("close")), "5min", "crypto")  # fmt: skip
    with pytest.raises(ValueError, match="unknown timeframe 'weekly'"):
        resample_all(frame, "crypto", ["5min", "weekly"])


def test_a_timestamp_given_twice_is_refused_naming_it() -> None:
    frame = bars("2024-01-01 00:00", "2024-01-01 01:00")
    twice = pl.concat([frame, frame.slice(7, 1), frame.slice(20, 1)])
    first = frame["ts"][7].isoformat()
    with pytest.raises(ValueError, match=rf"2 duplicate timestamp\(s\), the first {re.escape(first)}"):
        resample(twice, "5min", "crypto")
    with pytest.raises(ValueError, match="duplicate timestamp"):
        resample_all(twice, "crypto")


def test_daily_or_coarser_input_is_refused_not_silently_empty() -> None:
    days = pd.date_range("2024-03-04", "2024-03-15", freq="B", tz="UTC")  # daily bars labelled 00:00 UTC
    daily = pl.DataFrame({"ts": days, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0}).with_columns(
        pl.col("ts").dt.cast_time_unit("ns")
    )
    for timeframe in ("5min", "1h", "daily"):
        with pytest.raises(ValueError, match=f"cannot resample daily bars to {timeframe}: resample takes 1-minute"):
            resample(daily, timeframe, "us_equity")
    hourly = resample(bars("2024-01-01 00:00", "2024-01-02 00:00"), "1h", "crypto")
    with pytest.raises(ValueError, match="cannot resample 1h bars to 30min"):
        resample(hourly, "30min", "crypto")
    with pytest.raises(ValueError, match="cannot resample 1h bars to 5min"):
        resample_all(hourly, "crypto")
    assert resample(hourly, "4h", "crypto").equals(
        resample(bars("2024-01-01 00:00", "2024-01-02 00:00"), "4h", "crypto")
    )
    half_minutes = bars("2024-01-01 00:00", "2024-01-01 01:00").with_columns(
        pl.col("ts") + pl.duration(seconds=30, time_unit="ns")
    )
    with pytest.raises(ValueError, match="must open on whole minutes"):
        resample(pl.concat([bars("2024-01-01 00:00", "2024-01-01 01:00"), half_minutes]), "5min", "crypto")


def test_sparse_minutes_are_still_minutes() -> None:
    """An illiquid symbol's 1-minute bars, 2 to 7 minutes apart: resampled, not refused."""
    frame = bars("2024-01-01 00:00", "2024-01-01 06:00", seed=3)
    sparse = frame.gather(np.cumsum(np.random.default_rng(1).integers(2, 8, 60)))
    got = resample(sparse, "5min", "crypto")
    df = sparse.to_pandas().set_index("ts")
    want = df.resample("5min").agg(AGG).dropna()
    assert_same(got, want)
