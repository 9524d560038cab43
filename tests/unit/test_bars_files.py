"""OHLCV bar files: real BTC-PERP and GOOG files, time formats and zones, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from libs.bars.files import BarsFileError, infer_timeframe, read_bars_file
from tests.conftest import needs_data

HEADER = "timestamp,open,high,low,close,volume\n"


def _write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_btc_perp_minute_bars_equal_the_file() -> None:
    path = needs_data("bars", "BTC-PERP_1m_2022-01.csv")
    df = read_bars_file(path)
    want = pd.read_csv(path)
    assert df.columns == ["ts", "open", "high", "low", "close", "volume"]
    assert df.schema["ts"] == pl.Datetime("ns", "UTC")
    assert df.height == len(want) == 45_031
    want_ts = pd.to_datetime(want["timestamp"]).dt.tz_localize("UTC").dt.as_unit("ns")
    assert (df["ts"].cast(pl.Int64).to_numpy() == want_ts.astype("int64").to_numpy()).all()
    for c in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(df[c].to_numpy(), want[c].to_numpy(dtype=float))
    assert infer_timeframe(df["ts"]) == "1min"


def test_goog_daily_bars_blank_header_dates_at_midnight_utc() -> None:
    path = needs_data("bars", "GOOG_daily_2004_2013.csv")
    df = read_bars_file(path, tz="America/New_York")  # date-only values ignore tz: a session label
    want = pd.read_csv(path, index_col=0)
    assert df.height == len(want) == 2_148
    first = df.row(0, named=True)
    assert first["ts"].isoformat() == "2004-08-19T00:00:00+00:00"
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (
        100.0,
        104.06,
        95.96,
        100.34,
        22_351_900.0,
    )
    np.testing.assert_array_equal(df["close"].to_numpy(), want["Close"].to_numpy(dtype=float))
    assert infer_timeframe(df["ts"]) == "daily"


def test_naive_times_in_new_york_cross_daylight_saving(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "Date,Open,High,Low,Close,Volume\n"
        "2024-03-08 09:30:00,1,2,1,2,10\n"  # EST: UTC-5
        "2024-03-11 09:30,1,2,1,2,10\n",  # EDT: UTC-4
    )
    df = read_bars_file(path, tz="America/New_York")
    assert [t.isoformat() for t in df["ts"]] == ["2024-03-08T14:30:00+00:00", "2024-03-11T13:30:00+00:00"]


def test_offsets_fractions_and_T_separator(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEADER
        + "2024-01-02T10:00:00.5+02:00,1,1,1,1,0\n2024-01-02T09:00:01Z,1,1,1,1,0\n2024-01-02 09:00:02,1,1,1,1,0\n",
    )
    df = read_bars_file(path, tz="America/New_York")
    got = [t.isoformat() for t in df["ts"]]
    assert got == ["2024-01-02T08:00:00.500000+00:00", "2024-01-02T09:00:01+00:00", "2024-01-02T14:00:02+00:00"]


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
def test_epoch_units_by_magnitude(tmp_path: Path, scale: int) -> None:
    base = 1_704_067_200  # 2024-01-01T00:00:00Z
    path = _write(tmp_path, "T,O,H,L,C,V\n" + "".join(f"{(base + 60 * i) * scale},1,2,0.5,1.5,3\n" for i in range(3)))
    df = read_bars_file(path)
    assert df["ts"][0].isoformat() == "2024-01-01T00:00:00+00:00"
    assert df["ts"].diff().drop_nulls().dt.total_seconds().to_list() == [60, 60]


def test_parquet_and_unsorted_input_is_sorted(tmp_path: Path) -> None:
    ts = pl.Series([3, 1, 2]).cast(pl.Int64) * 60_000_000_000
    pl.DataFrame(
        {
            "Timestamp": ts.cast(pl.Datetime("ns")),
            "Open": [3.0, 1.0, 2.0],
            "High": [3.0, 1.0, 2.0],
            "Low": [3.0, 1.0, 2.0],
            "Close": [3.0, 1.0, 2.0],
            "Volume": [3.0, 1.0, 2.0],
        }
    ).write_parquet(tmp_path / "b.parquet")
    df = read_bars_file(tmp_path / "b.parquet")
    assert df["open"].to_list() == [1.0, 2.0, 3.0]
    assert df["ts"].is_sorted()


def test_symbol_column_selects_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, "symbol," + HEADER + "A,2024-01-02,1,1,1,1,1\nB,2024-01-02,2,2,2,2,2\n")
    assert read_bars_file(path, symbol="B")["open"].to_list() == [2.0]
    with pytest.raises(BarsFileError, match="2 symbols"):
        read_bars_file(path)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("2024-01-02,1,1,1,1,1\nnot-a-date,1,1,1,1,1\n", r"row 2: timestamp 'not-a-date' is not a date or time"),
        ("2024-01-02 10:00,1,1,1,x,1\n", r"row 1: close 'x' is not a number"),
        ("2024-01-02 10:00,1,1,1,,1\n", r"row 1: close is empty"),
        ("2024-01-02 10:00,1,1,1,1,-5\n", r"row 1: volume -5.0 is negative"),
        ("2024-01-02 10:00,-1,1,-1,1,5\n", r"row 1: open -1.0 is negative"),
        ("2024-01-02 10:00,1,1,1,inf,5\n", r"row 1: close inf is not finite"),
        ("2024-01-02 10:00,1,2,1,1,1\n2024-01-02 10:01,1,1.5,1,2,1\n", r"row 2: high 1.5 is below max"),
        ("2024-01-02 10:00,1,2,1.2,1.5,1\n", r"row 1: low 1.2 is above min"),
        ("2024-01-02 10:01,1,1,1,1,1\n2024-01-02 10:00,1,1,1,1,1\n2024-01-02 10:01,1,1,1,1,1\n", r"rows 1 and 3"),
    ],
)
def test_bad_rows_name_file_row_column_and_value(tmp_path: Path, body: str, match: str) -> None:
    path = _write(tmp_path, HEADER + body)
    with pytest.raises(BarsFileError, match=match) as err:
        read_bars_file(path)
    assert str(path) in str(err.value)


def test_missing_column_missing_file_and_dst_gap(tmp_path: Path) -> None:
    with pytest.raises(BarsFileError, match=r"missing column 'volume'.*'Close'"):
        read_bars_file(_write(tmp_path, "Date,Open,High,Low,Close\n2024-01-02,1,1,1,1\n"))
    with pytest.raises(BarsFileError, match="no such bar file"):
        read_bars_file(tmp_path / "nope.csv")
    with pytest.raises(BarsFileError, match="unknown bar file type"):
        read_bars_file(_write(tmp_path, "x", "bars.json"))
    gap = _write(tmp_path, HEADER + "2024-03-10 01:59,1,1,1,1,1\n2024-03-10 02:30,1,1,1,1,1\n")
    with pytest.raises(BarsFileError, match=r"row 2: timestamp 2024-03-10 02:30:00 does not exist"):
        read_bars_file(gap, tz="America/New_York")


def test_ambiguous_fall_back_hour_is_resolved_from_row_order(tmp_path: Path) -> None:
    rows = ["2024-11-03 00:30", "2024-11-03 01:30", "2024-11-03 01:30", "2024-11-03 02:30"]
    path = _write(tmp_path, HEADER + "".join(f"{r},1,1,1,1,1\n" for r in rows))
    df = read_bars_file(path, tz="America/New_York")
    want = ["2024-11-03T04:30:00+00:00", "2024-11-03T05:30:00+00:00", "2024-11-03T06:30:00+00:00"]
    assert [t.isoformat() for t in df["ts"]][:3] == want
    assert df["ts"][3].isoformat() == "2024-11-03T07:30:00+00:00"


def test_newest_first_new_york_minutes_across_the_autumn_clock_change(tmp_path: Path) -> None:
    """1-minute bars 2024-11-03 00:00-03:59 New York wall time (01:00-01:59 twice), written newest first."""
    utc = pd.date_range("2024-11-03 04:00", "2024-11-03 09:00", freq="1min", inclusive="left", tz="UTC")
    wall = utc.tz_convert("America/New_York").strftime("%Y-%m-%d %H:%M")
    assert len(set(wall)) == len(utc) - 60  # the repeated hour
    close = np.arange(len(utc), dtype=float)
    lines = [f"{w},{c},{c + 1},{c},{c},{i}\n" for i, (w, c) in enumerate(zip(wall, close, strict=True))]
    path = _write(tmp_path, HEADER + "".join(reversed(lines)))
    df = read_bars_file(path, tz="America/New_York")
    assert df["ts"].dt.epoch("ns").to_list() == [int(t) for t in utc.as_unit("ns").asi8]
    assert df["close"].to_list() == close.tolist() and df["volume"].to_list() == list(map(float, range(len(utc))))
    oldest_first = _write(tmp_path, HEADER + "".join(lines), "asc.csv")
    assert read_bars_file(oldest_first, tz="America/New_York").equals(df)


@pytest.mark.parametrize("tz", ["Mars/Base", "../etc/passwd", ""])
def test_an_unknown_time_zone_is_a_bars_file_error_before_the_file_is_read(tmp_path: Path, tz: str) -> None:
    good = _write(tmp_path, HEADER + "2024-03-08 09:30,1,2,0.5,1.5,10\n")
    with pytest.raises(BarsFileError, match=f"tz: unknown time zone {tz!r}"):
        read_bars_file(good, tz=tz)
    with pytest.raises(BarsFileError, match=f"tz: unknown time zone {tz!r}"):  # checked before the file is looked at
        read_bars_file(tmp_path / "absent.csv", tz=tz)
    assert issubclass(BarsFileError, ValueError)
