"""The generator runner on a real nats-server into real chDB: every generated row lands, values intact."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from libs.bus.admin import wait_idle
from libs.config import Settings
from proto.events import BarBatch, BookBatch, TradeBatch
from services.demo import RECORDERS
from services.ingest.generators import bus_publisher, parse_spec, run_generator
from services.runtime import Stack

START = 1_717_243_230_000_000_000  # 2024-06-01 12:00:30 UTC: the first minute is partial


async def test_generated_books_trades_and_bars_land_in_clickhouse(settings: Settings) -> None:
    stack = await Stack.open(settings)
    try:
        await stack.start("recorder")
        bus = await stack.connect("test")
        sent: list[BookBatch | TradeBatch | BarBatch] = []
        to_bus = bus_publisher(bus)

        async def publish(batches: Sequence[BookBatch | TradeBatch | BarBatch]) -> None:
            sent.extend(batches)
            await to_bus(batches)

        spec = parse_spec("heston:crypto?seed=4&step_ms=250&chunk_steps=400&instruments=BTC|ETH&trade_rate=2")
        stats = await run_generator(publish, spec, None, 300.0, start_ns=START)
        assert await wait_idle(bus, RECORDERS, timeout_s=60)
        store = stack.store
        counts = store.table_counts()
        assert counts["book_tops"] == stats.book_rows == 2 * 1_200
        assert counts["md_trades"] == stats.trade_rows > 0
        books = [b for b in sent if isinstance(b, BookBatch)]
        trades = [b for b in sent if isinstance(b, TradeBatch)]
        bars = [b for b in sent if isinstance(b, BarBatch)]

        got = store.query_df(
            "SELECT instrument, toUnixTimestamp64Nano(ts) AS t, bid_px, ask_px, bid_sz FROM {db}.book_tops FINAL "
            "ORDER BY t, instrument"
        )
        names = books[0].instruments
        want_ts = np.concatenate([b.book_ts for b in books])
        assert np.array_equal(got["t"].to_numpy(), want_ts)
        assert got["instrument"].to_list() == [names[i] for b in books for i in b.inst_idx]
        for col in ("bid_px", "ask_px", "bid_sz"):
            assert np.array_equal(got[col].to_numpy(), np.concatenate([getattr(b, col)[:: b.levels] for b in books]))

        tr = store.query_df(
            "SELECT sum(size) AS s, sum(px * size) AS notional, countIf(aggressor = 1) AS buys "
            "FROM {db}.md_trades FINAL"
        ).row(0)
        sizes = np.concatenate([t.size for t in trades])
        pxs = np.concatenate([t.px for t in trades])
        assert tr == (
            sizes.sum(),
            int((pxs * sizes).sum()),
            int((np.concatenate([t.aggressor for t in trades]) == 1).sum()),
        )

        # 300 s from 12:00:30: minutes 12:00 (partial) .. 12:05 (partial) = 6 per instrument
        assert counts["ohlcv"] == stats.bar_rows == sum(b.rows for b in bars) == 12
        # the stored bars equal a resample of the stored books and trades done by ClickHouse itself
        resampled = store.query_df(
            """
            SELECT b.instrument AS symbol, b.minute AS minute, b.o, b.h, b.l, b.c, ifNull(t.v, 0) * 1e-4 AS v
            FROM (SELECT instrument, toStartOfMinute(ts) AS minute,
                         argMin((bid_px + ask_px) / 2e4, ts) AS o, max((bid_px + ask_px) / 2e4) AS h,
                         min((bid_px + ask_px) / 2e4) AS l, argMax((bid_px + ask_px) / 2e4, ts) AS c
                  FROM {db}.book_tops FINAL GROUP BY instrument, minute) AS b
            LEFT JOIN (SELECT instrument, toStartOfMinute(ts) AS minute, sum(size) AS v
                       FROM {db}.md_trades FINAL GROUP BY instrument, minute) AS t
              ON b.instrument = t.instrument AND b.minute = t.minute
            ORDER BY symbol, minute
            """
        )
        stored = store.query_df(
            "SELECT symbol, toUnixTimestamp(ts) AS minute, open, high, low, close, volume FROM {db}.ohlcv FINAL "
            "WHERE timeframe = '1min' ORDER BY symbol, minute"
        )
        assert stored["symbol"].to_list() == resampled["symbol"].to_list()
        assert stored["minute"].to_list() == resampled["minute"].to_list()
        for a, b in zip(("open", "high", "low", "close", "volume"), ("o", "h", "l", "c", "v"), strict=True):
            assert np.allclose(stored[a].to_numpy(), resampled[b].to_numpy(), rtol=1e-12), a
    finally:
        await stack.close()
