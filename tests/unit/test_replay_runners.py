"""File replay runners: bars replay equals the file, subjects per kind, and honest pacing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from proto import subjects
from proto.events import BarBatch, BookBatch, TradeBatch
from services.ingest.replay_files import replay_bars, replay_lobster
from tests.conftest import needs_data

Batch = BookBatch | TradeBatch | BarBatch


class Sink:
    """Collects what a runner publishes, with the wall time of each publish."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.at: list[tuple[float, list[Batch]]] = []

    async def __call__(self, batches: Sequence[Batch]) -> None:
        self.at.append((time.monotonic(), list(batches)))
        self.batches.extend(batches)


def test_bars_replay_equals_the_file() -> None:
    path = needs_data("bars", "BTC-PERP_1m_2022-01.csv")
    sink = Sink()
    stats = asyncio.run(replay_bars(sink, path, batch_rows=10_000))
    want = pd.read_csv(path)
    assert stats.bar_rows == len(want) == sum(b.rows for b in sink.batches)
    assert {subjects.of_batch(b) for b in sink.batches} == {"md.bar.file.BTC-PERP.1min"}
    bars = [b for b in sink.batches if isinstance(b, BarBatch)]
    ts = np.concatenate([b.bar_ts for b in bars])
    want_ts = pd.to_datetime(want["timestamp"]).dt.tz_localize("UTC").dt.as_unit("ns").astype("int64").to_numpy()
    np.testing.assert_array_equal(ts, want_ts)
    for c in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(np.concatenate([getattr(b, c) for b in bars]), want[c].to_numpy(float))


def test_goog_daily_replay_with_symbol_and_timeframe(tmp_path: Path) -> None:
    path = needs_data("bars", "GOOG_daily_2004_2013.csv")
    sink = Sink()
    asyncio.run(replay_bars(sink, path, symbol="GOOG", venue="nasdaq"))
    assert {subjects.of_batch(b) for b in sink.batches} == {"md.bar.nasdaq.GOOG.daily"}
    assert sum(b.rows for b in sink.batches) == 2_148
    with pytest.raises(ValueError, match="timeframe '3min'"):
        asyncio.run(replay_bars(sink, path, timeframe="3min"))


def test_subjects_for_book_and_trade_batches() -> None:
    folder = needs_data("lobster", "AAPL_2012-06-21_L10_first998")
    sink = Sink()
    stats = asyncio.run(replay_lobster(sink, folder))
    subs = {subjects.of_batch(b) for b in sink.batches}
    assert subs == {"md.book.nasdaq.AAPL", "md.trade.nasdaq.AAPL"}
    assert stats.book_rows == 999 and stats.trade_rows == sum(b.rows for b in sink.batches if isinstance(b, TradeBatch))


def test_paced_replay_publishes_no_row_before_its_market_time() -> None:
    """At speed S a row at market offset d from the first is due d/S seconds of wall time after the start."""
    folder = needs_data("lobster", "AAPL_2012-06-21_L10_first998")
    speed = 100.0  # 49 s of market time -> at least 0.49 s of wall time
    sink = Sink()
    t0 = time.monotonic()
    stats = asyncio.run(replay_lobster(sink, folder, speed=speed, flush_s=0.02))
    elapsed = time.monotonic() - t0
    first_ts = min(b.book_ts[0] for b in sink.batches if isinstance(b, BookBatch))
    assert elapsed >= (stats.last_ts - stats.first_ts) / 1e9 / speed
    for at, batches in sink.at:
        for b in batches:
            last = b.book_ts[-1] if isinstance(b, BookBatch) else b.trade_ts[-1]  # type: ignore[union-attr]
            assert at - t0 >= (last - first_ts) / 1e9 / speed - 1e-3
            first = b.book_ts[0] if isinstance(b, BookBatch) else b.trade_ts[0]  # type: ignore[union-attr]
            assert last - first < 0.02 * speed * 1e9  # a chunk spans at most flush_s of wall time
    assert len(sink.at) > 20  # many small flushes, not one 999-row batch at the end


def test_bad_speed_is_refused() -> None:
    folder = needs_data("lobster", "AAPL_2012-06-21_L10_first998")
    with pytest.raises(ValueError, match="speed=-2"):
        asyncio.run(replay_lobster(Sink(), folder, speed=-2))
