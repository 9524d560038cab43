"""LOBSTER replay: book rows equal the order-book file, trades the executions, times DST-correct."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from libs.replay.lobster import load_lobster_columns, lobster_chunks
from libs.replay.pacing import chunk_bounds
from proto.events import BookBatch, TradeBatch
from tests.conftest import needs_data

AAPL = ("lobster", "AAPL_2012-06-21_L10_first998")
AMZN = ("lobster", "AMZN_2012-06-21_L1_fullday")


def _files(folder: Path) -> tuple[Path, Path]:
    msg = next(folder.glob("*_message_*.csv"))
    return msg, next(folder.glob("*_orderbook_*.csv"))


def _batches(folder: Path, **kw: object) -> tuple[list[BookBatch], list[TradeBatch]]:
    cols = load_lobster_columns(folder)
    books: list[BookBatch] = []
    trades: list[TradeBatch] = []
    for chunk in lobster_chunks(cols, **kw):  # type: ignore[arg-type]
        for b in chunk.batches:
            (books if isinstance(b, BookBatch) else trades).append(b)  # type: ignore[arg-type]
    return books, trades


def test_aapl_every_level_of_every_row_equals_the_orderbook_file() -> None:
    folder = needs_data(*AAPL)
    msg, ob = _files(folder)
    books, trades = _batches(folder, batch_rows=100)
    want = pd.read_csv(ob, header=None).to_numpy(np.int64)  # ask px, ask sz, bid px, bid sz per level
    assert all(b.levels == 10 and b.venue == "nasdaq" and b.instruments == ["AAPL"] for b in books)
    n = sum(b.rows for b in books)
    assert n == len(want) == 999
    got = {k: np.concatenate([np.asarray(getattr(b, k)) for b in books]).reshape(n, 10) for k in
           ("ask_px", "ask_sz", "bid_px", "bid_sz")}  # fmt: skip
    for j, k in enumerate(("ask_px", "ask_sz", "bid_px", "bid_sz")):
        expect = want[:, j::4].copy()
        if k == "ask_px":
            expect[expect == 9_999_999_999] = 0
        if k == "bid_px":
            expect[expect == -9_999_999_999] = 0
        np.testing.assert_array_equal(got[k], expect, err_msg=k)
    # trades are exactly the type 4/5 messages, the aggressor opposite the resting order
    m = pd.read_csv(msg, header=None, names=["time", "type", "oid", "size", "price", "dir"])
    ex = m[m["type"].isin([4, 5])]
    assert sum(t.rows for t in trades) == len(ex) > 0
    np.testing.assert_array_equal(np.concatenate([t.px for t in trades]), ex["price"].to_numpy())
    np.testing.assert_array_equal(np.concatenate([t.size for t in trades]), ex["size"].to_numpy())
    np.testing.assert_array_equal(np.concatenate([t.aggressor for t in trades]), -ex["dir"].to_numpy())
    assert set(np.concatenate([t.aggressor for t in trades]).tolist()) <= {1, -1}


def test_times_are_new_york_wall_time_in_utc_with_daylight_saving() -> None:
    folder = needs_data(*AAPL)
    msg, _ = _files(folder)
    cols = load_lobster_columns(msg)
    m = pd.read_csv(msg, header=None)
    first = datetime.fromtimestamp(int(cols.ts[0]) // 10**9, UTC)
    assert first.strftime("%Y-%m-%d %H:%M:%S") == "2012-06-21 13:30:00"  # 09:30 EDT
    # every time: 2012-06-21 04:00 UTC (midnight EDT) plus the seconds in the file, to the ns
    midnight = int(datetime(2012, 6, 21, 4, tzinfo=UTC).timestamp()) * 10**9
    expect = midnight + np.array([round(float(s) * 1e9) for s in m[0]])
    np.testing.assert_array_equal(cols.ts, expect)
    assert np.all(np.diff(cols.ts) >= 0)


def test_amzn_full_day_row_counts_and_first_last_quotes() -> None:
    folder = needs_data(*AMZN)
    msg, ob = _files(folder)
    books, trades = _batches(folder)
    m = pd.read_csv(msg, header=None)
    book = pd.read_csv(ob, header=None).to_numpy(np.int64)
    assert sum(b.rows for b in books) == len(m) == 57_515
    assert sum(t.rows for t in trades) == int(m[1].isin([4, 5]).sum())
    assert max(b.rows for b in books) == 5_000
    bid = np.concatenate([b.bid_px for b in books])
    ask = np.concatenate([b.ask_px for b in books])
    np.testing.assert_array_equal(bid, np.where(book[:, 2] < 0, 0, book[:, 2]))
    np.testing.assert_array_equal(ask, np.where(book[:, 0] >= 9_999_999_999, 0, book[:, 0]))


def test_paced_chunks_never_span_more_than_the_window() -> None:
    folder = needs_data(*AAPL)
    cols = load_lobster_columns(folder)
    span = 2 * 10**9
    bounds = chunk_bounds(cols.ts, 5_000, span)
    assert bounds[0] == 0 and bounds[-1] == cols.rows
    for a, b in itertools.pairwise(bounds.tolist()):
        assert b > a
        assert cols.ts[b - 1] - cols.ts[a] < span
        if b < cols.rows:  # a chunk is cut only because the next row is outside the window
            assert cols.ts[b] - cols.ts[a] >= span


def _copy_lobster(src: Path, dst: Path) -> tuple[Path, Path]:
    msg, ob = _files(src)
    (dst / msg.name).write_bytes(msg.read_bytes())
    (dst / ob.name).write_bytes(ob.read_bytes())
    return dst / msg.name, dst / ob.name


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    src = needs_data(*AAPL)
    with pytest.raises(FileNotFoundError, match="no such LOBSTER file"):
        load_lobster_columns(tmp_path / "AAPL_2012-06-21_34200000_57600000_message_10.csv")
    msg, ob = _copy_lobster(src, tmp_path)
    lines = msg.read_text().splitlines()
    lines[4] = "34200.5,1,abc,100,5850000,1"
    msg.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=f"{msg.name}: not numeric CSV"):
        load_lobster_columns(msg)
    msg, ob = _copy_lobster(src, tmp_path)
    short = tmp_path / "short_orderbook.csv"
    short.write_text("\n".join(ob.read_text().splitlines()[:-3]) + "\n")
    with pytest.raises(ValueError, match=r"short_orderbook.csv: 996 order-book rows but .* has 999 messages"):
        load_lobster_columns(msg, short)
    ob.write_text("\n".join(ob.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match="999 messages but 998 order-book rows"):
        load_lobster_columns(msg)
    # an order-book file of another depth is refused by the same reader the loader uses
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    msg, ob = _copy_lobster(src, fresh)
    wide = tmp_path / "wide_orderbook.csv"
    wide.write_text("\n".join(line + ",1,1,1,1" for line in ob.read_text().splitlines()) + "\n")
    with pytest.raises(ValueError, match=r"wide_orderbook\.csv: 44 columns, expected 40"):
        load_lobster_columns(msg, wide)
