"""The bar manager on a real chDB: storage round trips, paging, replacement, imports of the real
data sets, resampling from the store, completeness of stored days, and the `bars` CLI."""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import polars as pl
import pytest

from libs import config
from libs.bars.calendars import sessions
from libs.bars.completeness import analyse, missing_days, validate_stored
from libs.bars.files import BarsFileError, read_bars_file
from libs.bars.importer import import_file
from libs.bars.resample import resample_all
from libs.bars.store import (
    count_bars,
    last_bar_ts,
    read_bars,
    resample_stored,
    stored_symbols,
    write_bars,
)
from libs.config import Settings
from libs.store import Store, open_store
from libs.store.sql import with_db
from services.cli_bars import add_bars_parser, cmd_bars
from tests.conftest import needs_data

NY = "America/New_York"
UTC = dt.UTC
_db_seq = itertools.count()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bars_home")


@pytest.fixture
def settings_db(home: Path) -> Settings:
    return config.load({}, home=home, clickhouse_database=f"bars_test_{next(_db_seq)}")


@pytest.fixture
def store(settings_db: Settings) -> Iterator[Store]:
    s = open_store(settings_db)
    try:
        s.migrate()
        yield s
        s.command("DROP DATABASE IF EXISTS {db}")
    finally:
        s.close()


def minute_bars(start: str, end: str, tz: str = "UTC", seed: int = 0) -> pl.DataFrame:
    """Random 1-minute bars every minute of [start, end) in zone `tz`."""
    ts = pd.date_range(start, end, freq="1min", inclusive="left", tz=tz).tz_convert("UTC")
    rng = np.random.default_rng(seed)
    close = 50 + np.cumsum(rng.normal(0, 0.1, len(ts)))
    return pl.DataFrame(
        {"ts": ts, "open": close + 0.01, "high": close + 0.05, "low": close - 0.05, "close": close,
         "volume": rng.integers(1, 500, len(ts)).astype(float)}
    ).with_columns(pl.col("ts").dt.cast_time_unit("ns"))  # fmt: skip


def session_bars(day: str, seed: int = 0, close: str = "16:00") -> pl.DataFrame:
    return minute_bars(f"{day} 09:30", f"{day} {close}", NY, seed)


# -- storage ---------------------------------------------------------------------------------------


def test_round_trip_paging_and_ranges(store: Store) -> None:
    frame = minute_bars("2024-01-01", "2024-01-02", seed=1)  # 1,440 crypto minutes
    assert write_bars(store, "ETH-USD", frame, source="test", venue="unit") == 1440
    assert read_bars(store, "ETH-USD").equals(frame)
    assert count_bars(store, "ETH-USD") == 1440
    page = read_bars(store, "ETH-USD", limit=100, offset=200)
    assert page.equals(frame.slice(200, 100))
    newest = read_bars(store, "ETH-USD", order="desc", limit=10, offset=5)
    assert newest.equals(frame.reverse().slice(5, 10))
    lo, hi = dt.datetime(2024, 1, 1, 6, tzinfo=UTC), dt.datetime(2024, 1, 1, 7, tzinfo=UTC)
    window = read_bars(store, "ETH-USD", start=lo, end=hi)
    assert window["ts"].min() == lo and window.height == 60  # [start, end)
    assert count_bars(store, "ETH-USD", "1min", lo, hi) == 60
    assert last_bar_ts(store, "ETH-USD") == dt.datetime(2024, 1, 1, 23, 59, tzinfo=UTC)
    assert last_bar_ts(store, "NOPE") is None
    assert read_bars(store, "NOPE").height == 0
    write_bars(store, "AAPL", session_bars("2024-01-02"))
    assert stored_symbols(store) == ["AAPL", "ETH-USD"]
    assert stored_symbols(store, "daily") == []
    rows = store.query_df("SELECT DISTINCT source, venue FROM {db}.ohlcv WHERE symbol = 'ETH-USD'")
    assert rows.rows() == [("test", "unit")]


def test_rewriting_a_day_replaces_it(store: Store) -> None:
    day = session_bars("2024-03-11", seed=2)
    write_bars(store, "MSFT", day)
    revised = day.with_columns(pl.col("close") + 1.0)
    write_bars(store, "MSFT", revised)
    assert count_bars(store, "MSFT") == 390
    assert read_bars(store, "MSFT").equals(revised)
    assert store.query_df("SELECT count() AS n FROM {db}.ohlcv FINAL").item() == 390


def test_bad_inputs_name_the_value(store: Store) -> None:
    frame = minute_bars("2024-01-01", "2024-01-01 01:00")
    with pytest.raises(ValueError, match="unknown timeframe '2min'"):
        read_bars(store, "X", "2min")
    with pytest.raises(ValueError, match="order must be 'asc' or 'desc', got 'up'"):
        read_bars(store, "X", order="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be a non-negative int, got -1"):
        read_bars(store, "X", limit=-1)
    with pytest.raises(ValueError, match="is after end"):
        read_bars(store, "X", start=dt.datetime(2024, 2, 1), end=dt.datetime(2024, 1, 1))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['high'\]"):
        write_bars(store, "X", frame.drop("high"))
    with pytest.raises(ValueError, match="symbol must be a non-empty string"):
        write_bars(store, " ", frame)
    with pytest.raises(ValueError, match="start 2024-02-01 is after end 2024-01-01"):
        analyse(store, ["X"], dt.date(2024, 2, 1), dt.date(2024, 1, 1))
    with pytest.raises(ValueError, match="unknown asset class 'fx'"):
        resample_stored(store, "X", "fx", dt.date(2024, 1, 1), dt.date(2024, 1, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown asset class 'fx'"):
        analyse(store, ["X"], dt.date(2024, 1, 1), dt.date(2024, 1, 2), asset_override="fx")


# -- imports of the real data sets -------------------------------------------------------------------


def test_btc_perp_import_stores_minutes_and_every_timeframe(store: Store) -> None:
    path = needs_data("bars", "BTC-PERP_1m_2022-01.csv")
    result = import_file(store, path, "BTC-PERP")
    assert (result.asset_class, result.timeframe, result.rows_read, result.rows_written) == (
        "crypto",
        "1min",
        45031,
        45031,
    )
    frame = read_bars_file(path)
    assert read_bars(store, "BTC-PERP").equals(frame)
    pdf = frame.to_pandas().set_index("ts")
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    for tf, rule in {"5min": "5min", "1h": "1h", "4h": "4h", "daily": "1D"}.items():
        expected = pdf.resample(rule).agg(agg).dropna(subset=["open"])
        stored = read_bars(store, "BTC-PERP", tf).to_pandas().set_index("ts")
        pd.testing.assert_frame_equal(stored, expected, check_freq=False, check_names=False)
        assert result.resampled[tf] >= len(expected)  # whole sessions around the file were (re)written


def test_goog_daily_round_trip_matches_the_nyse_sessions(store: Store) -> None:
    path = needs_data("bars", "GOOG_daily_2004_2013.csv")
    result = import_file(store, path, "GOOG")
    assert (result.timeframe, result.asset_class, result.resampled) == ("daily", "us_equity", {})
    frame = read_bars_file(path)
    stored = read_bars(store, "GOOG", "daily")
    assert stored.equals(frame) and stored.height == 2148
    assert count_bars(store, "GOOG", "1min") == 0
    first, last = stored["ts"][0].date(), stored["ts"][-1].date()
    import exchange_calendars as xcals

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nyse = xcals.get_calendar("XNYS", start="2004-01-01", end="2014-01-01")
    official = {d.date() for d in nyse.sessions_in_range(first.isoformat(), last.isoformat())}
    ours = {s.date for s in sessions("us_equity", first, last)}
    dates = set(stored["ts"].dt.date().to_list())
    assert ours == official
    assert (len(official - dates), len(dates - official)) == (0, 0)  # the data set has every session, no extras
    assert sessions("us_equity", first, first)[0].date == first


def test_import_refuses_bad_files(store: Store, tmp_path: Path) -> None:
    five = tmp_path / "five.csv"
    minute_bars("2024-01-01", "2024-01-01 01:00").filter(pl.col("ts").dt.minute() % 5 == 0).write_csv(five)
    with pytest.raises(ValueError, match="bars are 5min apart"):
        import_file(store, five, "ETH-USD")
    with pytest.raises(BarsFileError, match=r"missing\.csv"):
        import_file(store, tmp_path / "missing.csv", "ETH-USD")
    with pytest.raises(ValueError, match="unknown asset class 'fx'"):
        import_file(store, five, "ETH-USD", asset="fx")  # type: ignore[arg-type]


def test_importing_the_second_half_of_a_day_resamples_the_whole_day(store: Store, tmp_path: Path) -> None:
    day = session_bars("2024-11-04", seed=4)
    whole = resample_all(day, "us_equity")
    first, second = day.filter(pl.col("ts").dt.hour() < 17), day.filter(pl.col("ts").dt.hour() >= 17)
    write_bars(store, "IBM", first)
    path = tmp_path / "ibm_pm.csv"
    second.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(path)
    result = import_file(store, path, "IBM")
    assert result.rows_written == second.height
    for tf, expected in whole.items():
        assert read_bars(store, "IBM", tf).equals(expected), tf


# -- completeness ------------------------------------------------------------------------------------------


def test_completeness_report_flags_symbols_under_95_percent(store: Store) -> None:
    # 2024-11-25..29: Mon-Wed full days, Thanksgiving closed, Friday half day
    good = pl.concat([session_bars(d) for d in ("2024-11-25", "2024-11-26", "2024-11-27")]
                     + [session_bars("2024-11-29", close="13:00")])  # fmt: skip
    pre_market = minute_bars("2024-11-26 08:00", "2024-11-26 09:00", NY)  # 60 bars before the open
    holiday = minute_bars("2024-11-28 10:00", "2024-11-28 10:05", NY)  # counted on the next session
    write_bars(store, "AAA", pl.concat([good, pre_market, holiday]).sort("ts"))
    removed = [(pd.Timestamp("2024-11-26 10:00", tz=NY), 7), (pd.Timestamp("2024-11-29 12:55", tz=NY), 5)]
    drop = pl.lit(False)
    for start, n in removed:
        lo = start.tz_convert("UTC")
        drop = drop | pl.col("ts").is_between(lo, lo + pd.Timedelta(minutes=n), closed="left")
    write_bars(store, "BBB", good.filter(~drop & (pl.col("ts").dt.day() != 27)))  # and no 27th at all

    report = analyse(store, ["AAA", "BBB"], dt.date(2024, 11, 23), dt.date(2024, 11, 30))
    expected_total = 3 * 390 + 210
    aaa, bbb = report.symbol_completeness["AAA"], report.symbol_completeness["BBB"]
    assert (aaa.total_trading_days, aaa.total_expected_candles, aaa.total_actual_candles) == (
        4,
        expected_total,
        expected_total,
    )
    assert aaa.completeness_percentage == 100.0 and aaa.valid_days == 4
    assert [d.unexpected_candles for d in aaa.validation_results] == [0, 60, 0, 5]
    missing = 7 + 5 + 390
    assert (bbb.total_actual_candles, bbb.missing_candles) == (expected_total - missing, missing)
    assert bbb.completeness_percentage == round(100 * (expected_total - missing) / expected_total, 2) < 95
    assert (bbb.valid_days, bbb.invalid_days) == (1, 3)
    nov26 = bbb.validation_results[1]
    assert [(g.start, g.minutes) for g in nov26.gaps] == [(dt.datetime(2024, 11, 26, 15, 0, tzinfo=UTC), 7)]
    nov29 = bbb.validation_results[3]
    assert nov29.early_close and nov29.expected_candles == 210
    assert [(g.start, g.end) for g in nov29.gaps] == [
        (dt.datetime(2024, 11, 29, 17, 55, tzinfo=UTC), dt.datetime(2024, 11, 29, 18, 0, tzinfo=UTC))
    ]
    assert report.symbols_needing_attention == ["BBB"]
    assert report.recommendations[0] == "1 symbols have less than 95% data completeness"
    assert report.overall_statistics["total_expected_candles"] == 2 * expected_total
    assert report.overall_statistics["total_missing_candles"] == missing
    assert report.analysis_period == {"start_date": "2024-11-23", "end_date": "2024-11-30"}
    assert missing_days(store, "BBB", "us_equity", dt.date(2024, 11, 23), dt.date(2024, 11, 30)) == [
        dt.date(2024, 11, 26), dt.date(2024, 11, 27), dt.date(2024, 11, 29)
    ]  # fmt: skip
    assert missing_days(store, "AAA", "us_equity", dt.date(2024, 11, 23), dt.date(2024, 11, 30)) == []
    lean = analyse(store, ["AAA"], dt.date(2024, 11, 25), dt.date(2024, 11, 25), include_details=False)
    assert lean.symbol_completeness["AAA"].validation_results == []
    assert lean.symbols_needing_attention == [] and lean.symbol_completeness["AAA"].total_trading_days == 1


def test_crypto_and_forex_days_validate_on_their_sessions(store: Store) -> None:
    write_bars(store, "BTC-USD", minute_bars("2024-03-10", "2024-03-11").filter(pl.col("ts").dt.hour() != 5))
    (day,) = validate_stored(store, "BTC-USD", "crypto", dt.date(2024, 3, 10), dt.date(2024, 3, 10))
    assert (day.expected_candles, day.missing_candles, len(day.gaps)) == (1440, 60, 1)
    # the Monday after the spring clock change: Sunday 17:00 EDT (21:00 UTC) to Monday 17:00 EDT
    write_bars(store, "EURUSD", minute_bars("2024-03-10 17:00", "2024-03-11 17:00", NY))
    write_bars(store, "EURUSD", minute_bars("2024-03-09 10:00", "2024-03-09 10:03", NY))  # a Saturday
    (mon,) = validate_stored(store, "EURUSD", "forex", dt.date(2024, 3, 11), dt.date(2024, 3, 11))
    assert (mon.expected_candles, mon.actual_candles, mon.unexpected_candles) == (1440, 1440, 3)


# -- the CLI -----------------------------------------------------------------------------------------------


def run_cli(settings: Settings, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser(prog="markettwin")
    add_bars_parser(parser.add_subparsers(dest="cmd", required=True))
    assert cmd_bars(settings, parser.parse_args(argv)) == 0
    return capsys.readouterr().out


def test_cli_verbs(settings_db: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "aapl.csv"
    day = pl.concat([session_bars("2024-03-08", 1), session_bars("2024-03-11", 2)])
    day = day.filter(~pl.col("ts").is_between(pd.Timestamp("2024-03-11 14:00", tz="UTC"),
                                              pd.Timestamp("2024-03-11 14:10", tz="UTC"), closed="left"))  # fmt: skip
    day.with_columns(pl.col("ts").dt.convert_time_zone(NY).dt.strftime("%Y-%m-%d %H:%M")).write_csv(csv)
    imported = json.loads(run_cli(settings_db, ["bars", "import", str(csv), "--symbol", "AAPL", "--tz", NY], capsys))
    assert imported["rows_written"] == 780 - 10 and imported["resampled"]["daily"] == 2
    assert imported["first_ts"] == "2024-03-08T14:30:00Z"

    shown = run_cli(settings_db, ["bars", "show", "AAPL", "--timeframe", "1h", "--limit", "3"], capsys).splitlines()
    hours = 2 * 7  # two sessions of 6.5 hours: 7 hourly bins each
    assert shown[0] == f"AAPL 1h: showing 3 of {hours} bars" and shown[1].startswith("2024-03-08 14:30Z")
    assert len(shown) == 1 + 3
    argv = ["bars", "show", "AAPL", "--start", "2024-03-11", "--limit", "5", "--offset", "2"]
    assert (
        run_cli(settings_db, argv, capsys).splitlines()[0]
        == f"AAPL 1min: showing 5 of {390 - 10} bars after skipping 2"
    )
    desc = run_cli(settings_db, ["bars", "show", "AAPL", "--timeframe", "daily", "--desc"], capsys).splitlines()
    assert desc[0] == "AAPL daily: showing 2 of 2 bars"
    assert [line[:10] for line in desc[1:]] == ["2024-03-11", "2024-03-08"]

    gaps = json.loads(run_cli(settings_db, ["bars", "gaps", "AAPL", "--date", "2024-03-11"], capsys))
    assert gaps["gaps"] == [{"start": "2024-03-11T14:00:00Z", "end": "2024-03-11T14:10:00Z", "minutes": 10}]

    argv = ["bars", "completeness", "AAPL", "--start", "2024-03-08", "--end", "2024-03-11"]
    report = json.loads(run_cli(settings_db, argv, capsys))
    assert report["symbol_completeness"]["AAPL"]["missing_candles"] == 10
    assert report["symbol_completeness"]["AAPL"]["validation_results"] == []
    assert report["symbols_needing_attention"] == []

    resampled = json.loads(run_cli(settings_db, ["bars", "resample", "AAPL"], capsys))
    assert resampled["rows"]["daily"] == 2 and resampled["rows"]["5min"] == 78 + 76
    assert run_cli(settings_db, ["bars", "symbols"], capsys).split() == ["AAPL"]


def test_cli_errors_name_the_value(settings_db: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="2024-03-09 has no us_equity trading session"):
        run_cli(settings_db, ["bars", "gaps", "AAPL", "--date", "2024-03-09"], capsys)
    with pytest.raises(ValueError, match="no 1-minute bars stored for 'ZZZ'"):
        run_cli(settings_db, ["bars", "resample", "ZZZ"], capsys)
    with pytest.raises(SystemExit):
        run_cli(settings_db, ["bars", "show", "AAPL", "--timeframe", "3min"], capsys)
    assert "invalid choice: '3min'" in capsys.readouterr().err


# -- review fixes -----------------------------------------------------------------------------------------


def test_a_symbol_containing_the_db_placeholder_is_stored_and_read_as_written(store: Store) -> None:
    symbol = "ODD{db}'SYM"
    bars = minute_bars("2024-03-10 00:00", "2024-03-10 00:30")
    write_bars(store, symbol, bars)
    write_bars(store, "ODDmarkettwin'SYM", minute_bars("2024-03-10 00:00", "2024-03-10 00:05"))  # a lookalike
    assert count_bars(store, symbol) == 30
    assert read_bars(store, symbol).equals(bars)
    assert symbol in stored_symbols(store)
    (day,) = validate_stored(store, symbol, "crypto", dt.date(2024, 3, 10), dt.date(2024, 3, 10))
    assert day.actual_candles == 30
    # the placeholder is filled in outside literals and comments only
    sql = "SELECT '{db}' AS a, \"{db}\".x FROM {db}.t -- it's {db}\nWHERE s = 'it''s {db}' /* {db} */"
    assert with_db(sql, "D") == "SELECT '{db}' AS a, \"D\".x FROM D.t -- it's {db}\nWHERE s = 'it''s {db}' /* {db} */"


def test_the_attention_flag_compares_before_rounding(store: Store) -> None:
    """14 crypto days (20,160 minutes) with 1,009 missing: 94.99504% prints as 95.0 but is under 95."""
    full = minute_bars("2024-01-01", "2024-01-15")
    gap = pd.Timestamp("2024-01-03 00:00", tz="UTC")
    holes = full.filter(~pl.col("ts").is_between(gap, gap + pd.Timedelta(minutes=1009), closed="left"))
    write_bars(store, "EDGE", holes)
    write_bars(store, "FULL", full)
    report = analyse(store, ["EDGE", "FULL"], dt.date(2024, 1, 1), dt.date(2024, 1, 14), asset_override="crypto")
    edge = report.symbol_completeness["EDGE"]
    assert (edge.total_expected_candles, edge.total_actual_candles) == (20_160, 20_160 - 1_009)
    assert 100 * (20_160 - 1_009) / 20_160 < 95 and edge.completeness_percentage == 95.0
    assert report.symbols_needing_attention == ["EDGE"]
    assert report.recommendations[0] == "1 symbols have less than 95% data completeness"
    # and a threshold met exactly is not flagged
    at = analyse(store, ["FULL"], dt.date(2024, 1, 1), dt.date(2024, 1, 14), threshold_pct=100.0)
    assert at.symbols_needing_attention == []


def test_completeness_request_size_is_limited(store: Store) -> None:
    with pytest.raises(ValueError, match="symbols: 1001 symbols, at most 1000 per request"):
        analyse(store, [f"S{i}" for i in range(1001)], dt.date(2024, 1, 1), dt.date(2024, 1, 1))
    with pytest.raises(ValueError, match="spans 3661 days, at most 3660"):
        analyse(store, ["AAPL"], dt.date(2000, 1, 1), dt.date(2010, 1, 8))
    with pytest.raises(ValueError, match="28 symbols x 3653 days = 102284 symbol-days, at most 100000 per report"):
        analyse(store, [f"S{i}" for i in range(28)], dt.date(2000, 1, 1), dt.date(2009, 12, 31))


def test_cli_uses_the_asset_overrides_setting(
    settings_db: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "coin.csv"
    minute_bars("2024-03-09", "2024-03-10").write_csv(csv)  # a Saturday: no equity session
    settings = msgspec.structs.replace(settings_db, bars_asset_overrides="MYCOIN=crypto")
    imported = json.loads(run_cli(settings, ["bars", "import", str(csv), "--symbol", "MYCOIN"], capsys))
    assert imported["asset_class"] == "crypto" and imported["resampled"]["daily"] == 1
    argv = ["bars", "completeness", "MYCOIN", "--start", "2024-03-09", "--end", "2024-03-09"]
    report = json.loads(run_cli(settings, argv, capsys))
    assert report["symbol_completeness"]["MYCOIN"]["asset_class"] == "crypto"
    assert report["symbol_completeness"]["MYCOIN"]["total_actual_candles"] == 1440
    bad = msgspec.structs.replace(settings_db, bars_asset_overrides="MYCOIN:crypto")
    with pytest.raises(ValueError, match="MT_BARS_ASSET_OVERRIDES: 'MYCOIN:crypto' is not SYMBOL=CLASS"):
        run_cli(bad, argv, capsys)


# -- walkthrough fixes ---------------------------------------------------------------------------------------


def test_cli_import_with_an_unknown_time_zone_is_a_value_error(
    settings_db: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "x.csv"
    minute_bars("2024-03-09", "2024-03-09 00:10").write_csv(csv)
    with pytest.raises(ValueError, match="tz: unknown time zone 'Mars/Base'"):
        run_cli(settings_db, ["bars", "import", str(csv), "--symbol", "X", "--tz", "Mars/Base"], capsys)


def test_completeness_of_today_stops_at_now(store: Store) -> None:
    write_bars(store, "LIVE", minute_bars("2024-03-10 00:00", "2024-03-10 09:00"))  # crypto: a UTC day
    now = dt.datetime(2024, 3, 10, 10, 0, 30, tzinfo=UTC)
    report = analyse(store, ["LIVE"], dt.date(2024, 3, 10), dt.date(2024, 3, 10), asset_override="crypto", now=now)
    c = report.symbol_completeness["LIVE"]
    assert (c.total_expected_candles, c.total_actual_candles, c.missing_candles) == (600, 540, 60)
    assert c.completeness_percentage == round(100 * 540 / 600, 2)
    (gap,) = c.validation_results[0].gaps
    assert (gap.start, gap.end) == (dt.datetime(2024, 3, 10, 9, tzinfo=UTC), dt.datetime(2024, 3, 10, 10, tzinfo=UTC))
    # the next day has not started: nothing expected; without a clock every minute of it would be
    tomorrow = analyse(store, ["LIVE"], dt.date(2024, 3, 11), dt.date(2024, 3, 11), asset_override="crypto", now=now)
    assert tomorrow.symbol_completeness["LIVE"].total_expected_candles == 0
    past = analyse(store, ["LIVE"], dt.date(2024, 3, 10), dt.date(2024, 3, 10), asset_override="crypto")
    assert past.symbol_completeness["LIVE"].total_expected_candles == 1440  # the real clock is long past that day


def test_symbols_without_any_minute_bars_are_named(store: Store) -> None:
    write_bars(store, "AAPL", session_bars("2024-03-08"))
    daily = pl.DataFrame(
        {"ts": [dt.datetime(2024, 3, 8, tzinfo=UTC)], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5],
         "volume": [10.0]}
    ).with_columns(pl.col("ts").dt.cast_time_unit("ns"))  # fmt: skip
    write_bars(store, "GOOG", daily, "daily")
    report = analyse(store, ["AAPL", "NOPE", "GOOG"], dt.date(2024, 3, 8), dt.date(2024, 3, 8))
    assert report.symbols_without_1min_bars == ["NOPE", "GOOG"]
    assert "NOPE, GOOG: no 1-minute bars stored (daily only: GOOG)" in report.recommendations
    assert report.symbols_needing_attention == ["NOPE", "GOOG"]  # the reference's fields are unchanged
    # a symbol with minute bars on other days is not listed
    none_that_day = analyse(store, ["AAPL"], dt.date(2024, 3, 11), dt.date(2024, 3, 11))
    assert none_that_day.symbols_without_1min_bars == []
    assert not any("no 1-minute bars" in r for r in none_that_day.recommendations)


def test_import_counts_minutes_outside_the_sessions_and_the_cli_warns_about_the_time_zone(
    settings_db: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "ny_local.csv"
    local = session_bars("2024-03-08").with_columns(pl.col("ts").dt.convert_time_zone(NY).dt.strftime("%Y-%m-%d %H:%M"))
    local.write_csv(csv)  # New York wall times, no offset
    # read as UTC, 09:30-16:00 lands at 04:30-11:00 New York: only 14:30-16:00 UTC is inside the 14:30-21:00 UTC session
    as_utc = pd.to_datetime(local["ts"].to_list()).tz_localize("UTC")
    inside = (as_utc >= pd.Timestamp("2024-03-08 14:30", tz="UTC")) & (
        as_utc < pd.Timestamp("2024-03-08 21:00", tz="UTC")
    )
    want_outside = int((~inside).sum())
    assert want_outside == 300

    parser = argparse.ArgumentParser(prog="markettwin")
    add_bars_parser(parser.add_subparsers(dest="cmd", required=True))
    assert cmd_bars(settings_db, parser.parse_args(["bars", "import", str(csv), "--symbol", "AAPL"])) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["rows_outside_sessions"] == want_outside
    assert err.strip() == (
        f"warning: {want_outside} of 390 1-minute bars (77%) are outside the XNYS sessions: is --tz right? "
        "(the file's times are read as UTC unless --tz says otherwise)"
    )
    assert cmd_bars(settings_db, parser.parse_args(["bars", "import", str(csv), "--symbol", "AAPL", "--tz", NY])) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["rows_outside_sessions"] == 0 and err == ""

    # a few pre-market minutes (under 10%) are counted but not warned about
    early = pl.concat([minute_bars("2024-03-11 09:20", "2024-03-11 09:30", NY), session_bars("2024-03-11")])
    early.write_csv(tmp_path / "early.csv")
    assert (
        cmd_bars(settings_db, parser.parse_args(["bars", "import", str(tmp_path / "early.csv"), "--symbol", "AAPL"]))
        == 0
    )
    out, err = capsys.readouterr()
    assert json.loads(out)["rows_outside_sessions"] == 10 and err == ""
    (tmp_path / "daily.csv").write_text(HEADER_DAILY)
    assert (
        cmd_bars(settings_db, parser.parse_args(["bars", "import", str(tmp_path / "daily.csv"), "--symbol", "D"])) == 0
    )
    out, err = capsys.readouterr()
    assert json.loads(out)["timeframe"] == "daily" and json.loads(out)["rows_outside_sessions"] is None and err == ""


HEADER_DAILY = "date,open,high,low,close,volume\n2024-03-08,1,2,0.5,1.5,10\n2024-03-11,1,2,0.5,1.5,10\n"
